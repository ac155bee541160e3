import GatewayClient
import GatewayProtocol
import XCTest

/// Member levels and points (contract 4.6) on two nodes sharing Redis: the discount at
/// creation, points from delivered orders, `member.level`, `GET /api/v1/users/{id}`.
final class MemberLevelTests: IntegrationCase {
    /// silver from 2000 points (one 1999 order is not enough, two are), gold from 5000.
    static let levels = #"[{"name":"silver","min_points":2000,"discount_percent":10},{"name":"gold","min_points":5000,"discount_percent":25}]"#

    func user(_ node: GatewayNodeProcess, _ id: String) throws -> JSON {
        let r = try node.http("GET", "/api/v1/users/\(id)")
        XCTAssertEqual(r.status, 200, r.text)
        return try XCTUnwrap(r.json)
    }

    func testPointsLevelDiscountAndRefundAcrossNodes() throws {
        let env = ["GATEWAY_MEMBERS_LEVELS": Self.levels]
        let n1 = try startNode("n1", env: env), n2 = try startNode("n2", env: env)
        try createProduct(n1, "p1", price: 1999)
        _ = try uploadKeys(n1, "p1", (1...5).map { "KEY-\($0)" })
        let (live, _) = try open(n2, "u1")
        defer { live.close() }

        XCTAssertEqual(try user(n2, "u1").removing("last_seen"), try JSON.parse(
            #"{"id":"u1","points":0,"level":null,"next_level":{"name":"silver","min_points":2000},"orders":0}"#))
        let first = try buy(n1, "u1", "p1")
        XCTAssertEqual(first["amount"]?.intValue, 1999, "no level yet: the full price")
        XCTAssertNil(first["level"])
        XCTAssertEqual(try user(n2, "u1")["points"]?.intValue, 1999)

        let second = try buy(n2, "u1", "p1")
        XCTAssertEqual(second["amount"]?.intValue, 1999, "the level is the buyer's when the order is made")
        let up = try XCTUnwrap(push(live, "member.level"), "member.level reaches the user on the other node")
        XCTAssertEqual(up["data"], try JSON.parse(#"{"level":"silver","previous":null,"points":3998}"#))

        let third = try order(n1, #"{"buyer":"u1","product":"p1","quantity":2}"#)
        XCTAssertEqual(third["amount"]?.intValue, 3598, "floor(1999 * 2 * 90 / 100) = floor(3598.2)")
        XCTAssertEqual(third["level"]?.stringValue, "silver")
        XCTAssertEqual(try pay(n1, third["id"]!.stringValue!, payer: "u1")["amount"]?.intValue, 3598, "the payment charges it")
        XCTAssertEqual(try getOrder(n2, third["id"]!.stringValue!)["level"]?.stringValue, "silver", "the order records its level")
        XCTAssertEqual(try order(n1, #"{"buyer":"u2","product":"p1"}"#)["amount"]?.intValue, 1999, "levels are per buyer")

        let refunded = try n2.http("POST", "/api/v1/orders/\(second["id"]!.stringValue!)/refund")
        XCTAssertEqual(refunded.status, 200, refunded.text)
        let down = try XCTUnwrap(push(live, "member.level"))
        XCTAssertEqual(down["data"], try JSON.parse(#"{"level":null,"previous":"silver","points":1999}"#), "a refund takes the points back")
        XCTAssertEqual(try user(n1, "u1").removing("last_seen"), try JSON.parse(
            #"{"id":"u1","points":1999,"level":null,"next_level":{"name":"silver","min_points":2000},"orders":1}"#))
        XCTAssertNotNil(try user(n1, "u1")["last_seen"]?.intValue, "connected on n2: seen (DormantTests has the rest)")
    }

    func testUserViewNeedsTheShopKeyAndAValidID() throws {
        let n1 = try startNode()
        XCTAssertEqual(try n1.http("GET", "/api/v1/users/u1", key: TestSecrets.merchantKey).status, 403)
        XCTAssertEqual(try n1.http("GET", "/api/v1/users/u1", key: nil).status, 401)
        XCTAssertEqual(try n1.http("GET", "/api/v1/users/bad%20id").status, 400)
        XCTAssertEqual(try user(n1, "nobody"), try JSON.parse(#"{"id":"nobody","points":0,"level":null,"last_seen":null,"orders":0}"#),
                       "no ladder: no level and no next level")
    }

    func testBadLevelsStopTheStartWithAClearError() throws {
        do {
            let node = try GatewayNodeProcess(name: "bad", redisPort: redis?.port ?? 0, env: [
                "GATEWAY_MEMBERS_LEVELS": #"[{"name":"gold","min_points":5000,"discount_percent":25},{"name":"silver","min_points":2000,"discount_percent":10}]"#,
            ])
            nodes.append(node)
            XCTFail("a node started with levels out of order")
        } catch {
            XCTAssertTrue("\(error)".contains("GATEWAY_MEMBERS_LEVELS: level 2: min_points must be above level 1's 5000"), "\(error)")
        }
    }
}

private extension JSON {
    /// The object without `key` (a field whose value this test does not pin down).
    func removing(_ key: String) -> JSON {
        guard let fields = objectValue else { return self }
        return .object(fields.filter { $0.0 != key })
    }
}
