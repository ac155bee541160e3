import XCTest
import GatewayProtocol
@testable import OrderCore

/// The event log's half of each decision (contract 4.4): which events, in which order,
/// keyed by the order, written by the same decision as the change they tell of.
final class EventTests: XCTestCase {
    func types(_ d: Decision) -> [String] { d.events.map(\.type.rawValue) }

    /// Events leave the gateway (webhooks): no card key id, gift code or pay code in them.
    func assertNoSecrets(_ d: Decision, file: StaticString = #filePath, line: UInt = #line) {
        for e in d.events {
            let text = e.data.serialized()
            for secret in ["k-", "g-1", "f-1", "\"keys\"", "\"code\""] {
                XCTAssertFalse(text.contains(secret), "\(e.type.rawValue) carries \(secret): \(text)", file: file, line: line)
            }
        }
    }

    func notify(_ o: Order, _ p: Payment, _ outcome: PaymentNotify.Outcome = .success, stock: Int = 100,
                now: Int64 = Fx.t0 + 2000) throws -> Decision {
        try success(Fx.rules.notify(Fx.notice(p, outcome), payment: p, order: o, stock: stock, now: now))
    }

    func testPaidOrderWritesPaidThenDelivered() throws {
        let o = try create(Fx.request())
        let p = try makePayment(o, payer: "u1")
        let d = try notify(o, p)
        XCTAssertEqual(types(d), ["order.paid", "order.delivered"])
        XCTAssertEqual(d.events.map(\.key), [o.id, o.id], "ordered by the order")
        XCTAssertEqual(d.events.map(\.createdAt), [Fx.t0 + 2000, Fx.t0 + 2000])
        let data = try XCTUnwrap(d.events.first?.data)
        XCTAssertEqual(data["status"]?.stringValue, "delivered", "the order as the decision saved it")
        XCTAssertEqual(data["payment"]?.stringValue, p.id)
        XCTAssertEqual(data["paid_by"]?.stringValue, "u1")
        XCTAssertEqual(data["amount"]?.intValue, 1999)
        assertNoSecrets(d)
    }

    func testShortStockWritesPaidThenAbnormal() throws {
        let o = try create(Fx.request())
        let d = try notify(o, try makePayment(o, payer: "u1"), stock: 0)
        XCTAssertEqual(types(d), ["order.paid", "order.abnormal"])
    }

    func testGiftIsPaidThenClaimedAndDelivered() throws {
        let o = try create(Fx.request(.gift, giftTo: "u2"))
        let p = try makePayment(o, payer: "u1")
        let paid = try notify(o, p)
        XCTAssertEqual(types(paid), ["order.paid"], "a gift stays paid until claimed")
        assertNoSecrets(paid)
        let (order, _) = try pay(o, payer: "u1")
        let claim = try success(Fx.rules.claim(order, by: "u2", now: Fx.t0 + 3000))
        XCTAssertEqual(types(claim), ["gift.claimed", "order.delivered"])
        XCTAssertEqual(claim.events.first?.data["by"]?.stringValue, "u2")
        assertNoSecrets(claim)
    }

    func testFriendPayWritesFriendpayPaidAndASecondPaymentIsOwedBack() throws {
        let o = try create(Fx.request(.friendpay, friend: "u2"))
        let first = try makePayment(o, payer: "u2")
        let d = try notify(o, first)
        XCTAssertEqual(types(d), ["order.paid", "order.delivered", "friendpay.paid"])
        XCTAssertEqual(d.events.last?.data["payment"]?.stringValue, first.id)
        assertNoSecrets(d)
        let (paidOrder, _) = try pay(o, payer: "u2")
        let second = try makePayment(o, payer: "u3", id: "pay-2")
        let late = try notify(paidOrder, second)
        XCTAssertEqual(types(late), ["payment.refund_required"])
        XCTAssertEqual(late.events[0].key, o.id)
        XCTAssertEqual(late.events[0].data["payment"]?.stringValue, "pay-2")
        XCTAssertEqual(late.events[0].data["reason"]?.stringValue, "order already paid")
    }

    /// Every path where money must go back writes `payment.refund_required` for the right
    /// payment, after the change that caused it.
    func testEveryRefundPathWritesRefundRequiredLast() throws {
        let gift = try create(Fx.request(.gift, giftTo: "u2"))
        let (paidGift, giftPayment) = try pay(gift, payer: "u1")
        let declined = try success(Fx.rules.decline(paidGift, by: "u2", payment: giftPayment, now: Fx.t0 + 3000))
        XCTAssertEqual(types(declined), ["gift.declined", "order.refunded", "payment.refund_required"])
        XCTAssertEqual(declined.events.last?.data["reason"]?.stringValue, "gift declined")

        let expiry = try XCTUnwrap(paidGift.gift?.expiresAt)
        let expired = Fx.rules.expire(paidGift, .gift, payment: giftPayment, now: expiry + 1)
        XCTAssertEqual(types(expired), ["gift.expired", "order.refunded", "payment.refund_required"])
        XCTAssertEqual(expired.events.last?.data["reason"]?.stringValue, "gift expired")

        let normal = try create(Fx.request())
        let (delivered, payment) = try pay(normal, payer: "u1")
        let refund = try success(Fx.rules.refund(delivered, payment: payment, now: Fx.t0 + 3000))
        XCTAssertEqual(types(refund), ["order.refunded", "payment.refund_required"])
        XCTAssertEqual(refund.events.last?.data["payment"]?.stringValue, payment.id)
        XCTAssertEqual(refund.events.last?.data["reason"]?.stringValue, "refunded by the shop")

        let toCancel = try create(Fx.request())
        let paidLate = try makePayment(toCancel, payer: "u1", id: "pay-3")
        let canceled = try XCTUnwrap(try success(Fx.rules.cancel(toCancel, now: Fx.t0 + 1000)).savedOrder)
        let afterGrace = try notify(canceled, paidLate, now: Fx.t0 + 1000 + Fx.grace + 1)
        XCTAssertEqual(types(afterGrace), ["payment.refund_required"])
        XCTAssertEqual(afterGrace.events[0].data["reason"]?.stringValue, "order canceled")
    }

    func testCancelAndExpiryWriteCanceled() throws {
        let o = try create(Fx.request())
        XCTAssertEqual(types(try success(Fx.rules.cancel(o, now: Fx.t0 + 1000))), ["order.canceled"])
        XCTAssertEqual(types(Fx.rules.expire(o, .payment, payment: nil, now: o.expiresAt)), ["order.canceled"])
        XCTAssertEqual(types(Fx.rules.expire(o, .payment, payment: nil, now: o.expiresAt - 1)), [], "not due: put back, nothing told")
    }

    func testCreationARepeatAFailureAndTheRefundedCallWriteNoEvent() throws {
        let created = try success(Fx.rules.create(Fx.request(), product: Fx.product, now: Fx.t0, fresh: Fx.fresh))
        XCTAssertEqual(types(created), [])
        let o = try XCTUnwrap(created.savedOrder)
        let p = try makePayment(o, payer: "u1")
        XCTAssertEqual(types(try notify(o, p, .failed)), [])
        let (paid, payment) = try pay(o, payer: "u1")
        XCTAssertEqual(types(try notify(paid, payment)), [], "a repeat changes nothing and tells nothing")
        let refunded = try success(Fx.rules.refund(paid, payment: payment, now: Fx.t0 + 3000))
        let owed = try XCTUnwrap(refunded.savedPayment)
        XCTAssertEqual(types(try success(Fx.rules.markRefunded(owed, id: owed.id, refundNo: "R-1", now: Fx.t0 + 4000))), [])
    }
}
