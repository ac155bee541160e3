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

/// Minimal blocking HTTP/1.1 client (Connection: close) so tests control every byte sent.
public func httpRequest(port: Int, _ method: String, _ path: String, body: [UInt8]? = nil, key: String? = nil,
                        headers: [String: String] = [:], timeout: Double = 10) throws -> HTTPResponse {
    var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
    if let key { head += "Authorization: Bearer \(key)\r\n" }
    for (k, v) in headers { head += "\(k): \(v)\r\n" }
    if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
    head += "\r\n"
    let raw = try rawExchange(port: port, Array(head.utf8) + (body ?? []), readUntilClose: true, timeout: timeout)
    guard let split = raw.firstRange(of: Array("\r\n\r\n".utf8)) else { throw TestError("no HTTP response: \(raw.count) bytes") }
    let headText = String(decoding: raw[..<split.lowerBound], as: UTF8.self)
    let statusLine = headText.split(separator: "\r\n").first ?? ""
    let parts = statusLine.split(separator: " ")
    guard parts.count >= 2, let status = Int(parts[1]) else { throw TestError("bad status line \(statusLine)") }
    var payload = Array(raw[split.upperBound...])
    if headText.lowercased().contains("transfer-encoding: chunked") { payload = dechunk(payload) }
    return HTTPResponse(status: status, body: payload)
}

private func dechunk(_ data: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var i = 0
    while i < data.count {
        guard let lineEnd = data[i...].firstRange(of: Array("\r\n".utf8)) else { break }
        let size = Int(String(decoding: data[i..<lineEnd.lowerBound], as: UTF8.self), radix: 16) ?? 0
        if size == 0 { break }
        let start = lineEnd.upperBound
        out += data[start..<min(start + size, data.count)]
        i = start + size + 2
    }
    return out
}
