import Foundation
import GatewayClient
import GatewayCrypto
import GatewayProtocol
import XCTest

/// The money path end to end: HTTP from the shop and the payment provider, pushes and
/// order commands over WebSocket, real Redis, one or two real nodes.
final class OrderFlowTests: IntegrationCase {
    // MARK: Normal purchase

    func testPurchaseDeliversKeysOnlyToTheOwner() throws {
        let node = try startNode()
        try createProduct(node, "p1")
        let added = try uploadKeys(node, "p1", ["K-1", "K-2", "K-3", "K-1"])
        XCTAssertEqual(added["added"]?.intValue, 3)
        XCTAssertEqual(added["duplicates"]?.intValue, 1)
        XCTAssertEqual(added["stock"]?.intValue, 3)
        XCTAssertEqual(try uploadKeys(node, "p1", ["K-2"])["duplicates"]?.intValue, 1, "a key seen once never comes back")

        let (buyer, _) = try open(node, "u1")
        let created = try order(node, #"{"buyer":"u1","product":"p1","quantity":2,"kind":"normal"}"#)
        XCTAssertEqual(created["status"]?.stringValue, "pending_payment")
        XCTAssertEqual(created["amount"]?.intValue, 3998)
        XCTAssertNil(created["keys"])
        let orderID = try XCTUnwrap(created["id"]?.stringValue)
        XCTAssertEqual(push(buyer, "order.status")?["data"]?["status"]?.stringValue, "pending_payment")
        XCTAssertEqual(try buyer.command("subscribe", [("channel", .string("group:p1"))])["error"]?["code"]?.stringValue, "forbidden")

        let payment = try pay(node, orderID, payer: "u1")
        XCTAssertEqual(payment["amount"]?.intValue, 3998)
        XCTAssertEqual(try signedNotify(node, notifyBody(payment)).status, 200)
        let delivered = try XCTUnwrap(push(buyer, "order.status"))
        XCTAssertEqual(delivered["data"]?["status"]?.stringValue, "delivered")
        XCTAssertEqual(delivered["data"]?["order"]?.stringValue, orderID)
        XCTAssertFalse(delivered.serialized().contains("K-"), "no key in a push")

        let mine = try buyer.command("order.get", [("order", .string(orderID))])
        let keys = try XCTUnwrap(mine["ok"]?["keys"]?.arrayValue?.compactMap(\.stringValue))
        XCTAssertEqual(Set(keys).count, 2)
        XCTAssertTrue(Set(keys).isSubset(of: ["K-1", "K-2", "K-3"]))
        XCTAssertEqual(Set(try getOrder(node, orderID)["keys"]?.arrayValue?.compactMap(\.stringValue) ?? []), Set(keys))
        let (stranger, _) = try open(node, "u9")
        XCTAssertEqual(try stranger.command("order.get", [("order", .string(orderID))])["error"]?["code"]?.stringValue, "not_found")

        // A repeated notify answers 200 and changes nothing.
        XCTAssertEqual(try signedNotify(node, notifyBody(payment)).status, 200)
        XCTAssertEqual(try product(node, "p1")["stock"]?.intValue, 1)
        XCTAssertEqual(try product(node, "p1")["buyers"]?.intValue, 1)
        XCTAssertNotNil(try buyer.command("subscribe", [("channel", .string("group:p1"))])["ok"], "a buyer joins the group")

        // Refund after delivery: keys burned (not back in stock), membership gone.
        let refunded = try node.http("POST", "/api/v1/orders/\(orderID)/refund")
        XCTAssertEqual(refunded.json?["status"]?.stringValue, "refunded", refunded.text)
        XCTAssertEqual(push(buyer, "payment.refund_required")?["data"]?["payment"]?.stringValue, payment["id"]?.stringValue)
        XCTAssertEqual(try product(node, "p1")["stock"]?.intValue, 1)
        XCTAssertEqual(try product(node, "p1")["buyers"]?.intValue, 0)
        let (later, _) = try open(node, "u1")
        XCTAssertEqual(try later.command("subscribe", [("channel", .string("group:p1"))])["error"]?["code"]?.stringValue, "forbidden")
        XCTAssertEqual(try node.http("POST", "/api/v1/orders/\(orderID)/cancel").status, 409)
    }

    func testBadInputLeavesStateUntouched() throws {
        let node = try startNode()
        try createProduct(node, "p1")
        _ = try uploadKeys(node, "p1", ["A", "B"])
        let created = try order(node, #"{"buyer":"u1","product":"p1","kind":"normal"}"#)
        let orderID = try XCTUnwrap(created["id"]?.stringValue)
        let payment = try pay(node, orderID, payer: "u1")
        let body = notifyBody(payment)

        XCTAssertEqual(try node.http("POST", "/api/v1/payments/notify", body: body, key: nil).status, 401, "unsigned")
        XCTAssertEqual(try signedNotify(node, body, secret: "forged").status, 401)
        let tampered = body.replacingOccurrences(of: "\"success\"", with: "\"success\" ")
        let sig = Crypto.hex(Crypto.hmacSHA256(key: Array(TestSecrets.payments.utf8), message: Array(body.utf8)))
        XCTAssertEqual(try node.http("POST", "/api/v1/payments/notify", body: tampered, key: nil, headers: ["X-Signature": sig]).status, 401)
        XCTAssertEqual(try signedNotify(node, notifyBody(payment, amount: 1)).status, 400)
        XCTAssertEqual(try signedNotify(node, notifyBody(payment, currency: "USD")).status, 400)
        let other = try order(node, #"{"buyer":"u1","product":"p1"}"#)
        XCTAssertEqual(try signedNotify(node, notifyBody(payment, order: other["id"]!.stringValue!)).status, 400)
        var unknown = payment
        unknown = .object([("id", .string("pay-nope")), ("order", payment["order"]!), ("amount", payment["amount"]!), ("currency", payment["currency"]!)])
        XCTAssertEqual(try signedNotify(node, notifyBody(unknown)).status, 404)
        XCTAssertEqual(try signedNotify(node, "{not json").status, 400)

        for bad in [#"{"buyer":"u1","product":"p1","quantity":0}"#, #"{"buyer":"u1","product":"p1","quantity":11}"#,
                    #"{"buyer":"u1","product":"p1","quantity":"2"}"#, #"{"buyer":"u 1","product":"p1"}"#,
                    #"{"buyer":"u1","product":"p1","kind":"loan"}"#, #"{"buyer":"u1","product":"p1","kind":"gift","gift":{"to":"u1"}}"#] {
            _ = try order(node, bad, status: 400)
        }
        _ = try order(node, #"{"buyer":"u1","product":"nope"}"#, status: 404)
        XCTAssertEqual(try node.http("GET", "/api/v1/orders/o-nope").status, 404)
        XCTAssertEqual(try node.http("POST", "/api/v1/orders/o-nope/payments", body: #"{"payer":"u1"}"#).status, 404)
        XCTAssertEqual(try node.http("POST", "/api/v1/orders/\(orderID)/payments", body: #"{"payer":"u2"}"#).status, 403)
        for badKeys in [#"{"keys":"A"}"#, #"{"keys":[1]}"#, #"{"keys":[""]}"#,
                        #"{"keys":[""# + String(repeating: "k", count: 513) + #""]}"#] {
            XCTAssertEqual(try node.http("POST", "/api/v1/products/p1/keys", body: badKeys).status, 400, badKeys)
        }
        XCTAssertEqual(try node.http("POST", "/api/v1/products/p1/keys", body: #"{"keys":["Z"]}"#, key: "wrong").status, 401)
        XCTAssertEqual(try node.http("POST", "/api/v1/products/nope/keys", body: #"{"keys":["Z"]}"#).status, 404)

        XCTAssertEqual(try getOrder(node, orderID)["status"]?.stringValue, "pending_payment", "bad notifies changed nothing")
        XCTAssertEqual(try product(node, "p1")["stock"]?.intValue, 2)
        XCTAssertEqual(try signedNotify(node, notifyBody(payment, status: "failed")).status, 200)
        XCTAssertEqual(try getOrder(node, orderID)["status"]?.stringValue, "pending_payment", "a failed payment pays nothing")
    }

    /// Idempotency keys are per (caller, buyer, product); ids carry their slot tag
    /// (`o-<T>-<random>`), and an id whose tag names no slot is simply not found.
    func testIdempotencyKeyIsPerProductAndIdsCarryTheirSlot() throws {
        let node = try startNode()
        try createProduct(node, "p1")
        try createProduct(node, "p2")
        let body = #"{"buyer":"u1","product":"p1","idempotency_key":"k-1"}"#
        let first = try XCTUnwrap(try order(node, body)["id"]?.stringValue)
        let again = try node.http("POST", "/api/v1/orders", body: body)
        XCTAssertEqual(again.status, 200, again.text)
        XCTAssertEqual(again.json?["id"]?.stringValue, first)
        let other = try order(node, #"{"buyer":"u1","product":"p2","idempotency_key":"k-1"}"#)
        XCTAssertNotEqual(other["id"]?.stringValue, first, "the same key for another product is another order")
        XCTAssertEqual(other["product"]?.stringValue, "p2")

        let parts = first.split(separator: "-")
        XCTAssertEqual(parts.count, 3, first)
        XCTAssertEqual(try node.http("GET", "/api/v1/orders/\(first)").status, 200)
        XCTAssertEqual(try node.http("GET", "/api/v1/orders/o-NOPE-\(parts[2])").status, 404)
        XCTAssertEqual(try node.http("GET", "/api/v1/orders/o-\(parts[2])").status, 404)
    }

    func testOutOfStockMakesTheOrderAbnormal() throws {
        let node = try startNode()
        try createProduct(node, "p1")
        _ = try uploadKeys(node, "p1", ["ONLY"])
        let created = try order(node, #"{"buyer":"u1","product":"p1","quantity":2}"#)
        let payment = try pay(node, created["id"]!.stringValue!, payer: "u1")
        XCTAssertEqual(try signedNotify(node, notifyBody(payment)).status, 200)
        let o = try getOrder(node, created["id"]!.stringValue!)
        XCTAssertEqual(o["status"]?.stringValue, "abnormal")
        XCTAssertNil(o["keys"])
        XCTAssertEqual(try product(node, "p1")["stock"]?.intValue, 1)
    }

    // MARK: Gifts

    func testGiftClaimedByTheNamedFriend() throws {
        let node = try startNode()
        try createProduct(node, "p1")
        _ = try uploadKeys(node, "p1", ["G-1", "G-2"])
        let (buyer, _) = try open(node, "u1")
        let (friend, _) = try open(node, "u3")
        let (other, _) = try open(node, "u2")
        let created = try order(node, #"{"buyer":"u1","product":"p1","kind":"gift","gift":{"to":"u3","message":"Happy birthday"}}"#)
        let orderID = created["id"]!.stringValue!
        XCTAssertNotNil(created["gift"]?["code"], "the buyer sees the code")
        _ = try signedNotify(node, notifyBody(try pay(node, orderID, payer: "u1")))
        let gc = try XCTUnwrap(push(buyer, "gift.created"))
        let code = try XCTUnwrap(gc["data"]?["code"]?.stringValue)
        let received = try XCTUnwrap(push(friend, "gift.received"))
        XCTAssertEqual(received["data"]?["code"]?.stringValue, code)
        XCTAssertEqual(received["data"]?["from"]?.stringValue, "u1")
        XCTAssertEqual(received["data"]?["message"]?.stringValue, "Happy birthday")
        XCTAssertEqual(try buyer.command("order.get", [("order", .string(orderID))])["ok"]?["keys"], nil, "the buyer never sees gift keys")

        XCTAssertEqual(try buyer.command("gift.claim", [("code", .string(code))])["error"]?["code"]?.stringValue, "forbidden")
        XCTAssertEqual(try other.command("gift.claim", [("code", .string(code))])["error"]?["code"]?.stringValue, "forbidden")
        XCTAssertEqual(try friend.command("gift.claim", [("code", .string("g-wrong"))])["error"]?["code"]?.stringValue, "not_found")
        let claimed = try friend.command("gift.claim", [("code", .string(code))])
        XCTAssertEqual(claimed["ok"]?["owner"]?.stringValue, "u3", "\(claimed)")
        XCTAssertEqual(claimed["ok"]?["status"]?.stringValue, "delivered")
        XCTAssertEqual(Set(claimed["ok"]?["keys"]?.arrayValue?.compactMap(\.stringValue) ?? []), ["G-1"])
        XCTAssertNil(claimed["ok"]?["gift"]?["code"], "the claimer does not see the code field")
        XCTAssertEqual(try friend.command("gift.claim", [("code", .string(code))])["error"]?["code"]?.stringValue, "gone")
        XCTAssertEqual(push(buyer, "gift.claimed")?["data"]?["by"]?.stringValue, "u3")
        XCTAssertNotNil(try friend.command("subscribe", [("channel", .string("group:p1"))])["ok"], "the claimer joins the group")
    }

    func testDeclinedGiftRefundsAndReturnsKeys() throws {
        let node = try startNode()
        try createProduct(node, "p1")
        _ = try uploadKeys(node, "p1", ["D-1"])
        let (buyer, _) = try open(node, "u1")
        let (someone, _) = try open(node, "u4")
        let created = try order(node, #"{"buyer":"u1","product":"p1","kind":"gift"}"#)
        let code = created["gift"]!["code"]!.stringValue!
        let payment = try pay(node, created["id"]!.stringValue!, payer: "u1")
        _ = try signedNotify(node, notifyBody(payment))
        XCTAssertEqual(try product(node, "p1")["stock"]?.intValue, 0)
        XCTAssertNotNil(try someone.command("gift.decline", [("code", .string(code))])["ok"])
        XCTAssertEqual(push(buyer, "gift.declined")?["data"]?["by"]?.stringValue, "u4")
        XCTAssertEqual(push(buyer, "payment.refund_required")?["data"]?["reason"]?.stringValue, "gift declined")
        XCTAssertEqual(try node.http("GET", "/api/v1/payments/\(payment["id"]!.stringValue!)").json?["status"]?.stringValue, "refund_required")
        XCTAssertEqual(try product(node, "p1")["stock"]?.intValue, 1, "unrevealed key back in stock")
        XCTAssertEqual(try getOrder(node, created["id"]!.stringValue!)["status"]?.stringValue, "refunded")
        XCTAssertEqual(try someone.command("gift.claim", [("code", .string(code))])["error"]?["code"]?.stringValue, "gone")
    }

    func testUnpaidOrdersAndUnclaimedGiftsExpire() throws {
        let node = try startNode(env: ["GATEWAY_ORDERS_TTL_S": "1", "GATEWAY_GIFTS_TTL_S": "1"])
        try createProduct(node, "p1")
        _ = try uploadKeys(node, "p1", ["E-1"])
        let (buyer, _) = try open(node, "u1")
        let unpaid = try order(node, #"{"buyer":"u1","product":"p1"}"#)
        let latePayment = try pay(node, unpaid["id"]!.stringValue!, payer: "u1")
        let gift = try order(node, #"{"buyer":"u1","product":"p1","kind":"gift","gift":{"to":"u5"}}"#)
        _ = try signedNotify(node, notifyBody(try pay(node, gift["id"]!.stringValue!, payer: "u1")))
        XCTAssertEqual(try product(node, "p1")["stock"]?.intValue, 0)
        try waitUntil(timeout: 8, "expiries") {
            (try? self.getOrder(node, unpaid["id"]!.stringValue!))?["status"]?.stringValue == "canceled"
                && (try? self.getOrder(node, gift["id"]!.stringValue!))?["status"]?.stringValue == "refunded"
        }
        XCTAssertEqual(try getOrder(node, gift["id"]!.stringValue!)["gift"]?["status"]?.stringValue, "expired")
        XCTAssertEqual(try product(node, "p1")["stock"]?.intValue, 1)
        XCTAssertNotNil(push(buyer, "gift.expired"))
        XCTAssertEqual(try node.http("POST", "/api/v1/orders/\(unpaid["id"]!.stringValue!)/payments", body: #"{"payer":"u1"}"#).status,
                       409, "no new payment for a canceled order")
        // A success notify for the canceled order within the grace period still pays it.
        XCTAssertEqual(try signedNotify(node, notifyBody(latePayment)).status, 200)
        XCTAssertEqual(try getOrder(node, unpaid["id"]!.stringValue!)["status"]?.stringValue, "delivered")
    }

    // MARK: Friend pay

    func testFriendPayFirstPaymentWinsOthersRefunded() throws {
        let node = try startNode()
        try createProduct(node, "p1", price: 500)
        _ = try uploadKeys(node, "p1", ["F-1", "F-2"])
        let (requester, _) = try open(node, "u1")
        let (friend, _) = try open(node, "u2")
        let (third, _) = try open(node, "u5")
        let created = try order(node, #"{"buyer":"u1","product":"p1","kind":"friendpay","friendpay":{"to":"u2"}}"#)
        let orderID = created["id"]!.stringValue!
        let requested = try XCTUnwrap(push(friend, "friendpay.requested"))
        let code = try XCTUnwrap(requested["data"]?["code"]?.stringValue)
        XCTAssertEqual(requested["data"]?["amount"]?.intValue, 500)
        let view = try friend.command("friendpay.view", [("code", .string(code))])
        XCTAssertEqual(view["ok"]?["requester"]?.stringValue, "u1", "\(view)")
        XCTAssertEqual(view["ok"]?["status"]?.stringValue, "pending_payment")

        XCTAssertEqual(try node.http("POST", "/api/v1/orders/\(orderID)/payments", body: #"{"payer":"u1"}"#).status, 403)
        let first = try pay(node, orderID, payer: "u2")
        let second = try pay(node, orderID, payer: "u5")
        XCTAssertEqual(try signedNotify(node, notifyBody(first)).status, 200)
        XCTAssertEqual(try signedNotify(node, notifyBody(second)).status, 200)
        XCTAssertEqual(push(requester, "friendpay.paid")?["data"]?["by"]?.stringValue, "u2")
        XCTAssertEqual(push(friend, "friendpay.receipt")?["data"]?["for"]?.stringValue, "u1")
        let refund = try XCTUnwrap(push(third, "payment.refund_required"))
        XCTAssertEqual(refund["data"]?["payment"]?.stringValue, second["id"]?.stringValue)
        XCTAssertEqual(refund["data"]?["reason"]?.stringValue, "order already paid")
        let o = try getOrder(node, orderID)
        XCTAssertEqual(o["owner"]?.stringValue, "u1")
        XCTAssertEqual(o["paid_by"]?.stringValue, "u2")
        XCTAssertEqual(o["keys"]?.arrayValue?.count, 1)
        XCTAssertNotNil(try requester.command("subscribe", [("channel", .string("group:p1"))])["ok"], "the requester is the member")
        XCTAssertEqual(try friend.command("subscribe", [("channel", .string("group:p1"))])["error"]?["code"]?.stringValue, "forbidden",
                       "the payer is not")
    }

    // MARK: Concurrency

    /// Hundreds of orders, fewer keys than orders, every notify sent several times at
    /// once to both nodes: each key ends up delivered once or still in stock.
    func testConcurrentNotifiesNeverDoubleOrLoseKeys() throws {
        let a = try startNode("n1")
        let b = try startNode("n2")
        try createProduct(a, "p1", price: 100)
        let keyCount = 150, orderCount = 200
        _ = try uploadKeys(a, "p1", (0..<keyCount).map { "C-\($0)" })
        let payments: [JSON] = try (0..<orderCount).map { i in
            let created = try order(i % 2 == 0 ? a : b, #"{"buyer":"b\#(i)","product":"p1","quantity":1}"#)
            return try pay(a, created["id"]!.stringValue!, payer: "b\(i)")
        }
        let statuses = Locked<[Int]>([])
        // The notifiers only call HTTP helpers, which read the nodes and the secrets.
        nonisolated(unsafe) let test = self
        DispatchQueue.concurrentPerform(iterations: orderCount * 4) { i in
            let payment = payments[i % orderCount]
            let node = i % 2 == 0 ? a : b
            let status = (try? test.signedNotify(node, test.notifyBody(payment)))?.status ?? -1
            statuses.mutate { $0.append(status) }
        }
        XCTAssertEqual(statuses.value.filter { $0 != 200 }, [], "every notify answered 200")
        var delivered: [String] = []
        var abnormal = 0
        for p in payments {
            let o = try getOrder(b, p["order"]!.stringValue!)
            switch o["status"]?.stringValue {
            case "delivered": delivered += o["keys"]?.arrayValue?.compactMap(\.stringValue) ?? []
            case "abnormal": abnormal += 1
            default: XCTFail("order \(o) neither delivered nor abnormal")
            }
        }
        XCTAssertEqual(delivered.count, keyCount)
        XCTAssertEqual(Set(delivered).count, keyCount, "no key went to two orders")
        XCTAssertEqual(abnormal, orderCount - keyCount)
        XCTAssertEqual(try product(a, "p1")["stock"]?.intValue, 0)
    }
}

/// A value shared between test threads.
final class Locked<T>: @unchecked Sendable {
    private var v: T
    private let lock = NSLock()
    init(_ v: T) { self.v = v }
    var value: T { lock.withLock { v } }
    @discardableResult
    func mutate<R>(_ f: (inout T) -> R) -> R { lock.withLock { f(&v) } }
}
