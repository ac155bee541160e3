import Foundation
import GatewayProtocol

public struct HTTPResponse {
    public let status: Int
    public let body: [UInt8]
    public var json: JSON? { try? JSON.parse(body) }
    public var text: String { String(decoding: body, as: UTF8.self) }

    public init(status: Int, body: [UInt8]) {
        self.status = status
        self.body = body
    }
}

/// Minimal blocking HTTP/1.1 request (Connection: close) so tests control every header sent.
public func httpRequest(port: Int, _ method: String, _ path: String, body: [UInt8]? = nil, key: String? = nil,
                        headers: [String: String] = [:], timeout: Double = 10) throws -> HTTPResponse {
    var head: [(String, String)] = [("Connection", "close")]
    if let key { head.append(("Authorization", "Bearer \(key)")) }
    for (k, v) in headers { head.append((k, v)) }
    if body != nil { head.append(("Content-Type", "application/json")) }
    let connection = HTTPConnection(host: "127.0.0.1", port: port, timeout: timeout)
    defer { connection.disconnect() }
    return try connection.request(method, path, body: body, headers: head)
}

/// The blocking HTTP/1.1 client of the tests and the load tester, on one keep-alive socket:
/// publishers each own one, so no library thread pool sits between the clock and the wire.
public final class HTTPConnection {
    public let host: String
    public let port: Int
    public let timeout: Double
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []
    private var readScratch = [UInt8](repeating: 0, count: 16384)

    public init(host: String, port: Int, timeout: Double = 5) {
        self.host = host
        self.port = port
        self.timeout = timeout
    }

    deinit { disconnect() }

    public func disconnect() {
        if fd >= 0 { close(fd) }
        fd = -1
        buffer = []
    }

    /// Sends one request and reads the whole response (`Content-Length`, chunked, or up to the
    /// close). `body` nil sends no `Content-Length`. A request on a reused socket that finds it
    /// closed before any answer byte is retried once when `idempotent`.
    public func request(_ method: String, _ path: String, body: [UInt8]? = nil, headers: [(String, String)] = [],
                        idempotent: Bool = false) throws -> HTTPResponse {
        let reused = fd >= 0
        do {
            return try attempt(method, path, body, headers)
        } catch let error as StaleSocket {
            disconnect()
            if reused && idempotent { return try attempt(method, path, body, headers) }
            throw TestError(error.reason)
        } catch {
            disconnect()
            throw error
        }
    }

    /// GET without keeping the socket, for health checks and metrics.
    public static func get(host: String, port: Int, path: String, timeout: Double = 2) -> HTTPResponse? {
        let c = HTTPConnection(host: host, port: port, timeout: timeout)
        defer { c.disconnect() }
        return try? c.request("GET", path, idempotent: true)
    }

    private struct StaleSocket: Error { let reason: String }

    private func attempt(_ method: String, _ path: String, _ body: [UInt8]?, _ headers: [(String, String)]) throws -> HTTPResponse {
        if fd < 0 {
            fd = try connectTCP(host: host, port: port, timeout: timeout, noDelay: true)
            buffer = []
        }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\n"
        if let body { head += "Content-Length: \(body.count)\r\n" }
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "\r\n"
        try writeAll(Array(head.utf8) + (body ?? []))

        // Status line and headers.
        var headerEnd: Int?
        while headerEnd == nil {
            headerEnd = findHeaderEnd()
            if headerEnd == nil {
                let n = try fill()
                if n == 0 {
                    if buffer.isEmpty { throw StaleSocket(reason: "connection closed before a response") }
                    throw TestError("connection closed inside the response headers")
                }
            }
        }
        let headText = String(decoding: buffer[..<headerEnd!], as: UTF8.self)
        buffer.removeSubrange(..<(headerEnd! + 4))
        let lines = headText.split(separator: "\r\n")
        guard let statusLine = lines.first, statusLine.hasPrefix("HTTP/1."),
              let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") else {
            throw TestError("bad status line: \(lines.first ?? "")")
        }
        var length: Int?
        var closeAfter = false
        var chunked = false
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if name == "content-length" { length = Int(value) }
            if name == "connection" && value.lowercased() == "close" { closeAfter = true }
            if name == "transfer-encoding" && value.lowercased().contains("chunked") { chunked = true }
        }
        var responseBody: [UInt8]
        if method == "HEAD" || status == 204 || status == 304 {
            responseBody = []
        } else if chunked {
            responseBody = try readChunked()
        } else if let length {
            while buffer.count < length {
                if try fill() == 0 { throw TestError("connection closed inside the response body") }
            }
            responseBody = Array(buffer[..<length])
            buffer.removeSubrange(..<length)
        } else {
            while try fill() > 0 {}
            responseBody = buffer
            buffer = []
            closeAfter = true
        }
        if closeAfter { disconnect() }
        return HTTPResponse(status: status, body: responseBody)
    }

    private func readChunked() throws -> [UInt8] {
        var out: [UInt8] = []
        while true {
            var lineEnd: Int?
            while lineEnd == nil {
                lineEnd = findCRLF(from: 0)
                if lineEnd == nil, try fill() == 0 { throw TestError("closed inside a chunk header") }
            }
            let sizeText = String(decoding: buffer[..<lineEnd!], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else {
                throw TestError("bad chunk size")
            }
            buffer.removeSubrange(..<(lineEnd! + 2))
            while buffer.count < size + 2 {
                if try fill() == 0 { throw TestError("closed inside a chunk") }
            }
            if size == 0 {
                buffer.removeSubrange(..<2)
                return out
            }
            out += buffer[..<size]
            buffer.removeSubrange(..<(size + 2))
        }
    }

    private func findHeaderEnd() -> Int? {
        guard buffer.count >= 4 else { return nil }
        for i in 0...(buffer.count - 4) where buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
            return i
        }
        return nil
    }

    private func findCRLF(from start: Int) -> Int? {
        guard buffer.count >= start + 2 else { return nil }
        for i in start...(buffer.count - 2) where buffer[i] == 13 && buffer[i + 1] == 10 { return i }
        return nil
    }

    private func fill() throws -> Int {
        while true {
            let n = readScratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { throw TestError("timed out after \(timeout) s waiting for \(host):\(port)") }
                if errno == ECONNRESET && buffer.isEmpty { return 0 }
                throw TestError("recv: \(String(cString: strerror(errno)))")
            }
            buffer.append(contentsOf: readScratch[..<n])
            return n
        }
    }

    private func writeAll(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EPIPE || errno == ECONNRESET { throw StaleSocket(reason: "connection closed while sending") }
                throw TestError("send: \(String(cString: strerror(errno)))")
            }
            off += n
        }
    }
}
