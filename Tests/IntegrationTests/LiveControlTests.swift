import Foundation
import GatewayAuth
import GatewayClient
import GatewayProtocol
import XCTest

/// PROTOCOL 4.3: the shop closes a user's connections on every node, bans and unbans.
final class LiveControlTests: IntegrationCase {
    func testDisconnectClosesEveryConnectionOfTheUserOnEveryNodeWith4010() throws {
        let n1 = try startNode("n1"), n2 = try startNode("n2")
        let (a1, _) = try open(n1, "u1")
        let (a2, _) = try open(n1, "u1")
        let (b1, _) = try open(n2, "u1")
        let (other, _) = try open(n2, "u2")

        let r = try n1.http("POST", "/api/v1/users/u1/disconnect", body: #"{"reason":"support asked"}"#)
        XCTAssertEqual(r.status, 200, r.text)
        XCTAssertEqual(r.json?["closed"]?.intValue, 3, r.text)
        for s in [a1, a2, b1] { XCTAssertEqual(s.waitClosed(), 4010) }
        XCTAssertNotNil(try other.command("ping")["ok"], "another user's connection stays")
        let metrics = try n1.http("GET", "/metrics").text + (try n2.http("GET", "/metrics").text)
        XCTAssertTrue(metrics.contains(#"gateway_live_control_total{reason="removed"} 2"#), metrics)
        XCTAssertTrue(metrics.contains(#"gateway_live_control_total{reason="removed"} 1"#), metrics)

        // Nobody left: 0, and a body is optional.
        let again = try n2.http("POST", "/api/v1/users/u1/disconnect")
        XCTAssertEqual(again.status, 200, again.text)
        XCTAssertEqual(again.json?["closed"]?.intValue, 0, again.text)
    }

    /// The control channel is subscribed again after the pub/sub link comes back.
    func testDisconnectReachesANodeWhosePubSubLinkWasKilled() throws {
        try requireSingleRedis("CLIENT KILL on the test's own server")
        let n1 = try startNode("n1"), n2 = try startNode("n2")
        redis.cli(["CLIENT", "KILL", "TYPE", "pubsub"])
        var closed: Int64 = 0
        for _ in 0..<100 where closed == 0 {
            let (s, reply) = try open(n2, "u1")
            guard reply["ok"] != nil else { Thread.sleep(forTimeInterval: 0.1); continue }
            closed = try n1.http("POST", "/api/v1/users/u1/disconnect").json?["closed"]?.intValue ?? 0
            if closed == 0 { s.close(); Thread.sleep(forTimeInterval: 0.1) } else { XCTAssertEqual(s.waitClosed(), 4010) }
        }
        XCTAssertEqual(closed, 1, "n2 hears the control channel again")
    }

    /// Signals sent while a node's pub/sub link is away are lost; once the control channel is
    /// subscribed again the node reads back what they stood for: bans and lost group rights.
    /// (The ban and the lost membership are written straight to Redis: no signal at all.)
    func testANodeCatchesUpOnBansAndLostGroupsWhenItsControlLinkComesBack() throws {
        try requireSingleRedis("CLIENT KILL and raw writes on the test's own server")
        let node = try startNode()
        try createProduct(node, "p1")
        _ = try uploadKeys(node, "p1", ["K1"])
        _ = try buy(node, "u1", "p1")
        let (buyer, _) = try open(node, "u1")
        XCTAssertNotNil(try buyer.command("subscribe", [("channel", .string("group:p1"))])["ok"])
        let (banned, _) = try open(node, "u2")
        let (bystander, _) = try open(node, "u3")

        let until = Int64(Date().timeIntervalSince1970 * 1_000) + 60_000
        redis.cli(["SET", "gw:{user:u2}:ban", String(until), "PX", "60000"])
        redis.cli(["HDEL", "gw:{product:p1}:members", "u1"])
        redis.cli(["CLIENT", "KILL", "TYPE", "pubsub"])

        XCTAssertEqual(banned.waitClosed(), 4010, "the ban is enforced once the link is back")
        let removed = try XCTUnwrap(push(buyer, "channel.removed"), "the lost group ends")
        XCTAssertEqual(removed["data"]?["channel"]?.stringValue, "group:p1")
        XCTAssertNotNil(try bystander.command("ping")["ok"], "nobody else is touched")
        XCTAssertNotNil(try buyer.command("ping")["ok"], "the buyer's connection stays")
    }

    /// A "never expires" token (exp of Int64.max) connects and refreshes: its end is year 9999.
    func testATokenThatNeverExpiresConnectsAndRefreshes() throws {
        let node = try startNode()
        let forever = TokenMinter(secret: TestSecrets.auth).mint(Claims(sub: "u1", exp: .max, role: .buyer, products: [], moderator: false))
        let (s, reply) = try GatewaySession.open(loop: Self.loop, url: node.wsURL, token: forever, since: nil)
        XCTAssertNotNil(reply["ok"], "\(reply)")
        let refreshed = try s.command("refresh", [("token", .string(forever))])
        XCTAssertEqual(refreshed["ok"]?["exp"]?.intValue, 253_402_300_799, "\(refreshed)")
        XCTAssertNotNil(try s.command("ping")["ok"], "the node is alive")
    }

    func testUserRoutesTakeTheShopKeyAndAValidUser() throws {
        let node = try startNode()
        XCTAssertEqual(try node.http("POST", "/api/v1/users/u1/disconnect", key: nil).status, 401)
        XCTAssertEqual(try node.http("POST", "/api/v1/users/u1/disconnect", key: TestSecrets.merchantKey).status, 403)
        XCTAssertEqual(try node.http("DELETE", "/api/v1/users/u1/ban", key: TestSecrets.merchantKey).status, 403)
        XCTAssertEqual(try node.http("POST", "/api/v1/users/u%20x/disconnect").status, 400)
        XCTAssertEqual(try node.http("POST", "/api/v1/users/u1/disconnect", body: "[1]").status, 400)
    }

    func testBanDisconnectsRefusesConnectUntilLiftedOrOver() throws {
        let n1 = try startNode("n1"), n2 = try startNode("n2")
        let (s, _) = try open(n2, "u1")

        for bad in [#"{}"#, #"{"seconds":0}"#, #"{"seconds":31536001}"#, #"{"seconds":"60"}"#] {
            let r = try n1.http("POST", "/api/v1/users/u1/ban", body: bad)
            XCTAssertEqual(r.status, 400, "\(bad): \(r.text)")
        }
        XCTAssertNotNil(try s.command("ping")["ok"], "a refused ban changes nothing")

        let ban = try n1.http("POST", "/api/v1/users/u1/ban", body: #"{"seconds":600}"#)
        XCTAssertEqual(ban.status, 200, ban.text)
        XCTAssertEqual(ban.json?["closed"]?.intValue, 1, ban.text)
        XCTAssertGreaterThan(ban.json?["ends_at"]?.intValue ?? 0, Int64(Date().timeIntervalSince1970 * 1000))
        XCTAssertEqual(s.waitClosed(), 4010)

        for node in [n1, n2] {
            let (refused, reply) = try open(node, "u1")
            XCTAssertEqual(reply["error"]?["code"]?.stringValue, "forbidden", "\(reply)")
            XCTAssertEqual(refused.waitClosed(), 4010)
        }
        XCTAssertNotNil(try open(n1, "u2").1["ok"], "only the banned user is refused")

        XCTAssertEqual(try n2.http("DELETE", "/api/v1/users/u1/ban").status, 200)
        XCTAssertNotNil(try open(n1, "u1").1["ok"], "connect works again once the ban is lifted")

        // A ban ends by itself.
        XCTAssertEqual(try n1.http("POST", "/api/v1/users/u3/ban", body: #"{"seconds":1}"#).status, 200)
        XCTAssertEqual(try open(n2, "u3").1["error"]?["code"]?.stringValue, "forbidden")
        Thread.sleep(forTimeInterval: 1.2)
        XCTAssertNotNil(try open(n2, "u3").1["ok"], "connect works once the ban is over")
    }

    // MARK: Token expiry (refresh, token.expiring, 4003)

    private func openWithToken(_ node: GatewayNodeProcess, _ tok: String) throws -> GatewaySession {
        let (s, reply) = try GatewaySession.open(loop: Self.loop, url: node.wsURL, token: tok)
        XCTAssertNotNil(reply["ok"], "\(reply)")
        return s
    }

    func testAnUnrefreshedTokenIsWarnedThenClosedWith4003() throws {
        let node = try startNode()
        let tok = token("u1", ttl: 3)
        let s = try openWithToken(node, tok)
        let warning = try XCTUnwrap(push(s, "token.expiring"), "less than 60 s left: warned at once")
        XCTAssertEqual(warning["channel"]?.stringValue, "user:u1")
        XCTAssertNil(warning["offset"], "concerns this connection only: not in history")
        let exp = try XCTUnwrap(warning["data"]?["exp"]?.intValue)
        XCTAssertGreaterThan(exp, Int64(Date().timeIntervalSince1970) - 1)
        XCTAssertEqual(s.waitClosed(timeout: 15), 4003)
        XCTAssertTrue(try node.http("GET", "/metrics").text.contains(#"gateway_live_control_total{reason="token_expired"} 1"#))
    }

    func testRefreshKeepsTheConnectionAndRefusesAnotherUsersToken() throws {
        let node = try startNode()
        let s = try openWithToken(node, token("u1", ttl: 3))
        let started = Date()

        for (tok, code) in [(token("u2"), "forbidden"), ("garbage", "unauthorized"), (token("u1", ttl: -10), "unauthorized"),
                            (token("u1", role: .bot, products: ["p1"]), "forbidden")] {
            let r = try s.command("refresh", [("token", .string(tok))])
            XCTAssertEqual(r["error"]?["code"]?.stringValue, code, "\(r)")
        }
        let fresh = token("u1", ttl: 3600)
        let r = try s.command("refresh", [("token", .string(fresh))])
        let exp = try XCTUnwrap(r["ok"]?["exp"]?.intValue, "\(r)")
        XCTAssertGreaterThan(exp, Int64(Date().timeIntervalSince1970) + 3000)

        // Past the first token's end, the connection still serves.
        Thread.sleep(forTimeInterval: max(0, 4.5 - Date().timeIntervalSince(started)))
        XCTAssertNotNil(try s.command("ping")["ok"])
        XCTAssertFalse(s.isClosed)
    }

    // MARK: A right lost ends the subscription on every node

    private func say(_ s: GatewaySession, _ text: String) throws -> JSON {
        try s.command("publish", [("channel", .string("group:p1")), ("data", .object([("text", .string(text))]))])
    }

    func testARefundThatEndsMembershipRemovesTheGroupOnEveryNode() throws {
        let n1 = try startNode("n1"), n2 = try startNode("n2")
        try createProduct(n1, "p1")
        _ = try uploadKeys(n1, "p1", ["K1", "K2", "K3"])
        let first = try buy(n1, "u1", "p1")
        let second = try buy(n1, "u1", "p1")
        let (a, _) = try open(n1, "u1")
        let (b, _) = try open(n2, "u1")
        let (bot, _) = try open(n2, "bot1", role: .bot, products: ["p1"])
        for s in [a, b, bot] { XCTAssertNotNil(try s.command("subscribe", [("channel", .string("group:p1"))])["ok"]) }

        // Another delivered order keeps the group: the subscriptions stay.
        XCTAssertEqual(try n1.http("POST", "/api/v1/orders/\(first["id"]!.stringValue!)/refund").status, 200)
        XCTAssertNotNil(try say(bot, "still here?")["ok"])
        for s in [a, b] { XCTAssertEqual(push(s, "group.message")?["data"]?["text"]?.stringValue, "still here?") }

        // The last one refunded (through the other node): both connections lose the group.
        XCTAssertEqual(try n2.http("POST", "/api/v1/orders/\(second["id"]!.stringValue!)/refund").status, 200)
        for s in [a, b] {
            let removed = try XCTUnwrap(push(s, "channel.removed"), "channel.removed on every node")
            XCTAssertEqual(removed["channel"]?.stringValue, "user:u1")
            XCTAssertEqual(removed["data"]?["channel"]?.stringValue, "group:p1")
            XCTAssertEqual(removed["data"]?["reason"]?.stringValue, "refunded")
            XCTAssertEqual(try say(s, "hello?")["error"]?["code"]?.stringValue, "forbidden")
        }
        XCTAssertNotNil(try bot.command("subscribe", [("channel", .string("group:p1"))])["error"], "the bot's subscription stays (conflict)")
        // Subscribed no more: a new subscribe is refused as for any non-buyer, not `conflict`.
        XCTAssertEqual(try a.command("subscribe", [("channel", .string("group:p1"))])["error"]?["code"]?.stringValue, "forbidden")
    }

    func testABotsRefreshedTokenWithoutAProductEndsThatGroup() throws {
        let node = try startNode()
        try createProduct(node, "p1")
        try createProduct(node, "p2")
        let s = try openWithToken(node, token("bot1", role: .bot, products: ["p1", "p2"]))
        for p in ["p1", "p2"] { XCTAssertNotNil(try s.command("subscribe", [("channel", .string("group:\(p)"))])["ok"]) }
        XCTAssertNotNil(try s.command("refresh", [("token", .string(token("bot1", role: .bot, products: ["p2"])))])["ok"])
        let removed = try XCTUnwrap(push(s, "channel.removed"))
        XCTAssertEqual(removed["data"]?["channel"]?.stringValue, "group:p1")
        XCTAssertEqual(removed["data"]?["reason"]?.stringValue, "token")
        XCTAssertEqual(try s.command("publish", [("channel", .string("group:p1")), ("data", .object([("text", .string("hi"))]))])["error"]?["code"]?.stringValue,
                       "forbidden")
        XCTAssertEqual(try s.command("subscribe", [("channel", .string("group:p2"))])["error"]?["code"]?.stringValue, "conflict",
                       "the group still listed stays subscribed")
    }
}
