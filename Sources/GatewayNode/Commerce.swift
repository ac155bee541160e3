import Foundation
import GatewayCrypto
import GatewayIO
import GatewayProtocol
import OrderCore

/// The order core on the node: HTTP calls of the shop and payment provider, the order
/// commands of clients, and the timer sweep. Rules come from `OrderRules`; every change
/// goes through `OrderStore`.
extension Node {
    static let maxKeysPerUpload = 10_000

    package var now: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// `<prefix>-<T>-<random>`: carries the slot tag of `product`'s orders (`CommerceKeys`).
    func freshID(_ prefix: String, product: String) -> String {
        CommerceKeys.freshID(prefix, product: product, random: Crypto.randomToken(10))
    }

    // MARK: HTTP

    /// Routes under /api/v1 that belong to the order core.
    func commerceRequest(_ request: HTTPRequest, _ route: CommerceRoute, _ caller: APICaller) {
        switch route {
        case .addKeys(let product):
            withJSONBody(request) { self.addKeys(request, caller, product: product, $0) }
        case .createOrder:
            withJSONBody(request) { self.createOrder(request, caller, $0) }
        case .getOrder(let id):
            getOrder(request, caller, id)
        case .createPayment(let order):
            withJSONBody(request) { self.createPayment(request, caller, order: order, $0) }
        case .cancel(let order):
            shopAction(request, caller, order: order) { rules, snapshot, now in rules.cancel(snapshot.order!, now: now) }
        case .refund(let order):
            shopAction(request, caller, order: order) { rules, snapshot, now in
                rules.refund(snapshot.order!, payment: snapshot.payment, now: now, membership: snapshot.membership)
            }
        case .getPayment(let id):
            getPayment(request, caller, id)
        case .paymentRefunded(let id):
            withJSONBody(request) { self.paymentRefunded(request, caller, id, $0) }
        case .events:
            listEvents(request)
        case .getUser(let id):
            getUser(request, id)
        }
    }

    /// `GET /api/v1/users/{id}` (contract 4.6). `last_seen`: the user's last connect or
    /// disconnect on any node (null if never), read beside the points (pipelined: both in the user's slot).
    private func getUser(_ request: HTTPRequest, _ id: String) {
        guard Names.isValidID(id) else { return fail(request, .badRequest("not a valid user id")) }
        var seen: Result<Int64?, GatewayError>?
        var points: Result<MemberPoints, GatewayError>?
        let answer = {
            guard let seen, let points else { return }
            switch (points, seen) {
            case (.failure(let e), _), (_, .failure(let e)): self.fail(request, e)
            case (.success(let p), .success(let lastSeen)):
                self.respond(request, 200, self.options.memberLevels.userJSON(id: id, points: p.points, lastSeen: lastSeen, orders: p.orders))
            }
        }
        buyerTrail.lastSeen(user: id) { seen = $0; answer() }
        orderStore.store.memberPoints(id, countOrders: true) { points = $0; answer() }
    }

    /// The buyer's member level now, whose discount a new order takes (nil: no level). No
    /// Redis call without a ladder. Read before the order's own step: the points live in the
    /// buyer's slot, the order in its product's.
    private func buyerLevel(_ buyer: String, _ done: @escaping (Result<MemberLevel?, GatewayError>) -> Void) {
        let levels = options.memberLevels
        guard !levels.levels.isEmpty else { return done(.success(nil)) }
        orderStore.store.memberPoints(buyer, countOrders: false) { done($0.map { levels.level(at: $0.points) }) }
    }

    /// `GET /api/v1/events?after=<id>&limit=N`: `{"events":[{id, type, created_at, data}, ...]}`,
    /// oldest first; the last id is the next call's `after`.
    private func listEvents(_ request: HTTPRequest) {
        let query: EventsQuery
        switch EventsQuery.decode(request.query) {
        case .failure(let e): return fail(request, e)
        case .success(let q): query = q
        }
        outboxRelay.events(after: query.after, limit: query.limit) { result in
            switch result {
            case .failure(let e): self.fail(request, e)
            case .success(let events): self.respond(request, 200, .object([("events", .array(events.map(\.json)))]))
            }
        }
    }

    private func addKeys(_ request: HTTPRequest, _ caller: APICaller, product: String, _ body: JSON) {
        guard Names.isValidID(product) else { return fail(request, .badRequest("not a valid product id")) }
        guard let list = body["keys"]?.arrayValue else { return fail(request, .badRequest("\"keys\" must be an array of strings")) }
        guard list.count <= Self.maxKeysPerUpload else {
            return fail(request, .badRequest("at most \(Self.maxKeysPerUpload) keys per call"))
        }
        var sealed: [SealedCardKey] = []
        for (i, item) in list.enumerated() {
            guard let key = item.stringValue, (1...512).contains(key.utf8.count) else {
                return fail(request, .badRequest("keys[\(i)] must be a string of 1 to 512 bytes"))
            }
            sealed.append(seal(key, product: product))
        }
        let merchant: String? = if case .merchant(let m) = caller { m } else { nil }
        // The merchant's ownership is checked inside the script: one round trip.
        uploadKeys(product: product, merchant: merchant, sealed) { result in
            switch result {
            case .failure(let e): self.fail(request, e)
            case .success(.noProduct): self.fail(request, .notFound("no product \(product)"))
            case .success(.otherMerchant): self.fail(request, .forbidden("product \(product) belongs to another merchant"))
            case .success(.added(let added, let dup, let stock, let restock)):
                self.respond(request, 200, .object([("added", .int(Int64(added))), ("duplicates", .int(Int64(dup))),
                                                    ("stock", .int(Int64(stock))), ("holds", .int(Int64(restock?.holders.count ?? 0)))]))
            }
        }
    }

    /// A card key as stored: sealed under `keys.secret` for its product, with a keyed fingerprint as its id.
    func seal(_ key: String, product: String) -> SealedCardKey {
        let context = Array(product.utf8)
        let plain = Array(key.utf8)
        let fingerprint = Crypto.hex(Crypto.hmacSHA256(key: options.keysSecret, message: context + [0] + plain).prefix(16))
        return SealedCardKey(id: fingerprint, sealed: Base64URL.encode(keyBox.seal(plain, context: context)))
    }

    private func createOrder(_ request: HTTPRequest, _ caller: APICaller, _ body: JSON) {
        var decoded: OrderRequest
        switch OrderRequest.decode(body) {
        case .failure(let e): return fail(request, e)
        case .success(let r): decoded = r
        }
        decoded.idempotencyKey = decoded.idempotencyKey.map { caller.idempotencyScope + $0 }
        let merchant: String? = if case .merchant(let m) = caller { m } else { nil }
        placeOrder(request, decoded, viewer: caller.viewer, merchant: merchant)
    }

    /// Creates the order `decoded` asks for (its idempotency key already scoped to its caller)
    /// and answers 201, or 200 with the order a repeated key made. `merchant`: that merchant's
    /// products only.
    package func placeOrder(_ request: HTTPRequest, _ decoded: OrderRequest, viewer: Viewer, merchant: String?) {
        let product = decoded.product
        let fresh = FreshIDs(order: freshID("o", product: product), giftCode: freshID("g", product: product),
                             payCode: freshID("f", product: product))
        let create = { (onFailure: @escaping (GatewayError) -> Void) in
            // The level and the product's snapshot are read beside the reservation (sent together,
            // not one after the other); the order is decided once all answered. A refused
            // reservation leaves the two reads unused.
            let snapshot = self.orderStore.sendLoad(.product(product))
            var found: Result<MemberLevel?, GatewayError>?
            var placed: ((GatewayError) -> Void)?
            let proceed = {
                guard let found, let notCreated = placed else { return }
                let level: MemberLevel?
                switch found {
                case .failure(let e):
                    notCreated(e)
                    return onFailure(e)
                case .success(let l): level = l
                }
                self.orderStore.run(.product(product), sent: snapshot, decide: { snapshot in
                    if let merchant, let p = snapshot.product, p.merchant != merchant {
                        return .failure(.forbidden("product \(p.id) belongs to another merchant"))
                    }
                    return self.orderRules.create(decoded, product: snapshot.product, level: level, now: self.now, fresh: fresh)
                }) { result in
                    switch result {
                    case .success(let (decision, _)): self.respond(request, 201, decision.savedOrder!.json(for: viewer))
                    case .failure(let e):
                        notCreated(e)
                        onFailure(e)
                    }
                }
            }
            self.buyerLevel(decoded.buyer) { found = $0; proceed() }
            self.withinRiskLimits(decoded, order: fresh.order, refused: onFailure) { notCreated in
                placed = notCreated
                proceed()
            }
        }
        guard let key = decoded.idempotencyKey else { return create { self.fail(request, $0) } }
        // A repeated idempotency key answers the order it made, also after losing a race.
        // Keys are per (caller scope, buyer, product).
        let existing = { (otherwise: @escaping () -> Void) in
            self.orderStore.load(.idempotency(product: product, buyer: decoded.buyer, key: key)) { loaded in
                switch loaded {
                case .failure(let e): return self.fail(request, e)
                case .success(let s):
                    guard let order = s.order else { return otherwise() }
                    // The key is the caller's own; the answer is still checked like any order read.
                    if let merchant, s.product?.merchant != merchant {
                        return self.fail(request, GatewayError(.conflict, "idempotency_key already used"))
                    }
                    self.orderStore.confirmDurable(product: product, repeated: true) { error in
                        if let error { return self.fail(request, error) }
                        self.respond(request, 200, order.json(for: viewer))
                    }
                }
            }
        }
        existing { create { error in existing { self.fail(request, error) } } }
    }

    private func getOrder(_ request: HTTPRequest, _ caller: APICaller, _ id: String) {
        orderStore.load(.order(id)) { loaded in
            switch loaded {
            case .failure(let e): self.fail(request, e)
            case .success(let s):
                guard let order = s.order else { return self.fail(request, .notFound("no order \(id)")) }
                if case .merchant(let m) = caller, s.product?.merchant != m {
                    return self.fail(request, .notFound("no order \(id)"))
                }
                self.orderJSON(order, viewer: caller.viewer) { self.respond(request, 200, $0) }
            }
        }
    }

    private func createPayment(_ request: HTTPRequest, _ caller: APICaller, order: String, _ body: JSON) {
        guard let payer = body["payer"]?.stringValue, Names.isValidID(payer) else {
            return fail(request, .badRequest("\"payer\" must be a valid id"))
        }
        // The payment lives in its order's slot: its id carries the order's tag.
        let paymentID = CommerceKeys.paymentID(forOrder: order, random: Crypto.randomToken(10)) ?? ""
        orderStore.run(.order(order), decide: { s in
            guard let o = s.order else { return .failure(.notFound("no order \(order)")) }
            if case .merchant(let m) = caller, s.product?.merchant != m { return .failure(.notFound("no order \(order)")) }
            return self.orderRules.createPayment(order: o, payer: payer, paymentID: paymentID, now: self.now)
        }) { result in
            switch result {
            case .failure(let e): self.fail(request, e)
            case .success(let (decision, _)):
                self.respond(request, 201, .object([("payment", decision.savedPayment!.json)]))
            }
        }
    }

    private func shopAction(_ request: HTTPRequest, _ caller: APICaller, order: String,
                            _ decide: @escaping (OrderRules, CommerceSnapshot, Int64) -> Result<Decision, GatewayError>) {
        orderStore.run(.order(order), decide: { s in
            guard s.order != nil else { return .failure(.notFound("no order \(order)")) }
            if case .merchant(let m) = caller, s.product?.merchant != m { return .failure(.notFound("no order \(order)")) }
            return decide(self.orderRules, s, self.now)
        }) { result in
            switch result {
            case .failure(let e): self.fail(request, e)
            case .success(let (decision, snapshot)):
                self.respond(request, 200, (decision.savedOrder ?? snapshot.order!).json(for: caller.viewer))
            }
        }
    }

    /// `GET /api/v1/payments/{id}`: the ledger entry; a merchant sees the payments of its
    /// own products' orders only (others are 404, as orders are).
    private func getPayment(_ request: HTTPRequest, _ caller: APICaller, _ id: String) {
        orderStore.load(.payment(id)) { loaded in
            switch loaded {
            case .failure(let e): self.fail(request, e)
            case .success(let s):
                guard let payment = s.payment, payment.id == id else { return self.fail(request, .notFound("no payment \(id)")) }
                if case .merchant(let m) = caller, s.product?.merchant != m {
                    return self.fail(request, .notFound("no payment \(id)"))
                }
                self.respond(request, 200, payment.json)
            }
        }
    }

    /// `POST /api/v1/payments/{id}/refunded {refund_no}`: the shop sent the money back.
    private func paymentRefunded(_ request: HTTPRequest, _ caller: APICaller, _ id: String, _ body: JSON) {
        let refundNo: String
        switch RefundConfirmation.decode(body) {
        case .failure(let e): return fail(request, e)
        case .success(let no): refundNo = no
        }
        orderStore.run(.payment(id), decide: { s in
            guard let payment = s.payment, payment.id == id else { return .failure(.notFound("no payment \(id)")) }
            if case .merchant(let m) = caller, s.product?.merchant != m { return .failure(.notFound("no payment \(id)")) }
            return self.orderRules.markRefunded(payment, id: id, refundNo: refundNo, now: self.now)
        }) { result in
            switch result {
            case .failure(let e): self.fail(request, e)
            case .success(let (decision, snapshot)): self.respond(request, 200, (decision.savedPayment ?? snapshot.payment!).json)
            }
        }
    }

    /// `POST /api/v1/payments/notify`: signed by the payment provider over the raw body.
    func paymentNotify(_ request: HTTPRequest) {
        applyPaymentNotify(body: request.body, signature: request.signature) { result in
            switch result {
            case .failure(let e): self.fail(request, e)
            case .success(let outcome):
                self.respond(request, 200, .object([("ok", .bool(true)), ("outcome", .string(outcome.rawValue))]))
            }
        }
    }

    /// The provider's notify: signature over the raw body, then the order rules' `notify`
    /// (idempotent by payment, first success wins). The dev sandbox pays through it too.
    package func applyPaymentNotify(body: [UInt8], signature: String?, _ done: @escaping (Result<NotifyOutcome, GatewayError>) -> Void) {
        guard let sig = signature.flatMap({ Crypto.fromHex($0.trimmingCharacters(in: .whitespaces)) }) else {
            return done(.failure(GatewayError(.unauthorized, "X-Signature: <hex HMAC-SHA256 of the body> required")))
        }
        let expected = Crypto.hmacSHA256(key: Array(options.paymentsSecret.utf8), message: body)
        guard Crypto.constantTimeEquals(sig, expected) else {
            return done(.failure(GatewayError(.unauthorized, "signature does not match the body")))
        }
        guard let json = try? JSON.parse(body), json.objectValue != nil else {
            return done(.failure(.badRequest("the body must be a JSON object")))
        }
        let notify: PaymentNotify
        switch PaymentNotify.decode(json) {
        case .failure(let e): return done(.failure(e))
        case .success(let n): notify = n
        }
        applyNotify(payment: notify.payment, { _ in notify }, done)
    }

    /// The one notify path every provider's notify ends in: the order rules' `notify` on the
    /// payment's snapshot, applied in one step. `notify` is built from the stored payment, for
    /// providers that name only the payment (its order comes from the record).
    func applyNotify(payment: String, _ notify: @escaping (Payment?) -> PaymentNotify,
                     _ done: @escaping (Result<NotifyOutcome, GatewayError>) -> Void) {
        orderStore.run(.payment(payment), decide: { s in
            self.orderRules.notify(notify(s.payment), payment: s.payment, order: s.order, stock: s.stock, hold: s.hold,
                                   now: self.now, product: s.product, membership: s.membership)
        }) { result in done(result.map { NotifyOutcome($0.0) }) }
    }

    // MARK: Client commands

    func orderCommand(_ client: Client, _ id: Int64, _ command: OrderCommand, user: String) {
        let op = command.op
        let answer = answerer(client, id, op: op)
        switch command {
        case .get(let orderID):
            orderStore.load(.order(orderID), live(client) { loaded in
                switch loaded {
                case .failure(let e): answer(.failure(e))
                case .success(let s):
                    guard let order = s.order, order.concerned.contains(user) else { return answer(.failure(.notFound("no order \(orderID)"))) }
                    self.orderJSON(order, viewer: .user(user)) { answer(.success($0)) }
                }
            })
        case .giftClaim(let code):
            orderStore.run(.giftCode(code), member: user, decide: { s in
                guard let order = s.order else { return .failure(.notFound("no gift with this code")) }
                return self.orderRules.claim(order, by: user, now: self.now, product: s.product, membership: s.membership)
            }, done: live(client) { result in
                switch result {
                case .failure(let e): answer(.failure(e))
                case .success(let (decision, _)): self.orderJSON(decision.savedOrder!, viewer: .user(user)) { answer(.success($0)) }
                }
            })
        case .giftDecline(let code):
            orderStore.run(.giftCode(code), decide: { s in
                guard let order = s.order else { return .failure(.notFound("no gift with this code")) }
                return self.orderRules.decline(order, by: user, payment: s.payment, now: self.now)
            }) { result in answer(result.map { _ in .object([]) }) }
        case .friendpayView(let code):
            orderStore.load(.payCode(code), live(client) { loaded in
                switch loaded {
                case .failure(let e): answer(.failure(e))
                case .success(let s):
                    guard let o = s.order, o.kind == .friendpay else { return answer(.failure(.notFound("no pay request with this code"))) }
                    answer(.success(.object([
                        ("order", .string(o.id)), ("product", .string(o.product)), ("title", .string(o.title)),
                        ("amount", .int(o.amount)), ("currency", .string(o.currency)), ("requester", .string(o.buyer)),
                        ("expires_at", .int(o.expiresAt)), ("status", .string(o.status.rawValue)),
                    ])))
                }
            })
        }
    }

    /// The order object for `viewer`, with its keys opened when the viewer may see them.
    func orderJSON(_ order: Order, viewer: Viewer, _ done: @escaping (JSON) -> Void) {
        guard order.keysVisible(to: viewer) else { return done(order.json(for: viewer)) }
        orderStore.store.sealedKeys(of: order) { result in
            let context = Array(order.product.utf8)
            let keys = ((try? result.get()) ?? []).compactMap { item -> String? in
                guard let sealed = item.flatMap({ Base64URL.decode($0) }),
                      let plain = self.keyBox.open(sealed, context: context) else { return nil }
                return String(decoding: plain, as: UTF8.self)
            }
            if keys.count != order.keyIDs.count { self.log("order \(order.id): \(order.keyIDs.count - keys.count) keys could not be opened", level: .error, .order(order.id)) }
            done(order.json(for: viewer, keys: keys))
        }
    }

    // MARK: Timers

    /// Runs due expiries every 250 ms on every node; each is a conditional transition,
    /// so two nodes racing on one timer change the order once.
    func sweepTimers() {
        loop.schedule(afterMs: 250) { [weak self] in
            guard let self else { return }
            defer { self.sweepTimers() }
            guard self.orderStore.store.isReady, !self.sweeping else { return }
            self.sweeping = true
            self.orderStore.store.dueTimers(now: self.now, limit: 200) { page in
                let due = (try? page.get()) ?? []
                var remaining = due.count
                if remaining == 0 { self.sweeping = false }
                for timer in due {
                    self.expire(timer) {
                        remaining -= 1
                        if remaining == 0 { self.sweeping = false }
                    }
                }
            }
        }
    }

    private func expire(_ timer: DueTimer, _ done: @escaping () -> Void) {
        switch TimerMember(timer.member) {
        case .order(let kind, let id): expireOrder(id, kind, timer, done)
        case .membership(let product, let user): remindMembership(product: product, user: user, timer, done)
        case .holds(let product, _): releaseHolds(product: product, timer, done)
        case .dormant(let user): expireDormant(user, timer, done)
        case .sale(let product, let sale): tickSale(product: product, sale: sale, timer: timer, done: done)
        case nil: orderStore.store.removeTimer(timer.member, done)
        }
    }

    private func expireOrder(_ id: String, _ kind: TimerKind, _ timer: DueTimer, _ done: @escaping () -> Void) {
        let now = self.now
        orderStore.run(.order(id), durable: false, decide: { s in
            guard let order = s.order else { return .success(Decision()) }
            var d = self.orderRules.expire(order, kind, payment: s.payment, now: now)
            // A timer that fired early is only put back (a schedule, no save): it must stay.
            if d.savedOrder != nil { d.effects.append(.unschedule(order: order.id, kind)) }
            return .success(d)
        }) { result in
            guard case .success(let (decision, snapshot)) = result, decision.isEmpty,
                  OrderStore.dropsTimer(timer, orderExists: snapshot.order != nil, now: now) else { return done() }
            self.orderStore.store.removeTimer(timer.member, done)
        }
    }
}

extension APICaller {
    /// Prefix of every idempotency key this caller sends: the shop and each merchant have
    /// their own keys, so one can never be answered another's order. Ids have no "/", so
    /// no two callers' prefixed keys can be equal.
    var idempotencyScope: String {
        switch self {
        case .shop: "shop/"
        case .merchant(let m): "merchant/\(m)/"
        }
    }

    var viewer: Viewer {
        switch self {
        case .shop: .shop
        case .merchant(let m): .merchant(m)
        }
    }
}
