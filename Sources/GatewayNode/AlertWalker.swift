import Foundation
import GatewayProtocol

/// One node's share of a price drop's alert job (Store/README.md, "Price-drop alerts"):
/// it claims small pages, several in flight on the node's Redis connection, alerts each
/// page's watchers and ends the page's claim. Every node that hears of the job walks it
/// too, so the pages spread over the live nodes. When no page is left it asks again while
/// other nodes still hold claims, and takes over a page whose lease lapsed (its node died
/// or stalled), until the job is done. A page taken twice alerts nobody twice: each alert
/// is sent only if its watch is still as read (send_alerts.lua), the anti-spam rules' state.
final class AlertWalker {
    struct Pacing {
        /// Watchers per page: small, so no script holds Redis long (1,000 held it ~35 ms).
        var pageSize = 200
        /// Pages claimed or being sent at once by this node.
        var inFlight = 4
        /// How long a claim keeps a page from the other nodes.
        var leaseMs = 5_000
        /// Longest wait before asking again while others hold the last pages.
        var waitMs = 50
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
    /// Pages this node claimed and alerts it sent (a node's share).
    private(set) var pages = 0
    private(set) var sent = 0

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
        while !over && !paused && inFlight < pacing.inFlight { claim() }
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
        store.claimAlertPage(product: product, job: job, count: pacing.pageSize, leaseMs: pacing.leaseMs) { [self] result in
            switch result {
            case .failure:
                inFlight -= 1
                pause(pacing.retryMs)
            case .success(.wait(let ms)):
                inFlight -= 1
                pause(min(max(ms, 1), pacing.waitMs))
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
