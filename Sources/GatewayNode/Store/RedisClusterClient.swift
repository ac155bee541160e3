import Foundation
import GatewayConfig
import GatewayIO

/// A Redis Cluster reached over plain hiredis (Debian's has no cluster support): routes each
/// call by the hash slot of its key to the master that owns it. Thin glue: the bookkeeping
/// (topology, live masters, where each subscription is placed) is `ClusterLinkState`, what to
/// do with a reply is `ClusterCommandRetry`, and each master is a `RedisClient` — its command
/// and subscriber connection, handshake (AUTH, eviction policy, SCRIPT LOAD), stall watchdog
/// and reconnect backoff are the single-server link's, not a copy.
///
/// Ready means the topology covers every slot and every master's link is up. Losing a master
/// makes it not ready (`onLost`); calls for that master's slots fail at once with
/// `.disconnected` while the topology is asked again every ~400 ms, until the failover has
/// promoted its replica and the new master's link is up (`onReady`).
final class RedisClusterClient: RedisLink {
    let loop: EventLoop
    /// Credentials, stall limit and scripts for every master; its endpoint is unused.
    let config: RedisLinkConfig
    let seeds: [RedisEndpoint]
    private var state = ClusterLinkState()
    private var links: [RedisEndpoint: RedisClient] = [:]
    private var stopped = false
    private var refreshing = false
    private var refreshAgain = false
    private var refreshTimer: LoopTimer?
    /// The next seed (or known master) the topology is asked from when no master link is up.
    private var nextSeed = 0
    private var bootstrap: RedisConnection?
    private var lastProblem = ""
    private var lostMasters = 0
    private var hasBeenReady = false

    var onReady: (() -> Void)?
    var onLost: ((String) -> Void)?
    var onProblem: ((String) -> Void)?
    var onFatal: ((String) -> Void)?
    var onPubSub: ((String, [UInt8], [UInt8]) -> Void)?

    init(loop: EventLoop, config: RedisLinkConfig, seeds: [RedisEndpoint]) {
        precondition(!seeds.isEmpty, "a cluster needs at least one seed")
        self.loop = loop
        self.config = config
        self.seeds = seeds
    }

    var isReady: Bool { state.isReady }
    var isCluster: Bool { true }
    var reconnects: Int { lostMasters + links.values.reduce(0) { $0 + $1.reconnects } }
    var lastRoundTrip: Double { links.values.map(\.lastRoundTrip).max() ?? 0 }

    func start() { refreshTopology() }

    func stop() {
        stopped = true
        refreshTimer?.cancel()
        refreshTimer = nil
        bootstrap?.onDisconnect = nil
        bootstrap?.close()
        for link in links.values { link.stop() }
        links = [:]
    }

    // MARK: Topology

    /// Asks `CLUSTER SLOTS` of a live master, or else of the next seed or known master.
    private func refreshTopology() {
        guard !stopped else { return }
        guard !refreshing else { refreshAgain = true; return }
        refreshing = true
        refreshTimer?.cancel()
        refreshTimer = nil
        if let via = state.up.sorted(by: { $0.description < $1.description }).first, let link = links[via], link.isReady {
            link.send(["CLUSTER", "SLOTS"]) { [weak self] reply in self?.topologyAnswered(reply, from: via) }
        } else {
            askSeed()
        }
    }

    /// A short-lived connection (AUTH, then CLUSTER SLOTS) to a seed or a known master.
    private func askSeed() {
        var candidates = seeds
        for master in state.topology?.masters ?? [] where !candidates.contains(master) { candidates.append(master) }
        let endpoint = candidates[nextSeed % candidates.count]
        nextSeed += 1
        let conn = RedisConnection(loop: loop, endpoint: endpoint)
        bootstrap = conn
        var answered = false
        let finish: (RedisReply) -> Void = { [weak self, weak conn] reply in
            guard let self, !answered else { return }
            answered = true
            conn?.onDisconnect = nil
            conn?.close()
            if self.bootstrap === conn { self.bootstrap = nil }
            self.topologyAnswered(reply, from: endpoint)
        }
        conn.onDisconnect = { _, reason in finish(.error("connection to \(endpoint) failed: \(reason)")) }
        conn.onConnect = { [config] c in
            var steps = config.handshake[...]
            func next() {
                guard let step = steps.popFirst() else {
                    return c.send(["CLUSTER", "SLOTS"], finish)
                }
                c.send(step) { reply in
                    guard case .error(let message) = reply else { return reply.isFailure ? finish(reply) : next() }
                    let auth = step.first.map { $0.redisBytes == Array("AUTH".utf8) } ?? false
                    finish(.error(auth ? "redis authentication failed (\(message)); check the user and password in redis.url" : message))
                }
            }
            next()
        }
        // A black-holed seed must not hold the refresh up.
        _ = loop.schedule(afterMs: 2_000) { finish(.error("no answer from \(endpoint) within 2 s")) }
        conn.connect()
    }

    private func topologyAnswered(_ reply: RedisReply, from endpoint: RedisEndpoint) {
        guard !stopped else { return }
        refreshing = false
        do {
            let topology = try ClusterTopology(clusterSlots: reply, answeredBy: endpoint)
            guard !topology.masters.isEmpty else { throw RedisDecodingError.unexpected(expected: "slots", got: "none") }
            if topology.masters != state.topology?.masters {
                onProblem?("redis cluster masters: \(topology.masters.map(\.description).sorted().joined(separator: ", "))")
            }
            execute(state.topologyLoaded(topology))
            lastProblem = ""
        } catch {
            let why = if case .error(let message) = reply { message } else { "\(error)" }
            report("redis cluster topology from \(endpoint) not usable: \(why); retrying")
        }
        if refreshAgain {
            refreshAgain = false
            return refreshTopology()
        }
        // While a master is missing (down, failing over), ask again soon.
        if !state.isReady { scheduleRefresh(afterMs: Int.random(in: 250...500)) }
    }

    private func scheduleRefresh(afterMs ms: Int) {
        guard !stopped, refreshTimer == nil else { return }
        refreshTimer = loop.schedule(afterMs: ms) { [weak self] in
            self?.refreshTimer = nil
            self?.refreshTopology()
        }
    }

    private func report(_ problem: String) {
        guard problem != lastProblem else { return }
        lastProblem = problem
        onProblem?(problem)
    }

    // MARK: Actions

    private func execute(_ actions: [ClusterLinkState.Action]) {
        for action in actions {
            switch action {
            case .open(let endpoint):
                open(endpoint)
            case .close(let endpoint):
                if let link = links.removeValue(forKey: endpoint) { link.stop() }
            case .subscribe(let channels, let endpoint):
                for group in HashSlot.groupedBySlot(channels) { links[endpoint]?.subscribe(group) }
            case .unsubscribe(let channels, let endpoint):
                for group in HashSlot.groupedBySlot(channels) { links[endpoint]?.unsubscribe(group) }
            case .subscriptionsLost(let channels), .unsubscribedLocally(let channels):
                // The node hears them as Redis' own `sunsubscribe`: its hub marks the channel
                // as waiting and fills the gap from the stream on the next `ssubscribe`.
                for channel in channels { onPubSub?("sunsubscribe", Array(channel.utf8), []) }
            case .refreshTopology:
                refreshTopology()
            case .ready:
                hasBeenReady = true
                onReady?()
            case .notReady:
                lostMasters += 1
                onLost?("a redis cluster master is unavailable")
            }
        }
    }

    private func open(_ endpoint: RedisEndpoint) {
        guard links[endpoint] == nil else { return }
        var linkConfig = config
        linkConfig.endpoint = endpoint
        let link = RedisClient(loop: loop, config: linkConfig)
        // A master that appears later (a promoted replica) with a bad eviction policy makes the
        // node not ready and retried, as a failover on one server does; only at start is it fatal.
        link.hasBeenReady = hasBeenReady
        links[endpoint] = link
        link.onReady = { [weak self, weak link] in
            guard let self, let link, self.links[endpoint] === link else { return }
            self.execute(self.state.masterUp(endpoint))
        }
        link.onLost = { [weak self, weak link] reason in
            guard let self, let link, self.links[endpoint] === link else { return }
            self.report("redis cluster master \(endpoint) lost: \(reason)")
            self.execute(self.state.masterDown(endpoint))
        }
        link.onProblem = { [weak self] problem in self?.report(problem) }
        link.onFatal = { [weak self] reason in self?.onFatal?(reason) }
        link.onPubSub = { [weak self, weak link] kind, channel, payload in
            guard let self, let link, self.links[endpoint] === link else { return }
            if kind == "error" {
                let refused = self.state.subscribeRefused(String(decoding: payload, as: UTF8.self), on: endpoint)
                // Not at once: an ASK repeats until the slot's migration has ended.
                if refused.contains(.refreshTopology) { self.scheduleRefresh(afterMs: 100) }
                return
            }
            if kind == "sunsubscribe", let actions = self.state.unsubscribed(String(decoding: channel, as: UTF8.self), on: endpoint) {
                return self.execute(actions)
            }
            self.onPubSub?(kind, channel, payload)
        }
        link.start()
    }

    // MARK: Commands

    /// Sends one command (or script) to the master owning `key`'s slot and follows what the
    /// cluster answers: MOVED (refresh, resend there), ASK (ASKING, resend there), TRYAGAIN and
    /// CLUSTERDOWN (resend after a short delay within `redis.timeout_s`).
    private func dispatch(key: String?, to target: RedisEndpoint? = nil, asking: Bool = false,
                          retry: ClusterCommandRetry,
                          _ operation: @escaping (RedisClient, @escaping (RedisReply) -> Void) -> Void,
                          _ callback: @escaping (RedisReply) -> Void) {
        guard let endpoint = target ?? state.master(forKey: key), let link = links[endpoint], link.isReady else {
            // Its master is down (or a redirect points at a master not linked yet).
            if let target, nowMs < retry.deadlineMs, !stopped {
                _ = loop.schedule(afterMs: 50) { [weak self] in
                    self?.dispatch(key: key, to: target, asking: asking, retry: retry, operation, callback)
                }
                return
            }
            return callback(.disconnected)
        }
        if asking { link.send(["ASKING"]) { _ in } }
        operation(link) { [weak self] reply in
            guard let self else { return callback(reply) }
            var retry = retry
            switch retry.decide(reply, answeredBy: endpoint, nowMs: self.nowMs) {
            case .deliver:
                callback(reply)
            case .unavailable:
                callback(.disconnected)
            case .moved(_, let to):
                self.refreshTopology()
                self.dispatch(key: key, to: to, retry: retry, operation, callback)
            case .ask(_, let to):
                self.dispatch(key: key, to: to, asking: true, retry: retry, operation, callback)
            case .retry(let ms):
                _ = self.loop.schedule(afterMs: ms) { [weak self] in
                    guard let self else { return callback(.disconnected) }
                    self.dispatch(key: key, retry: retry, operation, callback)
                }
            }
        }
    }

    private var nowMs: UInt64 { DispatchTime.now().uptimeNanoseconds / 1_000_000 }
    private func newRetry() -> ClusterCommandRetry { ClusterCommandRetry(nowMs: nowMs, timeoutMs: config.stallLimitMs) }

    func send(_ args: [RedisArgument], key: String?, _ callback: @escaping (RedisReply) -> Void) {
        dispatch(key: key, retry: newRetry(), { link, done in link.send(args, done) }, callback)
    }

    func run(_ script: LuaScript, keys: [String], args: [RedisArgument], _ callback: @escaping (RedisReply) -> Void) {
        assert(Set(keys.map(HashSlot.of)).count <= 1, "\(script): every key of one script must share a hash slot: \(keys)")
        dispatch(key: keys.first, retry: newRetry(), { link, done in link.run(script, keys: keys, args: args, done) }, callback)
    }

    func subscribe(_ names: [String]) { execute(state.subscribe(names)) }
    func unsubscribe(_ names: [String]) { execute(state.unsubscribe(names)) }

    /// WAIT on the connection of the master owning `key`: it vouches for the writes answered
    /// on that connection, which is where the write it follows went.
    func awaitReplicas(_ replicas: Int, timeoutMs: Int, key: String?, _ done: @escaping (Bool) -> Void) {
        guard let endpoint = state.master(forKey: key), let link = links[endpoint], link.isReady else { return done(false) }
        link.awaitReplicas(replicas, timeoutMs: timeoutMs, key: nil, done)
    }

    func sameConnection(_ a: String, _ b: String) -> Bool {
        guard let owner = state.master(forKey: a) else { return false }
        return owner == state.master(forKey: b)
    }
}

extension RedisEndpoint {
    init(_ endpoint: RedisURL.Endpoint) {
        switch endpoint {
        case .tcp(let host, let port): self = .tcp(host: host, port: port)
        case .unix(let path): self = .unix(path: path)
        }
    }
}
