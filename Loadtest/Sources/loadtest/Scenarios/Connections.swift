import ArgumentParser
import Foundation

/// Scenario 1: how many idle authenticated connections the nodes hold, how fast they
/// come up, and what each costs in node memory.
struct ConnectionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connections",
        abstract: "Ramp up idle authenticated connections, hold them, and measure RSS per connection on each node.")

    @Option(help: "Connections to open (all workers together).")
    var connections = 1000

    @Option(help: "New connections per second (all workers together).")
    var rate: Double = 500

    @Option(help: "Seconds to hold the connections after the ramp.")
    var hold = 10

    @Option(help: "Give up on the ramp after this many seconds (default: twice the planned ramp plus 30).")
    var rampTimeout: Int?

    @OptionGroup var workerOptions: WorkerOptions
    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (1...1_000_000).contains(connections) else { throw ValidationError("--connections must be 1 to 1,000,000") }
        guard rate > 0, rate <= 100_000 else { throw ValidationError("--rate must be above 0 and at most 100,000") }
        guard (0...3600).contains(hold) else { throw ValidationError("--hold must be 0 to 3600 seconds") }
        if let rampTimeout, !(1...7200).contains(rampTimeout) { throw ValidationError("--ramp-timeout must be 1 to 7200") }
    }

    func run() throws { try ConnectionsScenario(self).run() }
}

struct ConnectionsResults: EmptyResults {
    static let sections: ReportSections = [.limits, .timeline]

    struct Parameters: Codable {
        var connections: Int
        var rate: Double
        var workers: Int
        var nodes: Int
        var holdSeconds: Int
        var external: Bool
        var sourceAddresses: [[String]]
    }

    struct Result: Codable {
        var attempted = 0
        var connected = 0
        var failed = 0
        var dropped = 0
        var openAtEnd = 0
        var pendingAtEnd = 0
        var rampSeconds = 0.0
        var connectRatePerSecond = 0.0
        var connectLatency: LatencySummary?
        var failures: [String: Int] = [:]
        var drops: [String: Int] = [:]
        var abortedBecause: String?
        /// Per node: highest CPU (percent of one core) in any second of the ramp, and the
        /// mean while holding idle connections.
        var nodeCpuPeakRamp: [String: Double] = [:]
        var nodeCpuMeanHold: [String: Double] = [:]
        var workersCpuMeanHold: Double?
        /// Processes outside this run (other people's builds on a shared machine).
        var otherCpuMeanRamp: Double?
        var otherCpuMeanHold: Double?
        /// Mean percent of one core per process group during the ramp.
        var cpuMeanRamp: [String: Double] = [:]
    }

    struct NodeResult: Codable {
        var name: String
        var pid: Int32?
        /// gateway_connections from /metrics (what the node itself counts).
        var connections: Int?
        var connectionsByWorkers: Int
        var rssBeforeBytes: Int?
        var rssAfterBytes: Int?
        var rssPerConnectionBytes: Double?
        var openFiles: Int?
        var fdLimit: Int?
    }

    struct Point: Codable {
        var t: Double
        var phase: String
        var connected: Int
        var failed: Int
        var dropped: Int
        var nodeRssBytes: [Int?]
    }

    var result = Result()
    var nodes: [NodeResult] = []
    var loadGeneratorRssBytes = 0
}

typealias ConnectionsReport = ScenarioReport<ConnectionsResults>

final class ConnectionsScenario {
    let cmd: ConnectionsCommand

    init(_ cmd: ConnectionsCommand) { self.cmd = cmd }

    func run() throws {
        let ctx = try RunContext(scenario: "connections", output: cmd.output)
        let p = ctx.progress
        let n = cmd.connections
        let nodeCount = cmd.cluster.nodeCount
        let workers = cmd.workerOptions.workerCount(for: n)
        var limits: [String] = []
        if let asked = cmd.workerOptions.workers, asked < workers {
            let note = "machine: \(Fmt.int(n)) connections need \(workers) worker processes (at most \(Fmt.int(WorkerOptions.hardCap)) each, as one process may hold \(Machine.fdLimit().hard) descriptors); using \(workers) instead of \(asked)"
            p.note(note)
            limits.append(note)
        }
        limits += Preflight.check(connections: n, nodes: nodeCount, sourceAddresses: !cmd.workerOptions.noSourceAddresses)
        limits.forEach { p.note("preflight: \($0)") }

        var cluster: Cluster?
        var pool: WorkerPool?
        defer {
            cluster?.stop()
            pool?.stop()
        }
        cluster = try Cluster.start(cmd.cluster, logDir: ctx.logDir, progress: p)
        let c = cluster!
        let before = c.endpoints.map(NodeSample.init)

        let counts = (0..<workers).map { n / workers + ($0 < n % workers ? 1 : 0) }
        let plan = cmd.workerOptions.noSourceAddresses ? (counts.map { _ in [String]() }, 0)
            : SourceAddresses.plan(connectionsPerWorker: counts)
        var first = 0
        var specs: [WorkerSpec] = []
        let rampPlanned = Double(n) / cmd.rate
        for (w, count) in counts.enumerated() {
            specs.append(WorkerSpec(
                index: w, urls: c.endpoints.map(\.wsURL), first: first, count: count,
                rate: cmd.rate * Double(count) / Double(n), sourceAddresses: plan.0[w], secret: c.secret,
                tokenTTL: Int(rampPlanned) + cmd.hold + 3600, userPrefix: "lt-", channels: [],
                rxBufferSize: 1024, maxInFlight: max(200, Int(2 * cmd.rate * Double(count) / Double(n))), connectTimeout: 20))
            first += count
        }
        var report = ConnectionsReport(run: ctx.info, parameters: .init(
            connections: n, rate: cmd.rate, workers: workers, nodes: nodeCount, holdSeconds: cmd.hold,
            external: cmd.cluster.external, sourceAddresses: plan.0))
        p.note("ramping \(Fmt.int(n)) connections at \(Fmt.num(cmd.rate, 0))/s over \(nodeCount) node(s) and \(workers) worker(s)"
            + (plan.0.first?.isEmpty == false ? ", source addresses " + plan.0.map { $0.joined(separator: ",") }.joined(separator: " | ") : ""))
        pool = try WorkerPool(specs: specs, logDir: ctx.logDir)
        let pl = pool!
        var cpu = CPUWatch(cluster: c, workers: pl.pids)

        // Ramp.
        let rampStart = Clock.now()
        let rampDeadline = rampStart + Double(cmd.rampTimeout ?? Int(rampPlanned * 2 + 30))
        var ticker = Ticker(interval: 1)
        var last = WorkerTotals()
        var aborted: String?
        var peak: [String: Double] = [:]
        var holdSums: [String: Double] = [:]
        var holdSamples = 0
        var rampSums: [String: Double] = [:]
        var rampSamples = 0
        var inFlightCapped = false
        while true {
            ticker.wait()
            let t = pl.totals()
            let samples = c.endpoints.map(NodeSample.init)
            report.timeline.append(.init(t: p.elapsed, phase: "ramp", connected: t.open, failed: t.failed, dropped: t.dropped,
                                         nodeRssBytes: samples.map(\.rssBytes)))
            p.line("ramp", "connected \(Fmt.int(t.connected))/\(Fmt.int(n)) (+\(Fmt.int(t.connected - last.connected))/s) "
                + "failed \(Fmt.int(t.failed)) dropped \(Fmt.int(t.dropped)) in flight \(Fmt.int(t.inFlight)) | "
                + nodeLine(samples) + " | " + cpu.line() + " | mem avail \(Fmt.gib(Machine.memInfo().available))")
            last = t
            for ep in c.endpoints { if let v = cpu.last[ep.name] { peak[ep.name] = max(peak[ep.name] ?? 0, v) } }
            if !cpu.last.isEmpty {
                for (k, v) in cpu.last { rampSums[k, default: 0] += v }
                rampSamples += 1
            }
            if t.inFlight >= specs.reduce(0, { $0 + $1.maxInFlight }) - 1 { inFlightCapped = true }
            if let why = Preflight.runtimeLimit(cluster: c) {
                aborted = why
                break
            }
            if t.reporting == workers && t.attempted == n && t.inFlight == 0 { break }
            if pl.allEnded {
                aborted = "gateway or load generator: every worker exited: " + pl.crashed().joined(separator: "; ")
                break
            }
            if !c.deadNodes().isEmpty {
                aborted = "gateway: node exited: " + c.deadNodes().joined(separator: "; ")
                break
            }
            if Clock.now() > rampDeadline {
                aborted = "ramp timed out after \(Int(Clock.now() - rampStart)) s with \(Fmt.int(t.inFlight)) connections unanswered and \(Fmt.int(n - t.attempted)) not yet opened"
                break
            }
        }
        let rampEnd = pl.totals()

        // Hold.
        if aborted == nil && cmd.hold > 0 {
            let holdEnd = Clock.now() + Double(cmd.hold)
            while Clock.now() < holdEnd {
                ticker.wait()
                let t = pl.totals()
                let samples = c.endpoints.map(NodeSample.init)
                report.timeline.append(.init(t: p.elapsed, phase: "hold", connected: t.open, failed: t.failed, dropped: t.dropped,
                                             nodeRssBytes: samples.map(\.rssBytes)))
                p.line("hold", "open \(Fmt.int(t.open)) dropped \(Fmt.int(t.dropped)) | " + nodeLine(samples) + " | " + cpu.line())
                holdSamples += 1
                for (k, v) in cpu.last { holdSums[k, default: 0] += v }
                if let why = Preflight.runtimeLimit(cluster: c) {
                    aborted = why
                    break
                }
            }
        }

        // Measure while the connections are still open.
        let after = c.endpoints.map(NodeSample.init)
        let metricConnections = c.endpoints.indices.map { c.metric($0, "gateway_connections").map { Int($0) } }
        pl.finish()
        let t = pl.totals()

        var r = ConnectionsResults.Result()
        r.attempted = t.attempted
        r.connected = t.connected
        r.failed = t.failed
        r.dropped = t.dropped
        r.openAtEnd = t.open
        r.pendingAtEnd = t.inFlight
        if let a = rampEnd.firstAttemptMicros, let b = rampEnd.lastConnectMicros, b > a {
            r.rampSeconds = Double(b - a) / 1e6
            r.connectRatePerSecond = Double(rampEnd.connected) / r.rampSeconds
        }
        r.connectLatency = pl.connectLatencySummary
        r.failures = t.failures
        r.drops = t.drops
        r.abortedBecause = aborted
        r.nodeCpuPeakRamp = peak
        if holdSamples > 0 {
            for ep in c.endpoints { r.nodeCpuMeanHold[ep.name] = ((holdSums[ep.name] ?? 0) / Double(holdSamples)).rounded() }
            r.workersCpuMeanHold = ((holdSums["workers"] ?? 0) / Double(holdSamples)).rounded()
            r.otherCpuMeanHold = ((holdSums["other"] ?? 0) / Double(holdSamples)).rounded()
        }
        var rampMean: [String: Double] = [:]
        if rampSamples > 0 {
            for (k, v) in rampSums { rampMean[k] = (v / Double(rampSamples)).rounded() }
            r.otherCpuMeanRamp = rampMean["other"]
            r.cpuMeanRamp = rampMean
        }
        report.result = r
        report.loadGeneratorRssBytes = t.rssBytes
        for (i, ep) in c.endpoints.enumerated() {
            let held = metricConnections[i] ?? (i < t.connectedPerNode.count ? t.connectedPerNode[i] : 0)
            var per: Double?
            if let a = after[i].rssBytes, let b = before[i].rssBytes, held > 0 { per = Double(a - b) / Double(held) }
            report.nodes.append(.init(name: ep.name, pid: ep.pid, connections: metricConnections[i],
                                      connectionsByWorkers: i < t.connectedPerNode.count ? t.connectedPerNode[i] : 0,
                                      rssBeforeBytes: before[i].rssBytes, rssAfterBytes: after[i].rssBytes,
                                      rssPerConnectionBytes: per, openFiles: after[i].openFiles, fdLimit: after[i].fdLimit))
        }
        if let other = [r.otherCpuMeanRamp, r.otherCpuMeanHold].compactMap({ $0 }).max(), other > 20 {
            limits.append("machine: processes outside this run used \(Fmt.num(other, 0))% of a core on average (someone else's build or tests?): rates and CPU figures are skewed; RSS per connection is not")
        }
        if r.connectRatePerSecond < cmd.rate * 0.9 && !(aborted?.hasPrefix("machine: memory") ?? false) {
            limits.append(rampLimit(r, inFlightCapped: inFlightCapped, peak: peak, mean: rampMean, nodes: c.endpoints.map(\.name)))
        }
        limits += Preflight.explain(failures: t.failures, drops: t.drops, nodes: report.nodes, aborted: aborted,
                                    logComplaints: c.logComplaints())
        report.limits = limits
        report.run.machine = MachineInfo()
        summary(report)
        try ctx.write(report)
    }

    /// Why the ramp was slower than asked: a busy node loop, a busy machine, or neither.
    private func rampLimit(_ r: ConnectionsResults.Result, inFlightCapped: Bool, peak: [String: Double],
                           mean: [String: Double], nodes: [String]) -> String {
        let head = "connections came up at \(Fmt.num(r.connectRatePerSecond, 0))/s, below the requested \(Fmt.num(cmd.rate, 0))/s"
            + (inFlightCapped ? " with the in-flight cap reached (connect reply p50 \(Fmt.num(r.connectLatency?.p50Ms ?? 0, 0)) ms)" : "")
        let nodeMean = nodes.compactMap { mean[$0] }
        let busiest = nodes.compactMap { n in mean[n].map { (n, $0) } }.max { $0.1 < $1.1 }
        let total = mean.values.reduce(0, +)
        let cores = Double(Machine.cores) * 100
        let parts = "nodes \(Fmt.num(nodeMean.reduce(0, +), 0))%, load generator \(Fmt.num(mean["workers"] ?? 0, 0))%, redis \(Fmt.num(mean["redis"] ?? 0, 0))%, other processes \(Fmt.num(mean["other"] ?? 0, 0))%"
        if let busiest, busiest.1 >= 80 {
            return "gateway: \(head); node \(busiest.0)'s loop thread averaged \(Fmt.num(busiest.1, 0))% of a core (peak \(Fmt.num(peak[busiest.0] ?? 0, 0))%)"
        }
        if total >= cores * 0.85 {
            return "machine: \(head); the \(Machine.cores) cores were nearly all busy on average (\(parts))"
        }
        return "gateway: \(head), although no process was CPU-bound on average (\(parts)): replies were waiting on something (Redis, timers)"
    }

    private func nodeLine(_ samples: [NodeSample]) -> String {
        samples.map { "\($0.name) \(Fmt.mib($0.rssBytes))" }.joined(separator: " ")
    }

    private func summary(_ r: ConnectionsReport) {
        let x = r.result
        var lines = ["", "== connections: \(Fmt.int(r.parameters.connections)) at \(Fmt.num(r.parameters.rate, 0))/s, \(r.parameters.nodes) node(s), \(r.parameters.workers) worker(s), hold \(r.parameters.holdSeconds) s"]
        lines.append("connected   \(Fmt.int(x.connected)) of \(Fmt.int(x.attempted)) attempted; failed \(Fmt.int(x.failed)); dropped while held \(Fmt.int(x.dropped)); open at end \(Fmt.int(x.openAtEnd))")
        lines.append("ramp        \(Fmt.num(x.rampSeconds)) s, \(Fmt.num(x.connectRatePerSecond, 0)) connections/s")
        if let l = x.connectLatency { lines.append("connect     \(l.line) (socket to connect reply)") }
        for n in r.nodes {
            let per = n.rssPerConnectionBytes.map { Fmt.kib($0) + " per connection" } ?? "?"
            lines.append("node \(n.name)     \(Fmt.int(n.connections ?? n.connectionsByWorkers)) connections, RSS \(Fmt.mib(n.rssBeforeBytes)) -> \(Fmt.mib(n.rssAfterBytes)): \(per); fds \(n.openFiles.map(String.init) ?? "?")/\(n.fdLimit.map(String.init) ?? "?")")
        }
        if !x.nodeCpuMeanHold.isEmpty {
            lines.append("idle cpu    " + x.nodeCpuMeanHold.sorted { $0.key < $1.key }.map { "\($0.key) \(Fmt.num($0.value, 0))%" }.joined(separator: " ")
                + " of one core while holding (workers \(Fmt.num(x.workersCpuMeanHold ?? 0, 0))%)")
        }
        lines.append("load gen    RSS \(Fmt.mib(r.loadGeneratorRssBytes)) in \(r.parameters.workers) worker(s)")
        for (k, v) in x.failures.sorted(by: { $0.value > $1.value }).prefix(6) { lines.append("failure     \(Fmt.int(v)) x \(k)") }
        for (k, v) in x.drops.sorted(by: { $0.value > $1.value }).prefix(6) { lines.append("drop        \(Fmt.int(v)) x \(k)") }
        if let a = x.abortedBecause { lines.append("stopped     \(a)") }
        for l in r.limits { lines.append("limit       \(l)") }
        if r.limits.isEmpty && x.failed == 0 && x.dropped == 0 { lines.append("limit       none reached: every connection was held") }
        print(lines.joined(separator: "\n"))
    }
}
