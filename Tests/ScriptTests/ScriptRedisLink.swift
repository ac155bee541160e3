@testable import GatewayNode
import GatewayIO
import GatewayRedis

/// The stores' RedisLink over the blocking test client: every call answers before it
/// returns. `isCluster` lets a single server run the cluster code paths (outbox + relay):
/// on one server every key is in reach, so the outbox and the relay are exercised as such.
final class ScriptRedisLink: RedisLink {
    let redis: ScriptRedis
    var isCluster: Bool
    var isReady = true
    /// Commands and scripts sent, in order (script names for `run`).
    private(set) var sent: [String] = []
    /// The keys of every script run, by script name.
    private(set) var scriptKeys: [(name: String, keys: [String])] = []
    /// Replies given instead of Redis's to the next calls of a command or script name, one
    /// per call (a lost connection, a NOSCRIPT, ...); the call is not sent.
    var answerInstead: [String: [RedisReply]] = [:]
    /// What `awaitReplicas` answers (it is recorded in `sent` as `WAIT`).
    var replicasConfirm = true
    /// How a reply reaches its callback: at once (default), or later (a test that interleaves
    /// several nodes' pipelined calls queues them; the command itself ran when sent).
    var answer: (@escaping () -> Void) -> Void = { $0() }

    init(_ redis: ScriptRedis, cluster: Bool = false) {
        self.redis = redis
        isCluster = cluster
    }

    var reconnects: Int { 0 }
    var lastRoundTrip: Double { 0 }
    var onReady: (() -> Void)?
    var onLost: ((String) -> Void)?
    var onProblem: ((String) -> Void)?
    var onFatal: ((String) -> Void)?
    var onPubSub: ((String, [UInt8], [UInt8]) -> Void)?
    func start() {}
    func stop() {}

    func send(_ args: [RedisArgument], key: String?, _ callback: @escaping (RedisReply) -> Void) {
        let name = String(decoding: args[0].redisBytes, as: UTF8.self)
        sent.append(name)
        if let instead = takeInstead(name) { return callback(instead) }
        let reply = isReady ? redis.call(args) : .disconnected
        answer { callback(reply) }
    }

    func run(_ script: LuaScript, keys: [String], args: [RedisArgument], _ callback: @escaping (RedisReply) -> Void) {
        sent.append(script.name)
        scriptKeys.append((script.name, keys))
        if let instead = takeInstead(script.name) { return callback(instead) }
        let reply = isReady ? redis.run(script, keys: keys, args: args) : .disconnected
        answer { callback(reply) }
    }

    func subscribe(_ names: [String]) {}
    func unsubscribe(_ names: [String]) {}
    func awaitReplicas(_ replicas: Int, timeoutMs: Int, key: String?, _ done: @escaping (Bool) -> Void) {
        sent.append("WAIT")
        done(replicasConfirm)
    }

    private func takeInstead(_ name: String) -> RedisReply? {
        guard var replies = answerInstead[name], !replies.isEmpty else { return nil }
        let reply = replies.removeFirst()
        answerInstead[name] = replies
        return reply
    }
    func sameConnection(_ a: String, _ b: String) -> Bool { true }
}

/// Stores on a real server, answering synchronously.
struct StoreFixture {
    let redis: ScriptRedis
    let link: ScriptRedisLink
    let channels: RedisChannelStore
    let community: RedisCommunityStore
    let relay: OutboxRelay
    var logged: [String] { logs.lines }
    private let logs = Lines()

    final class Lines { var lines: [String] = [] }

    init(cluster: Bool = false, settings: StoreSettings = StoreFixture.settings) throws {
        redis = try ScriptRedis()
        link = ScriptRedisLink(redis, cluster: cluster)
        let logs = self.logs
        let log: (String) -> Void = { logs.lines.append($0) }
        channels = RedisChannelStore(redis: link, settings: settings, log: log)
        relay = OutboxRelay(redis: link, settings: settings, log: log, schedule: nil)
        community = RedisCommunityStore(redis: link, settings: settings, relay: relay, log: log)
    }

    static var settings: StoreSettings {
        var s = StoreSettings()
        s.historyUserSize = 50
        s.historyGroupSize = 50
        s.historyProductSize = 50
        s.historyTTLSeconds = 600
        s.newEpoch = { "e1" }
        return s
    }

    /// The value a store call answered with (they answer synchronously here).
    func value<T>(_ call: (@escaping (StoreResult<T>) -> Void) -> Void, file: StaticString = #filePath, line: UInt = #line) throws -> T {
        var out: StoreResult<T>?
        call { out = $0 }
        guard let out else { throw StoreFixtureError.noAnswer }
        return try out.get()
    }

    enum StoreFixtureError: Error { case noAnswer }

    /// The pushes held in a channel's log, oldest first.
    func pushes(_ channel: String) -> [String] {
        (redis.call(["XRANGE", "gw:{\(channel)}:log", "-", "+"]).array ?? []).compactMap { $0.array?.last?.array?.last?.text }
    }
}
