import Foundation
import GatewayProtocol
import GatewayTestSupport
import XCTest

/// Risk limits (contract 4.6) on real nodes sharing one Redis: per buyer, at most
/// `risk.max_pending_orders` unpaid orders and `risk.max_requests_per_hour` gift and
/// friend-pay orders, counted across nodes; beyond, 429 `rate_limited` with `retry_after_ms`.
final class RiskLimitTests: IntegrationCase {
    private func create(_ node: GatewayNodeProcess, _ body: String) throws -> HTTPResponse {
        try node.http("POST", "/api/v1/orders", body: body)
    }

    private func assertRateLimited(_ r: HTTPResponse, atMostMs: Int64, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 429, r.text, file: file, line: line)
        XCTAssertEqual(r.json?["error"]?["code"]?.stringValue, "rate_limited", r.text, file: file, line: line)
        let after = r.json?["error"]?["retry_after_ms"]?.intValue ?? 0
        XCTAssertGreaterThan(after, 0, r.text, file: file, line: line)
        XCTAssertLessThanOrEqual(after, atMostMs, r.text, file: file, line: line)
    }

    /// A place freed by one node's decision is seen by the next creation (on any node):
    /// the release is sent before that decision is answered, so this loop ends at once unless it is lost.
    private func createOnceFree(_ node: GatewayNodeProcess, _ body: String, file: StaticString = #filePath, line: UInt = #line) throws -> JSON? {
        var last: HTTPResponse?
        for _ in 0..<50 {
            let r = try create(node, body)
            if r.status == 201 { return r.json }
            last = r
            guard r.status == 429 else { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTFail("no place freed: \(last?.text ?? "")", file: file, line: line)
        return nil
    }

    /// The default limit of 5, exactly, over two nodes; paying and canceling free a place.
    func testUnpaidOrdersStopAtTheLimitOnEveryNodeAndPayingOrCancelingFreesAPlace() throws {
        let n1 = try startNode("n1"), n2 = try startNode("n2")
        try createProduct(n1, "p1")
        _ = try uploadKeys(n1, "p1", ["K-1", "K-2"])
        let body = #"{"buyer":"u1","product":"p1"}"#
        var ids: [String] = []
        for i in 0..<5 {
            let r = try create(i % 2 == 0 ? n1 : n2, body)
            XCTAssertEqual(r.status, 201, "order \(i + 1): \(r.text)")
            ids.append(try XCTUnwrap(r.json?["id"]?.stringValue))
        }
        assertRateLimited(try create(n2, body), atMostMs: 900_000)
        assertRateLimited(try create(n1, #"{"buyer":"u1","product":"p1","kind":"gift"}"#), atMostMs: 900_000)
        XCTAssertEqual(try create(n1, #"{"buyer":"u2","product":"p1"}"#).status, 201, "another buyer is not held back")
        XCTAssertEqual(try XCTUnwrap(try getOrder(n1, ids[0])["status"]?.stringValue), "pending_payment")

        // Paid on n2: n1 takes one more, then the limit holds again.
        let payment = try pay(n2, ids[0], payer: "u1")
        XCTAssertEqual(try signedNotify(n2, notifyBody(payment)).status, 200)
        let sixth = try XCTUnwrap(try createOnceFree(n1, body)?["id"]?.stringValue)
        assertRateLimited(try create(n2, body), atMostMs: 900_000)

        // Canceled on n1: n2 takes one more.
        XCTAssertEqual(try n1.http("POST", "/api/v1/orders/\(ids[1])/cancel").status, 200)
        XCTAssertNotNil(try createOnceFree(n2, body))
        assertRateLimited(try create(n1, body), atMostMs: 900_000)

        // A repeated idempotency key answers its order, at the limit too; a new key is refused.
        XCTAssertEqual(try n1.http("POST", "/api/v1/orders/\(sixth)/cancel").status, 200)
        let keyed = #"{"buyer":"u1","product":"p1","idempotency_key":"k-1"}"#
        let first = try XCTUnwrap(try createOnceFree(n2, keyed)?["id"]?.stringValue)
        let again = try create(n1, keyed)
        XCTAssertEqual(again.status, 200, again.text)
        XCTAssertEqual(again.json?["id"]?.stringValue, first)
        assertRateLimited(try create(n1, #"{"buyer":"u1","product":"p1","idempotency_key":"k-2"}"#), atMostMs: 900_000)
    }

    /// An order that expires unpaid frees its place; a creation refused for another
    /// reason takes none.
    func testAnExpiredOrderFreesItsPlaceAndARefusedOneTakesNone() throws {
        let node = try startNode("n1", env: ["GATEWAY_RISK_MAX_PENDING_ORDERS": "2", "GATEWAY_ORDERS_TTL_S": "1"])
        try createProduct(node, "p1")
        for _ in 0..<3 { XCTAssertEqual(try create(node, #"{"buyer":"u1","product":"nope"}"#).status, 404) }
        let first = try XCTUnwrap(try order(node, #"{"buyer":"u1","product":"p1"}"#)["id"]?.stringValue)
        _ = try order(node, #"{"buyer":"u1","product":"p1"}"#)
        assertRateLimited(try create(node, #"{"buyer":"u1","product":"p1"}"#), atMostMs: 1_000)

        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline, try getOrder(node, first)["status"]?.stringValue != "canceled" { Thread.sleep(forTimeInterval: 0.1) }
        XCTAssertEqual(try getOrder(node, first)["status"]?.stringValue, "canceled")
        XCTAssertNotNil(try createOnceFree(node, #"{"buyer":"u1","product":"p1"}"#))
    }

    /// Gift and friend-pay orders, over two nodes: the hour's limit holds whether they are
    /// paid or not; normal orders are not counted by it.
    func testGiftAndFriendPayOrdersStopAtTheHourlyLimitOnEveryNode() throws {
        let n1 = try startNode("n1", env: ["GATEWAY_RISK_MAX_REQUESTS_PER_HOUR": "3"])
        let n2 = try startNode("n2", env: ["GATEWAY_RISK_MAX_REQUESTS_PER_HOUR": "3"])
        try createProduct(n1, "p1")
        _ = try uploadKeys(n1, "p1", ["K-1"])
        let gift = #"{"buyer":"u1","product":"p1","kind":"gift","gift":{"to":"u2"}}"#
        let friendpay = #"{"buyer":"u1","product":"p1","kind":"friendpay","friendpay":{"to":"u3"}}"#
        let paid = try XCTUnwrap(try order(n1, gift)["id"]?.stringValue)
        _ = try order(n2, friendpay)
        _ = try order(n1, gift)
        let payment = try pay(n1, paid, payer: "u1")
        XCTAssertEqual(try signedNotify(n1, notifyBody(payment)).status, 200)
        XCTAssertEqual(try getOrder(n1, paid)["status"]?.stringValue, "paid")

        let refused = try create(n2, friendpay)
        assertRateLimited(refused, atMostMs: 3_600_000)
        XCTAssertGreaterThan(refused.json?["error"]?["retry_after_ms"]?.intValue ?? 0, 3_000_000, "the oldest leaves the hour in about an hour")
        assertRateLimited(try create(n1, gift), atMostMs: 3_600_000)
        XCTAssertEqual(try create(n2, #"{"buyer":"u1","product":"p1"}"#).status, 201, "a normal order is not counted by the hour")
        XCTAssertEqual(try create(n1, #"{"buyer":"u9","product":"p1","kind":"gift"}"#).status, 201, "nor another buyer's")
    }

    /// The hour slides: once the oldest gift order is more than an hour old, one more may be made.
    func testTheHourlyWindowSlides() throws {
        try requireSingleRedis("moves an entry of the window back an hour with redis-cli")
        let node = try startNode("n1", env: ["GATEWAY_RISK_MAX_REQUESTS_PER_HOUR": "2"])
        try createProduct(node, "p1")
        let gift = #"{"buyer":"u1","product":"p1","kind":"gift"}"#
        let oldest = try XCTUnwrap(try order(node, gift)["id"]?.stringValue)
        _ = try order(node, gift)
        assertRateLimited(try create(node, gift), atMostMs: 3_600_000)

        let key = "gw:{user:u1}:risk:requests"
        let score = try XCTUnwrap(Int64(redis.cli(["ZSCORE", key, oldest])), "the window lists the order")
        XCTAssertEqual(redis.cli(["ZADD", key, "XX", "CH", String(score - 3_600_001), oldest]), "1")
        XCTAssertEqual(try create(node, gift).status, 201)
        assertRateLimited(try create(node, gift), atMostMs: 3_600_000)
    }
}
