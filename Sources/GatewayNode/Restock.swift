import Foundation
import GatewayProtocol
import OrderCore

/// Restock holds on the node (contract 4.6): a key upload onto no stock holds keys for the
/// first watchers of the product's restock line (keys_add, one atomic step), then tells the
/// holders and, a page at a time, the rest of the line; the timer sweep ends unused holds.
extension Node {
    static let restockPage = 200
    static let restockPagesInFlight = 4
    /// Holds returned to stock per release call (a page; the timer comes back for more).
    static let holdsReleasePage = 1_000

    /// Adds sealed keys (`POST /api/v1/products/{id}/keys`, the dev page). Answered once
    /// durable; a restock's pushes go out after that, and also when the durability check
    /// fails: the holds are on the master and last until `until` either way, and a holder
    /// never told would only see a key held for nobody (the upload's answer is a 503 then).
    func uploadKeys(product: String, merchant: String?, _ sealed: [SealedCardKey], _ done: @escaping (Result<KeysAdded, GatewayError>) -> Void) {
        let terms = RestockTerms(nowMs: now, holdMs: Int64(options.restockHoldSeconds) * 1000)
        orderStore.store.addKeys(product: product, merchant: merchant, sealed, terms: terms) { result in
            guard case .success(.added(_, _, _, let restock)) = result else { return done(result) }
            self.orderStore.confirmDurable(product: product) { error in
                done(error.map { .failure($0) } ?? result)
                guard let restock else { return }
                self.orderStore.store.relayOutbox(product: product)
                self.announceRestock(restock)
            }
        }
    }

    /// The holders first (their pushes carry the hold), then the rest of the line.
    private func announceRestock(_ restock: RestockOutcome) {
        let walk = RestockWalk(restock)
        communityStore.restockNotify(product: restock.product, users: restock.holders, data: restock.pushData(hold: true),
                                     onlyInLine: false) { result in
            if case .failure(let error) = result {
                self.log("restock of \(restock.product): telling the holders failed: \(error.message)", level: .error, .product(restock.product))
            }
            walk.sent += (try? result.get()) ?? 0
            self.restockWalkStep(walk)
        }
    }

    /// One restock's walk over the rest of the line (best effort, like a price drop's was: a
    /// node stopping mid-walk leaves the rest untold). Small pages, so no restock_notify
    /// holds Redis long (1,000 held it ~100 ms), and several sent at once: the line is read
    /// page after page (its cursor is the last place read) while earlier pages are sent.
    final class RestockWalk {
        let restock: RestockOutcome
        let data: String
        let started = DispatchTime.now().uptimeNanoseconds
        var after: String?
        var sent = 0
        var reading = false
        var readAll = false
        var sending = 0
        var logged = false

        init(_ restock: RestockOutcome) {
            self.restock = restock
            data = restock.pushData(hold: false)
        }

        var elapsedMs: Double { Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6 }
    }

    private func restockWalkStep(_ walk: RestockWalk) {
        let product = walk.restock.product
        if walk.readAll {
            // Logged once the last page is sent; nothing when nobody waited (a first upload).
            guard walk.sending == 0, !walk.reading, walk.sent > 0, !walk.logged else { return }
            walk.logged = true
            return log("restock of \(product): \(walk.restock.holders.count) holds, \(walk.sent) told in \(String(format: "%.0f", walk.elapsedMs)) ms",
                       .product(product))
        }
        guard !walk.reading, walk.sending < Self.restockPagesInFlight else { return }
        walk.reading = true
        communityStore.restockLine(product: product, after: walk.after, count: Self.restockPage, nowMs: now) { result in
            walk.reading = false
            guard case .success(let page) = result else {
                if case .failure(let error) = result { self.log("restock of \(product): reading the line failed: \(error.message)", level: .error, .product(product)) }
                walk.readAll = true
                return self.restockWalkStep(walk)
            }
            walk.after = page.last
            walk.readAll = page.read < Self.restockPage
            walk.sending += 1
            self.communityStore.restockNotify(product: product, users: page.users, data: walk.data, onlyInLine: true) { sent in
                walk.sending -= 1
                walk.sent += (try? sent.get()) ?? 0
                self.restockWalkStep(walk)
            }
            self.restockWalkStep(walk)
        }
    }

    /// The sweeper's `hold:` timer: the product's due holds go back to stock; the timer is
    /// put back while more are due (a page) or moved to the next hold's end, else removed.
    /// A later upload has its own member, so removing this one loses no release.
    func releaseHolds(product: String, _ timer: DueTimer, _ done: @escaping () -> Void) {
        let now = self.now
        orderStore.store.releaseHolds(product: product, nowMs: now, limit: Self.holdsReleasePage) { result in
            switch result {
            case .failure: done()  // left due: the next sweep tries again
            case .success(let r):
                if r.released > 0 { self.log("restock holds of \(product): \(r.released) back to stock", .product(product)) }
                if r.more {
                    self.orderStore.store.scheduleTimer(timer.member, at: now)
                    done()
                } else if let next = r.nextDue {
                    self.orderStore.store.scheduleTimer(timer.member, at: next)
                    done()
                } else {
                    self.orderStore.store.removeTimer(timer.member, done)
                }
            }
        }
    }
}
