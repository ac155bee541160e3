import Foundation
import GatewayTestSupport

/// One gateway node as the load tester reaches it.
struct Endpoint: Codable {
    var name: String
    var host: String
    var port: Int
    var pid: Int32?

    var wsURL: String { "ws://\(host):\(port)/ws" }

    init(name: String, host: String, port: Int, pid: Int32? = nil) {
        self.name = name
        self.host = host
        self.port = port
        self.pid = pid
    }

    init?(wsURL: String, name: String) {
        guard wsURL.hasPrefix("ws://") else { return nil }
        let rest = wsURL.dropFirst(5)
        let authority = rest.split(separator: "/", maxSplits: 1).first ?? ""
        let parts = authority.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]), port > 0, port < 65536 else { return nil }
        self.init(name: name, host: String(parts[0]), port: port)
    }
}

/// Redis plus gateway nodes: spawned and owned by this run, or found running.
/// Processes and endpoints a fault thread may restart are under `restartLock`.
final class Cluster: @unchecked Sendable {
    /// A restarted node keeps its name and port; only its pid changes.
    private(set) var endpoints: [Endpoint]
    let shopKey: String
    let secret: String
    let spawned: Bool
    let logDir: String
    /// The one redis-server (restartable on its port and AOF), or nil with `--redis-cluster`.
    private let redis: RedisServer?
    /// The local Redis Cluster of `--redis-cluster N`.
    let redisCluster: RedisClusterLauncher?
    /// The master the Redis faults hit on a cluster (SIGKILL: its replica takes over).
    private var faultPort: Int?
    private var nodes: [ChildProcess]
    private let redisDir: String?
    /// How each node was started, so the chaos scenario can start it again alike.
    private var nodeLaunch: [(path: String, args: [String], env: [String: String], log: String)] = []
    /// Guards `redis`, `nodes` and `endpoints` while a fault thread restarts processes.
    private let restartLock = NSLock()
    /// Redis of a server this run only watches (see `foreign`).
    private let watchedRedisPid: pid_t?

    private init(endpoints: [Endpoint], shopKey: String, secret: String, spawned: Bool, logDir: String,
                 redis: RedisServer?, redisCluster: RedisClusterLauncher? = nil, nodes: [ChildProcess], redisDir: String?,
                 watchedRedisPid: pid_t? = nil) {
        self.watchedRedisPid = watchedRedisPid
        self.redisCluster = redisCluster
        self.endpoints = endpoints
        self.shopKey = shopKey
        self.secret = secret
        self.spawned = spawned
        self.logDir = logDir
        self.redis = redis
        self.nodes = nodes
        self.redisDir = redisDir
    }

    var redisPid: pid_t? { redis?.pid ?? watchedRedisPid }
    /// The single server's port; on a cluster, the master that owns slot 0 (the one Redis faults hit).
    var redisPort: Int? {
        if let redisCluster { return restartLock.withLock { faultPort } ?? (try? redisCluster.masterFor(slot: 0)) }
        return redis?.port
    }
    /// What the nodes get as `--redis`.
    var redisURL: String? { redisCluster?.url ?? redis.map { "redis://127.0.0.1:\($0.port)" } }

    /// A server that is not a gateway and that this run did not start (Nchan for
    /// `fanout --target nchan`): its processes and Redis are only watched for CPU and RSS.
    static func foreign(endpoints: [Endpoint], redisPid: pid_t?, logDir: String) -> Cluster {
        Cluster(endpoints: endpoints, shopKey: "", secret: "", spawned: false, logDir: logDir,
                redis: nil, nodes: [], redisDir: nil, watchedRedisPid: redisPid)
    }

    static func start(_ options: ClusterOptions, logDir: String, progress: Progress) throws -> Cluster {
        if options.external {
            var eps: [Endpoint] = []
            for (i, url) in options.urls.enumerated() {
                var ep = Endpoint(wsURL: url, name: "node\(i + 1)")!
                ep.pid = Machine.pidListening(port: ep.port)
                guard HTTPConnection.get(host: ep.host, port: ep.port, path: "/healthz") != nil else {
                    throw SpawnError("\(url): no gateway answers /healthz")
                }
                eps.append(ep)
            }
            return Cluster(endpoints: eps, shopKey: options.shopKey!, secret: options.secret!, spawned: false,
                           logDir: logDir, redis: nil, nodes: [], redisDir: nil)
        }
        return try spawn(options, logDir: logDir, progress: progress)
    }

    private static func spawn(_ options: ClusterOptions, logDir: String, progress: Progress) throws -> Cluster {
        let gateway = options.gateway ?? (URL(fileURLWithPath: Machine.executablePath).deletingLastPathComponent().path + "/gateway")
        guard FileManager.default.isExecutableFile(atPath: gateway) else {
            throw SpawnError("no gateway binary at \(gateway): build it (swift build -c release --product gateway) or pass --gateway")
        }
        let redisDir = NSTemporaryDirectory() + "loadtest-redis-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        Children.addScratch(redisDir)
        // Tied to this process (PDEATHSIG): Redis goes with the load tester however it ends.
        var redis: RedisServer?
        var redisCluster: RedisClusterLauncher?
        if let masters = options.redisCluster {
            let started = Clock.now()
            redisCluster = try RedisClusterLauncher(masters: masters, dir: URL(fileURLWithPath: redisDir),
                                                    appendOnly: options.redisAof, fsyncAlways: options.redisFsyncAlways)
            progress.note("started a Redis Cluster of \(masters) masters and \(masters) replicas in \(Fmt.num(Clock.now() - started, 1)) s: \(redisCluster!.url)")
        } else {
            let server = try RedisServer(dir: URL(fileURLWithPath: redisDir), appendOnly: options.redisAof, fsyncAlways: options.redisFsyncAlways,
                                         debug: options.redisDebugCommand, extra: ["--protected-mode", "yes"],
                                         logURL: URL(fileURLWithPath: "\(logDir)/redis.log"))
            server.removesFolder = false
            redis = server
        }
        let redisURL = redisCluster?.url ?? "redis://127.0.0.1:\(redis!.port)"
        var cluster: Cluster?
        var nodes: [ChildProcess] = []
        do {
            let secret = Machine.randomHex(bytes: 24)
            let shopKey = "shop-" + Machine.randomHex(bytes: 16)
            var env = [
                "GATEWAY_AUTH_SECRET": secret, "GATEWAY_API_SHOP_KEY": shopKey,
                "GATEWAY_PAYMENTS_SECRET": Machine.randomHex(bytes: 16), "GATEWAY_KEYS_SECRET": Machine.randomHex(bytes: 32),
            ]
            for kv in options.nodeEnv {
                let eq = kv.firstIndex(of: "=")!
                env[String(kv[..<eq])] = String(kv[kv.index(after: eq)...])
            }
            // Built-in defaults plus the environment, unless a settings file is named.
            let config = options.gatewayConfig.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? "\(logDir)/gateway.json"
            if options.gatewayConfig == nil { try Data("{}\n".utf8).write(to: URL(fileURLWithPath: config)) }
            var eps: [Endpoint] = []
            var launches: [(path: String, args: [String], env: [String: String], log: String)] = []
            for k in 1...options.spawnCount {
                let port = freePort()
                let name = "n\(k)"
                let log = "\(logDir)/node-\(name).log"
                let args = [
                    "serve", "--config", config, "--host", "127.0.0.1", "--port", String(port), "--node", name,
                    "--redis", redisURL,
                ]
                let node = try ChildProcess.spawn(gateway, args, name: "node \(name)", kind: .node, environment: env, stdout: .file(log), stderr: .file(log))
                launches.append((gateway, args, env, log))
                nodes.append(node)
                eps.append(Endpoint(name: name, host: "127.0.0.1", port: port, pid: node.pid))
            }
            for (ep, node) in zip(eps, nodes) { try waitReady(ep, node) }
            cluster = Cluster(endpoints: eps, shopKey: shopKey, secret: secret, spawned: true, logDir: logDir,
                              redis: redis, redisCluster: redisCluster, nodes: nodes, redisDir: redisDir)
            cluster!.nodeLaunch = launches
            // Throwaway secrets, so a person can poke at the nodes while the run goes on.
            let info: [String: Any] = ["redis": redisURL, "shopKey": shopKey, "secret": secret,
                                       "nodes": eps.map { ["name": $0.name, "url": $0.wsURL, "pid": Int($0.pid ?? 0)] }]
            if let data = try? JSONSerialization.data(withJSONObject: info, options: [.prettyPrinted, .sortedKeys]) {
                try? data.write(to: URL(fileURLWithPath: "\(logDir)/cluster.json"))
            }
            progress.note("spawned \(redisCluster == nil ? "redis-server :\(redis!.port)" : "the Redis Cluster") and \(eps.count) gateway node(s): "
                + eps.map { "\($0.name) :\($0.port) (pid \($0.pid!))" }.joined(separator: ", ") + "; logs in \(logDir)")
            return cluster!
        } catch {
            nodes.forEach { $0.stop(grace: 3) }
            redis?.stop(grace: 3)
            redisCluster?.stop()
            Children.removeScratch(redisDir)
            throw error
        }
    }

    private static func waitReady(_ ep: Endpoint, _ node: ChildProcess) throws {
        let deadline = Clock.now() + 20
        while Clock.now() < deadline {
            if let code = node.poll() {
                throw SpawnError("gateway node \(ep.name) exited with \(code) at start:\n\(node.logTail())")
            }
            if let r = HTTPConnection.get(host: ep.host, port: ep.port, path: "/readyz", timeout: 1), r.status == 200 { return }
            usleep(100_000)
        }
        throw SpawnError("gateway node \(ep.name) was not ready within 20 s:\n\(node.logTail())")
    }

    /// Spawned nodes that have exited, with the end of their logs.
    func deadNodes() -> [String] {
        restartLock.withLock { nodes }.compactMap { n in n.poll().map { "\(n.name) exited with \($0): \(n.logTail(lines: 3))" } }
    }

    /// A gauge or counter from a node's /metrics.
    func metric(_ index: Int, _ name: String) -> Double? {
        let ep = endpoints[index]
        guard let r = HTTPConnection.get(host: ep.host, port: ep.port, path: "/metrics", timeout: 3), r.status == 200 else { return nil }
        for line in r.text.split(separator: "\n") where line.hasPrefix(name + " ") || line.hasPrefix(name + "{") {
            if let v = line.split(separator: " ").last.flatMap({ Double($0) }) { return v }
        }
        return nil
    }

    /// Lines of node logs that name a descriptor or memory problem.
    func logComplaints() -> [String] {
        var out: [String] = []
        for n in nodes {
            guard let path = n.logPath, let text = try? String(contentsOfFile: path, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") {
                let l = line.lowercased()
                if l.contains("too many open files") || l.contains("emfile") || l.contains("cannot allocate") || l.contains("out of memory") {
                    out.append("\(n.name): \(line)")
                    if out.count > 5 { return out }
                }
            }
        }
        return out
    }

    func stop() {
        let nodes = restartLock.withLock { self.nodes }
        // Nodes first: they close their clients (1001) and the TIME_WAIT lands on their side.
        for n in nodes { n.signal(SIGTERM) }
        for n in nodes { n.stop(grace: 12) }
        redis?.stop(grace: 5)
        redisCluster?.stop()
        if let redisDir { Children.removeScratch(redisDir) }
    }
}

// MARK: Faults (the chaos scenario)

extension Cluster {
    /// A spawned node's process, for its pid and exit status.
    func node(_ i: Int) -> ChildProcess? { restartLock.withLock { nodes.indices.contains(i) ? nodes[i] : nil } }

    /// SIGKILL a spawned node (no drain, no close frames) and reap it. Returns its exit status.
    @discardableResult
    func killNode(_ i: Int) -> Int32? {
        guard let n = node(i) else { return nil }
        n.signal(SIGKILL)
        return n.waitExit(timeout: 5)
    }

    /// Starts node `i` again on its port, with its settings; waits for /readyz.
    func restartNode(_ i: Int) throws {
        guard spawned, nodeLaunch.indices.contains(i) else { throw SpawnError("node \(i) was not spawned by this run") }
        let l = nodeLaunch[i]
        let ep = endpoints[i]
        // The port may sit in TIME_WAIT from the killed process: the gateway binds with SO_REUSEADDR, so retry briefly.
        let child = try Self.respawn("node \(ep.name)") {
            try ChildProcess.spawn(l.path, l.args, name: "node \(ep.name)", kind: .node, environment: l.env,
                                   stdout: .file(l.log), stderr: .file(l.log))
        } ready: { try Self.waitReady(ep, $0) }
        restartLock.withLock {
            nodes[i] = child
            endpoints[i].pid = child.pid
        }
    }

    /// Spawns and waits until `ready` passes, up to 20 times (a port still in TIME_WAIT, a
    /// slow start); a try that fails is stopped before the next.
    private static func respawn(_ what: String, spawn: () throws -> ChildProcess,
                                ready: (ChildProcess) throws -> Void) throws -> ChildProcess {
        var lastError = ""
        for _ in 0..<20 {
            let child = try spawn()
            do {
                try ready(child)
                return child
            } catch {
                lastError = "\(error)"
                child.stop(grace: 1)
                usleep(250_000)
            }
        }
        throw SpawnError("\(what) did not come back: \(lastError)")
    }

    /// SIGKILL Redis (a crash: only what the AOF holds survives) and reap it; on a cluster,
    /// the master of slot 0 (its replica takes over).
    func killRedis() {
        if let redisCluster, let port = redisPort {
            restartLock.withLock { faultPort = port }
            redisCluster.kill(port: port)
            return
        }
        redis?.kill()
    }

    /// `SHUTDOWN NOSAVE` (a clean stop without an RDB; the AOF is flushed) and wait for the exit.
    func shutdownRedis() throws {
        guard let port = redisPort else { return }
        if redisCluster != nil { restartLock.withLock { faultPort = port } }
        let probe = try RedisProbe(url: "redis://127.0.0.1:\(port)", timeout: 5)
        _ = try? probe.call(["SHUTDOWN", "NOSAVE"])   // the connection just closes on success
        if let redisCluster {
            try waitUntil(timeout: 10, "redis-server :\(port) exited after SHUTDOWN NOSAVE") { !redisCluster.livePorts.contains(port) }
        } else if redis?.waitExited(timeout: 10) == false {
            throw SpawnError("redis-server did not exit after SHUTDOWN NOSAVE")
        }
    }

    /// Starts Redis again on the same port and data folder (it loads its AOF); waits until it
    /// serves (on a cluster: until the cluster is healthy, the node back as a replica).
    func restartRedis() throws {
        if let redisCluster {
            guard let port = restartLock.withLock({ faultPort }) else { throw SpawnError("no cluster node was stopped") }
            try redisCluster.restart(port: port)
            try redisCluster.waitHealthy(timeout: 30)
            restartLock.withLock { faultPort = nil }
            return
        }
        guard let redis else { throw SpawnError("redis was not spawned by this run") }
        var lastError = ""
        // The port may sit in TIME_WAIT briefly after a kill.
        for _ in 0..<20 {
            do { try redis.start(); return } catch {
                lastError = "\(error)"
                redis.stop(grace: 1)
                usleep(250_000)
            }
        }
        throw SpawnError("redis-server did not come back: \(lastError)")
    }

    /// True when every node answers /readyz 200 (Redis reachable from each).
    func allReady(timeout: Double = 1) -> Bool {
        endpoints.allSatisfy { ep in HTTPConnection.get(host: ep.host, port: ep.port, path: "/readyz", timeout: timeout)?.status == 200 }
    }
}
