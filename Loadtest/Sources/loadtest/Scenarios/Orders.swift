import ArgumentParser
import Foundation
import Synchronization
import GatewayProtocol

/// Scenario 3: the money path end to end. Orders are created, paid and notified over
/// HTTP by concurrent workers while the buyers' WebSockets wait for `delivered`; at the
/// end every order is read back to check that no key went out twice.
struct OrdersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "orders",
        abstract: "Create, pay and notify orders concurrently; measure delivered orders/s, notify and push latency, then check every key went out once.")

    @Option(help: "Orders to place (quantity 1 each).")
    var orders = 1000

    @Option(help: "Concurrent HTTP workers; each does order -> payment -> signed notify, one order at a time.")
    var concurrency = 16

    @Option(help: "Card keys to upload (default: --orders). Fewer than --orders leaves the rest abnormal.")
    var keys: Int?

    @Option(help: "Buyers, one WebSocket each; order n belongs to buyer n mod B (default: min(orders, 1000)).")
    var buyers: Int?

    @Option(help: "Product price in minor units.")
    var price = 1999

    @Option(help: "New buyer connections per second while setting up.")
    var connectRate: Double = 1000

    @Option(help: "Seconds to wait for late pushes after the last notify.")
    var drain = 20

    @Option(help: "payments.secret of the nodes given with --url.")
    var paymentsSecret: String?

    @Flag(help: "Profile the first node with `perf record -g` while orders run (report beside the logs).")
    var perf = false

    @Flag(help: "Point the spawned nodes' webhooks.url at a receiver in this process; report events written and delivered, duplicates, signatures, delivery latency and the backlog.")
    var webhooks = false

    @Option(help: "With --webhooks: most seconds after the orders to wait for every logged event to be delivered (ends sooner after 10 s without a delivery).")
    var webhooksDrain = 120

    @OptionGroup var workerOptions: WorkerOptions
    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var output: OutputOptions

    @Flag(help: .hidden)
    var probeWorker = false

    var keyCount: Int { keys ?? orders }
    var buyerCount: Int { buyers ?? min(orders, 1000) }

    func validate() throws {
        guard (1...10_000_000).contains(orders) else { throw ValidationError("--orders must be 1 to 10,000,000") }
        guard (1...512).contains(concurrency) else { throw ValidationError("--concurrency must be 1 to 512") }
        guard (0...10_000_000).contains(keyCount) else { throw ValidationError("--keys must be 0 to 10,000,000") }
        guard (1...1_000_000).contains(buyerCount) else { throw ValidationError("--buyers must be 1 to 1,000,000") }
        guard price >= 0 else { throw ValidationError("--price must be 0 or more") }
        guard connectRate > 0 else { throw ValidationError("--connect-rate must be above 0") }
        guard (1...600).contains(drain) else { throw ValidationError("--drain must be 1 to 600 seconds") }
        guard (10...3600).contains(webhooksDrain) else { throw ValidationError("--webhooks-drain must be 10 to 3600 seconds") }
        if webhooks && cluster.external { throw ValidationError("--webhooks sets webhooks.url of the nodes it spawns: not with --url") }
    }

    func run() throws {
        if probeWorker { try ProbeWorker.main() }
        try OrdersScenario(self).run()
    }
}

struct OrdersResults: EmptyResults {
    static let sections: ReportSections = [.limits, .verdict, .timeline]

    struct Parameters: Codable {
        var orders: Int
        var keys: Int
        var buyers: Int
        var concurrency: Int
        var nodes: Int
        var probeWorkers: Int
        var external: Bool
    }

    struct Flow: Codable {
        var created = 0
        var paymentsCreated = 0
        var notified = 0
        var errors: [String: Int] = [:]
        var seconds = 0.0
        /// Whole cycles (order, payment, notify answered 200) per second.
        var cyclesPerSecond = 0.0
        /// `delivered` pushes per second, first notify sent to last such push received.
        var deliveredPerSecond = 0.0
        var createLatency: LatencySummary?
        var paymentLatency: LatencySummary?
        /// Request to answer of the signed notify.
        var notifyLatency: LatencySummary?
        /// Notify sent to the buyer's WebSocket receiving `order.status` delivered.
        var pushLatency: LatencySummary?
        /// Node CPU per order cycle while ordering (three HTTP calls, six Lua scripts, pushes).
        var gatewayCpuMsPerOrder: Double?
    }

    struct Pushes: Codable {
        var delivered = 0
        var abnormal = 0
        var other: [String: Int] = [:]
        var duplicates = 0
        /// Orders whose final status (read back) never reached the buyer's socket.
        var missing = 0
        /// Pushed status differs from the order read back.
        var mismatched = 0
        var personalGaps = 0
        var personalRepeats = 0
        var byType: [String: Int] = [:]
        var drainSeconds = 0.0
    }

    struct Check: Codable {
        var ordersRead = 0
        var readErrors = 0
        var delivered = 0
        var abnormal = 0
        var otherStatus: [String: Int] = [:]
        var expectedDelivered = 0
        var expectedAbnormal = 0
        var keysHandedOut = 0
        var keysInTwoOrders = 0
        var keysNotUploaded = 0
        var deliveredWithoutOneKey = 0
        var abnormalWithKeys = 0
        var stock: Int?
        var expectedStock = 0
        var ok = false
        var problems: [String] = []
    }

    var keyUploadSeconds = 0.0
    var buyersConnected = 0
    var buyerFailures: [String: Int] = [:]
    var flow = Flow()
    var pushes = Pushes()
    var check = Check()
    var cpuWhileOrdering: [CPUSpan] = []
    var perfTop: [String] = []
    /// With `--webhooks` only.
    var webhooks: WebhookResults?

    struct Point: Codable {
        var t: Double
        var notified: Int
        var delivered: Int
        var notifyP99Ms: Double
        var pushP50Ms: Double
        var pushP99Ms: Double
    }
}

typealias OrdersReport = ScenarioReport<OrdersResults>

/// Everything the HTTP workers and the buyers' receipts record, under one lock (hence
/// unchecked Sendable, as every lock-guarded class of the load tester).
final class OrderLedger: @unchecked Sendable {
    private let lock = NSLock()
    let total: Int
    private var nextIndex = 0
    private(set) var orderIDs: [String?]
    private var sentAt: [String: Int64] = [:]
    private var finals: [String: (status: String, t: Int64)] = [:]
    private var created = 0, payments = 0, notified = 0
    private var errors: [String: Int] = [:]
    private var duplicates = 0
    private var byStatus: [String: Int] = [:]
    private var pushInterval = Latency(), pushTotal = Latency()
    private var notifyInterval = Latency(), notifyTotal = Latency()
    private var createTotal = Latency(), paymentTotal = Latency()
    private(set) var firstStartMicros: Int64?
    private(set) var lastAnsweredMicros: Int64?
    private(set) var firstNotifyMicros: Int64?
    private(set) var lastNotifyMicros: Int64?
    private(set) var lastDeliveredMicros: Int64?

    init(total: Int) {
        self.total = total
        orderIDs = Array(repeating: nil, count: total)
    }

    func next() -> Int? {
        lock.withLock {
            guard nextIndex < total else { return nil }
            nextIndex += 1
            return nextIndex - 1
        }
    }

    func created(_ n: Int, _ id: String, micros: Int64, startedAt: Int64) {
        lock.withLock {
            firstStartMicros = min(firstStartMicros ?? startedAt, startedAt)
            orderIDs[n] = id
            created += 1
            createTotal.record(micros: micros)
        }
    }

    func paymentCreated(micros: Int64) {
        lock.withLock {
            payments += 1
            paymentTotal.record(micros: micros)
        }
    }

    func error(_ what: String) { lock.withLock { errors[String(what.prefix(160)), default: 0] += 1 } }

    /// Called just before the notify goes out, so a push can never beat its send time.
    func notifying(_ order: String, at t: Int64) {
        lock.withLock {
            sentAt[order] = t
            if firstNotifyMicros == nil { firstNotifyMicros = t }
            if let f = finals[order] { recordPush(f.t - t, status: f.status) }
        }
    }

    func notified(_ order: String, ok: Bool, micros: Int64, at t: Int64) {
        lock.withLock {
            if ok {
                notified += 1
                notifyInterval.record(micros: micros)
                notifyTotal.record(micros: micros)
            }
            lastNotifyMicros = max(lastNotifyMicros ?? 0, t)
            lastAnsweredMicros = max(lastAnsweredMicros ?? 0, t + micros)
        }
    }

    func receipts(_ rs: [ProbeReceipt]) {
        lock.withLock {
            for r in rs {
                if finals[r.o] != nil {
                    duplicates += 1
                    continue
                }
                finals[r.o] = (r.s, r.t)
                byStatus[r.s, default: 0] += 1
                if r.s == "delivered" { lastDeliveredMicros = max(lastDeliveredMicros ?? 0, r.t) }
                if let sent = sentAt[r.o] { recordPush(r.t - sent, status: r.s) }
            }
        }
    }

    private func recordPush(_ micros: Int64, status: String) {
        guard status == "delivered" else { return }
        pushInterval.record(micros: micros)
        pushTotal.record(micros: micros)
    }

    struct Snapshot {
        var created = 0, payments = 0, notified = 0, finals = 0, duplicates = 0
        var byStatus: [String: Int] = [:]
        var errors: [String: Int] = [:]
        var errorCount: Int { errors.values.reduce(0, +) }
    }

    var snapshot: Snapshot {
        lock.withLock {
            Snapshot(created: created, payments: payments, notified: notified, finals: finals.count, duplicates: duplicates,
                     byStatus: byStatus, errors: errors)
        }
    }

    /// Push and notify latency since the previous call.
    func takeIntervals() -> (push: Latency, notify: Latency) {
        lock.withLock {
            defer {
                pushInterval = Latency()
                notifyInterval = Latency()
            }
            return (pushInterval, notifyInterval)
        }
    }

    var summaries: (create: LatencySummary, payment: LatencySummary, notify: LatencySummary, push: LatencySummary) {
        lock.withLock { (createTotal.summary, paymentTotal.summary, notifyTotal.summary, pushTotal.summary) }
    }

    func finalStatus(_ order: String) -> String? { lock.withLock { finals[order]?.status } }
}

/// Threads still running, for the parent's progress loop.
final class ActiveCount: Sendable {
    private let n: Mutex<Int>
    init(_ n: Int) { self.n = Mutex(n) }
    var value: Int { n.withLock { $0 } }
    func decrement() { n.withLock { $0 -= 1 } }
}

/// Its threads share only what is set in `init`.
final class OrdersScenario: @unchecked Sendable {
    let cmd: OrdersCommand
    let tag = Machine.randomHex(bytes: 3)
    /// With `--webhooks`; set before the nodes start, read by the progress loop only.
    private var hooks: WebhookWatch?

    init(_ cmd: OrdersCommand) { self.cmd = cmd }

    var productID: String { "lt-orders-\(tag)" }
    func buyer(_ b: Int) -> String { "lto-\(tag)-\(b)" }
    func cardKey(_ i: Int) -> String { "LTK-\(tag)-\(i)" }

    func run() throws {
        let ctx = try RunContext(scenario: "orders", output: cmd.output)
        let p = ctx.progress
        let n = cmd.orders, m = cmd.keyCount, b = cmd.buyerCount
        let (withSecret, paySecret) = try ClusterSecrets.withPaymentsSecret(cmd.cluster, external: cmd.paymentsSecret)
        var clusterOptions = withSecret
        if cmd.webhooks {
            let watch = try WebhookWatch()
            clusterOptions.nodeEnv += watch.nodeEnv
            hooks = watch
            p.note("webhooks: the nodes deliver to \(watch.receiver.url)")
        }
        var limits = Preflight.check(connections: b, nodes: cmd.cluster.nodeCount, sourceAddresses: !cmd.workerOptions.noSourceAddresses)
        limits.forEach { p.note("preflight: \($0)") }

        var cluster: Cluster?
        var pool: ProbePool?
        defer {
            cluster?.stop()
            pool?.stop()
            hooks?.receiver.stop()
        }
        cluster = try Cluster.start(clusterOptions, logDir: ctx.logDir, progress: p)
        let c = cluster!
        let workers = cmd.workerOptions.workerCount(for: b)
        var report = OrdersReport(run: ctx.info, parameters: .init(
            orders: n, keys: m, buyers: b, concurrency: cmd.concurrency, nodes: c.endpoints.count, probeWorkers: workers,
            external: cmd.cluster.external))

        // Product and keys.
        let admin = ShopClient(c.endpoints[0], shopKey: c.shopKey, timeout: 60)
        try admin.createProduct(id: productID, price: cmd.price, title: "Load test card \(tag)")
        let uploadStart = Clock.now()
        var uploaded = 0
        while uploaded < m {
            let count = min(10_000, m - uploaded)
            var body = #"{"keys":["#
            for i in uploaded..<(uploaded + count) { body += (i > uploaded ? ",\"" : "\"") + cardKey(i) + "\"" }
            body += "]}"
            let r = try admin.call("POST", "/api/v1/products/\(productID)/keys", body)
            guard r.status == 200, r.json?["added"]?.intValue == Int64(count) else {
                throw SpawnError("uploading keys \(uploaded)..<\(uploaded + count): HTTP \(r.status) \(r.text)")
            }
            uploaded += count
            p.line("keys", "uploaded \(Fmt.int(uploaded))/\(Fmt.int(m)), stock \(r.json?["stock"]?.intValue ?? -1)")
        }
        report.keyUploadSeconds = Clock.now() - uploadStart

        // Buyers' sockets.
        let counts = (0..<workers).map { b / workers + ($0 < b % workers ? 1 : 0) }
        let plan = cmd.workerOptions.noSourceAddresses ? counts.map { _ in [String]() }
            : SourceAddresses.plan(connectionsPerWorker: counts).addresses
        var first = 0
        var specs: [ProbeSpec] = []
        for (w, count) in counts.enumerated() {
            specs.append(ProbeSpec(mode: .buyers, index: w, urls: c.endpoints.map(\.wsURL), secret: c.secret,
                                   tokenTTL: 7200 + Int(Double(b) / cmd.connectRate) + n / 100, userPrefix: "lto-\(tag)-",
                                   first: first, count: count, rate: cmd.connectRate * Double(count) / Double(b),
                                   maxInFlight: 500, sourceAddresses: plan[w], connectTimeout: 20, rxBufferSize: 16384,
                                   keepalive: 20))
            first += count
        }
        let ledger = OrderLedger(total: n)
        p.note("connecting \(Fmt.int(b)) buyers over \(c.endpoints.count) node(s) and \(workers) probe worker(s); \(Fmt.int(n)) orders of \(productID) with \(cmd.concurrency) HTTP workers")
        pool = try ProbePool(scenario: "orders", specs: specs, logDir: ctx.logDir, onReceipts: ledger.receipts)
        let pl = pool!
        var cpu = CPUWatch(cluster: c, workers: pl.pids)
        var ticker = Ticker(interval: 1)
        let setupDeadline = Clock.now() + Double(b) / cmd.connectRate * 2 + 30
        while !pl.settled() {
            ticker.wait()
            let t = pl.totals()
            p.line("connect", "buyers connected \(Fmt.int(t.online))/\(Fmt.int(b)) failed \(Fmt.int(t.failed)) | " + cpu.line())
            if pl.allEnded { throw SpawnError("every probe worker exited: " + pl.crashed().joined(separator: "; ")) }
            if Clock.now() > setupDeadline {
                p.note("buyer set-up timed out; going on with \(Fmt.int(t.online)) connected")
                break
            }
        }
        let setup = pl.totals()
        report.buyersConnected = setup.online
        report.buyerFailures = setup.failures
        guard setup.online > 0 else { throw SpawnError("no buyer connected; see \(ctx.logDir)") }

        // Orders.
        var procs: [(String, pid_t)] = c.endpoints.compactMap { ep in ep.pid.map { (ep.name, $0) } }
        if let r = c.redisPid { procs.append(("redis", r)) }
        procs += pl.pids.enumerated().map { ("probe \($0.offset)", $0.element) }
        procs.append(("loadtest (HTTP workers)", getpid()))
        let perf = cmd.perf ? c.endpoints[0].pid.flatMap { PerfRecorder(pid: $0, logDir: ctx.logDir, name: "orders-n1", progress: p) } : nil
        let active = ActiveCount(cmd.concurrency)
        var orderSeconds = 0.0
        var last = ledger.snapshot
        report.cpuWhileOrdering = CPUSpan.measure(procs) {
            let t0 = Clock.now()
            for i in 0..<cmd.concurrency {
                let ep = c.endpoints[i % c.endpoints.count]
                let th = Thread { [self] in
                    work(ShopClient(ep, shopKey: c.shopKey, timeout: 30), ledger, paySecret: paySecret)
                    active.decrement()
                }
                th.name = "orders-\(i)"
                th.start()
            }
            ticker = Ticker(interval: 1)
            while active.value > 0 {
                ticker.wait()
                tick(p, "orders", ledger, pl, &cpu, &report, &last)
            }
            orderSeconds = Clock.now() - t0
        }
        hooks?.ordersEnded(c, lastNotifyAnsweredMicros: ledger.lastAnsweredMicros)
        if let perf, let path = perf.stop() { report.perfTop = PerfRecorder.top(path, 15) }

        // Late pushes.
        let drainStart = Clock.now()
        var lastChange = Clock.now()
        var lastFinals = ledger.snapshot.finals
        while ledger.snapshot.finals < ledger.snapshot.notified && Clock.now() - drainStart < Double(cmd.drain)
                && Clock.now() - lastChange < 5 {
            ticker.wait()
            tick(p, "drain", ledger, pl, &cpu, &report, &last)
            let f = ledger.snapshot.finals
            if f != lastFinals { lastChange = Clock.now() }
            lastFinals = f
        }
        let drainSeconds = Clock.now() - drainStart
        pl.finish()
        let probe = pl.totals()

        // Read every order back.
        let check = verify(c, ledger, keys: m, progress: p)
        report.webhooks = hooks?.finish(c, drainLimit: Double(cmd.webhooksDrain), progress: p)
        let s = ledger.snapshot
        let lat = ledger.summaries
        var flow = OrdersResults.Flow()
        flow.created = s.created
        flow.paymentsCreated = s.payments
        flow.notified = s.notified
        flow.errors = s.errors
        // First order sent to last notify answered (the progress loop only ticks each second).
        if let a = ledger.firstStartMicros, let z = ledger.lastAnsweredMicros, z > a { flow.seconds = Double(z - a) / 1e6 }
        flow.cyclesPerSecond = flow.seconds > 0 ? Double(s.notified) / flow.seconds : 0
        if let a = ledger.firstNotifyMicros, let z = ledger.lastDeliveredMicros, z > a {
            flow.deliveredPerSecond = Double(s.byStatus["delivered"] ?? 0) / (Double(z - a) / 1e6)
        }
        flow.createLatency = lat.create
        flow.paymentLatency = lat.payment
        flow.notifyLatency = lat.notify
        flow.pushLatency = lat.push
        let nodeCPU = report.cpuWhileOrdering.filter { span in c.endpoints.contains { $0.name == span.name } }
            .reduce(0) { $0 + $1.percentOfOneCore }
        if c.spawned && s.notified > 0 {
            flow.gatewayCpuMsPerOrder = (nodeCPU / 100 * orderSeconds / Double(s.notified) * 1000 * 1000).rounded() / 1000
        }
        report.flow = flow
        report.pushes = .init(delivered: s.byStatus["delivered"] ?? 0, abnormal: s.byStatus["abnormal"] ?? 0,
                              other: s.byStatus.filter { $0.key != "delivered" && $0.key != "abnormal" },
                              duplicates: s.duplicates, missing: check.missing, mismatched: check.mismatched,
                              personalGaps: probe.gaps, personalRepeats: probe.repeats, byType: probe.pushes,
                              drainSeconds: drainSeconds)
        report.check = check.check
        limits += judge(report, setup: setup, nodes: c.endpoints.map(\.name))
        if !c.deadNodes().isEmpty { limits.append("gateway: node exited: " + c.deadNodes().joined(separator: "; ")) }
        report.limits = limits
        report.verdict = verdict(report)
        report.run.machine = MachineInfo()
        summary(report)
        try ctx.write(report)
    }

    /// One HTTP worker: order, payment, signed notify, for one order at a time.
    private func work(_ shop: ShopClient, _ ledger: OrderLedger, paySecret: String) {
        while let n = ledger.next() {
            let who = buyer(n % cmd.buyerCount)
            do {
                let t1 = Clock.unixMicros()
                let o = try shop.call("POST", "/api/v1/orders", #"{"buyer":"\#(who)","product":"\#(productID)","quantity":1}"#)
                guard o.status == 201, let id = o.json?["id"]?.stringValue else {
                    ledger.error("create order: HTTP \(o.status) \(o.text)")
                    continue
                }
                let t2 = Clock.unixMicros()
                ledger.created(n, id, micros: t2 - t1, startedAt: t1)
                let pay = try shop.call("POST", "/api/v1/orders/\(id)/payments", #"{"payer":"\#(who)"}"#)
                guard pay.status == 201, let pj = pay.json?["payment"], let pid = pj["id"]?.stringValue,
                      let amount = pj["amount"]?.intValue, let currency = pj["currency"]?.stringValue else {
                    ledger.error("create payment: HTTP \(pay.status) \(pay.text)")
                    continue
                }
                let t3 = Clock.unixMicros()
                ledger.paymentCreated(micros: t3 - t2)
                let body = #"{"payment":"\#(pid)","order":"\#(id)","amount":\#(amount),"currency":"\#(currency)","status":"success","trade_no":"lt-\#(tag)-\#(n)"}"#
                let t4 = Clock.unixMicros()
                ledger.notifying(id, at: t4)
                let r = try shop.notify(body, secret: paySecret)
                let t5 = Clock.unixMicros()
                ledger.notified(id, ok: r.status == 200, micros: t5 - t4, at: t4)
                if r.status != 200 { ledger.error("notify: HTTP \(r.status) \(r.text)") }
            } catch {
                ledger.error("\(error)")
            }
        }
    }

    private func tick(_ p: Progress, _ phase: String, _ ledger: OrderLedger, _ pl: ProbePool, _ cpu: inout CPUWatch,
                      _ report: inout OrdersReport, _ last: inout OrderLedger.Snapshot) {
        let s = ledger.snapshot
        let (push, notify) = ledger.takeIntervals()
        let ps = push.summary, ns = notify.summary
        let delivered = s.byStatus["delivered"] ?? 0
        report.timeline.append(.init(t: p.elapsed, notified: s.notified, delivered: delivered, notifyP99Ms: ns.p99Ms,
                                     pushP50Ms: ps.p50Ms, pushP99Ms: ps.p99Ms))
        p.line(phase, "created \(Fmt.int(s.created)) notified \(Fmt.int(s.notified)) (+\(Fmt.int(s.notified - last.notified))/s) "
            + "delivered \(Fmt.int(delivered)) (+\(Fmt.int(delivered - (last.byStatus["delivered"] ?? 0)))/s) abnormal \(Fmt.int(s.byStatus["abnormal"] ?? 0)) | "
            + (notify.count > 0 ? String(format: "notify p50 %.1f p99 %.1f ms", ns.p50Ms, ns.p99Ms) : "no notifies") + " | "
            + (push.count > 0 ? String(format: "push p50 %.1f p99 %.1f ms", ps.p50Ms, ps.p99Ms) : "no pushes")
            + " | err \(s.errorCount) dup \(s.duplicates) | " + (hooks.map { $0.progress() + " | " } ?? "") + cpu.line())
        last = s
    }

    private struct Verification {
        var check = OrdersResults.Check()
        var missing = 0
        var mismatched = 0
    }

    /// What the read-back threads share, under its lock.
    private final class ReadBack: @unchecked Sendable {
        let lock = NSLock()
        var next = 0
        var done = 0
        var statuses: [String: Int] = [:]
        var owner: [String: String] = [:]
        var v = Verification()
    }

    /// GET every order with the shop key: statuses, keys, no key in two orders, the stock left.
    private func verify(_ c: Cluster, _ ledger: OrderLedger, keys m: Int, progress p: Progress) -> Verification {
        let ids = ledger.orderIDs.compactMap { $0 }
        let rb = ReadBack()
        let group = DispatchGroup()
        for i in 0..<min(cmd.concurrency, 32) {
            group.enter()
            let ep = c.endpoints[i % c.endpoints.count]
            Thread { [self] in
                defer { group.leave() }
                let shop = ShopClient(ep, shopKey: c.shopKey, timeout: 30)
                while true {
                    let k: Int? = rb.lock.withLock {
                        guard rb.next < ids.count else { return nil }
                        rb.next += 1
                        return rb.next - 1
                    }
                    guard let k else { return }
                    let id = ids[k]
                    guard let r = try? shop.call("GET", "/api/v1/orders/\(id)", idempotent: true), r.status == 200, let o = r.json,
                          let status = o["status"]?.stringValue else {
                        rb.lock.withLock { rb.v.check.readErrors += 1 }
                        continue
                    }
                    let keys = (o["keys"]?.arrayValue ?? []).compactMap(\.stringValue)
                    let pushed = ledger.finalStatus(id)
                    rb.lock.withLock {
                        rb.done += 1
                        rb.statuses[status, default: 0] += 1
                        if status == "delivered" && keys.count != 1 { rb.v.check.deliveredWithoutOneKey += 1 }
                        if status == "abnormal" && !keys.isEmpty { rb.v.check.abnormalWithKeys += 1 }
                        for key in keys {
                            rb.v.check.keysHandedOut += 1
                            if rb.owner[key] != nil { rb.v.check.keysInTwoOrders += 1 } else { rb.owner[key] = id }
                            if !isUploaded(key, m) { rb.v.check.keysNotUploaded += 1 }
                        }
                        if status == "delivered" || status == "abnormal" {
                            if pushed == nil { rb.v.missing += 1 } else if pushed != status { rb.v.mismatched += 1 }
                        }
                    }
                }
            }.start()
        }
        while group.wait(timeout: .now() + 1) == .timedOut {
            p.line("verify", "read back \(Fmt.int(rb.lock.withLock { rb.done }))/\(Fmt.int(ids.count)) orders")
        }
        let stock = (try? ShopClient(c.endpoints[0], shopKey: c.shopKey).product(productID))?["stock"]?.intValue
        var v = rb.v
        let statuses = rb.statuses
        var ck = v.check
        ck.ordersRead = ids.count - ck.readErrors
        ck.delivered = statuses["delivered"] ?? 0
        ck.abnormal = statuses["abnormal"] ?? 0
        ck.otherStatus = statuses.filter { $0.key != "delivered" && $0.key != "abnormal" }
        // Every notified order is paid; a paid order is delivered while keys last.
        let paid = ledger.snapshot.notified
        ck.expectedDelivered = min(paid, m)
        ck.expectedAbnormal = paid - ck.expectedDelivered
        ck.stock = stock.map { Int($0) }
        ck.expectedStock = m - ck.expectedDelivered
        if ck.readErrors > 0 { ck.problems.append("\(ck.readErrors) orders could not be read back") }
        if ck.keysInTwoOrders > 0 { ck.problems.append("\(ck.keysInTwoOrders) keys are in two orders") }
        if ck.keysNotUploaded > 0 { ck.problems.append("\(ck.keysNotUploaded) keys handed out were never uploaded") }
        if ck.deliveredWithoutOneKey > 0 { ck.problems.append("\(ck.deliveredWithoutOneKey) delivered orders do not hold exactly one key") }
        if ck.abnormalWithKeys > 0 { ck.problems.append("\(ck.abnormalWithKeys) abnormal orders hold keys") }
        if ck.delivered != ck.expectedDelivered { ck.problems.append("delivered \(ck.delivered), expected \(ck.expectedDelivered)") }
        if ck.abnormal != ck.expectedAbnormal { ck.problems.append("abnormal \(ck.abnormal), expected \(ck.expectedAbnormal)") }
        if ck.keysHandedOut != ck.delivered { ck.problems.append("\(ck.keysHandedOut) keys handed out for \(ck.delivered) delivered orders") }
        if ck.stock != ck.expectedStock { ck.problems.append("stock \(ck.stock.map(String.init) ?? "?"), expected \(ck.expectedStock)") }
        ck.ok = ck.problems.isEmpty
        v.check = ck
        return v
    }

    private func isUploaded(_ key: String, _ m: Int) -> Bool {
        let prefix = "LTK-\(tag)-"
        guard key.hasPrefix(prefix), let i = Int(key.dropFirst(prefix.count)) else { return false }
        return (0..<m).contains(i)
    }

    private func judge(_ r: OrdersReport, setup: ProbeTotals, nodes: [String]) -> [String] {
        var out: [String] = []
        let cpu = r.cpuWhileOrdering
        if let other = cpu.first(where: { $0.name == "other processes" }), other.percentOfOneCore > 20 {
            out.append("machine: processes outside this run used \(Fmt.num(other.percentOfOneCore, 0))% of a core while ordering (someone else's build or tests?): rates are skewed")
        }
        let total = cpu.reduce(0) { $0 + $1.percentOfOneCore }
        if total > Double(Machine.cores) * 100 * 0.85 {
            out.append("machine: the \(Machine.cores) cores were (nearly) all busy while ordering (\(Fmt.num(total, 0))% of one core over gateway, Redis and load generator)")
        }
        for span in cpu where span.percentOfOneCore > 90 && span.name != "other processes" {
            let who = span.name.hasPrefix("probe") || span.name.hasPrefix("loadtest") ? "load generator" : "gateway"
            out.append("\(who): \(span.name) used \(Fmt.num(span.percentOfOneCore, 0))% of a core (single-threaded: saturated)")
        }
        // Closed loop: C workers each wait for three answers per order.
        let f = r.flow
        let perOrderMs = (f.createLatency?.meanMs ?? 0) + (f.paymentLatency?.meanMs ?? 0) + (f.notifyLatency?.meanMs ?? 0)
        let busiest = cpu.filter { s in nodes.contains(s.name) }.max { $0.percentOfOneCore < $1.percentOfOneCore }
        if let b = busiest, b.percentOfOneCore >= 60, b.percentOfOneCore <= 90, let ms = f.gatewayCpuMsPerOrder, ms > 0 {
            out.append("gateway: node \(b.name)'s loop thread averaged \(Fmt.num(b.percentOfOneCore, 0))% of a core; at \(Fmt.num(ms, 3)) ms of node CPU per order one node tops out near \(Fmt.num(1000 / ms * Double(nodes.count), 0)) orders/s over \(nodes.count) node(s)")
        } else if perOrderMs > 0, (busiest?.percentOfOneCore ?? 0) < 60, total < Double(Machine.cores) * 100 * 0.85 {
            let ceiling = Double(r.parameters.concurrency) / perOrderMs * 1000
            out.append("load generator: \(r.parameters.concurrency) workers x \(Fmt.num(perOrderMs, 1)) ms per order (three calls) cap near \(Fmt.num(ceiling, 0)) orders/s and no process was saturated; raise --concurrency")
        }
        if setup.online < r.parameters.buyers {
            out.append("gateway: \(Fmt.int(r.parameters.buyers - setup.online)) buyers did not connect: " +
                       setup.failures.sorted { $0.value > $1.value }.prefix(3).map { "\($0.value) x \($0.key)" }.joined(separator: "; "))
        }
        return out
    }

    private func verdict(_ r: OrdersReport) -> String {
        let ck = r.check, pu = r.pushes, f = r.flow
        var why: [String] = ck.problems
        if pu.missing > 0 { why.append("\(pu.missing) final statuses never reached the buyer's socket") }
        if pu.duplicates > 0 { why.append("\(pu.duplicates) final statuses pushed twice") }
        if pu.mismatched > 0 { why.append("\(pu.mismatched) pushed statuses differ from the order") }
        if pu.personalGaps > 0 { why.append("\(pu.personalGaps) personal-channel offsets skipped") }
        if !f.errors.isEmpty { why.append("\(f.errors.values.reduce(0, +)) HTTP errors") }
        if let w = r.webhooks { why += WebhookWatch.problems(w) }
        if why.isEmpty {
            return "\(Fmt.int(ck.delivered)) orders paid and delivered at \(Fmt.num(f.deliveredPerSecond, 0))/s (push p99 \(Fmt.num(f.pushLatency?.p99Ms ?? 0, 1)) ms), \(Fmt.int(ck.abnormal)) abnormal; every key handed out once, stock \(ck.stock ?? -1) as expected"
                + (r.webhooks.map { "; all \(Fmt.int($0.eventsWritten)) events delivered by webhook, signed, in order (p99 \(Fmt.num($0.latency?.p99Ms ?? 0, 1)) ms)" } ?? "")
        }
        return "problems: " + why.joined(separator: "; ")
    }

    private func summary(_ r: OrdersReport) {
        let f = r.flow, pu = r.pushes, ck = r.check
        var lines = ["", "== orders: \(Fmt.int(r.parameters.orders)) orders, \(Fmt.int(r.parameters.keys)) keys, \(Fmt.int(r.parameters.buyers)) buyers, concurrency \(r.parameters.concurrency), \(r.parameters.nodes) node(s)"]
        lines.append("keys        \(Fmt.int(r.parameters.keys)) uploaded in \(Fmt.num(r.keyUploadSeconds, 2)) s; buyers connected \(Fmt.int(r.buyersConnected))")
        lines.append("flow        created \(Fmt.int(f.created)), payments \(Fmt.int(f.paymentsCreated)), notified \(Fmt.int(f.notified)) in \(Fmt.num(f.seconds, 1)) s: \(Fmt.num(f.cyclesPerSecond, 0)) cycles/s; delivered \(Fmt.num(f.deliveredPerSecond, 0))/s (notify sent -> push received)")
        if let l = f.createLatency { lines.append("create      \(l.line)") }
        if let l = f.paymentLatency { lines.append("payment     \(l.line)") }
        if let l = f.notifyLatency { lines.append("notify      \(l.line) (signed notify, request to 200)") }
        if let l = f.pushLatency { lines.append("push        \(l.line) (notify sent -> order.status delivered on the buyer's socket)") }
        if let ms = f.gatewayCpuMsPerOrder { lines.append("gateway     \(Fmt.num(ms, 3)) ms of node CPU per order (create + pay + notify + pushes)") }
        lines.append("pushes      delivered \(Fmt.int(pu.delivered)), abnormal \(Fmt.int(pu.abnormal)), duplicates \(pu.duplicates), missing \(pu.missing), mismatched \(pu.mismatched), personal gaps \(pu.personalGaps)")
        lines.append("check       read \(Fmt.int(ck.ordersRead)): delivered \(Fmt.int(ck.delivered)) (expected \(Fmt.int(ck.expectedDelivered))), abnormal \(Fmt.int(ck.abnormal)) (expected \(Fmt.int(ck.expectedAbnormal)))"
            + (ck.otherStatus.isEmpty ? "" : ", other \(ck.otherStatus)") + "; keys handed out \(Fmt.int(ck.keysHandedOut)), in two orders \(ck.keysInTwoOrders); stock \(ck.stock.map(String.init) ?? "?") (expected \(ck.expectedStock))")
        lines.append("cpu         " + r.cpuWhileOrdering.map { "\($0.name) \(Fmt.num($0.percentOfOneCore, 0))%" }.joined(separator: ", "))
        if let w = r.webhooks { lines += WebhookWatch.summaryLines(w) }
        for (k, v) in f.errors.sorted(by: { $0.value > $1.value }).prefix(5) { lines.append("error       \(v) x \(k)") }
        for t in r.perfTop.prefix(8) { lines.append("perf n1     \(t)") }
        for l in r.limits { lines.append("limit       \(l)") }
        lines.append("verdict     \(r.verdict)")
        print(lines.joined(separator: "\n"))
    }
}
