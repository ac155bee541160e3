import Foundation
import GatewayProtocol
import XCTest

/// The read-only admin API (`/api/v1/admin/...`) on real nodes: each node's stats reach
/// Redis and every node answers for all of them; only the shop key opens it.
final class AdminTests: IntegrationCase {
    /// The overview as `node` answers it, once `until` holds (stats are written every 2 s).
    @discardableResult
    func overview(_ node: GatewayNodeProcess, _ what: String, until: @escaping (JSON) -> Bool) throws -> JSON {
        var last = JSON.null
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let r = try? node.http("GET", "/api/v1/admin/overview"), r.status == 200, let json = r.json {
                last = json
                if until(json) { return json }
            }
            usleep(200_000)
        }
        throw TestError("timed out waiting for \(what); last overview: \(last.serialized().prefix(1_500))")
    }

    func row(_ overview: JSON, _ node: String) -> JSON? {
        overview["nodes"]?.arrayValue?.first { $0["name"]?.stringValue == node }
    }

    func connections(_ overview: JSON, _ node: String) -> Int64? {
        row(overview, node)?["connections"]?.intValue
    }

    func testBothNodesAppearWithTheirConnectionsAndTheBusiestChannels() throws {
        let a = try startNode("n1")
        let b = try startNode("n2")
        try createProduct(a, "p1")
        let (u1, _) = try open(a, "u1")
        let (u2, _) = try open(a, "u2")
        let (u3, _) = try open(b, "u3")
        for session in [u1, u2, u3] {
            XCTAssertNotNil(try session.command("subscribe", [("channel", .string("product:p1"))])["ok"])
        }
        let (merchant, _) = try open(b, "m1", role: .merchant, products: ["p1"])
        XCTAssertNotNil(try merchant.command("subscribe", [("channel", .string("group:p1"))])["ok"])

        for node in [a, b] {
            let seen = try overview(node, "n1 with 2 connections and n2 with 2, seen from \(node.name)") {
                self.connections($0, "n1") == 2 && self.connections($0, "n2") == 2
            }
            for name in ["n1", "n2"] {
                let r = try XCTUnwrap(row(seen, name))
                XCTAssertEqual(r["live"]?.boolValue, true, "\(r)")
                XCTAssertGreaterThan(r["started_ms"]?.intValue ?? 0, 0, "\(r)")
                XCTAssertEqual(r["instance"]?.stringValue?.hasPrefix(name + "."), true, "\(r)")
            }
            XCTAssertEqual(row(seen, "n1")?["subscriptions"]?.intValue, 4, "two personal channels and product:p1 twice: \(seen)")
            let channels = seen["channels"]?.arrayValue ?? []
            XCTAssertEqual(channels.first?["channel"]?.stringValue, "product:p1", "\(seen)")
            XCTAssertEqual(channels.first?["subscribers"]?.intValue, 3, "\(seen)")
            XCTAssertEqual(channels.first?["nodes"]?.intValue, 2, "\(seen)")
            XCTAssertFalse(channels.contains { $0["channel"]?.stringValue?.hasPrefix("user:") == true }, "personal channels are not ranked: \(seen)")
            let groups = seen["groups"]?.arrayValue ?? []
            XCTAssertEqual(groups.first?["group"]?.stringValue, "p1", "\(seen)")
            XCTAssertEqual(groups.first?["subscribers"]?.intValue, 1, "\(seen)")
            XCTAssertEqual(seen["refund_required"]?.arrayValue?.count, 0, "\(seen)")
            XCTAssertEqual(seen["webhooks"]?["backlog"]?.intValue, 0, "\(seen)")
            XCTAssertEqual(Set(seen["series"]?.arrayValue?.compactMap { $0["node"]?.stringValue } ?? []), ["n1", "n2"], "\(seen)")
        }

        u2.close()
        try overview(b, "n1 down to 1 connection") { self.connections($0, "n1") == 1 }
        let nodes = try b.http("GET", "/api/v1/admin/nodes")
        XCTAssertEqual(nodes.status, 200, nodes.text)
        XCTAssertEqual(nodes.json?["nodes"]?.arrayValue?.count, 2, nodes.text)
        XCTAssertNil(nodes.json?["channels"], "one part per route: \(nodes.text)")
    }

    func testADeadNodeShowsSilentAndItsChannelsStopCounting() throws {
        let a = try startNode("n1")
        let b = try startNode("n2")
        try createProduct(a, "p1")
        let (u1, _) = try open(b, "u1")
        XCTAssertNotNil(try u1.command("subscribe", [("channel", .string("product:p1"))])["ok"])
        try overview(a, "n2 live with product:p1") {
            self.row($0, "n2")?["live"]?.boolValue == true && $0["channels"]?.arrayValue?.first?["channel"]?.stringValue == "product:p1"
        }
        b.signal(SIGKILL)
        XCTAssertNotNil(b.waitExit(), "n2 did not die")
        let after = try overview(a, "n2 shown silent (10 s without stats)") { self.row($0, "n2")?["live"]?.boolValue == false }
        XCTAssertEqual(row(after, "n2")?["connections"]?.intValue, 1, "its last figures stay readable: \(after)")
        XCTAssertEqual(after["channels"]?.arrayValue?.count, 0, "a silent node's channels do not count: \(after)")
        XCTAssertEqual(row(after, "n1")?["live"]?.boolValue, true, "\(after)")
    }

    func testOnlyTheShopKeyOpensTheAdminAPI() throws {
        let node = try startNode("n1")
        for part in ["overview", "nodes", "channels", "groups", "refunds", "webhooks", "series"] {
            let path = "/api/v1/admin/\(part)"
            XCTAssertEqual(try node.http("GET", path, key: nil).status, 401, path)
            XCTAssertEqual(try node.http("GET", path, key: "not-the-key").status, 401, path)
            let merchant = try node.http("GET", path, key: TestSecrets.merchantKey)
            XCTAssertEqual(merchant.status, 403, path)
            XCTAssertEqual(merchant.json?["error"]?["code"]?.stringValue, "forbidden", merchant.text)
            let shop = try node.http("GET", path)
            XCTAssertEqual(shop.status, 200, "\(path): \(shop.text)")
            XCTAssertNotNil(shop.json?["now_ms"]?.intValue, shop.text)
        }
        XCTAssertEqual(try node.http("GET", "/api/v1/admin/keys").status, 404)
        XCTAssertEqual(try node.http("POST", "/api/v1/admin/overview", body: "{}").status, 404, "read only")
    }

    func testGroupsAndTheirMutesAppearAfterAModerate() throws {
        let node = try startNode("n1")
        try createProduct(node, "p7")
        let (merchant, _) = try open(node, "m1", role: .merchant, products: ["p7"])
        let mute: [(String, JSON)] = [("channel", .string("group:p7")), ("action", .string("mute")), ("user", .string("u9")), ("seconds", .int(600))]
        XCTAssertNotNil(try merchant.command("moderate", mute)["ok"])

        // Nobody is in the group: it is listed because of its mute.
        let groups = try XCTUnwrap(try node.http("GET", "/api/v1/admin/groups").json?["groups"]?.arrayValue)
        let group = try XCTUnwrap(groups.first { $0["group"]?.stringValue == "p7" }, "\(groups)")
        XCTAssertEqual(group["subscribers"]?.intValue, 0)
        let mutes = group["mutes"]?.arrayValue ?? []
        XCTAssertEqual(mutes.map { $0["user"]?.stringValue }, ["u9"], "\(group)")
        let until = mutes.first?["until_ms"]?.intValue ?? 0
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        XCTAssertTrue((now + 500_000...now + 700_000).contains(until), "ends in about 600 s: \(until - now) ms")

        let unmute: [(String, JSON)] = [("channel", .string("group:p7")), ("action", .string("unmute")), ("user", .string("u9"))]
        XCTAssertNotNil(try merchant.command("moderate", unmute)["ok"])
        let after = try XCTUnwrap(try node.http("GET", "/api/v1/admin/groups").json?["groups"]?.arrayValue)
        XCTAssertNil(after.first { $0["group"]?.stringValue == "p7" }, "no mute and nobody in it: not listed \(after)")
    }

    func testTheAdminPageIsServedWithoutDevMode() throws {
        let node = try startNode("n1")
        let page = try node.http("GET", "/admin/", key: nil)
        XCTAssertEqual(page.status, 200)
        XCTAssertTrue(page.text.contains("id=\"key-form\""), page.text)
        XCTAssertEqual(try node.http("GET", "/admin/admin.js", key: nil).status, 200)
        XCTAssertEqual(try node.http("GET", "/admin", key: nil).status, 302)
    }
}
