import Foundation

/// Time each process of the run spent running and waiting for a CPU (runnable but not
/// scheduled), from `/proc/<pid>/task/*/schedstat`. On a shared machine the wait is what
/// turns someone else's build into our latency.
struct SchedSpan: Codable {
    var name: String
    /// CPU time over the span, percent of one core (all threads).
    var runPercent: Double
    /// Runnable but waiting for a core, percent of the span (all threads summed).
    var waitPercent: Double
    /// The thread that waited most (for a node: its event-loop thread), percent of the span.
    var worstThreadWaitPercent: Double
    /// Mean wait per time slice of that thread, ms: roughly the delay added to each wake-up.
    var worstThreadWaitPerSliceMs: Double

    private struct Sample {
        var run: UInt64
        var wait: UInt64
        var slices: UInt64
    }

    private static func sample(_ pid: pid_t) -> [String: Sample] {
        var out: [String: Sample] = [:]
        let dir = "/proc/\(pid)/task"
        for tid in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            guard let text = try? String(contentsOfFile: "\(dir)/\(tid)/schedstat", encoding: .utf8) else { continue }
            let f = text.split(separator: " ").compactMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            if f.count >= 3 { out[tid] = Sample(run: f[0], wait: f[1], slices: f[2]) }
        }
        return out
    }

    static func measure(_ procs: [(String, pid_t)], over body: () throws -> Void) rethrows -> [SchedSpan] {
        let before = procs.map { sample($0.1) }
        let t0 = Clock.now()
        try body()
        let dt = Clock.now() - t0
        guard dt > 0 else { return [] }
        return zip(procs, before).compactMap { proc, b in
            let a = sample(proc.1)
            guard !a.isEmpty else { return nil }
            var run: UInt64 = 0, wait: UInt64 = 0
            var worst: (wait: UInt64, slices: UInt64) = (0, 0)
            for (tid, s) in a {
                let p = b[tid] ?? Sample(run: 0, wait: 0, slices: 0)
                let dw = s.wait &- p.wait, dr = s.run &- p.run, ds = s.slices &- p.slices
                run &+= dr
                wait &+= dw
                if dw > worst.wait { worst = (dw, ds) }
            }
            func pct(_ ns: UInt64) -> Double { (Double(ns) / 1e9 / dt * 1000).rounded() / 10 }
            let perSlice = worst.slices > 0 ? Double(worst.wait) / Double(worst.slices) / 1e6 : 0
            return SchedSpan(name: proc.0, runPercent: pct(run), waitPercent: pct(wait), worstThreadWaitPercent: pct(worst.wait),
                             worstThreadWaitPerSliceMs: (perSlice * 1000).rounded() / 1000)
        }
    }
}
