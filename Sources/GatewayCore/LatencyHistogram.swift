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

/// A `LatencyHistogram` the loop records into through a pointer, so a push costs no runtime
/// exclusivity check (a struct in a class property gets one per mutation) and no lock.
/// Loop thread only.
public final class LatencyRecorder {
    private let storage: UnsafeMutablePointer<LatencyHistogram>

    public init(bounds: [Double] = LatencyHistogram.latencyBounds) {
        storage = .allocate(capacity: 1)
        storage.initialize(to: LatencyHistogram(bounds: bounds))
    }

    deinit {
        storage.deinitialize(count: 1)
        storage.deallocate()
    }

    public func record(_ seconds: Double) { storage.pointee.record(seconds) }

    /// A copy of the counts so far.
    public var histogram: LatencyHistogram { storage.pointee }
}
