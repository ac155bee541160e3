import Foundation
import GatewayClient
import GatewayProtocol
import XCTest

/// Dormant buyers (contract 4.6) on two nodes sharing Redis: `last_seen` kept on connect and
/// disconnect, and one `user.dormant` event per dormant spell from the timer set. A spell of
/// a minute cannot be waited for: the tests move `last_seen`, the first delivery and the
/// `dorm:` timer back in the test Redis, as a month would.
final class DormantTests: IntegrationCase {
    static let env = ["GATEWAY_RECALL_DORMANT_S": "60"]

    var nowMs: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// A command to the test Redis (its own server, or the shared cluster, following redirects).
    @discardableResult
    func testRedis(_ args: [String]) -> String {
        if let cluster = TestRedis.launcher, let port = cluster.livePorts.first { return cluster.cli(["-c"] + args, port: port) }
        return redis.cli(args)
    }

    func lastSeen(_ node: GatewayNodeProcess, _ user: String) throws -> Int64? {
        let r = try node.http("GET", "/api/v1/users/\(user)")
        XCTAssertEqual(r.status, 200, r.text)
        return r.json?["last_seen"]?.intValue
    }

    /// Polls (bounded) until `user`'s `last_seen` satisfies `ok`: it is written just after the connect's answer.
    func awaitLastSeen(_ node: GatewayNodeProcess, _ user: String, _ ok: (Int64?) -> Bool) throws -> Int64? {
        let deadline = Date().addingTimeInterval(10)
        var seen = try lastSeen(node, user)
        while !ok(seen) && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
            seen = try lastSeen(node, user)
        }
        return seen
    }

    /// Makes `user` look away for two spells (last seen, and first delivery of `product`,
    /// two minutes ago) and their `dorm:` timer due now. Returns the `last_seen` written.
    @discardableResult
    func sendAway(_ user: String, owning product: String?) -> Int64 {
        let away = nowMs - 120_000
        testRedis(["HSET", "gw:{user:\(user)}:seen", "last_seen", String(away)])
        if let product { testRedis(["ZADD", "gw:{user:\(user)}:owns", "XX", String(away), product]) }
        testRedis(["ZADD", "gw:timers", String(nowMs - 1_000), "dorm:\(user)"])
        return away
    }

    /// Polls (bounded) until the `dorm:` timer of `user` has been handled: gone, or put back later than `after`.
    func awaitTimerHandled(_ user: String, putBackAfter after: Int64? = nil) -> Int64? {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let score = Int64(testRedis(["ZSCORE", "gw:timers", "dorm:\(user)"]))
            if let after { if let score, score > after { return score } } else if score == nil { return nil }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("the dorm:\(user) timer was not handled")
        return nil
    }

    func dormantEvents(_ node: GatewayNodeProcess) throws -> [JSON] {
        try events(node, limit: 1000).filter { $0["type"]?.stringValue == "user.dormant" }.compactMap { $0["data"] }
    }

    func testLastSeenIsKeptOnConnectAndDisconnectAcrossNodes() throws {
        let n1 = try startNode("n1", env: Self.env), n2 = try startNode("n2", env: Self.env)
        XCTAssertNil(try lastSeen(n2, "u1"), "never seen: null")
        let before = nowMs
        let (live, _) = try open(n1, "u1")
        let opened = try XCTUnwrap(try awaitLastSeen(n2, "u1") { $0 != nil }, "the connect on n1 shows on n2")
        XCTAssertGreaterThanOrEqual(opened, before - 1_000)
        Thread.sleep(forTimeInterval: 0.02)
        live.close()
        let closed = try XCTUnwrap(try awaitLastSeen(n2, "u1") { ($0 ?? 0) > opened }, "the disconnect moves it")
        XCTAssertLessThanOrEqual(closed, nowMs + 1_000)
        XCTAssertNotEqual(testRedis(["ZSCORE", "gw:timers", "dorm:u1"]), "", "the connect armed the dormancy timer")
    }

    func testOneDormantEventPerSpellFromTheTimerSet() throws {
        let n1 = try startNode("n1", env: Self.env), n2 = try startNode("n2", env: Self.env)
        try createProduct(n1, "p1", price: 100)
        _ = try uploadKeys(n1, "p1", ["KEY-1"])
        try buy(n1, "u1", "p1")
        let (live, _) = try open(n2, "u1")
        live.close()
        _ = try awaitLastSeen(n1, "u1") { $0 != nil }
        Thread.sleep(forTimeInterval: 0.2)

        let away = sendAway("u1", owning: "p1")
        XCTAssertNil(awaitTimerHandled("u1"), "a told spell ends its timer")
        var told = try dormantEvents(n1)
        let deadline = Date().addingTimeInterval(10)
        while told.isEmpty && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
            told = try dormantEvents(n1)
        }
        XCTAssertEqual(told, [try JSON.parse(#"{"user":"u1","last_seen":\#(away)}"#)])

        // The same spell due again (a timer written twice): no second event.
        testRedis(["ZADD", "gw:timers", String(nowMs - 1_000), "dorm:u1"])
        XCTAssertNil(awaitTimerHandled("u1"))
        XCTAssertEqual(try dormantEvents(n2).count, 1, "one event per spell")

        // Back, then away again: a new spell, a new event.
        let (back, _) = try open(n1, "u1")
        back.close()
        _ = try awaitLastSeen(n2, "u1") { ($0 ?? 0) > away }
        Thread.sleep(forTimeInterval: 0.2)
        let awayAgain = sendAway("u1", owning: "p1") + 0
        XCTAssertNil(awaitTimerHandled("u1"))
        let both = try events(n2, limit: 1000).filter { $0["type"]?.stringValue == "user.dormant" }
        XCTAssertEqual(both.count, 2, "\(both)")
        XCTAssertEqual(both.last?["data"]?["last_seen"]?.intValue, awayAgain)
        XCTAssertEqual(both.last?["key"]?.stringValue ?? "user:u1", "user:u1")

        // A user with no delivered order is never dormant; the timer just goes.
        let (other, _) = try open(n2, "u2")
        other.close()
        _ = try awaitLastSeen(n1, "u2") { $0 != nil }
        Thread.sleep(forTimeInterval: 0.2)
        sendAway("u2", owning: nil)
        XCTAssertNil(awaitTimerHandled("u2"))
        XCTAssertEqual(try dormantEvents(n1).count, 2, "no event for a user who bought nothing")
    }

    func testAUserConnectedOnAnotherNodeIsNotDormant() throws {
        let n1 = try startNode("n1", env: Self.env), n2 = try startNode("n2", env: Self.env)
        try createProduct(n1, "p1", price: 100)
        _ = try uploadKeys(n1, "p1", ["KEY-1"])
        try buy(n1, "u1", "p1")
        let (live, _) = try open(n2, "u1")
        defer { live.close() }
        _ = try awaitLastSeen(n1, "u1") { $0 != nil }
        // Both nodes have told the others they are alive (their stats, every 2 s).
        let deadline = Date().addingTimeInterval(15)
        while testRedis(["ZCARD", "gw:{admin}:seen"]) != "2" && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }

        let due = nowMs
        sendAway("u1", owning: "p1")
        let putBack = try XCTUnwrap(awaitTimerHandled("u1", putBackAfter: due), "connected: checked again later")
        XCTAssertGreaterThan(putBack, due + 30_000, "a spell from now")
        XCTAssertEqual(try dormantEvents(n1).count, 0, "connected on n2: not dormant, whichever node swept")
    }
}
