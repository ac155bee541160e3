import Foundation
import GatewayClient
import GatewayProtocol
import XCTest

/// Also-bought (contract 4.6) on two nodes sharing Redis: co-purchase counts by distinct
/// buyer, kept at delivery and refund, read over HTTP and the WS op `also_bought`.
final class AlsoBoughtTests: IntegrationCase {
    /// `GET /api/v1/products/{id}/also-bought` as `[product: buyers]`, in order.
    func alsoBought(_ node: GatewayNodeProcess, _ product: String, query: String = "") throws -> [(String, Int64)] {
        let r = try node.http("GET", "/api/v1/products/\(product)/also-bought\(query)")
        XCTAssertEqual(r.status, 200, r.text)
        XCTAssertEqual(r.json?["product"]?.stringValue, product)
        return (r.json?["also_bought"]?.arrayValue ?? []).map { ($0["product"]?.stringValue ?? "", $0["buyers"]?.intValue ?? -1) }
    }

    /// Polls (bounded) until `product`'s also-bought reads `expected`, most buyers first (ties
    /// in any order): the counts are written just after the decision's answer.
    func awaitAlsoBought(_ node: GatewayNodeProcess, _ product: String, _ expected: [(String, Int64)],
                         file: StaticString = #filePath, line: UInt = #line) throws {
        let deadline = Date().addingTimeInterval(10)
        var got: [(String, Int64)] = []
        while Date() < deadline {
            got = try alsoBought(node, product)
            let byBuyers = { (a: (String, Int64), b: (String, Int64)) in a.1 != b.1 ? a.1 > b.1 : a.0 < b.0 }
            if got.sorted(by: byBuyers).elementsEqual(expected.sorted(by: byBuyers), by: ==),
               got.map(\.1) == got.map(\.1).sorted(by: >) { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("also-bought of \(product): \(got), expected \(expected)", file: file, line: line)
    }

    func refund(_ node: GatewayNodeProcess, _ order: JSON) throws {
        let r = try node.http("POST", "/api/v1/orders/\(order["id"]!.stringValue!)/refund")
        XCTAssertEqual(r.status, 200, r.text)
    }

    func testCountsByDistinctBuyerKeptAtDeliveryAndRefundOnTwoNodes() throws {
        let n1 = try startNode("n1"), n2 = try startNode("n2")
        for p in ["pa", "pb", "pc"] {
            try createProduct(n1, p, price: 100)
            _ = try uploadKeys(n1, p, (1...6).map { "KEY-\(p)-\($0)" })
        }
        try buy(n1, "u1", "pa")
        try buy(n2, "u1", "pb")
        try buy(n2, "u2", "pa")
        try buy(n1, "u2", "pc")
        let u3First = try buy(n1, "u3", "pb")
        try buy(n2, "u3", "pa")
        let again = try buy(n1, "u3", "pb")
        XCTAssertEqual(again["status"]?.stringValue, "delivered")
        try awaitAlsoBought(n2, "pa", [("pb", 2), ("pc", 1)])
        try awaitAlsoBought(n1, "pb", [("pa", 2)])
        try awaitAlsoBought(n1, "pc", [("pa", 1)])

        let row = try XCTUnwrap(n1.http("GET", "/api/v1/products/pa/also-bought?limit=1").json)
        XCTAssertEqual(row, try JSON.parse(
            #"{"product":"pa","also_bought":[{"product":"pb","title":"Card pb","price":100,"currency":"CNY","buyers":2}]}"#))
        let (live, _) = try open(n2, "u9")
        defer { live.close() }
        let ws = try live.command("also_bought", [("product", .string("pa")), ("limit", .int(1))])
        XCTAssertEqual(ws["ok"], row, "the WS op answers what HTTP does")

        // u3 still owns pb through its other order: nothing moves; the last one does.
        try refund(n2, again)
        try refund(n1, u3First)
        try awaitAlsoBought(n2, "pa", [("pb", 1), ("pc", 1)])
        try awaitAlsoBought(n2, "pb", [("pa", 1)])
        XCTAssertEqual(Set(try alsoBought(n1, "pa").map(\.0)), ["pb", "pc"], "refunding twice takes one buyer off once")
    }

    func testLimitsUnknownProductsAndMerchants() throws {
        let n1 = try startNode("n1")
        try createProduct(n1, "pa")
        try createProduct(n1, "px", merchant: "m2")
        XCTAssertEqual(try alsoBought(n1, "pa").count, 0, "nobody bought anything yet")
        for bad in ["?limit=0", "?limit=51", "?limit=abc", "?limit=", "?limit=1.5", "?limit=5&limit=6", "?limit=-1"] {
            let r = try n1.http("GET", "/api/v1/products/pa/also-bought\(bad)")
            XCTAssertEqual(r.status, 400, bad)
            XCTAssertEqual(r.json?["error"]?["code"]?.stringValue, "bad_request", bad)
        }
        XCTAssertEqual(try n1.http("GET", "/api/v1/products/pa/also-bought?limit=50").status, 200)
        XCTAssertEqual(try n1.http("GET", "/api/v1/products/nope/also-bought").status, 404)
        XCTAssertEqual(try n1.http("GET", "/api/v1/products/pa/also-bought", key: TestSecrets.merchantKey).status, 200,
                       "a merchant reads its own product's")
        XCTAssertEqual(try n1.http("GET", "/api/v1/products/px/also-bought", key: TestSecrets.merchantKey).status, 403)
        XCTAssertEqual(try n1.http("GET", "/api/v1/products/pa/also-bought", key: nil).status, 401)

        let (live, _) = try open(n1, "u1")
        defer { live.close() }
        XCTAssertEqual(try live.command("also_bought", [("product", .string("nope"))])["error"]?["code"]?.stringValue, "not_found")
        for limit: JSON in [.int(0), .int(51), .string("5")] {
            XCTAssertEqual(try live.command("also_bought", [("product", .string("pa")), ("limit", limit)])["error"]?["code"]?.stringValue,
                           "bad_request", "\(limit)")
        }
        XCTAssertEqual(try live.command("also_bought", [("product", .string("pa"))])["ok"],
                       try JSON.parse(#"{"product":"pa","also_bought":[]}"#))
    }
}
