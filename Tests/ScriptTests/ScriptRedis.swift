import CHiredis
import Foundation
@testable import GatewayNode
import GatewayIO
import GatewayTestSupport
import XCTest

/// A real redis-server for script tests, with a blocking hiredis client: each test loads
/// fixture keys, runs one script with EVALSHA (as the node does) and reads the keys back.
final class ScriptRedis {
    /// The one Redis launcher of the repo (GatewayTestSupport).
    let server: RedisServer
    var port: Int { server.port }
    private var context: UnsafeMutablePointer<redisContext>?

    init() throws {
        server = try RedisServer(appendOnly: false)
        guard let c = redisConnect("127.0.0.1", Int32(server.port)), c.pointee.err == 0 else {
            throw XCTSkip("cannot connect to redis-server on \(server.port)")
        }
        context = c
    }

    deinit {
        if let context { redisFree(context) }
        server.stop()
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
}
