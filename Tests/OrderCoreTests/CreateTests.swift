import XCTest
import GatewayProtocol
@testable import OrderCore

/// `OrderRules.create` and `OrderRules.createPayment`.
final class CreateOrderTests: XCTestCase {
    let rules = Fx.rules

    func expectedOrder(_ kind: OrderKind, quantity: Int = 1, ttl: Int64) -> Order {
        Order(id: "o-1", kind: kind, buyer: "u1", owner: "u1", product: "p1", title: "Steam key", quantity: quantity,
              amount: 1999 * Int64(quantity), currency: "CNY", status: .pendingPayment, createdAt: Fx.t0,
              expiresAt: Fx.t0 + ttl, keyIDs: [], version: 1)
    }

    func testUnknownProductIsNotFound() {
        assertFailure(rules.create(Fx.request(), product: nil, now: Fx.t0, fresh: Fx.fresh), .notFound)
    }

    func testNormalOrder() throws {
        let d = try success(rules.create(Fx.request(quantity: 3), product: Fx.product, now: Fx.t0, fresh: Fx.fresh))
        let o = expectedOrder(.normal, quantity: 3, ttl: Fx.orderTTL)
        XCTAssertEqual(o.amount, 5997)
        XCTAssertEqual(d.preconditions, [.orderAbsent("o-1")])
        assertEffects(d, [
            .saveOrder(o),
            .schedule(order: "o-1", .payment, at: Fx.t0 + 900_000),
            .push(user: "u1", type: "order.status", data: .object([
                ("order", .string("o-1")), ("product", .string("p1")), ("kind", .string("normal")),
                ("status", .string("pending_payment")), ("amount", .int(5997)), ("currency", .string("CNY")),
            ])),
        ])
        XCTAssertEqual(d.savedOrder, o)
        XCTAssertFalse(d.isEmpty)
    }

    func testAmountIsPriceTimesQuantity() throws {
        for q in 1...10 {
            let o = try create(Fx.request(quantity: q))
            XCTAssertEqual(o.amount, 1999 * Int64(q))
            XCTAssertEqual(o.quantity, q)
            XCTAssertEqual(o.currency, "CNY")
        }
        var cheap = Fx.product
        cheap.price = 0
        cheap.currency = "USD"
        let free = try XCTUnwrap(try success(rules.create(Fx.request(quantity: 4), product: cheap, now: Fx.t0, fresh: Fx.fresh)).savedOrder)
        XCTAssertEqual(free.amount, 0)
        XCTAssertEqual(free.currency, "USD")
    }

    func testAmountOverflowIsRefused() {
        var pricey = Fx.product
        pricey.price = Int64.max / 2
        assertFailure(rules.create(Fx.request(quantity: 3), product: pricey, now: Fx.t0, fresh: Fx.fresh), .badRequest)
    }

    /// The amount is fixed at creation: a payment charges the order's amount, whatever the product costs now.
    func testLaterPriceChangeDoesNotAlterAmount() throws {
        let o = try create(Fx.request(quantity: 2))
        let payment = try makePayment(o, payer: "u1")
        XCTAssertEqual(payment.amount, 3998)
        XCTAssertEqual(payment.currency, "CNY")
    }

    func testGiftOrder() throws {
        let d = try success(rules.create(Fx.request(.gift, quantity: 2, giftTo: "u3", message: "Happy birthday"),
                                         product: Fx.product, now: Fx.t0, fresh: Fx.fresh))
        var o = expectedOrder(.gift, quantity: 2, ttl: Fx.orderTTL)
        o.gift = Gift(code: "g-1", to: "u3", message: "Happy birthday", status: .pending, expiresAt: nil)
        XCTAssertEqual(d.preconditions, [.orderAbsent("o-1")])
        assertEffects(d, [
            .indexGiftCode("g-1", order: "o-1"),
            .saveOrder(o),
            .schedule(order: "o-1", .payment, at: Fx.t0 + Fx.orderTTL),
            Fx.statusPush("u1", o),
        ])
        XCTAssertNil(d.savedOrder?.payCode, "no pay code for a gift")
        XCTAssertNil(d.savedOrder?.friend)
        XCTAssertTrue(d.pushes.allSatisfy { $0.user == "u1" }, "the recipient hears of a gift only once it is paid")
    }

    func testGiftWithoutRecipient() throws {
        let o = try create(Fx.request(.gift))
        XCTAssertEqual(o.gift, Gift(code: "g-1", to: nil, message: nil, status: .pending, expiresAt: nil))
        XCTAssertEqual(o.expiresAt, Fx.t0 + Fx.orderTTL)
    }

    func testFriendpayOrder() throws {
        let d = try success(rules.create(Fx.request(.friendpay, quantity: 2, friend: "u2"),
                                         product: Fx.product, now: Fx.t0, fresh: Fx.fresh))
        var o = expectedOrder(.friendpay, quantity: 2, ttl: Fx.friendpayTTL)
        o.payCode = "f-1"
        o.friend = "u2"
        XCTAssertEqual(d.preconditions, [.orderAbsent("o-1")])
        assertEffects(d, [
            .indexPayCode("f-1", order: "o-1"),
            .saveOrder(o),
            .schedule(order: "o-1", .payment, at: Fx.t0 + 1_800_000),
            Fx.statusPush("u1", o),
            .push(user: "u2", type: "friendpay.requested", data: .object([
                ("order", .string("o-1")), ("code", .string("f-1")), ("from", .string("u1")),
                ("product", .string("p1")), ("title", .string("Steam key")), ("amount", .int(3998)),
                ("currency", .string("CNY")), ("expires_at", .int(Fx.t0 + 1_800_000)),
            ])),
        ])
        XCTAssertNil(d.savedOrder?.gift)
    }

    func testFriendpayWithoutFriendPushesOnlyToRequester() throws {
        let d = try success(rules.create(Fx.request(.friendpay), product: Fx.product, now: Fx.t0, fresh: Fx.fresh))
        XCTAssertEqual(d.pushes.map(\.user), ["u1"])
        XCTAssertEqual(d.pushes.map(\.type), ["order.status"])
        XCTAssertTrue(d.effects.contains(.indexPayCode("f-1", order: "o-1")))
        XCTAssertEqual(d.savedOrder?.payCode, "f-1")
        XCTAssertNil(d.savedOrder?.friend)
        XCTAssertEqual(d.savedOrder?.expiresAt, Fx.t0 + Fx.friendpayTTL)
    }

    func testOnlyItsOwnKindGetsACode() throws {
        for kind in OrderKind.allCases {
            let d = try success(rules.create(Fx.request(kind), product: Fx.product, now: Fx.t0, fresh: Fx.fresh))
            let giftIndexed = d.effects.contains { if case .indexGiftCode = $0 { true } else { false } }
            let payIndexed = d.effects.contains { if case .indexPayCode = $0 { true } else { false } }
            XCTAssertEqual(giftIndexed, kind == .gift, "\(kind)")
            XCTAssertEqual(payIndexed, kind == .friendpay, "\(kind)")
            XCTAssertEqual(d.savedOrder?.gift != nil, kind == .gift)
            XCTAssertEqual(d.savedOrder?.payCode != nil, kind == .friendpay)
            XCTAssertEqual(d.savedOrder?.expiresAt, Fx.t0 + (kind == .friendpay ? Fx.friendpayTTL : Fx.orderTTL))
        }
    }

    func testIdempotencyKeyIsAPreconditionAndAnIndex() throws {
        let d = try success(rules.create(Fx.request(key: "req-42"), product: Fx.product, now: Fx.t0, fresh: Fx.fresh))
        XCTAssertEqual(d.preconditions, [.orderAbsent("o-1"), .idempotencyAbsent(buyer: "u1", product: "p1", key: "req-42")])
        XCTAssertEqual(d.effects.filter { if case .indexIdempotency = $0 { true } else { false } },
                       [.indexIdempotency(buyer: "u1", product: "p1", key: "req-42", order: "o-1")])
    }

    func testNoIdempotencyKeyNoIndex() throws {
        let d = try success(rules.create(Fx.request(), product: Fx.product, now: Fx.t0, fresh: Fx.fresh))
        XCTAssertFalse(d.preconditions.contains { if case .idempotencyAbsent = $0 { true } else { false } })
        XCTAssertFalse(d.effects.contains { if case .indexIdempotency = $0 { true } else { false } })
    }

    func testFreshIDsAreUsed() throws {
        let fresh = FreshIDs(order: "o-xyz", giftCode: "g-xyz", payCode: "f-xyz")
        let gift = try create(Fx.request(.gift), fresh: fresh)
        XCTAssertEqual(gift.id, "o-xyz")
        XCTAssertEqual(gift.gift?.code, "g-xyz")
        let fp = try create(Fx.request(.friendpay, friend: "u2"), fresh: fresh)
        XCTAssertEqual(fp.payCode, "f-xyz")
    }

    // MARK: createPayment

    func testBuyerPaysNormalOrder() throws {
        let o = try create(Fx.request(quantity: 2))
        let d = try success(rules.createPayment(order: o, payer: "u1", paymentID: "pay-1", now: Fx.t0 + 5))
        XCTAssertEqual(d.preconditions, [.paymentAbsent("pay-1")])
        XCTAssertEqual(d.effects, [.savePayment(Payment(id: "pay-1", order: "o-1", payer: "u1", amount: 3998, currency: "CNY",
                                                        status: .created, createdAt: Fx.t0 + 5, tradeNo: nil, version: 1))])
    }

    func testOnlyBuyerPaysNormalAndGift() throws {
        for kind in [OrderKind.normal, .gift] {
            let o = try create(Fx.request(kind, giftTo: kind == .gift ? "u3" : nil))
            assertFailure(rules.createPayment(order: o, payer: "u2", paymentID: "pay-1", now: Fx.t0), .forbidden, "\(kind)")
            if kind == .gift {
                assertFailure(rules.createPayment(order: o, payer: "u3", paymentID: "pay-1", now: Fx.t0), .forbidden, "gift recipient")
            }
            XCTAssertEqual(try makePayment(o, payer: "u1").payer, "u1")
        }
    }

    func testFriendpayIsPaidByAnyoneButTheRequester() throws {
        let o = try create(Fx.request(.friendpay, friend: "u2"))
        assertFailure(rules.createPayment(order: o, payer: "u1", paymentID: "pay-1", now: Fx.t0), .forbidden)
        XCTAssertEqual(try makePayment(o, payer: "u2").payer, "u2")
        let stranger = try makePayment(o, payer: "u9", id: "pay-2")
        XCTAssertEqual(stranger.payer, "u9")
        XCTAssertEqual(stranger.id, "pay-2")
        XCTAssertEqual(stranger.amount, 1999)
        let open = try create(Fx.request(.friendpay))
        XCTAssertEqual(try makePayment(open, payer: "u7").payer, "u7")
        assertFailure(rules.createPayment(order: open, payer: "u1", paymentID: "pay-1", now: Fx.t0), .forbidden)
    }

    func testOnlyPendingOrdersTakePayments() throws {
        for kind in OrderKind.allCases {
            var o = try create(Fx.request(kind, friend: kind == .friendpay ? "u2" : nil))
            let payer = kind == .friendpay ? "u2" : "u1"
            for status in [OrderStatus.paid, .delivered, .canceled, .refunded, .abnormal] {
                o.status = status
                assertFailure(rules.createPayment(order: o, payer: payer, paymentID: "pay-1", now: Fx.t0), .conflict, "\(kind) \(status)")
            }
        }
    }
}
