import CHiredis
import Foundation
@testable import GatewayNode
import GatewayIO
import XCTest

/// A real redis-server for script tests, with a blocking hiredis client: each test loads
/// fixture keys, runs one script with EVALSHA (as the node does) and reads the keys back.
final class ScriptRedis {
    let port: Int
    private let dir: URL
    private let process: Process
    private var context: UnsafeMutablePointer<redisContext>?

    init() throws {
        port = Self.freePort()
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("gw-script-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        process.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir.path, "--save", "",
                             "--appendonly", "no", "--logfile", dir.appendingPathComponent("redis.log").path]
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let c = redisConnect("127.0.0.1", Int32(port)), c.pointee.err == 0 {
                context = c
                break
            } else { usleep(20_000) }
        }
        guard context != nil else { throw XCTSkip("redis-server did not start on \(port)") }
    }

    deinit {
        if let context { redisFree(context) }
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: dir)
    }

    /// One command; the reply copied out.
    @discardableResult
    func call(_ args: [RedisArgument]) -> RedisReply {
        let bytes = args.map(\.redisBytes)
        let storage = bytes.map { arg -> UnsafeMutablePointer<CChar> in
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: max(arg.count, 1))
            arg.withUnsafeBytes { b in if let base = b.baseAddress { UnsafeMutableRawPointer(p).copyMemory(from: base, byteCount: b.count) } }
            return p
        }
        defer { storage.forEach { $0.deallocate() } }
        var pointers = storage.map { UnsafePointer<CChar>?(UnsafePointer($0)) }
        let lengths = bytes.map(\.count)
        guard let raw = pointers.withUnsafeMutableBufferPointer({ pp in
            lengths.withUnsafeBufferPointer { lp in redisCommandArgv(context, Int32(bytes.count), pp.baseAddress, lp.baseAddress) }
        }) else { return .disconnected }
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        defer { freeReplyObject(raw) }
        return RedisReply(reply)
    }

    /// EVALSHA (SCRIPT LOAD first, as the node's handshake does).
    @discardableResult
    func run(_ script: LuaScript, keys: [String], args: [RedisArgument]) -> RedisReply {
        call(["SCRIPT", "LOAD", script.source])
        return call(["EVALSHA", script.sha, keys.count] + keys.map { $0 as RedisArgument } + args)
    }

    private static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Int32 in
                bind(fd, p, len)
                return getsockname(fd, p, &len)
            }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
