/// Latencies counted into fixed buckets with plain integers on the loop thread: cheap enough
/// for every push (no lock, no allocation), read when `/metrics` is scraped and by the live
/// series of the admin page. Prometheus histograms take a lock per observation and cannot be
/// added to in bulk, so the push path counts here instead.
public struct LatencyHistogram: Sendable, Equatable {
    /// Upper bounds in seconds, ascending (Prometheus `le`); one more bucket above them is +Inf.
    public let bounds: [Double]
    /// Observations per bucket, not cumulative; `counts.count == bounds.count + 1`.
    public private(set) var counts: [Int]
    public private(set) var count = 0
    public private(set) var sum = 0.0

    public init(bounds: [Double] = Self.latencyBounds) {
        precondition(zip(bounds, bounds.dropFirst()).allSatisfy { $0 < $1 }, "bounds must ascend")
        self.bounds = bounds
        counts = Array(repeating: 0, count: bounds.count + 1)
    }

    init(bounds: [Double], counts: [Int], count: Int, sum: Double) {
        self.bounds = bounds
        self.counts = counts
        self.count = count
        self.sum = sum
    }

    /// 1 ms to 10 s: publication timestamps are whole milliseconds, and a push later than
    /// 10 s is lost as far as a watcher is concerned.
    public static let latencyBounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    /// Counts `times` observations of `seconds` (negative, from clocks apart, counts as 0).
    public mutating func record(_ seconds: Double, times: Int = 1) {
        let value = max(0, seconds)
        var bucket = 0
        while bucket < bounds.count && value > bounds[bucket] { bucket += 1 }
        counts[bucket] += times
        count += times
        sum += value * Double(times)
    }

    /// The bound of the bucket holding quantile `q` (0...1): an upper estimate, as Prometheus'
    /// `histogram_quantile` is at a bucket's top. 0 when empty; the largest bound when `q`
    /// falls above it.
    public func quantile(_ q: Double) -> Double {
        guard count > 0 else { return 0 }
        let rank = q * Double(count)
        var seen = 0
        for (bucket, n) in counts.enumerated() {
            seen += n
            if Double(seen) >= rank && n > 0 { return bounds[min(bucket, bounds.count - 1)] }
        }
        return bounds.last ?? 0
    }

    /// The observations made since `earlier`, a reading of this same histogram.
    public func since(_ earlier: LatencyHistogram) -> LatencyHistogram {
        precondition(earlier.bounds == bounds, "readings of different histograms")
        var delta = self
        for i in counts.indices { delta.counts[i] -= earlier.counts[i] }
        delta.count -= earlier.count
        delta.sum -= earlier.sum
        return delta
    }
}

/// Push latencies counted by the loop: publication timestamps are whole milliseconds, so a
/// table maps each millisecond to its bucket and a push costs a lookup and two additions,
/// through pointers (no runtime exclusivity check, no lock, no copy-on-write check).
/// Loop thread only.
public final class LatencyRecorder {
    private let bounds: [Double]
    /// The bucket of each whole millisecond up to the last bound; later ones are +Inf.
    private let bucketOfMs: UnsafeMutablePointer<UInt8>
    private let lastMs: Int
    /// The bucket counts, then the count, then the sum in ms.
    private let totals: UnsafeMutablePointer<Int>

    public init(bounds: [Double] = LatencyHistogram.latencyBounds) {
        precondition(bounds.count < 255 && (bounds.last ?? 0) <= 3_600)
        self.bounds = bounds
        lastMs = Int(((bounds.last ?? 0) * 1_000).rounded(.down))
        bucketOfMs = .allocate(capacity: lastMs + 1)
        for ms in 0...lastMs {
            bucketOfMs[ms] = UInt8(bounds.firstIndex { Double(ms) / 1_000 <= $0 } ?? bounds.count)
        }
        totals = .allocate(capacity: bounds.count + 3)
        totals.initialize(repeating: 0, count: bounds.count + 3)
    }

    deinit {
        bucketOfMs.deallocate()
        totals.deallocate()
    }

    /// One push written `ms` after its publication (negative, from clocks apart, counts as 0).
    public func record(ms: Int64) {
        let ms = max(0, Int(truncatingIfNeeded: ms))
        totals[ms <= lastMs ? Int(bucketOfMs[ms]) : bounds.count] += 1
        totals[bounds.count + 1] += 1
        totals[bounds.count + 2] += ms
    }

    /// The counts so far.
    public var histogram: LatencyHistogram {
        LatencyHistogram(bounds: bounds, counts: Array(UnsafeBufferPointer(start: totals, count: bounds.count + 1)),
                         count: totals[bounds.count + 1], sum: Double(totals[bounds.count + 2]) / 1_000)
    }
}
