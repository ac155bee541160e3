import XCTest
import GatewayProtocol
@testable import OrderCore

/// `OrderRules.notify`: the payment provider's signed notify.
final class NotifyTests: XCTestCase {
    let rules = Fx.rules
    let now = Fx.t0 + 60_000

    func pending(_ r: OrderRequest = Fx.request()) throws -> (Order, Payment) {
        let o = try create(r)
        let payer = r.kind == .friendpay ? "u2" : "u1"
        return (o, try makePayment(o, payer: payer))
    }

    /// `p` as a notify at `at` (default `now`) by the v1 JSON notify saves it.
    func paidVersion(_ p: Payment, _ status: PaymentStatus, tradeNo: String? = "T-1", at: Int64? = nil) -> Payment {
        var q = p
        q.status = status
        q.version = p.version + 1
        q.tradeNo = tradeNo
        q.provider = "hmac"
        q.updatedAt = at ?? now
        return q
    }

    func paidOrder(_ o: Order, _ status: OrderStatus, by payer: String, payment: String = "pay-1", at: Int64) -> Order {
        var q = o
        q.status = status
        q.version = o.version + 1
        q.paidBy = payer
        q.payment = payment
        q.paidAt = at
        return q
    }

    // MARK: Refusals

    func testUnknownPaymentIsNotFound() throws {
        let (o, p) = try pending()
        assertFailure(rules.notify(Fx.notice(p), payment: nil, order: o, stock: 10, now: now), .notFound)
    }

    func testNotifyForAnotherOrderIsBadRequest() throws {
        let (o, p) = try pending()
        var n = Fx.notice(p)
        n.order = "o-2"
        assertFailure(rules.notify(n, payment: p, order: o, stock: 10, now: now), .badRequest)
    }

    func testAmountOrCurrencyMismatchIsBadRequest() throws {
        let (o, p) = try pending()
        for outcome in [PaymentNotify.Outcome.success, .failed] {
            var n = Fx.notice(p, outcome)
            n.amount = p.amount - 1
            assertFailure(rules.notify(n, payment: p, order: o, stock: 10, now: now), .badRequest, "amount below")
            n.amount = p.amount + 1
            assertFailure(rules.notify(n, payment: p, order: o, stock: 10, now: now), .badRequest, "amount above")
            n = Fx.notice(p, outcome)
            n.currency = "USD"
            assertFailure(rules.notify(n, payment: p, order: o, stock: 10, now: now), .badRequest, "currency")
            n.currency = "cny"
            assertFailure(rules.notify(n, payment: p, order: o, stock: 10, now: now), .badRequest, "currency case")
        }
    }

    func testMismatchIsRefusedEvenForARepeat() throws {
        let (o, p) = try pending()
        let done = paidVersion(p, .succeeded)
        var n = Fx.notice(p)
        n.amount += 1
        assertFailure(rules.notify(n, payment: done, order: o, stock: 10, now: now), .badRequest)
    }

    func testCreatedPaymentWithoutOrderIsNotFound() throws {
        let (_, p) = try pending()
        assertFailure(rules.notify(Fx.notice(p), payment: p, order: nil, stock: 10, now: now), .notFound)
    }

    // MARK: Idempotency

    func testRepeatChangesNothing() throws {
        let (o, p) = try pending()
        for status in [PaymentStatus.succeeded, .failed, .refundRequired, .refunded] {
            let seen = paidVersion(p, status)
            // A success for a failed payment is a late success (below), not a repeat.
            for outcome in [PaymentNotify.Outcome.success, .failed] where !(status == .failed && outcome == .success) {
                let d = try success(rules.notify(Fx.notice(p, outcome), payment: seen, order: o, stock: 10, now: now))
                XCTAssertEqual(d, Decision(), "\(status) \(outcome)")
                XCTAssertTrue(d.isEmpty)
                XCTAssertTrue(d.preconditions.isEmpty)
                let orphan = try success(rules.notify(Fx.notice(p, outcome), payment: seen, order: nil, stock: 10, now: now))
                XCTAssertEqual(orphan, Decision())
            }
        }
    }

    func testSecondIdenticalNotifyAfterApplyingIsEmpty() throws {
        let (o, p) = try pending()
        let first = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 10, now: now))
        let (savedP, savedO) = (try XCTUnwrap(first.savedPayment), try XCTUnwrap(first.savedOrder))
        XCTAssertEqual(try success(rules.notify(Fx.notice(p), payment: savedP, order: savedO, stock: 9, now: now + 1)), Decision())
    }

    // MARK: Failed

    func testFailedMarksOnlyThePaymentFailed() throws {
        let (o, p) = try pending()
        let d = try success(rules.notify(Fx.notice(p, .failed, tradeNo: "T-7"), payment: p, order: o, stock: 10, now: now))
        XCTAssertEqual(d.preconditions, [.paymentVersion("pay-1", 1), .orderVersion("o-1", 1)])
        XCTAssertEqual(d.effects, [.savePayment(paidVersion(p, .failed, tradeNo: "T-7"))])
        XCTAssertNil(d.savedOrder)
    }

    func testFailedWithoutTradeNumber() throws {
        let (o, p) = try pending()
        let d = try success(rules.notify(Fx.notice(p, .failed, tradeNo: ""), payment: p, order: o, stock: 10, now: now))
        XCTAssertEqual(d.effects, [.savePayment(paidVersion(p, .failed, tradeNo: nil))])
    }

    func testFailedOnAPaidOrderOnlyFailsThatPayment() throws {
        let (o, _) = try pending(Fx.request(.friendpay, friend: "u2"))
        let late = try makePayment(o, payer: "u9", id: "pay-2")
        let (delivered, _) = try pay(o, payer: "u2")
        let d = try success(rules.notify(Fx.notice(late, .failed), payment: late, order: delivered, stock: 10, now: now))
        XCTAssertEqual(d.preconditions, [.paymentVersion("pay-2", 1), .orderVersion("o-1", 2)])
        XCTAssertEqual(d.effects, [.savePayment(paidVersion(late, .failed))])
    }

    // MARK: Success, normal

    func testSuccessDeliversNormalOrder() throws {
        let (o, p) = try pending(Fx.request(quantity: 2))
        let d = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 5, now: now))
        let delivered = paidOrder(o, .delivered, by: "u1", at: now)
        XCTAssertEqual(d.preconditions, [.paymentVersion("pay-1", 1), .orderVersion("o-1", 1), .stockAtLeast(product: "p1", 2)])
        assertEffects(d, [
            .savePayment(paidVersion(p, .succeeded)),
            .unschedule(order: "o-1", .payment),
            .allocateKeys(order: "o-1", product: "p1", count: 2),
            .saveOrder(delivered),
            .membership(product: "p1", user: "u1", delta: 1),
            .awardPoints(user: "u1", order: "o-1", amount: delivered.amount),
            Fx.statusPush("u1", delivered),
        ])
        XCTAssertEqual(d.savedOrder?.status, .delivered)
        XCTAssertEqual(d.savedOrder?.owner, "u1")
        XCTAssertEqual(d.savedPayment?.status, .succeeded)
    }

    func testStockExactlyEnoughDelivers() throws {
        let (o, p) = try pending(Fx.request(quantity: 3))
        let d = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 3, now: now))
        XCTAssertEqual(d.savedOrder?.status, .delivered)
        XCTAssertTrue(d.preconditions.contains(.stockAtLeast(product: "p1", 3)))
        XCTAssertTrue(d.effects.contains(.allocateKeys(order: "o-1", product: "p1", count: 3)))
    }

    func testTooLittleStockIsAbnormalWithoutKeys() throws {
        let (o, p) = try pending(Fx.request(quantity: 3))
        for stock in [0, 2] {
            let d = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: stock, now: now))
            let abnormal = paidOrder(o, .abnormal, by: "u1", at: now)
            XCTAssertEqual(d.preconditions, [.paymentVersion("pay-1", 1), .orderVersion("o-1", 1), .stockBelow(product: "p1", 3)])
            assertEffects(d, [
                .savePayment(paidVersion(p, .succeeded)),
                .unschedule(order: "o-1", .payment),
                .saveOrder(abnormal),
                Fx.statusPush("u1", abnormal),
            ])
        }
    }

    // MARK: Success, friend pay

    func testFriendpaySuccessDeliversToRequester() throws {
        let (o, p) = try pending(Fx.request(.friendpay, quantity: 2, friend: "u2"))
        XCTAssertEqual(p.payer, "u2")
        let d = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 5, now: now))
        let delivered = paidOrder(o, .delivered, by: "u2", at: now)
        XCTAssertEqual(delivered.owner, "u1")
        XCTAssertEqual(d.preconditions, [.paymentVersion("pay-1", 1), .orderVersion("o-1", 1), .stockAtLeast(product: "p1", 2)])
        assertEffects(d, [
            .savePayment(paidVersion(p, .succeeded)),
            .unschedule(order: "o-1", .payment),
            .allocateKeys(order: "o-1", product: "p1", count: 2),
            .saveOrder(delivered),
            .membership(product: "p1", user: "u1", delta: 1),
            .awardPoints(user: "u1", order: "o-1", amount: delivered.amount),
            Fx.statusPush("u1", delivered),
            Fx.statusPush("u2", delivered),
            .push(user: "u1", type: "friendpay.paid", data: .object([("order", .string("o-1")), ("by", .string("u2"))])),
            .push(user: "u2", type: "friendpay.receipt", data: .object([
                ("order", .string("o-1")), ("for", .string("u1")), ("amount", .int(3998)), ("currency", .string("CNY")),
            ])),
        ])
    }

    func testFriendpayPaidByAStrangerConcernsRequesterAndPayerOnly() throws {
        let o = try create(Fx.request(.friendpay, friend: "u2"))
        let p = try makePayment(o, payer: "u9")
        let d = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 5, now: now))
        XCTAssertEqual(d.pushes("order.status").map(\.user), ["u1", "u9"])
        XCTAssertEqual(d.pushes("friendpay.paid"), [Push(user: "u1", type: "friendpay.paid",
                                                         data: .object([("order", .string("o-1")), ("by", .string("u9"))]))])
        XCTAssertEqual(d.pushes("friendpay.receipt").map(\.user), ["u9"])
        XCTAssertFalse(d.pushes.contains { $0.user == "u2" }, "the named friend who did not pay hears nothing")
        XCTAssertTrue(d.effects.contains(.membership(product: "p1", user: "u1", delta: 1)))
        XCTAssertFalse(d.effects.contains(.membership(product: "p1", user: "u9", delta: 1)), "the payer gets no membership")
    }

    func testFriendpayAbnormalStillSendsReceipt() throws {
        let (o, p) = try pending(Fx.request(.friendpay, friend: "u2"))
        let d = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 0, now: now))
        let abnormal = paidOrder(o, .abnormal, by: "u2", at: now)
        assertEffects(d, [
            .savePayment(paidVersion(p, .succeeded)),
            .unschedule(order: "o-1", .payment),
            .saveOrder(abnormal),
            Fx.statusPush("u1", abnormal),
            Fx.statusPush("u2", abnormal),
            .push(user: "u2", type: "friendpay.receipt", data: .object([
                ("order", .string("o-1")), ("for", .string("u1")), ("amount", .int(1999)), ("currency", .string("CNY")),
            ])),
        ])
    }

    // MARK: Success, gift

    func testGiftSuccessIsPaidAndAnnounced() throws {
        let (o, p) = try pending(Fx.request(.gift, quantity: 2, giftTo: "u3", message: "Happy birthday"))
        let d = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 5, now: now))
        var paid = paidOrder(o, .paid, by: "u1", at: now)
        let expires = now + Fx.giftTTL
        paid.gift?.expiresAt = expires
        XCTAssertEqual(paid.owner, "u1", "a gift is owned by its buyer until claimed")
        XCTAssertEqual(paid.gift?.status, .pending)
        XCTAssertEqual(d.preconditions, [.paymentVersion("pay-1", 1), .orderVersion("o-1", 1), .stockAtLeast(product: "p1", 2)])
        assertEffects(d, [
            .savePayment(paidVersion(p, .succeeded)),
            .unschedule(order: "o-1", .payment),
            .allocateKeys(order: "o-1", product: "p1", count: 2),
            .saveOrder(paid),
            .schedule(order: "o-1", .gift, at: expires),
            Fx.statusPush("u1", paid),
            .push(user: "u1", type: "gift.created", data: .object([
                ("order", .string("o-1")), ("code", .string("g-1")), ("to", .string("u3")), ("expires_at", .int(expires)),
            ])),
            .push(user: "u3", type: "gift.received", data: .object([
                ("order", .string("o-1")), ("code", .string("g-1")), ("from", .string("u1")), ("product", .string("p1")),
                ("title", .string("Steam key")), ("message", .string("Happy birthday")), ("expires_at", .int(expires)),
            ])),
        ])
        XCTAssertFalse(d.effects.contains { if case .membership = $0 { true } else { false } }, "membership waits for the claim")
    }

    func testGiftWithoutRecipientOnlyTellsBuyer() throws {
        let (o, p) = try pending(Fx.request(.gift))
        let d = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 5, now: now))
        XCTAssertEqual(d.pushes.map(\.user), ["u1", "u1"])
        XCTAssertEqual(d.pushes("gift.created").first?.data, .object([
            ("order", .string("o-1")), ("code", .string("g-1")), ("expires_at", .int(now + Fx.giftTTL)),
        ]))
        XCTAssertTrue(d.pushes("gift.received").isEmpty)
    }

    func testGiftWithoutMessage() throws {
        let (o, p) = try pending(Fx.request(.gift, giftTo: "u3"))
        let d = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 5, now: now))
        XCTAssertEqual(d.pushes("gift.received").first?.data, .object([
            ("order", .string("o-1")), ("code", .string("g-1")), ("from", .string("u1")), ("product", .string("p1")),
            ("title", .string("Steam key")), ("expires_at", .int(now + Fx.giftTTL)),
        ]))
    }

    func testGiftWithTooLittleStockIsAbnormal() throws {
        let (o, p) = try pending(Fx.request(.gift, quantity: 2, giftTo: "u3"))
        let d = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 1, now: now))
        let abnormal = paidOrder(o, .abnormal, by: "u1", at: now)
        XCTAssertEqual(d.preconditions, [.paymentVersion("pay-1", 1), .orderVersion("o-1", 1), .stockBelow(product: "p1", 2)])
        assertEffects(d, [
            .savePayment(paidVersion(p, .succeeded)),
            .unschedule(order: "o-1", .payment),
            .saveOrder(abnormal),
            Fx.statusPush("u1", abnormal),
        ])
        XCTAssertNil(abnormal.gift?.expiresAt)
    }

    // MARK: Canceled orders and the grace period

    func canceled(_ r: OrderRequest = Fx.request(), at: Int64) throws -> (Order, Payment) {
        let (o, p) = try pending(r)
        let d = Fx.rules.expire(o, .payment, payment: nil, now: at)
        return (try XCTUnwrap(d.savedOrder), p)
    }

    func testSuccessWithinGraceStillPays() throws {
        let cancelAt = Fx.t0 + Fx.orderTTL
        let (o, p) = try canceled(at: cancelAt)
        XCTAssertEqual(o.status, .canceled)
        XCTAssertEqual(o.canceledAt, cancelAt)
        for at in [cancelAt + 1, cancelAt + Fx.grace] {
            let d = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 5, now: at))
            let delivered = paidOrder(o, .delivered, by: "u1", at: at)
            XCTAssertEqual(d.preconditions, [.paymentVersion("pay-1", 1), .orderVersion("o-1", 2), .stockAtLeast(product: "p1", 1)])
            assertEffects(d, [
                .savePayment(paidVersion(p, .succeeded, at: at)),
                .unschedule(order: "o-1", .payment),
                .allocateKeys(order: "o-1", product: "p1", count: 1),
                .saveOrder(delivered),
                .membership(product: "p1", user: "u1", delta: 1),
                .awardPoints(user: "u1", order: "o-1", amount: delivered.amount),
                Fx.statusPush("u1", delivered),
            ])
        }
    }

    func testGiftWithinGraceIsPaid() throws {
        let (o, p) = try canceled(Fx.request(.gift, giftTo: "u3"), at: Fx.t0 + Fx.orderTTL)
        let at = Fx.t0 + Fx.orderTTL + 10
        let d = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 5, now: at))
        XCTAssertEqual(d.savedOrder?.status, .paid)
        XCTAssertTrue(d.effects.contains(.schedule(order: "o-1", .gift, at: at + Fx.giftTTL)))
        XCTAssertEqual(d.pushes("gift.received").map(\.user), ["u3"])
    }

    func testShopCanceledOrderWithinGraceIsPaid() throws {
        let (o, p) = try pending()
        let c = try XCTUnwrap(try success(rules.cancel(o, now: Fx.t0 + 10)).savedOrder)
        let d = try success(rules.notify(Fx.notice(p), payment: p, order: c, stock: 5, now: Fx.t0 + 10 + Fx.grace))
        XCTAssertEqual(d.savedOrder?.status, .delivered)
    }

    func testSuccessBeyondGraceRefundsThePayment() throws {
        let cancelAt = Fx.t0 + Fx.orderTTL
        let (o, p) = try canceled(at: cancelAt)
        let d = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 5, now: cancelAt + Fx.grace + 1))
        let refunded = paidVersion(p, .refundRequired, at: cancelAt + Fx.grace + 1)
        XCTAssertEqual(d.preconditions, [.paymentVersion("pay-1", 1), .orderVersion("o-1", 2)])
        assertEffects(d, [.savePayment(refunded), Fx.refundRequiredPush(refunded, reason: "order canceled")])
        XCTAssertEqual(d.pushes("payment.refund_required").first?.data, .object([
            ("payment", .string("pay-1")), ("order", .string("o-1")), ("amount", .int(1999)),
            ("currency", .string("CNY")), ("reason", .string("order canceled")),
        ]))
        XCTAssertNil(d.savedOrder, "the canceled order stays as it is")
    }

    func testGraceCountsFromExpiryWhenNoCancelTimeWasKept() throws {
        let (o, p) = try pending()
        var c = o
        c.status = .canceled
        c.canceledAt = nil
        let within = try success(rules.notify(Fx.notice(p), payment: p, order: c, stock: 5, now: o.expiresAt + Fx.grace))
        XCTAssertEqual(within.savedOrder?.status, .delivered)
        let beyond = try success(rules.notify(Fx.notice(p), payment: p, order: c, stock: 5, now: o.expiresAt + Fx.grace + 1))
        XCTAssertNil(beyond.savedOrder)
        XCTAssertEqual(beyond.savedPayment?.status, .refundRequired)
    }

    func testFriendpayExpiredRequestPaidWithinGrace() throws {
        let (o, p) = try canceled(Fx.request(.friendpay, friend: "u2"), at: Fx.t0 + Fx.friendpayTTL)
        let d = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 5, now: Fx.t0 + Fx.friendpayTTL + 5))
        XCTAssertEqual(d.savedOrder?.status, .delivered)
        XCTAssertEqual(d.savedOrder?.owner, "u1")
        XCTAssertEqual(d.pushes("friendpay.paid").map(\.user), ["u1"])
    }

    // MARK: Later payments of a paid order

    func testSecondSuccessForAnotherPaymentIsRefunded() throws {
        let o = try create(Fx.request(.friendpay, friend: "u2"))
        let first = try makePayment(o, payer: "u2", id: "pay-1")
        let second = try makePayment(o, payer: "u9", id: "pay-2")
        let d1 = try success(rules.notify(Fx.notice(first), payment: first, order: o, stock: 5, now: now))
        let delivered = try XCTUnwrap(d1.savedOrder)
        XCTAssertEqual(delivered.payment, "pay-1")
        let d2 = try success(rules.notify(Fx.notice(second, tradeNo: "T-2"), payment: second, order: delivered, stock: 4, now: now + 1))
        let refunded = paidVersion(second, .refundRequired, tradeNo: "T-2", at: now + 1)
        XCTAssertEqual(d2.preconditions, [.paymentVersion("pay-2", 1), .orderVersion("o-1", 2)])
        XCTAssertEqual(NotifyOutcome(d2), .refundRequired)
        assertEffects(d2, [
            .savePayment(refunded),
            .push(user: "u9", type: "payment.refund_required", data: .object([
                ("payment", .string("pay-2")), ("order", .string("o-1")), ("amount", .int(1999)),
                ("currency", .string("CNY")), ("reason", .string("order already paid")),
            ])),
        ])
    }

    func testSuccessAfterPaymentOfAnyOtherStatusIsRefunded() throws {
        let o = try create(Fx.request(.friendpay, friend: "u2"))
        let late = try makePayment(o, payer: "u9", id: "pay-2")
        let cases: [(OrderStatus, String)] = [(.paid, "order already paid"), (.delivered, "order already paid"),
                                              (.abnormal, "order already paid"), (.refunded, "order refunded")]
        for (status, reason) in cases {
            var moved = paidOrder(o, status, by: "u2", at: now)
            moved.version = 7
            let d = try success(rules.notify(Fx.notice(late), payment: late, order: moved, stock: 5, now: now))
            XCTAssertEqual(d.preconditions, [.paymentVersion("pay-2", 1), .orderVersion("o-1", 7)], "\(status)")
            let owed = paidVersion(late, .refundRequired)
            assertEffects(d, [.savePayment(owed), Fx.refundRequiredPush(owed, reason: reason)])
        }
    }

    func testCanceledOrderThatWasPaidIsNotPaidTwice() throws {
        // A canceled order that somehow holds a payment is not in grace: the new payment is refunded.
        let (o, p) = try canceled(at: Fx.t0 + Fx.orderTTL)
        var c = o
        c.payment = "pay-0"
        let d = try success(rules.notify(Fx.notice(p), payment: p, order: c, stock: 5, now: Fx.t0 + Fx.orderTTL + 1))
        XCTAssertNil(d.savedOrder)
        XCTAssertEqual(d.savedPayment?.status, .refundRequired)
    }

    func testPreconditionsAlwaysHoldBothVersions() throws {
        let (o, p) = try pending()
        var q = p
        q.version = 4
        var r = o
        r.version = 9
        for outcome in [PaymentNotify.Outcome.success, .failed] {
            for stock in [0, 5] {
                let d = try success(rules.notify(Fx.notice(q, outcome), payment: q, order: r, stock: stock, now: now))
                XCTAssertEqual(Array(d.preconditions.prefix(2)), [.paymentVersion("pay-1", 4), .orderVersion("o-1", 9)])
                XCTAssertEqual(d.savedPayment?.version, 5)
                if let saved = d.savedOrder { XCTAssertEqual(saved.version, 10) }
            }
        }
    }
}
