import Foundation

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
final class Cluster {
    /// A restarted node keeps its name and port; only its pid changes.
    private(set) var endpoints: [Endpoint]
    let shopKey: String
    let secret: String
    let spawned: Bool
    let logDir: String
    private var redis: ChildProcess?
    private var nodes: [ChildProcess]
    private let redisDir: String?
    /// How each process was started, so the chaos scenario can start it again alike.
    private var redisLaunch: (path: String, args: [String], log: String, port: Int)?
    private var nodeLaunch: [(path: String, args: [String], env: [String: String], log: String)] = []
    /// Guards `redis`, `nodes` and `endpoints` while a fault thread restarts processes.
    private let restartLock = NSLock()
    /// Redis of a server this run only watches (see `foreign`).
    private let watchedRedisPid: pid_t?

    private init(endpoints: [Endpoint], shopKey: String, secret: String, spawned: Bool, logDir: String,
                 redis: ChildProcess?, nodes: [ChildProcess], redisDir: String?, watchedRedisPid: pid_t? = nil) {
        self.watchedRedisPid = watchedRedisPid
        self.endpoints = endpoints
        self.shopKey = shopKey
        self.secret = secret
        self.spawned = spawned
        self.logDir = logDir
        self.redis = redis
        self.nodes = nodes
        self.redisDir = redisDir
    }

    var redisPid: pid_t? { restartLock.withLock { redis?.pid } ?? watchedRedisPid }
    var redisPort: Int? { redisLaunch?.port }

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
        guard let redisServer = findInPath("redis-server") else {
            throw SpawnError("redis-server not found in PATH: install it (apt-get install redis-server)")
        }
        let redisDir = NSTemporaryDirectory() + "loadtest-redis-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        try FileManager.default.createDirectory(atPath: redisDir, withIntermediateDirectories: true)
        Children.addScratch(redisDir)
        let redisPort = try Machine.freePort()
        var redisArgs = [
            "--port", String(redisPort), "--bind", "127.0.0.1", "--dir", redisDir,
            "--appendonly", options.redisAof ? "yes" : "no", "--appendfsync", options.redisFsyncAlways ? "always" : "everysec", "--save", "",
            "--logfile", "\(logDir)/redis.log", "--daemonize", "no", "--protected-mode", "yes",
        ]
        // DEBUG SLEEP (Redis 7 refuses DEBUG unless enabled; `local` keeps it to loopback).
        if options.redisDebugCommand { redisArgs += ["--enable-debug-command", "local"] }
        let redis = try ChildProcess.spawn(redisServer, redisArgs, name: "redis", kind: .redis, stderr: .file("\(logDir)/redis.log"))
        var cluster: Cluster?
        var nodes: [ChildProcess] = []
        do {
            try waitForRedis(port: redisPort, process: redis)
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
                let port = try Machine.freePort()
                let name = "n\(k)"
                let log = "\(logDir)/node-\(name).log"
                let args = [
                    "serve", "--config", config, "--host", "127.0.0.1", "--port", String(port), "--node", name,
                    "--redis", "redis://127.0.0.1:\(redisPort)",
                ]
                let node = try ChildProcess.spawn(gateway, args, name: "node \(name)", kind: .node, environment: env, stdout: .file(log), stderr: .file(log))
                launches.append((gateway, args, env, log))
                nodes.append(node)
                eps.append(Endpoint(name: name, host: "127.0.0.1", port: port, pid: node.pid))
            }
            for (ep, node) in zip(eps, nodes) { try waitReady(ep, node) }
            cluster = Cluster(endpoints: eps, shopKey: shopKey, secret: secret, spawned: true, logDir: logDir,
                              redis: redis, nodes: nodes, redisDir: redisDir)
            cluster!.redisLaunch = (redisServer, redisArgs, "\(logDir)/redis.log", redisPort)
            cluster!.nodeLaunch = launches
            // Throwaway secrets, so a person can poke at the nodes while the run goes on.
            let info: [String: Any] = ["redis": "redis://127.0.0.1:\(redisPort)", "shopKey": shopKey, "secret": secret,
                                       "nodes": eps.map { ["name": $0.name, "url": $0.wsURL, "pid": Int($0.pid ?? 0)] }]
            if let data = try? JSONSerialization.data(withJSONObject: info, options: [.prettyPrinted, .sortedKeys]) {
                try? data.write(to: URL(fileURLWithPath: "\(logDir)/cluster.json"))
            }
            progress.note("spawned redis-server :\(redisPort) and \(eps.count) gateway node(s): "
                + eps.map { "\($0.name) :\($0.port) (pid \($0.pid!))" }.joined(separator: ", ") + "; logs in \(logDir)")
            return cluster!
        } catch {
            nodes.forEach { $0.stop(grace: 3) }
            redis.stop(grace: 3)
            Children.removeScratch(redisDir)
            throw error
        }
    }

    private static func findInPath(_ name: String) -> String? {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
            + ["/usr/bin", "/usr/sbin", "/usr/local/bin"]
        return dirs.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    private static func waitForRedis(port: Int, process: ChildProcess) throws {
        let deadline = Clock.now() + 10
        while Clock.now() < deadline {
            if process.poll() != nil { throw SpawnError("redis-server exited at start:\n\(process.logTail())") }
            if redisPing(port: port) { return }
            usleep(50_000)
        }
        throw SpawnError("redis-server did not answer PING on port \(port) within 10 s")
    }

    private static func redisPing(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard ok else { return false }
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let ping = Array("PING\r\n".utf8)
        guard send(fd, ping, ping.count, Int32(MSG_NOSIGNAL)) == ping.count else { return false }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = recv(fd, &buf, buf.count, 0)
        return n > 0 && String(decoding: buf[..<n], as: UTF8.self).hasPrefix("+PONG")
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
        let (nodes, redis) = restartLock.withLock { (self.nodes, self.redis) }
        // Nodes first: they close their clients (1001) and the TIME_WAIT lands on their side.
        for n in nodes { n.signal(SIGTERM) }
        for n in nodes { n.stop(grace: 12) }
        redis?.stop(grace: 5)
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

    /// SIGKILL Redis (a crash: only what the AOF holds survives) and reap it.
    func killRedis() {
        guard let r = restartLock.withLock({ redis }) else { return }
        r.signal(SIGKILL)
        _ = r.waitExit(timeout: 5)
    }

    /// `SHUTDOWN NOSAVE` (a clean stop without an RDB; the AOF is flushed) and wait for the exit.
    func shutdownRedis() throws {
        guard let r = restartLock.withLock({ redis }), let port = redisPort else { return }
        let probe = try RedisProbe(url: "redis://127.0.0.1:\(port)", timeout: 5)
        _ = try? probe.call(["SHUTDOWN", "NOSAVE"])   // the connection just closes on success
        guard r.waitExit(timeout: 10) != nil else { throw SpawnError("redis-server did not exit after SHUTDOWN NOSAVE") }
    }

    /// Starts Redis again on the same port and data folder (it loads its AOF); waits for PING.
    func restartRedis() throws {
        guard let l = redisLaunch else { throw SpawnError("redis was not spawned by this run") }
        let child = try Self.respawn("redis-server") {
            try ChildProcess.spawn(l.path, l.args, name: "redis", kind: .redis, stderr: .file(l.log))
        } ready: { try Self.waitForRedis(port: l.port, process: $0) }
        restartLock.withLock { redis = child }
    }

    /// True when every node answers /readyz 200 (Redis reachable from each).
    func allReady(timeout: Double = 1) -> Bool {
        endpoints.allSatisfy { ep in HTTPConnection.get(host: ep.host, port: ep.port, path: "/readyz", timeout: timeout)?.status == 200 }
    }
}
