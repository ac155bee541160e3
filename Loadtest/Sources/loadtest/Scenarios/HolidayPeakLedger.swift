import Foundation
import Synchronization

/// Every push the holiday-peak run expects, keyed by who gets it and what it is about,
/// with the time of the action that caused it. A push may beat the HTTP answer that
/// tells us its order id, so a receipt with no expectation yet waits for one.
final class PushLedger: @unchecked Sendable {
    struct Entry {
        var kind: String
        var sentAt: Int64?
        var receipts = 0
        var firstAt: Int64?
        var recovered = false
    }

    /// Totals of one kind of push, as they go into the report.
    struct KindCounts: Codable {
        var expected = 0
        var received = 0
        /// Expected and never received.
        var lost = 0
        /// Receipts beyond the first of the same push.
        var duplicates = 0
        /// Received but never expected (a push the run did not cause, or a wrong one).
        var unexpected = 0
        /// Received through `since` recovery after a reconnect (no latency recorded).
        var recovered = 0
        var latency: LatencySummary?
    }

    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    private var latency: [String: Latency] = [:]
    private var interval = Latency()
    private var intervalByKind: [String: Latency] = [:]
    private var receiptsInterval = 0
    private var receiptsTotal = 0
    /// Group deliveries are checked by offset, not by expectation (see GroupTally).
    private var groupCounts: [String: Int] = [:]

    static func key(_ user: String, _ kind: String, _ subject: String) -> String { "\(user) \(kind) \(subject)" }

    /// The action that causes this push is about to be sent (at `t`, Unix microseconds).
    /// `label` files it under another name than its kind (e.g. the set-up's orders).
    func expect(_ user: String, _ kind: String, _ subject: String, at t: Int64, label: String? = nil) {
        let k = Self.key(user, kind, subject)
        lock.withLock {
            var e = entries[k] ?? Entry(kind: kind)
            guard e.sentAt == nil else { return }
            e.sentAt = t
            e.kind = label ?? kind
            if let first = e.firstAt, !e.recovered { record(e.kind, first - t) }
            entries[k] = e
        }
    }

    /// A push arrived (live, or replayed by recovery).
    func received(_ user: String, _ kind: String, _ subject: String, at t: Int64, recovered: Bool) {
        let k = Self.key(user, kind, subject)
        lock.withLock {
            receiptsInterval += 1
            receiptsTotal += 1
            var e = entries[k] ?? Entry(kind: kind)
            e.receipts += 1
            if e.receipts == 1 {
                e.firstAt = t
                e.recovered = recovered
                if let sent = e.sentAt, !recovered { record(e.kind, t - sent) }
            }
            entries[k] = e
        }
    }

    /// A latency measured elsewhere (group messages carry their own send time).
    func latency(_ kind: String, micros: Int64) {
        lock.withLock {
            receiptsInterval += 1
            receiptsTotal += 1
            record(kind, micros)
        }
    }

    /// A receipt without latency (a recovered group message).
    func counted() {
        lock.withLock {
            receiptsInterval += 1
            receiptsTotal += 1
        }
    }

    /// What the run is doing now (set-up, steady peak, storm return, price drop): receipts
    /// are also timed per moment, to tell steady-state latency from bursts.
    private var moment = "ramp"
    private var byMoment: [String: Latency] = [:]

    func setMoment(_ m: String) { lock.withLock { moment = m } }

    /// Publication (the `ts` Redis stamps when the push is stored) to receipt: the fan-out
    /// half of a push's latency (pub/sub, the node's loop, the socket, this process).
    private var fanoutByMoment: [String: Latency] = [:]

    func fanout(micros: Int64) { lock.withLock { fanoutByMoment[moment, default: Latency()].record(micros: micros) } }

    var fanoutSummaries: [String: LatencySummary] { lock.withLock { fanoutByMoment.mapValues(\.summary) } }

    var momentSummaries: [String: LatencySummary] { lock.withLock { byMoment.mapValues(\.summary) } }

    private func record(_ kind: String, _ micros: Int64) {
        byMoment[moment, default: Latency()].record(micros: micros)
        latency[kind, default: Latency()].record(micros: micros)
        interval.record(micros: micros)
        intervalByKind[kind, default: Latency()].record(micros: micros)
    }

    /// Expected pushes still missing (for the drain).
    var outstanding: Int {
        lock.withLock { entries.values.reduce(0) { $0 + ($1.sentAt != nil && $1.receipts == 0 ? 1 : 0) } }
    }

    var totalReceipts: Int { lock.withLock { receiptsTotal } }

    /// Latency of every kind and receipts since the last call, then starts over.
    func takeInterval() -> (all: Latency, byKind: [String: Latency], receipts: Int) {
        lock.withLock {
            defer {
                interval = Latency()
                intervalByKind = [:]
                receiptsInterval = 0
            }
            return (interval, intervalByKind, receiptsInterval)
        }
    }

    /// Running p99 of everything so far (progress lines).
    var p99SoFar: Double {
        lock.withLock {
            var all = Latency()
            for l in latency.values { all.add(l) }
            return all.summary.p99Ms
        }
    }

    var all: Latency {
        lock.withLock {
            var all = Latency()
            for l in latency.values { all.add(l) }
            return all
        }
    }

    /// Per kind: expected, received, lost, duplicates, unexpected, recovered, latency.
    func counts() -> [String: KindCounts] {
        lock.withLock {
            var out: [String: KindCounts] = [:]
            for e in entries.values {
                var c = out[e.kind] ?? KindCounts()
                if e.sentAt != nil {
                    c.expected += 1
                    if e.receipts > 0 { c.received += 1 } else { c.lost += 1 }
                } else {
                    c.unexpected += 1
                }
                if e.receipts > 1 { c.duplicates += e.receipts - 1 }
                if e.recovered && e.receipts > 0 { c.recovered += 1 }
                out[e.kind] = c
            }
            for (kind, l) in latency {
                out[kind, default: KindCounts()].latency = l.summary
            }
            return out
        }
    }

    /// A few of the missing pushes, for the report.
    func missingSamples(_ n: Int = 8) -> [String] {
        lock.withLock { entries.filter { $0.value.sentAt != nil && $0.value.receipts == 0 }.keys.sorted().prefix(n).map { $0 } }
    }
}

/// Error reasons counted by name, shared by every thread of the run.
final class ErrorTally: Sendable {
    private let reasons = Mutex<[String: Int]>([:])

    func add(_ what: String) { reasons.withLock { $0[String(what.prefix(160)), default: 0] += 1 } }
    var total: Int { reasons.withLock { $0.values.reduce(0, +) } }
    var all: [String: Int] { reasons.withLock { $0 } }
}
