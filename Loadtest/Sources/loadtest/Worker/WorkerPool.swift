import Foundation

/// The parent's side of the `loadtest worker` children (spawning, reading, reaping is
/// `ChildPool`'s): their sums, channel tallies and latencies.
final class WorkerPool {
    private let children: ChildPool<WorkerSpec, WorkerStatus>
    private let connect: LockedLatency

    init(specs: [WorkerSpec], logDir: String) throws {
        let connect = LockedLatency()
        self.connect = connect
        children = try ChildPool(label: "worker", arguments: ["worker"], specs: specs, logDir: logDir,
                                 latency: { $0.latency }, onStatus: { if let c = $0.connectLatency { connect.add(c) } })
    }

    var count: Int { children.count }
    var pids: [pid_t] { children.pids }
    var allEnded: Bool { children.allEnded }
    /// Delivery latency of the whole run so far.
    var total: Latency { children.total }
    var connectLatencySummary: LatencySummary { connect.summary }

    func totals() -> WorkerTotals {
        children.children.compactMap(\.latest).reduce(into: WorkerTotals()) { $0.add($1) }
    }

    /// Per channel index: subscribers, highest-offset sums and holes over all workers;
    /// nil until every worker has settled.
    func channelTallies(channels: Int) -> [ChannelTally]? {
        var t = (0..<channels).map { ChannelTally(channel: $0, subscribers: 0, contiguousSum: 0, holes: 0) }
        for child in children.children {
            guard let tallies = (child.final ?? child.latest)?.channels else { return nil }
            for c in tallies {
                t[c.channel].subscribers += c.subscribers
                t[c.channel].contiguousSum += c.contiguousSum
                t[c.channel].holes += c.holes
            }
        }
        return t
    }

    /// Delivery latency recorded since the previous call.
    func takeInterval() -> Latency { children.takeInterval() }

    /// Workers that ended without a final report, with the end of their logs.
    func crashed() -> [String] { children.crashed() }

    /// Asks for final reports and waits for them (bounded).
    func finish(timeout: Double = 15) { children.finish(timeout: timeout) }

    /// Lets the workers exit and reaps them.
    func stop() { children.stop() }
}

/// A histogram fed from reader threads.
final class LockedLatency {
    private let lock = NSLock()
    private var latency = Latency()

    func add(_ s: SparseHistogram) { lock.withLock { latency.add(s) } }
    var summary: LatencySummary { lock.withLock { latency.summary } }
}
