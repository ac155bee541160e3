import Foundation
import GatewayProtocol
import XCTest

/// The payments ledger (contract 4.4) on real nodes and Redis: every path that takes money
/// ends with each payment `succeeded` with a delivered order, or `refund_required` and then
/// `refunded` after the shop's call; notifies answer what they did.
final class LedgerTests: IntegrationCase {
    func notify(_ node: GatewayNodeProcess, _ payment: JSON, status: String = "success",
                file: StaticString = #filePath, line: UInt = #line) throws -> String? {
        let r = try signedNotify(node, notifyBody(payment, status: status))
        XCTAssertEqual(r.status, 200, r.text, file: file, line: line)
        XCTAssertEqual(r.json?["ok"], .bool(true), file: file, line: line)
        return r.json?["outcome"]?.stringValue
    }

    func ledger(_ node: GatewayNodeProcess, _ payment: JSON, file: StaticString = #filePath, line: UInt = #line) throws -> JSON {
        let r = try node.http("GET", "/api/v1/payments/\(payment["id"]!.stringValue!)")
        XCTAssertEqual(r.status, 200, r.text, file: file, line: line)
        return try XCTUnwrap(r.json, file: file, line: line)
    }

    func refunded(_ node: GatewayNodeProcess, _ payment: JSON, _ refundNo: String, key: String? = TestSecrets.shopKey) throws -> HTTPResponse {
        try node.http("POST", "/api/v1/payments/\(payment["id"]!.stringValue!)/refunded",
                      body: #"{"refund_no":"\#(refundNo)"}"#, key: key)
    }

    /// The money table: a `succeeded` payment is the one its order was paid with and that
    /// order is delivered; any other payment that took money is owed back or sent back. The
    /// event log agrees: `order.paid` names the succeeded payment, `payment.refund_required`
    /// each one owed back.
    func assertLedgerAgrees(_ node: GatewayNodeProcess, _ payments: [JSON], file: StaticString = #filePath, line: UInt = #line) throws {
        for p in payments {
            let entry = try ledger(node, p, file: file, line: line)
            let order = try getOrder(node, entry["order"]!.stringValue!)
            switch entry["status"]?.stringValue {
            case "succeeded":
                XCTAssertEqual(order["status"]?.stringValue, "delivered", "\(entry)", file: file, line: line)
                XCTAssertEqual(order["paid_by"], entry["payer"], file: file, line: line)
                let paid = try event(node, "order.paid", payment: entry["id"]!.stringValue!)
                XCTAssertEqual(paid?["data"]?["order"], entry["order"], "order.paid for \(entry)", file: file, line: line)
            case "refund_required", "refunded":
                XCTAssertNotNil(entry["trade_no"]?.stringValue, "\(entry)", file: file, line: line)
                let owed = try event(node, "payment.refund_required", payment: entry["id"]!.stringValue!)
                XCTAssertEqual(owed?["data"]?["amount"], entry["amount"], "payment.refund_required for \(entry)", file: file, line: line)
            default:
                XCTFail("payment that took money is \(entry)", file: file, line: line)
            }
        }
    }

    func testPurchaseRefundAndTheShopsRefundedCall() throws {
        let node = try startNode()
        try createProduct(node, "p1")
        _ = try uploadKeys(node, "p1", ["L-1"])
        let (buyer, _) = try open(node, "u1")
        let orderID = try XCTUnwrap(try order(node, #"{"buyer":"u1","product":"p1"}"#)["id"]?.stringValue)
        let payment = try pay(node, orderID, payer: "u1")
        XCTAssertEqual(payment["status"]?.stringValue, "created")
        XCTAssertEqual(payment["provider"], .null)

        XCTAssertEqual(try notify(node, payment), "paid")
        XCTAssertEqual(try notify(node, payment), "duplicate")
        let paid = try ledger(node, payment)
        XCTAssertEqual(paid["status"]?.stringValue, "succeeded")
        XCTAssertEqual(paid["provider"]?.stringValue, "hmac")
        XCTAssertEqual(paid["order"]?.stringValue, orderID)
        XCTAssertNotNil(paid["trade_no"]?.stringValue)
        XCTAssertGreaterThanOrEqual(paid["updated_at"]!.intValue!, paid["created_at"]!.intValue!)
        XCTAssertNil(paid["refund_no"])
        try assertLedgerAgrees(node, [payment])
        XCTAssertEqual(try refunded(node, payment, "R-0").status, 409, "nothing is owed on a paid order")

        XCTAssertEqual(try node.http("POST", "/api/v1/orders/\(orderID)/refund").status, 200)
        XCTAssertEqual(push(buyer, "payment.refund_required")?["data"]?["reason"]?.stringValue, "refunded by the shop")
        XCTAssertEqual(try ledger(node, payment)["status"]?.stringValue, "refund_required")
        try assertLedgerAgrees(node, [payment])

        XCTAssertEqual(try node.http("POST", "/api/v1/payments/\(payment["id"]!.stringValue!)/refunded", body: "{}").status, 400)
        XCTAssertEqual(try ledger(node, payment)["status"]?.stringValue, "refund_required", "a bad body touches nothing")
        let done = try refunded(node, payment, "R-1")
        XCTAssertEqual(done.status, 200, done.text)
        XCTAssertEqual(done.json?["status"]?.stringValue, "refunded")
        XCTAssertEqual(done.json?["refund_no"]?.stringValue, "R-1")
        XCTAssertEqual(push(buyer, "payment.refunded")?["data"]?["refund_no"]?.stringValue, "R-1")
        let again = try refunded(node, payment, "R-1")
        XCTAssertEqual(again.status, 200, "the same call again answers the payment")
        XCTAssertEqual(again.json, done.json)
        XCTAssertEqual(try refunded(node, payment, "R-2").status, 409)
        XCTAssertEqual(try ledger(node, payment)["refund_no"]?.stringValue, "R-1")
        XCTAssertNil(push(buyer, "payment.refunded", timeout: 0.5), "repeats push nothing")
        XCTAssertEqual(try node.http("POST", "/api/v1/payments/pay-nope/refunded", body: #"{"refund_no":"R-1"}"#).status, 404)
    }

    func testPaymentReadAccess() throws {
        let node = try startNode()
        try createProduct(node, "p1")
        try createProduct(node, "p2", merchant: "m2")
        let mine = try pay(node, try order(node, #"{"buyer":"u1","product":"p1"}"#)["id"]!.stringValue!, payer: "u1")
        let theirs = try pay(node, try order(node, #"{"buyer":"u1","product":"p2"}"#)["id"]!.stringValue!, payer: "u1")
        let path = { (p: JSON) in "/api/v1/payments/\(p["id"]!.stringValue!)" }
        XCTAssertEqual(try node.http("GET", path(mine), key: TestSecrets.merchantKey).json?["id"], mine["id"])
        XCTAssertEqual(try node.http("GET", path(theirs), key: TestSecrets.merchantKey).status, 404, "another merchant's payment")
        XCTAssertEqual(try node.http("POST", path(theirs) + "/refunded", body: #"{"refund_no":"R-1"}"#, key: TestSecrets.merchantKey).status, 404)
        XCTAssertEqual(try node.http("GET", path(theirs)).status, 200, "the shop sees every payment")
        XCTAssertEqual(try node.http("GET", path(mine), key: nil).status, 401)
        XCTAssertEqual(try node.http("GET", path(mine), key: "wrong").status, 401)
        XCTAssertEqual(try node.http("GET", "/api/v1/payments/pay-nope").status, 404)
        XCTAssertEqual(try node.http("GET", "/api/v1/payments/\(mine["order"]!.stringValue!)").status, 404, "an order id is no payment")
    }

    func testLateSuccessForAFailedPayment() throws {
        let node = try startNode()
        try createProduct(node, "p1")
        _ = try uploadKeys(node, "p1", ["S-1"])
        let orderID = try XCTUnwrap(try order(node, #"{"buyer":"u1","product":"p1"}"#)["id"]?.stringValue)
        let payment = try pay(node, orderID, payer: "u1")
        XCTAssertEqual(try notify(node, payment, status: "failed"), "failed")
        let failed = try ledger(node, payment)
        XCTAssertEqual(failed["status"]?.stringValue, "failed")
        XCTAssertNotNil(failed["trade_no"]?.stringValue, "trade_no is stored for a failure too")
        XCTAssertEqual(try notify(node, payment, status: "failed"), "duplicate")
        XCTAssertEqual(try getOrder(node, orderID)["status"]?.stringValue, "pending_payment")

        XCTAssertEqual(try notify(node, payment), "paid", "the provider charged after all")
        XCTAssertEqual(try getOrder(node, orderID)["status"]?.stringValue, "delivered")
        XCTAssertNotEqual(try ledger(node, payment)["trade_no"], failed["trade_no"], "the success's trade_no is kept")
        try assertLedgerAgrees(node, [payment])
    }

    func testNotifyAfterTheGraceIsOwedBack() throws {
        let node = try startNode(env: ["GATEWAY_ORDERS_TTL_S": "1", "GATEWAY_PAYMENTS_GRACE_S": "0"])
        try createProduct(node, "p1")
        _ = try uploadKeys(node, "p1", ["G-1"])
        let (buyer, _) = try open(node, "u1")
        let orderID = try XCTUnwrap(try order(node, #"{"buyer":"u1","product":"p1"}"#)["id"]?.stringValue)
        let payment = try pay(node, orderID, payer: "u1")
        try waitUntil(timeout: 8, "expiry") { (try? self.getOrder(node, orderID))?["status"]?.stringValue == "canceled" }
        XCTAssertEqual(try notify(node, payment), "refund_required")
        XCTAssertEqual(push(buyer, "payment.refund_required")?["data"]?["reason"]?.stringValue, "order canceled")
        XCTAssertEqual(try getOrder(node, orderID)["status"]?.stringValue, "canceled")
        XCTAssertEqual(try ledger(node, payment)["status"]?.stringValue, "refund_required")
        XCTAssertEqual(try product(node, "p1")["stock"]?.intValue, 1)
        XCTAssertEqual(try refunded(node, payment, "R-9").status, 200)
        try assertLedgerAgrees(node, [payment])
    }

    /// Two friends pay one friend-pay request on two nodes at once: one payment pays it,
    /// the other is owed back, whichever node each notify and the shop's call reach.
    func testTwoFriendPaymentsOnTwoNodes() throws {
        let a = try startNode("n1")
        let b = try startNode("n2")
        try createProduct(a, "p1", price: 500)
        _ = try uploadKeys(a, "p1", ["F-1", "F-2"])
        let orderID = try XCTUnwrap(try order(a, #"{"buyer":"u1","product":"p1","kind":"friendpay","friendpay":{"to":"u2"}}"#)["id"]?.stringValue)
        let first = try pay(a, orderID, payer: "u2")
        let second = try pay(b, orderID, payer: "u5")
        let outcomes = Locked<[String: String]>([:])
        nonisolated(unsafe) let test = self
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            let (node, payment) = i == 0 ? (a, first) : (b, second)
            let outcome = (try? test.signedNotify(node, test.notifyBody(payment)))?.json?["outcome"]?.stringValue ?? "none"
            outcomes.mutate { $0[payment["id"]!.stringValue!] = outcome }
        }
        XCTAssertEqual(outcomes.value.values.sorted(), ["paid", "refund_required"])
        let winner = outcomes.value[first["id"]!.stringValue!] == "paid" ? first : second
        let loser = winner["id"] == first["id"] ? second : first
        XCTAssertEqual(try ledger(b, winner)["status"]?.stringValue, "succeeded")
        XCTAssertEqual(try ledger(a, loser)["status"]?.stringValue, "refund_required")
        XCTAssertEqual(try getOrder(b, orderID)["paid_by"], winner["payer"])
        try assertLedgerAgrees(a, [first, second])

        // The operators' list, read on the other node, shows the payment owed.
        func listed(_ node: GatewayNodeProcess) -> [String] {
            ((try? node.http("GET", "/api/v1/admin/refunds"))?.json?["refund_required"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue }
        }
        try waitUntil(timeout: 10, "the owed payment listed") { listed(b) == [loser["id"]!.stringValue!] }
        let row = try XCTUnwrap(try b.http("GET", "/api/v1/admin/refunds").json?["refund_required"]?.arrayValue?.first)
        XCTAssertEqual(row, try ledger(a, loser), "the list shows the ledger entry")

        XCTAssertEqual(try refunded(b, loser, "R-7").status, 200)
        XCTAssertEqual(try refunded(a, loser, "R-7").status, 200, "the repeat on the other node answers the payment")
        XCTAssertEqual(try ledger(a, loser)["status"]?.stringValue, "refunded")
        XCTAssertEqual(try notify(b, loser), "duplicate")
        XCTAssertEqual(try notify(a, winner), "duplicate")
        try assertLedgerAgrees(b, [first, second])
        XCTAssertEqual(try product(a, "p1")["stock"]?.intValue, 1, "one key sold")
        try waitUntil(timeout: 10, "the settled payment off the list") { listed(a).isEmpty }
    }

    /// A list entry a write behind (the payment settled meanwhile) is not shown, and is dropped.
    func testRefundsListDropsEntriesThatMovedOn() throws {
        try requireSingleRedis("writes the refunds index directly")
        let node = try startNode()
        try createProduct(node, "p1")
        _ = try uploadKeys(node, "p1", ["X-1"])
        let orderID = try XCTUnwrap(try order(node, #"{"buyer":"u1","product":"p1"}"#)["id"]?.stringValue)
        let payment = try pay(node, orderID, payer: "u1")
        XCTAssertEqual(try notify(node, payment), "paid")
        XCTAssertEqual(try node.http("POST", "/api/v1/orders/\(orderID)/refund").status, 200)
        XCTAssertEqual(try refunded(node, payment, "R-1").status, 200)
        let id = payment["id"]!.stringValue!
        _ = redis.cli(["ZADD", "gw:{admin}:refund-required", "1", id])
        _ = redis.cli(["ZADD", "gw:{admin}:refund-required", "2", "pay-nope"])
        XCTAssertEqual(try node.http("GET", "/api/v1/admin/refunds").json?["refund_required"], .array([]))
        try waitUntil(timeout: 10, "stale entries dropped") {
            self.redis.cli(["ZCARD", "gw:{admin}:refund-required"]).trimmingCharacters(in: .whitespacesAndNewlines) == "0"
        }
    }
}
