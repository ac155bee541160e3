import Foundation
import GatewayProtocol
import GatewayTestSupport
import XCTest

/// Webhooks (contract 4.4) from real nodes to a real HTTP receiver in the test: signed, once
/// delivered, one at a time per order in log order, retried with backoff, across node kills
/// and a Redis restart, and never in flight on two nodes at once. Run on the shared cluster
/// too, where events reach the log through the relay.
final class WebhookDeliveryTests: IntegrationCase {
    static let secret = "whsec-delivery-test"

    func webhookNode(_ receiver: WebhookReceiver, name: String = "n1", env: [String: String] = [:]) throws -> GatewayNodeProcess {
        var settings = ["GATEWAY_WEBHOOKS_URL": receiver.url, "GATEWAY_WEBHOOKS_SECRET": Self.secret,
                        "GATEWAY_WEBHOOKS_MAX_BACKOFF_S": "2"]
        for (k, v) in env { settings[k] = v }
        return try startNode(name, env: settings)
    }

    /// Creates `product` with keys, orders and pays one unit; answers the order id.
    func paidOrder(_ node: GatewayNodeProcess, _ product: String, buyer: String = "u1") throws -> String {
        let id = try XCTUnwrap(try order(node, #"{"buyer":"\#(buyer)","product":"\#(product)"}"#)["id"]?.stringValue)
        XCTAssertEqual(try signedNotify(node, notifyBody(try pay(node, id, payer: buyer))).status, 200)
        return id
    }

    func stock(_ node: GatewayNodeProcess, _ product: String, keys: Int) throws {
        try createProduct(node, product)
        _ = try uploadKeys(node, product, (1...keys).map { "K-\(product)-\($0)" })
    }

    /// `counter{outcome="..."}` of a node's `/metrics` (0 when absent).
    func attempts(_ node: GatewayNodeProcess, _ outcome: String) throws -> Int {
        let prefix = #"gateway_webhook_attempts_total{outcome="\#(outcome)"} "#
        let line = try node.http("GET", "/metrics").text.split(separator: "\n").first { $0.hasPrefix(prefix) }
        return line.flatMap { Double($0.dropFirst(prefix.count)) }.map { Int($0) } ?? 0
    }

    func backlog(_ node: GatewayNodeProcess) throws -> Int64? {
        let answer: JSON? = try node.http("GET", "/api/v1/admin/webhooks").json
        return answer?["webhooks"]?["backlog"]?.intValue
    }

    /// Per order, the event ids in log order (from `GET /api/v1/events`).
    func logOrder(_ events: [JSON]) -> [String: [String]] {
        var byOrder: [String: [String]] = [:]
        for e in events { byOrder[e["data"]?["order"]?.stringValue ?? "", default: []].append(e["id"]?.stringValue ?? "") }
        return byOrder
    }

    /// Every event of the log delivered exactly once with a valid signature, each order's
    /// events received in log order, and each event's body the log's own object.
    func assertDeliveredOnceInOrder(_ receiver: WebhookReceiver, _ log: [JSON], file: StaticString = #filePath, line: UInt = #line) {
        let delivered = receiver.delivered()
        XCTAssertEqual(delivered.map(\.eventID).sorted(), log.compactMap { $0["id"]?.stringValue }.sorted(),
                       "each logged event delivered exactly once", file: file, line: line)
        XCTAssertTrue(receiver.receipts().allSatisfy(\.signatureValid), "every attempt signed with webhooks.secret", file: file, line: line)
        for (order, ids) in logOrder(log) {
            let received = delivered.filter { ids.contains($0.eventID) }.map(\.eventID)
            XCTAssertEqual(received, ids, "order \(order): received in log order", file: file, line: line)
        }
        for event in log {
            guard let got = delivered.first(where: { $0.eventID == event["id"]?.stringValue }) else { continue }
            XCTAssertEqual(try? JSON.parse(got.body), event, "the body is the logged event", file: file, line: line)
        }
    }

    func testFailsTwiceThenDeliveredOnceSigned() throws {
        let first = Locked<String?>(nil)
        let receiver = try WebhookReceiver(secret: Self.secret) { id, attempt in
            // The first event anyone sends is answered 500 twice.
            let failing = first.mutate { f in
                if f == nil { f = id }
                return f == id
            }
            return (failing && attempt <= 2 ? 500 : 200, 0)
        }
        defer { receiver.stop() }
        let node = try webhookNode(receiver)
        try stock(node, "p1", keys: 1)
        let orderID = try paidOrder(node, "p1")

        let log = try events(node, expecting: 2)
        XCTAssertEqual(log.map { $0["type"]?.stringValue }, ["order.paid", "order.delivered"])
        XCTAssertTrue(receiver.waitForDelivered(count: 2, timeout: 30), "\(receiver.receipts().map { ($0.eventID, $0.status) })")
        assertDeliveredOnceInOrder(receiver, log)
        let paidID = try XCTUnwrap(log[0]["id"]?.stringValue)
        XCTAssertEqual(receiver.receipts().filter { $0.eventID == paidID }.map(\.status), [500, 500, 200])
        let deliveredAttempt = try XCTUnwrap(receiver.receipts().first { $0.eventID == log[1]["id"]?.stringValue })
        let paidDone = try XCTUnwrap(receiver.delivered().first { $0.eventID == paidID })
        XCTAssertGreaterThanOrEqual(deliveredAttempt.startedAt, paidDone.endedAt, "the order's next event waited for the first")
        let retries = receiver.receipts().filter { $0.eventID == paidID }.map(\.startedAt)
        XCTAssertGreaterThan(retries[1] - retries[0], 0.5, "backoff from 1 s (+-20 %), not a hot loop")
        XCTAssertEqual(receiver.delivered().first.flatMap(order(of:)), orderID)

        try waitUntil(timeout: 10, "backlog drained") { (try? backlog(node)) == 0 }
        XCTAssertEqual(try attempts(node, "retry"), 2)
        XCTAssertEqual(try attempts(node, "delivered"), 2)
    }

    /// The receiver answers 500 for ever to one order's first event: that order's next event
    /// waits behind it, other orders flow.
    func testAFailingEventHoldsOnlyItsOwnOrder() throws {
        let poison = Locked<String?>(nil)
        let receiver = try WebhookReceiver(secret: Self.secret) { id, _ in
            poison.mutate { p in
                if p == nil { p = id }
                return p == id
            } ? (500, 0) : (200, 0)
        }
        defer { receiver.stop() }
        let node = try webhookNode(receiver)
        try stock(node, "p1", keys: 2)
        let order1 = try paidOrder(node, "p1")
        _ = try events(node, expecting: 2)
        let order2 = try paidOrder(node, "p1", buyer: "u2")

        let ids = logOrder(try events(node, expecting: 4))
        XCTAssertTrue(receiver.waitForDelivered(count: 2, timeout: 20))
        try waitUntil(timeout: 20, "order 1's first event tried 3 times") {
            receiver.receipts().filter { self.order(of: $0) == order1 }.count >= 3
        }
        XCTAssertEqual(receiver.delivered().map(\.eventID), ids[order2], "the other order flows")
        XCTAssertEqual(Set(receiver.receipts().filter { order(of: $0) == order1 }.map(\.eventID)), [ids[order1]![0]],
                       "order 1's second event waits behind its first")
        XCTAssertEqual(try backlog(node), 2)
    }

    func order(of receipt: WebhookReceiver.Receipt) -> String? {
        (try? JSON.parse(receipt.body))?["data"]?["order"]?.stringValue
    }

    /// The receiver is down while a node is SIGKILLed and Redis restarts (AOF); when the
    /// receiver is back, every event of the run arrives, in order per order.
    func testNothingIsLostAcrossANodeKillAndARedisRestart() throws {
        try requireSingleRedis("kills and restarts the redis-server")
        let receiver = try WebhookReceiver(secret: Self.secret)
        receiver.stop()
        let a = try webhookNode(receiver, name: "n1")
        let b = try webhookNode(receiver, name: "n2")
        try stock(a, "p1", keys: 4)
        var orders = [try paidOrder(a, "p1"), try paidOrder(b, "p1", buyer: "u2")]
        try waitUntil(timeout: 20, "both nodes tried and failed") {
            ((try? attempts(a, "retry")) ?? 0) + ((try? attempts(b, "retry")) ?? 0) >= 4
        }

        a.signal(SIGKILL)
        _ = a.waitExit()
        redis.kill()
        try redis.start()
        try waitUntil(timeout: 15, "n2 ready") { (try? b.http("GET", "/readyz"))?.status == 200 }
        orders.append(try paidOrder(b, "p1", buyer: "u3"))
        let log = try events(b, expecting: 6)
        XCTAssertEqual(log.count, 6, "the log survived the restart")
        XCTAssertEqual(Set(log.compactMap { $0["data"]?["order"]?.stringValue }), Set(orders))

        try receiver.restart()
        XCTAssertTrue(receiver.waitForDelivered(count: 6, timeout: 60), "\(receiver.delivered().map(\.eventID))")
        assertDeliveredOnceInOrder(receiver, log)
        try waitUntil(timeout: 10, "backlog drained") { (try? backlog(b)) == 0 }
    }

    /// Two nodes share the work; a slow receiver shows whether two ever held one event at once.
    func testTwoNodesNeverDeliverOneEventAtTheSameTime() throws {
        let receiver = try WebhookReceiver(secret: Self.secret) { _, _ in (200, 150) }
        defer { receiver.stop() }
        let a = try webhookNode(receiver, name: "n1", env: ["GATEWAY_WEBHOOKS_CONCURRENCY": "2"])
        let b = try webhookNode(receiver, name: "n2", env: ["GATEWAY_WEBHOOKS_CONCURRENCY": "2"])
        for p in ["p1", "p2", "p3"] { try stock(a, p, keys: 2) }
        for (i, p) in ["p1", "p2", "p3", "p1", "p2", "p3"].enumerated() {
            _ = try paidOrder(i % 2 == 0 ? a : b, p, buyer: "u\(i)")
        }
        let log = try events(a, expecting: 12)
        XCTAssertEqual(log.count, 12)
        XCTAssertTrue(receiver.waitForDelivered(count: 12, timeout: 30))
        assertDeliveredOnceInOrder(receiver, log)
        let receipts = receiver.receipts()
        XCTAssertEqual(receipts.count, 12, "no event sent twice")
        for (i, r) in receipts.enumerated() {
            for s in receipts[(i + 1)...] where s.eventID == r.eventID {
                XCTAssertTrue(s.startedAt >= r.endedAt || r.startedAt >= s.endedAt, "event \(r.eventID) in flight twice")
            }
        }
        // The receiver counts an event when it answers; the node settles it when it reads that answer.
        try waitUntil(timeout: 10, "both nodes counted every delivery") {
            (try? attempts(a, "delivered") + attempts(b, "delivered")) == 12
        }
    }

    /// SIGTERM while a delivery is in flight: the node waits for its answer and settles it, so
    /// the order's next event goes at once (from the other node) instead of after the lease
    /// lapsed (30 s), and nothing is sent twice.
    func testADrainingNodeSettlesWhatItHasInFlight() throws {
        let arrived = Locked(0)
        let receiver = try WebhookReceiver(secret: Self.secret) { _, _ in
            (200, arrived.mutate { n in n += 1; return n } == 1 ? 3_000 : 0)
        }
        defer { receiver.stop() }
        let a = try webhookNode(receiver, name: "n1")
        try stock(a, "p1", keys: 1)
        _ = try paidOrder(a, "p1")
        try waitUntil(timeout: 10, "a delivery in flight") { arrived.value >= 1 }
        _ = try webhookNode(receiver, name: "n2")
        a.signal(SIGTERM)
        XCTAssertEqual(a.waitExit(timeout: 15), 0)
        XCTAssertTrue(receiver.waitForDelivered(count: 2, timeout: 15), "the next event went without waiting for a lease to lapse")
        XCTAssertEqual(receiver.receipts().count, 2, "nothing sent twice")
    }

    /// The README's receiver, `Config/examples/webhook_receiver.py`, takes a node's deliveries.
    func testTheExampleReceiverTakesANodesEvents() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else { throw XCTSkip("no python3") }
        let script = URL(fileURLWithPath: GatewayNodeProcess.configPath).deletingLastPathComponent()
            .appendingPathComponent("examples/webhook_receiver.py").path
        let port = freePort()
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("receiver-\(UUID().uuidString).log")
        let receiver = try TiedProcess.spawn("/bin/sh", ["-c", "WEBHOOK_SECRET=\(Self.secret) exec /usr/bin/python3 \(script) \(port) > \(out.path)"])
        defer {
            receiver.signal(SIGKILL)
            _ = receiver.waitExit(timeout: 5)
            try? FileManager.default.removeItem(at: out)
        }
        let node = try startNode(env: ["GATEWAY_WEBHOOKS_URL": "http://127.0.0.1:\(port)/", "GATEWAY_WEBHOOKS_SECRET": Self.secret])
        try stock(node, "p1", keys: 1)
        let orderID = try paidOrder(node, "p1")
        try waitUntil(timeout: 20, "the example printed both events") {
            let text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
            return text.contains("order.paid") && text.contains("order.delivered")
        }
        let text = try String(contentsOf: out, encoding: .utf8)
        XCTAssertTrue(text.contains(orderID), text)
        XCTAssertFalse(text.contains("K-p1-1"), "no card key in an event")
        try waitUntil(timeout: 10, "backlog drained") { (try? backlog(node)) == 0 }
    }
}
