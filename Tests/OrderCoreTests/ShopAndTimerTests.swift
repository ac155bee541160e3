import XCTest
import GatewayProtocol
@testable import OrderCore

/// The payment timer, `OrderRules.cancel` and `OrderRules.refund`.
final class PaymentTimerTests: XCTestCase {
    let rules = Fx.rules

    func canceledVersion(_ o: Order, at: Int64) -> Order {
        var c = o
        c.status = .canceled
        c.canceledAt = at
        c.version = o.version + 1
        return c
    }

    func testUnpaidNormalOrderExpires() throws {
        let o = try create(Fx.request(quantity: 2))
        let at = o.expiresAt
        let d = rules.expire(o, .payment, payment: nil, now: at)
        let c = canceledVersion(o, at: at)
        XCTAssertEqual(d.preconditions, [.orderVersion("o-1", 1)])
        assertEffects(d, [.saveOrder(c), Fx.statusPush("u1", c)])
        XCTAssertEqual(d.savedOrder?.status, .canceled)
        XCTAssertEqual(d.savedOrder?.canceledAt, at)
    }

    func testAnEarlyPaymentTimerIsPutBackAtTheOrdersDueTime() throws {
        let o = try create(Fx.request())
        let d = rules.expire(o, .payment, payment: nil, now: o.expiresAt - 1)
        XCTAssertEqual(d, Decision(effects: [.schedule(order: o.id, .payment, at: o.expiresAt)]))
        XCTAssertNil(d.savedOrder, "nothing is canceled before it is due")
    }

    func testUnpaidGiftExpires() throws {
        let o = try create(Fx.request(.gift, giftTo: "u3"))
        let d = rules.expire(o, .payment, payment: nil, now: o.expiresAt)
        let c = canceledVersion(o, at: o.expiresAt)
        assertEffects(d, [.saveOrder(c), Fx.statusPush("u1", c)])
        XCTAssertEqual(c.gift?.status, .pending)
    }

    func testFriendpayRequestExpiresToRequesterAndFriend() throws {
        let o = try create(Fx.request(.friendpay, friend: "u2"))
        XCTAssertEqual(o.expiresAt, Fx.t0 + Fx.friendpayTTL)
        let d = rules.expire(o, .payment, payment: nil, now: o.expiresAt)
        let c = canceledVersion(o, at: o.expiresAt)
        let data = JSON.object([("order", .string("o-1"))])
        XCTAssertEqual(d.preconditions, [.orderVersion("o-1", 1)])
        assertEffects(d, [
            .saveOrder(c),
            Fx.statusPush("u1", c),
            .push(user: "u1", type: "friendpay.expired", data: data),
            .push(user: "u2", type: "friendpay.expired", data: data),
        ])
    }

    func testFriendpayRequestWithoutFriendExpiresToRequester() throws {
        let o = try create(Fx.request(.friendpay))
        let d = rules.expire(o, .payment, payment: nil, now: o.expiresAt)
        XCTAssertEqual(d.pushes("friendpay.expired").map(\.user), ["u1"])
        XCTAssertEqual(d.pushes.count, 2)
    }

    func testPaymentTimerLeavesOrdersThatMovedOn() throws {
        for kind in OrderKind.allCases {
            let o = try create(Fx.request(kind, friend: kind == .friendpay ? "u2" : nil))
            for status in [OrderStatus.paid, .delivered, .canceled, .refunded, .abnormal] {
                var moved = o
                moved.status = status
                moved.version = 5
                XCTAssertEqual(rules.expire(moved, .payment, payment: nil, now: o.expiresAt), Decision(), "\(kind) \(status)")
            }
        }
        let (delivered, p) = try pay(try create(Fx.request()), payer: "u1")
        XCTAssertEqual(rules.expire(delivered, .payment, payment: p, now: delivered.expiresAt), Decision())
    }

    /// Timers are written ahead of the decision that schedules them: a gift timer can be
    /// seen while its order is still awaiting the payment that schedules it. Nothing changes.
    func testGiftTimerSeenBeforeItsPaymentLandedDecidesNothing() throws {
        let gift = try create(Fx.request(.gift, giftTo: "u2"))
        XCTAssertEqual(gift.status, .pendingPayment)
        XCTAssertEqual(rules.expire(gift, .gift, payment: nil, now: gift.expiresAt + Fx.giftTTL), Decision())
    }
}

final class CancelTests: XCTestCase {
    let rules = Fx.rules

    func testPendingOrderIsCanceled() throws {
        for kind in OrderKind.allCases {
            let o = try create(Fx.request(kind, friend: kind == .friendpay ? "u2" : nil))
            let d = try success(rules.cancel(o, now: Fx.t0 + 77))
            var c = o
            c.status = .canceled
            c.canceledAt = Fx.t0 + 77
            c.version = 2
            XCTAssertEqual(d.preconditions, [.orderVersion("o-1", 1)], "\(kind)")
            assertEffects(d, [.saveOrder(c), .unschedule(order: "o-1", .payment), Fx.statusPush("u1", c)])
        }
    }

    func testCancelIsIdempotent() throws {
        let o = try create(Fx.request())
        let c = try XCTUnwrap(try success(rules.cancel(o, now: Fx.t0 + 1)).savedOrder)
        XCTAssertEqual(try success(rules.cancel(c, now: Fx.t0 + 2)), Decision())
        let expired = try XCTUnwrap(rules.expire(o, .payment, payment: nil, now: o.expiresAt).savedOrder)
        XCTAssertEqual(try success(rules.cancel(expired, now: o.expiresAt + 1)), Decision())
    }

    func testOnlyUnpaidOrdersCancel() throws {
        let o = try create(Fx.request(.gift))
        for status in [OrderStatus.paid, .delivered, .refunded, .abnormal] {
            var moved = o
            moved.status = status
            assertFailure(rules.cancel(moved, now: Fx.t0), .conflict, "\(status)")
        }
    }
}

final class RefundTests: XCTestCase {
    let rules = Fx.rules
    let at = Fx.t0 + 86_400_000

    func refundedVersion(_ o: Order) -> Order {
        var r = o
        r.status = .refunded
        r.version = o.version + 1
        return r
    }

    func refundedVersion(_ p: Payment) -> Payment {
        var r = p
        r.status = .refundRequired
        r.version = p.version + 1
        r.updatedAt = at
        return r
    }

    func testRefundOfDeliveredOrderBurnsKeys() throws {
        let (o, p) = try pay(try create(Fx.request(quantity: 2)), payer: "u1")
        XCTAssertEqual(o.status, .delivered)
        let d = try success(rules.refund(o, payment: p, now: at))
        let r = refundedVersion(o)
        let rp = refundedVersion(p)
        XCTAssertEqual(d.preconditions, [.orderVersion("o-1", 2), .paymentVersion("pay-1", 2)])
        assertEffects(d, [
            .saveOrder(r),
            .burnKeys(order: "o-1", product: "p1"),
            .membership(product: "p1", user: "u1", delta: -1),
            .revokePoints(user: "u1", order: "o-1"),
            .savePayment(rp),
            Fx.refundRequiredPush(rp, reason: "refunded by the shop"),
            Fx.statusPush("u1", r),
        ])
        XCTAssertEqual(d.savedOrder?.keyIDs, o.keyIDs, "the order keeps the record of its burnt keys")
        XCTAssertEqual(d.effects.first, .saveOrder(r))
    }

    func testRefundOfClaimedGiftTakesMembershipFromClaimer() throws {
        let o = try create(Fx.request(.gift, giftTo: "u3"))
        let (paid, p) = try pay(o, payer: "u1")
        let delivered = try XCTUnwrap(try success(rules.claim(paid, by: "u3", now: Fx.t0 + 5000)).savedOrder)
        let d = try success(rules.refund(delivered, payment: p, now: at))
        let r = refundedVersion(delivered)
        let rp = refundedVersion(p)
        XCTAssertEqual(d.preconditions, [.orderVersion("o-1", 3), .paymentVersion("pay-1", 2)])
        assertEffects(d, [
            .saveOrder(r),
            .burnKeys(order: "o-1", product: "p1"),
            .membership(product: "p1", user: "u3", delta: -1),
            .revokePoints(user: "u3", order: "o-1"),
            .savePayment(rp),
            Fx.refundRequiredPush(rp, reason: "refunded by the shop"),
            Fx.statusPush("u1", r),
            Fx.statusPush("u3", r),
        ])
    }

    func testRefundOfFriendpayRefundsThePayerAndTakesMembershipFromRequester() throws {
        let o = try create(Fx.request(.friendpay, friend: "u2"))
        let (delivered, p) = try pay(o, payer: "u2")
        let d = try success(rules.refund(delivered, payment: p, now: at))
        let r = refundedVersion(delivered)
        let rp = refundedVersion(p)
        assertEffects(d, [
            .saveOrder(r),
            .burnKeys(order: "o-1", product: "p1"),
            .membership(product: "p1", user: "u1", delta: -1),
            .revokePoints(user: "u1", order: "o-1"),
            .savePayment(rp),
            Fx.refundRequiredPush(rp, reason: "refunded by the shop"),
            Fx.statusPush("u1", r),
            Fx.statusPush("u2", r),
        ])
        XCTAssertEqual(d.pushes("payment.refund_required").map(\.user), ["u2"])
    }

    func testRefundOfPaidGiftReturnsKeys() throws {
        let (paid, p) = try pay(try create(Fx.request(.gift, giftTo: "u3")), payer: "u1")
        XCTAssertEqual(paid.status, .paid)
        let d = try success(rules.refund(paid, payment: p, now: at))
        let r = refundedVersion(paid)
        let rp = refundedVersion(p)
        XCTAssertEqual(d.preconditions, [.orderVersion("o-1", 2), .paymentVersion("pay-1", 2)])
        assertEffects(d, [
            .saveOrder(r),
            .returnKeys(order: "o-1", product: "p1"),
            .unschedule(order: "o-1", .gift),
            .savePayment(rp),
            Fx.refundRequiredPush(rp, reason: "refunded by the shop"),
            Fx.statusPush("u1", r),
        ])
    }

    func testRefundOfAbnormalOrderTouchesNoKeys() throws {
        let (abnormal, p) = try pay(try create(Fx.request(quantity: 3)), payer: "u1", stock: 2)
        XCTAssertEqual(abnormal.status, .abnormal)
        XCTAssertEqual(abnormal.keyIDs, [])
        let d = try success(rules.refund(abnormal, payment: p, now: at))
        let r = refundedVersion(abnormal)
        let rp = refundedVersion(p)
        XCTAssertEqual(d.preconditions, [.orderVersion("o-1", 2), .paymentVersion("pay-1", 2)])
        assertEffects(d, [.saveOrder(r), .savePayment(rp), Fx.refundRequiredPush(rp, reason: "refunded by the shop"), Fx.statusPush("u1", r)])
    }

    func testRefundWithoutASucceededPayment() throws {
        let (o, p) = try pay(try create(Fx.request()), payer: "u1")
        var owed = p
        owed.status = .refundRequired
        var q = p
        q.status = .refunded
        for payment in [nil, owed, q] as [Payment?] {
            let d = try success(rules.refund(o, payment: payment, now: at))
            XCTAssertEqual(d.preconditions, [.orderVersion("o-1", 2)])
            XCTAssertNil(d.savedPayment)
            XCTAssertTrue(d.pushes("payment.refund_required").isEmpty)
            XCTAssertEqual(d.savedOrder?.status, .refunded)
        }
    }

    func testUnpaidOrdersCannotBeRefunded() throws {
        let o = try create(Fx.request())
        assertFailure(rules.refund(o, payment: nil, now: at), .conflict, "pending")
        let c = try XCTUnwrap(try success(rules.cancel(o, now: Fx.t0 + 1)).savedOrder)
        assertFailure(rules.refund(c, payment: nil, now: at), .conflict, "canceled")
    }

    func testRefundIsIdempotent() throws {
        let (o, p) = try pay(try create(Fx.request()), payer: "u1")
        let d = try success(rules.refund(o, payment: p, now: at))
        let r = try XCTUnwrap(d.savedOrder)
        XCTAssertEqual(try success(rules.refund(r, payment: d.savedPayment, now: at + 1)), Decision())
    }
}
