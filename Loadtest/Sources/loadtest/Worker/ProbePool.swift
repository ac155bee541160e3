import Foundation

/// The parent's side of the probe children, started as `<scenario> --probe-worker`
/// (spawning, reading, reaping is `ChildPool`'s): hands receipts to `onReceipts`, merges
/// alert latencies, sums the counters.
final class ProbePool {
    private let children: ChildPool<ProbeSpec, ProbeStatus>

    /// - Parameter onReceipts: called on a reader thread with each batch of `order.status` receipts.
    init(scenario: String, specs: [ProbeSpec], logDir: String, onReceipts: @escaping ([ProbeReceipt]) -> Void = { _ in }) throws {
        children = try ChildPool(label: "probe", arguments: [scenario, "--probe-worker"], specs: specs, logDir: logDir,
                                 latency: { $0.alertLatency }, onStatus: { if let r = $0.receipts { onReceipts(r) } })
    }

    var pids: [pid_t] { children.pids }
    var allEnded: Bool { children.allEnded }
    /// Alert latency of the whole run so far.
    var total: Latency { children.total }

    func totals() -> ProbeTotals {
        children.children.compactMap { $0.final ?? $0.latest }.reduce(into: ProbeTotals()) { $0.add($1) }
    }

    /// True once every child has opened all its users and none is mid set-up.
    func settled() -> Bool {
        children.children.allSatisfy { c in
            guard let l = c.latest else { return false }
            return l.attempted == c.spec.count && l.settling == 0
        }
    }

    /// Alert latency recorded since the previous call.
    func takeInterval() -> Latency { children.takeInterval() }

    /// Tells every child when the PATCH went out and the price it set.
    func announce(t0: Int64, price: Int64) { children.broadcast("t0 \(t0) \(price)") }

    func crashed() -> [String] { children.crashed() }

    /// Asks for final reports and waits for them (bounded).
    func finish(timeout: Double = 15) { children.finish(timeout: timeout) }

    func stop() { children.stop() }
}
