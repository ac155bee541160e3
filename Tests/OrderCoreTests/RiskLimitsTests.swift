import XCTest
import GatewayProtocol
@testable import OrderCore

/// Risk limits (contract 4.6): what an order counts against, and which decisions free its place.
final class RiskLimitsTests: XCTestCase {
    let limits = RiskLimits(maxPendingOrders: 5, maxRequestsPerHour: 20)

    func testOnlyGiftAndFriendPayOrdersCountAgainstTheHourlyLimit() {
        let normal = limits.reservation(order: "o-1", buyer: "u1", kind: .normal, payWindowMs: 900_000)
        XCTAssertEqual(normal, RiskReservation(order: "o-1", buyer: "u1", maxPending: 5, maxRequests: 0,
                                               payWindowMs: 900_000, windowMs: 3_600_000))
        for kind in [OrderKind.gift, .friendpay] {
            XCTAssertEqual(limits.reservation(order: "o-1", buyer: "u1", kind: kind, payWindowMs: 1)?.maxRequests, 20, "\(kind)")
        }
    }

    func testNoLimitInForceTakesNoPlace() {
        let off = RiskLimits(maxPendingOrders: 0, maxRequestsPerHour: 0)
        XCTAssertNil(off.reservation(order: "o-1", buyer: "u1", kind: .gift, payWindowMs: 1))
        let hourlyOnly = RiskLimits(maxPendingOrders: 0, maxRequestsPerHour: 3)
        XCTAssertNil(hourlyOnly.reservation(order: "o-1", buyer: "u1", kind: .normal, payWindowMs: 1), "a normal order counts nowhere")
        XCTAssertEqual(hourlyOnly.reservation(order: "o-1", buyer: "u1", kind: .friendpay, payWindowMs: 1)?.maxPending, 0)
    }

    func testPayingCancelingAndExpiringFreeThePlaceAndNothingElseDoes() throws {
        let created = try success(Fx.rules.create(Fx.request(), product: Fx.product, now: Fx.t0, fresh: Fx.fresh))
        XCTAssertTrue(RiskLimits.leftPending(created).isEmpty, "a new order is pending")
        let order = try XCTUnwrap(created.savedOrder)

        let (paid, _) = try pay(order, payer: "u1")
        let payment = try makePayment(order, payer: "u1")
        let notified = try success(Fx.rules.notify(Fx.notice(payment), payment: payment, order: order, stock: 10, now: Fx.t0 + 2000))
        XCTAssertEqual(paid.status, .delivered)
        XCTAssertEqual(RiskLimits.leftPending(notified).map(\.order), ["o-1"])
        XCTAssertEqual(RiskLimits.leftPending(notified).map(\.buyer), ["u1"], "the buyer's place, whoever paid")
        let abnormal = try success(Fx.rules.notify(Fx.notice(payment), payment: payment, order: order, stock: 0, now: Fx.t0 + 2000))
        XCTAssertEqual(abnormal.savedOrder?.status, .abnormal)
        XCTAssertEqual(RiskLimits.leftPending(abnormal).map(\.order), ["o-1"], "paid without stock is no longer unpaid")
        let failed = try success(Fx.rules.notify(Fx.notice(payment, .failed), payment: payment, order: order, stock: 10, now: Fx.t0 + 2000))
        XCTAssertTrue(RiskLimits.leftPending(failed).isEmpty, "a failed payment leaves the order unpaid")

        let canceled = try success(Fx.rules.cancel(order, now: Fx.t0 + 5000))
        XCTAssertEqual(RiskLimits.leftPending(canceled).map(\.order), ["o-1"])
        let expired = Fx.rules.expire(order, .payment, payment: nil, now: order.expiresAt)
        XCTAssertEqual(RiskLimits.leftPending(expired).map(\.order), ["o-1"])
        let early = Fx.rules.expire(order, .payment, payment: nil, now: order.expiresAt - 1)
        XCTAssertTrue(RiskLimits.leftPending(early).isEmpty, "a timer put back changes nothing")

        let refunded = try success(Fx.rules.refund(paid, payment: nil, now: Fx.t0 + 9000))
        XCTAssertTrue(RiskLimits.leftPending(refunded).isEmpty, "a refund of a paid order frees nothing (again)")
    }

    func testAGiftClaimFreesNothing() throws {
        let gift = try create(Fx.request(.gift, giftTo: "u2"))
        let (paid, _) = try pay(gift, payer: "u1")
        XCTAssertEqual(paid.status, .paid)
        let claimed = try success(Fx.rules.claim(paid, by: "u2", now: Fx.t0 + 3000))
        XCTAssertTrue(RiskLimits.leftPending(claimed).isEmpty)
    }

    func testARefusalIs429WithWhenToRetry() {
        let pending = RiskRefusal.pendingOrders(limit: 5, retryAfterMs: 1234).error
        XCTAssertEqual(pending.code, .rateLimited)
        XCTAssertEqual(pending.code.httpStatus, 429)
        XCTAssertEqual(pending.retryAfterMs, 1234)
        XCTAssertTrue(pending.temporary)
        XCTAssertTrue(pending.message.contains("5 unpaid orders"), pending.message)
        let hourly = RiskRefusal.requestsPerHour(limit: 20, retryAfterMs: 0).error
        XCTAssertEqual(hourly.retryAfterMs, 1, "never 0: a client would retry at once and be refused again")
        XCTAssertTrue(hourly.message.contains("20 gift and friend-pay orders"), hourly.message)
    }
}
