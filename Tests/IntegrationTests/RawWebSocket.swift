import Foundation
import GatewayProtocol

/// A blocking WebSocket client over a plain socket, so a test controls every byte and
/// can end the connection the rude way (TCP reset) or see the HTTP answer to an upgrade.
final class RawWebSocket {
    private var fd: Int32
    private var inbound: [UInt8] = []
    /// Status line code of the upgrade answer (101 when it became a WebSocket).
    private(set) var upgradeStatus = 0
    /// Close code once the server closed (1006 if the socket ended without a close frame).
    private(set) var closeCode: UInt16?
    private var closed = false

    /// Connects and sends the upgrade; read `upgradeStatus` to see whether it was accepted.
    init(port: Int, path: String = "/ws", timeout: Double = 10) throws {
        fd = try connectLoopback(port: port, timeout: timeout)
        let head = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        try write(Array(head.utf8))
        while inbound.firstRange(of: Array("\r\n\r\n".utf8)) == nil {
            guard fill() else { break }
        }
        guard let split = inbound.firstRange(of: Array("\r\n\r\n".utf8)) else {
            upgradeStatus = 0
            closed = true
            return
        }
        let statusLine = String(decoding: inbound[..<split.lowerBound], as: UTF8.self).split(separator: "\r\n").first ?? ""
        let parts = statusLine.split(separator: " ")
        upgradeStatus = parts.count >= 2 ? Int(parts[1]) ?? 0 : 0
        inbound.removeSubrange(..<split.upperBound)
    }

    deinit { if fd >= 0 { Foundation.close(fd) } }

    private func write(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw TestError("send failed") }
            sent += n
        }
    }

    private func fill() -> Bool {
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = read(fd, &buf, buf.count)
        if n <= 0 { return false }
        inbound += buf[..<n]
        return true
    }

    /// One masked text frame holding `text`.
    func sendText(_ text: String) throws {
        let payload = Array(text.utf8)
        var frame: [UInt8] = [0x81]
        if payload.count < 126 {
            frame.append(0x80 | UInt8(payload.count))
        } else if payload.count < 65536 {
            frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xff)]
        } else {
            frame.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) { frame.append(UInt8((payload.count >> shift) & 0xff)) }
        }
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset & 3] }
        try write(frame)
    }

    /// Sends the commands as one frame, `\n` separated.
    func sendLines(_ lines: [String]) throws { try sendText(lines.joined(separator: "\n")) }

    /// The next JSON object the server sent (frames are split on `\n`); nil on timeout or close.
    private var lines: [JSON] = []
    func next() -> JSON? {
        while lines.isEmpty {
            guard let text = nextTextFrame() else { return nil }
            for line in text.split(separator: "\n") {
                if let json = try? JSON.parse(Array(line.utf8)) { lines.append(json) }
            }
        }
        return lines.removeFirst()
    }

    /// Reads objects until one answers `id`; the others are returned too, in order.
    func until(id: Int64) -> (reply: JSON?, seen: [JSON]) {
        var seen: [JSON] = []
        while let j = next() {
            if j["id"]?.intValue == id { return (j, seen) }
            seen.append(j)
        }
        return (nil, seen)
    }

    private func nextTextFrame() -> String? {
        while !closed {
            if inbound.count >= 2 {
                let opcode = inbound[0] & 0x0f
                var length = Int(inbound[1] & 0x7f)
                var header = 2
                if length == 126, inbound.count >= 4 {
                    length = Int(inbound[2]) << 8 | Int(inbound[3])
                    header = 4
                } else if length == 127, inbound.count >= 10 {
                    length = (2..<10).reduce(0) { $0 << 8 | Int(inbound[$1]) }
                    header = 10
                } else if length >= 126 {
                    length = Int.max / 2
                }
                if inbound.count >= header + length {
                    let payload = Array(inbound[header..<(header + length)])
                    inbound.removeSubrange(..<(header + length))
                    switch opcode {
                    case 0x1: return String(decoding: payload, as: UTF8.self)
                    case 0x8:
                        closeCode = payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : 1005
                        closed = true
                        return nil
                    default: continue // ping, pong (lws answers nothing we need)
                    }
                }
            }
            if !fill() {
                if closeCode == nil { closeCode = 1006 }
                closed = true
            }
        }
        return nil
    }

    /// Reads until the server closes; the close code, or nil if it stayed open for `timeout`.
    func waitClosed() -> UInt16? {
        while next() != nil {}
        return closeCode
    }

    /// Ends the connection with a TCP reset (SO_LINGER 0), without a close handshake.
    func reset() {
        var linger = Foundation.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Foundation.linger>.size))
        Foundation.close(fd)
        fd = -1
        closed = true
    }
}
