import Foundation
import GatewayClient
import GatewayProtocol
import XCTest

/// What an operator reads (PROTOCOL 4.7): JSON-lines logs that never hold a key, token or
/// secret; histograms in /metrics; the Grafana dashboard built on them.
final class ObservabilityTests: IntegrationCase {
    /// A whole order flow on a node logging everything (`trace`): its output holds no card key,
    /// token or secret, and every log line is a JSON object with ts, level, node and msg.
    func testOrderFlowLogsAreJSONLinesWithoutSecrets() throws {
        let node = try startNode(env: ["GATEWAY_LOGGING_LEVEL": "trace"])
        let cardKeys = ["CARD-7Q2X-ALPHA", "CARD-9Z4K-BRAVO", "CARD-3M8P-CHARLIE"]
        try createProduct(node, "p1")
        _ = try uploadKeys(node, "p1", cardKeys)
        let tokens = ["u1": token("u1"), "u3": token("u3")]
        let (buyer, _) = try GatewaySession.open(loop: Self.loop, url: node.wsURL, token: tokens["u1"]!)
        let (friend, _) = try GatewaySession.open(loop: Self.loop, url: node.wsURL, token: tokens["u3"]!)

        // Normal purchase: create, pay, notify, delivered, keys read by the owner.
        let bought = try buy(node, "u1", "p1")
        let orderID = try XCTUnwrap(bought["id"]?.stringValue)
        XCTAssertEqual(push(buyer, "order.status")?["data"]?["status"]?.stringValue, "pending_payment")
        let mine = try buyer.command("order.get", [("order", .string(orderID))])
        XCTAssertEqual(mine["ok"]?["keys"]?.arrayValue?.count, 1, "\(mine)")

        // Gift: the friend claims it with the code and gets the key.
        let gift = try order(node, #"{"buyer":"u1","product":"p1","kind":"gift","gift":{"to":"u3"}}"#)
        let giftID = try XCTUnwrap(gift["id"]?.stringValue)
        XCTAssertEqual(try signedNotify(node, notifyBody(try pay(node, giftID, payer: "u1"))).status, 200)
        let code = try XCTUnwrap(push(friend, "gift.received")?["data"]?["code"]?.stringValue)
        let claimed = try friend.command("gift.claim", [("code", .string(code))])
        XCTAssertEqual(claimed["ok"]?["keys"]?.arrayValue?.count, 1, "\(claimed)")
        XCTAssertEqual(try node.http("GET", "/api/v1/orders/\(orderID)", key: TestSecrets.merchantKey).status, 200)
        XCTAssertEqual(try node.http("GET", "/metrics", key: nil).status, 200)
        buyer.close()
        friend.close()

        let log = node.log()
        let secrets = ["auth.secret": TestSecrets.auth, "api.shop_key": TestSecrets.shopKey,
                       "merchant key": TestSecrets.merchantKey, "payments.secret": TestSecrets.payments,
                       "keys.secret": TestSecrets.keys, "gift code": code]
            .merging(Dictionary(uniqueKeysWithValues: tokens.map { ("token of \($0.key)", $0.value) })) { a, _ in a }
            .merging(Dictionary(uniqueKeysWithValues: cardKeys.map { ("card key \($0)", $0) })) { a, _ in a }
        for (what, secret) in secrets {
            XCTAssertFalse(log.contains(secret), "the log holds the \(what)")
        }

        var lines = 0
        var ids: Set<String> = []
        var ordersNamed: Set<String> = []
        for line in log.split(separator: "\n") {
            // The one line the CLI prints on stdout, which the harness writes to the same file.
            if line.hasPrefix("gateway node \(node.name) listening on ") { continue }
            guard let json = try? JSON.parse(Array(line.utf8)), case .object(let fields) = json else {
                XCTFail("not a JSON object: \(line)")
                continue
            }
            lines += 1
            XCTAssertEqual(Array(fields.prefix(4).map(\.0)), ["ts", "level", "node", "msg"], String(line))
            XCTAssertEqual(json["node"]?.stringValue, node.name)
            if json["user"]?.stringValue == "u3", json["client"]?.stringValue?.hasPrefix("c-\(node.name)-") == true {
                ids.insert(json["msg"]?.stringValue ?? "")
            }
            if let order = json["order"]?.stringValue { ordersNamed.insert(order) }
        }
        XCTAssertGreaterThan(lines, 10, "trace logs the flow: \(log)")
        XCTAssertTrue(ids.contains { $0.hasPrefix("gift.claim answered in") }, "the command line carries the ids as fields: \(ids)")
        XCTAssertTrue(ordersNamed.isSuperset(of: [orderID, giftID]), "HTTP lines name the order: \(ordersNamed)")
    }

    /// Pushes, commands and HTTP calls show up as histograms, labelled by op, route pattern and status.
    func testMetricsHaveLatencyHistogramsAfterTraffic() throws {
        let node = try startNode()
        let text = try trafficThenScrape(node)
        func value(_ series: String) -> Double? {
            text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last!) }
        }
        XCTAssertGreaterThanOrEqual(value("gateway_push_latency_seconds_count") ?? 0, 5, text)
        XCTAssertEqual(value(#"gateway_push_latency_seconds_bucket{le="+Inf"}"#), value("gateway_push_latency_seconds_count"))
        XCTAssertEqual(value(#"gateway_command_duration_seconds_count{op="subscribe"}"#), 1, text)
        XCTAssertNotNil(value(#"gateway_command_duration_seconds_bucket{op="connect",le="+Inf"}"#), text)
        XCTAssertEqual(value(#"gateway_http_request_duration_seconds_count{route="/api/v1/publish",status="200"}"#), 5, text)
        XCTAssertEqual(value(#"gateway_http_request_duration_seconds_count{route="/api/v1/orders/{id}",status="404"}"#), 1, text)
        XCTAssertEqual(value(#"gateway_http_request_duration_seconds_count{route="unmatched",status="404"}"#), 1, text)
        XCTAssertEqual(value(#"gateway_http_request_duration_seconds_count{route="/api/v1/admin/nodes",status="401"}"#), 1, text)
        XCTAssertEqual(value("gateway_webhook_backlog"), 0)
        XCTAssertEqual(value("gateway_webhook_oldest_seconds"), 0)
    }

    /// The shipped dashboard parses and asks only for series a node exports.
    func testGrafanaDashboardUsesExportedMetrics() throws {
        let path = URL(fileURLWithPath: GatewayNodeProcess.configPath).deletingLastPathComponent()
            .appendingPathComponent("grafana/gateway.json")
        let dashboard = try JSON.parse(Array(try Data(contentsOf: path)))
        let panels = try XCTUnwrap(dashboard["panels"]?.arrayValue)
        let exprs = panels.flatMap { $0["targets"]?.arrayValue ?? [] }.compactMap { $0["expr"]?.stringValue }
        XCTAssertGreaterThanOrEqual(exprs.count, panels.count)
        let metricName = try Regex("gateway_[a-z_]+")
        let names = Set(exprs.flatMap { expr in expr.matches(of: metricName).map { String(expr[$0.range]) } })
        for histogram in ["gateway_push_latency_seconds", "gateway_command_duration_seconds", "gateway_http_request_duration_seconds"] {
            XCTAssertTrue(names.contains(histogram + "_bucket"), "the dashboard charts \(histogram)")
        }
        XCTAssertTrue(names.isSuperset(of: ["gateway_webhook_backlog", "gateway_webhook_oldest_seconds"]))

        let node = try startNode()
        let exported = Set(try trafficThenScrape(node).split(separator: "\n").filter { !$0.hasPrefix("#") }
            .compactMap { $0.split(whereSeparator: { $0 == "{" || $0 == " " }).first.map(String.init) })
        XCTAssertEqual(names.subtracting(exported), [], "series the dashboard asks for that /metrics lacks")
    }

    /// A subscriber gets 5 publications; a 404 on a real route and one on no route; then /metrics.
    private func trafficThenScrape(_ node: GatewayNodeProcess) throws -> String {
        try createProduct(node, "p1")
        let (watcher, _) = try open(node, "u1")
        XCTAssertNotNil(try watcher.command("subscribe", [("channel", .string("product:p1"))])["ok"])
        for n in 1...5 { try publish(node, "product:p1", n) }
        for _ in 1...5 { XCTAssertNotNil(push(watcher, "test.note")) }
        XCTAssertEqual(try node.http("GET", "/api/v1/orders/o-none").status, 404)
        XCTAssertEqual(try node.http("GET", "/wp-login.php").status, 404)
        // Refused on the headers, still counted under its route: key guessing shows per route.
        XCTAssertEqual(try node.http("GET", "/api/v1/admin/nodes", key: "wrong").status, 401)
        watcher.close()
        let scrape = try node.http("GET", "/metrics", key: nil)
        XCTAssertEqual(scrape.status, 200)
        return scrape.text
    }
}
