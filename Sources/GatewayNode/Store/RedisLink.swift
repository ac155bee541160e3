import GatewayIO

/// What the store needs from Redis, whether one server (`RedisClient`) or a Redis Cluster
/// (`RedisClusterClient`, which routes each call by the hash slot of its key). Everything
/// runs and calls back on the loop thread; every callback runs exactly once, with
/// `.disconnected` when the link went away first.
protocol RedisLink: AnyObject {
    /// Every connection is up, its handshake done and every script loaded.
    var isReady: Bool { get }
    var isCluster: Bool { get }
    var reconnects: Int { get }
    /// Seconds of the last PING round trip.
    var lastRoundTrip: Double { get }

    var onReady: (() -> Void)? { get set }
    /// Redis went away; in-flight commands have already failed.
    var onLost: ((String) -> Void)? { get set }
    var onProblem: ((String) -> Void)? { get set }
    /// Redis must not be used (eviction policy at first start): the node should stop.
    var onFatal: ((String) -> Void)? { get set }
    /// Sharded pub/sub: kind (`smessage`, `ssubscribe`, `sunsubscribe`), channel, payload.
    var onPubSub: ((String, [UInt8], [UInt8]) -> Void)? { get set }

    func start()
    func stop()

    /// One command, sent to the server that owns `key` (nil: any).
    func send(_ args: [RedisArgument], key: String?, _ callback: @escaping (RedisReply) -> Void)
    /// EVALSHA of a script loaded at connect (EVAL again after a NOSCRIPT), sent to the
    /// server that owns `keys[0]`; every key of one script shares a hash slot.
    func run(_ script: LuaScript, keys: [String], args: [RedisArgument], _ callback: @escaping (RedisReply) -> Void)
    /// SSUBSCRIBE / SUNSUBSCRIBE: answers come through `onPubSub`.
    func subscribe(_ names: [String])
    func unsubscribe(_ names: [String])
    /// `done(true)` once `replicas` replicas of the server owning `key` hold every write
    /// answered on its connection so far (`redis.durability replicas:N`).
    func awaitReplicas(_ replicas: Int, timeoutMs: Int, key: String?, _ done: @escaping (Bool) -> Void)
    /// True when calls for `a` and `b` go down one connection, so a second call pipelined
    /// behind the first is applied after it (always on one server).
    func sameConnection(_ a: String, _ b: String) -> Bool
}
