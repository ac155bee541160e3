import Foundation
import GatewayProtocol
import XCTest

/// The event log (contract 4.4) on real nodes and Redis: each decision's events, read with
/// `GET /api/v1/events` through one cursor. Run on the shared cluster too
/// (`GATEWAY_TEST_REDIS_CLUSTER`), where events are relayed from the products' slots.
extension IntegrationCase {
    /// The events after `after`; `expecting`: polls (bounded) until that many came, since on
    /// a cluster they are relayed just after the answer.
    func events(_ node: GatewayNodeProcess, after: String? = nil, limit: Int? = nil, expecting: Int? = nil,
                file: StaticString = #filePath, line: UInt = #line) throws -> [JSON] {
        var query: [String] = []
        if let after { query.append("after=\(after)") }
        if let limit { query.append("limit=\(limit)") }
        let path = "/api/v1/events" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        let deadline = Date().addingTimeInterval(10)
        while true {
            let r = try node.http("GET", path)
            XCTAssertEqual(r.status, 200, r.text, file: file, line: line)
            let list = r.json?["events"]?.arrayValue ?? []
            if expecting == nil || list.count >= expecting! || Date() > deadline { return list }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// The first event of `type` about `payment` (its `data.payment`), polling (bounded) for
    /// it: on a cluster events are relayed just after the answer.
    func event(_ node: GatewayNodeProcess, _ type: String, payment: String) throws -> JSON? {
        let deadline = Date().addingTimeInterval(10)
        while true {
            let found = try events(node, limit: 1000).first {
                $0["type"]?.stringValue == type && $0["data"]?["payment"]?.stringValue == payment
            }
            if found != nil || Date() > deadline { return found }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }
}

final class EventLogTests: IntegrationCase {

    func ids(_ list: [JSON]) -> [[Int64]] {
        list.map { ($0["id"]?.stringValue ?? "").split(separator: "-").compactMap { Int64($0) } }
    }

    func testEventsOfAPurchaseAndItsRefundAreReadInOrder() throws {
        let node = try startNode()
        try createProduct(node, "p1")
        _ = try uploadKeys(node, "p1", ["L-1"])
        let orderID = try XCTUnwrap(try order(node, #"{"buyer":"u1","product":"p1"}"#)["id"]?.stringValue)
        XCTAssertEqual(try events(node).count, 0, "creating an order tells the shop nothing")
        let payment = try pay(node, orderID, payer: "u1")
        XCTAssertEqual(try signedNotify(node, notifyBody(payment)).status, 200)

        let paid = try events(node, expecting: 2)
        XCTAssertEqual(paid.map { $0["type"]?.stringValue }, ["order.paid", "order.delivered"])
        XCTAssertEqual(paid.map { $0["data"]?["order"]?.stringValue }, [orderID, orderID])
        XCTAssertEqual(paid[0]["data"]?["payment"], payment["id"])
        XCTAssertNotNil(paid[0]["created_at"]?.intValue)
        XCTAssertFalse(paid.map { $0.serialized() }.joined().contains("L-1"), "no card key in an event")
        let first = try XCTUnwrap(paid[0]["id"]?.stringValue)

        XCTAssertEqual(try node.http("POST", "/api/v1/orders/\(orderID)/refund").status, 200)
        let all = try events(node, expecting: 4)
        XCTAssertEqual(all.map { $0["type"]?.stringValue }, ["order.paid", "order.delivered", "order.refunded", "payment.refund_required"])
        let sorted = ids(all).sorted { $0.lexicographicallyPrecedes($1) }
        XCTAssertEqual(ids(all), sorted, "ids increase")
        XCTAssertEqual(Set(ids(all).map { $0.map(String.init).joined(separator: "-") }).count, 4)

        XCTAssertEqual(try events(node, after: first).map { $0["type"]?.stringValue },
                       ["order.delivered", "order.refunded", "payment.refund_required"], "after is exclusive")
        XCTAssertEqual(try events(node, after: first, limit: 1).map { $0["type"]?.stringValue }, ["order.delivered"])
        XCTAssertEqual(try events(node, after: all[3]["id"]?.stringValue).count, 0)
    }

    func testEventsOfTwoProductsShareOneCursorAndKeepEachOrdersOrder() throws {
        let node = try startNode()
        var orders: [String] = []
        for product in ["p1", "p2", "p3"] {
            try createProduct(node, product)
            _ = try uploadKeys(node, product, ["K-\(product)"])
            let id = try XCTUnwrap(try order(node, #"{"buyer":"u1","product":"\#(product)"}"#)["id"]?.stringValue)
            XCTAssertEqual(try signedNotify(node, notifyBody(try pay(node, id, payer: "u1"))).status, 200)
            orders.append(id)
        }
        let list = try events(node, expecting: 6)
        XCTAssertEqual(list.count, 6)
        for id in orders {
            XCTAssertEqual(list.filter { $0["data"]?["order"]?.stringValue == id }.map { $0["type"]?.stringValue },
                           ["order.paid", "order.delivered"], "each order's events in decision order")
        }
        var seen: [JSON] = []
        var after: String?
        while seen.count < 6 {
            let page = try events(node, after: after, limit: 4)
            guard let last = page.last else { break }
            seen += page
            after = last["id"]?.stringValue
        }
        XCTAssertEqual(seen, list, "paging with the last id reads each event once")
    }

    /// With `webhooks.url` set and nothing delivered (the receiver is unreachable), the
    /// events wait: `/metrics` and the admin page show how many and how old the oldest is,
    /// and the admin page lists the order as being retried (the sender tries it again after
    /// about 1 s), with nothing given up.
    func testUndeliveredEventsShowAsTheWebhookBacklog() throws {
        let node = try startNode(env: ["GATEWAY_WEBHOOKS_URL": "http://127.0.0.1:9/hooks", "GATEWAY_WEBHOOKS_SECRET": "whsec-test"])
        try createProduct(node, "p1")
        _ = try uploadKeys(node, "p1", ["L-1"])
        let orderID = try XCTUnwrap(try order(node, #"{"buyer":"u1","product":"p1"}"#)["id"]?.stringValue)
        XCTAssertEqual(try signedNotify(node, notifyBody(try pay(node, orderID, payer: "u1"))).status, 200)
        func gauge(_ name: String) throws -> Double? {
            try node.http("GET", "/metrics").text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
                .flatMap { Double($0.split(separator: " ").last!) }
        }
        let deadline = Date().addingTimeInterval(10)
        while try gauge("gateway_webhook_backlog") != 2, Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        XCTAssertEqual(try gauge("gateway_webhook_backlog"), 2, "order.paid and order.delivered wait")
        XCTAssertGreaterThanOrEqual(try gauge("gateway_webhook_oldest_seconds") ?? -1, 0)
        let admin = try node.http("GET", "/api/v1/admin/webhooks")
        XCTAssertEqual(admin.json?["webhooks"]?["backlog"]?.intValue, 2, admin.text)

        func retrying() throws -> (hooks: JSON?, row: JSON?) {
            let hooks = try node.http("GET", "/api/v1/admin/webhooks").json?["webhooks"]
            return (hooks, hooks?["retrying"]?.arrayValue?.first { $0["key"]?.stringValue == orderID })
        }
        let retryDeadline = Date().addingTimeInterval(20)
        while try (retrying().row?["attempts"]?.intValue ?? 0) < 2, Date() < retryDeadline { Thread.sleep(forTimeInterval: 0.2) }
        let (hooks, row) = try retrying()
        XCTAssertGreaterThanOrEqual(row?["attempts"]?.intValue ?? 0, 2, "the order is being retried: \(String(describing: hooks))")
        XCTAssertEqual(row?["type"]?.stringValue, "order.paid", "its head is the first event")
        XCTAssertNotNil(row?["event"]?.stringValue)
        XCTAssertNotNil(row?["next_attempt_ms"]?.intValue)
        XCTAssertEqual(hooks?["dead"]?.intValue, 0, "nothing given up within retry_for_s")
    }

    func testBadQueriesAndMerchantKeysAreRefused() throws {
        let node = try startNode()
        for query in ["after=abc", "after=1-2-3", "after=", "limit=0", "limit=1001", "limit=x", "limit=1&limit=2"] {
            let r = try node.http("GET", "/api/v1/events?\(query)")
            XCTAssertEqual(r.status, 400, "\(query): \(r.text)")
        }
        XCTAssertEqual(try node.http("GET", "/api/v1/events?limit=1000&other=x").status, 200)
        XCTAssertEqual(try node.http("GET", "/api/v1/events", key: TestSecrets.merchantKey).status, 403, "events cover every merchant")
        XCTAssertEqual(try node.http("GET", "/api/v1/events", key: nil).status, 401)
    }
}
