import Foundation
import GatewayClient
import GatewayProtocol
import XCTest

/// A v1 installation (one Redis server, records without slot tags) upgraded in place: its
/// orders, payments, gift and pay codes, idempotency keys and timers keep working once
/// today's nodes start on it.
final class LegacyUpgradeTests: IntegrationCase {
    /// v1 ids: a prefix and 20 hex digits.
    let delivered = "o-0000000000000000de01", deliveredPayment = "pay-0000000000000000de01"
    let claimable = "o-00000000000000000a01", claimablePayment = "pay-00000000000000000a01", claimableCode = "g-00000000000000000a01"
    let expiring = "o-00000000000000000b01", expiringPayment = "pay-00000000000000000b01", expiringCode = "g-00000000000000000b01"
    let unpaid = "o-00000000000000000c01"
    let friendpay = "o-00000000000000000f01", friendpayPayment = "pay-00000000000000000f01", payCode = "f-00000000000000000f01"

    func hset(_ key: String, _ fields: [(String, String)]) {
        XCTAssertFalse(redis.cli(["HSET", key] + fields.flatMap { [$0.0, $0.1] }).contains("ERR"))
    }

    func v1Order(_ id: String, kind: String, status: String, keys: String, now: Int64, extra: [(String, String)]) {
        hset("gw:{order:\(id)}:info", [
            ("id", id), ("kind", kind), ("buyer", "u1"), ("owner", "u1"), ("product", "p1"), ("title", "Card p1"),
            ("quantity", "1"), ("amount", "1999"), ("currency", "CNY"), ("status", status), ("created_at", String(now - 60_000)),
            ("expires_at", String(now + 3_600_000)), ("keys", keys),
        ] + extra)
    }

    func v1Payment(_ id: String, order: String, payer: String, status: String, version: Int, now: Int64) {
        hset("gw:{payment:\(id)}:info", [
            ("id", id), ("order", order), ("payer", payer), ("amount", "1999"), ("currency", "CNY"), ("status", status),
            ("created_at", String(now - 50_000)), ("trade_no", status == "created" ? "" : "T-v1"), ("version", String(version)),
        ])
    }

    /// Writes what v1 left: a delivered order (with its key and an idempotency key), a paid
    /// gift to claim, a paid gift whose timer is due in a few seconds, an unpaid friend-pay
    /// with its pay code and the friend's created payment.
    func writeV1Records() throws -> [String] {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let keyIDs = (0..<3).map { _ in redis.cli(["LPOP", "gw:{product:p1}:stock"]).trimmingCharacters(in: .whitespacesAndNewlines) }
        XCTAssertFalse(keyIDs.contains(""), "three keys taken out of stock for the v1 orders")

        v1Order(delivered, kind: "normal", status: "delivered", keys: keyIDs[0], now: now, extra: [
            ("version", "3"), ("paid_by", "u1"), ("payment", deliveredPayment), ("paid_at", String(now - 40_000)),
        ])
        v1Payment(deliveredPayment, order: delivered, payer: "u1", status: "succeeded", version: 2, now: now)
        redis.cli(["HINCRBY", "gw:{product:p1}:members", "u1", "1"])
        redis.cli(["SET", "gw:idem:{u1}:shop/v1-key", delivered, "PX", "3600000"])

        for (order, payment, code, due, keyID) in [(claimable, claimablePayment, claimableCode, now + 3_600_000, keyIDs[1]),
                                                   (expiring, expiringPayment, expiringCode, now + 4_000, keyIDs[2])] {
            v1Order(order, kind: "gift", status: "paid", keys: keyID, now: now, extra: [
                ("version", "3"), ("paid_by", "u1"), ("payment", payment), ("paid_at", String(now - 40_000)),
                ("gift_code", code), ("gift_to", ""), ("gift_message", ""), ("gift_status", "pending"),
                ("gift_expires_at", String(due)),
            ])
            v1Payment(payment, order: order, payer: "u1", status: "succeeded", version: 2, now: now)
            redis.cli(["SET", "gw:giftcode:\(code)", order, "PX", "86400000"])
            redis.cli(["ZADD", "gw:timers", String(due), "gift:\(order)"])
        }

        v1Order(unpaid, kind: "normal", status: "pending_payment", keys: "", now: now, extra: [("version", "1")])
        redis.cli(["ZADD", "gw:timers", String(now + 3_600_000), "pay:\(unpaid)"])

        v1Order(friendpay, kind: "friendpay", status: "pending_payment", keys: "", now: now, extra: [
            ("version", "1"), ("pay_code", payCode), ("friend", "u2"),
        ])
        v1Payment(friendpayPayment, order: friendpay, payer: "u2", status: "created", version: 1, now: now)
        redis.cli(["SET", "gw:paycode:\(payCode)", friendpay, "PX", "86400000"])
        redis.cli(["ZADD", "gw:timers", String(now + 3_600_000), "pay:\(friendpay)"])
        return keyIDs
    }

    /// Orders, payments, codes and idempotency keys upgraded, summed over the nodes' log lines.
    func upgradeCounts(_ nodes: [GatewayNodeProcess]) -> [Int] {
        let pattern = try! NSRegularExpression(pattern: #"upgraded (\d+) v1 orders, (\d+) payments, (\d+) gift/pay codes, (\d+) idempotency keys"#)
        var sums = [0, 0, 0, 0]
        for node in nodes {
            let log = node.log()
            for m in pattern.matches(in: log, range: NSRange(log.startIndex..., in: log)) {
                for i in 0..<4 { sums[i] += Int(log[Range(m.range(at: i + 1), in: log)!])! }
            }
        }
        return sums
    }

    func notify(_ node: GatewayNodeProcess, payment: String, order: String) throws -> HTTPResponse {
        try signedNotify(node, notifyBody(.object([("id", .string(payment)), ("order", .string(order)), ("amount", .int(1999)),
                                                   ("currency", .string("CNY"))])))
    }

    func testV1OrdersKeepWorkingAfterTheUpgrade() throws {
        try requireSingleRedis("writes v1 records with redis-cli")
        // Today's node makes the product and its sealed keys (their format did not change), then goes.
        let maker = try startNode("n0")
        try createProduct(maker, "p1")
        XCTAssertEqual(try uploadKeys(maker, "p1", ["K-1", "K-2", "K-3", "K-4", "K-5"])["stock"]?.intValue, 5)
        maker.stop()
        nodes.removeAll()
        _ = try writeV1Records()
        redis.cli(["DEL", "gw:schema"])

        // Two nodes upgrade at once.
        let starting = try ["n1", "n2"].map { try GatewayNodeProcess(name: $0, redisPort: redis.port, waitReady: false) }
        nodes += starting
        for node in starting {
            try waitUntil(timeout: 20, "\(node.name) ready") { (try? node.http("GET", "/readyz"))?.status == 200 }
        }
        let node = starting[0]
        XCTAssertEqual(redis.cli(["GET", "gw:schema"]).trimmingCharacters(in: .whitespacesAndNewlines), "2")
        // Each record is upgraded by one of them: what they did adds up.
        XCTAssertEqual(upgradeCounts(starting), [5, 4, 3, 1], starting.map { $0.log() }.joined(separator: "\n"))

        // The delivered order, with its key, over HTTP and to its buyer.
        let shopView = try getOrder(node, delivered)
        XCTAssertEqual(shopView["status"]?.stringValue, "delivered")
        let keys = shopView["keys"]?.arrayValue?.compactMap(\.stringValue) ?? []
        XCTAssertEqual(keys.count, 1)
        XCTAssertTrue(Set(keys).isSubset(of: ["K-1", "K-2", "K-3"]), "\(keys)")
        let (buyer, _) = try open(node, "u1")
        XCTAssertEqual(try buyer.command("order.get", [("order", .string(delivered))])["ok"]?["keys"]?.arrayValue?.compactMap(\.stringValue), keys)

        // Its idempotency key answers it.
        let again = try node.http("POST", "/api/v1/orders", body: #"{"buyer":"u1","product":"p1","idempotency_key":"v1-key"}"#)
        XCTAssertEqual(again.status, 200, again.text)
        XCTAssertEqual(again.json?["id"]?.stringValue, delivered)

        // A repeated notify for its payment is a clean duplicate.
        XCTAssertEqual(try notify(node, payment: deliveredPayment, order: delivered).status, 200)
        XCTAssertEqual(try getOrder(node, delivered)["status"]?.stringValue, "delivered")

        // The gift is claimed by its code.
        let (friend, _) = try open(starting[1], "u3")
        let claimed = try friend.command("gift.claim", [("code", .string(claimableCode))])
        XCTAssertEqual(claimed["ok"]?["status"]?.stringValue, "delivered", claimed.serialized())

        // The friend-pay request is found by its pay code and paid by the friend's v1 payment.
        let (payer, _) = try open(node, "u2")
        XCTAssertEqual(try payer.command("friendpay.view", [("code", .string(payCode))])["ok"]?["order"]?.stringValue, friendpay)
        XCTAssertEqual(try notify(node, payment: friendpayPayment, order: friendpay).status, 200)
        XCTAssertEqual(try getOrder(node, friendpay)["status"]?.stringValue, "delivered")

        // An unpaid v1 order gets a payment today (a v1 payment id, beside its order) and is paid.
        let payment = try pay(node, unpaid, payer: "u1")
        XCTAssertEqual(try signedNotify(node, notifyBody(payment)).status, 200)
        XCTAssertEqual(try getOrder(node, unpaid)["status"]?.stringValue, "delivered")

        // The other gift's timer fires: refunded, its key back in stock.
        try waitUntil(timeout: 20, "the v1 gift timer fired") {
            (try? node.http("GET", "/api/v1/orders/\(expiring)"))?.json?["status"]?.stringValue == "refunded"
        }
        XCTAssertEqual(try getOrder(node, expiring)["gift"]?["status"]?.stringValue, "expired")
        // Five uploaded, three held by v1 orders, one each to the friend-pay and the unpaid
        // order, the expired gift's back; none to the repeated notify.
        XCTAssertEqual(try product(node, "p1")["stock"]?.intValue, 1)

        // Run again from the start (as after a crash before the marker): nothing changes.
        redis.cli(["DEL", "gw:schema"])
        let rerun = try startNode("n3")
        XCTAssertEqual(upgradeCounts([rerun]), [0, 0, 0, 0], rerun.log())
        XCTAssertEqual(try getOrder(rerun, claimable)["status"]?.stringValue, "delivered")
        XCTAssertEqual(try getOrder(rerun, expiring)["status"]?.stringValue, "refunded")
        let repeated = try rerun.http("POST", "/api/v1/orders", body: #"{"buyer":"u1","product":"p1","idempotency_key":"v1-key"}"#)
        XCTAssertEqual(repeated.json?["id"]?.stringValue, delivered, repeated.text)
    }
}
