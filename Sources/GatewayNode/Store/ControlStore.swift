import GatewayCore
import GatewayRedis

/// Live control of connections (contract 4.3): bans, and the signals nodes send each other
/// on the control shard channel (`ControlSignal`).
protocol ControlStore: AnyObject {
    /// Bans `user` until `untilMs` (the key expires with the ban), replacing any earlier ban.
    func ban(user: String, untilMs: Int64, seconds: Int64, _ done: @escaping (StoreResult<Void>) -> Void)
    func unban(user: String, _ done: @escaping (StoreResult<Void>) -> Void)
    /// Until when (ms) `user` is banned; nil when not banned.
    func banEnd(user: String, _ done: @escaping (StoreResult<Int64?>) -> Void)
    /// Publishes `signal` to every node; answers how many nodes received it.
    func signal(_ signal: ControlSignal, _ done: @escaping (StoreResult<Int>) -> Void)
}

final class RedisControlStore: ControlStore {
    let calls: RedisCalls

    init(redis: any RedisLink, log: @escaping (String) -> Void) {
        calls = RedisCalls(redis: redis, log: log)
    }

    func ban(user: String, untilMs: Int64, seconds: Int64, _ done: @escaping (StoreResult<Void>) -> Void) {
        let key = StoreKeys.userBan(user)
        calls.send(["SET", key, untilMs, "PX", seconds * 1_000], key: key, as: RedisReply.self) { done($0.map { _ in () }) }
    }

    func unban(user: String, _ done: @escaping (StoreResult<Void>) -> Void) {
        let key = StoreKeys.userBan(user)
        calls.send(["DEL", key], key: key, as: Int64.self) { done($0.map { _ in () }) }
    }

    func banEnd(user: String, _ done: @escaping (StoreResult<Int64?>) -> Void) {
        let key = StoreKeys.userBan(user)
        calls.send(["GET", key], key: key, as: Int64?.self, done)
    }

    func signal(_ signal: ControlSignal, _ done: @escaping (StoreResult<Int>) -> Void) {
        calls.send(["SPUBLISH", StoreKeys.control, signal.encoded()], key: StoreKeys.control, as: Int64.self) { done($0.map { Int($0) }) }
    }
}
