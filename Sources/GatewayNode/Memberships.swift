import GatewayIO
import GatewayProtocol
import OrderCore

/// Validity memberships on the node (contract 4.6): the listing and the reminder timers.
/// Deliveries and refunds change them inside the order decisions (`OrderRules`).
extension Node {
    /// `GET /api/v1/users/{id}/memberships`: `{"memberships":[{product, title, starts_at,
    /// ends_at, active}]}`, soonest end first; a merchant key sees its own products' only.
    func listMemberships(_ request: HTTPRequest, user: String, caller: APICaller) {
        orderStore.store.memberships(of: user) { result in
            switch result {
            case .failure(let e): self.fail(request, e)
            case .success(let rows):
                let now = self.now
                let shown = rows.filter { caller.mayTouch(merchant: $0.1.merchant) }
                    .sorted { ($0.0.endsAt, $0.0.product) < ($1.0.endsAt, $1.0.product) }
                self.respond(request, 200, .object([("memberships", .array(shown.map { m, p in
                    .object([("product", .string(p.id)), ("title", .string(p.title)), ("starts_at", .int(m.startsAt)),
                             ("ends_at", .int(m.endsAt)), ("active", .bool(m.isLive(at: now)))])
                }))]))
            }
        }
    }

    /// A due `mem:<P>/<U>` timer: the latest due reminder (`OrderRules.remind`), conditional
    /// on the record, so two nodes sweeping send it once. One that decided nothing is removed
    /// when its membership is over, or (written ahead of a delivery that never applied) missing past the grace.
    func remindMembership(product: String, user: String, _ timer: DueTimer, _ done: @escaping () -> Void) {
        let now = self.now
        orderStore.run(.membership(product: product, user: user), durable: false, decide: { s in
            guard case .present(let m) = s.membership else { return .success(Decision()) }
            return .success(self.orderRules.remind(m, now: now))
        }) { result in
            guard case .success(let (decision, snapshot)) = result, decision.isEmpty else { return done() }
            let exists = if case .present = snapshot.membership { true } else { false }
            guard OrderStore.dropsTimer(timer, orderExists: exists, now: now) else { return done() }
            // Only if unmoved: a delivery restarting the membership meanwhile rescheduled it.
            self.orderStore.store.removeTimer(ifUnmoved: timer, done)
        }
    }
}
