import XCTest
import GatewayProtocol
@testable import OrderCore

/// `OrderRules.claim`, `OrderRules.decline` and the gift timer.
final class GiftTests: XCTestCase {
    let rules = Fx.rules
    let paidAt = Fx.t0 + 2000
    let later = Fx.t0 + 3_600_000

    /// A paid gift (version 2, two keys allocated) and its succeeded payment (version 2).
    func paidGift(to: String? = "u3", message: String? = nil) throws -> (Order, Payment) {
        let o = try create(Fx.request(.gift, quantity: 2, giftTo: to, message: message))
        let (paid, p) = try pay(o, payer: "u1", now: paidAt)
        XCTAssertEqual(paid.status, .paid)
        XCTAssertEqual(paid.version, 2)
        XCTAssertEqual(paid.keyIDs, ["k-o-1-1", "k-o-1-2"])
        XCTAssertEqual(p.status, .succeeded)
        return (paid, p)
    }

    func claimed(_ o: Order, by user: String) throws -> Order {
        try XCTUnwrap(try success(rules.claim(o, by: user, now: later)).savedOrder)
    }

    // MARK: Claim

    func testBuyerCannotClaim() throws {
        for to in ["u3", nil] as [String?] {
            let (o, _) = try paidGift(to: to)
            assertFailure(rules.claim(o, by: "u1", now: later), .forbidden)
        }
    }

    func testOnlyTheNamedRecipientClaims() throws {
        let (o, _) = try paidGift(to: "u3")
        assertFailure(rules.claim(o, by: "u4", now: later), .forbidden)
    }

    func testClaimByRecipient() throws {
        let (o, _) = try paidGift(to: "u3")
        let d = try success(rules.claim(o, by: "u3", now: later))
        var expected = o
        expected.owner = "u3"
        expected.status = .delivered
        expected.gift?.status = .claimed
        expected.version = 3
        XCTAssertEqual(d.preconditions, [.orderVersion("o-1", 2)])
        assertEffects(d, [
            .saveOrder(expected),
            .unschedule(order: "o-1", .gift),
            .membership(product: "p1", user: "u3", delta: 1),
            .awardPoints(user: "u3", order: "o-1", amount: expected.amount),
            .push(user: "u1", type: "gift.claimed", data: .object([("order", .string("o-1")), ("by", .string("u3"))])),
            Fx.statusPush("u1", expected),
            Fx.statusPush("u3", expected),
        ])
        XCTAssertEqual(d.savedOrder?.keyIDs, o.keyIDs, "the claim keeps the allocated keys")
        XCTAssertEqual(d.savedOrder?.gift?.expiresAt, o.gift?.expiresAt)
        XCTAssertEqual(d.savedOrder?.paidBy, "u1")
    }

    func testAnyoneWithTheCodeClaimsAnOpenGift() throws {
        let (o, _) = try paidGift(to: nil)
        let d = try success(rules.claim(o, by: "u7", now: later))
        XCTAssertEqual(d.savedOrder?.owner, "u7")
        XCTAssertEqual(d.savedOrder?.status, .delivered)
        XCTAssertTrue(d.effects.contains(.membership(product: "p1", user: "u7", delta: 1)))
        XCTAssertEqual(d.pushes("gift.claimed").first, Push(user: "u1", type: "gift.claimed",
                                                            data: .object([("order", .string("o-1")), ("by", .string("u7"))])))
    }

    func testSecondClaimIsGone() throws {
        let (o, _) = try paidGift(to: "u3")
        let done = try claimed(o, by: "u3")
        assertFailure(rules.claim(done, by: "u3", now: later + 1), .gone)
        let (open, _) = try paidGift(to: nil)
        let taken = try claimed(open, by: "u7")
        assertFailure(rules.claim(taken, by: "u7", now: later + 1), .gone)
        assertFailure(rules.claim(taken, by: "u8", now: later + 1), .gone)
    }

    func testDeclinedOrExpiredGiftIsGone() throws {
        let (o, p) = try paidGift(to: nil)
        let declined = try XCTUnwrap(try success(rules.decline(o, by: "u5", payment: p, now: later)).savedOrder)
        assertFailure(rules.claim(declined, by: "u5", now: later + 1), .gone)
        let due = try XCTUnwrap(o.gift?.expiresAt)
        let expired = try XCTUnwrap(rules.expire(o, .gift, payment: p, now: due).savedOrder)
        assertFailure(rules.claim(expired, by: "u5", now: due + 1), .gone)
    }

    /// Past its expiry a gift is gone even before the timer sweep has run.
    func testClaimOrDeclineAfterExpiryTimeIsGone() throws {
        let (o, p) = try paidGift(to: "u3")
        let expiry = paidAt + Fx.giftTTL
        XCTAssertNoThrow(try success(rules.claim(o, by: "u3", now: expiry - 1)))
        assertFailure(rules.claim(o, by: "u3", now: expiry), .gone)
        assertFailure(rules.decline(o, by: "u3", payment: p, now: expiry + 5), .gone)
    }

    func testUnpaidGiftIsConflict() throws {
        let o = try create(Fx.request(.gift, giftTo: "u3"))
        assertFailure(rules.claim(o, by: "u3", now: later), .conflict)
    }

    func testRefundedCanceledOrAbnormalGiftIsGone() throws {
        let (o, p) = try paidGift(to: "u3")
        let refunded = try XCTUnwrap(try success(rules.refund(o, payment: p, now: later)).savedOrder)
        XCTAssertEqual(refunded.status, .refunded)
        assertFailure(rules.claim(refunded, by: "u3", now: later + 1), .gone)
        for status in [OrderStatus.canceled, .abnormal] {
            var moved = o
            moved.status = status
            assertFailure(rules.claim(moved, by: "u3", now: later), .gone, "\(status)")
        }
    }

    func testClaimOfANonGiftIsNotFound() throws {
        let (o, _) = try pay(try create(Fx.request()), payer: "u1")
        assertFailure(rules.claim(o, by: "u3", now: later), .notFound)
        var odd = o
        odd.gift = Gift(code: "g-1", to: nil, message: nil, status: .pending, expiresAt: nil)
        assertFailure(rules.claim(odd, by: "u3", now: later), .notFound, "a gift record on a normal order")
    }

    // MARK: Decline

    func expectedDecline(_ o: Order, _ p: Payment, by: String, reasonStatus: GiftStatus, at: Int64? = nil) -> [Effect] {
        var saved = o
        saved.status = .refunded
        saved.gift?.status = reasonStatus
        saved.version = 3
        var refunded = p
        refunded.status = .refundRequired
        refunded.version = 3
        refunded.updatedAt = at ?? later
        var data: [(String, JSON)] = [("order", .string("o-1"))]
        if reasonStatus == .declined { data.append(("by", .string(by))) }
        return [
            .saveOrder(saved),
            .returnKeys(order: "o-1", product: "p1"),
            .unschedule(order: "o-1", .gift),
            .savePayment(refunded),
            Fx.refundRequiredPush(refunded, reason: reasonStatus == .declined ? "gift declined" : "gift expired"),
            .push(user: "u1", type: "gift.\(reasonStatus.rawValue)", data: .object(data)),
            Fx.statusPush("u1", saved),
        ]
    }

    func testRecipientDeclines() throws {
        let (o, p) = try paidGift(to: "u3")
        let d = try success(rules.decline(o, by: "u3", payment: p, now: later))
        XCTAssertEqual(d.preconditions, [.orderVersion("o-1", 2), .paymentVersion("pay-1", 2)])
        assertEffects(d, expectedDecline(o, p, by: "u3", reasonStatus: .declined))
        XCTAssertEqual(d.pushes("payment.refund_required").first?.data["reason"], .string("gift declined"))
        XCTAssertEqual(d.pushes("gift.declined").first?.data, .object([("order", .string("o-1")), ("by", .string("u3"))]))
        XCTAssertEqual(d.savedOrder?.owner, "u1")
        XCTAssertFalse(d.effects.contains { if case .burnKeys = $0 { true } else { false } }, "unrevealed keys go back, not burned")
        XCTAssertFalse(d.effects.contains { if case .membership = $0 { true } else { false } })
    }

    func testOnlyTheRecipientDeclinesANamedGift() throws {
        let (o, p) = try paidGift(to: "u3")
        assertFailure(rules.decline(o, by: "u4", payment: p, now: later), .forbidden)
        assertFailure(rules.decline(o, by: "u1", payment: p, now: later), .forbidden, "not even the buyer")
    }

    func testAnyoneDeclinesAnOpenGift() throws {
        for user in ["u5", "u1"] {
            let (o, p) = try paidGift(to: nil)
            let d = try success(rules.decline(o, by: user, payment: p, now: later))
            assertEffects(d, expectedDecline(o, p, by: user, reasonStatus: .declined))
        }
    }

    func testDeclineWithoutASucceededPaymentRefundsNoPayment() throws {
        let (o, p) = try paidGift(to: "u3")
        var notSucceeded: [Payment?] = [nil]
        for status in [PaymentStatus.created, .failed, .refundRequired, .refunded] {
            var q = p
            q.status = status
            notSucceeded.append(q)
        }
        for payment in notSucceeded {
            let d = try success(rules.decline(o, by: "u3", payment: payment, now: later))
            XCTAssertEqual(d.preconditions, [.orderVersion("o-1", 2)])
            XCTAssertNil(d.savedPayment)
            XCTAssertTrue(d.pushes("payment.refund_required").isEmpty)
            XCTAssertEqual(d.savedOrder?.status, .refunded)
            XCTAssertTrue(d.effects.contains(.returnKeys(order: "o-1", product: "p1")))
        }
    }

    func testDeclineAfterClaimIsGone() throws {
        let (o, p) = try paidGift(to: "u3")
        let done = try claimed(o, by: "u3")
        assertFailure(rules.decline(done, by: "u3", payment: p, now: later), .gone)
        let (open, op) = try paidGift(to: nil)
        let taken = try claimed(open, by: "u7")
        assertFailure(rules.decline(taken, by: "u8", payment: op, now: later), .gone)
    }

    func testDeclineTwiceIsGone() throws {
        let (o, p) = try paidGift(to: "u3")
        let d = try success(rules.decline(o, by: "u3", payment: p, now: later))
        let declined = try XCTUnwrap(d.savedOrder)
        assertFailure(rules.decline(declined, by: "u3", payment: d.savedPayment, now: later + 1), .gone)
    }

    func testDeclineOfUnpaidGiftIsConflict() throws {
        let o = try create(Fx.request(.gift, giftTo: "u3"))
        assertFailure(rules.decline(o, by: "u3", payment: nil, now: later), .conflict)
    }

    func testDeclineOfRefundedGiftIsGone() throws {
        let (o, p) = try paidGift(to: "u3")
        let refunded = try XCTUnwrap(try success(rules.refund(o, payment: p, now: later)).savedOrder)
        assertFailure(rules.decline(refunded, by: "u3", payment: nil, now: later + 1), .gone)
    }

    func testDeclineOfANonGiftIsNotFound() throws {
        let (o, p) = try pay(try create(Fx.request()), payer: "u1")
        assertFailure(rules.decline(o, by: "u3", payment: p, now: later), .notFound)
    }

    // MARK: Gift timer

    func testGiftTimerExpiresAnUnclaimedGift() throws {
        let (o, p) = try paidGift(to: "u3")
        let expiry = try XCTUnwrap(o.gift?.expiresAt)
        let d = rules.expire(o, .gift, payment: p, now: expiry)
        XCTAssertEqual(d.preconditions, [.orderVersion("o-1", 2), .paymentVersion("pay-1", 2)])
        assertEffects(d, expectedDecline(o, p, by: "", reasonStatus: .expired, at: expiry))
        XCTAssertEqual(d.pushes("gift.expired"), [Push(user: "u1", type: "gift.expired", data: .object([("order", .string("o-1"))]))])
        XCTAssertEqual(d.savedOrder?.gift?.status, .expired)
        XCTAssertEqual(d.pushes("payment.refund_required").first?.data["reason"], .string("gift expired"))
    }

    /// Two racing notifies each write the gift timer ahead at their own time; the loser's
    /// may be earlier than the order's due time and must not unwind a gift that is not due.
    func testAnEarlyGiftTimerIsPutBackAtTheGiftsDueTime() throws {
        let (o, p) = try paidGift(to: "u3")
        let due = try XCTUnwrap(o.gift?.expiresAt)
        let d = rules.expire(o, .gift, payment: p, now: due - 1)
        XCTAssertEqual(d, Decision(effects: [.schedule(order: o.id, .gift, at: due)]))
        XCTAssertNil(d.savedOrder)
    }

    func testGiftTimerLeavesOtherOrdersAlone() throws {
        let (o, p) = try paidGift(to: "u3")
        let claimedOrder = try claimed(o, by: "u3")
        let declined = try XCTUnwrap(try success(rules.decline(o, by: "u3", payment: p, now: later)).savedOrder)
        let unpaid = try create(Fx.request(.gift, giftTo: "u3"))
        var abnormal = o
        abnormal.status = .abnormal
        var inconsistent = o
        inconsistent.gift?.status = .claimed
        let (normal, np) = try pay(try create(Fx.request()), payer: "u1")
        for (name, order) in [("claimed", claimedOrder), ("declined", declined), ("unpaid", unpaid), ("abnormal", abnormal),
                              ("paid but not pending", inconsistent), ("normal", normal)] {
            XCTAssertEqual(rules.expire(order, .gift, payment: np, now: later + Fx.giftTTL), Decision(), name)
        }
    }
}
