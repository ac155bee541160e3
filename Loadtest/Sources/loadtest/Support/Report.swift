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
    func write<Results>(_ report: ScenarioReport<Results>) throws {
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

/// Which of the shared sections a scenario's report carries (and so its JSON has).
struct ReportSections: OptionSet {
    let rawValue: Int
    static let limits = ReportSections(rawValue: 1)
    static let checks = ReportSections(rawValue: 2)
    static let verdict = ReportSections(rawValue: 4)
    static let timeline = ReportSections(rawValue: 8)
}

/// A scenario's own findings: the part of its report no other scenario has.
protocol ScenarioResults: Encodable {
    associatedtype Parameters: Encodable
    /// One second of the run in the timeline (`Never` for none).
    associatedtype Point: Encodable
    static var sections: ReportSections { get }
    /// A Markdown page of its own; nil: the generic rendering of the JSON.
    static func markdown(_ report: ScenarioReport<Self>, chartFile: String?) -> String?
    /// A chart of its own; nil: the generic chart of the timeline, if any.
    static func chart(_ report: ScenarioReport<Self>) -> (title: String, panels: [ChartPanel], events: [ChartEvent])?
}

extension ScenarioResults {
    static func markdown(_ report: ScenarioReport<Self>, chartFile: String?) -> String? { nil }
    static func chart(_ report: ScenarioReport<Self>) -> (title: String, panels: [ChartPanel], events: [ChartEvent])? { nil }
}

/// Results that start empty and fill up as the run goes.
protocol EmptyResults: ScenarioResults {
    init()
}

/// Every scenario's report: the run, its parameters and the shared sections (limits,
/// checks, verdict, timeline) around the scenario's own results, all in one JSON object.
/// The results' fields read as the report's own (`report.deliveries`).
@dynamicMemberLookup
struct ScenarioReport<Results: ScenarioResults>: Encodable {
    var run: RunInfo
    var parameters: Results.Parameters
    var results: Results
    var limits: [String] = []
    /// One line per target: `ok`/`MISSED`.
    var checks: [String] = []
    var verdict = ""
    var timeline: [Results.Point] = []

    init(run: RunInfo, parameters: Results.Parameters, results: Results) {
        self.run = run
        self.parameters = parameters
        self.results = results
    }

    subscript<T>(dynamicMember path: WritableKeyPath<Results, T>) -> T {
        get { results[keyPath: path] }
        set { results[keyPath: path] = newValue }
    }

    private enum CodingKeys: String, CodingKey { case run, parameters, limits, checks, verdict, timeline }

    func encode(to encoder: Encoder) throws {
        try results.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(run, forKey: .run)
        try c.encode(parameters, forKey: .parameters)
        let sections = Results.sections
        if sections.contains(.limits) { try c.encode(limits, forKey: .limits) }
        if sections.contains(.checks) { try c.encode(checks, forKey: .checks) }
        if sections.contains(.verdict) { try c.encode(verdict, forKey: .verdict) }
        if sections.contains(.timeline) { try c.encode(timeline, forKey: .timeline) }
    }
}

extension ScenarioReport where Results: EmptyResults {
    init(run: RunInfo, parameters: Results.Parameters) {
        self.init(run: run, parameters: parameters, results: Results())
    }
}
