import Foundation
import GatewayClient
import GatewayProtocol
import GatewayTestSupport
import XCTest

/// Restock holds (contract 4.6) on two real nodes sharing one Redis: `watch` with
/// `restock:true` queues a buyer; an upload from no stock holds one key each for the first
/// watchers in watch order (`product.restock` with `hold`), tells the rest of the line, and
/// only a holder's paid order takes a held key; an unused hold goes back to stock.
/// Run on the shared cluster too (.ci/cluster).
final class RestockTests: IntegrationCase {
    private func code(_ reply: JSON) -> String? { reply["error"]?["code"]?.stringValue }

    /// Two nodes; `users` watch for restock in turn, alternating nodes (so the line's order is known).
    private func line(_ users: [String], holdSeconds: Int = 300) throws -> (GatewayNodeProcess, GatewayNodeProcess, [String: GatewaySession]) {
        let env = ["GATEWAY_RESTOCK_HOLD_S": String(holdSeconds)]
        let a = try startNode("n1", env: env), b = try startNode("n2", env: env)
        try createProduct(a, "p1")
        var sessions: [String: GatewaySession] = [:]
        for (i, user) in users.enumerated() {
            let (s, _) = try open(i % 2 == 0 ? a : b, user)
            let reply = try s.command("watch", [("product", .string("p1")), ("restock", .bool(true))])
            XCTAssertEqual(reply["ok"]?["restock"]?.boolValue, true, reply.serialized())
            sessions[user] = s
        }
        return (a, b, sessions)
    }

    private func paidOrder(_ node: GatewayNodeProcess, _ buyer: String) throws -> JSON {
        let created = try order(node, #"{"buyer":"\#(buyer)","product":"p1"}"#)
        let id = try XCTUnwrap(created["id"]?.stringValue)
        let payment = try pay(node, id, payer: buyer)
        XCTAssertEqual(try signedNotify(node, notifyBody(payment)).status, 200)
        return try getOrder(node, id)
    }

    func testARestockHoldsKeysForTheFirstWatchersAcrossNodes() throws {
        let (a, b, s) = try line(["w1", "w2", "w3", "w4"])
        let uploaded = try uploadKeys(a, "p1", ["K-1", "K-2"])
        XCTAssertEqual(uploaded["holds"]?.intValue, 2, uploaded.serialized())
        XCTAssertEqual(uploaded["stock"]?.intValue, 0, "both keys are held")
        for user in ["w1", "w2"] {
            let p = try XCTUnwrap(push(s[user]!, "product.restock"), user)
            XCTAssertEqual(p["data"]?["product"]?.stringValue, "p1")
            XCTAssertEqual(p["data"]?["title"]?.stringValue, "Card p1")
            XCTAssertEqual(p["data"]?["currency"]?.stringValue, "CNY")
            XCTAssertEqual(p["data"]?["stock"]?.intValue, 0)
            XCTAssertGreaterThan(p["data"]?["hold"]?["until"]?.intValue ?? 0, 0, "\(user): \(p.serialized())")
        }
        for user in ["w3", "w4"] {
            let p = try XCTUnwrap(push(s[user]!, "product.restock"), user)
            XCTAssertNil(p["data"]?["hold"], "\(user) is told without a hold")
        }
        let watches = try s["w1"]!.command("watches")["ok"]?["watches"]?.arrayValue?.first
        XCTAssertNotNil(watches?["hold"]?["until"], watches?.serialized() ?? "")
        XCTAssertNil(watches?["restock"], "a holder left the line")
        XCTAssertEqual(try s["w3"]!.command("watches")["ok"]?["watches"]?.arrayValue?.first?["restock"]?.boolValue, true)
        let view = try product(b, "p1")
        XCTAssertEqual(view["stock"]?.intValue, 0)
        XCTAssertEqual(view["held"]?.intValue, 2)
    }

    func testOnlyAHolderIsDeliveredWhileKeysAreHeld() throws {
        let (a, b, s) = try line(["w1", "w2", "w3"])
        _ = try uploadKeys(b, "p1", ["K-1"])
        XCTAssertNotNil(push(s["w1"]!, "product.restock"))
        let sniped = try paidOrder(a, "w3")
        XCTAssertEqual(sniped["status"]?.stringValue, "abnormal", "a held key is nobody else's")
        let held = try paidOrder(b, "w1")
        XCTAssertEqual(held["status"]?.stringValue, "delivered", held.serialized())
        XCTAssertEqual(held["keys"]?.arrayValue?.compactMap(\.stringValue), ["K-1"])
        XCTAssertEqual(try product(a, "p1")["held"]?.intValue, 0)
    }

    func testAnUnusedHoldGoesBackToStock() throws {
        let (a, b, s) = try line(["w1", "w2"], holdSeconds: 1)
        _ = try uploadKeys(a, "p1", ["K-1"])
        XCTAssertNotNil(push(s["w1"]!, "product.restock"))
        var stock: Int64 = -1
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            stock = try product(b, "p1")["stock"]?.intValue ?? -1
            if stock == 1 { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        XCTAssertEqual(stock, 1, "the released key is back in stock")
        XCTAssertEqual(try product(b, "p1")["held"]?.intValue, 0)
        let bought = try paidOrder(b, "w2")
        XCTAssertEqual(bought["status"]?.stringValue, "delivered")
        XCTAssertEqual(bought["keys"]?.arrayValue?.compactMap(\.stringValue), ["K-1"])
    }

    func testARestockIsInTheEventLog() throws {
        let (a, _, _) = try line(["w1"])
        _ = try uploadKeys(a, "p1", ["K-1", "K-2"])
        var found: JSON?
        let deadline = Date().addingTimeInterval(10)
        while found == nil, Date() < deadline {
            let events = try a.http("GET", "/api/v1/events").json?["events"]?.arrayValue ?? []
            found = events.first { $0["type"]?.stringValue == "product.restocked" }
            if found == nil { Thread.sleep(forTimeInterval: 0.2) }
        }
        let event = try XCTUnwrap(found, "product.restocked in the event log")
        XCTAssertEqual(event["data"]?["product"]?.stringValue, "p1")
        XCTAssertEqual(event["data"]?["keys"]?.intValue, 2)
        XCTAssertEqual(event["data"]?["holds"]?.intValue, 1)
        XCTAssertEqual(event["data"]?["stock"]?.intValue, 1)
        // A second upload onto stock is no restock.
        XCTAssertEqual(try uploadKeys(a, "p1", ["K-3"])["holds"]?.intValue, 0)
    }

    func testBadRestockInputsChangeNothing() throws {
        let (a, _, s) = try line(["w1"])
        let (u, _) = try open(a, "u9")
        XCTAssertEqual(code(try u.command("watch", [("product", .string("p1")), ("restock", .string("yes"))])), "bad_request")
        XCTAssertEqual(code(try u.command("watch", [("product", .string("nope")), ("restock", .bool(true))])), "not_found")
        XCTAssertEqual(try u.command("watches")["ok"]?["watches"]?.arrayValue?.count, 0, "nothing stored")
        // Watching again without restock leaves the line: the upload holds nothing for w1.
        XCTAssertNotNil(try s["w1"]!.command("watch", [("product", .string("p1"))])["ok"])
        XCTAssertEqual(try uploadKeys(a, "p1", ["K-1"])["holds"]?.intValue, 0)
        XCTAssertNil(push(s["w1"]!, "product.restock", timeout: 0.5))
    }
}
