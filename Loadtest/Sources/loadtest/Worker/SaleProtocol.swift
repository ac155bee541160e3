import Foundation

/// What the parent tells one flash-sale buyer child (`loadtest flash-sale --sale-worker`),
/// one JSON line on its stdin; the sale itself follows later as `sale <id> <starts_at ms>`
/// (it is created only once every buyer is connected), with its `per_user`.
struct SaleWorkerSpec: ChildSpec {
    var index: Int
    var urls: [String]
    var secret: String
    var tokenTTL: Int
    /// Buyer g (global index) is `<userPrefix><g>` and goes to `urls[g % urls.count]`.
    var userPrefix: String
    var first: Int
    var count: Int
    var rate: Double
    var maxInFlight: Int
    var sourceAddresses: [String]
    var connectTimeout: Int
    var rxBufferSize: Int
}

/// A `sale.buy` answered with an order.
struct SaleWin: Codable {
    /// Buyer (global index), order id, answer receipt (Unix µs).
    var g: Int
    var order: String
    var t: Int64
    /// Pressed on `sale.open` (false: on a `sale.stock` that said units came back).
    var firstWave: Bool
}

/// What a buyer child reports, every quarter second and at the end. Counters are
/// cumulative; `wins` and the latency histograms cover only the time since the last report.
struct SaleWorkerStatus: ChildStatus {
    var worker = 0
    var final = false
    var attempted = 0
    var connected = 0
    var failed = 0
    var dropped = 0
    /// Connecting or subscribing.
    var settling = 0
    var subscribed = 0
    var subscribeFailed = 0
    /// The last subscribe answer's receipt (Unix µs).
    var lastSubscribedMicros: Int64?
    /// Buyers that received `sale.open`; first and last receipt (Unix µs).
    var opened = 0
    var firstOpenMicros: Int64?
    var lastOpenMicros: Int64?
    /// `sale.buy` sent on `sale.open` / on `sale.stock`, and answers.
    var firstWaveBuys = 0
    var resaleBuys = 0
    var answered = 0
    var won = 0
    var firstWaveWon = 0
    /// Answers by error code (`conflict` is "sold out" or "only N left").
    var refusals: [String: Int] = [:]
    /// The last first-wave buy answered with an order (Unix µs).
    var lastFirstWaveWinMicros: Int64?
    /// The first `sale.sold_out` receipt.
    var firstSoldOutMicros: Int64?
    /// With per_user 1 every buyer presses twice in the same `sale.open` callback, before any
    /// answer: a buyer answered with two orders (`secondPressWon`) breaks it.
    var secondPresses = 0
    var secondPressWon = 0
    /// A `sale.open` seen again, and `sale.stock`/`sale.sold_out` before a buyer's `sale.open`.
    var openRepeats = 0
    var beforeOpen = 0
    /// Temporary refusals pressed again after their `retry_after_ms`.
    var retries = 0
    /// Second connections of a buyer on the other node (1 in 20): opened, subscribed, their
    /// presses on `sale.open` and the orders they got (each the buyer's only one, or a breach).
    var twins = 0
    var twinsSubscribed = 0
    var twinPresses = 0
    var twinWon = 0
    /// Pushes by type, `sale:` offsets skipped or seen again, frames not understood.
    var pushes: [String: Int] = [:]
    var gaps = 0
    var repeats = 0
    var unexpected = 0
    /// Subscribed buyers by the latest `remaining` they were pushed: 0, above 0, none yet.
    var remainingZero = 0
    var remainingAbove = 0
    var remainingUnknown = 0
    /// The lowest and highest `remaining` now held by a subscribed buyer.
    var remainingMin: Int64?
    var remainingMax: Int64?
    var failures: [String: Int] = [:]
    var drops: [String: Int] = [:]
    var wins: [SaleWin]?
    var firstWaveLatency: SparseHistogram?
    var resaleLatency: SparseHistogram?
    /// `sale.open` receipt minus `starts_at`.
    var openLatency: SparseHistogram?
    var fdLimit = 0
    var rssBytes = 0
    var reporting = 0

    /// Adds another child's counters (wins and histograms go through the pool).
    mutating func add(_ s: SaleWorkerStatus) {
        reporting += 1
        attempted += s.attempted
        connected += s.connected
        failed += s.failed
        dropped += s.dropped
        settling += s.settling
        subscribed += s.subscribed
        subscribeFailed += s.subscribeFailed
        lastSubscribedMicros = lastSubscribedMicros.latest(s.lastSubscribedMicros)
        opened += s.opened
        firstOpenMicros = firstOpenMicros.earliest(s.firstOpenMicros)
        lastOpenMicros = lastOpenMicros.latest(s.lastOpenMicros)
        firstWaveBuys += s.firstWaveBuys
        resaleBuys += s.resaleBuys
        answered += s.answered
        won += s.won
        firstWaveWon += s.firstWaveWon
        refusals.add(s.refusals)
        lastFirstWaveWinMicros = lastFirstWaveWinMicros.latest(s.lastFirstWaveWinMicros)
        firstSoldOutMicros = firstSoldOutMicros.earliest(s.firstSoldOutMicros)
        secondPresses += s.secondPresses
        secondPressWon += s.secondPressWon
        openRepeats += s.openRepeats
        beforeOpen += s.beforeOpen
        retries += s.retries
        twins += s.twins
        twinsSubscribed += s.twinsSubscribed
        twinPresses += s.twinPresses
        twinWon += s.twinWon
        pushes.add(s.pushes)
        gaps += s.gaps
        repeats += s.repeats
        unexpected += s.unexpected
        remainingZero += s.remainingZero
        remainingAbove += s.remainingAbove
        remainingUnknown += s.remainingUnknown
        remainingMin = [remainingMin, s.remainingMin].compactMap { $0 }.min()
        remainingMax = [remainingMax, s.remainingMax].compactMap { $0 }.max()
        failures.add(s.failures)
        drops.add(s.drops)
        rssBytes += s.rssBytes
    }
}

typealias SaleWorkerTotals = SaleWorkerStatus
