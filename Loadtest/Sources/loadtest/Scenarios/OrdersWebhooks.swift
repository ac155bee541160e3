import Foundation
import GatewayProtocol
import GatewayTestSupport

/// `orders --webhooks`: what the shop's endpoint sees of the money path. The run starts a
/// `WebhookReceiver` on loopback, points the spawned nodes' `webhooks.url` at it with a fresh
/// secret, and at the end holds every delivery against the event log read back with
/// `GET /api/v1/events`: all delivered, signed, each order's events in log order.
struct WebhookResults: Codable {
    var url = ""
    /// The event log read back at the end (the run's Redis is private: every event is this run's).
    var eventsWritten = 0
    var eventsByType: [String: Int] = [:]
    var logReadError: String?
    /// Every POST the receiver answered.
    var requests = 0
    /// Distinct event ids answered 2xx.
    var received = 0
    /// 2xx deliveries of an id already delivered (allowed: at least once; a cost, not a fault).
    var duplicates = 0
    /// In the log, never delivered (`missingSample`: the first few ids).
    var missing = 0
    var missingSample: [String] = []
    /// Delivered, not in the log.
    var unexpected = 0
    /// An order's event delivered (first time) before an event of that order logged earlier.
    var outOfOrder = 0
    var signaturesInvalid = 0
    /// Wall clock (ms) of the last first delivery.
    var lastDeliveryMs: Int64?
    /// Distinct events delivered per second, first to last delivery.
    var receivedPerSecond = 0.0
    /// The event's `created_at` (the decision) to the receiver having the request, same host's wall clock.
    var latency: LatencySummary?
    /// `gateway_webhook_backlog` of the first node when the last notify was answered, and 10 s later.
    var backlogAtEnd: Int?
    var backlogTenSecondsLater: Int?
    /// From the last notify answered to the last logged event's first delivery (0 when the
    /// sender kept up); nil while events are missing.
    var caughtUpSeconds: Double?
}

/// The receiver of one run and its live counts.
final class WebhookWatch: @unchecked Sendable {   // the receiver locks its own state
    let receiver: WebhookReceiver
    private let secret: String
    private let lock = NSLock()
    private var lastCount = 0
    private var backlogAtEnd: Int?
    private var backlogLater: Int?
    private var ordersEndedAt = 0.0
    private var ordersEndedWallMs: Int64 = 0
    private let laterSampled = DispatchSemaphore(value: 0)

    init() throws {
        secret = "whsec-" + Machine.randomHex(bytes: 16)
        receiver = try WebhookReceiver(secret: secret)
    }

    /// The spawned nodes' settings; appended after `--node-env` so they win.
    var nodeEnv: [String] { ["GATEWAY_WEBHOOKS_URL=\(receiver.url)", "GATEWAY_WEBHOOKS_SECRET=\(secret)"] }

    /// For the once-a-second progress line: received, per second since the last call, bad signatures.
    func progress() -> String {
        let all = receiver.receipts()
        let ids = Set(all.lazy.filter(\.delivered).map(\.eventID))
        let previous = lock.withLock {
            defer { lastCount = ids.count }
            return lastCount
        }
        let bad = all.count { !$0.signatureValid }
        return "hooks \(Fmt.int(ids.count)) (+\(Fmt.int(ids.count - previous))/s)" + (bad > 0 ? " BAD SIG \(bad)" : "")
    }

    /// The backlog when the orders ended, and (on a thread of its own, whatever the run does
    /// meanwhile) 10 s later: how far behind the sender is, and how fast it catches up.
    func ordersEnded(_ c: Cluster, lastNotifyAnsweredMicros: Int64?) {
        let backlog = Self.backlog(c)
        lock.withLock {
            ordersEndedAt = Clock.now()
            ordersEndedWallMs = (lastNotifyAnsweredMicros ?? Clock.unixMicros()) / 1000
            backlogAtEnd = backlog
        }
        Thread { [self] in
            Clock.sleep(seconds: 10)
            let later = Self.backlog(c)
            lock.withLock { backlogLater = later }
            laterSampled.signal()
        }.start()
    }

    private static func backlog(_ c: Cluster) -> Int? { c.metric(0, "gateway_webhook_backlog").map { Int($0) } }

    /// After the orders: reads the log back, waits until every logged event was delivered
    /// (at most `drainLimit` s after the orders ended, or 10 s without a new delivery), then
    /// holds the receipts against the log.
    func finish(_ c: Cluster, drainLimit: Double, progress p: Progress) -> WebhookResults {
        laterSampled.wait()
        let endedAt = lock.withLock { ordersEndedAt }
        var log: [JSON] = []
        var readError: String?
        do { log = try Self.readLog(ShopClient(c.endpoints[0], shopKey: c.shopKey, timeout: 30)) } catch { readError = "\(error)" }
        let logged = Set(log.compactMap { $0["id"]?.stringValue })
        var ticker = Ticker(interval: 1)
        while Clock.now() - endedAt < drainLimit {
            let receipts = receiver.delivered()
            let delivered = Set(receipts.map(\.eventID))
            if logged.isSubset(of: delivered) { break }
            // Receipt times are on the same monotonic clock as `Clock.now()`.
            if Clock.now() - max(endedAt, receipts.last?.endedAt ?? 0) >= 10 { break }
            p.line("hooks", "\(Fmt.int(logged.intersection(delivered).count))/\(Fmt.int(logged.count)) logged events delivered | " + progress())
            ticker.wait()
        }
        var r = results(log: log)
        r.logReadError = readError
        lock.withLock {
            if r.missing == 0, let last = r.lastDeliveryMs { r.caughtUpSeconds = Double(max(0, last - ordersEndedWallMs)) / 1000 }
            r.backlogAtEnd = backlogAtEnd
            r.backlogTenSecondsLater = backlogLater
        }
        return r
    }

    /// Every event of the log, oldest first, paged with `after` until an empty page.
    static func readLog(_ shop: ShopClient) throws -> [JSON] {
        var events: [JSON] = []
        var after: String?
        while true {
            let r = try shop.call("GET", "/api/v1/events?limit=1000" + (after.map { "&after=\($0)" } ?? ""), idempotent: true)
            guard r.status == 200, let page = r.json?["events"]?.arrayValue else {
                throw SpawnError("GET /api/v1/events: HTTP \(r.status) \(r.text)")
            }
            guard let last = page.last?["id"]?.stringValue else { return events }
            events += page
            after = last
        }
    }

    /// Holds the receipts against the log.
    func results(log: [JSON]) -> WebhookResults {
        var r = WebhookResults()
        r.url = receiver.url
        let events = log.compactMap(WebhookAudit.LoggedEvent.init)
        for e in events { r.eventsByType[e.type, default: 0] += 1 }
        let audit = WebhookAudit(log: events, receipts: receiver.receipts())
        r.eventsWritten = events.count
        r.requests = audit.requests
        r.received = audit.received
        r.duplicates = audit.duplicates
        r.missing = audit.missing
        r.missingSample = audit.missingSample
        r.unexpected = audit.unexpected
        r.outOfOrder = audit.outOfOrder
        r.signaturesInvalid = audit.signaturesInvalid
        r.receivedPerSecond = audit.receivedPerSecond
        r.lastDeliveryMs = audit.lastDeliveryMs
        var latency = Latency()
        for ms in audit.latenciesMs { latency.record(micros: ms * 1000) }
        r.latency = latency.count > 0 ? latency.summary : nil
        return r
    }

    /// What makes the run's verdict fail. Duplicates do not: delivery is at least once.
    static func problems(_ w: WebhookResults) -> [String] {
        var why: [String] = []
        if let e = w.logReadError { why.append("event log not read back: \(e)") }
        if w.missing > 0 { why.append("\(w.missing) of \(w.eventsWritten) logged events never reached the webhook receiver") }
        if w.unexpected > 0 { why.append("\(w.unexpected) webhook deliveries name events not in the log") }
        if w.outOfOrder > 0 { why.append("\(w.outOfOrder) webhook deliveries came before an earlier event of their order") }
        if w.signaturesInvalid > 0 { why.append("\(w.signaturesInvalid) webhook requests with an invalid signature") }
        return why
    }

    static func summaryLines(_ w: WebhookResults) -> [String] {
        let types = w.eventsByType.sorted { $0.key < $1.key }.map { "\($0.key) \(Fmt.int($0.value))" }.joined(separator: ", ")
        return [
            "webhooks    written \(Fmt.int(w.eventsWritten)) (\(types)); received \(Fmt.int(w.received)) at \(Fmt.num(w.receivedPerSecond, 0))/s in \(Fmt.int(w.requests)) requests; "
                + "duplicates \(w.duplicates), missing \(w.missing), unexpected \(w.unexpected), out of order \(w.outOfOrder), signatures invalid \(w.signaturesInvalid)",
            "hook lat.   " + (w.latency?.line ?? "no samples") + " (event created_at -> receiver)",
            "backlog     \(w.backlogAtEnd.map { Fmt.int($0) } ?? "?") when the orders ended, \(w.backlogTenSecondsLater.map { Fmt.int($0) } ?? "?") 10 s later; "
                + (w.caughtUpSeconds.map { "every event delivered \(Fmt.num($0, 1)) s after the orders ended" } ?? "not every event delivered"),
        ]
    }
}
