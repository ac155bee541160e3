import GatewayIO
import GatewayProtocol
import OrderCore

/// Also-bought and dormant buyers on the node (contract 4.6). The counting is
/// `BuyerTrailStore`'s, in Redis, kept beside the decisions and the connections.
extension Node {
    // MARK: Also-bought

    /// After a decision that changed who is a member of a product's group (a delivery, a
    /// claim, a refund): the counts move on a change of ownership only. A delivery makes an
    /// owner; after a refund whether the user still owns the product is read back (a refund
    /// of two orders leaves them one). A first delivery of a product also arms the owner's
    /// dormancy timer if none is set (a buyer who never connects); a repeat one starts no new
    /// spell (a spell counts from a product's first delivery). A refund that leaves the user no
    /// order of the product also ends their group subscriptions (`revokeLostGroup`).
    /// `freeing`: the risk places the decision frees; an owner's own ride with the delivery's
    /// ownership update (the same slot: one call). Returns the places left to free.
    func keepBuyerTrail(of decision: Decision, freeing: [(order: String, buyer: String)]) -> [(order: String, buyer: String)] {
        let trail = buyerTrail
        var left = freeing
        for case .membership(let product, let user, let delta) in decision.effects {
            if delta > 0 {
                let riding = left.filter { $0.buyer == user }.map(\.order)
                left.removeAll { $0.buyer == user }
                trail.noteOwner(product: product, user: user, owns: true, nowMs: now, releasing: riding,
                                arm: DormancyArm(member: TimerMember.dormant(user: user).member, dueMs: now + options.dormantMs))
                continue
            }
            // One read serves the owners' record and the group's revocation.
            communityStore.isBuyer(product: product, user: user) { [weak self] result in
                guard let self, case .success(let owns) = result else { return }
                trail.noteOwner(product: product, user: user, owns: owns, nowMs: self.now, releasing: [], arm: nil)
                if !owns { self.revokeLostGroup(product, of: user) }
            }
        }
        return left
    }

    /// `GET /api/v1/products/{id}/also-bought?limit=N`: a merchant only for its own product.
    func alsoBought(_ request: HTTPRequest, _ caller: APICaller, _ id: String) {
        guard Names.isValidID(id) else { return fail(request, .badRequest("not a valid product id")) }
        let limit: Int
        switch AlsoBoughtQuery.limit(request.query) {
        case .failure(let e): return fail(request, e)
        case .success(let n): limit = n
        }
        let merchant: String? = if case .merchant(let m) = caller { m } else { nil }
        alsoBought(product: id, limit: limit, merchant: merchant) { [weak self] result in
            switch result {
            case .failure(let e): self?.fail(request, e)
            case .success(let json): self?.respond(request, 200, json)
            }
        }
    }

    /// `{"product":P,"also_bought":[{product, title, price, currency, buyers}]}`, most buyers
    /// first; `merchant` non-nil: another merchant's product is `forbidden`.
    func alsoBought(product: String, limit: Int, merchant: String?, _ done: @escaping (Result<JSON, GatewayError>) -> Void) {
        communityStore.product(product) { [weak self] found in
            guard let self else { return }
            switch found {
            case .failure(let e): return done(.failure(e))
            case .success(nil): return done(.failure(.notFound("no product \(product)")))
            case .success(let view?):
                if let merchant, view.product.merchant != merchant {
                    return done(.failure(.forbidden("product \(product) belongs to another merchant")))
                }
            }
            self.buyerTrail.alsoBought(product: product, limit: limit) { rows in
                done(rows.map { rows in
                    .object([("product", .string(product)), ("also_bought", .array(rows.map { row in
                        .object([("product", .string(row.product.id)), ("title", .string(row.product.title)),
                                 ("price", .int(row.product.price)), ("currency", .string(row.product.currency)),
                                 ("buyers", .int(row.buyers))])
                    }))])
                })
            }
        }
    }

    // MARK: Dormant buyers

    /// A connection of `user` was accepted (`opened`) or closed: `last_seen` moves, and the
    /// user's dormancy timer is armed when none is known. One script call, answered by nobody.
    func noteSeen(_ user: String, opened: Bool) {
        let trail = buyerTrail
        let member = TimerMember.dormant(user: user).member
        trail.noteSeen(user: user, opened: opened, instance: presenceNode) { [weak self] in
            guard let self else { return }
            trail.armDormancy(member, dueMs: self.now + self.options.dormantMs, onlyIfAbsent: false)
        }
    }

    /// A due `dorm:<user>` timer: put back while the user is connected on a live node or
    /// was active within the spell; otherwise one `user.dormant` event for the spell.
    func expireDormant(_ user: String, _ timer: DueTimer, _ done: @escaping () -> Void) {
        let trail = buyerTrail
        let now = self.now
        trail.liveInstances(withinMs: AdminStats.liveWithinMs) { [weak self] listed in
            guard let self, case .success(let instances) = listed else { return done() }
            let live = Array(Set(instances + [self.presenceNode]))
            trail.checkDormant(user: user, nowMs: now, spellMs: self.options.dormantMs, liveInstances: live) { [weak self] checked in
                guard let self else { return done() }
                switch checked {
                case .failure: done()
                case .success(.later(let due)):
                    trail.armDormancy(timer.member, dueMs: due, onlyIfAbsent: false)
                    done()
                case .success(.dormant):
                    self.webhookSender?.tick()
                    trail.disarmDormancy(timer.member, dueMs: timer.due, done)
                case .success(.off):
                    trail.disarmDormancy(timer.member, dueMs: timer.due, done)
                }
            }
        }
    }
}
