import Foundation
import GatewayProtocol
import GatewayTestSupport

/// The holiday peak's restock rush (contract 4.6, issue 14): a sold-out product, a line of
/// restock watchers whose order is known (each `watch` goes after the previous reply), and
/// one upload of keys during the peak. The first `keys` of the line must each hold one key
/// until `until`; holders who pay within the hold are delivered; nobody else's order takes
/// a held key; every watcher is told once. State under `lock`; push handling runs on a
/// fleet loop thread (fleet lock held) and only queues HTTP work.
final class RestockRush: @unchecked Sendable {
    let product: String
    /// The ledger files `product.restock` under these, so holders and the rest get their own latency.
    static let holdersKind = "product.restock (holders)"
    static let restKind = "product.restock (rest)"
    /// The rush's orders, timed apart from the peak's other orders.
    static let orderKind = "order.status (restock)"

    private unowned let scenario: HolidayPeakScenario
    private let cmd: HolidayPeakCommand
    private let lock = NSLock()
    /// Watches answered with `restock:true`, in the order they were answered (= the line's order).
    private var line: [HPBrowser] = []
    private var watchesIgnored = 0
    private var watchErrors = 0
    private var watchStarted = 0.0
    private var watchSeconds: Double?
    /// The candidate whose watch is out (one at a time), and since when: a reply lost with its
    /// connection would stop the line forming, so `nudge` moves on after a while.
    private var cursor = 0
    private var cursorSince = 0.0
    private var candidates: [HPBrowser] = []
    private var watchDone: Counter?
    /// The upload went out: the line is what it was then; watches still unsent are not sent.
    private var lineClosed = false
    /// Set when the upload goes out: the line as it was, who must hold, who snipes.
    private var expectedHolders: [String] = []
    private var position: [String: Int] = [:]
    private var snipers: Set<String> = []
    private var uploadAt: Int64?
    private var upload = (status: Int?(nil), ms: Double?(nil), holds: Int?(nil), stock: Int?(nil))
    private var slowlogMaxMs: Double?
    /// Per watcher told: the hold's `until` (ms) if any; first receipt only.
    private var told: [String: Int64?] = [:]
    private var lastLiveReceipt: Int64?
    private var lastHolderReceipt: Int64?
    private var orders: [Order] = []

    private struct Order {
        var user: String
        var holder: Bool
        var id: String
        /// Notify sent and answered (Unix µs): paid in time only if answered before `until`.
        var notifySent: Int64
        var notifyAnswered: Int64
        var status: String
        var keys: [String]
    }

    init(scenario: HolidayPeakScenario, product: String) {
        self.scenario = scenario
        cmd = scenario.cmd
        self.product = product
    }

    // MARK: Set-up: the line

    /// Sends the watches one at a time from the first candidate on; `done` counts the candidates finished.
    func startWatches(_ candidates: [HPBrowser], done: Counter) {
        lock.withLock {
            self.candidates = candidates
            watchDone = done
            watchStarted = Clock.now()
        }
        scenario.fleet.lock.withLock { watchNext(from: 0) }
    }

    /// The set-up's loop, every 100 ms: a watch unanswered for 5 s (its connection dropped) is
    /// given up, as a failed watch, and the next one goes out.
    func nudge() {
        let stuck: Int? = lock.withLock {
            guard cursor < candidates.count, Clock.now() - cursorSince > 5 else { return nil }
            watchErrors += 1
            cursor += 1
            return cursor
        }
        guard let stuck else { return }
        scenario.errors.add("watch restock: no answer in 5 s")
        watchDone?.add()
        scenario.fleet.lock.withLock { watchNext(from: stuck) }
    }

    /// Fleet lock held (the caller's, or the previous reply's handler on a loop thread).
    private func watchNext(from start: Int) {
        let fields = #""product":"\#(product)","restock":true"#
        let (candidates, done) = lock.withLock { (self.candidates, watchDone!) }
        var i = start
        while i < candidates.count {
            let b = candidates[i], next = i + 1
            let closed: Bool = lock.withLock {
                cursor = i
                cursorSince = Clock.now()
                return lineClosed
            }
            if closed {
                scenario.errors.add("watch restock: not sent before the upload (the set-up ran out of time)")
                lock.withLock { watchErrors += candidates.count - i }
                break
            }
            let sent = scenario.fleet.send(b, "watch", fields, name: "watch restock") { [self] reply in
                let counted: Bool? = lock.withLock {
                    // A reply after `nudge` gave up on it: its place in line is unknown, so it is not counted.
                    guard cursor == i else { return nil }
                    // Taken: `nudge` now waits on the next one.
                    cursor = next
                    cursorSince = Clock.now()
                    // Answered after the upload went out: not in the line the pushes were expected for.
                    if lineClosed {
                        watchErrors += 1
                        return false
                    }
                    if let ok = reply["ok"] {
                        if ok["restock"]?.boolValue == true { line.append(b) } else { watchesIgnored += 1 }
                    } else {
                        watchErrors += 1
                    }
                    return true
                }
                guard let counted else { return }
                if counted && reply["ok"] == nil { scenario.errors.add("watch restock: " + (reply["error"]?["code"]?.stringValue ?? "?")) }
                done.add()
                watchNext(from: next)
            }
            if sent { return }
            lock.withLock { watchErrors += 1 }
            done.add()
            i = next
        }
        lock.withLock {
            cursor = candidates.count
            watchSeconds = Clock.now() - watchStarted
        }
    }

    var lineLength: Int { lock.withLock { line.count } }

    // MARK: Peak: the upload

    /// One upload of `--restock-keys` keys (a job-queue thread). Every watcher in line expects one
    /// `product.restock`, the first `keys` of them with a hold.
    func uploadKeys(_ shop: ShopClient, _ c: Cluster) {
        let ledger = scenario.ledger
        let slowlog = SlowlogWindow(c, product: product)
        let body = scenario.keysBody(product, 0..<cmd.restockKeys)
        let t = Clock.unixMicros()
        lock.withLock {
            let holders = min(cmd.restockKeys, line.count)
            expectedHolders = line.prefix(holders).map(\.user)
            for (i, b) in line.enumerated() {
                position[b.user] = i
                ledger.expect(b.user, "product.restock", product, at: t, label: i < holders ? Self.holdersKind : Self.restKind)
            }
            // Snipers spread evenly over the watchers told without a hold.
            let rest = line.count - holders
            let count = min(cmd.restockSnipers, rest)
            if count > 0 {
                let stride = Double(rest) / Double(count)
                snipers = Set((0..<count).map { line[holders + Int(Double($0) * stride)].user })
            }
            uploadAt = t
            lineClosed = true
        }
        let sent = Clock.unixMicros()
        do {
            let r = try shop.call("POST", "/api/v1/products/\(product)/keys", body)
            let ms = Double(Clock.unixMicros() - sent) / 1000
            if r.status != 200 { scenario.httpErrors.add("restock upload: HTTP \(r.status) \(r.text.prefix(100))") }
            lock.withLock {
                upload = (r.status, ms, r.json?["holds"]?.intValue.map { Int($0) }, r.json?["stock"]?.intValue.map { Int($0) })
            }
        } catch {
            scenario.httpErrors.add("restock upload: \(error)")
        }
        let slowest = slowlog?.longestMs()
        lock.withLock { slowlogMaxMs = slowest }
    }

    // MARK: Pushes (fleet lock held, loop thread: no blocking)

    /// A `product.restock` arrived (already in the ledger). A holder chosen to buy, or a sniper,
    /// orders and pays at once, on the job queue.
    func pushed(_ b: HPBrowser, _ data: JSON?, now: Int64, recovered: Bool) {
        guard data?["product"]?.stringValue == product else { return }
        let until = data?["hold"]?["until"]?.intValue
        let buy: Bool? = lock.withLock {
            guard told[b.user] == nil else { return nil }
            told[b.user] = .some(until)
            if !recovered {
                lastLiveReceipt = max(lastLiveReceipt ?? 0, now)
                if until != nil { lastHolderReceipt = max(lastHolderReceipt ?? 0, now) }
            }
            if until != nil {
                // Which holders buy: a fixed spread over the line, so a rerun picks the same ones.
                let i = position[b.user] ?? 0
                return Double((i * 7919) % 1000) < cmd.restockBuyShare * 1000
            }
            return snipers.contains(b.user)
        }
        guard buy == true else { return }
        scenario.jobs.add { [self] shop in order(shop, b, holder: until != nil) }
    }

    /// Order, payment, signed notify, then the order read back: its status is the push expected.
    private func order(_ shop: ShopClient, _ b: HPBrowser, holder: Bool) {
        let s = scenario, ledger = s.ledger
        do {
            let t1 = Clock.unixMicros()
            guard let o = try s.http(shop, "POST", "/api/v1/orders", #"{"buyer":"\#(b.user)","product":"\#(product)","quantity":1}"#,
                                     want: 201, what: "restock order"),
                  let id = o["id"]?.stringValue else { return }
            ledger.expect(b.user, "order.status", "\(id) pending_payment", at: t1, label: Self.orderKind)
            guard let p = try s.createPayment(shop, order: id, payer: b.user) else { return }
            let t2 = Clock.unixMicros()
            guard try s.notify(shop, p) else { return }
            let t3 = Clock.unixMicros()
            let r = try shop.call("GET", "/api/v1/orders/\(id)", idempotent: true)
            guard r.status == 200, let read = r.json, let status = read["status"]?.stringValue else {
                s.httpErrors.add("restock order read back: HTTP \(r.status)")
                return
            }
            // Delivered or abnormal: known only now; a push that came first waits in the ledger.
            ledger.expect(b.user, "order.status", "\(id) \(status)", at: t2, label: Self.orderKind)
            let keys = (read["keys"]?.arrayValue ?? []).compactMap(\.stringValue)
            lock.withLock {
                orders.append(Order(user: b.user, holder: holder, id: id, notifySent: t2, notifyAnswered: t3, status: status, keys: keys))
            }
        } catch {
            s.httpErrors.add("restock order: \(error)")
        }
    }

    // MARK: After the drain

    /// Waits for the holds to end (until + 2 s) and the queued orders, reads the product back and
    /// fills the report's part (the latencies and counts of the pushes come from the ledger).
    func finish(_ c: Cluster, pushes: [String: PushLedger.KindCounts], _ p: Progress) -> HolidayPeakResults.Restock {
        let untilMs: Int64? = lock.withLock { told.values.compactMap { $0 }.max() }
        if let untilMs {
            // Nodes given with --url keep their own restock.hold_s: the pushes' `until` is what counts (bounded).
            // `until` is on the realtime clock, deadlines on the monotonic one.
            let untilIn = Double(untilMs) / 1000 - Double(Clock.unixMicros()) / 1e6
            let end = Clock.now() + min(untilIn + 2, Double(max(cmd.restockHoldS, 300)) + 30)
            if end > Clock.now() { p.note("restock: waiting \(Fmt.num(end - Clock.now(), 1)) s for the holds to end") }
            while Clock.now() < end {
                Children.haltIfInterrupted()
                usleep(100_000)
            }
        }
        let jobsDeadline = Clock.now() + 30
        while scenario.jobs.pending > 0 && Clock.now() < jobsDeadline { usleep(50_000) }

        var r = HolidayPeakResults.Restock()
        r.product = product
        r.watchers = cmd.restockWatchers
        r.extraConnections = cmd.restockExtraWatchers
        r.keys = cmd.restockKeys
        // Every unused hold back in stock: held 0 (each node's sweep, within 250 ms of `until`).
        let shop = ShopClient(c.endpoints[0], shopKey: c.shopKey, timeout: 30)
        defer { shop.disconnect() }
        let readDeadline = Clock.now() + 15
        while true {
            var answered = false
            if let j = try? shop.product(product) {
                answered = true
                r.stockAfter = j["stock"]?.intValue.map { Int($0) }
                r.heldAfter = j["held"]?.intValue.map { Int($0) }
            }
            // No `held` in the answer: a gateway without holds; waiting changes nothing.
            if r.heldAfter == 0 || (answered && r.heldAfter == nil) || Clock.now() > readDeadline { break }
            usleep(250_000)
        }

        lock.withLock {
            r.inLine = line.count
            r.watchesIgnored = watchesIgnored
            r.watchErrors = watchErrors
            r.watchSeconds = watchSeconds ?? 0
            (r.uploadStatus, r.uploadMs, r.holdsAnswered, r.stockAnswered) = upload
            r.slowlogMaxMs = slowlogMaxMs
            r.expectedHolds = expectedHolders.count
            let holders = told.filter { $0.value != nil }
            let first = Set(expectedHolders)
            r.holdPushes = holders.count
            r.holdersOutOfOrder = holders.keys.filter { !first.contains($0) }.count
            r.holdersMissing = first.filter { holders[$0] == nil }.count
            let untils = Set(holders.values.compactMap { $0 })
            r.untilValues = untils.count
            r.holdUntilMs = untils.max()
            if r.holdersOutOfOrder > 0 {
                let wrong = holders.keys.filter { !first.contains($0) }.sorted().prefix(3)
                r.problems.append("holds to watchers after the first \(first.count) in line: " + wrong.map { "\($0) (place \(position[$0].map { $0 + 1 } ?? 0))" }.joined(separator: ", "))
            }
            let until = (r.holdUntilMs ?? 0) * 1000
            var seen = Set<String>()
            let uploaded = Set((0..<cmd.restockKeys).map { scenario.keyName(product, $0) })
            var lastHolderDelivered: Int64?
            for o in orders {
                let inTime = until > 0 && o.notifyAnswered < until
                let delivered = o.status == "delivered"
                if o.holder {
                    r.holderOrders += 1
                    if inTime {
                        r.holderPaidInTime += 1
                        if delivered && o.keys.count == 1 {
                            r.holderDeliveredInTime += 1
                        } else if r.problems.count < 10 {
                            r.problems.append("holder \(o.user) paid \(o.id) \(Fmt.num(Double(until - o.notifyAnswered) / 1e6, 2)) s before until: \(o.status), \(o.keys.count) keys")
                        }
                    } else {
                        r.holderPaidLate += 1
                    }
                    if delivered { lastHolderDelivered = max(lastHolderDelivered ?? 0, o.notifyAnswered) }
                } else {
                    r.sniperOrders += 1
                    if until == 0 || o.notifyAnswered < until {
                        r.sniperPaidBeforeUntil += 1
                        if delivered { r.sniperDeliveredBeforeUntil += 1 }
                    } else if delivered {
                        r.sniperDeliveredLater += 1
                    }
                }
                for k in o.keys {
                    r.keysGiven += 1
                    if !seen.insert(k).inserted { r.keysTwice += 1 }
                    if !uploaded.contains(k) { r.keysForeign += 1 }
                }
            }
            r.expectedStockAfter = r.uploadStatus == 200 ? cmd.restockKeys - r.keysGiven : nil
            if let at = uploadAt {
                r.lastToldMs = lastLiveReceipt.map { Double($0 - at) / 1000 }
                r.lastHolderToldMs = lastHolderReceipt.map { Double($0 - at) / 1000 }
                if let last = lastHolderDelivered, last > at {
                    r.holderDeliveredPerSecond = Double(orders.filter { $0.holder && $0.status == "delivered" }.count) / (Double(last - at) / 1e6)
                }
            }
        }
        r.holderLatency = pushes[Self.holdersKind]?.latency
        r.restLatency = pushes[Self.restKind]?.latency
        p.note("restock: \(r.inLine) in line, \(r.holdPushes) holds told, \(r.holderOrders) holder and \(r.sniperOrders) sniper orders; stock after \(r.stockAfter.map(String.init) ?? "?") held \(r.heldAfter.map(String.init) ?? "?")")
        return r
    }
}

/// The longest Redis command on one product while an upload runs: a low `slowlog-log-slower-than`
/// for the window, then the entries that name the product. One spawned redis-server only (a
/// Redis Cluster spreads the slots; `--url` gives no Redis).
private struct SlowlogWindow {
    let probe: RedisProbe
    let product: String
    let threshold: String

    init?(_ c: Cluster, product: String) {
        guard c.redisCluster == nil, let url = c.redisURL, let probe = try? RedisProbe(url: url, timeout: 5),
              let old = (try? probe.call(["CONFIG", "GET", "slowlog-log-slower-than"]))?.array?.last?.text else { return nil }
        _ = try? probe.pipeline([["SLOWLOG", "RESET"], ["CONFIG", "SET", "slowlog-log-slower-than", "500"]])
        self.probe = probe
        self.product = product
        threshold = old
    }

    /// Milliseconds of the longest entry naming the product (0: none over 0.5 ms); the threshold restored.
    func longestMs() -> Double? {
        defer { _ = try? probe.call(["CONFIG", "SET", "slowlog-log-slower-than", threshold]) }
        guard let entries = (try? probe.call(["SLOWLOG", "GET", "128"]))?.array else { return nil }
        var longest: Int64 = 0
        for e in entries {
            guard let fields = e.array, fields.count >= 4, let micros = fields[2].int,
                  (fields[3].array ?? []).contains(where: { $0.text?.contains(product) == true }) else { continue }
            longest = max(longest, micros)
        }
        return Double(longest) / 1000
    }
}
