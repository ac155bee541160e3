import Foundation
import GatewayClient
import GatewayProtocol
import GatewayRedis
import GatewayTestSupport
import XCTest

/// Validity memberships (contract 4.6) on two nodes sharing Redis: `validity_days`, a
/// delivery starting or extending one, the listing, reminders from the timer set, refunds.
/// A day cannot be waited for: the tests move a membership's end (its record and its timer's
/// score) in the test Redis, as time passing would.
final class MembershipTests: IntegrationCase {
    static let day: Int64 = 86_400_000
    static let timers = "gw:timers"

    var nowMs: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    func timerScore(_ product: String, _ user: String) throws -> Int64? {
        try redisCall(Self.timers, ["ZSCORE", Self.timers, "mem:\(product)/\(user)"]).text.flatMap { Double($0) }.map { Int64($0) }
    }

    /// Moves the membership as if time had passed: its record and its reminder's due time.
    func setMembership(_ product: String, _ user: String, startsAt: Int64, endsAt: Int64, remindedAt: Int64, due: Int64) throws {
        let key = "gw:{product:\(product)}:memberships"
        _ = try redisCall(key, ["HSET", key, user, "\(startsAt)|\(endsAt)|\(remindedAt)"])
        _ = try redisCall(Self.timers, ["ZADD", Self.timers, String(due), "mem:\(product)/\(user)"])
    }

    func createMembershipProduct(_ node: GatewayNodeProcess, _ id: String, days: Int = 30, merchant: String = "m1") throws {
        let r = try node.http("POST", "/api/v1/products", body:
            #"{"id":"\#(id)","merchant":"\#(merchant)","title":"VIP \#(id)","price":1999,"currency":"CNY","validity_days":\#(days)}"#)
        XCTAssertEqual(r.status, 201, r.text)
        XCTAssertEqual(r.json?["validity_days"]?.intValue, Int64(days))
    }

    func memberships(_ node: GatewayNodeProcess, _ user: String, key: String = TestSecrets.shopKey) throws -> [JSON] {
        let r = try node.http("GET", "/api/v1/users/\(user)/memberships", key: key)
        XCTAssertEqual(r.status, 200, r.text)
        return try XCTUnwrap(r.json?["memberships"]?.arrayValue, r.text)
    }

    func orderField(_ id: String, _ field: String) throws -> String? {
        let tag = id.split(separator: "-")[1]
        let key = "gw:{\(tag)}:order:\(id)"
        return try redisCall(key, ["HGET", key, field]).text
    }

    /// Pushes of `type` arriving within `seconds`.
    func pushes(_ s: GatewaySession, _ type: String, within seconds: Double) -> [JSON] {
        var seen: [JSON] = []
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline, let p = push(s, type, timeout: deadline.timeIntervalSinceNow) { seen.append(p) }
        return seen
    }

    func events(_ node: GatewayNodeProcess, _ type: String) throws -> [JSON] {
        let r = try node.http("GET", "/api/v1/events?limit=1000")
        XCTAssertEqual(r.status, 200, r.text)
        return (r.json?["events"]?.arrayValue ?? []).filter { $0["type"]?.stringValue == type }
    }

    // MARK: Products

    func testValidityDaysIsCheckedAndShown() throws {
        let n1 = try startNode()
        for bad in ["-1", "0", "3651", "1.5", #""30""#, "true"] {
            let r = try n1.http("POST", "/api/v1/products", body:
                #"{"id":"p1","merchant":"m1","title":"VIP","price":1999,"currency":"CNY","validity_days":\#(bad)}"#)
            XCTAssertEqual(r.status, 400, "validity_days \(bad): \(r.text)")
            XCTAssertEqual(r.json?["error"]?["code"]?.stringValue, "bad_request")
            XCTAssertTrue(r.text.contains("validity_days"), r.text)
            XCTAssertEqual(try n1.http("GET", "/api/v1/products/p1").status, 404, "nothing created for \(bad)")
        }
        try createMembershipProduct(n1, "p1", days: 3650)
        XCTAssertEqual(try product(n1, "p1")["validity_days"]?.intValue, 3650)
        try createProduct(n1, "p2")
        XCTAssertNil(try product(n1, "p2")["validity_days"], "not a membership product")
    }

    // MARK: Deliveries

    func testADeliveryStartsAMembershipAndARenewalExtendsItFromTheEnd() throws {
        let n1 = try startNode("n1"), n2 = try startNode("n2")
        try createMembershipProduct(n1, "p1")
        try createMembershipProduct(n1, "p9", merchant: "m2")
        try createProduct(n1, "p2")
        _ = try uploadKeys(n1, "p1", ["M-1", "M-2"])
        _ = try uploadKeys(n1, "p9", ["N-1"])
        _ = try uploadKeys(n1, "p2", ["K-1"])

        let before = nowMs
        let first = try buy(n1, "u1", "p1")
        XCTAssertEqual(try orderField(first["id"]!.stringValue!, "membership_ms"), String(30 * Self.day), "the order records what it added")
        try buy(n2, "u1", "p2")
        let listed = try memberships(n2, "u1")
        XCTAssertEqual(listed.count, 1, "a product without validity_days gives none: \(listed)")
        let m = try XCTUnwrap(listed.first)
        XCTAssertEqual(m["product"]?.stringValue, "p1")
        XCTAssertEqual(m["title"]?.stringValue, "VIP p1")
        XCTAssertEqual(m["active"], .bool(true))
        let starts = try XCTUnwrap(m["starts_at"]?.intValue), ends = try XCTUnwrap(m["ends_at"]?.intValue)
        XCTAssertGreaterThanOrEqual(starts, before)
        XCTAssertEqual(ends - starts, 30 * Self.day)
        XCTAssertEqual(try timerScore("p1", "u1"), ends - 3 * Self.day, "the first reminder: 3 days before the end")

        try buy(n2, "u1", "p1")
        let renewed = try XCTUnwrap(try memberships(n1, "u1").first)
        XCTAssertEqual(renewed["starts_at"]?.intValue, starts, "a renewal keeps the start")
        XCTAssertEqual(renewed["ends_at"]?.intValue, ends + 30 * Self.day, "and extends from the current end")
        XCTAssertEqual(try timerScore("p1", "u1"), ends + 27 * Self.day, "the reminder moved with the end")

        try buy(n1, "u1", "p9")
        XCTAssertEqual(try memberships(n1, "u1").compactMap { $0["product"]?.stringValue }, ["p9", "p1"], "soonest end first (p1 was renewed)")
        XCTAssertEqual(try memberships(n1, "u1", key: TestSecrets.merchantKey).compactMap { $0["product"]?.stringValue }, ["p1"],
                       "a merchant key sees its own products only")
        XCTAssertEqual(try memberships(n2, "nobody"), [])
        XCTAssertEqual(try n1.http("GET", "/api/v1/users/bad%20id/memberships").status, 400)
        XCTAssertEqual(try n1.http("GET", "/api/v1/users/u1/memberships", key: nil).status, 401)
    }

    func testAGiftClaimStartsTheClaimersMembership() throws {
        let n1 = try startNode("n1"), n2 = try startNode("n2")
        try createMembershipProduct(n1, "p1", days: 7)
        _ = try uploadKeys(n1, "p1", ["G-1"])
        let (buyer, _) = try open(n1, "u1")
        let (friend, _) = try open(n2, "u3")
        defer { buyer.close(); friend.close() }
        let created = try order(n1, #"{"buyer":"u1","product":"p1","kind":"gift","gift":{"to":"u3"}}"#)
        _ = try signedNotify(n1, notifyBody(try pay(n1, created["id"]!.stringValue!, payer: "u1")))
        let code = try XCTUnwrap(push(buyer, "gift.created")?["data"]?["code"]?.stringValue)
        XCTAssertEqual(try memberships(n2, "u1"), [], "the buyer of a gift gets no membership")
        XCTAssertEqual(try friend.command("gift.claim", [("code", .string(code))])["ok"]?["status"]?.stringValue, "delivered")
        let m = try XCTUnwrap(try memberships(n1, "u3").first)
        XCTAssertEqual((m["ends_at"]?.intValue ?? 0) - (m["starts_at"]?.intValue ?? 0), 7 * Self.day)
    }

    // MARK: Reminders

    func testAReminderArrivesOnceFromTheTimerSetOfTwoNodes() throws {
        // One day of validity reminded 86399 s before its end: one second after the delivery.
        let env = ["GATEWAY_REMINDERS_BEFORE_S": "86399"]
        let n1 = try startNode("n1", env: env), n2 = try startNode("n2", env: env)
        try createMembershipProduct(n1, "p1", days: 1)
        _ = try uploadKeys(n1, "p1", ["R-1"])
        let (live, _) = try open(n2, "u1")
        defer { live.close() }
        try buy(n1, "u1", "p1")
        let ends = try XCTUnwrap(try memberships(n1, "u1").first?["ends_at"]?.intValue)

        let reminder = try XCTUnwrap(push(live, "membership.expiring", timeout: 15), "the reminder from the timer set")
        XCTAssertEqual(reminder["data"], .object([("product", .string("p1")), ("ends_at", .int(ends))]))
        XCTAssertEqual(pushes(live, "membership.expiring", within: 2).count, 0, "two nodes sweeping send it once")
        let logged = try events(n2, "membership.expiring")
        XCTAssertEqual(logged.count, 1, "\(logged)")
        XCTAssertEqual(logged.first?["data"], .object([("product", .string("p1")), ("user", .string("u1")), ("ends_at", .int(ends))]))
        XCTAssertEqual(try timerScore("p1", "u1"), ends, "next: the end itself")
    }

    func testAfterADowntimeOnlyTheLatestStageThenTheEndPushesExpired() throws {
        let n1 = try startNode("n1"), n2 = try startNode("n2")
        try createMembershipProduct(n1, "p1")
        _ = try uploadKeys(n1, "p1", ["E-1"])
        let (live, _) = try open(n2, "u1")
        defer { live.close() }
        try buy(n1, "u1", "p1")
        XCTAssertEqual(try memberships(n1, "u1").count, 1)

        // 29.5 days later, the node having been down: both stages (3 days and 1 day before
        // the end) are due, and only the latest is sent.
        let soon = nowMs + Self.day / 2, starts = soon - 30 * Self.day
        try setMembership("p1", "u1", startsAt: starts, endsAt: soon, remindedAt: starts, due: nowMs - 1000)
        let expiring = try XCTUnwrap(push(live, "membership.expiring", timeout: 10))
        XCTAssertEqual(expiring["data"]?["ends_at"]?.intValue, soon)
        XCTAssertEqual(pushes(live, "membership.expiring", within: 1.5).count, 0, "no burst of stale reminders")
        XCTAssertEqual(try timerScore("p1", "u1"), soon)

        // The end passes.
        let ended = nowMs - 2000
        try setMembership("p1", "u1", startsAt: starts, endsAt: ended, remindedAt: soon - Self.day, due: ended)
        let expired = try XCTUnwrap(push(live, "membership.expired", timeout: 10))
        XCTAssertEqual(expired["data"], .object([("product", .string("p1")), ("ends_at", .int(ended))]))
        XCTAssertEqual(pushes(live, "membership.expiring", within: 1).count, 0, "the end only")
        XCTAssertNil(try timerScore("p1", "u1"), "nothing left to remind")
        XCTAssertEqual(try memberships(n1, "u1").first?["active"], .bool(false), "kept as a record")
        XCTAssertEqual(try events(n1, "membership.expiring").count, 1, "no event for the end (the contract lists none)")
    }

    // MARK: Refunds

    func testARefundCancelsTheReminders() throws {
        let n1 = try startNode("n1"), n2 = try startNode("n2")
        try createMembershipProduct(n1, "p1")
        _ = try uploadKeys(n1, "p1", ["F-1", "F-2"])
        let (live, _) = try open(n2, "u1")
        defer { live.close() }
        let first = try buy(n1, "u1", "p1"), second = try buy(n1, "u1", "p1")
        let m = try XCTUnwrap(try memberships(n2, "u1").first)
        let starts = try XCTUnwrap(m["starts_at"]?.intValue), ends = try XCTUnwrap(m["ends_at"]?.intValue)

        XCTAssertEqual(try n2.http("POST", "/api/v1/orders/\(second["id"]!.stringValue!)/refund").status, 200)
        let shorter = try XCTUnwrap(try memberships(n1, "u1").first)
        XCTAssertEqual(shorter["ends_at"]?.intValue, ends - 30 * Self.day, "the refund takes its 30 days back")
        XCTAssertEqual(shorter["active"], .bool(true))
        XCTAssertEqual(try timerScore("p1", "u1"), ends - 33 * Self.day, "rescheduled for the new end")

        XCTAssertEqual(try n1.http("POST", "/api/v1/orders/\(first["id"]!.stringValue!)/refund").status, 200)
        let over = try XCTUnwrap(try memberships(n2, "u1").first)
        XCTAssertEqual(over["active"], .bool(false))
        XCTAssertEqual(over["ends_at"]?.intValue, starts)
        // One server removes the reminder in the refund's step; a cluster leaves it to the
        // sweep (a decision never removes one there). Either way, made due, it sends nothing and goes.
        if TestRedis.isCluster {
            _ = try redisCall(Self.timers, ["ZADD", Self.timers, "XX", String(Int64(Date().timeIntervalSince1970 * 1_000)), "mem:p1/u1"])
        } else {
            XCTAssertNil(try timerScore("p1", "u1"), "a refund cancels the reminders")
        }
        XCTAssertEqual(pushes(live, "membership.expired", within: 1).count + pushes(live, "membership.expiring", within: 1).count, 0,
                       "no push for a refunded membership")
        XCTAssertNil(try timerScore("p1", "u1"), "no reminder left")
    }
}
