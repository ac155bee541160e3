import Foundation
import GatewayCrypto
import GatewayIO

/// How the node reaches Redis and what it says first on every connection.
struct RedisLinkConfig {
    var endpoint: RedisEndpoint
    /// ACL user (Redis 6+); nil with a password means the default user.
    var user: String?
    var password: String?
    var db: Int = 0
    /// How long the oldest command (or a connect) may wait for Redis before the link counts
    /// as lost (`redis.timeout_s`): a server that stops answering with its sockets open
    /// (SIGSTOP, a network black hole) would otherwise leave every command waiting forever.
    var stallLimitMs: Int = 10_000
    /// Loaded with SCRIPT LOAD on every command connection before it counts as up.
    var scripts: [LuaScript] = []

    /// The commands sent, in order, before a connection counts as up.
    var handshake: [[RedisArgument]] {
        var out: [[RedisArgument]] = []
        if let password { out.append(user.map { ["AUTH", $0, password] } ?? ["AUTH", password]) }
        if db != 0 { out.append(["SELECT", db]) }
        return out
    }
}

/// What the node makes of `CONFIG GET maxmemory-policy` (asked on every handshake).
enum EvictionPolicyCheck: Equatable {
    case ok
    /// Redis may evict keys: orders, keys and history could vanish silently.
    case refuse(String)
    /// CONFIG is renamed away or not allowed to this user: cannot know, go on.
    case unknown(String)

    init(_ reply: RedisReply) {
        switch reply {
        case .array(let items) where items.count >= 2:
            let policy = items[1].text ?? ""
            self = policy == "noeviction" ? .ok : .refuse(policy)
        case .error(let message):
            self = .unknown(message)
        case .disconnected:
            self = .unknown("connection lost")
        default:
            self = .unknown("unexpected reply \(reply)")
        }
    }
}

/// The node's two Redis connections — one pipelining commands and scripts, one for
/// pub/sub — kept alive with jittered exponential backoff. Either dropping counts as
/// Redis being away: both are closed (every pending reply fails at once) and opened
/// again together. A connection counts as up after AUTH and SELECT have succeeded on
/// it; the command connection also checks the eviction policy, every time (a failover may
/// land on a server that evicts). A watchdog drops both when Redis stops answering.
/// The phases are `RedisLinkState`'s; this is the glue that carries out its actions.
final class RedisClient: RedisLink {
    let loop: EventLoop
    let config: RedisLinkConfig
    private(set) var commands: RedisConnection
    private(set) var subscriber: RedisConnection
    private var state = RedisLinkState()
    var isReady: Bool { state.isReady }
    private var reconnectTimer: LoopTimer?
    private var stopped: Bool { state.phase == .stopped }
    /// Both connections were up once: from then on a bad eviction policy is retried, not fatal.
    /// Set from outside for a cluster master linked after the cluster was ready (a promoted replica).
    var hasBeenReady: Bool {
        get { state.hasBeenReady }
        set { state.hasBeenReady = newValue }
    }
    /// "cannot check maxmemory-policy" was said (once is enough).
    private var policyWarned = false
    /// Bumped on every (re)open: a WAIT only vouches for writes sent on its own connection.
    private var generation = 0

    /// Both connections are up (again).
    var onReady: (() -> Void)?
    /// Redis went away; in-flight commands have already failed.
    var onLost: ((String) -> Void)?
    /// A connection could not be made usable (refused, wrong password, bad db): the node
    /// is not ready and retries; said once per distinct reason.
    var onProblem: ((String) -> Void)?
    /// Redis must not be used (eviction policy at first start): the node should stop.
    var onFatal: ((String) -> Void)?
    var onPubSub: ((String, [UInt8], [UInt8]) -> Void)?
    var reconnects: Int { state.reconnects }
    private(set) var lastRoundTrip: Double = 0

    init(loop: EventLoop, config: RedisLinkConfig) {
        self.loop = loop
        self.config = config
        commands = RedisConnection(loop: loop, endpoint: config.endpoint)
        subscriber = RedisConnection(loop: loop, endpoint: config.endpoint)
    }

    func start() {
        execute(state.start())
        measureRoundTrip()
        watchForStalls()
    }

    func stop() {
        execute(state.stop())
    }

    private func execute(_ actions: [RedisLinkState.Action]) {
        for action in actions {
            switch action {
            case .open:
                open()
            case .closeConnections:
                closeConnections()
            case .reconnect(let range):
                reconnectTimer = loop.schedule(afterMs: Int.random(in: range)) { [weak self] in
                    guard let self else { return }
                    self.reconnectTimer = nil
                    self.execute(self.state.reconnectDue())
                }
            case .cancelReconnect:
                reconnectTimer?.cancel()
                reconnectTimer = nil
            case .ready:
                onReady?()
            case .lost(let reason):
                onLost?(reason)
            case .problem(let problem):
                onProblem?(problem)
            case .fatal(let reason):
                onFatal?(reason)
            }
        }
    }

    /// Which of the current connections `conn` is; nil for one already replaced.
    private func role(of conn: RedisConnection) -> RedisLinkState.Connection? {
        conn === commands ? .commands : conn === subscriber ? .subscriber : nil
    }

    private func open() {
        generation += 1
        commands = RedisConnection(loop: loop, endpoint: config.endpoint)
        subscriber = RedisConnection(loop: loop, endpoint: config.endpoint)
        for conn in [commands, subscriber] {
            conn.onConnect = { [weak self] c in self?.handshake(c) }
            conn.onDisconnect = { [weak self] c, reason in self?.connectionDown(c, reason) }
        }
        subscriber.onPubSub = { [weak self] kind, channel, payload in self?.onPubSub?(kind, channel, payload) }
        commands.connect()
        subscriber.connect()
    }

    /// AUTH, SELECT (and on the command connection the policy check) on a fresh
    /// connection, then it counts as up.
    private func handshake(_ conn: RedisConnection) {
        var steps = config.handshake
        let checkPolicy = conn === commands
        if checkPolicy {
            // A restarted or failed-over server may have lost its script cache.
            steps += config.scripts.map { ["SCRIPT", "LOAD", $0.source] }
            steps.append(["CONFIG", "GET", "maxmemory-policy"])
        }
        runHandshake(conn, steps[...], checkPolicy: checkPolicy)
    }

    private func runHandshake(_ conn: RedisConnection, _ steps: ArraySlice<[RedisArgument]>, checkPolicy: Bool) {
        guard let role = role(of: conn) else { return }
        guard let step = steps.first else { return execute(state.handshakeCompleted(role)) }
        let isPolicy = checkPolicy && steps.count == 1
        conn.send(step) { [weak self] reply in
            guard let self, conn === self.commands || conn === self.subscriber else { return }
            if isPolicy {
                switch EvictionPolicyCheck(reply) {
                case .ok:
                    break
                case .refuse(let policy):
                    let what = "Redis maxmemory-policy is \(policy.isEmpty ? "unset" : policy); the gateway needs noeviction (an evicted order, key or history entry would vanish silently). Run CONFIG SET maxmemory-policy noeviction on \(self.config.endpoint)"
                    return self.execute(self.state.evictionPolicyRefused(what, endpoint: "\(self.config.endpoint)"))
                case .unknown(let why):
                    if case .disconnected = reply { return self.failHandshake(conn, "connection lost during the handshake") }
                    if !self.policyWarned {
                        self.policyWarned = true
                        self.onProblem?("warning: cannot check maxmemory-policy (\(why)); make sure it is noeviction")
                    }
                }
                return self.runHandshake(conn, steps.dropFirst(), checkPolicy: checkPolicy)
            }
            if case .error(let message) = reply {
                let what = "\(step.first.map { String(decoding: $0.redisBytes, as: UTF8.self) } ?? "")"
                let reason = what == "AUTH" ? "redis authentication failed (\(message)); check the user and password in redis.url"
                    : "redis SELECT \(self.config.db) failed (\(message))"
                return self.failHandshake(conn, reason)
            }
            if reply.isFailure { return self.failHandshake(conn, "connection lost during the handshake") }
            self.runHandshake(conn, steps.dropFirst(), checkPolicy: checkPolicy)
        }
    }

    private func failHandshake(_ conn: RedisConnection, _ reason: String) {
        connectionDown(conn, reason)
    }

    private func connectionDown(_ conn: RedisConnection, _ reason: String) {
        guard role(of: conn) != nil else { return }
        execute(state.connectionDown(reason, endpoint: "\(config.endpoint)"))
    }

    /// Detaches both connections, then closes them: hiredis frees each context (now, or when
    /// the reply callback we may be in returns), every pending callback gets `.disconnected`
    /// once, and both descriptors are closed. Nothing is left waiting for replies nobody reads.
    private func closeConnections() {
        let old = [commands, subscriber]
        commands = RedisConnection(loop: loop, endpoint: config.endpoint)
        subscriber = RedisConnection(loop: loop, endpoint: config.endpoint)
        for c in old {
            c.onConnect = nil
            c.onDisconnect = nil
            c.onPubSub = nil
            c.close()
        }
    }

    /// Every tick, drops the link when a connection has waited on Redis longer than
    /// `stallLimitMs` (the oldest unanswered command, or a connect): closing both fails
    /// every pending command once with `.disconnected`, and the usual backoff reconnects.
    /// The 2 s round-trip PING keeps a command in flight on an idle node, so an idle
    /// node notices a frozen server too.
    private func watchForStalls() {
        let limit = max(config.stallLimitMs, 100)
        loop.schedule(afterMs: max(100, min(1_000, limit / 4))) { [weak self] in
            guard let self, !self.stopped else { return }
            let now = DispatchTime.now().uptimeNanoseconds
            for conn in [self.commands, self.subscriber] {
                guard let since = conn.waitingSince, now > since, now - since > UInt64(limit) * 1_000_000 else { continue }
                let seconds = limit % 1_000 == 0 ? "\(limit / 1_000)" : String(format: "%.1f", Double(limit) / 1_000)
                self.connectionDown(conn, "redis stopped answering: no reply within redis.timeout_s (\(seconds) s) on the \(conn === self.commands ? "command" : "pub/sub") connection")
                break
            }
            self.watchForStalls()
        }
    }

    private func measureRoundTrip() {
        loop.schedule(afterMs: 2_000) { [weak self] in
            guard let self, !self.stopped else { return }
            let start = DispatchTime.now().uptimeNanoseconds
            self.send(["PING"]) { reply in
                if !reply.isFailure {
                    self.lastRoundTrip = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                }
            }
            self.measureRoundTrip()
        }
    }

    func send(_ args: [RedisArgument], _ callback: @escaping (RedisReply) -> Void) {
        guard isReady else { return callback(.disconnected) }
        commands.send(args, callback)
    }

    var isCluster: Bool { false }

    func send(_ args: [RedisArgument], key: String?, _ callback: @escaping (RedisReply) -> Void) {
        send(args, callback)
    }

    func sameConnection(_ a: String, _ b: String) -> Bool { true }

    /// EVALSHA of a script loaded during the handshake. After an operator's SCRIPT FLUSH it
    /// fails with NOSCRIPT: every script sent since fails the same way and is run again with
    /// EVAL in the order of its reply, which is the order it was sent.
    func run(_ script: LuaScript, keys: [String], args: [RedisArgument], _ callback: @escaping (RedisReply) -> Void) {
        // One argument array (every order call runs two scripts): EVAL reuses it with the source.
        var argv: [RedisArgument] = []
        argv.reserveCapacity(3 + keys.count + args.count)
        argv.append("EVALSHA")
        argv.append(script.sha)
        argv.append(keys.count)
        for key in keys { argv.append(key) }
        argv.append(contentsOf: args)
        send(argv) { [weak self] reply in
            if case .error(let e) = reply, e.hasPrefix("NOSCRIPT") {
                argv[0] = "EVAL"
                argv[1] = script.source
                self?.send(argv, callback)
                return
            }
            callback(reply)
        }
    }

    func subscribe(_ names: [String]) { subscriber.pubsub("SSUBSCRIBE", names) }
    func unsubscribe(_ names: [String]) { subscriber.pubsub("SUNSUBSCRIBE", names) }

    // MARK: Replica acknowledgement (redis.durability replicas:N)

    private struct Waiter {
        let generation: Int
        let done: (Bool) -> Void
    }

    /// Waiters whose write has been answered, for the next WAIT.
    private var waitQueue: [Waiter] = []
    private var waitInFlight = false

    /// Calls `done(true)` once `replicas` replicas hold every write this node has had
    /// answered so far, `done(false)` when fewer acknowledge within `timeoutMs` or the
    /// connection changed. One WAIT is in flight at a time and covers every write answered
    /// before it was sent: WAIT blocks the command connection, so they are batched.
    func awaitReplicas(_ replicas: Int, timeoutMs: Int, key: String? = nil, _ done: @escaping (Bool) -> Void) {
        waitQueue.append(Waiter(generation: generation, done: done))
        if !waitInFlight { sendWait(replicas, timeoutMs) }
    }

    private func sendWait(_ replicas: Int, _ timeoutMs: Int) {
        let batch = waitQueue
        waitQueue = []
        // A write answered on an earlier connection is not covered by a WAIT on this one.
        let current = batch.filter { $0.generation == generation }
        for stale in batch where stale.generation != generation { stale.done(false) }
        guard !current.isEmpty else { return }
        waitInFlight = true
        send(["WAIT", replicas, timeoutMs]) { [weak self] reply in
            guard let self else { return }
            self.waitInFlight = false
            let acknowledged = (reply.int ?? -1) >= Int64(replicas)
            for waiter in current { waiter.done(acknowledged) }
            if !self.waitQueue.isEmpty { self.sendWait(replicas, timeoutMs) }
        }
    }
}
