import XCTest
import GatewayProtocol
@testable import OrderCore

/// The order object of PROTOCOL.md 2.5 as each viewer sees it, and who may see keys.
final class OrderViewTests: XCTestCase {
    let viewers: [Viewer] = [.shop, .user("u1"), .user("u2"), .user("u3"), .merchant("m1")]

    func testNormalDeliveredOrderForItsOwner() throws {
        let (o, _) = try pay(try create(Fx.request(quantity: 2)), payer: "u1", now: Fx.t0 + 2000)
        let json = o.json(for: .user("u1"), keys: ["AAAA-1", "BBBB-2"])
        XCTAssertEqual(json, .object([
            ("id", .string("o-1")), ("kind", .string("normal")), ("buyer", .string("u1")), ("owner", .string("u1")),
            ("product", .string("p1")), ("quantity", .int(2)), ("amount", .int(3998)), ("currency", .string("CNY")),
            ("status", .string("delivered")), ("created_at", .int(Fx.t0)), ("expires_at", .int(Fx.t0 + Fx.orderTTL)),
            ("paid_by", .string("u1")), ("keys", .array([.string("AAAA-1"), .string("BBBB-2")])),
        ]))
        XCTAssertNil(o.json(for: .user("u1"))["keys"], "no keys unless passed in")
    }

    func testPendingOrderHasNoPaidBy() throws {
        let o = try create(Fx.request())
        let json = o.json(for: .shop)
        XCTAssertNil(json["paid_by"])
        XCTAssertNil(json["gift"])
        XCTAssertNil(json["pay_code"])
        XCTAssertNil(json["friend"])
        XCTAssertEqual(json["status"], .string("pending_payment"))
    }

    func testGiftCodeOnlyForBuyerAndShop() throws {
        let (o, _) = try pay(try create(Fx.request(.gift, giftTo: "u3", message: "Enjoy")), payer: "u1", now: Fx.t0 + 2000)
        for viewer in viewers {
            let gift = try XCTUnwrap(o.json(for: viewer)["gift"], "\(viewer)")
            let shown = viewer == .shop || viewer == .user("u1")
            XCTAssertEqual(gift["code"], shown ? .string("g-1") : nil, "\(viewer)")
            XCTAssertEqual(gift["to"], .string("u3"))
            XCTAssertEqual(gift["message"], .string("Enjoy"))
            XCTAssertEqual(gift["status"], .string("pending"))
            XCTAssertEqual(gift["expires_at"], .int(Fx.t0 + 2000 + Fx.giftTTL))
        }
        XCTAssertEqual(o.json(for: .user("u1"))["gift"], .object([
            ("code", .string("g-1")), ("to", .string("u3")), ("message", .string("Enjoy")), ("status", .string("pending")),
            ("expires_at", .int(Fx.t0 + 2000 + Fx.giftTTL)),
        ]))
    }

    func testClaimerDoesNotSeeTheCode() throws {
        let (paid, _) = try pay(try create(Fx.request(.gift)), payer: "u1")
        let claimed = try XCTUnwrap(try success(Fx.rules.claim(paid, by: "u3", now: Fx.t0 + 9000)).savedOrder)
        let gift = try XCTUnwrap(claimed.json(for: .user("u3"))["gift"])
        XCTAssertEqual(gift, .object([("status", .string("claimed")), ("expires_at", .int(Fx.t0 + 2000 + Fx.giftTTL))]))
        XCTAssertEqual(claimed.json(for: .user("u3"))["owner"], .string("u3"))
    }

    func testUnpaidGiftHasNoExpiry() throws {
        let o = try create(Fx.request(.gift))
        XCTAssertEqual(o.json(for: .user("u1"))["gift"], .object([("code", .string("g-1")), ("status", .string("pending"))]))
    }

    func testPayCodeOnlyForRequesterAndShop() throws {
        let o = try create(Fx.request(.friendpay, friend: "u2"))
        for viewer in viewers {
            let json = o.json(for: viewer)
            let shown = viewer == .shop || viewer == .user("u1")
            XCTAssertEqual(json["pay_code"], shown ? .string("f-1") : nil, "\(viewer)")
            XCTAssertEqual(json["friend"], .string("u2"))
            XCTAssertNil(json["gift"])
        }
    }

    // MARK: keysVisible

    func testKeysVisibleToOwnerAndShopOfDeliveredOrder() throws {
        let (o, _) = try pay(try create(Fx.request()), payer: "u1")
        XCTAssertTrue(o.keysVisible(to: .user("u1")))
        XCTAssertTrue(o.keysVisible(to: .shop))
        XCTAssertFalse(o.keysVisible(to: .user("u2")))
        XCTAssertFalse(o.keysVisible(to: .merchant("m1")))
    }

    func testFriendpayKeysGoToRequesterNotPayer() throws {
        let (o, _) = try pay(try create(Fx.request(.friendpay, friend: "u2")), payer: "u2")
        XCTAssertTrue(o.keysVisible(to: .user("u1")))
        XCTAssertFalse(o.keysVisible(to: .user("u2")))
    }

    func testGiftKeysOnlyForClaimer() throws {
        let (paid, _) = try pay(try create(Fx.request(.gift, giftTo: "u3")), payer: "u1")
        XCTAssertFalse(paid.keyIDs.isEmpty)
        for viewer in viewers { XCTAssertFalse(paid.keysVisible(to: viewer), "paid gift, \(viewer)") }
        let claimed = try XCTUnwrap(try success(Fx.rules.claim(paid, by: "u3", now: Fx.t0 + 9000)).savedOrder)
        XCTAssertTrue(claimed.keysVisible(to: .user("u3")))
        XCTAssertTrue(claimed.keysVisible(to: .shop))
        XCTAssertFalse(claimed.keysVisible(to: .user("u1")), "the buyer never sees gift keys")
        XCTAssertFalse(claimed.keysVisible(to: .merchant("m1")))
    }

    func testNoKeysVisibleUnlessDelivered() throws {
        let (o, p) = try pay(try create(Fx.request()), payer: "u1")
        for status in [OrderStatus.pendingPayment, .paid, .canceled, .refunded, .abnormal] {
            var moved = o
            moved.status = status
            for viewer in viewers { XCTAssertFalse(moved.keysVisible(to: viewer), "\(status) \(viewer)") }
        }
        let refunded = try XCTUnwrap(try success(Fx.rules.refund(o, payment: p, now: Fx.t0 + 10_000)).savedOrder)
        XCTAssertFalse(refunded.keysVisible(to: .user("u1")))
        XCTAssertFalse(refunded.keysVisible(to: .shop))
        var empty = o
        empty.keyIDs = []
        XCTAssertFalse(empty.keysVisible(to: .user("u1")), "a delivered order without keys shows none")
        XCTAssertFalse(empty.keysVisible(to: .shop))
    }

    // MARK: concerned

    func testConcernedUsers() throws {
        let o = try create(Fx.request())
        XCTAssertEqual(o.concerned, ["u1"])
        var paidBySelf = o
        paidBySelf.paidBy = "u1"
        XCTAssertEqual(paidBySelf.concerned, ["u1"])
        var friend = o
        friend.paidBy = "u2"
        XCTAssertEqual(friend.concerned, ["u1", "u2"])
        var gift = o
        gift.owner = "u3"
        gift.paidBy = "u1"
        XCTAssertEqual(gift.concerned, ["u1", "u3"])
        var all = o
        all.owner = "u3"
        all.paidBy = "u3"
        XCTAssertEqual(all.concerned, ["u1", "u3"])
        all.paidBy = "u2"
        XCTAssertEqual(all.concerned, ["u1", "u3", "u2"])
    }

    func testPaymentJSON() throws {
        let p = try makePayment(try create(Fx.request(quantity: 2)), payer: "u1")
        XCTAssertEqual(p.json, .object([
            ("id", .string("pay-1")), ("order", .string("o-1")), ("payer", .string("u1")), ("amount", .int(3998)),
            ("currency", .string("CNY")), ("status", .string("created")), ("trade_no", .null), ("provider", .null),
            ("created_at", .int(Fx.t0 + 1000)), ("updated_at", .int(Fx.t0 + 1000)),
        ]))
    }
}
