import Foundation

/// A Redis reply, as far as the checks need it.
public indirect enum RESP: Equatable {
    case simple(String)
    case error(String)
    case int(Int64)
    case bulk([UInt8]?)
    case array([RESP]?)

    public var int: Int64? { if case .int(let v) = self { return v } else { return nil } }
    public var text: String? {
        switch self {
        case .simple(let s): s
        case .bulk(let b?): String(decoding: b, as: UTF8.self)
        default: nil
        }
    }
    public var array: [RESP]? { if case .array(let a?) = self { return a } else { return nil } }
}

/// A blocking, pipelining Redis client for checking what the gateway stored (never on
/// the gateway's own connections, so it measures without going through it), and for the
/// launchers' own health checks.
public final class RedisProbe {
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []
    private var head = 0

    /// `redis://host:port`; with a `password`, AUTHenticated before anything else is sent.
    public convenience init(port: Int, timeout: Double = 10, password: String? = nil) throws {
        try self.init(url: "redis://127.0.0.1:\(port)", timeout: timeout)
        if let password, case .error(let message) = try call(["AUTH", password]) {
            throw TestError("AUTH on \(port) refused: \(message)")
        }
    }

    /// One command on a fresh connection to 127.0.0.1:`port`.
    public static func call(port: Int, _ args: [String], timeout: Double = 5, password: String? = nil) throws -> RESP {
        try RedisProbe(port: port, timeout: timeout, password: password).call(args)
    }

    public init(url: String, timeout: Double = 10) throws {
        guard url.hasPrefix("redis://") else { throw TestError("redis URL must be redis://host:port, got \(url)") }
        let hostPort = url.dropFirst(8).split(separator: "/").first ?? ""
        let parts = hostPort.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1]) else { throw TestError("bad redis URL \(url)") }
        fd = try connectTCP(host: String(parts[0]), port: Int(port), timeout: timeout)
    }

    deinit { if fd >= 0 { close(fd) } }

    public func call(_ args: [String]) throws -> RESP { try pipeline([args])[0] }

    /// Sends every command, then reads every reply.
    public func pipeline(_ commands: [[String]]) throws -> [RESP] {
        var out: [UInt8] = []
        for args in commands {
            out += Array("*\(args.count)\r\n".utf8)
            for a in args {
                let b = Array(a.utf8)
                out += Array("$\(b.count)\r\n".utf8) + b + [13, 10]
            }
        }
        var off = 0
        while off < out.count {
            let n = out[off...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw TestError("redis send: \(String(cString: strerror(errno)))") }
            off += n
        }
        return try commands.map { _ in try reply() }
    }

    private func reply() throws -> RESP {
        let line = try readLine()
        guard let kind = line.first else { throw TestError("redis: empty reply line") }
        let rest = String(decoding: line.dropFirst(), as: UTF8.self)
        switch kind {
        case UInt8(ascii: "+"): return .simple(rest)
        case UInt8(ascii: "-"): return .error(rest)
        case UInt8(ascii: ":"): return .int(Int64(rest) ?? 0)
        case UInt8(ascii: "$"):
            let n = Int(rest) ?? -1
            if n < 0 { return .bulk(nil) }
            try need(n + 2)
            let b = Array(buffer[head..<(head + n)])
            head += n + 2
            return .bulk(b)
        case UInt8(ascii: "*"):
            let n = Int(rest) ?? -1
            if n < 0 { return .array(nil) }
            var items: [RESP] = []
            items.reserveCapacity(n)
            for _ in 0..<n { items.append(try reply()) }
            return .array(items)
        default:
            throw TestError("redis: unexpected reply type \(kind)")
        }
    }

    private func readLine() throws -> ArraySlice<UInt8> {
        var i = head
        while true {
            while i + 1 < buffer.count {
                if buffer[i] == 13 && buffer[i + 1] == 10 {
                    let line = buffer[head..<i]
                    head = i + 2
                    return line
                }
                i += 1
            }
            try fill()
            i = head
        }
    }

    private func need(_ n: Int) throws {
        while buffer.count - head < n { try fill() }
    }

    private func fill() throws {
        if head > 1 << 20 {
            buffer.removeSubrange(..<head)
            head = 0
        }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw TestError(n == 0 ? "redis closed the connection" : "redis recv: \(String(cString: strerror(errno)))") }
            buffer += chunk[..<n]
            return
        }
    }
}

/// True when a Redis server answers PING on 127.0.0.1:`port`.
public func redisPing(_ port: Int) -> Bool {
    guard let reply = try? RedisProbe.call(port: port, ["PING"], timeout: 1) else { return false }
    return reply == .simple("PONG")
}
