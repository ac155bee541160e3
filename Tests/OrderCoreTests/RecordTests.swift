import XCTest
import GatewayProtocol
@testable import OrderCore

/// The flat string records the store keeps (one Redis hash per object).
final class RecordTests: XCTestCase {
    func dict(_ r: [(String, String)], file: StaticString = #filePath, line: UInt = #line) -> [String: String] {
        XCTAssertEqual(Set(r.map(\.0)).count, r.count, "record field names are unique", file: file, line: line)
        return Dictionary(r, uniquingKeysWith: { a, _ in a })
    }

    func roundTrip(_ o: Order, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(Order(record: dict(o.record, file: file, line: line)), o, file: file, line: line)
    }

    func full() -> Order {
        Order(id: "o-9", kind: .gift, buyer: "u1", owner: "u3", product: "p1", title: "Steam key, deluxe", quantity: 3,
              amount: 5997, currency: "CNY", status: .delivered, createdAt: Fx.t0, expiresAt: Fx.t0 + Fx.orderTTL,
              paidBy: "u1", payment: "pay-1", paidAt: Fx.t0 + 10, canceledAt: Fx.t0 + 5,
              gift: Gift(code: "g-9", to: "u3", message: "Für dich 🎁, with commas", status: .claimed, expiresAt: Fx.t0 + Fx.giftTTL),
              payCode: "f-9", friend: "u2", level: "金牌 gold", membershipAddedMs: 2_592_000_000, keyIDs: ["k-1", "k-2", "k-3"], version: 7)
    }

    func testOrderFieldLayout() {
        let r = full().record
        XCTAssertEqual(r.map(\.0), ["id", "kind", "buyer", "owner", "product", "title", "quantity", "amount", "currency",
                                    "status", "created_at", "expires_at", "keys", "version", "paid_by", "payment", "paid_at",
                                    "canceled_at", "gift_code", "gift_to", "gift_message", "gift_status", "gift_expires_at",
                                    "pay_code", "friend", "level", "membership_ms"])
        let f = dict(r)
        XCTAssertEqual(f["kind"], "gift")
        XCTAssertEqual(f["status"], "delivered")
        XCTAssertEqual(f["quantity"], "3")
        XCTAssertEqual(f["amount"], "5997")
        XCTAssertEqual(f["keys"], "k-1,k-2,k-3")
        XCTAssertEqual(f["gift_status"], "claimed")
        XCTAssertEqual(f["created_at"], String(Fx.t0))
        XCTAssertEqual(f["version"], "7")
    }

    func testAbsentOptionalsAreEmptyStrings() throws {
        let o = try create(Fx.request())
        let f = dict(o.record)
        for k in ["paid_by", "payment", "paid_at", "canceled_at", "gift_code", "gift_to", "gift_message", "gift_status",
                  "gift_expires_at", "pay_code", "friend", "level", "keys"] {
            XCTAssertEqual(f[k], "", k)
        }
        XCTAssertEqual(f["status"], "pending_payment")
    }

    func testFullOrderRoundTrips() {
        roundTrip(full())
    }

    func testMinimalOrderRoundTrips() throws {
        roundTrip(try create(Fx.request()))
        var untitled = try create(Fx.request(quantity: 10))
        untitled.title = ""
        roundTrip(untitled)
    }

    func testGiftOptionalsRoundTrip() throws {
        var o = full()
        o.gift = Gift(code: "g-9", to: nil, message: nil, status: .pending, expiresAt: nil)
        o.payCode = nil
        o.friend = nil
        o.paidBy = nil
        o.payment = nil
        o.paidAt = nil
        o.canceledAt = nil
        o.keyIDs = []
        roundTrip(o)
        for status in [GiftStatus.pending, .claimed, .declined, .expired] {
            o.gift?.status = status
            roundTrip(o)
        }
    }

    func testEveryStatusAndKindRoundTrips() {
        var o = full()
        for kind in OrderKind.allCases {
            for status in [OrderStatus.pendingPayment, .paid, .delivered, .canceled, .refunded, .abnormal] {
                o.kind = kind
                o.status = status
                roundTrip(o)
            }
        }
    }

    /// Every order a decision saves reads back the same from its record.
    func testOrdersThroughTheirLivesRoundTrip() throws {
        let gift = try create(Fx.request(.gift, quantity: 2, giftTo: "u3", message: "Hi", key: "idem-1"))
        roundTrip(gift)
        let (paidGift, p) = try pay(gift, payer: "u1")
        roundTrip(paidGift)
        roundTrip(try XCTUnwrap(try success(Fx.rules.claim(paidGift, by: "u3", now: Fx.t0 + 9000)).savedOrder))
        roundTrip(try XCTUnwrap(try success(Fx.rules.decline(paidGift, by: "u3", payment: p, now: Fx.t0 + 9000)).savedOrder))
        roundTrip(try XCTUnwrap(Fx.rules.expire(paidGift, .gift, payment: p, now: try XCTUnwrap(paidGift.gift?.expiresAt)).savedOrder))
        let fp = try create(Fx.request(.friendpay, friend: "u2"))
        roundTrip(fp)
        roundTrip(try pay(fp, payer: "u2").0)
        roundTrip(try XCTUnwrap(Fx.rules.expire(fp, .payment, payment: nil, now: fp.expiresAt).savedOrder))
        roundTrip(try pay(try create(Fx.request(quantity: 3)), payer: "u1", stock: 0).0)
        let emptyMessage = try success(OrderRequest.decode(try parse(#"{"buyer":"u1","product":"p1","kind":"gift","gift":{"message":""}}"#)))
        roundTrip(try create(emptyMessage))
    }

    func testMissingOrBadRequiredFieldsReadAsNil() {
        let good = dict(full().record)
        XCTAssertNotNil(Order(record: good))
        for k in ["id", "kind", "buyer", "owner", "product", "quantity", "amount", "currency", "status", "created_at",
                  "expires_at", "version"] {
            var missing = good
            missing[k] = nil
            XCTAssertNil(Order(record: missing), "without \(k)")
            var empty = good
            empty[k] = ""
            XCTAssertNil(Order(record: empty), "empty \(k)")
        }
        for (k, v) in [("kind", "loan"), ("status", "lost"), ("quantity", "two"), ("amount", "1.5"), ("created_at", "x"),
                       ("expires_at", "-"), ("version", "v1")] {
            var bad = good
            bad[k] = v
            XCTAssertNil(Order(record: bad), "\(k)=\(v)")
        }
        XCTAssertNil(Order(record: [:]))
    }

    func testOptionalFieldsMayBeAbsent() throws {
        var f = dict(full().record)
        for k in ["title", "keys", "paid_by", "payment", "paid_at", "canceled_at", "gift_code", "gift_to", "gift_message",
                  "gift_status", "gift_expires_at", "pay_code", "friend"] {
            f[k] = nil
        }
        let o = try XCTUnwrap(Order(record: f))
        XCTAssertEqual(o.title, "")
        XCTAssertEqual(o.keyIDs, [])
        XCTAssertNil(o.gift)
        XCTAssertNil(o.paidBy)
        XCTAssertNil(o.paidAt)
        XCTAssertEqual(o.version, 7)
    }

    func testGiftNeedsCodeAndStatus() throws {
        var f = dict(full().record)
        f["gift_status"] = ""
        XCTAssertNil(try XCTUnwrap(Order(record: f)).gift)
        f["gift_status"] = "claimed"
        f["gift_code"] = ""
        XCTAssertNil(try XCTUnwrap(Order(record: f)).gift)
        f["gift_code"] = "g-9"
        f["gift_status"] = "lost"
        XCTAssertNil(try XCTUnwrap(Order(record: f)).gift)
    }

    // MARK: Payment

    func testPaymentRoundTrips() throws {
        let p = try makePayment(try create(Fx.request()), payer: "u1")
        XCTAssertNil(p.tradeNo)
        XCTAssertEqual(Payment(record: dict(p.record)), p)
        for status in PaymentStatus.allCases {
            var q = p
            q.status = status
            q.tradeNo = "T-55"
            q.version = 3
            q.provider = "alipay"
            q.updatedAt = p.createdAt + 9
            q.refundNo = status == .refunded ? "R-1" : nil
            XCTAssertEqual(Payment(record: dict(q.record)), q)
        }
        XCTAssertEqual(p.record.map(\.0), ["id", "order", "payer", "amount", "currency", "status", "created_at", "trade_no", "version",
                                             "provider", "updated_at", "refund_no"])
        XCTAssertEqual(dict(p.record)["trade_no"], "")
    }

    func testPaymentMissingFieldsReadAsNil() throws {
        var q = try makePayment(try create(Fx.request()), payer: "u1")
        q.tradeNo = "T-1"
        let good = dict(q.record)
        for k in ["id", "order", "payer", "amount", "currency", "status", "created_at", "version"] {
            var missing = good
            missing[k] = nil
            XCTAssertNil(Payment(record: missing), "without \(k)")
        }
        var emptyID = good
        emptyID["id"] = ""
        XCTAssertNil(Payment(record: emptyID))
        var badStatus = good
        badStatus["status"] = "paid"
        XCTAssertNil(Payment(record: badStatus))
        var noTrade = good
        noTrade["trade_no"] = nil
        XCTAssertNil(try XCTUnwrap(Payment(record: noTrade)).tradeNo)
    }

    // MARK: Product

    func testProductFromRecord() {
        XCTAssertEqual(Product(record: ["id": "p1", "merchant": "m1", "title": "Steam key", "price": "1999", "currency": "CNY",
                                        "stock": "12"]), Fx.product)
        XCTAssertEqual(Product(record: ["id": "p1", "merchant": "m1", "price": "1999", "currency": "CNY"])?.title, "")
        for k in ["id", "merchant", "price", "currency"] {
            var f = ["id": "p1", "merchant": "m1", "title": "t", "price": "1999", "currency": "CNY"]
            f[k] = nil
            XCTAssertNil(Product(record: f), "without \(k)")
        }
        XCTAssertNil(Product(record: ["id": "p1", "merchant": "m1", "price": "19.99", "currency": "CNY"]))
    }

    // MARK: Wire values

    func testRawValues() {
        XCTAssertEqual(OrderStatus.pendingPayment.rawValue, "pending_payment")
        XCTAssertEqual([OrderStatus.paid, .delivered, .canceled, .refunded, .abnormal].map(\.rawValue),
                       ["paid", "delivered", "canceled", "refunded", "abnormal"])
        XCTAssertEqual(OrderKind.allCases.map(\.rawValue), ["normal", "gift", "friendpay"])
        XCTAssertEqual([GiftStatus.pending, .claimed, .declined, .expired].map(\.rawValue), ["pending", "claimed", "declined", "expired"])
        XCTAssertEqual(TimerKind.payment.rawValue, "pay")
        XCTAssertEqual(TimerKind.gift.rawValue, "gift")
    }
}

final class DecisionTests: XCTestCase {
    func testEmptyDecision() {
        XCTAssertTrue(Decision().isEmpty)
        XCTAssertTrue(Decision(preconditions: [.orderVersion("o", 1)]).isEmpty, "preconditions alone change nothing")
        XCTAssertFalse(Decision(effects: [.unschedule(order: "o", .gift)]).isEmpty)
        XCTAssertNil(Decision().savedOrder)
        XCTAssertNil(Decision().savedPayment)
    }

    func testLastSaveWins() throws {
        let a = try create(Fx.request())
        var b = a
        b.version = 2
        let p = try makePayment(a, payer: "u1")
        var q = p
        q.version = 2
        let d = Decision(effects: [.saveOrder(a), .savePayment(p), .saveOrder(b), .savePayment(q), .unschedule(order: "o-1", .payment)])
        XCTAssertEqual(d.savedOrder, b)
        XCTAssertEqual(d.savedPayment, q)
    }
}
