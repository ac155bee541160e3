import ArgumentParser
import Foundation

/// Where the gateway comes from: spawned here (default) or already running (`--url`).
struct ClusterOptions: ParsableArguments {
    @Option(help: "Gateway nodes to spawn; they share one private redis-server (default: 1; holiday-peak: 2).")
    var nodes: Int?

    /// Nodes to spawn when `--nodes` is not given; a scenario may set it before `run`.
    var defaultNodes = 1
    var spawnCount: Int { nodes ?? defaultNodes }

    @Option(name: .customLong("url"), help: ArgumentHelp(
        "Use an already-running node instead of spawning (repeat for several).", valueName: "ws://127.0.0.1:8080/ws"))
    var urls: [String] = []

    @Option(help: "Shop key (api.shop_key) of the nodes given with --url.")
    var shopKey: String?

    @Option(help: "auth.secret of the nodes given with --url, to mint tokens.")
    var secret: String?

    @Option(help: "The gateway binary to spawn (default: `gateway` beside this binary).")
    var gateway: String?

    @Option(help: "Settings file for spawned nodes (default: none, so a Config/gateway.json in the working folder is ignored).")
    var gatewayConfig: String?

    @Option(name: .customLong("node-env"), help: ArgumentHelp(
        "Extra environment for spawned nodes (repeatable).", valueName: "GATEWAY_KEY=value"))
    var nodeEnv: [String] = []

    @Flag(inversion: .prefixedNo, help: "Spawned redis-server keeps an AOF (fsync every second), as `gateway serve` does.")
    var redisAof = true

    @Option(name: .customLong("redis-cluster"), help: ArgumentHelp(
        "Spawned nodes share a local Redis Cluster of N masters with one replica each (3 to 16) instead of one redis-server; chaos's Redis faults then hit the master of slot 0 (its replica takes over).",
        valueName: "N"))
    var redisCluster: Int?

    var external: Bool { !urls.isEmpty }

    /// Spawned Redis fsyncs every write (`appendfsync always`): acknowledged writes survive a SIGKILL (chaos).
    var redisFsyncAlways = false
    /// Spawned Redis accepts DEBUG from loopback (chaos: `DEBUG SLEEP`).
    var redisDebugCommand = false

    func validate() throws {
        if external {
            guard shopKey != nil, secret != nil else {
                throw ValidationError("--url needs --shop-key and --secret (the nodes' api.shop_key and auth.secret)")
            }
            if redisCluster != nil { throw ValidationError("--redis-cluster starts Redis for spawned nodes: not with --url") }
            for url in urls {
                guard let ep = Endpoint(wsURL: url, name: "") else { throw ValidationError("--url \(url): expected ws://host:port/ws") }
                guard SourceAddresses.isLoopback(host: ep.host) else {
                    throw ValidationError("--url \(url): this tool only sends traffic to 127.0.0.0/8")
                }
            }
        } else {
            guard (1...64).contains(spawnCount) else { throw ValidationError("--nodes must be 1 to 64") }
            if let n = redisCluster, !(3...16).contains(n) { throw ValidationError("--redis-cluster must be 3 to 16 (masters)") }
        }
        for kv in nodeEnv where !kv.contains("=") {
            throw ValidationError("--node-env \(kv): expected KEY=value")
        }
    }

    var nodeCount: Int { external ? urls.count : spawnCount }
}

struct OutputOptions: ParsableArguments {
    @Option(help: "Folder for the JSON report and the logs of spawned processes.")
    var reportDir = "Loadtest/reports"
}

/// Worker processes: how many, and how each treats its sockets.
struct WorkerOptions: ParsableArguments {
    @Option(help: "Load-generator processes (default: one per --per-worker connections).")
    var workers: Int?

    /// lws keeps every connection's timers in one sorted list (O(n) per insert), so
    /// many small workers cost less CPU than a few big ones.
    @Option(help: "Most connections one worker holds (at most `ulimit -Hn` - 64; fewer per process costs less CPU in lws).")
    var perWorker = 5_000

    @Flag(help: "Do not bind client sockets to 127.0.0.x source addresses (limits you to ~28k connections per node port).")
    var noSourceAddresses = false

    /// Most connections one process can hold: ~18,000 under a 20,000-descriptor limit.
    static var hardCap: Int { min(18_000, Machine.fdLimit().hard - 64) }

    /// `--workers` if given (raised if a worker would exceed `hardCap`), else one per `--per-worker`.
    func workerCount(for connections: Int) -> Int {
        if let workers { return max(workers, (connections + Self.hardCap - 1) / Self.hardCap) }
        return max(1, (connections + perWorker - 1) / perWorker)
    }

    func validate() throws {
        let hard = Machine.fdLimit().hard
        guard perWorker >= 1, perWorker <= Self.hardCap else {
            throw ValidationError("--per-worker must be 1 to \(Self.hardCap): one process may hold at most \(hard) descriptors here (ulimit -Hn)")
        }
        if let workers, !(1...256).contains(workers) { throw ValidationError("--workers must be 1 to 256") }
    }
}
