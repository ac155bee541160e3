import Foundation
import GatewayProtocol

/// One node's share of a price drop's alert job (Store/README.md, "Price-drop alerts"):
/// it claims small pages, several in flight on the node's Redis connection, alerts each
/// page's watchers and ends the page's claim. Every node that hears of the job walks it
/// too, so the pages spread over the live nodes. When no page is left it asks again while
/// other nodes still hold claims, and takes over a page whose lease lapsed (its node died
/// or stalled), until the job is done: one claim at a time then, each wait longer (up to
/// `waitMaxMs`), so a dead node's lease costs a few claims rather than ~80 a second. A page taken twice alerts nobody twice: each alert
/// is sent only if its watch is still as read (send_alerts.lua), the anti-spam rules' state.
final class AlertWalker {
    struct Pacing {
        /// Watchers per page: small, so no script holds Redis long (1,000 held it ~35 ms).
        var pageSize = 200
        /// Pages claimed or being sent at once by this node.
        var inFlight = 4
        /// How long a claim keeps a page from the other nodes.
        var leaseMs = 5_000
        /// First wait before asking again while others hold the last pages; it doubles
        /// with each wait in a row up to `waitMaxMs` (never past the first lease's end).
        var waitMs = 50
        var waitMaxMs = 800
        /// Wait after a failed claim (Redis away): the job outlives it (its ttl).
        var retryMs = 1_000
    }

    enum End: Equatable {
        case done(sent: Int, ms: Int)
        case gone
    }

    let product: String
    let job: String
    private let store: any CommunityStore
    private let pacing: Pacing
    private let now: () -> Int64
    private let schedule: (Int, @escaping () -> Void) -> Void
    private let finished: (End) -> Void
    private var inFlight = 0
    private var paused = false
    private var over = false
    /// After a wait: one claim at a time until a page comes back; the next wait's length.
    private var probing = false
    private var nextWaitMs = 0
    /// Pages this node claimed and alerts it sent (a node's share).
    private(set) var pages = 0
    private(set) var sent = 0

    /// Claims sent (tests: how hard the waits poll).
    private(set) var claims = 0

    init(product: String, job: String, store: any CommunityStore, pacing: Pacing = Pacing(), now: @escaping () -> Int64,
         schedule: @escaping (Int, @escaping () -> Void) -> Void, finished: @escaping (End) -> Void) {
        self.product = product
        self.job = job
        self.store = store
        self.pacing = pacing
        self.now = now
        self.schedule = schedule
        self.finished = finished
    }

    func start() { fill() }

    private func fill() {
        while !over && !paused && inFlight < (probing ? 1 : pacing.inFlight) { claim() }
    }

    private func pause(_ ms: Int) {
        guard !paused, !over else { return }
        paused = true
        schedule(ms) { [self] in
            paused = false
            fill()
        }
    }

    private func end(_ how: End) {
        guard !over else { return }
        over = true
        finished(how)
    }

    private func claim() {
        inFlight += 1
        claims += 1
        store.claimAlertPage(product: product, job: job, count: pacing.pageSize, leaseMs: pacing.leaseMs) { [self] result in
            switch result {
            case .failure:
                inFlight -= 1
                pause(pacing.retryMs)
            case .success(.wait(let ms)):
                inFlight -= 1
                guard !paused else { return }
                if !probing { (probing, nextWaitMs) = (true, pacing.waitMs) }
                pause(min(max(ms, 1), nextWaitMs))
                nextWaitMs = min(nextWaitMs * 2, pacing.waitMaxMs)
            case .success(.done(let sent, let ms)):
                inFlight -= 1
                end(.done(sent: sent, ms: ms))
            case .success(.gone):
                inFlight -= 1
                end(.gone)
            case .success(.page(let page)):
                guard let drop = PriceDrop(spec: page.spec) else {
                    inFlight -= 1
                    return end(.gone)
                }
                pages += 1
                probing = false
                send(page, drop.alerts(page.watches, now: now()))
            }
        }
        // A synchronous store answers inside the call: the loop in fill() goes on from here.
    }

    private func send(_ page: AlertPage, _ alerts: [PriceDropAlert]) {
        store.sendAlerts(product: product, alerts) { [self] result in
            inFlight -= 1
            // Not sent: the claim is left to lapse, and a node takes the page again.
            if case .success(let n) = result {
                sent += n
                if page.scanned > 0 { store.alertPageDone(product: product, job: job, page: page, sent: n) }
            }
            fill()
        }
    }
}
