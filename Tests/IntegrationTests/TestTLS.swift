import Foundation

/// A self-signed certificate for 127.0.0.1, made once per test process with the openssl CLI,
/// and the switch that runs nodes over TLS (`GATEWAY_TEST_TLS=1`: `.ci/run` runs the browser
/// tests once that way).
enum TestTLS {
    static let enabledByEnvironment = ProcessInfo.processInfo.environment["GATEWAY_TEST_TLS"] == "1"

    /// `cert.pem` and `key.pem` in a folder of their own.
    static var files: (cert: String, key: String) {
        get throws { try made.get() }
    }

    private static let made: Result<(cert: String, key: String), Error> = Result {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gw-tls-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let cert = dir.appendingPathComponent("cert.pem").path
        let key = dir.appendingPathComponent("key.pem").path
        let (status, output) = try run("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        guard status == 0 else { throw TestError("openssl req failed (\(status)): \(output)") }
        return (cert, key)
    }

    /// The node's settings for TLS, as environment variables.
    static func environment() throws -> [String: String] {
        let (cert, key) = try files
        return ["GATEWAY_SERVER_TLS_CERT": cert, "GATEWAY_SERVER_TLS_KEY": key]
    }

    /// One HTTPS request with curl (`-k`: the certificate is self-signed). Throws when no
    /// HTTP answer came (a refused handshake, a dropped connection).
    static func request(port: Int, _ method: String, _ path: String, body: [UInt8]? = nil, key: String? = nil,
                        headers: [String: String] = [:], timeout: Double = 10) throws -> HTTPResponse {
        var args = ["-k", "-s", "-S", "-X", method, "--max-time", String(Int(timeout.rounded(.up))),
                    "-o", "-", "-w", "\n%{http_code}", "https://127.0.0.1:\(port)\(path)"]
        if let key { args += ["-H", "Authorization: Bearer \(key)"] }
        for (k, v) in headers { args += ["-H", "\(k): \(v)"] }
        if body != nil { args += ["-H", "Content-Type: application/json", "--data-binary", "@-"] }
        let (status, output) = try run("/usr/bin/curl", args, input: body)
        guard status == 0, let newline = output.lastIndex(of: UInt8(ascii: "\n")),
              let code = Int(String(decoding: output[(newline + 1)...], as: UTF8.self)), code > 0 else {
            throw TestError("curl \(method) https://127.0.0.1:\(port)\(path) failed (\(status)): \(String(decoding: output.suffix(300), as: UTF8.self))")
        }
        return HTTPResponse(status: code, body: Array(output[..<newline]))
    }

    /// Runs a tool to the end; stdout and stderr together.
    private static func run(_ tool: String, _ args: [String], input: [UInt8]? = nil) throws -> (Int32, [UInt8]) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        let stdin = Pipe()
        p.standardInput = stdin
        try p.run()
        if let input { stdin.fileHandleForWriting.write(Data(input)) }
        try stdin.fileHandleForWriting.close()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, Array(data))
    }

    static func run(_ tool: String, _ args: [String]) throws -> (Int32, String) {
        let (status, bytes): (Int32, [UInt8]) = try run(tool, args, input: nil)
        return (status, String(decoding: bytes, as: UTF8.self))
    }
}
