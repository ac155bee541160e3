@testable import GatewayNode
import XCTest

/// Command handlers against the in-memory store twins (no processes).
final class StoreTwinTests: XCTestCase {
    func testScriptsAreLoadedByName() {
        XCTAssertEqual(Set(LuaScripts.all.map(\.name)).count, LuaScripts.all.count, "script names are unique")
    }
}
