import ArgumentParser
import Foundation
import Synchronization
import GatewayProtocol

/// Scenario 5: a holiday evening. Browsers ramp up and stay; meanwhile gifts are bought
/// and claimed, friends pay for each other (sometimes two at once), buyers chatter in
/// their groups, a price drops under many watchers, a sold-out product is restocked
/// under a line of restock watchers, and a share of browsers drops and comes back with `since`. Every push is checked (lost, duplicated, out of order) and
/// timed per kind from the action that caused it.
struct HolidayPeakCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "holiday-peak",
        abstract: "A holiday evening: browsers, gift rush, friend-pay, group chatter, a flash price drop, a restock rush and a reconnect storm, all checked for loss.",
        discussion: """
        Every browser is a WebSocket in this process (the load generator), so --browsers plus the offline \
        watchers reconnecting at once plus the restock watchers beyond --browsers must fit under the per-process \
        descriptor limit (`ulimit -Hn`, 20,000 here).
        Defaults run in about 50-60 s on 2 cores against 2 spawned nodes (--nodes, default 2 for this scenario).
        """)

    @Option(help: "Browsers: authenticated connections held for the whole run (at most ~18,000: one process, 20,000 descriptors).")
    var browsers = 2000

    @Option(help: "New browser connections per second during the ramp.")
    var connectRate: Double = 250

    @Option(help: "Seconds of peak (gifts, friend-pay, chatter, price drop, storm) after the ramp and set-up.")
    var duration = 40

    @Option(help: "Gift orders (buyer and recipient are browsers), spread over the first 80% of the peak.")
    var gifts = 400

    @Option(help: "Friend-pay requests (requester and friend are browsers), spread over the first 80% of the peak.")
    var friendpays = 200

    @Option(help: "Fraction of friend-pay requests that a second friend pays too (first wins, the other is refunded).")
    var doublePay = 0.3

    @Option(help: "Buyer groups (one product each).")
    var groups = 4

    @Option(help: "Browsers that buy a group's product during set-up and join its group (spread over --groups).")
    var groupMembers = 400

    @Option(help: "Group messages per second during the peak, all groups together (each buyer stays under groups.rate, 5 per 10 s).")
    var chatterRate: Double = 40

    @Option(help: "Watchers of the flash-drop product.")
    var watchers = 1000

    @Option(help: "Fraction of watchers that are connected browsers; the rest watch, go offline, and check their alert with `since` later.")
    var watchConnected = 0.5

    @Option(help: "When the price drops, as a fraction of the peak.")
    var dropAt = 0.55

    @Option(help: "Share of browsers that drop at once in the reconnect storm (0: no storm).")
    var stormShare = 0.3

    @Option(help: "When the storm hits, as a fraction of the peak.")
    var stormAt = 0.3

    @Option(help: "Seconds the stormed browsers stay away before they all come back with `since`.")
    var stormDown = 3.0

    @Option(help: "Restock rush: watchers in the restock line (`watch` with `restock:true`, sent one at a time so the line's order is known). The first --browsers of them are browsers, the rest extra connections that watch and stay. 0: no rush.")
    var restockWatchers = 5000

    @Option(help: "Restock rush: keys uploaded at once to the sold-out product; the first this many watchers in line each hold one.")
    var restockKeys = 500

    @Option(help: "When the restock upload goes out, as a fraction of the peak (before the storm at 0.3 by default, so its pushes arrive live).")
    var restockAt = 0.2

    @Option(help: "Restock rush: restock.hold_s of spawned nodes (GATEWAY_RESTOCK_HOLD_S), short so unused holds end inside the run; nodes given with --url keep theirs.")
    var restockHoldS = 20

    @Option(help: "Restock rush: share of the holders that order and pay as soon as their hold arrives.")
    var restockBuyShare = 0.9

    @Option(help: "Restock rush: watchers without a hold that order and pay as soon as their push arrives (abnormal while every key is held).")
    var restockSnipers = 200

    @Option(help: "Flash sale (issue 17): buyers in worker processes who wait on one sale that opens 5 s after they are all connected (they connect as the peak begins). 0: no flash sale.")
    var saleBuyers = 2000

    @Option(help: "Flash sale: units in the sale (per_user 1); fewer than --sale-buyers, so some lose and can buy the units the unpaid 10% give back.")
    var saleUnits = 100

    @Option(help: "Flash sale: sales.pay_s of spawned nodes (GATEWAY_SALES_PAY_S): the unpaid winners' orders expire after this and their units are resold.")
    var salePayS = 10

    @Option(help: "Threads doing HTTP (orders, payments, notifies), each with a keep-alive connection.")
    var httpWorkers = 8

    @Option(help: "Seconds to wait for late pushes after the peak.")
    var drain = 15

    @Option(help: "p99 objective per kind of push, ms.")
    var p99Objective: Double = 50

    @Option(help: "payments.secret of the nodes given with --url.")
    var paymentsSecret: String?

    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var output: OutputOptions

    var connectedWatchers: Int { min(browsers, Int((Double(watchers) * watchConnected).rounded())) }
    var offlineWatchers: Int { watchers - connectedWatchers }
    /// Restock watchers beyond the browsers: connections that only watch and stay.
    var restockExtraWatchers: Int { max(0, restockWatchers - browsers) }

    func validate() throws {
        let hard = Machine.fdLimit().hard
        guard browsers >= 10 else { throw ValidationError("--browsers must be at least 10 (gifts and friend-pay need distinct browsers)") }
        // Browsers, offline watchers coming back at once, HTTP sockets, Redis and spare.
        let needed = browsers + restockExtraWatchers + min(offlineWatchers, 1000) + httpWorkers * 2 + 100
        guard needed <= hard - 64 else {
            throw ValidationError("--browsers \(browsers) with \(restockExtraWatchers) restock watchers beyond them needs about \(needed) descriptors in this one process, over the limit of \(hard) (ulimit -Hn; a hard 20,000 on these machines): use at most \(max(10, hard - 64 - 100 - httpWorkers * 2 - min(offlineWatchers, 1000))) browsers and restock watchers together, or the `connections` scenario (worker processes) for more idle sockets")
        }
        guard connectRate > 0, connectRate <= 20_000 else { throw ValidationError("--connect-rate must be above 0 and at most 20,000") }
        guard (5...3600).contains(duration) else { throw ValidationError("--duration must be 5 to 3600 seconds") }
        guard (0...1_000_000).contains(gifts) else { throw ValidationError("--gifts must be 0 to 1,000,000") }
        guard (0...1_000_000).contains(friendpays) else { throw ValidationError("--friendpays must be 0 to 1,000,000") }
        guard doublePay >= 0, doublePay <= 1 else { throw ValidationError("--double-pay must be 0 to 1") }
        guard (1...100).contains(groups) else { throw ValidationError("--groups must be 1 to 100") }
        guard (0...browsers).contains(groupMembers) else { throw ValidationError("--group-members must be 0 to --browsers (\(browsers))") }
        guard chatterRate >= 0, chatterRate <= 10_000 else { throw ValidationError("--chatter-rate must be 0 to 10,000") }
        if chatterRate > 0 {
            guard groupMembers >= groups else { throw ValidationError("chatter needs at least one member per group: --group-members must be at least --groups") }
            // Each sender stays under the default groups.rate (5 per 10 s): at most 0.4 messages/s each.
            let perSender = chatterRate / Double(groupMembers)
            guard perSender <= 0.4 else {
                throw ValidationError("--chatter-rate \(Fmt.num(chatterRate, 0))/s over \(groupMembers) members is \(Fmt.num(perSender, 2)) messages/s per buyer, over the 0.4/s that keeps each under groups.rate (5 per 10 s): raise --group-members to at least \(Int((chatterRate / 0.4).rounded(.up))) or lower --chatter-rate")
            }
        }
        guard (0...1_000_000).contains(watchers) else { throw ValidationError("--watchers must be 0 to 1,000,000") }
        guard watchConnected >= 0, watchConnected <= 1 else { throw ValidationError("--watch-connected must be 0 to 1") }
        guard Double(watchers) * watchConnected <= Double(browsers) else {
            throw ValidationError("--watchers x --watch-connected (\(Int(Double(watchers) * watchConnected))) cannot exceed --browsers (\(browsers))")
        }
        guard dropAt >= 0, dropAt <= 0.9, stormAt >= 0, stormAt <= 0.9 else { throw ValidationError("--drop-at and --storm-at must be 0 to 0.9 (fractions of the peak)") }
        guard watchers == 0 || dropAt * Double(duration) + 4 <= Double(duration) else {
            throw ValidationError("offline watchers come back 3 s after the drop: --drop-at x --duration must be at least 4 s before the peak ends")
        }
        guard stormShare >= 0, stormShare <= 1 else { throw ValidationError("--storm-share must be 0 to 1") }
        guard stormDown >= 0.1, stormDown <= 600 else { throw ValidationError("--storm-down must be 0.1 to 600 seconds") }
        guard stormAt * Double(duration) + stormDown < Double(duration) else {
            throw ValidationError("the storm (--storm-at x --duration + --storm-down) must end before the peak does")
        }
        guard (0...18_000).contains(restockWatchers) else { throw ValidationError("--restock-watchers must be 0 to 18,000 (0: no restock rush)") }
        if restockWatchers > 0 {
            guard (1...10_000).contains(restockKeys) else { throw ValidationError("--restock-keys must be 1 to 10,000 (one upload)") }
            guard restockAt >= 0, restockAt <= 0.9 else { throw ValidationError("--restock-at must be 0 to 0.9 (a fraction of the peak)") }
            guard (1...86_400).contains(restockHoldS) else { throw ValidationError("--restock-hold-s must be 1 to 86,400") }
            guard restockBuyShare >= 0, restockBuyShare <= 1 else { throw ValidationError("--restock-buy-share must be 0 to 1") }
            guard (0...restockWatchers).contains(restockSnipers) else { throw ValidationError("--restock-snipers must be 0 to --restock-watchers (\(restockWatchers))") }
        }
        guard (0...200_000).contains(saleBuyers) else { throw ValidationError("--sale-buyers must be 0 to 200,000 (0: no flash sale)") }
        if saleBuyers > 0 {
            guard (1...100_000).contains(saleUnits), saleUnits < saleBuyers else { throw ValidationError("--sale-units must be 1 to 100,000 and below --sale-buyers") }
            guard (1...86_400).contains(salePayS) else { throw ValidationError("--sale-pay-s must be 1 to 86,400") }
        }
        guard (1...64).contains(httpWorkers) else { throw ValidationError("--http-workers must be 1 to 64") }
        guard (1...600).contains(drain) else { throw ValidationError("--drain must be 1 to 600 seconds") }
        guard p99Objective > 0 else { throw ValidationError("--p99-objective must be above 0") }
    }

    func run() throws {
        var me = self
        // This scenario is about pushes crossing nodes: two unless --nodes says otherwise.
        me.cluster.defaultNodes = 2
        try HolidayPeakScenario(me).run()
    }
}

struct HolidayPeakResults: EmptyResults {
    static let sections: ReportSections = [.limits, .checks, .verdict, .timeline]

    struct Parameters: Codable {
        var browsers: Int
        var connectRate: Double
        var durationSeconds: Int
        var gifts: Int
        var friendpays: Int
        var doublePay: Double
        var groups: Int
        var groupMembers: Int
        var chatterRate: Double
        var watchers: Int
        var watchersConnected: Int
        var watchersOffline: Int
        var stormShare: Double
        var stormAtSeconds: Double
        var stormDownSeconds: Double
        var dropAtSeconds: Double
        /// 0: no restock rush.
        var restockWatchers: Int
        var restockKeys: Int
        var restockAtSeconds: Double
        var restockHoldSeconds: Int
        var restockBuyShare: Double
        var restockSnipers: Int
        /// 0: no flash sale.
        var saleBuyers = 0
        var saleUnits = 0
        var salePaySeconds = 0
        var httpWorkers: Int
        var nodes: Int
        var external: Bool
        var p99ObjectiveMs: Double
    }

    struct Browsers: Codable {
        var target = 0
        var connected = 0
        var failed = 0
        var failures: [String: Int] = [:]
        var rampSeconds = 0.0
        var connectLatency: LatencySummary?
        /// Unplanned closes after connecting (each reconnected with `since`).
        var drops = 0
        var dropReasons: [String: Int] = [:]
        /// Personal-channel offsets skipped or seen twice on a connection.
        var personalGaps = 0
        var personalDuplicates = 0
        var onlineAtEnd = 0
    }

    struct Gifts: Codable {
        var ordered = 0
        var paid = 0
        var received = 0
        var claimed = 0
        /// Claims whose reply held exactly one key.
        var claimsWithOneKey = 0
        var claimErrors = 0
        /// Chaos: claims whose reply was lost with the connection, re-sent on reconnect and answered
        /// `gone` (the first one went through); their keys are checked by the read-back.
        var claimsConfirmedByRetry = 0
        /// Keys that appeared in two claims or orders (must be 0).
        var keysSeenTwice = 0
        var readBackDelivered = 0
        var problems: [String] = []
    }

    struct FriendPay: Codable {
        var requested = 0
        var paid = 0
        var secondPayments = 0
        var refundsExpected = 0
        var refundsReceived = 0
        /// Read back: delivered to the requester, paid by the first friend, one key.
        var readBackOK = 0
        var problems: [String] = []
    }

    struct Groups: Codable {
        var groups = 0
        var members = 0
        var subscribed = 0
        var purchaseErrors = 0
        var messagesSent = 0
        var messagesAccepted = 0
        var rateLimited = 0
        var skippedSenderOffline = 0
        var expectedDeliveries = 0
        var delivered = 0
        var lost = 0
        var duplicates = 0
        var outOfOrder = 0
        var latency: LatencySummary?
    }

    struct Drop: Codable {
        var connectedWatchers = 0
        var offlineWatchers = 0
        var watchErrors = 0
        var patchMs = 0.0
        var oldPrice = 0
        var newPrice = 0
        var liveAlerts = 0
        /// Offline watchers that found exactly one alert when they came back with `since`.
        var storedAlertsOnce = 0
        var offlineChecked = 0
        var missing = 0
        var duplicates = 0
        /// PATCH sent to the last live alert.
        var lastLiveAlertMs: Double?
    }

    /// The restock rush: a sold-out product, a line of restock watchers in a known order, one
    /// upload of keys; the first watchers hold a key each until `until`, and only their orders
    /// may take those keys.
    struct Restock: Codable {
        var product = ""
        var watchers = 0
        /// Connections opened only to watch (watchers beyond the browsers).
        var extraConnections = 0
        /// Watches answered with `restock:true`, one at a time: the line, in this order.
        var inLine = 0
        /// Watches answered without `restock:true` (a gateway without restock watches).
        var watchesIgnored = 0
        var watchErrors = 0
        var watchSeconds = 0.0
        var keys = 0
        var uploadStatus: Int?
        var uploadMs: Double?
        /// The upload answer's `holds` and `stock` (keys a non-holder can buy now).
        var holdsAnswered: Int?
        var stockAnswered: Int?
        /// min(keys, line): the first this many of the line must hold a key.
        var expectedHolds = 0
        /// Watchers whose `product.restock` carried `hold`.
        var holdPushes = 0
        /// Hold pushes to a watcher outside the first `expectedHolds` of the line, and first ones without a hold.
        var holdersOutOfOrder = 0
        var holdersMissing = 0
        /// Distinct `hold.until` values seen (one upload: 1).
        var untilValues = 0
        var holdUntilMs: Int64?
        /// Holders' orders: paid within the hold (notify answered before `until`) and of those delivered
        /// with exactly one key; paid around or after `until` (not judged).
        var holderOrders = 0
        var holderPaidInTime = 0
        var holderDeliveredInTime = 0
        var holderPaidLate = 0
        /// Non-holders' orders paid (notify answered) before `until`, and those that got a key.
        var sniperOrders = 0
        var sniperPaidBeforeUntil = 0
        var sniperDeliveredBeforeUntil = 0
        var sniperDeliveredLater = 0
        /// Keys in the run's restock orders, seen twice, or not among the uploaded ones.
        var keysGiven = 0
        var keysTwice = 0
        var keysForeign = 0
        /// `GET product` after `until` (+2 s, held 0): every unused hold back in stock.
        var stockAfter: Int?
        var heldAfter: Int?
        var expectedStockAfter: Int?
        /// Upload sent to the last live `product.restock` received, and to the last holder's.
        var lastToldMs: Double?
        var lastHolderToldMs: Double?
        var holderLatency: LatencySummary?
        var restLatency: LatencySummary?
        /// Delivered holder orders per second, upload to the last of them.
        var holderDeliveredPerSecond: Double?
        /// Longest `SLOWLOG` entry on the restock product during the upload (the keys_add script; one spawned redis-server only).
        var slowlogMaxMs: Double?
        var problems: [String] = []
    }

    struct Storm: Codable {
        var victims = 0
        var downSeconds = 0.0
        var reconnected = 0
        var notRecovered = 0
        /// Pushes that reached their user through recovery after a reconnect.
        var recoveredPushes = 0
        /// Drop to all victims connected again.
        var backInSeconds: Double?
    }

    struct Totals: Codable {
        var expected = 0
        var received = 0
        var lost = 0
        var duplicates = 0
        var outOfOrder = 0
        var unexpected = 0
        var errors = 0
        var pushesReceived = 0
        var latency: LatencySummary?
    }

    struct Point: Codable {
        var t: Double
        var phase: String
        var online: Int
        var pushesPerSecond: Int
        var p50Ms: Double
        var p99Ms: Double
        var maxMs: Double
        var httpPerSecond: Int
        var errors: Int
    }

    var browsers = Browsers()
    /// Per kind of push: expected, received, lost, duplicates, latency (action to receipt).
    var pushes: [String: PushLedger.KindCounts] = [:]
    var totals = Totals()
    var gifts = Gifts()
    var friendPay = FriendPay()
    var groups = Groups()
    var priceDrop = Drop()
    /// Nil when the run had no restock rush (`--restock-watchers 0`).
    var restock: Restock?
    /// The flash sale (issue 17) and its checks; nil with `--sale-buyers 0`.
    var flashSale: FlashSaleResults?
    var flashSaleChecks: [String]?
    var storm = Storm()
    /// Every timed push by what the run was doing when it arrived (set-up burst, steady
    /// peak, storm return, price drop, drain): where the slow ones come from.
    var latencyByMoment: [String: LatencySummary] = [:]
    /// Live pushes from their publication (`ts`, stamped by Redis when stored; ms) to
    /// receipt, by moment: the fan-out half of the latency above.
    var fanoutByMoment: [String: LatencySummary] = [:]
    /// Command replies over WebSocket (gift.claim, subscribe, watch, publish).
    var replies: [String: LatencySummary] = [:]
    var httpErrors: [String: Int] = [:]
    var errors: [String: Int] = [:]
    var missingSamples: [String] = []
    var cpuDuringPeak: [CPUSpan] = []
    /// Run time and time spent waiting for a core, per process of the run, during the peak.
    var schedDuringPeak: [SchedSpan] = []
    var events: [ChartEvent] = []
}

typealias HolidayPeakReport = ScenarioReport<HolidayPeakResults>

/// The flash sale running beside the peak, and what it found once `finished`.
final class FlashSaleBeside: @unchecked Sendable {
    let lock = NSLock()
    var results: FlashSaleResults?
    var checks: [String]?
    var finished = false
}

/// What a gift or friend-pay is, for claiming, paying and reading back. Under the scenario's `stats` lock.
final class HPOrder: @unchecked Sendable {
    let n: Int
    let buyer: HPBrowser
    let friend: HPBrowser
    let second: HPBrowser?
    var id: String?
    var code: String?
    var claimed = false
    var keys: [String] = []
    var paidBy: String?
    init(n: Int, buyer: HPBrowser, friend: HPBrowser, second: HPBrowser? = nil) {
        self.n = n
        self.buyer = buyer
        self.friend = friend
        self.second = second
    }
}

/// Counters under `stats`, browsers under the fleet lock; the rest is the main thread's.
final class HolidayPeakScenario: @unchecked Sendable {
    let cmd: HolidayPeakCommand
    let tag = Machine.randomHex(bytes: 3)
    let ledger = PushLedger()
    let errors = ErrorTally()
    let httpErrors = ErrorTally()
    private let stats = NSLock()
    private var httpCalls = 0
    private var giftCount = HolidayPeakResults.Gifts()
    private var fpCount = HolidayPeakResults.FriendPay()
    private var grp = HolidayPeakResults.Groups()
    private var drop = HolidayPeakResults.Drop()
    private var groupLatency = Latency()
    private var lastLiveAlert: Int64?
    private var patchAt: Int64?
    private var recoveredPushes = 0
    private var seenKeys: [String: String] = [:]
    private var giftsByOrder: [String: HPOrder] = [:]
    private var fpByOrder: [String: HPOrder] = [:]
    private var groupFinal: [String: Int64] = [:]
    /// Chaos: gift claims sent and not answered yet, by order (re-sent when the recipient is back).
    private var pendingClaims: [String: (browser: HPBrowser, code: String, gift: HPOrder?, retried: Bool, generation: Int)] = [:]
    /// Keys found by the read-back, per product (chaos compares them with the stock left).
    private(set) var keysReadBack: [String: Int] = [:]
    private(set) var keysHeldUnrevealed: [String: Int] = [:]
    /// Faults injected during the peak (the chaos scenario); nil for a plain holiday peak.
    var chaos: ChaosDriver?
    /// The restock rush; nil with `--restock-watchers 0`.
    private(set) var rush: RestockRush?
    private var paySecret = ""
    private(set) var jobs: JobQueue!
    private(set) var fleet: BrowserFleet!

    init(_ cmd: HolidayPeakCommand) { self.cmd = cmd }

    var giftProduct: String { "hp-\(tag)-gift" }
    var fpProduct: String { "hp-\(tag)-fp" }
    var watchProduct: String { "hp-\(tag)-watch" }
    var restockProduct: String { "hp-\(tag)-restock" }
    func groupProduct(_ k: Int) -> String { "hp-\(tag)-g\(k)" }
    var watchFields: String { #""product":"\#(watchProduct)""# }
    let price = 1999, watchPrice = 9900

    // MARK: What the phases record

    func watchFailed(_ reply: JSON) {
        errors.add("watch: " + (reply["error"]?["code"]?.stringValue ?? "?"))
        stats.withLock { drop.watchErrors += 1 }
    }

    /// The watcher was not connected: its watch never went out.
    func watchNotSent() { stats.withLock { drop.watchErrors += 1 } }

    func groupsJoined(groups: Int, members: Int, subscribed: Int) {
        stats.withLock {
            grp.groups = groups
            grp.members = members
            grp.subscribed = subscribed
        }
    }

    /// The price-drop PATCH went out (its time is known).
    var pricePatched: Bool { stats.withLock { patchAt != nil } }

    /// Chaos: gift claims sent and not answered yet.
    var claimsPending: Bool { stats.withLock { !pendingClaims.isEmpty } }

    func run() throws {
        let ctx = try RunContext(scenario: chaos == nil ? "holiday-peak" : "chaos", output: cmd.output)
        let p = ctx.progress
        var (clusterOptions, secret) = try ClusterSecrets.withPaymentsSecret(cmd.cluster, external: cmd.paymentsSecret)
        paySecret = secret
        if cmd.restockWatchers > 0 {
            rush = RestockRush(scenario: self, product: restockProduct)
            // Short holds, so unused ones end inside the run; a --node-env given by hand wins (it comes later).
            clusterOptions.nodeEnv.insert("GATEWAY_RESTOCK_HOLD_S=\(cmd.restockHoldS)", at: 0)
        }
        // The flash sale's unpaid orders expire inside the run; a --node-env given by hand wins.
        if cmd.saleBuyers > 0 { clusterOptions.nodeEnv.insert("GATEWAY_SALES_PAY_S=\(cmd.salePayS)", at: 0) }
        var limits = Preflight.check(connections: cmd.browsers + cmd.restockExtraWatchers, nodes: cmd.cluster.nodeCount, sourceAddresses: false)
        limits.forEach { p.note("preflight: \($0)") }

        var cluster: Cluster?
        defer {
            jobs?.stop()
            fleet?.shutdown()
            cluster?.stop()
        }
        cluster = try Cluster.start(clusterOptions, logDir: ctx.logDir, progress: p)
        let c = cluster!
        try chaos?.clusterStarted(c, tag: tag, progress: p)
        let n = cmd.browsers
        let peak = Double(cmd.duration)
        var report = HolidayPeakReport(run: ctx.info, parameters: .init(
            browsers: n, connectRate: cmd.connectRate, durationSeconds: cmd.duration, gifts: cmd.gifts, friendpays: cmd.friendpays,
            doublePay: cmd.doublePay, groups: cmd.groups, groupMembers: cmd.groupMembers, chatterRate: cmd.chatterRate,
            watchers: cmd.watchers, watchersConnected: cmd.connectedWatchers, watchersOffline: cmd.offlineWatchers,
            stormShare: cmd.stormShare, stormAtSeconds: cmd.stormAt * peak, stormDownSeconds: cmd.stormDown,
            dropAtSeconds: cmd.dropAt * peak, restockWatchers: cmd.restockWatchers, restockKeys: cmd.restockKeys,
            restockAtSeconds: cmd.restockAt * peak, restockHoldSeconds: cmd.restockHoldS, restockBuyShare: cmd.restockBuyShare,
            restockSnipers: cmd.restockSnipers, httpWorkers: cmd.httpWorkers, nodes: c.endpoints.count,
            external: cmd.cluster.external, p99ObjectiveMs: cmd.p99Objective))
        report.parameters.saleBuyers = cmd.saleBuyers
        report.parameters.saleUnits = cmd.saleBuyers > 0 ? cmd.saleUnits : 0
        report.parameters.salePaySeconds = cmd.saleBuyers > 0 ? cmd.salePayS : 0

        // Products and keys: one per gift, friend-pay and member, plus a few spare.
        let admin = ShopClient(c.endpoints[0], shopKey: c.shopKey, timeout: 60)
        try admin.createProduct(id: giftProduct, price: price, title: "Holiday gift card")
        try upload(admin, giftProduct, cmd.gifts + 10, p)
        try admin.createProduct(id: fpProduct, price: price, title: "Holiday friend-pay card")
        try upload(admin, fpProduct, cmd.friendpays + 10, p)
        for k in 0..<cmd.groups {
            try admin.createProduct(id: groupProduct(k), price: price, title: "Holiday group \(k)")
            try upload(admin, groupProduct(k), cmd.groupMembers / cmd.groups + 11, p)
        }
        try admin.createProduct(id: watchProduct, price: watchPrice, title: "Holiday flash deal")
        // Sold out until the rush's upload.
        if rush != nil { try admin.createProduct(id: restockProduct, price: price, title: "Holiday restock") }
        admin.disconnect()

        // Under chaos a call the node never answers is retried after 5 s (and counted), not waited on for 20.
        jobs = JobQueue(endpoints: c.endpoints, shopKey: c.shopKey, threads: cmd.httpWorkers, timeout: chaos == nil ? 20 : 5)
        let ttl = 7200 + cmd.duration + Int(Double(n) / cmd.connectRate)
        fleet = try BrowserFleet(urls: c.endpoints.map(\.wsURL), secret: c.secret, loops: n + (rush == nil ? 0 : cmd.restockExtraWatchers) > 6000 ? 2 : 1, ttl: ttl,
                                 ledger: ledger, errors: errors)
        fleet.onPush = { [self] b, type, json, now, recovered in pushed(b, type, json, now, recovered) }
        let browsers = (0..<n).map { HPBrowser(user: "hp-\(tag)-\($0)", node: $0 % c.endpoints.count) }
        if chaos != nil {
            // A claim whose reply went down with the connection goes again once the recipient is back.
            for b in browsers { b.onOnline = { [self] b in resendClaims(b) } }
        }
        let offline = (0..<cmd.offlineWatchers).map { HPBrowser(user: "hp-\(tag)-w\($0)", node: $0 % c.endpoints.count) }
        let restockExtra = rush == nil ? [] : (0..<cmd.restockExtraWatchers).map { HPBrowser(user: "hp-\(tag)-r\($0)", node: $0 % c.endpoints.count) }
        let run = HolidayPeak.Run(scenario: self, cluster: c, progress: p, browsers: browsers, offline: offline, restockExtra: restockExtra,
                                  report: report)
        let offlineWatchDone = try HolidayPeak.Ramp(run: run)()
        let setUp = HolidayPeak.SetUp(run: run, offlineWatchDone: offlineWatchDone)()
        // The flash sale runs beside the peak, from its own buyer processes.
        let sale = cmd.saleBuyers > 0 ? startFlashSale(c, logDir: ctx.logDir, p) : nil
        let peakResult = HolidayPeak.Peak(run: run, setUp: setUp)()
        HolidayPeak.Drain(run: run, setUp: setUp, peak: peakResult)()
        if let sale {
            p.note("waiting for the flash sale to end")
            while !sale.lock.withLock({ sale.finished }) { usleep(50_000) }
        }

        // 5. Read back orders: state, owner, exactly one key each, no key twice.
        verify(c, peakResult.giftOrders, peakResult.fpOrders, p)

        // 6. Report (the restock rush's part once its holds have ended).
        report = completed(run, setUp, peakResult)
        if let rush { report.restock = rush.finish(c, pushes: report.pushes, p) }
        if let sale { (report.flashSale, report.flashSaleChecks) = sale.lock.withLock { (sale.results, sale.checks) } }
        limits += judge(report)
        if !c.deadNodes().isEmpty { limits.append("gateway: node exited: " + c.deadNodes().joined(separator: "; ")) }
        report.limits = limits
        (report.checks, report.verdict) = verdict(report)
        report.run.machine = MachineInfo()
        if let chaos {
            let all = browsers + offline
            let online = fleet.lock.withLock { all.filter { $0.state == .online }.count }
            let stranded = fleet.lock.withLock { browsers.filter { $0.state != .online }.map(\.user) }
            let pending = stats.withLock { pendingClaims.count }
            let keys = stats.withLock { keysReadBack }
            let held = stats.withLock { keysHeldUnrevealed }
            try chaos.finish(cluster: c, peak: report, ctx: ctx, browsersOnline: online, stranded: stranded, claimsUnanswered: pending,
                             keysReadBack: keys, keysHeld: held, products: (gift: (giftProduct, cmd.gifts + 10), friendpay: (fpProduct, cmd.friendpays + 10)),
                             quiesce: { [self] in
                                 jobs.stop()
                                 fleet.shutdown()
                             }, printPeak: { [self] in summary(report) })
        } else {
            summary(report)
            try ctx.write(report)
        }
    }

    /// The report once the run is over: the fleet's, the ledger's and the scenario's counts
    /// and every total, before the limits and the verdict.
    private func completed(_ run: HolidayPeak.Run, _ setUp: HolidayPeak.SetUp.Result, _ peak: HolidayPeak.Peak.Result) -> HolidayPeakReport {
        var report = run.report
        let n = run.n
        let connectedWatchers = setUp.connectedWatchers, groupMembersByGroup = setUp.groupMembersByGroup
        let offline = run.offline, offlineChecked = peak.offlineChecked, victims = peak.victims, stormBackDone = peak.stormBackDone
        let s = fleet.snapshot
        report.browsers.target = n
        report.browsers.failed = s.failed
        report.browsers.failures = s.failures
        report.browsers.connectLatency = fleet.connectSummary
        report.browsers.drops = s.drops
        report.browsers.dropReasons = s.dropReasons
        report.browsers.personalGaps = s.personalGaps
        report.browsers.personalDuplicates = s.personalDuplicates
        report.browsers.onlineAtEnd = s.online - fleet.lock.withLock { run.restockExtra.filter { $0.state == .online }.count }
        report.pushes = ledger.counts()
        stats.withLock {
            report.gifts = giftCount
            report.friendPay = fpCount
            var g = grp
            g.latency = groupLatency.summary
            for (k, list) in groupMembersByGroup.enumerated() {
                let channel = "group:\(groupProduct(k))"
                let final = groupFinal[channel] ?? 0
                for b in list {
                    guard let pos = b.groups[channel] else { continue }
                    let expected = Int(max(0, final - pos.start))
                    g.expectedDeliveries += expected
                    g.delivered += pos.received
                    g.lost += max(0, expected - pos.received)
                    g.duplicates += pos.duplicates
                    g.outOfOrder += pos.gaps
                }
            }
            report.groups = g
            var d = drop
            d.connectedWatchers = connectedWatchers.count
            d.offlineWatchers = offline.count
            d.offlineChecked = offlineChecked.value
            let alerts = report.pushes["price.drop"]
            d.liveAlerts = (alerts?.received ?? 0) - (alerts?.recovered ?? 0)
            d.missing = alerts?.lost ?? 0
            d.duplicates = alerts?.duplicates ?? 0
            if let last = lastLiveAlert, let at = patchAt { d.lastLiveAlertMs = Double(last - at) / 1000 }
            report.priceDrop = d
            report.storm = .init(victims: victims.count, downSeconds: cmd.stormDown, reconnected: s.reconnects, notRecovered: s.notRecovered,
                                 recoveredPushes: recoveredPushes, backInSeconds: stormBackDone)
        }
        // Group messages are checked by offset on every member connection, not by expectation.
        var gm = report.pushes["group.message"] ?? PushLedger.KindCounts()
        gm.expected = report.groups.expectedDeliveries
        gm.received = report.groups.delivered
        gm.lost = report.groups.lost
        gm.duplicates = report.groups.duplicates
        gm.unexpected = 0
        report.pushes["group.message"] = gm
        report.latencyByMoment = ledger.momentSummaries
        report.fanoutByMoment = ledger.fanoutSummaries
        report.replies = fleet.replySummaries
        report.httpErrors = httpErrors.all
        report.errors = errors.all
        report.missingSamples = ledger.missingSamples()
        var totals = HolidayPeakResults.Totals()
        for k in report.pushes.values {
            totals.expected += k.expected
            totals.received += k.received
            totals.lost += k.lost
            totals.duplicates += k.duplicates
            totals.unexpected += k.unexpected
        }
        totals.duplicates += report.browsers.personalDuplicates
        totals.outOfOrder = report.groups.outOfOrder + report.browsers.personalGaps
        totals.errors = errors.total + httpErrors.total + report.browsers.failed + report.gifts.claimErrors
            + report.gifts.problems.count + report.friendPay.problems.count
        totals.pushesReceived = ledger.totalReceipts
        totals.latency = ledger.all.summary
        report.totals = totals
        return report
    }

    /// Chaos: browsers whose reconnect failed (their node or Redis was down) try again,
    /// with `since`; offline watchers in their check too. Only those that were online once.
    func retryFailed(_ browsers: [HPBrowser], offline: [HPBrowser]) {
        let failed = fleet.lock.withLock {
            (browsers + offline).enumerated().filter { $0.element.state == .failed && $0.element.personalEpoch != nil }
        }
        for (i, b) in failed { fleet.connect(b, since: true, index: i) }
    }

    /// Chaos, fleet lock held (the browser just came online): claims still unanswered go again.
    private func resendClaims(_ b: HPBrowser) {
        // Only claims sent on an earlier connection: one sent by a push replayed in this very connect reply is in flight.
        let mine = stats.withLock { pendingClaims.filter { $0.value.browser === b && $0.value.generation != b.generation } }
        for (id, c) in mine {
            stats.withLock {
                pendingClaims[id]?.retried = true
                pendingClaims[id]?.generation = b.generation
            }
            sendClaim(b, code: c.code, order: id, gift: c.gift)
        }
    }

    // MARK: Set-up

    private func upload(_ admin: ShopClient, _ product: String, _ count: Int, _ p: Progress) throws {
        var done = 0
        while done < count {
            let k = min(10_000, count - done)
            let r = try admin.call("POST", "/api/v1/products/\(product)/keys", keysBody(product, done..<(done + k)))
            guard r.status == 200 else { throw SpawnError("uploading keys to \(product): HTTP \(r.status) \(r.text)") }
            done += k
        }
    }

    /// An upload's body: keys `HPK-<tag>-<product>-<i>`, so a read-back knows a key as the run's.
    func keysBody(_ product: String, _ range: Range<Int>) -> String {
        #"{"keys":["# + range.map { #""\#(keyName(product, $0))""# }.joined(separator: ",") + "]}"
    }

    func keyName(_ product: String, _ i: Int) -> String { "HPK-\(tag)-\(product)-\(i)" }

    /// Members' purchases come in one burst before the peak: timed apart from the peak's orders.
    let setupLabel = "order.status (set-up)"

    /// A normal purchase: the member then may join the product's group.
    func buyForGroup(_ shop: ShopClient, _ b: HPBrowser, group k: Int, done: Counter) {
        defer { done.add() }
        let product = groupProduct(k)
        do {
            let t1 = Clock.unixMicros()
            let o = try http(shop, "POST", "/api/v1/orders", #"{"buyer":"\#(b.user)","product":"\#(product)","quantity":1}"#, want: 201, what: "member order")
            guard let id = o?["id"]?.stringValue else { stats.withLock { grp.purchaseErrors += 1 }; return }
            ledger.expect(b.user, "order.status", "\(id) pending_payment", at: t1, label: setupLabel)
            guard try payAndNotify(shop, order: id, payer: b.user, before: { t in
                ledger.expect(b.user, "order.status", "\(id) delivered", at: t, label: setupLabel)
            }) else { stats.withLock { grp.purchaseErrors += 1 }; return }
        } catch {
            httpErrors.add("member order: \(error)")
            stats.withLock { grp.purchaseErrors += 1 }
        }
    }

    // MARK: Peak parts

    /// Gift order, payment, signed notify; the recipient claims on `gift.received`.
    func placeGift(_ shop: ShopClient, _ g: HPOrder) {
        do {
            let t1 = Clock.unixMicros()
            let body = #"{"buyer":"\#(g.buyer.user)","product":"\#(giftProduct)","quantity":1,"kind":"gift","gift":{"to":"\#(g.friend.user)","message":"Happy holidays"}\#(idem("g\(g.n)"))}"#
            guard let o = try http(shop, "POST", "/api/v1/orders", body, want: 201, orRepeat: true, what: "gift order"),
                  let id = o["id"]?.stringValue else { return }
            ledger.expect(g.buyer.user, "order.status", "\(id) pending_payment", at: t1)
            stats.withLock {
                g.id = id
                g.code = o["gift"]?["code"]?.stringValue
                giftsByOrder[id] = g
                giftCount.ordered += 1
            }
            let ok = try payAndNotify(shop, order: id, payer: g.buyer.user, before: { t in
                ledger.expect(g.buyer.user, "order.status", "\(id) paid", at: t)
                ledger.expect(g.buyer.user, "gift.created", id, at: t)
                ledger.expect(g.friend.user, "gift.received", id, at: t)
            })
            if ok { stats.withLock { giftCount.paid += 1 } }
        } catch {
            httpErrors.add("gift: \(error)")
        }
    }

    /// Friend-pay request; the friend pays on `friendpay.requested`.
    func requestFriendPay(_ shop: ShopClient, _ f: HPOrder) {
        do {
            let t1 = Clock.unixMicros()
            let body = #"{"buyer":"\#(f.buyer.user)","product":"\#(fpProduct)","quantity":1,"kind":"friendpay","friendpay":{"to":"\#(f.friend.user)"}\#(idem("f\(f.n)"))}"#
            guard let o = try http(shop, "POST", "/api/v1/orders", body, want: 201, orRepeat: true, what: "friend-pay order"),
                  let id = o["id"]?.stringValue else { return }
            ledger.expect(f.buyer.user, "order.status", "\(id) pending_payment", at: t1)
            ledger.expect(f.friend.user, "friendpay.requested", id, at: t1)
            stats.withLock {
                f.id = id
                fpByOrder[id] = f
                fpCount.requested += 1
            }
        } catch {
            httpErrors.add("friend-pay request: \(error)")
        }
    }

    /// The friend (and sometimes a second one) pays; the first notify wins.
    private func payFriendPay(_ shop: ShopClient, _ f: HPOrder, _ id: String) {
        do {
            let first = try createPayment(shop, order: id, payer: f.friend.user)
            let second = try f.second.flatMap { try createPayment(shop, order: id, payer: $0.user) }
            guard let first else { return }
            let t = Clock.unixMicros()
            ledger.expect(f.buyer.user, "order.status", "\(id) delivered", at: t)
            ledger.expect(f.friend.user, "order.status", "\(id) delivered", at: t)
            ledger.expect(f.buyer.user, "friendpay.paid", id, at: t)
            ledger.expect(f.friend.user, "friendpay.receipt", id, at: t)
            guard try notify(shop, first) else { return }
            stats.withLock { fpCount.paid += 1 }
            if let second, let who = f.second {
                let t2 = Clock.unixMicros()
                ledger.expect(who.user, "payment.refund_required", id, at: t2)
                stats.withLock {
                    fpCount.secondPayments += 1
                    fpCount.refundsExpected += 1
                }
                _ = try notify(shop, second)
            }
        } catch {
            httpErrors.add("friend-pay payment: \(error)")
        }
    }

    func chat(_ sender: HPBrowser, group channel: String) {
        let t = Clock.unixMicros()
        let sent = fleet.command(sender, "publish", #""channel":"\#(channel)","data":{"text":"hp \#(t) merry chatter"}"#) { [self] reply in
            if let offset = reply["ok"]?["offset"]?.intValue {
                stats.withLock {
                    grp.messagesAccepted += 1
                    groupFinal[channel] = max(groupFinal[channel] ?? 0, offset)
                }
            } else {
                let code = reply["error"]?["code"]?.stringValue ?? "?"
                if code == "rate_limited" { stats.withLock { grp.rateLimited += 1 } }
                errors.add("group publish: \(code)")
            }
        }
        stats.withLock { if sent { grp.messagesSent += 1 } else { grp.skippedSenderOffline += 1 } }
    }

    /// One PATCH to a lower price; every watcher expects exactly one `price.drop`.
    func priceDrop(_ shop: ShopClient, connected: [HPBrowser], offline: [HPBrowser]) {
        let newPrice = watchPrice * 8 / 10
        let t = Clock.unixMicros()
        for b in connected { ledger.expect(b.user, "price.drop", watchProduct, at: t) }
        for b in offline { ledger.expect(b.user, "price.drop", watchProduct, at: t) }
        stats.withLock { patchAt = t }
        do {
            let r = try call(shop, "PATCH", "", nil) { try shop.call("PATCH", "/api/v1/products/\(watchProduct)", #"{"price":\#(newPrice)}"#) }
            countHTTP()
            if r.status != 200 { httpErrors.add("PATCH price: HTTP \(r.status) \(r.text)") }
        } catch {
            httpErrors.add("PATCH price: \(error)")
        }
        let ms = Double(Clock.unixMicros() - t) / 1000
        stats.withLock {
            drop.patchMs = ms
            drop.oldPrice = watchPrice
            drop.newPrice = newPrice
        }
    }

    // MARK: Pushes (fleet lock held, loop thread: no blocking)

    private func pushed(_ b: HPBrowser, _ type: String, _ json: JSON, _ now: Int64, _ recovered: Bool) {
        if recovered { stats.withLock { recoveredPushes += 1 } }
        let data = json["data"]
        switch type {
        case "group.message":
            let words = data?["text"]?.stringValue?.split(separator: " ") ?? []
            if !recovered, words.count >= 2, words[0] == "hp", let t = Int64(words[1]) {
                ledger.latency("group.message", micros: now - t)
                stats.withLock { groupLatency.record(micros: now - t) }
            } else {
                ledger.counted()
            }
            return
        case "order.status":
            let subject = "\(data?["order"]?.stringValue ?? "?") \(data?["status"]?.stringValue ?? "?")"
            ledger.received(b.user, type, subject, at: now, recovered: recovered)
        case "price.drop":
            ledger.received(b.user, type, data?["product"]?.stringValue ?? "?", at: now, recovered: recovered)
            if !recovered { stats.withLock { lastLiveAlert = max(lastLiveAlert ?? 0, now) } }
        case "product.restock":
            ledger.received(b.user, type, data?["product"]?.stringValue ?? "?", at: now, recovered: recovered)
            rush?.pushed(b, data, now: now, recovered: recovered)
        default:
            ledger.received(b.user, type, data?["order"]?.stringValue ?? "?", at: now, recovered: recovered)
        }
        switch type {
        case "gift.received":
            guard let id = data?["order"]?.stringValue, let code = data?["code"]?.stringValue else { return }
            let g: HPOrder? = stats.withLock {
                let g = giftsByOrder[id]
                giftCount.received += 1
                return g
            }
            claim(b, code: code, order: id, gift: g)
        case "friendpay.requested":
            guard let id = data?["order"]?.stringValue else { return }
            let f = stats.withLock { fpByOrder[id] }
            if let f {
                jobs.add { [self] shop in payFriendPay(shop, f, id) }
            } else {
                // The push beat the HTTP answer: wait for the order to be known.
                jobs.add { [self] shop in
                    let deadline = Clock.now() + 5
                    var found: HPOrder?
                    while found == nil && Clock.now() < deadline {
                        found = stats.withLock { fpByOrder[id] }
                        if found == nil { usleep(5_000) }
                    }
                    if let found { payFriendPay(shop, found, id) } else { errors.add("friendpay.requested for an unknown order") }
                }
            }
        case "payment.refund_required":
            stats.withLock { fpCount.refundsReceived += 1 }
        default:
            break
        }
    }

    /// Lock held (loop thread): send `gift.claim` once per gift.
    private func claim(_ b: HPBrowser, code: String, order id: String, gift: HPOrder?) {
        let already: Bool = stats.withLock {
            if let gift {
                if gift.claimed { return true }
                gift.claimed = true
            }
            return false
        }
        guard !already else { return }
        let buyer = gift?.buyer.user
        let t = Clock.unixMicros()
        if let buyer {
            ledger.expect(buyer, "gift.claimed", id, at: t)
            ledger.expect(buyer, "order.status", "\(id) delivered", at: t)
        }
        ledger.expect(b.user, "order.status", "\(id) delivered", at: t)
        if chaos != nil { stats.withLock { pendingClaims[id] = (b, code, gift, false, b.generation) } }
        sendClaim(b, code: code, order: id, gift: gift)
    }

    /// Lock held: one `gift.claim` (again after a reconnect under chaos).
    private func sendClaim(_ b: HPBrowser, code: String, order id: String, gift: HPOrder?) {
        let sent = fleet.send(b, "gift.claim", #""code":"\#(code)""#) { [self] reply in
            let entry = stats.withLock { pendingClaims.removeValue(forKey: id) }
            let retried = entry?.retried ?? false
            if chaos != nil, let entry, reply["error"]?["temporary"]?.boolValue == true {
                // A temporary error (Redis away): a client claims again shortly; it stays pending until answered.
                errors.add("gift.claim: \(reply["error"]?["code"]?.stringValue ?? "?") (temporary, retried)")
                stats.withLock { pendingClaims[id] = (entry.browser, entry.code, entry.gift, true, b.generation) }
                DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) { [self] in
                    fleet.lock.withLock {
                        guard stats.withLock({ pendingClaims[id] != nil }) else { return }
                        sendClaim(b, code: code, order: id, gift: gift)
                    }
                }
                return
            }
            if retried, reply["error"]?["code"]?.stringValue == "gone" {
                // The first claim went through and its reply was lost: the read-back checks its keys.
                stats.withLock { giftCount.claimsConfirmedByRetry += 1 }
                return
            }
            guard let ok = reply["ok"] else {
                errors.add("gift.claim: " + (reply["error"]?["code"]?.stringValue ?? "?"))
                stats.withLock { giftCount.claimErrors += 1 }
                return
            }
            let keys = (ok["keys"]?.arrayValue ?? []).compactMap(\.stringValue)
            stats.withLock {
                giftCount.claimed += 1
                if keys.count == 1 { giftCount.claimsWithOneKey += 1 }
                for k in keys {
                    if seenKeys[k] != nil { giftCount.keysSeenTwice += 1 } else { seenKeys[k] = id }
                }
                gift?.keys = keys
            }
        }
        if !sent && chaos == nil {
            errors.add("gift.claim: recipient not connected")
            stats.withLock { giftCount.claimErrors += 1 }
        }
    }

    // MARK: HTTP

    private func countHTTP() { stats.withLock { httpCalls += 1 } }

    func takeHTTP() -> Int {
        stats.withLock {
            defer { httpCalls = 0 }
            return httpCalls
        }
    }

    /// Chaos: an `idempotency_key` field, so a retried order creation finds the first one.
    private func idem(_ key: String) -> String {
        chaos == nil ? "" : #","idempotency_key":"hp-\#(tag)-\#(key)""#
    }

    /// One call; under chaos retried (as a shop backend or payment provider would) while the
    /// node is unreachable or answers 5xx, up to 30 s.
    private func call(_ shop: ShopClient, _ method: String, _ path: String, _ body: String?,
                      send: () throws -> (status: Int, json: JSON?, text: String)) throws -> (status: Int, json: JSON?, text: String) {
        guard let chaos else { return try send() }
        let deadline = Clock.now() + 30
        while true {
            do {
                let r = try send()
                if r.status < 500 || Clock.now() > deadline { return r }
                chaos.retried("HTTP \(r.status)")
            } catch {
                if Clock.now() > deadline { throw error }
                chaos.retried("HTTP \(String("\(error)".prefix(60)))")
            }
            usleep(200_000)
        }
    }

    /// `orRepeat`: a 200 counts too: a retried order creation (its first answer lost to a
    /// fault) answered with the order its `idempotency_key` made.
    func http(_ shop: ShopClient, _ method: String, _ path: String, _ body: String?, want: Int,
                      orRepeat: Bool = false, what: String) throws -> JSON? {
        let r = try call(shop, method, path, body) { try shop.call(method, path, body) }
        countHTTP()
        guard r.status == want || (orRepeat && r.status == 200) else {
            httpErrors.add("\(what): HTTP \(r.status) \(r.text.prefix(100))")
            return nil
        }
        return r.json
    }

    struct PaymentRef {
        var id: String
        var order: String
        var amount: Int64
        var currency: String
    }

    func createPayment(_ shop: ShopClient, order: String, payer: String) throws -> PaymentRef? {
        guard let r = try http(shop, "POST", "/api/v1/orders/\(order)/payments", #"{"payer":"\#(payer)"}"#, want: 201, what: "payment"),
              let p = r["payment"], let id = p["id"]?.stringValue, let amount = p["amount"]?.intValue,
              let currency = p["currency"]?.stringValue else { return nil }
        return PaymentRef(id: id, order: order, amount: amount, currency: currency)
    }

    func notify(_ shop: ShopClient, _ p: PaymentRef) throws -> Bool {
        let body = #"{"payment":"\#(p.id)","order":"\#(p.order)","amount":\#(p.amount),"currency":"\#(p.currency)","status":"success","trade_no":"hp-\#(p.id)"}"#
        let r = try call(shop, "POST", "notify", body) { try shop.notify(body, secret: paySecret) }
        countHTTP()
        guard r.status == 200 else {
            httpErrors.add("notify: HTTP \(r.status) \(r.text.prefix(100))")
            return false
        }
        return true
    }

    /// The flash sale beside the peak (issue 17): 10% of its winners never pay, so its
    /// buyers' processes also see the expiry and the resale while the peak goes on.
    func startFlashSale(_ c: Cluster, logDir: String, _ p: Progress) -> FlashSaleBeside {
        let plan = FlashSalePlan(buyers: cmd.saleBuyers, units: cmd.saleUnits, perUser: 1, unpaid: 0.1, payS: cmd.salePayS, lead: 5,
                                 price: price / 2, connectRate: 2000, inFlight: 500, httpWorkers: 4, wait: 60,
                                 workers: (cmd.saleBuyers + 4999) / 5000, noSourceAddresses: true)
        let beside = FlashSaleBeside()
        let run = FlashSaleRun(plan: plan, cluster: c, paySecret: paySecret, logDir: logDir, progress: p)
        let thread = Thread {
            var outcome: (FlashSaleResults?, [String])
            do { outcome = try run.run(lines: false) } catch { outcome = (nil, ["FAILED the sale did not run: \(error)"]) }
            beside.lock.withLock {
                (beside.results, beside.checks, beside.finished) = (outcome.0, outcome.1, true)
            }
        }
        thread.name = "flash-sale"
        thread.start()
        return beside
    }

    /// Payment then signed notify; `before` registers the pushes just before the notify goes out.
    private func payAndNotify(_ shop: ShopClient, order: String, payer: String, before: (Int64) -> Void) throws -> Bool {
        guard let p = try createPayment(shop, order: order, payer: payer) else { return false }
        before(Clock.unixMicros())
        return try notify(shop, p)
    }

    // MARK: Checks

    func groupsComplete(_ byGroup: [[HPBrowser]]) -> Bool {
        fleet.lock.withLock {
            stats.withLock {
                for (k, list) in byGroup.enumerated() {
                    let channel = "group:\(groupProduct(k))"
                    let final = groupFinal[channel] ?? 0
                    for b in list where (b.groups[channel]?.last ?? final) < final { return false }
                }
                return true
            }
        }
    }

    /// Every gift delivered to its recipient and every friend-pay to its requester, paid
    /// by the first friend, each with one key, no key in two orders.
    private func verify(_ c: Cluster, _ gifts: [HPOrder], _ fps: [HPOrder], _ p: Progress) {
        let shop = ShopClient(c.endpoints[0], shopKey: c.shopKey, timeout: 30)
        defer { shop.disconnect() }
        var keysSeen: [String: String] = [:]
        var twice = 0
        for g in gifts {
            guard let id = stats.withLock({ g.id }) else { continue }
            guard let r = try? shop.call("GET", "/api/v1/orders/\(id)", idempotent: true), r.status == 200, let o = r.json else {
                stats.withLock { giftCount.problems.append("gift \(id): read back failed") }
                continue
            }
            let keys = (o["keys"]?.arrayValue ?? []).compactMap(\.stringValue)
            for k in keys { if keysSeen[k] != nil { twice += 1 } else { keysSeen[k] = id } }
            stats.withLock {
                keysReadBack[giftProduct, default: 0] += keys.count
                // A paid gift nobody claimed holds its key unrevealed (not shown, not in stock).
                if keys.isEmpty && o["status"]?.stringValue == "paid" { keysHeldUnrevealed[giftProduct, default: 0] += 1 }
            }
            let claimedKeys = stats.withLock { g.keys }
            if o["status"]?.stringValue == "delivered", o["owner"]?.stringValue == g.friend.user, keys.count == 1,
               claimedKeys.isEmpty || claimedKeys == keys {
                stats.withLock { giftCount.readBackDelivered += 1 }
            } else {
                stats.withLock {
                    if giftCount.problems.count < 10 {
                        giftCount.problems.append("gift \(id): status \(o["status"]?.stringValue ?? "?"), owner \(o["owner"]?.stringValue ?? "?"), \(keys.count) keys")
                    }
                }
            }
        }
        for f in fps {
            guard let id = stats.withLock({ f.id }) else { continue }
            guard let r = try? shop.call("GET", "/api/v1/orders/\(id)", idempotent: true), r.status == 200, let o = r.json else {
                stats.withLock { fpCount.problems.append("friend-pay \(id): read back failed") }
                continue
            }
            let keys = (o["keys"]?.arrayValue ?? []).compactMap(\.stringValue)
            for k in keys { if keysSeen[k] != nil { twice += 1 } else { keysSeen[k] = id } }
            stats.withLock { keysReadBack[fpProduct, default: 0] += keys.count }
            if o["status"]?.stringValue == "delivered", o["owner"]?.stringValue == f.buyer.user,
               o["paid_by"]?.stringValue == f.friend.user, keys.count == 1 {
                stats.withLock { fpCount.readBackOK += 1 }
            } else {
                stats.withLock {
                    if fpCount.problems.count < 10 {
                        fpCount.problems.append("friend-pay \(id): status \(o["status"]?.stringValue ?? "?"), paid by \(o["paid_by"]?.stringValue ?? "-"), \(keys.count) keys")
                    }
                }
            }
        }
        stats.withLock { giftCount.keysSeenTwice += twice }
        p.note("read back \(gifts.count) gifts and \(fps.count) friend-pay orders")
    }

    // MARK: Progress, verdict, summary

    /// The once-a-second line of the peak and the drain (and its timeline point).
    func peakLine(_ run: HolidayPeak.Run, _ phase: String) {
        let p = run.progress, n = run.n
        let s = fleet.snapshot
        let point = run.clock.tick(&run.report, phase, s.online, ledger, httpCalls: takeHTTP(), errors: errors.total + httpErrors.total)
        let (gc, fc, g) = stats.withLock { (giftCount, fpCount, grp) }
        p.line(phase, "online \(Fmt.int(s.online))/\(Fmt.int(n + run.restockExtra.count)) | gifts \(gc.paid)/\(cmd.gifts) claimed \(gc.claimed) | friend-pay \(fc.paid)/\(cmd.friendpays) refunds \(fc.refundsReceived)/\(fc.refundsExpected) | chat \(g.messagesAccepted) | "
            + "pushes +\(Fmt.int(point.pushesPerSecond))/s p99 \(Fmt.num(point.p99Ms, 1)) ms (run \(Fmt.num(ledger.p99SoFar, 1))) | waiting \(ledger.outstanding) | gaps \(s.personalGaps) dup \(s.personalDuplicates) err \(point.errors) | " + run.cpu.line())
    }

    private func judge(_ r: HolidayPeakReport) -> [String] {
        var out: [String] = []
        let cpu = r.cpuDuringPeak
        if let other = cpu.first(where: { $0.name == "other processes" }), other.percentOfOneCore > 20 {
            out.append("machine: processes outside this run used \(Fmt.num(other.percentOfOneCore, 0))% of a core during the peak (someone else's build or tests?): latencies are skewed")
        }
        let total = cpu.reduce(0) { $0 + $1.percentOfOneCore }
        if total > Double(Machine.cores) * 100 * 0.85 {
            out.append("machine: the \(Machine.cores) cores were (nearly) all busy during the peak (\(Fmt.num(total, 0))% of one core over nodes, Redis and load generator)")
        }
        for span in cpu where span.percentOfOneCore > 90 && span.name != "other processes" {
            let who = span.name.hasPrefix("loadtest") ? "load generator" : "gateway"
            out.append("\(who): \(span.name) used \(Fmt.num(span.percentOfOneCore, 0))% of a core during the peak (a single loop thread: saturated)")
        }
        let waits = r.schedDuringPeak.filter { !$0.name.hasPrefix("loadtest") }
        if let w = waits.max(by: { $0.worstThreadWaitPercent < $1.worstThreadWaitPercent }), w.worstThreadWaitPercent > 5 {
            out.append("machine: \(w.name)'s busiest thread waited for a core \(Fmt.num(w.worstThreadWaitPercent, 1))% of the peak (\(Fmt.num(w.worstThreadWaitPerSliceMs, 2)) ms a wake-up) while it ran \(Fmt.num(w.runPercent, 0))%: latency here is the machine's run queue, not the gateway's work")
        }
        if r.browsers.failed > 0 {
            out.append("gateway: \(r.browsers.failed) browsers failed to connect: " + r.browsers.failures.sorted { $0.value > $1.value }.prefix(3).map { "\($0.value) x \($0.key)" }.joined(separator: "; "))
        }
        return out
    }

    /// Lines against the targets (p99 under the objective per kind, nothing lost), and the verdict.
    private func verdict(_ r: HolidayPeakReport) -> ([String], String) {
        var checks: [String] = []
        var failed: [String] = []
        func check(_ ok: Bool, _ text: String) {
            checks.append((ok ? "ok      " : "MISSED  ") + text)
            if !ok { failed.append(text) }
        }
        let t = r.totals
        check(t.lost == 0, "no loss: \(Fmt.int(t.lost)) of \(Fmt.int(t.expected)) expected pushes and group deliveries lost")
        check(t.duplicates == 0, "no duplicate: \(t.duplicates)")
        check(t.outOfOrder == 0, "in order: \(t.outOfOrder) offsets skipped or out of order")
        check(t.errors == 0, "no errors: \(t.errors)")
        check(r.storm.notRecovered == 0, "reconnects recovered with since: \(r.storm.reconnected) reconnects, \(r.storm.notRecovered) not recovered")
        check(r.gifts.keysSeenTwice == 0 && r.gifts.claimsWithOneKey == r.gifts.claimed && r.gifts.readBackDelivered == r.gifts.paid,
              "gifts: \(r.gifts.claimed) claimed, \(r.gifts.claimsWithOneKey) with exactly one key, \(r.gifts.readBackDelivered)/\(r.gifts.paid) delivered to the recipient, keys seen twice \(r.gifts.keysSeenTwice)")
        check(r.friendPay.readBackOK == r.friendPay.paid && r.friendPay.refundsReceived == r.friendPay.refundsExpected,
              "friend-pay: \(r.friendPay.readBackOK)/\(r.friendPay.paid) paid once by the first friend, \(r.friendPay.refundsReceived)/\(r.friendPay.refundsExpected) second payers refunded")
        check(r.priceDrop.missing == 0 && r.priceDrop.duplicates == 0,
              "price drop: \(r.priceDrop.liveAlerts) live + \(r.pushes["price.drop"]?.recovered ?? 0) recovered alerts of \(r.priceDrop.connectedWatchers + r.priceDrop.offlineWatchers) watchers, missing \(r.priceDrop.missing), duplicates \(r.priceDrop.duplicates)")
        if let rs = r.restock { restockChecks(rs, r.pushes, check) }
        for line in r.flashSaleChecks ?? [] { check(line.hasPrefix("ok"), "flash sale: " + line.drop { $0 != " " }.trimmingCharacters(in: .whitespaces)) }
        for (kind, k) in r.pushes.sorted(by: { $0.key < $1.key }) {
            guard let l = k.latency, l.count > 0 else { continue }
            check(l.p99Ms < r.parameters.p99ObjectiveMs, "p99 \(kind) \(MD.ms(l.p99Ms)) ms (target under \(Fmt.num(r.parameters.p99ObjectiveMs, 0)) ms)")
        }
        if let all = t.latency, all.count > 0 {
            check(all.p99Ms < r.parameters.p99ObjectiveMs, "p99 all pushes \(MD.ms(all.p99Ms)) ms (target under \(Fmt.num(r.parameters.p99ObjectiveMs, 0)) ms)")
        }
        let verdict = failed.isEmpty
            ? "all targets met: \(Fmt.int(t.received)) pushes checked, none lost or duplicated, p99 \(MD.ms(t.latency?.p99Ms ?? 0)) ms over all kinds"
            : "targets missed: " + failed.joined(separator: "; ")
        return (checks, verdict)
    }

    /// The restock rush against issue 14: exactly `keys` holds, to the first of the line in watch
    /// order; holders who paid within the hold delivered; no held key to anyone else; no key
    /// twice; every watcher told once; every unused hold back in stock.
    private func restockChecks(_ rs: HolidayPeakResults.Restock, _ pushes: [String: PushLedger.KindCounts], _ check: (Bool, String) -> Void) {
        check(rs.inLine > 0 && rs.watchesIgnored == 0,
              "restock line: \(Fmt.int(rs.inLine)) of \(Fmt.int(rs.watchers)) watchers in line, one watch at a time in \(Fmt.num(rs.watchSeconds, 1)) s (\(rs.watchesIgnored) answered without restock:true, \(rs.watchErrors) failed)")
        check(rs.expectedHolds > 0 && rs.holdsAnswered == rs.expectedHolds && rs.holdPushes == rs.expectedHolds,
              "restock holds given = \(Fmt.int(rs.expectedHolds)) (min of \(Fmt.int(rs.keys)) keys and the line): upload answered holds \(rs.holdsAnswered.map(String.init) ?? "-") (HTTP \(rs.uploadStatus.map(String.init) ?? "-")), \(rs.holdPushes) watchers told with a hold")
        check(rs.expectedHolds > 0 && rs.holdersOutOfOrder == 0 && rs.holdersMissing == 0 && rs.untilValues == 1,
              "restock holders in watch order: the first \(Fmt.int(rs.expectedHolds)) of the line, \(rs.holdersOutOfOrder) holds to later watchers, \(rs.holdersMissing) of the first without one, \(rs.untilValues) distinct until")
        check(rs.holderDeliveredInTime == rs.holderPaidInTime && (rs.holderPaidInTime > 0 || rs.holderOrders == 0),
              "restock holders who paid within the hold delivered: \(rs.holderDeliveredInTime)/\(rs.holderPaidInTime) with one key (\(rs.holderPaidLate) paid around or after until, not judged)")
        let outsideHolds = rs.stockAnswered ?? 0
        check(rs.sniperDeliveredBeforeUntil <= outsideHolds,
              "restock: no held key to a non-holder before until: \(rs.sniperDeliveredBeforeUntil) of \(rs.sniperPaidBeforeUntil) non-holder orders paid before until got a key (stock outside the holds \(outsideHolds))")
        check(rs.keysTwice == 0 && rs.keysForeign == 0,
              "restock: no key twice: \(rs.keysGiven) keys in \(rs.holderOrders + rs.sniperOrders) orders, \(rs.keysTwice) twice, \(rs.keysForeign) not from the upload")
        let told = [RestockRush.holdersKind, RestockRush.restKind].compactMap { pushes[$0] }
        let lost = told.reduce(0) { $0 + $1.lost }, dup = told.reduce(0) { $0 + $1.duplicates }
        let unexpected = pushes["product.restock"]?.unexpected ?? 0
        check(lost == 0 && dup == 0 && unexpected == 0 && !told.isEmpty,
              "product.restock lost \(lost), duplicated \(dup) of \(Fmt.int(told.reduce(0) { $0 + $1.expected })) (to watchers not in line: \(unexpected))")
        check(rs.heldAfter == 0 && rs.stockAfter != nil && rs.stockAfter == rs.expectedStockAfter,
              "restock: unused holds back in stock after until: held \(rs.heldAfter.map(String.init) ?? "-"), stock \(rs.stockAfter.map(String.init) ?? "-") (expected \(rs.expectedStockAfter.map(String.init) ?? "-") = keys - keys sold)")
    }

    private func summary(_ r: HolidayPeakReport) {
        let b = r.browsers
        var lines = ["", "== holiday-peak: \(Fmt.int(r.parameters.browsers)) browsers, \(r.parameters.durationSeconds) s peak, \(r.parameters.nodes) node(s)"]
        lines.append("browsers    \(Fmt.int(b.connected)) connected in \(Fmt.num(b.rampSeconds, 1)) s, \(b.failed) failed, \(b.drops) dropped, online at end \(Fmt.int(b.onlineAtEnd)); connect \(b.connectLatency?.line ?? "-")")
        lines.append("kind                     expected  received  lost  dup  unexp  recov   p50     p95     p99     max ms")
        for (kind, k) in r.pushes.sorted(by: { $0.key < $1.key }) {
            let l = k.latency
            lines.append(kind.padding(toLength: 22, withPad: " ", startingAt: 0)
                + String(format: " %9d %9d %5d %4d %6d %6d", k.expected, k.received, k.lost, k.duplicates, k.unexpected, k.recovered)
                + (l.map { String(format: " %7.2f %7.2f %7.2f %7.1f", $0.p50Ms, $0.p95Ms, $0.p99Ms, $0.maxMs) } ?? ""))
        }
        let g = r.groups
        lines.append("gifts       ordered \(r.gifts.ordered), paid \(r.gifts.paid), received \(r.gifts.received), claimed \(r.gifts.claimed) (one key each: \(r.gifts.claimsWithOneKey)), read back delivered \(r.gifts.readBackDelivered), keys seen twice \(r.gifts.keysSeenTwice)")
        lines.append("friend-pay  requested \(r.friendPay.requested), paid \(r.friendPay.paid), second payers \(r.friendPay.secondPayments), refunds \(r.friendPay.refundsReceived)/\(r.friendPay.refundsExpected), read back ok \(r.friendPay.readBackOK)")
        lines.append("groups      \(g.subscribed)/\(g.members) members in \(g.groups) groups; messages sent \(g.messagesSent), accepted \(g.messagesAccepted), rate limited \(g.rateLimited), sender offline \(g.skippedSenderOffline)")
        let d = r.priceDrop
        lines.append("price drop  \(d.connectedWatchers) connected + \(d.offlineWatchers) offline watchers; PATCH \(Fmt.num(d.patchMs, 1)) ms; live alerts \(d.liveAlerts), last \(d.lastLiveAlertMs.map { Fmt.num($0, 1) + " ms" } ?? "-") after the PATCH; offline checked \(d.offlineChecked); missing \(d.missing), duplicates \(d.duplicates)")
        if let rs = r.restock { lines.append("restock     " + rs.line) }
        if let fs = r.flashSale { lines.append("flash sale  " + FlashSaleRun.headline(fs, units: r.parameters.saleUnits) + "; \(fs.resale.resold) unpaid units resold, \(fs.resale.paid) paid") }
        let s = r.storm
        lines.append("storm       \(s.victims) dropped for \(Fmt.num(s.downSeconds, 1)) s, reconnected \(s.reconnected) (all back in \(s.backInSeconds.map { Fmt.num($0, 2) + " s" } ?? "-")), not recovered \(s.notRecovered), pushes recovered \(s.recoveredPushes)")
        if let l = r.totals.latency { lines.append("all pushes  \(l.line)") }
        for (m, l) in r.latencyByMoment.sorted(by: { $0.key < $1.key }) {
            lines.append("moment      \(m.dropFirst(2)): \(l.line)")
            if let f = r.fanoutByMoment[m] { lines.append("  fan-out   (stored -> received) \(f.line)") }
        }
        lines.append("cpu         " + r.cpuDuringPeak.map { "\($0.name) \(Fmt.num($0.percentOfOneCore, 0))%" }.joined(separator: ", ") + " (peak)")
        lines.append("cpu wait    " + r.schedDuringPeak.map { "\($0.name) \(Fmt.num($0.waitPercent, 1))% (worst thread \(Fmt.num($0.worstThreadWaitPercent, 1))%, \(Fmt.num($0.worstThreadWaitPerSliceMs, 2)) ms a wake-up)" }.joined(separator: ", ") + " of the peak runnable but not running")
        for (k, v) in r.errors.sorted(by: { $0.value > $1.value }).prefix(5) { lines.append("error       \(v) x \(k)") }
        for (k, v) in r.httpErrors.sorted(by: { $0.value > $1.value }).prefix(5) { lines.append("http error  \(v) x \(k)") }
        for m in r.missingSamples.prefix(5) { lines.append("missing     \(m)") }
        for l in r.limits { lines.append("limit       \(l)") }
        for c in r.checks { lines.append("check       \(c)") }
        lines.append("verdict     \(r.verdict)")
        print(lines.joined(separator: "\n"))
    }
}

/// A thread-safe count.
final class Counter: Sendable {
    private let n = Mutex(0)
    func add() { n.withLock { $0 += 1 } }
    var value: Int { n.withLock { $0 } }
}

/// Per-second buckets of the run for the report and its chart.
struct Timeline {
    let progress: Progress
    init(progress: Progress) { self.progress = progress }

    @discardableResult
    mutating func tick(_ report: inout HolidayPeakReport, _ phase: String, _ online: Int, _ ledger: PushLedger, httpCalls: Int, errors: Int) -> HolidayPeakResults.Point {
        let (all, _, receipts) = ledger.takeInterval()
        let s = all.summary
        let point = HolidayPeakResults.Point(t: progress.elapsed, phase: phase, online: online, pushesPerSecond: receipts,
                                            p50Ms: s.p50Ms, p99Ms: s.p99Ms, maxMs: s.maxMs, httpPerSecond: httpCalls, errors: errors)
        report.timeline.append(point)
        return point
    }
}
