import Foundation
import GatewayConfig
import GatewayCore
import GatewayProtocol
import GatewayRedis

/// What every store answers with: a typed value, or the error the client gets.
typealias StoreResult<T> = Result<T, GatewayError>

/// Settings the channel and community stores share (from NodeOptions).
struct StoreSettings {
    var historyUserSize = 100
    var historyGroupSize = 100
    var historyProductSize = 100
    var historyTTLSeconds = 86_400
    /// Bytes of publications one history or recovery reply may carry.
    var replyPublicationBytes = 1 << 20
    var maxRecover = 1_000
    /// How long one Redis call may take, retries included, before it fails (`redis.timeout_s`):
    /// bounds how long a decision can still be writing after it registered its outbox.
    var redisTimeoutSeconds = 10
    /// `redis.durability`: with `replicas:N` the relay WAITs on each channel master it
    /// published to before it deletes the relayed outbox entries.
    var durability: RedisDurability = .fsync
    var durabilityTimeoutMs = 1_000
    /// How long the event log keeps an event at least (`webhooks.retry_for_s`), in ms.
    var eventRetentionMs: Int64 = 259_200_000
    /// A fresh epoch for a channel that has none.
    var newEpoch: () -> String = { String(UInt32.random(in: 0...UInt32.max), radix: 16) }

    func historySize(_ kind: Channel.Kind) -> Int {
        switch kind {
        case .user: historyUserSize
        case .group: historyGroupSize
        case .product, .sale: historyProductSize
        }
    }
}

/// The one path from a Redis reply to a store result: decode through `RedisReplyDecodable`;
/// a failure becomes 503 `unavailable` (Redis away, or a reply of the wrong shape, logged).
struct RedisCalls {
    let redis: any RedisLink
    let log: (String) -> Void

    func run<T: RedisReplyDecodable>(_ script: LuaScript, keys: [String], args: [RedisArgument], as type: T.Type = T.self,
                                     _ done: @escaping (StoreResult<T>) -> Void) {
        redis.run(script, keys: keys, args: args) { reply in done(self.decode(reply, script.name)) }
    }

    func send<T: RedisReplyDecodable>(_ args: [RedisArgument], key: String?, as type: T.Type = T.self,
                                      _ done: @escaping (StoreResult<T>) -> Void) {
        redis.send(args, key: key) { reply in done(self.decode(reply, args.first.map { String(decoding: $0.redisBytes, as: UTF8.self) } ?? "")) }
    }

    func decode<T: RedisReplyDecodable>(_ reply: RedisReply, _ what: String) -> StoreResult<T> {
        do {
            return .success(try T(redisReply: reply))
        } catch {
            return .failure(failure(error, what))
        }
    }

    func failure(_ error: RedisDecodingError, _ what: String) -> GatewayError {
        if case .disconnected = error { return .redisUnavailable }
        if !redis.isReady { return .redisUnavailable }
        log("redis \(what): \(error)")
        return GatewayError(.unavailable, "storage error, retry")
    }
}

/// Calls `done` once every one of `count` parts has reported (in any order), with the
/// first failure if any. For pipelined calls whose answers are combined.
final class Gather<Part> {
    private var parts: [Part?]
    private var failure: GatewayError?
    private var remaining: Int
    private let done: (StoreResult<[Part]>) -> Void

    init(_ count: Int, _ done: @escaping (StoreResult<[Part]>) -> Void) {
        parts = Array(repeating: nil, count: count)
        remaining = count
        self.done = done
        if count == 0 { done(.success([])) }
    }

    func report(_ index: Int, _ result: StoreResult<Part>) {
        switch result {
        case .success(let part): parts[index] = part
        case .failure(let error): failure = failure ?? error
        }
        remaining -= 1
        guard remaining == 0 else { return }
        if let failure { return done(.failure(failure)) }
        done(.success(parts.map { $0! }))
    }
}

/// A bulk string as raw bytes (a push's JSON goes to clients as it is stored).
struct RedisBytes: RedisReplyDecodable {
    var bytes: [UInt8]

    init(redisReply: RedisReply) throws(RedisDecodingError) {
        guard case .string(let b) = redisReply else { throw .unexpected(expected: "a bulk string", got: String(redisReply.description.prefix(100))) }
        bytes = b
    }
}
