import Foundation
import GatewayNode

/// The demo page (`/demo/…`), from this target's `Web` resources.
public enum DemoPage {
    public static func load() -> StaticFiles {
        StaticFiles.load(roots: ["demo"], target: "GatewayDev", module: { Bundle.module }, sourceFile: #filePath)
    }
}
