import ArgumentParser
import Foundation
import GatewayProtocol

/// Issue 17's flash sale: N buyers wait on one sale of U units and press `sale.buy` on
/// `sale.open`. Measures how evenly `sale.open` lands, the buy answer latency and how soon
/// the units are gone; then most winners pay, the rest let their orders expire, and the
/// returned units are resold to buyers who lost. Fails the run unless exactly U paid orders
/// hold the units, nobody holds two, and every buyer ends on `remaining` 0.
struct FlashSaleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flash-sale",
        abstract: "N buyers on one sale of U units press sale.buy at sale.open; 90% of the winners pay, the rest expire and are resold.")

    @Option(help: "Buyers (distinct users, each one connection), all workers together.")
    var buyers = 10_000

    @Option(help: "Units in the sale (keys uploaded to its product first).")
    var units = 500

    @Option(help: "The sale's per_user.")
    var perUser = 1

    @Option(help: "Fraction of the first wave's winners that never pay (their orders expire and the units are resold).")
    var unpaid = 0.1

    @Option(help: "sales.pay_s of spawned nodes (GATEWAY_SALES_PAY_S): seconds an unpaid sale order lives (with --url: give the nodes' own).")
    var payS = 10

    @Option(help: "Seconds from the sale's creation (once every buyer is connected) to starts_at; buyers subscribe meanwhile.")
    var lead = 5

    @Option(help: "Sale price, minor units.")
    var price = 990

    @Option(help: "Buyers connected per second, all workers together.")
    var connectRate: Double = 2000

    @Option(help: "Connections one worker may have mid set-up.")
    var inFlight = 500

    @Option(help: "HTTP threads paying winners (payment, then signed notify).")
    var httpWorkers = 8

    @Option(help: "Seconds after starts_at + sales.pay_s to wait for the resale and the last payments.")
    var wait = 60

    @Option(help: "payments.secret of the nodes given with --url.")
    var paymentsSecret: String?

    @OptionGroup var workerOptions: WorkerOptions
    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var output: OutputOptions

    @Flag(help: .hidden)
    var saleWorker = false

    func validate() throws {
        guard (1...1_000_000).contains(buyers) else { throw ValidationError("--buyers must be 1 to 1,000,000") }
        guard (1...100_000).contains(units) else { throw ValidationError("--units must be 1 to 100,000 (a sale's quantity)") }
        guard (1...units).contains(perUser) else { throw ValidationError("--per-user must be 1 to --units") }
        guard unpaid >= 0, unpaid < 1 else { throw ValidationError("--unpaid must be 0 to below 1") }
        guard (1...86_400).contains(payS) else { throw ValidationError("--pay-s must be 1 to 86,400 (sales.pay_s)") }
        guard (1...600).contains(lead) else { throw ValidationError("--lead must be 1 to 600 seconds") }
        guard (0...1_000_000_000_000).contains(price) else { throw ValidationError("--price must be 0 to 10^12") }
        guard connectRate > 0 else { throw ValidationError("--connect-rate must be above 0") }
        guard (1...5000).contains(inFlight) else { throw ValidationError("--in-flight must be 1 to 5000") }
        guard (1...64).contains(httpWorkers) else { throw ValidationError("--http-workers must be 1 to 64") }
        guard (1...3600).contains(wait) else { throw ValidationError("--wait must be 1 to 3600 seconds") }
    }

    func run() throws {
        if saleWorker { try SaleWorker.main() }
        var me = self
        me.cluster.defaultNodes = 2
        if !me.cluster.external { me.cluster.nodeEnv.insert("GATEWAY_SALES_PAY_S=\(payS)", at: 0) }
        try FlashSaleScenario(me).run()
    }
}

struct FlashSaleResults: EmptyResults {
    static let sections: ReportSections = [.limits, .checks, .verdict, .timeline]

    struct Parameters: Codable {
        var buyers: Int
        var units: Int
        var perUser: Int
        var unpaidFraction: Double
        var paySeconds: Int
        var leadSeconds: Int
        var nodes: Int
        var buyerWorkers: Int
        var external: Bool
    }

    struct Setup: Codable {
        var connected = 0
        var connectSeconds = 0.0
        var subscribed = 0
        /// Last subscribe answered, ms before starts_at (negative: after it).
        var subscribedMsBeforeStart: Double?
        var failed = 0
        var dropped = 0
        var failures: [String: Int] = [:]
        var drops: [String: Int] = [:]
        var sale: String = ""
        var startsAt: Int64 = 0
        var createMs: Double?
    }

    struct Rush: Codable {
        var opened = 0
        /// First to last `sale.open` receipt over all buyers.
        var openSpreadMs: Double?
        /// `sale.open` receipt minus starts_at.
        var openDelay: LatencySummary?
        /// `sale.buy` sent on `sale.open` to its answer.
        var buyLatency: LatencySummary?
        var firstWaveBuys = 0
        var firstWaveWon = 0
        /// starts_at (and the first `sale.open` receipt) to the first wave's last order answered.
        var soldOutFromStartMs: Double?
        var soldOutFromFirstOpenMs: Double?
        /// starts_at to the first `sale.sold_out` receipt.
        var soldOutPushFromStartMs: Double?
        /// First `sale.sold_out` receipt minus the first `sale.open` receipt: the headline's
        /// sold-out time (published by the script that took the last unit, no answer path).
        var soldOutPushFromFirstOpenMs: Double?
        /// Each buyer worker's own first-to-last `sale.open` receipt: max and median. A
        /// global spread close to the largest of these is the generator's serial drain, not the fan-out.
        var workerOpenSpreadMaxMs: Double?
        var workerOpenSpreadMedianMs: Double?
        /// Percent of one core per process (workers summed) over the 1 s sample holding the
        /// open, and per buyer worker: above ~80% the generator limits the rush figures.
        var openSecondCPU: [String: Double]?
        var workerCPUInOpenSecond: Double?
        var refusals: [String: Int] = [:]
    }

    struct Resale: Codable {
        var unpaidOrders = 0
        var resaleBuys = 0
        var resold = 0
        /// starts_at to the last resale order answered.
        var lastResoldFromStartMs: Double?
        var buyLatency: LatencySummary?
        var paid = 0
        var payErrors = 0
        var payErrorSamples: [String] = []
    }

    struct Final: Codable {
        var readBack = 0
        var readErrors = 0
        var statuses: [String: Int] = [:]
        var deliveredOrders = 0
        var unpaidCanceled = 0
        var usersWithTwo = 0
        var secondPresses = 0
        var secondPressWon = 0
        var deliveredWithoutOneKey = 0
        var keysTwice = 0
        var keysForeign = 0
        var clientsRemainingZero = 0
        var clientsRemainingAbove = 0
        var clientsRemainingUnknown = 0
        var clientsDropped = 0
        var pushGaps = 0
        var pushRepeats = 0
        var openRepeats = 0
        var beforeOpen = 0
        var retries = 0
        var twins = 0
        var twinsSubscribed = 0
        var twinPresses = 0
        var twinWon = 0
        var unexpected = 0
        var pushes: [String: Int] = [:]
        /// GET /api/v1/sales/{id} at the end.
        var saleRemaining: Int?
        var saleSold: Int?
        var saleState: String?
    }

    var setup = Setup()
    var rush = Rush()
    var resale = Resale()
    var final = Final()

    struct Point: Codable {
        var t: Double
        var phase: String
        var subscribed: Int
        var opened: Int
        var won: Int
        var paid: Int
        var remainingMax: Int
    }
}

typealias FlashSaleReport = ScenarioReport<FlashSaleResults>

/// Winners as the workers report them, and the payments the HTTP threads make.
final class SaleLedger: @unchecked Sendable {
    let lock = NSLock()
    private(set) var wins: [SaleWin] = []
    private var queue: [SaleWin] = []
    private var firstWave = 0
    private(set) var unpaid: Set<String> = []
    private(set) var paid = 0
    private(set) var payErrors: [String] = []
    private(set) var resold = 0
    private(set) var lastResoldMicros: Int64?
    var stopped = false
    let unpaidFraction: Double

    init(unpaidFraction: Double) { self.unpaidFraction = unpaidFraction }

    /// The first wave's winners in arrival order: every 1/fraction-th is left unpaid.
    func add(_ batch: [SaleWin]) {
        lock.withLock {
            for w in batch {
                wins.append(w)
                if w.firstWave {
                    defer { firstWave += 1 }
                    if ProbeSpec.isOnline(firstWave, fraction: unpaidFraction) {
                        unpaid.insert(w.order)
                        continue
                    }
                } else {
                    resold += 1
                    lastResoldMicros = max(lastResoldMicros ?? 0, w.t)
                }
                queue.append(w)
            }
        }
    }

    func next() -> SaleWin? { lock.withLock { queue.isEmpty ? nil : queue.removeFirst() } }
    var queued: Int { lock.withLock { queue.count } }
    func paidOne() { lock.withLock { paid += 1 } }
    func failed(_ why: String) { lock.withLock { payErrors.append(why) } }
}

/// What one flash sale does, from the scenario's options (holiday-peak runs one too).
struct FlashSalePlan {
    var buyers: Int
    var units: Int
    var perUser: Int
    var unpaid: Double
    var payS: Int
    var lead: Int
    var price: Int
    var connectRate: Double
    var inFlight: Int
    var httpWorkers: Int
    var wait: Int
    var workers: Int
    var noSourceAddresses: Bool

    /// First-wave winners left unpaid: the running count of `unpaid` over the units.
    var expectedUnpaid: Int { (0..<units).filter { ProbeSpec.isOnline($0, fraction: unpaid) }.count }
}

final class FlashSaleScenario {
    let cmd: FlashSaleCommand

    init(_ cmd: FlashSaleCommand) { self.cmd = cmd }

    func run() throws {
        let ctx = try RunContext(scenario: "flash-sale", output: cmd.output)
        let p = ctx.progress
        let plan = FlashSalePlan(buyers: cmd.buyers, units: cmd.units, perUser: cmd.perUser, unpaid: cmd.unpaid, payS: cmd.payS, lead: cmd.lead,
                                 price: cmd.price, connectRate: cmd.connectRate, inFlight: cmd.inFlight, httpWorkers: cmd.httpWorkers,
                                 wait: cmd.wait, workers: cmd.workerOptions.workerCount(for: cmd.buyers),
                                 noSourceAddresses: cmd.workerOptions.noSourceAddresses)
        var limits = Preflight.check(connections: plan.buyers, nodes: cmd.cluster.nodeCount, sourceAddresses: !plan.noSourceAddresses)
        limits.forEach { p.note("preflight: \($0)") }
        let (options, paySecret) = try ClusterSecrets.withPaymentsSecret(cmd.cluster, external: cmd.paymentsSecret)
        var cluster: Cluster?
        defer { cluster?.stop() }
        cluster = try Cluster.start(options, logDir: ctx.logDir, progress: p)
        let c = cluster!
        var report = FlashSaleReport(run: ctx.info, parameters: .init(
            buyers: plan.buyers, units: plan.units, perUser: plan.perUser, unpaidFraction: plan.unpaid, paySeconds: plan.payS,
            leadSeconds: plan.lead, nodes: c.endpoints.count, buyerWorkers: plan.workers, external: cmd.cluster.external))
        let sale = FlashSaleRun(plan: plan, cluster: c, paySecret: paySecret, logDir: ctx.logDir, progress: p)
        let (results, checks) = try sale.run(lines: true) { report.timeline.append($0) }
        report.results = results
        report.checks = checks
        if let w = results.rush.workerCPUInOpenSecond, w > 80 {
            limits.append("generator: each buyer worker used \(Fmt.num(w, 0))% of a core in the open's second (one loop thread): "
                          + "the open spread (within one worker up to \(results.rush.workerOpenSpreadMaxMs.map { Fmt.num($0, 1) } ?? "?") ms), buy latency "
                          + "and sold-out time include its own backlog; use more workers (--per-worker) or a bigger machine")
        }
        limits += c.logComplaints().map { "machine: node log says: \($0)" }
        if !c.deadNodes().isEmpty { limits.append("gateway: node exited: " + c.deadNodes().joined(separator: "; ")) }
        report.limits = limits
        let failed = report.checks.filter { !$0.hasPrefix("ok") }
        report.verdict = (failed.isEmpty ? "every check passed; " : "FAILED \(failed.count) check(s); ") + FlashSaleRun.headline(results, units: plan.units)
        report.run.machine = MachineInfo()
        summary(report)
        try ctx.write(report)
        if !failed.isEmpty { throw ExitCode.failure }
    }

    private func summary(_ r: FlashSaleReport) {
        let s = r.setup, x = r.rush, z = r.resale, f = r.final
        var lines = ["", "== flash-sale: \(Fmt.int(r.parameters.buyers)) buyers, \(r.parameters.units) units, per_user \(r.parameters.perUser), \(r.parameters.nodes) node(s), \(r.parameters.buyerWorkers) worker(s), sales.pay_s \(r.parameters.paySeconds)"]
        lines.append("setup       \(Fmt.int(s.connected)) connected in \(Fmt.num(s.connectSeconds, 1)) s, \(Fmt.int(s.subscribed)) subscribed \(s.subscribedMsBeforeStart.map { Fmt.num($0, 0) } ?? "?") ms before starts_at; failed \(s.failed), dropped \(s.dropped); POST sale \(s.createMs.map { Fmt.num($0, 1) } ?? "?") ms")
        lines.append("open        \(Fmt.int(x.opened)) received; spread \(x.openSpreadMs.map { Fmt.num($0, 1) } ?? "?") ms first to last "
            + "(within one worker: max \(x.workerOpenSpreadMaxMs.map { Fmt.num($0, 1) } ?? "?"), median \(x.workerOpenSpreadMedianMs.map { Fmt.num($0, 1) } ?? "?") ms); after starts_at: \(x.openDelay?.line ?? "no samples")")
        lines.append("buy         first wave \(Fmt.int(x.firstWaveBuys)) sent, \(x.firstWaveWon) won: \(x.buyLatency?.line ?? "no samples")")
        lines.append("sold out    \(x.soldOutFromStartMs.map { Fmt.num($0, 0) } ?? "?") ms after starts_at, \(x.soldOutFromFirstOpenMs.map { Fmt.num($0, 0) } ?? "?") ms after the first sale.open (last order answered); sale.sold_out first received \(x.soldOutPushFromStartMs.map { Fmt.num($0, 0) } ?? "?") ms after starts_at")
        lines.append("refusals    " + x.refusals.sorted { $0.value > $1.value }.map { "\($0.key) \(Fmt.int($0.value))" }.joined(separator: ", "))
        lines.append("resale      \(z.unpaidOrders) left unpaid, \(z.resold) resold (\(Fmt.int(z.resaleBuys)) presses on sale.stock), last \(z.lastResoldFromStartMs.map { Fmt.num($0 / 1000, 1) } ?? "?") s after starts_at; \(z.buyLatency?.line ?? "")")
        lines.append("orders      \(z.paid) paid, \(f.deliveredOrders) delivered read back, statuses \(f.statuses); GET sale remaining \(f.saleRemaining.map(String.init) ?? "?") sold \(f.saleSold.map(String.init) ?? "?") \(f.saleState ?? "")")
        lines.append("pushes      " + f.pushes.sorted { $0.key < $1.key }.map { "\($0.key) \(Fmt.int($0.value))" }.joined(separator: ", "))
        for c in r.checks { lines.append("check       \(c)") }
        for l in r.limits { lines.append("limit       \(l)") }
        lines.append("verdict     \(r.verdict)")
        print(lines.joined(separator: "\n"))
    }
}

/// One flash sale on running nodes: product and keys, buyer workers, the sale, the rush,
/// payments, expiry and resale, then the read-back and the checks. Blocks until done; holiday-peak
/// runs it on a thread of its own (nothing in it is shared with the caller meanwhile).
final class FlashSaleRun: @unchecked Sendable {
    let plan: FlashSalePlan
    let cluster: Cluster
    let paySecret: String
    let logDir: String
    let progress: Progress
    let tag = Machine.randomHex(bytes: 3)

    init(plan: FlashSalePlan, cluster: Cluster, paySecret: String, logDir: String, progress: Progress) {
        self.plan = plan
        self.cluster = cluster
        self.paySecret = paySecret
        self.logDir = logDir
        self.progress = progress
    }

    var productID: String { "lt-sale-\(tag)" }
    var saleID: String { "fs-\(tag)" }
    var userPrefix: String { "fs-\(tag)-" }
    func keyName(_ i: Int) -> String { "FSK-\(tag)-\(i)" }

    /// - Parameters:
    ///   - lines: print a progress line a second (holiday-peak has its own; it gets notes only).
    ///   - point: each second of the run, for a timeline.
    func run(lines: Bool, point: (FlashSaleResults.Point) -> Void = { _ in }) throws -> (FlashSaleResults, [String]) {
        let p = progress, c = cluster, n = plan.buyers, u = plan.units, workers = plan.workers
        var res = FlashSaleResults()
        var pool: ChildPool<SaleWorkerSpec, SaleWorkerStatus>?
        let ledger = SaleLedger(unpaidFraction: plan.unpaid)
        var payers: [Thread] = []
        defer {
            ledger.lock.withLock { ledger.stopped = true }
            pool?.stop()
        }
        let admin = ShopClient(c.endpoints[0], shopKey: c.shopKey, timeout: 30)
        defer { admin.disconnect() }
        try admin.createProduct(id: productID, price: plan.price * 2, title: "Load test flash sale \(tag)")
        var uploaded = 0
        while uploaded < u {
            let k = min(10_000, u - uploaded)
            let body = #"{"keys":["# + (uploaded..<(uploaded + k)).map { #""\#(keyName($0))""# }.joined(separator: ",") + "]}"
            let r = try admin.call("POST", "/api/v1/products/\(productID)/keys", body)
            guard r.status == 200 else { throw SpawnError("uploading keys to \(productID): HTTP \(r.status) \(r.text)") }
            uploaded += k
        }

        // Buyers: each worker holds its own range, spread over the nodes by global index.
        let counts = (0..<workers).map { n / workers + ($0 < n % workers ? 1 : 0) }
        let addresses = plan.noSourceAddresses ? counts.map { _ in [String]() } : SourceAddresses.plan(connectionsPerWorker: counts).addresses
        var first = 0
        var specs: [SaleWorkerSpec] = []
        for (i, count) in counts.enumerated() {
            specs.append(SaleWorkerSpec(index: i, urls: c.endpoints.map(\.wsURL), secret: c.secret,
                                        tokenTTL: 7200 + Int(Double(n) / plan.connectRate), userPrefix: userPrefix, first: first, count: count,
                                        rate: plan.connectRate * Double(count) / Double(n), maxInFlight: plan.inFlight,
                                        sourceAddresses: addresses[i], connectTimeout: 20, rxBufferSize: 4096))
            first += count
        }
        let resaleLatency = LockedLatency(), openDelay = LockedLatency()
        p.note("flash sale: connecting \(Fmt.int(n)) buyers over \(c.endpoints.count) node(s) and \(workers) worker(s); sale \(saleID) of \(u) units of \(productID)")
        pool = try ChildPool(label: "buyer", arguments: ["flash-sale", "--sale-worker"], specs: specs, logDir: logDir,
                             latency: { $0.firstWaveLatency }, onStatus: { s in
                                 if let w = s.wins { ledger.add(w) }
                                 if let l = s.resaleLatency { resaleLatency.add(l) }
                                 if let l = s.openLatency { openDelay.add(l) }
                             })
        let pl = pool!
        func totals() -> SaleWorkerTotals { pl.children.compactMap { $0.final ?? $0.latest }.reduce(into: SaleWorkerTotals()) { $0.add($1) } }
        var cpu = CPUWatch(cluster: c, workers: pl.pids)
        var ticker = Ticker(interval: 1)
        var lastNote = 0.0
        func show(_ phase: String, _ text: String) {
            let cpuLine = cpu.line()
            if lines { p.line(phase, text + " | " + cpuLine) } else if Clock.now() - lastNote >= 5 {
                p.note("flash sale \(phase): \(text)")
                lastNote = Clock.now()
            }
        }
        func health() throws {
            if pl.allEnded { throw SpawnError("every buyer worker exited: " + pl.crashed().joined(separator: "; ")) }
            if !c.deadNodes().isEmpty { throw SpawnError("gateway: node exited: " + c.deadNodes().joined(separator: "; ")) }
        }
        func mark(_ phase: String, _ t: SaleWorkerTotals) {
            point(.init(t: p.elapsed, phase: phase, subscribed: t.subscribed, opened: t.opened, won: t.won,
                        paid: ledger.lock.withLock { ledger.paid }, remainingMax: Int(t.remainingMax ?? -1)))
        }

        // 1. Connect every buyer.
        let connectStart = Clock.now()
        let connectDeadline = connectStart + Double(n) / plan.connectRate * 3 + 60
        while true {
            ticker.wait()
            let t = totals()
            mark("connect", t)
            show("connect", "connected \(Fmt.int(t.connected))/\(Fmt.int(n)) failed \(Fmt.int(t.failed)) dropped \(Fmt.int(t.dropped)) in set-up \(Fmt.int(t.settling))")
            if pl.children.allSatisfy({ ch in ch.latest.map { $0.attempted == ch.spec.count && $0.settling == 0 } ?? false }) { break }
            try health()
            if Clock.now() > connectDeadline {
                p.note("flash sale: connecting timed out; the sale goes ahead with \(Fmt.int(t.connected)) buyers")
                break
            }
        }
        res.setup.connectSeconds = Clock.now() - connectStart

        // 2. The sale, starting --lead s from now; buyers subscribe meanwhile.
        let startsAt = Int64(Date().timeIntervalSince1970 * 1000) + Int64(plan.lead) * 1000
        let endsAt = startsAt + Int64(plan.payS + plan.wait + 60) * 1000
        let saleBody = #"{"id":"\#(saleID)","product":"\#(productID)","price":\#(plan.price),"quantity":\#(u),"starts_at":\#(startsAt),"ends_at":\#(endsAt),"per_user":\#(plan.perUser)}"#
        let t0 = Clock.now()
        // Idempotent: the admin socket sat idle while the buyers connected (the node may have
        // closed it), and an identical repeat of the create answers the sale (200).
        let created = try admin.call("POST", "/api/v1/sales", saleBody, idempotent: true)
        guard created.status == 201 || created.status == 200 else { throw SpawnError("POST /api/v1/sales: HTTP \(created.status) \(created.text)") }
        res.setup.createMs = (Clock.now() - t0) * 1000
        res.setup.sale = saleID
        res.setup.startsAt = startsAt
        pl.broadcast("sale \(saleID) \(startsAt) \(plan.perUser)")
        p.note("flash sale \(saleID) created (\(u) units, per_user \(plan.perUser)); starts in \(plan.lead) s")

        // Winners are paid as they are reported (the unpaid share aside).
        for k in 0..<plan.httpWorkers {
            let ep = c.endpoints[k % c.endpoints.count]
            let th = Thread { [userPrefix, paySecret] in
                let shop = ShopClient(ep, shopKey: c.shopKey, timeout: 30)
                defer { shop.disconnect() }
                while !ledger.lock.withLock({ ledger.stopped }) {
                    guard let w = ledger.next() else {
                        usleep(5_000)
                        continue
                    }
                    // Between the rush and the resale the node closes the idle keep-alive sockets.
                    do {
                        if let why = try shop.pay(order: w.order, payer: "\(userPrefix)\(w.g)", secret: paySecret, tradeNo: "fs", idempotent: true) {
                            ledger.failed(why)
                        } else {
                            ledger.paidOne()
                        }
                    } catch {
                        ledger.failed("pay \(w.order): \(error)")
                    }
                }
            }
            th.name = "payer-\(k)"
            th.start()
            payers.append(th)
        }

        // 3. Subscribe, open, the rush, expiry, resale: until every unit is paid for and every buyer saw 0.
        let startMicros = startsAt * 1000
        let deadline = Double(startsAt) / 1000 - Date().timeIntervalSince1970 + Clock.now() + Double(plan.payS + plan.wait)
        var subscribedAt: Double?
        var openCPU: [String: Double]?
        var view: JSON?
        while true {
            ticker.wait()
            try health()
            let t = totals()
            let now = Clock.unixMicros()
            let phase = now < startMicros ? "wait" : t.firstWaveWon < u && t.firstSoldOutMicros == nil ? "rush" : "resale"
            if subscribedAt == nil && t.subscribed + t.subscribeFailed >= t.connected - t.dropped && t.settling == 0 {
                // The last subscribe answer's own receipt, not this (up to 1.25 s later) sample.
                subscribedAt = Double(t.lastSubscribedMicros ?? now) / 1e6
            }
            mark(phase, t)
            let paid = ledger.lock.withLock { ledger.paid }
            var line = "subscribed \(Fmt.int(t.subscribed))/\(Fmt.int(t.connected)) "
            if now < startMicros {
                line += "opens in \(Fmt.num(Double(startMicros - now) / 1e6, 1)) s, countdown pushes \(Fmt.int(t.pushes["sale.countdown"] ?? 0))"
            } else {
                line += "opened \(Fmt.int(t.opened)) buys \(Fmt.int(t.firstWaveBuys))+\(Fmt.int(t.resaleBuys)) answered \(Fmt.int(t.answered)) "
                    + "won \(Fmt.int(t.won)) (resold \(Fmt.int(t.won - t.firstWaveWon))) paid \(paid)/\(u) remaining seen \(t.remainingMin.map(String.init) ?? "-")..\(t.remainingMax.map(String.init) ?? "-") "
                    + "(0 on \(Fmt.int(t.remainingZero)))"
                let l = pl.takeInterval().summary
                if l.count > 0 { line += " buy p99 \(Fmt.num(l.p99Ms, 1)) ms" }
            }
            show(phase, line)
            // The first sample after starts_at covers the open's second: who had the CPU then.
            if now >= startMicros && openCPU == nil { openCPU = cpu.last }
            let done = paid >= u && ledger.queued == 0 && t.remainingZero == t.subscribed && t.answered == t.firstWaveBuys + t.resaleBuys
            if done, let v = try? admin.call("GET", "/api/v1/sales/\(saleID)", idempotent: true), v.status == 200,
               v.json?["remaining"]?.intValue == 0, v.json?["sold"]?.intValue == Int64(u) {
                view = v.json
                break
            }
            if Clock.now() > deadline {
                p.note("flash sale: not settled within --pay-s + --wait after starts_at; checking what there is")
                break
            }
        }
        ledger.lock.withLock { ledger.stopped = true }
        for th in payers { while !th.isFinished { usleep(10_000) } }
        pl.finish()
        let ft = totals()
        if view == nil { view = try? admin.call("GET", "/api/v1/sales/\(saleID)", idempotent: true).json }

        // Figures.
        let s = res.setup
        res.setup = .init(connected: ft.connected, connectSeconds: s.connectSeconds, subscribed: ft.subscribed,
                          subscribedMsBeforeStart: subscribedAt.map { Double(startsAt) - $0 * 1000 }, failed: ft.failed, dropped: ft.dropped,
                          failures: ft.failures, drops: ft.drops, sale: saleID, startsAt: startsAt, createMs: s.createMs)
        var r = FlashSaleResults.Rush(opened: ft.opened, firstWaveBuys: ft.firstWaveBuys, firstWaveWon: ft.firstWaveWon, refusals: ft.refusals)
        if let a = ft.firstOpenMicros, let b = ft.lastOpenMicros { r.openSpreadMs = Double(b - a) / 1000 }
        r.openDelay = openDelay.summary
        r.buyLatency = pl.total.summary
        if let w = ft.lastFirstWaveWinMicros {
            r.soldOutFromStartMs = Double(w - startMicros) / 1000
            if let a = ft.firstOpenMicros { r.soldOutFromFirstOpenMs = Double(w - a) / 1000 }
        }
        r.soldOutPushFromStartMs = ft.firstSoldOutMicros.map { Double($0 - startMicros) / 1000 }
        if let a = ft.firstOpenMicros, let b = ft.firstSoldOutMicros { r.soldOutPushFromFirstOpenMs = Double(b - a) / 1000 }
        let spreads = pl.children.compactMap { c -> Double? in
            guard let s = c.final ?? c.latest, let a = s.firstOpenMicros, let b = s.lastOpenMicros else { return nil }
            return Double(b - a) / 1000
        }.sorted()
        r.workerOpenSpreadMaxMs = spreads.last
        r.openSecondCPU = openCPU
        r.workerCPUInOpenSecond = openCPU?["workers"].map { $0 / Double(max(1, pl.pids.count)) }
        r.workerOpenSpreadMedianMs = spreads.isEmpty ? nil : spreads[spreads.count / 2]
        res.rush = r
        let (wins, unpaidOrders, paid, payErrors, resold, lastResold) = ledger.lock.withLock {
            (ledger.wins, ledger.unpaid, ledger.paid, ledger.payErrors, ledger.resold, ledger.lastResoldMicros)
        }
        res.resale = .init(unpaidOrders: unpaidOrders.count, resaleBuys: ft.resaleBuys, resold: resold,
                           lastResoldFromStartMs: lastResold.map { Double($0 - startMicros) / 1000 },
                           buyLatency: resaleLatency.summary, paid: paid, payErrors: payErrors.count, payErrorSamples: Array(payErrors.prefix(5)))

        // Read back every order a buyer was answered with.
        var f = FlashSaleResults.Final(secondPresses: ft.secondPresses, secondPressWon: ft.secondPressWon,
                                       clientsRemainingZero: ft.remainingZero, clientsRemainingAbove: ft.remainingAbove,
                                       clientsRemainingUnknown: ft.remainingUnknown, clientsDropped: ft.dropped, pushGaps: ft.gaps,
                                       pushRepeats: ft.repeats, openRepeats: ft.openRepeats, beforeOpen: ft.beforeOpen, retries: ft.retries,
                                       twins: ft.twins, twinsSubscribed: ft.twinsSubscribed, twinPresses: ft.twinPresses, twinWon: ft.twinWon,
                                       unexpected: ft.unexpected, pushes: ft.pushes)
        p.note("flash sale: reading back \(wins.count) orders")
        var deliveredPerUser: [Int: Int] = [:]
        var keyOwner: [String: String] = [:]
        for w in wins {
            guard let o = try? admin.call("GET", "/api/v1/orders/\(w.order)", idempotent: true), o.status == 200, let j = o.json,
                  let status = j["status"]?.stringValue else {
                f.readErrors += 1
                continue
            }
            f.readBack += 1
            f.statuses[status, default: 0] += 1
            let keys = (j["keys"]?.arrayValue ?? []).compactMap(\.stringValue)
            if status == "delivered" {
                f.deliveredOrders += 1
                deliveredPerUser[w.g, default: 0] += 1
                if keys.count != 1 { f.deliveredWithoutOneKey += 1 }
            }
            if unpaidOrders.contains(w.order) && status == "canceled" { f.unpaidCanceled += 1 }
            for k in keys {
                if keyOwner[k] != nil { f.keysTwice += 1 } else { keyOwner[k] = w.order }
                if !k.hasPrefix("FSK-\(tag)-") { f.keysForeign += 1 }
            }
        }
        f.usersWithTwo = deliveredPerUser.values.filter { $0 > plan.perUser }.count
        f.saleRemaining = view?["remaining"]?.intValue.map { Int($0) }
        f.saleSold = view?["sold"]?.intValue.map { Int($0) }
        f.saleState = view?["state"]?.stringValue
        res.final = f
        return (res, checks(res))
    }

    /// One line per check: `ok ...` or `FAILED ...`.
    func checks(_ r: FlashSaleResults) -> [String] {
        let u = plan.units, f = r.final, s = r.setup, expectedUnpaid = plan.expectedUnpaid
        var out: [String] = []
        func check(_ ok: Bool, _ what: String) { out.append((ok ? "ok     " : "FAILED ") + what) }
        check(s.connected == plan.buyers && s.subscribed == s.connected,
              "every buyer connected and subscribed: \(s.connected) connected, \(s.subscribed) subscribed of \(plan.buyers)")
        check((s.subscribedMsBeforeStart ?? -1) >= 0, "subscribed before starts_at (\(s.subscribedMsBeforeStart.map { Fmt.num($0, 0) + " ms ahead" } ?? "never"))")
        check(r.rush.opened == s.subscribed, "sale.open received by every subscribed buyer: \(r.rush.opened)/\(s.subscribed)")
        check(r.rush.firstWaveWon == u, "the first wave took every unit: \(r.rush.firstWaveWon) orders for \(u) units")
        check(r.resale.unpaidOrders == expectedUnpaid && f.unpaidCanceled == expectedUnpaid,
              "unpaid orders expired: \(f.unpaidCanceled) canceled of \(r.resale.unpaidOrders) left unpaid (\(expectedUnpaid) planned)")
        check(r.resale.resold == expectedUnpaid, "returned units resold: \(r.resale.resold) of \(expectedUnpaid)")
        check(r.resale.paid == u && r.resale.payErrors == 0, "payments: \(r.resale.paid) paid of \(u), \(r.resale.payErrors) errors")
        check(f.readErrors == 0 && f.deliveredOrders == u, "exactly \(u) orders hold units, delivered: \(f.deliveredOrders) (read back \(f.readBack), \(f.readErrors) errors; \(f.statuses))")
        check(f.usersWithTwo == 0 && f.secondPressWon == 0,
              "nobody holds more than per_user: \(f.usersWithTwo) users over, \(f.secondPressWon) second orders of one buyer "
                + "(\(f.secondPresses) double clicks, \(f.twinPresses) presses from \(f.twinsSubscribed)/\(f.twins) second connections on the other node, \(f.twinWon) of them won)")
        check(f.deliveredWithoutOneKey == 0 && f.keysTwice == 0 && f.keysForeign == 0,
              "keys: one per delivered order (\(f.deliveredWithoutOneKey) not), \(f.keysTwice) twice, \(f.keysForeign) not uploaded by this run")
        check(f.clientsRemainingZero == s.subscribed && f.clientsDropped == 0,
              "final remaining 0 on every client: \(f.clientsRemainingZero) of \(s.subscribed) (above 0: \(f.clientsRemainingAbove), none seen: \(f.clientsRemainingUnknown), dropped \(f.clientsDropped))")
        check(f.pushGaps == 0 && f.pushRepeats == 0 && f.unexpected == 0 && f.openRepeats == 0 && f.beforeOpen == 0
                && (f.pushes["sale.open"] ?? 0) == r.rush.opened,
              "sale: pushes in order: \(f.pushGaps) skipped, \(f.pushRepeats) repeated, \(f.unexpected) frames not understood, "
                + "sale.open \(f.pushes["sale.open"] ?? 0) received by \(r.rush.opened) buyers (\(f.openRepeats) again), \(f.beforeOpen) stock/sold_out before it")
        check(f.saleRemaining == 0 && f.saleSold == u, "GET sale: remaining \(f.saleRemaining.map(String.init) ?? "?"), sold \(f.saleSold.map(String.init) ?? "?") of \(u), state \(f.saleState ?? "?")")
        return out
    }

    static func headline(_ r: FlashSaleResults, units: Int) -> String {
        let x = r.rush
        return "\(Fmt.int(r.setup.subscribed)) buyers, \(units) units: sale.open spread \(x.openSpreadMs.map { Fmt.num($0, 1) } ?? "?") ms, "
            + "buy p50 \(x.buyLatency.map { Fmt.num($0.p50Ms, 1) } ?? "?") p99 \(x.buyLatency.map { Fmt.num($0.p99Ms, 1) } ?? "?") ms, "
            + "sold out (first sale.sold_out) \(x.soldOutPushFromStartMs.map { Fmt.num($0, 0) } ?? "?") ms after starts_at (\(x.soldOutPushFromFirstOpenMs.map { Fmt.num($0, 0) } ?? "?") ms after the first open)"
    }
}
