import Foundation
import GatewayAuth
import GatewayClient
import GatewayProtocol
import XCTest

/// Real redis-server, real gateway processes, real WebSocket and HTTP.
final class GatewayCoreIntegrationTests: IntegrationCase {
    // MARK: Connect

    func testConnectReplyAndPersonalChannel() throws {
        let node = try startNode()
        let (session, reply) = try open(node, "u1")
        let ok = try XCTUnwrap(reply["ok"], "\(reply)")
        XCTAssertEqual(ok["user"]?.stringValue, "u1")
        XCTAssertEqual(ok["role"]?.stringValue, "buyer")
        XCTAssertEqual(ok["node"]?.stringValue, "n1")
        XCTAssertEqual(ok["channel"]?.stringValue, "user:u1")
        XCTAssertEqual(ok["offset"]?.intValue, 0)
        XCTAssertEqual(ok["ping_s"]?.intValue, 25)
        XCTAssertNotNil(ok["epoch"]?.stringValue)
        XCTAssertEqual(ok["client"]?.stringValue?.hasPrefix("c-"), true)

        // A second tab of the same user gets every push too.
        let (tab2, _) = try open(node, "u1")
        XCTAssertEqual(try publish(node, "user:u1", 1), 1)
        for s in [session, tab2] {
            let push = try XCTUnwrap(s.nextPush())
            XCTAssertEqual(push["push"]?.stringValue, "test.note")
            XCTAssertEqual(push["channel"]?.stringValue, "user:u1")
            XCTAssertEqual(push["offset"]?.intValue, 1)
            XCTAssertEqual(push["data"]?["n"]?.intValue, 1)
            XCTAssertNotNil(push["ts"]?.intValue)
        }
        let pong = try session.command("ping")
        XCTAssertNotNil(pong["ok"], "\(pong)")
    }

    func testBadTokensCloseWithContractCodes() throws {
        let node = try startNode()
        let cases: [(String, UInt16)] = [
            ("garbage", 4002),
            (token("u1", secret: "another-secret"), 4002),
            (token("u1", ttl: -10), 4003),
            ("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1MSIsImV4cCI6OTk5OTk5OTk5OX0.", 4002),
        ]
        for (tok, code) in cases {
            let conn = try GatewaySession.open(loop: Self.loop, url: node.wsURL, token: nil)
            let reply = try conn.0.command("connect", [("token", .string(tok))])
            XCTAssertEqual(reply["error"]?["code"]?.stringValue, "unauthorized", "\(reply)")
            XCTAssertEqual(conn.0.waitClosed(), code, "token \(tok.prefix(20))")
        }
    }

    func testCommandBeforeConnectIsRefusedAndConnectTimeoutCloses() throws {
        let node = try startNode(env: ["GATEWAY_LIMITS_CONNECT_TIMEOUT": "1"])
        let (session, _) = try GatewaySession.open(loop: Self.loop, url: node.wsURL, token: nil)
        let reply = try session.command("ping")
        XCTAssertEqual(reply["error"]?["code"]?.stringValue, "unauthorized")
        XCTAssertEqual(session.waitClosed(timeout: 5), 4001)
    }

    // MARK: Bad input

    func testMalformedFramesAndViolationLimit() throws {
        let node = try startNode()
        let (session, _) = try open(node, "u1")
        let unknown = try session.command("fly")
        XCTAssertEqual(unknown["error"]?["code"]?.stringValue, "bad_request")
        let badChannel = try session.command("subscribe", [("channel", .string("room:1"))])
        XCTAssertEqual(badChannel["error"]?["code"]?.stringValue, "bad_request")

        session.sendRawText("{not json")
        let error = try XCTUnwrap(session.nextPush())
        XCTAssertEqual(error["error"]?["code"]?.stringValue, "bad_request")
        XCTAssertNil(error["id"])
        // A valid command resets the count; then ten bad frames in a row close with 4011.
        XCTAssertNotNil(try session.command("ping")["ok"])
        for _ in 0..<9 { session.sendRawText("nope") }
        XCTAssertNotNil(try session.command("ping")["ok"], "nine violations must not close")
        for _ in 0..<10 { session.sendRawText("[1,2]") }
        XCTAssertEqual(session.waitClosed(), 4011)
    }

    func testOversizeFrameClosesWith1009() throws {
        let node = try startNode()
        let (session, _) = try open(node, "u1")
        session.sendRawText(#"{"id":5,"op":"ping","pad":""# + String(repeating: "x", count: 70_000) + #""}"#)
        XCTAssertEqual(session.waitClosed(), 1009)
    }

    func testClientThatDoesNotReadIsClosedWith4008() throws {
        let node = try startNode(env: ["GATEWAY_LIMITS_MAX_QUEUE": "65536"])
        let (session, _) = try open(node, "slow")
        session.connection.pauseReading()
        let blob = String(repeating: "y", count: 8000)
        var closed = false
        for _ in 0..<1500 {
            _ = try node.http("POST", "/api/v1/publish", body: #"{"channel":"user:slow","type":"bulk","data":{"b":"\#(blob)"}}"#)
            if (try? node.http("GET", "/metrics"))?.text.contains("gateway_send_queue_closes_total 1") == true {
                closed = true
                break
            }
        }
        XCTAssertTrue(closed, "the node never closed the slow client")
        session.connection.resumeReading()
        XCTAssertEqual(session.waitClosed(timeout: 10), 4008)
    }

    func testDeadPeerIsDroppedAfterMissedPings() throws {
        let node = try startNode(env: ["GATEWAY_SERVER_PING_S": "1"])
        let (session, _) = try open(node, "u1")
        let (alive, _) = try open(node, "u2")
        session.connection.pauseReading()
        // The paused peer never answers the server's PING; the reading one does.
        try waitUntil(timeout: 15, "the dead peer dropped") {
            (try? node.http("GET", "/metrics", key: nil))?.text.contains("gateway_connections 1") == true
        }
        XCTAssertFalse(alive.isClosed)
        XCTAssertNotNil(try alive.command("ping")["ok"])
    }

    // MARK: Channels

    func testWhoMaySubscribe() throws {
        let node = try startNode()
        try createProduct(node, "p1")
        let (buyer, _) = try open(node, "u1")
        XCTAssertEqual(try buyer.command("subscribe", [("channel", .string("user:u2"))])["error"]?["code"]?.stringValue, "forbidden")
        XCTAssertEqual(try buyer.command("subscribe", [("channel", .string("user:u1"))])["error"]?["code"]?.stringValue, "conflict")
        XCTAssertEqual(try buyer.command("subscribe", [("channel", .string("group:p1"))])["error"]?["code"]?.stringValue, "forbidden")
        XCTAssertEqual(try buyer.command("subscribe", [("channel", .string("product:nope"))])["error"]?["code"]?.stringValue, "not_found")
        let ok = try buyer.command("subscribe", [("channel", .string("product:p1"))])
        XCTAssertEqual(ok["ok"]?["channel"]?.stringValue, "product:p1", "\(ok)")
        XCTAssertEqual(ok["ok"]?["recovered"]?.boolValue, false)

        let (bot, _) = try open(node, "bot1", role: .bot, products: ["p1"])
        XCTAssertNotNil(try bot.command("subscribe", [("channel", .string("group:p1"))])["ok"])
        XCTAssertEqual(try bot.command("subscribe", [("channel", .string("group:p2"))])["error"]?["code"]?.stringValue, "forbidden")
        XCTAssertNotNil(try bot.command("unsubscribe", [("channel", .string("group:p1"))])["ok"])
    }

    func testPublicationReachesBothNodesInOrderOnce() throws {
        let a = try startNode("n1")
        let b = try startNode("n2")
        try createProduct(a, "p1")
        var sessions: [GatewaySession] = []
        for (i, node) in [a, b, a, b].enumerated() {
            let (s, _) = try open(node, "w\(i)")
            XCTAssertNotNil(try s.command("subscribe", [("channel", .string("product:p1"))])["ok"])
            sessions.append(s)
        }
        let total = 60
        for n in 1...total { try publish(n % 2 == 0 ? a : b, "product:p1", n) }
        for s in sessions {
            var offsets: [Int64] = []
            while offsets.count < total, let push = s.nextPush(timeout: 5) {
                offsets.append(push["offset"]?.intValue ?? -1)
            }
            XCTAssertEqual(offsets, Array(1...Int64(total)))
            XCTAssertNil(s.nextPush(timeout: 0.3), "no duplicates after the last publication")
        }
    }

    func testRecoveryWithSince() throws {
        let node = try startNode()
        let (first, reply) = try open(node, "u1")
        let epoch = try XCTUnwrap(reply["ok"]?["epoch"]?.stringValue)
        try publish(node, "user:u1", 1)
        XCTAssertEqual(first.nextPush()?["offset"]?.intValue, 1)
        first.close()
        _ = first.waitClosed()
        for n in 2...6 { try publish(node, "user:u1", n) }

        let (again, resumed) = try open(node, "u1", since: (1, epoch))
        let ok = try XCTUnwrap(resumed["ok"])
        XCTAssertEqual(ok["recovered"]?.boolValue, true)
        XCTAssertEqual(ok["offset"]?.intValue, 6)
        XCTAssertEqual(ok["publications"]?.arrayValue?.map { $0["offset"]?.intValue ?? 0 }, [2, 3, 4, 5, 6])
        try publish(node, "user:u1", 7)
        XCTAssertEqual(again.nextPush()?["offset"]?.intValue, 7)

        let (_, wrongEpoch) = try open(node, "u1", since: (1, "other"))
        XCTAssertEqual(wrongEpoch["ok"]?["recovered"]?.boolValue, false)
        XCTAssertEqual(wrongEpoch["ok"]?["publications"]?.arrayValue?.count, 0)

        // History command: latest page, and a page after an offset.
        let history = try again.command("history", [("channel", .string("user:u1")), ("limit", .int(3))])
        XCTAssertEqual(history["ok"]?["publications"]?.arrayValue?.map { $0["offset"]?.intValue ?? 0 }, [5, 6, 7])
        let after = try again.command("history", [("channel", .string("user:u1")),
                                                  ("since", .object([("offset", .int(5)), ("epoch", .string(epoch))]))])
        XCTAssertEqual(after["ok"]?["publications"]?.arrayValue?.map { $0["offset"]?.intValue ?? 0 }, [6, 7])
    }

    func testRedisRestartLosesNothingHistoryHolds() throws {
        try requireSingleRedis("kills and restarts the redis-server")
        let a = try startNode("n1")
        let b = try startNode("n2")
        try createProduct(a, "p1")
        let (onA, _) = try open(a, "u1")
        let (onB, _) = try open(b, "u2")
        for s in [onA, onB] { XCTAssertNotNil(try s.command("subscribe", [("channel", .string("product:p1"))])["ok"]) }
        try publish(a, "product:p1", 1)

        redis.kill()
        try waitUntil(timeout: 10, "readyz 503") { (try? a.http("GET", "/readyz"))?.status == 503 }
        let down = try onA.command("history", [("channel", .string("product:p1"))])
        XCTAssertEqual(down["error"]?["code"]?.stringValue, "unavailable", "\(down)")
        XCTAssertEqual(down["error"]?["temporary"]?.boolValue, true)
        XCTAssertEqual(try a.http("POST", "/api/v1/publish", body: #"{"channel":"product:p1","type":"x","data":{}}"#).status, 503)

        try redis.start()
        // Publish through b as soon as it is back: a may not have resubscribed yet and must fill the gap.
        try waitUntil(timeout: 15, "n2 ready") { (try? b.http("GET", "/readyz"))?.status == 200 }
        for n in 2...5 { try publish(b, "product:p1", n) }
        try waitUntil(timeout: 15, "n1 ready") { (try? a.http("GET", "/readyz"))?.status == 200 }
        try publish(a, "product:p1", 6)
        for s in [onA, onB] {
            var offsets: [Int64] = []
            while offsets.count < 6, let push = s.nextPush(timeout: 10) { offsets.append(push["offset"]?.intValue ?? -1) }
            XCTAssertEqual(offsets, [1, 2, 3, 4, 5, 6])
            XCTAssertFalse(s.isClosed)
        }
    }

    func testSIGTERMClosesClientsWith1001AndExits() throws {
        let node = try startNode()
        var sessions: [GatewaySession] = []
        for i in 0..<20 { sessions.append(try open(node, "u\(i)").0) }
        node.signal(SIGTERM)
        for s in sessions { XCTAssertEqual(s.waitClosed(timeout: 10), 1001) }
        XCTAssertEqual(node.waitExit(), 0)
    }

    // MARK: HTTP

    func testHTTPAPI() throws {
        let node = try startNode(env: ["GATEWAY_LIMITS_MAX_BODY": "100000"])
        XCTAssertEqual(try node.http("GET", "/healthz", key: nil).status, 200)
        XCTAssertEqual(try node.http("GET", "/readyz", key: nil).status, 200)
        try createProduct(node, "p1")
        let again = try node.http("POST", "/api/v1/products", body: #"{"id":"p1","merchant":"m1","title":"x","price":1,"currency":"CNY"}"#)
        XCTAssertEqual(again.status, 409)
        XCTAssertEqual(again.json?["error"]?["code"]?.stringValue, "conflict")
        let product = try node.http("GET", "/api/v1/products/p1")
        XCTAssertEqual(product.status, 200)
        XCTAssertEqual(product.json?["price"]?.intValue, 1999)
        XCTAssertEqual(product.json?["stock"]?.intValue, 0)
        XCTAssertEqual(try node.http("GET", "/api/v1/products/p1", key: TestSecrets.merchantKey).status, 200)
        XCTAssertEqual(try node.http("GET", "/api/v1/products/nope").status, 404)

        XCTAssertEqual(try node.http("GET", "/api/v1/products/p1", key: nil).status, 401)
        XCTAssertEqual(try node.http("GET", "/api/v1/products/p1", key: "wrong").status, 401)
        let foreign = try node.http("POST", "/api/v1/products", body: #"{"id":"p9","merchant":"m2","title":"x","price":1,"currency":"CNY"}"#,
                                    key: TestSecrets.merchantKey)
        XCTAssertEqual(foreign.status, 403)
        for bad in [#"{"id":"p 2","merchant":"m1","title":"x","price":1,"currency":"CNY"}"#,
                    #"{"id":"p2","merchant":"m1","title":"","price":1,"currency":"CNY"}"#,
                    #"{"id":"p2","merchant":"m1","title":"x","price":-1,"currency":"CNY"}"#,
                    #"{"id":"p2","merchant":"m1","title":"x","price":1.5,"currency":"CNY"}"#,
                    #"{"id":"p2","merchant":"m1","title":"x","price":1,"currency":"yuan"}"#,
                    "not json"] {
            let r = try node.http("POST", "/api/v1/products", body: bad)
            XCTAssertEqual(r.status, 400, bad)
            XCTAssertEqual(r.json?["error"]?["code"]?.stringValue, "bad_request", bad)
        }
        XCTAssertEqual(try node.http("GET", "/api/v1/products/p2").status, 404, "bad input left no product")

        XCTAssertEqual(try node.http("POST", "/api/v1/publish", body: #"{"channel":"user:u1","type":"Bad Type","data":{}}"#).status, 400)
        XCTAssertEqual(try node.http("POST", "/api/v1/publish", body: #"{"channel":"user:u1","type":"ok","data":[]}"#).status, 400)
        XCTAssertEqual(try node.http("POST", "/api/v1/publish", body: #"{"channel":"user:u1","type":"ok","data":{}}"#,
                                     key: TestSecrets.merchantKey).status, 403)
        XCTAssertEqual(try node.http("POST", "/api/v1/publish", body: #"{"channel":"product:p1","type":"ok","data":{}}"#,
                                     key: TestSecrets.merchantKey).status, 200)
        let huge = "{\"pad\":\"" + String(repeating: "z", count: 200_000) + "\"}"
        XCTAssertEqual(try node.http("POST", "/api/v1/publish", body: huge).status, 413)
        XCTAssertEqual(try node.http("GET", "/nowhere").status, 404)

        let (session, _) = try open(node, "u1")
        let metrics = try withExtendedLifetime(session) { try node.http("GET", "/metrics", key: nil).text }
        XCTAssertTrue(metrics.contains("gateway_connections 1"), metrics)
        XCTAssertTrue(metrics.contains("gateway_commands_total{op=\"connect\",result=\"ok\"} 1"), metrics)
        XCTAssertTrue(metrics.contains("gateway_redis_rtt_seconds"), metrics)
    }

    /// `subscribe` then `unsubscribe` in one frame: the unsubscribe wins although the
    /// subscribe was still being authorized, so no pushes follow and a later subscribe works.
    func testUnsubscribeWhileTheSubscribeIsAuthorizedWins() throws {
        let node = try startNode("n1")
        try createProduct(node, "p1")
        let (s, _) = try open(node, "u1")
        s.sendRawText(#"{"id":2,"op":"subscribe","channel":"product:p1"}"# + "\n" + #"{"id":3,"op":"unsubscribe","channel":"product:p1"}"#)
        XCTAssertNotNil(s.reply(id: 3)?["ok"])
        XCTAssertEqual(s.reply(id: 2)?["error"]?["code"]?.stringValue, "conflict")
        XCTAssertEqual(try node.http("PATCH", "/api/v1/products/p1", body: #"{"price":999}"#).status, 200)
        XCTAssertNil(s.nextPush(timeout: 1), "no pushes of a channel unsubscribed")
        XCTAssertNotNil(try s.command("subscribe", [("channel", .string("product:p1"))])["ok"], "and a new subscribe is no duplicate")
    }
}
