import Foundation

/// Small Markdown helpers shared by the renderers.
enum MD {
    static func table(_ header: [String], _ rows: [[String]], rightAlignFrom: Int = 1) -> String {
        var out = "| " + header.joined(separator: " | ") + " |\n|"
        for i in header.indices { out += i >= rightAlignFrom ? "---:|" : "---|" }
        out += "\n"
        for r in rows { out += "| " + r.map { cell($0) }.joined(separator: " | ") + " |\n" }
        return out
    }

    static func cell(_ s: String) -> String {
        s.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
    }

    static func ms(_ v: Double) -> String { v >= 100 ? String(format: "%.0f", v) : String(format: "%.2f", v) }

    /// `| name | n | p50 | p95 | p99 | max |` rows of latency summaries.
    static func latencyTable(_ rows: [(String, LatencySummary)], firstColumn: String = "what") -> String {
        table([firstColumn, "n", "p50 ms", "p95 ms", "p99 ms", "max ms"],
              rows.map { name, l in [name, Fmt.int(l.count), ms(l.p50Ms), ms(l.p95Ms), ms(l.p99Ms), ms(l.maxMs)] })
    }

    /// The run's command, machine and files, at the end of every report.
    static func runSection(_ run: RunInfo) -> String {
        var out = "## Run\n\n```\n\(run.command)\n```\n\n"
        let m = run.machine
        out += table(["", ""], [
            ["started", run.startedAt],
            ["machine", "\(m.cores) cores, \(Fmt.gib(m.memTotalBytes)) RAM (\(Fmt.gib(m.memAvailableBytes)) available), fd limit \(m.fdLimitSoft)/\(m.fdLimitHard), load \(m.loadAverage)"],
            ["JSON report", URL(fileURLWithPath: run.reportPath).lastPathComponent],
            ["logs", URL(fileURLWithPath: run.logDir).lastPathComponent + "/"],
        ], rightAlignFrom: 9)
        return out
    }
}

enum MarkdownReport {
    /// Markdown and SVG beside the JSON report: `<name>.md`, `<name>.svg`. Returns the paths written.
    /// A scenario whose results draw their own page and chart gets them; the others the
    /// generic rendering of their JSON (see `generic`).
    static func write<Results>(_ report: ScenarioReport<Results>, json: Data, jsonPath: String) -> (md: String, svg: String?) {
        let base = jsonPath.hasSuffix(".json") ? String(jsonPath.dropLast(5)) : jsonPath
        let mdPath = base + ".md", svgPath = base + ".svg"
        let svgName = URL(fileURLWithPath: svgPath).lastPathComponent
        var svg: String?
        var md: String
        if let c = Results.chart(report) { svg = SVGChart.render(title: c.title, panels: c.panels, events: c.events) }
        if let own = Results.markdown(report, chartFile: svg == nil ? nil : svgName) {
            md = own
        } else {
            let obj = (try? JSONSerialization.jsonObject(with: json)) as? [String: Any] ?? [:]
            if let c = genericChart(obj) { svg = SVGChart.render(title: c.title, panels: c.panels) }
            md = generic(obj, chartFile: svg == nil ? nil : svgName)
        }
        try? Data(md.utf8).write(to: URL(fileURLWithPath: mdPath))
        if let svg { try? Data(svg.utf8).write(to: URL(fileURLWithPath: svgPath)) }
        return (mdPath, svg == nil ? nil : svgPath)
    }

    // MARK: Generic rendering of any scenario's JSON

    /// Verdict and limits first, then parameters, every latency summary found anywhere
    /// in one table, each other section as a key/value table, the chart, and the run.
    static func generic(_ obj: [String: Any], chartFile: String?) -> String {
        let run = obj["run"] as? [String: Any] ?? [:]
        let scenario = run["scenario"] as? String ?? "loadtest"
        var out = "# `loadtest \(scenario)` report\n\n"
        if let verdict = obj["verdict"] as? String, !verdict.isEmpty { out += "**Verdict:** \(verdict)\n\n" }
        if let limits = obj["limits"] as? [String], !limits.isEmpty {
            out += "Limits:\n\n" + limits.map { "- \($0)" }.joined(separator: "\n") + "\n\n"
        }
        if let chartFile { out += "![latency and throughput over time](\(chartFile))\n\n" }
        if let params = obj["parameters"] as? [String: Any] {
            out += "## Parameters\n\n" + MD.table(["parameter", "value"], flatten(params).map { [$0.0, $0.1] }, rightAlignFrom: 1) + "\n"
        }
        var latencies: [(String, LatencySummary)] = []
        collectLatencies(obj, path: "", into: &latencies)
        if !latencies.isEmpty { out += "## Latency\n\n" + MD.latencyTable(latencies) + "\n" }
        let skip: Set<String> = ["run", "parameters", "timeline", "verdict", "limits"]
        for key in obj.keys.sorted() where !skip.contains(key) {
            let value = obj[key]!
            if let dict = value as? [String: Any] {
                let rows = flatten(dict)
                if !rows.isEmpty { out += "## \(key)\n\n" + MD.table(["field", "value"], rows.map { [$0.0, $0.1] }) + "\n" }
            } else if let list = value as? [[String: Any]], !list.isEmpty {
                out += "## \(key)\n\n"
                let cols = list.flatMap { $0.keys }.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
                out += MD.table(cols, list.prefix(50).map { row in cols.map { scalar(row[$0]) ?? "" } }, rightAlignFrom: 1) + "\n"
            } else if let s = scalar(value) {
                out += "- **\(key):** \(s)\n\n"
            }
        }
        if let data = try? JSONSerialization.data(withJSONObject: run), let info = try? JSONDecoder().decode(RunInfo.self, from: data) {
            out += MD.runSection(info)
        }
        return out
    }

    private static func isLatency(_ d: [String: Any]) -> Bool { d["p50Ms"] != nil && d["p99Ms"] != nil }

    private static func latency(_ d: [String: Any]) -> LatencySummary? {
        guard let data = try? JSONSerialization.data(withJSONObject: d) else { return nil }
        return try? JSONDecoder().decode(LatencySummary.self, from: data)
    }

    private static func collectLatencies(_ value: Any, path: String, into out: inout [(String, LatencySummary)]) {
        if let d = value as? [String: Any] {
            if isLatency(d) {
                if let l = latency(d), l.count > 0 { out.append((path, l)) }
                return
            }
            for k in d.keys.sorted() where k != "timeline" && k != "run" {
                collectLatencies(d[k]!, path: path.isEmpty ? k : "\(path).\(k)", into: &out)
            }
        }
    }

    private static func scalar(_ v: Any?) -> String? {
        switch v {
        case let s as String: return s
        case let n as NSNumber:
            if String(cString: n.objCType) == "c" { return n.boolValue ? "true" : "false" }
            let d = n.doubleValue
            if abs(d) >= 1000 || (d == d.rounded() && abs(d) < 1e15) { return Fmt.int(Int(d.rounded())) }
            var text = String(format: "%.3f", d)
            while text.hasSuffix("0") { text.removeLast() }
            return text
        case let a as [Any] where a.allSatisfy({ scalar($0) != nil }):
            return a.isEmpty ? nil : a.compactMap { scalar($0) }.joined(separator: "; ")
        default: return nil
        }
    }

    /// Scalars of a dictionary (nested ones as dotted names), latency summaries left out.
    private static func flatten(_ d: [String: Any], prefix: String = "") -> [(String, String)] {
        var out: [(String, String)] = []
        for k in d.keys.sorted() {
            let name = prefix.isEmpty ? k : "\(prefix).\(k)"
            if let sub = d[k] as? [String: Any] {
                if !isLatency(sub) { out += flatten(sub, prefix: name) }
            } else if let s = scalar(d[k]) {
                out.append((name, s))
            }
        }
        return out
    }

    /// From a `timeline` of per-second points: fields ending in `Ms` are latencies;
    /// other numbers that only grow are totals, drawn as rates per second.
    static func genericChart(_ obj: [String: Any]) -> (title: String, panels: [ChartPanel])? {
        guard let points = obj["timeline"] as? [[String: Any]], points.count >= 2 else { return nil }
        let ts = points.map { ($0["t"] as? NSNumber)?.doubleValue ?? 0 }
        let keys = points.flatMap { $0.keys }.reduce(into: [String]()) { if !$0.contains($1) && $1 != "t" { $0.append($1) } }.sorted()
        var latency: [ChartSeries] = [], rates: [ChartSeries] = []
        for key in keys {
            let vs = points.map { ($0[key] as? NSNumber)?.doubleValue }
            guard vs.allSatisfy({ $0 != nil }) else { continue }
            let values = vs.map { $0! }
            if key.hasSuffix("Ms") {
                let name = String(key.dropLast(2))
                let color = ["p50": "#1f77b4", "p99": "#d62728", "max": "#aaaaaa"][name] ?? SVGChart.palette[(latency.count + 4) % 10]
                latency.append(ChartSeries(name: name, points: zip(ts, values).map { ($0, $1) }, color: color, dashed: name == "max"))
            } else if zip(values, values.dropFirst()).allSatisfy({ $0 <= $1 }), values.last! > values.first! {
                var pts: [(x: Double, y: Double)] = []
                for i in 1..<values.count where ts[i] > ts[i - 1] { pts.append((ts[i], (values[i] - values[i - 1]) / (ts[i] - ts[i - 1]))) }
                rates.append(ChartSeries(name: "\(key)/s", points: pts, color: SVGChart.palette[(rates.count + 3) % 10]))
            }
        }
        var panels: [ChartPanel] = []
        if !latency.isEmpty { panels.append(ChartPanel(title: "Latency per second", unit: "ms", series: latency)) }
        if !rates.isEmpty { panels.append(ChartPanel(title: "Throughput", unit: "per second", series: rates)) }
        guard !panels.isEmpty else { return nil }
        let scenario = (obj["run"] as? [String: Any])?["scenario"] as? String ?? "loadtest"
        return ("loadtest \(scenario)", panels)
    }
}
