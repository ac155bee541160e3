import Foundation

struct MachineInfo: Codable {
    var cores = Machine.cores
    var memTotalBytes = Machine.memInfo().total
    var memAvailableBytes = Machine.memInfo().available
    var fdLimitSoft = Machine.fdLimit().soft
    var fdLimitHard = Machine.fdLimit().hard
    var ephemeralPortsPerAddress = Machine.portsPerAddress
    var conntrackMax = Machine.conntrack()?.max
    var loadAverage = Machine.loadAverage()
}

/// What every report starts with.
struct RunInfo: Codable {
    var scenario: String
    var startedAt: String
    var command: String
    var machine = MachineInfo()
    var reportPath = ""
    var logDir = ""
}

/// Shared set-up of a scenario run: report location, logs, Ctrl-C handling.
final class RunContext {
    let scenario: String
    let stamp = Clock.timestamp()
    let reportDir: String
    let logDir: String
    let progress = Progress()
    var info: RunInfo

    init(scenario: String, output: OutputOptions) throws {
        self.scenario = scenario
        // Absolute: redis-server resolves its log file after changing directory.
        reportDir = URL(fileURLWithPath: output.reportDir).standardizedFileURL.path
        logDir = "\(reportDir)/\(scenario)-\(stamp).logs"
        try FileManager.default.createDirectory(atPath: logDir, withIntermediateDirectories: true)
        let iso = ISO8601DateFormatter().string(from: Date())
        info = RunInfo(scenario: scenario, startedAt: iso,
                       command: CommandLine.arguments.map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " "))
        info.reportPath = "\(reportDir)/\(scenario)-\(stamp).json"
        info.logDir = logDir
        Children.installSignalCleanup()
    }

    /// The JSON report, and beside it the same as Markdown with an SVG chart of the timeline.
    func write<T: Encodable>(_ report: T) throws {
        Children.haltIfInterrupted()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let json = try encoder.encode(report)
        try json.write(to: URL(fileURLWithPath: info.reportPath))
        progress.note("report: \(info.reportPath)")
        let (md, svg) = MarkdownReport.write(report, json: json, jsonPath: info.reportPath)
        progress.note("report: \(md)" + (svg.map { " (chart \($0))" } ?? ""))
    }
}

/// One gateway node measured at some moment.
struct NodeSample: Codable {
    var name: String
    var pid: Int32?
    var rssBytes: Int?
    var openFiles: Int?
    var fdLimit: Int?

    init(_ ep: Endpoint) {
        name = ep.name
        pid = ep.pid
        if let pid = ep.pid {
            rssBytes = Machine.rss(pid)
            openFiles = Machine.openFiles(pid)
            fdLimit = Machine.fdLimit(of: pid)
        }
    }
}

/// CPU of every process in the run, for "who is the bottleneck" in progress lines.
struct CPUWatch {
    private var sampler = CPUSampler()
    let nodes: [(String, pid_t)]
    let redis: pid_t?
    var workers: [pid_t]
    /// Percent of one core per name at the last `line()`.
    private(set) var last: [String: Double] = [:]

    init(cluster: Cluster, workers: [pid_t]) {
        nodes = cluster.endpoints.compactMap { ep in ep.pid.map { (ep.name, $0) } }
        redis = cluster.redisPid
        self.workers = workers
    }

    /// e.g. "cpu n1 93% redis 12% workers 40% self 2%" (percent of one core since the last call).
    mutating func line() -> String {
        var parts: [String] = []
        last = [:]
        func add(_ name: String, _ v: Double?) {
            parts.append("\(name) \(Fmt.pct(v))")
            if let v { last[name] = v }
        }
        for (name, pid) in nodes { add(name, sampler.sample(pid)) }
        if let redis { add("redis", sampler.sample(redis)) }
        let w = workers.compactMap { sampler.sample($0) }
        if !w.isEmpty { add("workers", w.reduce(0, +)) }
        add("self", sampler.sample(getpid()))
        // Builds and tests of other people on a shared machine skew every figure.
        if let all = sampler.machine() {
            add("other", max(0, all - last.values.reduce(0, +)))
        }
        return "cpu " + parts.joined(separator: " ")
    }
}

/// Whole-run CPU seconds per process between two moments.
struct CPUSpan: Codable {
    var name: String
    var percentOfOneCore: Double

    static func measure(_ procs: [(String, pid_t)], over body: () throws -> Void) rethrows -> [CPUSpan] {
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        let before = procs.map { Machine.cpuTicks($0.1) }
        let machineBefore = Machine.busyTicks()
        let t0 = Clock.now()
        try body()
        let dt = Clock.now() - t0
        func pct(_ ticks: Int) -> Double { (Double(ticks) / hz / dt * 100 * 10).rounded() / 10 }
        var spans: [CPUSpan] = zip(procs, before).compactMap { p, b in
            guard let b, let a = Machine.cpuTicks(p.1), dt > 0 else { return nil }
            return CPUSpan(name: p.0, percentOfOneCore: pct(a - b))
        }
        if let mb = machineBefore, let ma = Machine.busyTicks(), dt > 0 {
            let ours = spans.reduce(0) { $0 + $1.percentOfOneCore }
            spans.append(CPUSpan(name: "other processes", percentOfOneCore: max(0, (pct(ma - mb) - ours) * 10).rounded() / 10))
        }
        return spans
    }
}
