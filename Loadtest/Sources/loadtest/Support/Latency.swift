import Foundation
import Histogram

/// Microsecond latencies in an HdrHistogram (3 significant digits, up to one hour).
struct Latency {
    private(set) var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000,
                                                   numberOfSignificantValueDigits: .three)

    init() {}

    init(_ sparse: SparseHistogram) {
        for (v, c) in zip(sparse.v, sparse.c) { histogram.record(v, count: c) }
    }

    var count: UInt64 { histogram.totalCount }

    mutating func record(micros: Int64) {
        histogram.record(UInt64(min(max(micros, 0), 3_600_000_000)))
    }

    mutating func add(_ other: Latency) {
        if other.count > 0 { histogram.add(other.histogram) }
    }

    mutating func add(_ sparse: SparseHistogram) {
        for (v, c) in zip(sparse.v, sparse.c) { histogram.record(v, count: c) }
    }

    func percentile(_ p: Double) -> UInt64 { count == 0 ? 0 : histogram.valueAtPercentile(p) }

    /// Only the non-empty buckets, for passing between processes.
    var sparse: SparseHistogram {
        var s = SparseHistogram()
        for item in histogram.recordedValues() {
            s.v.append(item.value)
            s.c.append(item.count)
        }
        return s
    }

    var summary: LatencySummary {
        func ms(_ v: UInt64) -> Double { Double(v) / 1000 }
        return LatencySummary(count: count, minMs: ms(count == 0 ? 0 : histogram.min), p50Ms: ms(percentile(50)),
                              p90Ms: ms(percentile(90)), p95Ms: ms(percentile(95)), p99Ms: ms(percentile(99)),
                              p999Ms: ms(percentile(99.9)), maxMs: ms(count == 0 ? 0 : histogram.max),
                              meanMs: count == 0 ? 0 : histogram.mean / 1000)
    }
}

/// Bucket values and counts of a histogram.
struct SparseHistogram: Codable {
    var v: [UInt64] = []
    var c: [UInt64] = []
}

struct LatencySummary: Codable {
    var count: UInt64
    var minMs: Double
    var p50Ms: Double
    var p90Ms: Double
    var p95Ms: Double
    var p99Ms: Double
    var p999Ms: Double
    var maxMs: Double
    var meanMs: Double

    var line: String {
        count == 0 ? "no samples" :
            String(format: "p50 %.2f  p95 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms  (n=%@)",
                   p50Ms, p95Ms, p99Ms, p999Ms, maxMs, Fmt.int(count) as NSString)
    }
}
