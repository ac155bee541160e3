import Foundation

/// What the parent tells one probe child (`loadtest orders|pricedrop --probe-worker`),
/// one JSON line on its stdin. Probes are users who act (watch, buy) rather than only
/// subscribe, so they have their own child next to `loadtest worker`.
struct ProbeSpec: ChildSpec {
    enum Mode: String, Codable {
        /// Stay connected and report every `order.status` push.
        case buyers
        /// Connect, watch `product`, then stay (online) or close (offline).
        case watchers
    }

    var mode: Mode
    var index: Int
    var urls: [String]
    var secret: String
    var tokenTTL: Int
    /// User g (global index) is `<userPrefix><g>` and goes to `urls[g % urls.count]`.
    var userPrefix: String
    var first: Int
    var count: Int
    /// New connections per second from this child.
    var rate: Double
    /// Connections still being set up (connect, watch, close) before pacing waits:
    /// bounds descriptors beyond the ones kept open.
    var maxInFlight: Int
    var sourceAddresses: [String]
    var connectTimeout: Int
    var rxBufferSize: Int
    /// Watchers: the product to watch.
    var product: String = ""
    /// Watchers: fraction that stays connected, spread evenly (see `isOnline`).
    var onlineFraction: Double = 1
    /// Seconds between `ping` commands on each kept socket until the PATCH (0: none).
    var keepalive: Int = 0

    /// User g stays connected when the running count of online users steps up at g,
    /// so every stretch of users holds the same fraction.
    static func isOnline(_ g: Int, fraction: Double) -> Bool {
        if fraction >= 1 { return true }
        if fraction <= 0 { return false }
        return Int((Double(g + 1) * fraction).rounded(.down)) > Int((Double(g) * fraction).rounded(.down))
    }
}

/// A final `order.status` push seen by a buyer: order id, status, receipt (Unix µs).
struct ProbeReceipt: Codable {
    var o: String
    var s: String
    var t: Int64
}

/// What a probe child reports, every quarter second and at the end. Counters are
/// cumulative; `receipts` and `alertLatency` cover only the time since the last report.
/// Summed over the children it is `ProbeTotals`.
struct ProbeStatus: ChildStatus {
    var worker = 0
    var final = false
    var attempted = 0
    var connected = 0
    var failed = 0
    var dropped = 0
    /// Set-up not finished yet (connecting, watching, closing).
    var settling = 0
    /// Connections kept open after set-up.
    var online = 0
    var watched = 0
    var watchFailed = 0
    var closedOffline = 0
    var pushes: [String: Int] = [:]
    /// Personal-channel offsets skipped, or seen again.
    var gaps = 0
    var repeats = 0
    var unexpected = 0
    var failures: [String: Int] = [:]
    var drops: [String: Int] = [:]
    var receipts: [ProbeReceipt]?
    var alerts = 0
    /// Online watchers that got more than one alert (each extra one counted).
    var alertDuplicates = 0
    /// Alerts for another product, or with a price other than the one set.
    var alertWrong = 0
    /// Online watchers with at least one alert.
    var alerted = 0
    var alertLatency: SparseHistogram?
    var firstAlertMicros: Int64?
    var lastAlertMicros: Int64?
    var fdLimit = 0
    var rssBytes = 0
    /// Totals: children that have reported.
    var reporting = 0

    /// Adds another child's counters (receipts and histograms go through the pool).
    mutating func add(_ s: ProbeStatus) {
        reporting += 1
        attempted += s.attempted
        connected += s.connected
        failed += s.failed
        dropped += s.dropped
        settling += s.settling
        online += s.online
        watched += s.watched
        watchFailed += s.watchFailed
        closedOffline += s.closedOffline
        gaps += s.gaps
        repeats += s.repeats
        unexpected += s.unexpected
        alerts += s.alerts
        alerted += s.alerted
        alertDuplicates += s.alertDuplicates
        alertWrong += s.alertWrong
        firstAlertMicros = firstAlertMicros.earliest(s.firstAlertMicros)
        lastAlertMicros = lastAlertMicros.latest(s.lastAlertMicros)
        pushes.add(s.pushes)
        failures.add(s.failures)
        drops.add(s.drops)
        rssBytes += s.rssBytes
    }
}

/// Sums of every probe child's latest report.
typealias ProbeTotals = ProbeStatus
