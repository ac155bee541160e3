import Foundation
import GatewayRedis

/// A real local Redis Cluster: `masters` masters with one replica each, every node a
/// `RedisServer` (tied to this process, durable AOF, `cluster-node-timeout` 1 s so a killed
/// master's replica takes over within a few seconds), joined by `redis-cli --cluster create`.
/// With a `password`, every node requires it (`requirepass`, and `masterauth` for its replication).
/// Shared with fault threads: `ports` and `servers` change under `lock` (hence unchecked Sendable).
public final class RedisClusterLauncher: @unchecked Sendable {
    public enum Role: String, Sendable { case master, replica }

    /// One node as the cluster itself reports it (`CLUSTER NODES`).
    public struct Node: Sendable, CustomStringConvertible {
        public let id: String
        public let port: Int
        public let role: Role
        /// The master's id, for a replica.
        public let masterID: String?
        public let slots: [ClosedRange<Int>]
        public let failed: Bool
        public var description: String { "\(role) :\(port)\(slots.isEmpty ? "" : " slots \(slots.map { "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ","))")" }
    }

    public let masterCount: Int
    /// Every node's `requirepass` (and `masterauth`); the launcher's own calls AUTH with it.
    public let password: String?
    /// Parent of every node's folder; removed by `stop()`.
    public let dir: URL
    /// Every node's port, in launch order.
    public private(set) var ports: [Int] = []
    private var servers: [Int: RedisServer] = [:]
    private let lock = NSLock()

    /// Seeds for the gateway's `--redis`: every node, so it can start whichever is down.
    public var url: String { url(password: password) }

    /// `url` with another password (or none), e.g. to see a wrong one refused.
    public func url(password: String?) -> String {
        "redis+cluster://" + (password.map { ":\($0)@" } ?? "") + ports.map { "127.0.0.1:\($0)" }.joined(separator: ",")
    }

    /// redis-cli arguments that authenticate, when the nodes have a password.
    private var cliAuth: [String] { password.map { ["-a", $0, "--no-auth-warning"] } ?? [] }

    /// Starts the nodes, creates the cluster and waits until it is healthy.
    /// - Parameter dir: where the node folders go (default: a fresh folder under /tmp).
    public init(masters: Int = 3, dir: URL? = nil, nodeTimeoutMs: Int = 1000, appendOnly: Bool = true,
                fsyncAlways: Bool = true, password: String? = nil, timeout: Double = 60) throws {
        precondition(masters >= 3, "redis-cli --cluster create needs at least 3 masters")
        masterCount = masters
        self.password = password
        self.dir = dir ?? URL(fileURLWithPath: "/tmp").appendingPathComponent("gw-cluster-\(UUID().uuidString.prefix(8))")
        // Another process may take a free port before its server binds it: then again on new ports.
        var attempt = 1
        while true {
            do {
                try launch(nodeTimeoutMs: nodeTimeoutMs, appendOnly: appendOnly, fsyncAlways: fsyncAlways, timeout: timeout)
                return
            } catch {
                stop()
                // A server that exited at start: most likely its port was taken meanwhile.
                if attempt == 3 || !"\(error)".contains("at start") { throw error }
                attempt += 1
            }
        }
    }

    private func launch(nodeTimeoutMs: Int, appendOnly: Bool, fsyncAlways: Bool, timeout: Double) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var ports: [Int] = []
        while ports.count < masterCount * 2 {
            let p = freePort()
            // The cluster bus listens on port + 10000: both must be free.
            if p + 10000 < 65536, !ports.contains(p), Self.portFree(p + 10000) { ports.append(p) }
        }
        lock.withLock { self.ports = ports }
        for port in ports {
            let nodeDir = dir.appendingPathComponent(String(port))
            let server = try RedisServer(port: port, dir: nodeDir, appendOnly: appendOnly, fsyncAlways: fsyncAlways, extra: [
                "--cluster-enabled", "yes", "--cluster-config-file", nodeDir.appendingPathComponent("nodes-\(port).conf").path,
                "--cluster-node-timeout", String(nodeTimeoutMs),
                // A replica's first sync (and its resync after a failover) starts at once, not after 5 s.
                "--repl-diskless-sync-delay", "0",
            ] + (password.map { ["--requirepass", $0, "--masterauth", $0] } ?? []), auth: password.map { ["-a", $0] } ?? [], start: false)
            server.removesFolder = false
            lock.withLock { servers[port] = server }
            try server.spawn()
        }
        for port in ports { try servers[port]!.waitReady(timeout: 15) }
        try create()
        try waitHealthy(timeout: timeout)
    }

    private static func portFree(_ port: Int) -> Bool {
        guard let fd = try? connectLoopback(port: port, timeout: 1) else { return true }
        close(fd)
        return false
    }

    private func create() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try RedisServer.binary("redis-cli"))
        p.arguments = cliAuth + ["--cluster", "create"] + ports.map { "127.0.0.1:\($0)" } + ["--cluster-replicas", "1", "--cluster-yes"]
        let out = dir.appendingPathComponent("create.log")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        let handle = try FileHandle(forWritingTo: out)
        defer { try? handle.close() }
        p.standardOutput = handle
        p.standardError = handle
        p.standardInput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw TestError("redis-cli --cluster create failed (\(p.terminationStatus)): \((try? String(contentsOf: out, encoding: .utf8)) ?? "")")
        }
    }

    /// One command on a fresh connection to the node on `port` (AUTHenticated when the nodes have a password).
    public func call(port: Int, _ args: [String], timeout: Double = 5) throws -> RESP {
        try RedisProbe.call(port: port, args, timeout: timeout, password: password)
    }

    /// `redis-cli` against the node on `port` (authenticated); its output, stdout and stderr.
    @discardableResult
    public func cli(_ args: [String], port: Int) -> String {
        guard let server = lock.withLock({ servers[port] }) else { return "no cluster node on \(port)" }
        return server.cli(args)
    }

    /// Ports of the nodes whose process runs now.
    public var livePorts: [Int] { lock.withLock { ports.filter { servers[$0]?.isRunning == true } } }

    /// The process of the node on `port`, while it runs.
    public func pid(port: Int) -> pid_t? { lock.withLock { servers[port] }?.pid }

    /// The nodes as a live node sees them (roles change with failovers).
    public func nodes() throws -> [Node] {
        var lastError: Error = TestError("no live cluster node")
        for port in livePorts {
            do {
                guard let text = try call(port: port, ["CLUSTER", "NODES"]).text else { continue }
                return Self.parseNodes(text)
            } catch { lastError = error }
        }
        throw lastError
    }

    static func parseNodes(_ text: String) -> [Node] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ").map(String.init)
            guard f.count >= 8, let portText = f[1].split(separator: "@").first?.split(separator: ":").last,
                  let port = Int(portText) else { return nil }
            let flags = f[2].split(separator: ",")
            let slots: [ClosedRange<Int>] = f.dropFirst(8).compactMap { s in
                if s.hasPrefix("[") { return nil }  // a slot being migrated
                let ends = s.split(separator: "-").compactMap { Int($0) }
                return ends.count == 2 ? ends[0]...ends[1] : ends.count == 1 ? ends[0]...ends[0] : nil
            }
            return Node(id: f[0], port: port, role: flags.contains("master") ? .master : .replica,
                        masterID: f[3] == "-" ? nil : f[3], slots: slots, failed: flags.contains("fail"))
        }
    }

    /// Current masters (not failed), by slot order.
    public func masters() throws -> [Node] {
        try nodes().filter { $0.role == .master && !$0.failed && !$0.slots.isEmpty }.sorted { $0.slots[0].lowerBound < $1.slots[0].lowerBound }
    }

    public func replicas() throws -> [Node] { try nodes().filter { $0.role == .replica } }

    /// The master that serves `slot` now.
    public func master(ofSlot slot: Int) throws -> Node {
        guard let m = try masters().first(where: { $0.slots.contains { $0.contains(slot) } }) else {
            throw TestError("no master serves slot \(slot)")
        }
        return m
    }

    /// The port of the master that serves `slot` now.
    public func masterFor(slot: Int) throws -> Int { try master(ofSlot: slot).port }

    public func masterFor(key: String) throws -> Int { try masterFor(slot: HashSlot.of(key)) }

    /// SIGKILL a node (a crash) and reap it.
    public func kill(port: Int) {
        lock.withLock { servers[port] }?.kill()
    }

    /// Starts a node again on its port and folder (it rejoins from its nodes.conf and AOF).
    public func restart(port: Int) throws {
        guard let server = lock.withLock({ servers[port] }) else { throw TestError("no cluster node on \(port)") }
        try server.start(timeout: 15)
    }

    /// FLUSHALL on every master, so a test starts on an empty cluster.
    public func flushAll() throws {
        for m in try masters() {
            let reply = try call(port: m.port, ["FLUSHALL"])
            guard reply == .simple("OK") else { throw TestError("FLUSHALL on \(m.port): \(reply)") }
        }
    }

    /// FLUSHALL on every master of a cluster this process did not start (`redis+cluster://h:p,...`,
    /// no credentials), as seen from the first seed that answers.
    public static func flushAll(url: String) throws {
        guard url.hasPrefix("redis+cluster://") else { throw TestError("not a redis+cluster:// URL: \(url)") }
        let seeds = url.dropFirst("redis+cluster://".count).split(separator: ",").compactMap { $0.split(separator: ":").last.flatMap { Int($0) } }
        guard let text = seeds.lazy.compactMap({ try? RedisProbe.call(port: $0, ["CLUSTER", "NODES"]).text }).first else {
            throw TestError("no seed of \(url) answers CLUSTER NODES")
        }
        for m in parseNodes(text) where m.role == .master && !m.failed && !m.slots.isEmpty {
            let reply = try RedisProbe.call(port: m.port, ["FLUSHALL"])
            guard reply == .simple("OK") else { throw TestError("FLUSHALL on \(m.port): \(reply)") }
        }
    }

    /// Waits until every live node says `cluster_state:ok` and sees every slot served,
    /// and every live replica is linked to its master (e.g. after a failover or a restart).
    public func waitHealthy(timeout: Double = 30) throws {
        var why = "not checked yet"
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let problem = healthProblem() { why = problem } else { return }
            usleep(100_000)
        }
        throw TestError("cluster not healthy within \(timeout) s: \(why)")
    }

    /// Why the cluster is not healthy now, or nil.
    public func healthProblem() -> String? {
        let live = livePorts
        if live.isEmpty { return "no node runs" }
        for port in live {
            guard let info = try? call(port: port, ["CLUSTER", "INFO"], timeout: 2).text else { return ":\(port) does not answer CLUSTER INFO" }
            if !info.contains("cluster_state:ok") { return ":\(port) cluster_state is not ok" }
            if !info.contains("cluster_slots_ok:\(HashSlot.count)") { return ":\(port) does not see every slot ok" }
            guard let repl = try? call(port: port, ["INFO", "replication"], timeout: 2).text else { return ":\(port) does not answer INFO" }
            if repl.contains("role:slave"), !repl.contains("master_link_status:up") { return "replica :\(port) not linked to its master" }
        }
        // Every live node sees the same masters serving the same slots, all of them alive
        // (a restarted old master believes it still serves its slots until gossip corrects it).
        var agreed: [Int: [ClosedRange<Int>]]?
        for port in live {
            guard let text = try? call(port: port, ["CLUSTER", "NODES"], timeout: 2).text else { return ":\(port) does not answer CLUSTER NODES" }
            let view = Self.parseNodes(text)
            // A restarted old master shows for a while as a failed master before it is known as a replica.
            if let stale = view.first(where: { live.contains($0.port) && ($0.failed || ($0.role == .master && $0.slots.isEmpty)) }) {
                return ":\(port) sees :\(stale.port) as \(stale.failed ? "failed" : "a master without slots")"
            }
            let masters = view.filter { $0.role == .master && !$0.slots.isEmpty && !$0.failed }
            if masters.count != masterCount { return ":\(port) sees \(masters.count) masters serving slots, expected \(masterCount)" }
            if let dead = masters.first(where: { !live.contains($0.port) }) { return ":\(port) sees the dead node :\(dead.port) serving slots" }
            let serving = Dictionary(uniqueKeysWithValues: masters.map { ($0.port, $0.slots) })
            if let agreed, agreed != serving { return "nodes disagree on who serves which slots" }
            agreed = serving
        }
        // A restarted old master is for a moment a master without slots before it turns replica.
        for port in live where agreed?[port] == nil {
            guard let repl = try? call(port: port, ["INFO", "replication"], timeout: 2).text, repl.contains("role:slave") else {
                return ":\(port) serves no slots and is not a replica yet"
            }
        }
        return nil
    }

    /// Kills every node and removes their folders (nothing in them outlives the cluster; a
    /// SIGTERMed master would wait up to 10 s for replicas stopping beside it). Idempotent.
    public func stop() {
        let all: [RedisServer] = lock.withLock {
            defer { servers = [:] }
            return Array(servers.values)
        }
        all.forEach { $0.kill() }
        try? FileManager.default.removeItem(at: dir)
    }

    deinit { stop() }
}
