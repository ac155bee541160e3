import GatewayProtocol

/// Time limits of the order rules, in milliseconds.
public struct CommerceTimes: Sendable {
    public var orderTTL: Int64
    public var giftTTL: Int64
    public var friendpayTTL: Int64
    public var paymentGrace: Int64
    /// `sales.pay_s`: how long a sale order waits for its payment (4.8).
    public var saleTTL: Int64
    public init(orderTTL: Int64, giftTTL: Int64, friendpayTTL: Int64, paymentGrace: Int64, saleTTL: Int64 = 300_000) {
        self.orderTTL = orderTTL
        self.giftTTL = giftTTL
        self.friendpayTTL = friendpayTTL
        self.paymentGrace = paymentGrace
        self.saleTTL = saleTTL
    }
}

/// Fresh random values a decision may need, drawn by the caller so the rules stay pure.
public struct FreshIDs: Sendable {
    public var order: String
    public var giftCode: String
    public var payCode: String
    public init(order: String, giftCode: String, payCode: String) {
        self.order = order
        self.giftCode = giftCode
        self.payCode = payCode
    }
}

/// The order core's rules (PROTOCOL.md section 3). Every function looks at a snapshot
/// and returns a decision or a refusal; none does I/O. An empty decision means
/// "nothing to change" (a repeated notify, an expiry that no longer applies).
public struct OrderRules: Sendable {
    public var times: CommerceTimes
    /// `reminders.before_s` in ms: membership reminders this long before the end (4.6).
    public var remindersBeforeMs: [Int64]

    public init(times: CommerceTimes, remindersBeforeMs: [Int64] = OrderRules.defaultRemindersBeforeMs) {
        self.times = times
        self.remindersBeforeMs = remindersBeforeMs
    }

    // MARK: Creating

    /// `level` is the buyer's member level now (the buyer owns the order at creation): its
    /// discount is taken off the amount, and the order records its name.
    public func create(_ r: OrderRequest, product: Product?, level: MemberLevel? = nil, now: Int64,
                       fresh: FreshIDs) -> Result<Decision, GatewayError> {
        guard let product else { return .failure(.notFound("no product \(r.product)")) }
        let (gross, overflow) = product.price.multipliedReportingOverflow(by: Int64(r.quantity))
        // Within Ranges.amount too, so the payment notify for it is always a valid body
        // (a product stored before prices had a range may cost more).
        guard !overflow, Ranges.amount.contains(gross) else { return .failure(.badRequest("amount too large")) }
        let amount = level?.discounted(gross) ?? gross
        let ttl = r.kind == .friendpay ? times.friendpayTTL : times.orderTTL
        var order = Order(id: fresh.order, kind: r.kind, buyer: r.buyer, owner: r.buyer, product: product.id,
                          title: product.title, quantity: r.quantity, amount: amount, currency: product.currency,
                          status: .pendingPayment, createdAt: now, expiresAt: now + ttl, level: level?.name, keyIDs: [],
                          version: 1)
        var d = Decision(preconditions: [.orderAbsent(order.id)])
        if r.kind == .gift {
            order.gift = Gift(code: fresh.giftCode, to: r.giftTo, message: r.giftMessage, status: .pending, expiresAt: nil)
            d.effects.append(.indexGiftCode(fresh.giftCode, order: order.id))
        }
        if r.kind == .friendpay {
            order.payCode = fresh.payCode
            order.friend = r.friend
            d.effects.append(.indexPayCode(fresh.payCode, order: order.id))
        }
        d.effects.append(.saveOrder(order))
        if let key = r.idempotencyKey {
            d.preconditions.append(.idempotencyAbsent(buyer: r.buyer, product: product.id, key: key))
            d.effects.append(.indexIdempotency(buyer: r.buyer, product: product.id, key: key, order: order.id))
        }
        d.effects.append(.schedule(order: order.id, .payment, at: order.expiresAt))
        d.effects += statusPushes(order)
        if let friend = r.friend {
            d.effects.append(.push(user: friend, type: "friendpay.requested", data: .object([
                ("order", .string(order.id)), ("code", .string(fresh.payCode)), ("from", .string(r.buyer)),
                ("product", .string(product.id)), ("title", .string(product.title)), ("amount", .int(amount)),
                ("currency", .string(product.currency)), ("expires_at", .int(order.expiresAt)),
            ])))
        }
        return .success(d)
    }

    public func createPayment(order: Order, payer: String, paymentID: String, now: Int64) -> Result<Decision, GatewayError> {
        guard order.status == .pendingPayment else {
            return .failure(GatewayError(.conflict, "order \(order.id) is \(order.status.rawValue), not awaiting payment"))
        }
        switch order.kind {
        case .friendpay where payer == order.buyer:
            return .failure(.forbidden("the requester cannot pay their own friend-pay request"))
        case .normal where payer != order.buyer, .gift where payer != order.buyer:
            return .failure(.forbidden("only the buyer pays this order"))
        default:
            break
        }
        let payment = Payment(id: paymentID, order: order.id, payer: payer, amount: order.amount, currency: order.currency,
                              status: .created, createdAt: now, tradeNo: nil, version: 1)
        return .success(Decision(preconditions: [.paymentAbsent(paymentID)], effects: [.savePayment(payment)]))
    }

    // MARK: Paying

    /// A signed notify from the payment provider. Idempotent by payment: a payment that
    /// is no longer `created` changes nothing, except a success for one recorded `failed`
    /// (the provider charged after all: a late success, paid like a first one).
    /// `product` and `membership` (the owner's, 4.6) are what a delivery's membership is made of.
    public func notify(_ n: PaymentNotify, payment: Payment?, order: Order?, stock: Int,
                       hold: Linked<RestockHold> = .notLinked, now: Int64,
                       product: Product? = nil, membership: Linked<Membership> = .notLinked) -> Result<Decision, GatewayError> {
        guard var payment else { return .failure(.notFound("no payment \(n.payment)")) }
        guard n.order == payment.order else { return .failure(.badRequest("payment \(payment.id) belongs to another order")) }
        guard n.amount == payment.amount, n.currency == payment.currency else {
            return .failure(.badRequest("amount or currency does not match payment \(payment.id)"))
        }
        let lateSuccess = payment.status == .failed && n.outcome == .success
        guard payment.status == .created || lateSuccess else { return .success(Decision()) }
        guard var order else { return .failure(.notFound("no order \(n.order)")) }
        var d = Decision(preconditions: [.paymentVersion(payment.id, payment.version), .orderVersion(order.id, order.version)])
        payment.version += 1
        payment.updatedAt = now
        payment.provider = n.provider
        if !n.tradeNo.isEmpty { payment.tradeNo = n.tradeNo }
        if n.outcome == .failed {
            payment.status = .failed
            d.effects.append(.savePayment(payment))
            return .success(d)
        }
        let withinGrace = order.status == .canceled && order.payment == nil
            && now - (order.canceledAt ?? order.expiresAt) <= times.paymentGrace
        guard order.status == .pendingPayment || withinGrace else {
            let reason: String
            switch order.status {
            case .canceled: reason = "order canceled"
            case .refunded: reason = "order refunded"
            default: reason = "order already paid"
            }
            payment.status = .refundRequired
            d.effects.append(.savePayment(payment))
            d.effects.append(refundRequiredPush(payment, reason: reason))
            d.effects.append(.event(.refundRequired(payment, reason: reason, at: now)))
            return .success(d)
        }
        payment.status = .succeeded
        d.effects.append(.savePayment(payment))
        order.version += 1
        order.paidBy = payment.payer
        order.payment = payment.id
        order.paidAt = now
        d.effects.append(.unschedule(order: order.id, .payment))
        // A live restock hold of the buyer pays one unit; the rest comes from stock. An unpaid
        // sale order already holds its units (4.8): nothing more is taken.
        let unitsHeld = order.sale != nil && order.status == .pendingPayment
        let held: RestockHold? = if !unitsHeld, case .present(let h) = hold, h.user == order.buyer, h.isLive(at: now) { h } else { nil }
        let fromStock = unitsHeld ? 0 : order.quantity - (held == nil ? 0 : 1)
        guard stock >= fromStock else {
            // Only while stock is still short: keys uploaded meanwhile make this decide again.
            d.preconditions.append(.stockBelow(product: order.product, fromStock))
            // Abnormal only while the buyer still has no (other) hold: one given meanwhile must be used.
            switch hold {
            case .absent: d.preconditions.append(.holdRecord(product: order.product, user: order.buyer, record: ""))
            case .present(let h) where h.user == order.buyer:
                d.preconditions.append(.holdRecord(product: order.product, user: h.user, record: h.record))
            default: break
            }
            order.status = .abnormal
            d.effects.append(.saveOrder(order))
            d.effects += statusPushes(order)
            d.effects += paidEvents(order, now: now)
            if order.kind == .friendpay { d.effects.append(receiptPush(order, payment)) }
            return .success(d)
        }
        if fromStock > 0 {
            d.preconditions.append(.stockAtLeast(product: order.product, fromStock))
            d.effects.append(.allocateKeys(order: order.id, product: order.product, count: fromStock))
        }
        if let held {
            d.preconditions.append(.holdRecord(product: order.product, user: held.user, record: held.record))
            d.effects.append(.takeHeldKey(order: order.id, product: order.product, user: held.user))
        }
        switch order.kind {
        case .gift:
            order.status = .paid
            let expires = now + times.giftTTL
            order.gift?.expiresAt = expires
            d.effects.append(.saveOrder(order))
            d.effects.append(.schedule(order: order.id, .gift, at: expires))
            d.effects += statusPushes(order)
            d.effects += paidEvents(order, now: now)
            if let gift = order.gift {
                var created: [(String, JSON)] = [("order", .string(order.id)), ("code", .string(gift.code))]
                if let to = gift.to { created.append(("to", .string(to))) }
                created.append(("expires_at", .int(expires)))
                d.effects.append(.push(user: order.buyer, type: "gift.created", data: .object(created)))
                if let to = gift.to {
                    var received: [(String, JSON)] = [
                        ("order", .string(order.id)), ("code", .string(gift.code)), ("from", .string(order.buyer)),
                        ("product", .string(order.product)), ("title", .string(order.title)),
                    ]
                    if let m = gift.message { received.append(("message", .string(m))) }
                    received.append(("expires_at", .int(expires)))
                    d.effects.append(.push(user: to, type: "gift.received", data: .object(received)))
                }
            }
        case .normal, .friendpay:
            order.status = .delivered
            let change = membershipChange(owner: order.owner, product: product, quantity: order.quantity, membership: membership, now: now)
            order.membershipAddedMs = change?.addedMs
            d.preconditions += change?.preconditions ?? []
            d.effects.append(.saveOrder(order))
            d.effects += change?.effects ?? []
            d.effects.append(.membership(product: order.product, user: order.owner, delta: 1))
            d.effects.append(.awardPoints(user: order.owner, order: order.id, amount: order.amount))
            d.effects += statusPushes(order)
            d.effects += paidEvents(order, now: now)
            if order.kind == .friendpay {
                d.effects.append(.push(user: order.buyer, type: "friendpay.paid",
                                       data: .object([("order", .string(order.id)), ("by", .string(payment.payer))])))
                d.effects.append(receiptPush(order, payment))
                d.effects.append(.event(EventRecord(type: .friendpayPaid, key: order.id, createdAt: now, data: .object([
                    ("order", .string(order.id)), ("by", .string(payment.payer)), ("payment", .string(payment.id)),
                ]))))
            }
        }
        return .success(d)
    }

    // MARK: Gifts

    /// `membership`: the claimer's, of the gift's product (4.6).
    public func claim(_ order: Order, by claimer: String, now: Int64, product: Product? = nil,
                      membership: Linked<Membership> = .notLinked) -> Result<Decision, GatewayError> {
        guard var gift = order.gift, order.kind == .gift else { return .failure(.notFound("no such gift")) }
        guard claimer != order.buyer else { return .failure(.forbidden("the buyer cannot claim their own gift")) }
        if let to = gift.to, to != claimer { return .failure(.forbidden("this gift is for someone else")) }
        guard gift.status == .pending else { return .failure(GatewayError(.gone, "this gift was already \(gift.status.rawValue)")) }
        if let expires = gift.expiresAt, now >= expires { return .failure(GatewayError(.gone, "this gift expired")) }
        switch order.status {
        case .paid: break
        case .pendingPayment: return .failure(GatewayError(.conflict, "this gift is not paid yet"))
        default: return .failure(GatewayError(.gone, "this gift is no longer available"))
        }
        var o = order
        gift.status = .claimed
        o.gift = gift
        o.owner = claimer
        o.status = .delivered
        o.version += 1
        let change = membershipChange(owner: claimer, product: product, quantity: o.quantity, membership: membership, now: now)
        o.membershipAddedMs = change?.addedMs
        var d = Decision(preconditions: [.orderVersion(order.id, order.version)] + (change?.preconditions ?? []))
        d.effects.append(.saveOrder(o))
        d.effects += change?.effects ?? []
        d.effects.append(.unschedule(order: o.id, .gift))
        d.effects.append(.membership(product: o.product, user: claimer, delta: 1))
        d.effects.append(.awardPoints(user: claimer, order: o.id, amount: o.amount))
        d.effects.append(.push(user: o.buyer, type: "gift.claimed", data: .object([("order", .string(o.id)), ("by", .string(claimer))])))
        d.effects += statusPushes(o)
        d.effects.append(.event(EventRecord(type: .giftClaimed, key: o.id, createdAt: now,
                                            data: .object([("order", .string(o.id)), ("by", .string(claimer))]))))
        d.effects += statusEvent(o, now: now)
        return .success(d)
    }

    public func decline(_ order: Order, by user: String, payment: Payment?, now: Int64) -> Result<Decision, GatewayError> {
        guard let gift = order.gift, order.kind == .gift else { return .failure(.notFound("no such gift")) }
        if let to = gift.to, to != user { return .failure(.forbidden("only \(to) may decline this gift")) }
        guard gift.status == .pending else { return .failure(GatewayError(.gone, "this gift was already \(gift.status.rawValue)")) }
        if let expires = gift.expiresAt, now >= expires { return .failure(GatewayError(.gone, "this gift expired")) }
        switch order.status {
        case .paid: return .success(unwindGift(order, payment: payment, status: .declined, by: user, now: now))
        case .pendingPayment: return .failure(GatewayError(.conflict, "this gift is not paid yet"))
        default: return .failure(GatewayError(.gone, "this gift is no longer available"))
        }
    }

    /// Declined or expired: refund the payer, unrevealed keys back to stock.
    private func unwindGift(_ order: Order, payment: Payment?, status: GiftStatus, by: String?, now: Int64) -> Decision {
        var o = order
        o.gift?.status = status
        o.status = .refunded
        o.version += 1
        var d = Decision(preconditions: [.orderVersion(order.id, order.version)])
        d.effects.append(.saveOrder(o))
        d.effects.append(.returnKeys(order: o.id, product: o.product))
        d.effects.append(.unschedule(order: o.id, .gift))
        var data: [(String, JSON)] = [("order", .string(o.id))]
        if let by { data.append(("by", .string(by))) }
        // Events in cause order: the gift's end, the order refunded, then the money owed.
        d.effects.append(.event(EventRecord(type: status == .declined ? .giftDeclined : .giftExpired, key: o.id,
                                            createdAt: now, data: .object(data))))
        d.effects += statusEvent(o, now: now)
        d.effects += refundPayment(payment, reason: status == .declined ? "gift declined" : "gift expired", now: now, into: &d)
        d.effects.append(.push(user: o.buyer, type: "gift.\(status.rawValue)", data: .object(data)))
        d.effects += statusPushes(o)
        return d
    }

    // MARK: Timers

    /// A due timer. Conditional: an order that moved on meanwhile is left alone. A timer
    /// that fires before the order's own due time (one written ahead by a decision that
    /// then lost a race, at its own time) changes nothing but is put back at that due time.
    public func expire(_ order: Order, _ kind: TimerKind, payment: Payment?, now: Int64) -> Decision {
        switch kind {
        case .payment:
            guard order.status == .pendingPayment else { return Decision() }
            if now < order.expiresAt { return Decision(effects: [.schedule(order: order.id, .payment, at: order.expiresAt)]) }
            var o = order
            o.status = .canceled
            o.canceledAt = now
            o.version += 1
            var d = Decision(preconditions: [.orderVersion(order.id, order.version)], effects: [.saveOrder(o)])
            d.effects += returnSaleUnits(o)
            d.effects += statusPushes(o)
            d.effects += statusEvent(o, now: now)
            if o.kind == .friendpay {
                for user in [o.buyer] + (o.friend.map { [$0] } ?? []) {
                    d.effects.append(.push(user: user, type: "friendpay.expired", data: .object([("order", .string(o.id))])))
                }
            }
            return d
        case .gift:
            guard order.status == .paid, order.gift?.status == .pending else { return Decision() }
            if let due = order.gift?.expiresAt, now < due { return Decision(effects: [.schedule(order: order.id, .gift, at: due)]) }
            return unwindGift(order, payment: payment, status: .expired, by: nil, now: now)
        }
    }

    // MARK: Shop actions

    public func cancel(_ order: Order, now: Int64) -> Result<Decision, GatewayError> {
        switch order.status {
        case .canceled: return .success(Decision())
        case .pendingPayment:
            var o = order
            o.status = .canceled
            o.canceledAt = now
            o.version += 1
            var d = Decision(preconditions: [.orderVersion(order.id, order.version)], effects: [.saveOrder(o)])
            d.effects.append(.unschedule(order: o.id, .payment))
            d.effects += returnSaleUnits(o)
            d.effects += statusPushes(o)
            d.effects += statusEvent(o, now: now)
            return .success(d)
        default:
            return .failure(GatewayError(.conflict, "only an unpaid order can be canceled; this one is \(order.status.rawValue)"))
        }
    }

    /// `membership`: the owner's, of the order's product (4.6): a refund takes back what the order added.
    public func refund(_ order: Order, payment: Payment?, now: Int64,
                       membership: Linked<Membership> = .notLinked) -> Result<Decision, GatewayError> {
        var o = order
        o.status = .refunded
        o.version += 1
        var d = Decision(preconditions: [.orderVersion(order.id, order.version)])
        switch order.status {
        case .refunded:
            return .success(Decision())
        case .pendingPayment, .canceled:
            return .failure(GatewayError(.conflict, "nothing was paid for order \(order.id)"))
        case .paid:
            d.effects.append(.returnKeys(order: o.id, product: o.product))
            d.effects.append(.unschedule(order: o.id, .gift))
        case .delivered:
            d.effects.append(.burnKeys(order: o.id, product: o.product))
            d.effects.append(.membership(product: o.product, user: o.owner, delta: -1))
            d.effects.append(.revokePoints(user: o.owner, order: o.id))
            if let (check, effects) = membershipRefund(order, membership: membership, now: now) {
                d.preconditions.append(check)
                d.effects += effects
            }
        case .abnormal:
            break
        }
        d.effects.insert(.saveOrder(o), at: 0)
        d.effects += statusEvent(o, now: now)
        d.effects += refundPayment(payment, reason: "refunded by the shop", now: now, into: &d)
        d.effects += statusPushes(o)
        return .success(d)
    }

    /// `POST /api/v1/payments/{id}/refunded`: the shop sent the money back. Repeating the
    /// same call changes nothing; any other payment than a `refund_required` one is a conflict.
    public func markRefunded(_ payment: Payment?, id: String, refundNo: String, now: Int64) -> Result<Decision, GatewayError> {
        guard var p = payment else { return .failure(.notFound("no payment \(id)")) }
        switch p.status {
        case .refundRequired:
            break
        case .refunded where p.refundNo == refundNo:
            return .success(Decision())
        default:
            return .failure(GatewayError(.conflict, "payment \(p.id) is \(p.status.rawValue), not refund_required"))
        }
        let seen = Precondition.paymentVersion(p.id, p.version)
        p.status = .refunded
        p.refundNo = refundNo
        p.updatedAt = now
        p.version += 1
        return .success(Decision(preconditions: [seen], effects: [
            .savePayment(p),
            .push(user: p.payer, type: "payment.refunded", data: .object([
                ("payment", .string(p.id)), ("order", .string(p.order)), ("amount", .int(p.amount)),
                // `reason` keeps the contract's fields of this push (2.3); the why was told with
                // `payment.refund_required`.
                ("currency", .string(p.currency)), ("reason", .string("refund sent")), ("refund_no", .string(refundNo)),
            ])),
        ]))
    }

    /// An unpaid sale order that ends gives its units back (to the sale, or to stock once it ended).
    private func returnSaleUnits(_ o: Order) -> [Effect] {
        guard let sale = o.sale else { return [] }
        return [.returnSaleUnits(order: o.id, product: o.product, sale: sale, user: o.buyer, count: o.quantity)]
    }

    // MARK: Pushes

    func statusPushes(_ o: Order) -> [Effect] {
        let data: JSON = .object([("order", .string(o.id)), ("product", .string(o.product)), ("kind", .string(o.kind.rawValue)),
                                  ("status", .string(o.status.rawValue)), ("amount", .int(o.amount)),
                                  ("currency", .string(o.currency))])
        return o.concerned.map { .push(user: $0, type: "order.status", data: data) }
    }

    /// Money taken must go back: `refund_required` until the shop confirms it.
    private func refundPayment(_ payment: Payment?, reason: String, now: Int64, into d: inout Decision) -> [Effect] {
        guard var p = payment, p.status == .succeeded else { return [] }
        d.preconditions.append(.paymentVersion(p.id, p.version))
        p.status = .refundRequired
        p.updatedAt = now
        p.version += 1
        return [.savePayment(p), refundRequiredPush(p, reason: reason), .event(.refundRequired(p, reason: reason, at: now))]
    }

    // MARK: Events

    /// A payment paid the order: `order.paid`, then its status's event (`order.delivered`,
    /// `order.abnormal`; none for a gift, which stays `paid` until claimed). Both carry the
    /// order as saved by the decision.
    private func paidEvents(_ o: Order, now: Int64) -> [Effect] {
        [.event(.order(.orderPaid, o, at: now))] + statusEvent(o, now: now)
    }

    private func statusEvent(_ o: Order, now: Int64) -> [Effect] {
        EventRecord.status(o, at: now).map { [.event($0)] } ?? []
    }

    private func refundRequiredPush(_ p: Payment, reason: String) -> Effect {
        .push(user: p.payer, type: "payment.refund_required", data: .object([
            ("payment", .string(p.id)), ("order", .string(p.order)), ("amount", .int(p.amount)),
            ("currency", .string(p.currency)), ("reason", .string(reason)),
        ]))
    }

    private func receiptPush(_ o: Order, _ p: Payment) -> Effect {
        .push(user: p.payer, type: "friendpay.receipt", data: .object([
            ("order", .string(o.id)), ("for", .string(o.buyer)), ("amount", .int(p.amount)), ("currency", .string(p.currency)),
        ]))
    }
}
