import Foundation
import GatewayIO

/// The browser client and the operators' page (`/client/…`, `/admin/…`, this target's `Web`
/// resources) and the demo page (`/demo/…`, GatewayDev's), read once into memory. Lookups are exact matches against the
/// files found at start, so no request path can reach anything else on disk.
public struct StaticFiles: Sendable {
    public struct File: Sendable {
        public let body: [UInt8]
        public let contentType: String
    }

    /// URL path ("/demo/index.html") to file; "/demo/" maps to its index.html too.
    public let files: [String: File]
    /// Where the files were read from (for the start-up log).
    public let source: String

    static let types: [String: String] = [
        "js": "text/javascript; charset=utf-8", "mjs": "text/javascript; charset=utf-8",
        "html": "text/html; charset=utf-8", "css": "text/css; charset=utf-8",
        "svg": "image/svg+xml", "png": "image/png", "json": "application/json", "ico": "image/x-icon",
        "txt": "text/plain; charset=utf-8",
    ]

    /// Reads every file under `dir` whose top folder is one of `roots`.
    static func read(from dir: URL, roots: Set<String>) -> [String: File] {
        var out: [String: File] = [:]
        let base = dir.standardizedFileURL.resolvingSymlinksInPath().path
        guard let walker = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: [.isRegularFileKey]) else { return out }
        for case let url as URL in walker {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true else { continue }
            let full = url.standardizedFileURL.resolvingSymlinksInPath().path
            guard full.hasPrefix(base + "/") else { continue }
            let relative = String(full.dropFirst(base.count + 1))
            let parts = relative.split(separator: "/")
            guard parts.count >= 2, roots.contains(String(parts[0])), !parts.contains(where: { $0.hasPrefix(".") }),
                  let type = types[url.pathExtension.lowercased()], let data = try? Data(contentsOf: url) else { continue }
            let file = File(body: Array(data), contentType: type)
            out["/" + relative] = file
            if parts.last == "index.html" {
                out["/" + parts.dropLast().joined(separator: "/") + "/"] = file
            }
        }
        return out
    }

    /// The `Web` folder of a target: its SwiftPM resource bundle beside the executable
    /// (`swift run`, `.build/<config>/gateway`), else the source tree this binary was built
    /// from (a binary copied away from its build folder).
    static func locate(bundleName: String, module: () -> Bundle, sourceFile: String) -> URL? {
        var candidates: [URL] = []
        if let exe = Bundle.main.executableURL?.resolvingSymlinksInPath() {
            candidates.append(exe.deletingLastPathComponent().appendingPathComponent(bundleName))
        }
        candidates.append(Bundle.main.bundleURL.appendingPathComponent(bundleName))
        // Bundle.module stops the process when its bundle is missing: ask it only once one exists.
        if candidates.contains(where: { FileManager.default.fileExists(atPath: $0.path) }) {
            let web = module().bundleURL.appendingPathComponent("Web")
            if FileManager.default.fileExists(atPath: web.path) { return web }
        }
        let source = URL(fileURLWithPath: sourceFile).deletingLastPathComponent().appendingPathComponent("Web")
        return FileManager.default.fileExists(atPath: source.path) ? source : nil
    }

    /// The folders `roots` of the `Web` resources of the target named `target`; `module` is
    /// that target's `Bundle.module`, `sourceFile` a file beside its `Web` folder.
    package static func load(roots: Set<String>, target: String, module: () -> Bundle, sourceFile: String) -> StaticFiles {
        guard let dir = locate(bundleName: "cardshop-gateway_\(target).resources", module: module, sourceFile: sourceFile) else {
            return StaticFiles(files: [:], source: "(no \(target) Web resources found)")
        }
        return StaticFiles(files: read(from: dir, roots: roots), source: dir.path)
    }

    /// Both sets of files (`other` wins a path both have).
    public func adding(_ other: StaticFiles) -> StaticFiles {
        StaticFiles(files: files.merging(other.files) { $1 }, source: source + ", " + other.source)
    }
}

extension Node {
    /// The browser client and the operators' page; `gateway serve` adds the demo page before listening.
    nonisolated(unsafe) public static var staticFiles = StaticFiles.load(roots: ["client", "admin"], target: "GatewayNode",
                                                                          module: { Bundle.module }, sourceFile: #filePath)

    /// GET/HEAD of a served file, or a 404 in the API's error shape.
    func serveStatic(_ request: HTTPRequest) {
        if request.path == "/demo" || request.path == "/admin" { return redirect(request, to: request.path + "/") }
        guard let file = Self.staticFiles.files[request.path] else {
            return fail(request, .notFound("no file \(request.path)"))
        }
        var headers = [("Cache-Control", "no-cache")]
        // The operators' page takes the shop key: no other site may frame it and watch the typing.
        if request.path.hasPrefix("/admin/") {
            headers += [("X-Frame-Options", "DENY"), ("Content-Security-Policy", "frame-ancestors 'none'")]
        }
        request.respond(status: 200, body: file.body(for: request.method), contentType: file.contentType, headers: headers)
    }

    func redirect(_ request: HTTPRequest, to location: String) {
        request.respond(status: 302, body: [], contentType: "text/plain; charset=utf-8",
                        headers: [("Location", location), ("Cache-Control", "no-cache")])
    }
}

extension StaticFiles.File {
    /// HEAD answers with no body (lws then sends a zero length; browsers only GET).
    func body(for method: HTTPRequest.Method) -> [UInt8] { method == .HEAD ? [] : body }
}
