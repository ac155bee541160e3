import Foundation
import GatewayAuth
import GatewayClient
import GatewayProtocol
import XCTest

/// PROTOCOL.md 4.1 on a real node: hostile numbers and text from a role that may send them
/// get `bad_request`; the node keeps serving and nobody else notices.
final class HostileInputTests: IntegrationCase {
    func code(_ reply: JSON?) -> String? { reply?["error"]?["code"]?.stringValue }

    func testModeratorOverflowIsBadRequestAndTheNodeLivesOn() throws {
        let node = try startNode("n1")
        try createProduct(node, "p1")
        _ = try uploadKeys(node, "p1", ["K-1", "K-2"])
        try buy(node, "u1", "p1")
        let (u1, _) = try open(node, "u1")
        let (watcher, _) = try open(node, "w1")
        XCTAssertNotNil(try u1.command("subscribe", [("channel", .string("group:p1"))])["ok"])
        let (modBot, _) = try GatewaySession.open(loop: Self.loop, url: node.wsURL,
                                                   token: token("bot1", role: .bot, products: ["p1"], moderator: true))
        XCTAssertNotNil(try modBot.command("subscribe", [("channel", .string("group:p1"))])["ok"])
        let sent = try u1.command("publish", [("channel", .string("group:p1")), ("data", .object([("text", .string("first"))]))])
        let first = try XCTUnwrap(sent["ok"]?["offset"]?.intValue, "\(sent)")
        XCTAssertEqual(modBot.nextPush()?["offset"]?.intValue, first)
        XCTAssertEqual(u1.nextPush()?["offset"]?.intValue, first, "the sender hears its own message")

        // The frame of the crash report, byte for byte (id added): `seconds` * 1000 overflowed.
        modBot.sendRawText(#"{"id":9001,"op":"moderate","channel":"group:p1","action":"delete","offset":1,"seconds":9223372036854775807}"#)
        let reply = modBot.reply(id: 9001, timeout: 10)
        XCTAssertEqual(code(reply), "bad_request", "\(String(describing: reply))")
        XCTAssertTrue(reply?["error"]?["message"]?.stringValue?.contains("seconds") ?? false, "\(String(describing: reply))")
        for seconds: Int64 in [0, 31_536_001, .min] {
            let r = try modBot.command("moderate", [("channel", .string("group:p1")), ("action", .string("mute")),
                                                    ("user", .string("u1")), ("seconds", .int(seconds))])
            XCTAssertEqual(code(r), "bad_request", "seconds \(seconds): \(r)")
        }

        // Group text over `groups.max_text_bytes` [4000]: one character of 6001 bytes.
        let heavy = "a" + String(repeating: "\u{301}", count: 3000)
        let refused = try u1.command("publish", [("channel", .string("group:p1")), ("data", .object([("text", .string(heavy))]))])
        XCTAssertEqual(code(refused), "bad_request", "\(refused)")

        // Still serving: HTTP, the moderator itself, and everyone else on the node.
        XCTAssertEqual(try node.http("GET", "/healthz", key: nil).status, 200)
        XCTAssertFalse(modBot.isClosed)
        XCTAssertFalse(u1.isClosed)
        XCTAssertFalse(watcher.isClosed)
        XCTAssertNotNil(try watcher.command("ping")["ok"])
        XCTAssertNotNil(try modBot.command("moderate", [("channel", .string("group:p1")), ("action", .string("delete")),
                                                        ("offset", .int(first))])["ok"])
        let deleted = try XCTUnwrap(u1.nextPush(timeout: 10))
        XCTAssertEqual(deleted["push"]?.stringValue, "group.deleted")
        XCTAssertEqual(deleted["data"]?["offset"]?.intValue, first)
        let (late, _) = try open(node, "u2")
        XCTAssertNotNil(try late.command("ping")["ok"], "new connections are still accepted")
    }

    /// Money values from the shop API stay where an order amount cannot overflow.
    func testProductPricesOutOfRangeAreBadRequest() throws {
        let node = try startNode("n1")
        for price in ["-1", "1000000000001", "9223372036854775807", "1e300", "19.99", "\"1999\"", "null"] {
            let r = try node.http("POST", "/api/v1/products",
                                  body: #"{"id":"p-bad","merchant":"m1","title":"Card","price":\#(price),"currency":"CNY"}"#)
            XCTAssertEqual(r.status, 400, "price \(price): \(r.text)")
        }
        XCTAssertEqual(try node.http("GET", "/api/v1/products/p-bad").status, 404, "nothing was created")
        try createProduct(node, "p-ok", price: 1_000_000_000_000)
    }
}
