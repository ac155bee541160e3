import Foundation
import GatewayAuth
import GatewayClient
import GatewayProtocol
import XCTest

/// The `serve --dev` endpoints behind the demo page, and the static files, over real HTTP.
final class DevAPITests: IntegrationCase {
    static let demoProducts = ["demo-steam-50", "demo-netflix-1m", "demo-game-key"]

    private func call(_ node: GatewayNodeProcess, _ method: String, _ path: String, _ body: String? = nil,
                      token: String? = nil) throws -> HTTPResponse {
        try node.http(method, path, body: body, key: token)
    }

    private func devToken(_ node: GatewayNodeProcess, _ user: String) throws -> String {
        let r = try call(node, "POST", "/dev/token", #"{"user":"\#(user)"}"#)
        XCTAssertEqual(r.status, 200, r.text)
        return try XCTUnwrap(r.json?["token"]?.stringValue, r.text)
    }

    /// Waits until the dev node has created and stocked the demo products.
    private func waitForDemoProducts(_ node: GatewayNodeProcess) throws -> [JSON] {
        var products: [JSON] = []
        try waitUntil(timeout: 15, "demo products") {
            products = (try? call(node, "GET", "/dev/products"))?.json?["products"]?.arrayValue ?? []
            return products.count == Self.demoProducts.count && products.allSatisfy { ($0["stock"]?.intValue ?? 0) > 0 }
        }
        return products
    }

    private func errorCode(_ r: HTTPResponse) -> String? { r.json?["error"]?["code"]?.stringValue }

    private func header(_ node: GatewayNodeProcess, _ method: String, _ path: String) throws -> (status: Int, head: String, body: [UInt8]) {
        let raw = try rawExchange(port: node.port, Array("\(method) \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8),
                                  readUntilClose: true)
        let split = try XCTUnwrap(raw.firstRange(of: Array("\r\n\r\n".utf8)))
        let head = String(decoding: raw[..<split.lowerBound], as: UTF8.self)
        let status = Int(head.split(separator: " ")[1]) ?? 0
        return (status, head.lowercased(), Array(raw[split.upperBound...]))
    }

    func testDevEndpointsAre404WithoutDevButFilesAreServed() throws {
        let node = try startNode("plain")
        for (method, path, body) in [("POST", "/dev/token", #"{"user":"alice"}"#), ("GET", "/dev/products", nil),
                                     ("POST", "/dev/pay", #"{"order":"o-1"}"#), ("POST", "/dev/price", #"{"product":"p","price":1}"#)] {
            let r = try call(node, method, path, body)
            XCTAssertEqual(r.status, 404, "\(path): \(r.text)")
            XCTAssertEqual(errorCode(r), "not_found", r.text)
        }
        XCTAssertEqual(try call(node, "GET", "/").status, 404, "GET / redirects only in dev mode")
        XCTAssertFalse(node.log().contains("demo product"), "no demo products without --dev")

        let js = try header(node, "GET", "/client/gateway-client.js")
        XCTAssertEqual(js.status, 200)
        XCTAssertTrue(js.head.contains("content-type: text/javascript; charset=utf-8"), js.head)
        XCTAssertTrue(js.head.contains("cache-control: no-cache"), js.head)
        XCTAssertTrue(String(decoding: js.body, as: UTF8.self).contains("export class GatewayClient"))
        let page = try header(node, "GET", "/demo/")
        XCTAssertEqual(page.status, 200)
        XCTAssertTrue(page.head.contains("content-type: text/html; charset=utf-8"), page.head)
        XCTAssertTrue(String(decoding: page.body, as: UTF8.self).contains(#"id="conn-state""#))
        XCTAssertTrue(try header(node, "GET", "/demo/demo.css").head.contains("content-type: text/css"))
        let head = try header(node, "HEAD", "/demo/demo.js")
        XCTAssertEqual(head.status, 200)
        XCTAssertTrue(head.body.isEmpty, "HEAD has no body")
        let redirect = try header(node, "GET", "/demo")
        XCTAssertEqual(redirect.status, 302)
        XCTAssertTrue(redirect.head.contains("location: /demo/"), redirect.head)
        for path in ["/demo/../../Package.swift", "/demo/nope.js", "/client/", "/demo/%2e%2e/Package.swift",
                     "/client/../../../etc/passwd", "/Web/demo/index.html", "/client", "/demo/.hidden"] {
            XCTAssertEqual(try header(node, "GET", path).status, 404, path)
        }
        XCTAssertEqual(try call(node, "POST", "/demo/index.html", "{}").status, 404, "static files are GET/HEAD only")
    }

    func testTokenOrderAndSandboxPayDeliver() throws {
        let node = try startNode("dev", dev: true)
        let products = try waitForDemoProducts(node)
        XCTAssertEqual(products.compactMap { $0["id"]?.stringValue }, Self.demoProducts)
        let game = try XCTUnwrap(products.first { $0["id"]?.stringValue == "demo-game-key" })

        let r = try call(node, "POST", "/dev/token", #"{"user":"alice"}"#)
        XCTAssertEqual(r.status, 200, r.text)
        let tokenText = try XCTUnwrap(r.json?["token"]?.stringValue)
        XCTAssertEqual(r.json?["user"]?.stringValue, "alice")
        let expiresAt = try XCTUnwrap(r.json?["expires_at"]?.intValue)
        XCTAssertGreaterThan(expiresAt, Int64(Date().timeIntervalSince1970 * 1000) + 3600_000, "expires_at is in ms, hours ahead")
        // --dev uses the secrets in its dev secrets file: the test auth secret verifies the token.
        let claims = try TokenVerifier(secret: TestSecrets.auth).verify(tokenText, nowSeconds: Int64(Date().timeIntervalSince1970)).get()
        XCTAssertEqual(claims.sub, "alice")
        XCTAssertEqual(claims.role, .buyer)

        let (alice, _) = try GatewaySession.open(loop: Self.loop, url: node.wsURL, token: tokenText)
        let created = try call(node, "POST", "/dev/orders", #"{"product":"demo-game-key","buyer":"mallory"}"#, token: tokenText)
        XCTAssertEqual(created.status, 201, created.text)
        let orderID = try XCTUnwrap(created.json?["id"]?.stringValue)
        XCTAssertEqual(created.json?["buyer"]?.stringValue, "alice", "the buyer is the token's user, whatever the body says")
        XCTAssertEqual(created.json?["status"]?.stringValue, "pending_payment")
        XCTAssertEqual(created.json?["amount"]?.intValue, game["price"]?.intValue)

        let paid = try call(node, "POST", "/dev/pay", #"{"order":"\#(orderID)"}"#, token: tokenText)
        XCTAssertEqual(paid.status, 200, paid.text)
        XCTAssertEqual(paid.json?["payment"]?["status"]?.stringValue, "succeeded", paid.text)
        XCTAssertEqual(paid.json?["payment"]?["payer"]?.stringValue, "alice")
        XCTAssertEqual(paid.json?["order"]?["status"]?.stringValue, "delivered", paid.text)
        XCTAssertNil(paid.json?["order"]?["keys"], "keys only through order.get")

        var delivered = false
        while !delivered, let p = push(alice, "order.status") {
            delivered = p["data"]?["order"]?.stringValue == orderID && p["data"]?["status"]?.stringValue == "delivered"
        }
        XCTAssertTrue(delivered, "alice's socket saw her order delivered")
        let got = try alice.command("order.get", [("order", .string(orderID))])
        let keys = got["ok"]?["keys"]?.arrayValue ?? []
        XCTAssertEqual(keys.count, 1, got.serialized())
        XCTAssertTrue(keys.first?.stringValue?.hasPrefix("DEMO-") ?? false)
        XCTAssertFalse(node.log().contains(keys.first?.stringValue ?? "?"), "card keys never logged")

        // Paying again is not a second charge: the order no longer awaits payment.
        let again = try call(node, "POST", "/dev/pay", #"{"order":"\#(orderID)"}"#, token: tokenText)
        XCTAssertEqual(again.status, 409, again.text)
        XCTAssertEqual(errorCode(again), "conflict")

        let root = try header(node, "GET", "/")
        XCTAssertEqual(root.status, 302)
        XCTAssertTrue(root.head.contains("location: /demo/"), root.head)
    }

    func testSandboxFriendPayAndGift() throws {
        let node = try startNode("dev", dev: true)
        _ = try waitForDemoProducts(node)
        let bob = try devToken(node, "bob"), alice = try devToken(node, "alice"), carol = try devToken(node, "carol")
        let (bobSession, _) = try GatewaySession.open(loop: Self.loop, url: node.wsURL, token: bob)

        let request = try call(node, "POST", "/dev/orders",
                               #"{"product":"demo-steam-50","kind":"friendpay","friendpay":{"to":"alice"}}"#, token: bob)
        XCTAssertEqual(request.status, 201, request.text)
        let orderID = try XCTUnwrap(request.json?["id"]?.stringValue)
        XCTAssertNotNil(request.json?["pay_code"]?.stringValue, "the requester sees the pay code")
        let own = try call(node, "POST", "/dev/pay", #"{"order":"\#(orderID)"}"#, token: bob)
        XCTAssertEqual(own.status, 403, "the requester cannot pay his own request: \(own.text)")
        let paid = try call(node, "POST", "/dev/pay", #"{"order":"\#(orderID)"}"#, token: alice)
        XCTAssertEqual(paid.status, 200, paid.text)
        XCTAssertEqual(paid.json?["order"]?["paid_by"]?.stringValue, "alice")
        XCTAssertEqual(paid.json?["order"]?["status"]?.stringValue, "delivered")
        XCTAssertEqual(paid.json?["order"]?["owner"]?.stringValue, "bob")
        let late = try call(node, "POST", "/dev/pay", #"{"order":"\#(orderID)"}"#, token: carol)
        XCTAssertEqual(late.status, 409, "a second friend cannot pay a paid request: \(late.text)")
        XCTAssertNotNil(push(bobSession, "friendpay.paid"), "the requester hears who paid")

        // A gift paid in the sandbox reaches the named recipient with its code.
        let (carolSession, _) = try GatewaySession.open(loop: Self.loop, url: node.wsURL, token: carol)
        let gift = try call(node, "POST", "/dev/orders", #"{"product":"demo-netflix-1m","kind":"gift","gift":{"to":"carol"}}"#,
                            token: alice)
        XCTAssertEqual(gift.status, 201, gift.text)
        let giftID = try XCTUnwrap(gift.json?["id"]?.stringValue)
        XCTAssertEqual(try call(node, "POST", "/dev/pay", #"{"order":"\#(giftID)"}"#, token: alice).status, 200)
        let received = try XCTUnwrap(push(carolSession, "gift.received"))
        let code = try XCTUnwrap(received["data"]?["code"]?.stringValue)
        let claimed = try carolSession.command("gift.claim", [("code", .string(code))])
        XCTAssertEqual(claimed["ok"]?["owner"]?.stringValue, "carol", claimed.serialized())
        XCTAssertEqual(claimed["ok"]?["keys"]?.arrayValue?.count, 1)
    }

    func testDemoBotAnswersInTheGroupOnce() throws {
        let node = try startNode("dev", dev: true)
        _ = try waitForDemoProducts(node)
        let token = try devToken(node, "asker")
        let created = try call(node, "POST", "/dev/orders", #"{"product":"demo-game-key"}"#, token: token)
        let orderID = try XCTUnwrap(created.json?["id"]?.stringValue, created.text)
        XCTAssertEqual(try call(node, "POST", "/dev/pay", #"{"order":"\#(orderID)"}"#, token: token).status, 200)
        let (session, _) = try GatewaySession.open(loop: Self.loop, url: node.wsURL, token: token)
        let joined = try session.command("subscribe", [("channel", .string("group:demo-game-key"))])
        XCTAssertNotNil(joined["ok"], joined.serialized())
        try waitUntil(timeout: 15, "demo-bot in the group") {
            let p = try? session.command("presence", [("channel", .string("group:demo-game-key"))])
            return p?["ok"]?["users"]?.arrayValue?.contains(.string("demo-bot")) ?? false
        }
        let sent = try session.command("publish", [("channel", .string("group:demo-game-key")),
                                                   ("data", .object([("text", .string("How do I activate it?"))]))])
        let question = try XCTUnwrap(sent["ok"]?["offset"]?.intValue, sent.serialized())
        // The first answer within 10 s, then 2 s more for a second one that must not come.
        var answers: [JSON] = []
        var deadline = Date().addingTimeInterval(10)
        while Date() < deadline, let p = push(session, "group.message", timeout: deadline.timeIntervalSinceNow) {
            guard p["data"]?["role"]?.stringValue == "bot" else { continue }
            if answers.isEmpty { deadline = Date().addingTimeInterval(2) }
            answers.append(p)
        }
        XCTAssertEqual(answers.count, 1, "one answer: \(answers.map { $0.serialized() })")
        XCTAssertEqual(answers.first?["data"]?["from"]?.stringValue, "demo-bot")
        XCTAssertEqual(answers.first?["data"]?["reply_to"]?.intValue, question)
        XCTAssertTrue(answers.first?["data"]?["text"]?.stringValue?.contains("redeem") ?? false)
    }

    func testDevPriceDropsAlertWatchers() throws {
        let node = try startNode("dev", dev: true)
        let products = try waitForDemoProducts(node)
        let price = try XCTUnwrap(products.first { $0["id"]?.stringValue == "demo-netflix-1m" }?["price"]?.intValue)
        let token = try devToken(node, "watcher")
        let (session, _) = try GatewaySession.open(loop: Self.loop, url: node.wsURL, token: token)
        let watch = try session.command("watch", [("product", .string("demo-netflix-1m"))])
        XCTAssertNotNil(watch["ok"], watch.serialized())
        let r = try call(node, "POST", "/dev/price", #"{"product":"demo-netflix-1m","price":\#(price - 100)}"#, token: token)
        XCTAssertEqual(r.status, 200, r.text)
        XCTAssertEqual(r.json?["price"]?.intValue, price - 100)
        let drop = try XCTUnwrap(push(session, "price.drop"))
        XCTAssertEqual(drop["data"]?["price"]?.intValue, price - 100)
        XCTAssertEqual(drop["data"]?["previous"]?.intValue, price)
    }

    func testBadInputIsAClear400And401() throws {
        let node = try startNode("dev", dev: true)
        _ = try waitForDemoProducts(node)
        let token = try devToken(node, "alice")
        let cases: [(String, String, String?, String?, Int, String)] = [
            ("POST", "/dev/token", #"{"user":"al ice"}"#, nil, 400, "user"),
            ("POST", "/dev/token", #"{"user":""}"#, nil, 400, "user"),
            ("POST", "/dev/token", #"{}"#, nil, 400, "user"),
            ("POST", "/dev/token", "not json", nil, 400, "JSON"),
            ("POST", "/dev/token", #"{"user":"alice","name":"\#(String(repeating: "x", count: 33))"}"#, nil, 400, "name"),
            ("POST", "/dev/orders", #"{"product":"demo-game-key"}"#, nil, 401, "Bearer"),
            ("POST", "/dev/orders", #"{"product":"demo-game-key"}"#, "not-a-token", 401, "token"),
            ("POST", "/dev/orders", #"{"product":"demo-game-key"}"#, token + "x", 401, "signature"),
            ("POST", "/dev/orders", #"{"product":"no-such-product"}"#, token, 404, "no-such-product"),
            ("POST", "/dev/orders", #"{"product":"demo-game-key","quantity":0}"#, token, 400, "quantity"),
            ("POST", "/dev/orders", #"{"product":"demo-game-key","kind":"loan"}"#, token, 400, "kind"),
            ("POST", "/dev/orders", #"{"product":"demo-game-key","kind":"gift","gift":{"to":"alice"}}"#, token, 400, "someone else"),
            ("POST", "/dev/pay", #"{}"#, token, 400, "order"),
            ("POST", "/dev/pay", #"{"order":"o-00000000000000000000"}"#, token, 404, "o-00000000000000000000"),
            ("POST", "/dev/price", #"{"product":"demo-game-key","price":-1}"#, token, 400, "price"),
            ("POST", "/dev/price", #"{"product":"demo-game-key","price":"10"}"#, token, 400, "price"),
            ("POST", "/dev/price", #"{"product":"no-such-product","price":10}"#, token, 404, "no-such-product"),
            ("GET", "/dev/token", nil, nil, 404, "no route"),
            ("POST", "/dev/nothing", "{}", token, 404, "no route"),
        ]
        for (method, path, body, key, status, words) in cases {
            let r = try call(node, method, path, body, token: key)
            XCTAssertEqual(r.status, status, "\(method) \(path) \(body ?? ""): \(r.text)")
            let message = r.json?["error"]?["message"]?.stringValue ?? ""
            XCTAssertNotNil(errorCode(r), "error body shape for \(path): \(r.text)")
            XCTAssertTrue(message.contains(words), "\(path) \(body ?? ""): message \"\(message)\" should mention \(words)")
        }
    }

    /// `GET /dev/me`: the token's user as `GET /api/v1/users/{id}` answers it, nobody else's;
    /// a token is needed, and the route exists only with --dev.
    func testDevMeAnswersTheTokensUser() throws {
        let plain = try startNode("plain")
        XCTAssertEqual(try call(plain, "GET", "/dev/me", nil, token: token("alice")).status, 404)

        let node = try startNode("n1", dev: true)
        _ = try waitForDemoProducts(node)
        let bob = try XCTUnwrap(try call(node, "POST", "/dev/orders", #"{"product":"demo-game-key"}"#, token: try devToken(node, "bob")).json)
        XCTAssertEqual(try call(node, "POST", "/dev/pay", #"{"order":"\#(bob["id"]!.stringValue!)"}"#, token: try devToken(node, "bob")).status, 200)

        XCTAssertEqual(try call(node, "GET", "/dev/me", nil).status, 401)
        let me = try call(node, "GET", "/dev/me?user=bob", nil, token: try devToken(node, "alice"))
        XCTAssertEqual(me.status, 200, me.text)
        XCTAssertEqual(me.json?["id"]?.stringValue, "alice")
        XCTAssertEqual(me.json?["points"]?.intValue, 0, "bob's order is not alice's")
        XCTAssertEqual(try call(node, "GET", "/dev/me", nil, token: try devToken(node, "bob")).json?["points"]?.intValue, 2900)
    }

    /// Needs the sales backend (`createSale`): fails before issue 17's merge. `POST /dev/sales`
    /// with no body schedules the demo sale 30 s ahead; `GET /dev/sales` finds it; a sale
    /// larger than the product's stock tops its keys up first; bad input is a clear 400.
    func testDevSalesSchedulesADemoSaleAndTopsUpKeys() throws {
        let plain = try startNode("plain")
        XCTAssertEqual(try call(plain, "POST", "/dev/sales").status, 404)

        let node = try startNode("n1", dev: true)
        _ = try waitForDemoProducts(node)
        let none = try call(node, "GET", "/dev/sales")
        XCTAssertEqual(none.status, 200, none.text)
        XCTAssertEqual(none.json, .null, "no sale yet: \(none.text)")
        let before = Int64(Date().timeIntervalSince1970 * 1000)
        let r = try call(node, "POST", "/dev/sales")
        let after = Int64(Date().timeIntervalSince1970 * 1000)
        XCTAssertEqual(r.status, 201, r.text)
        let sale = try XCTUnwrap(r.json, r.text)
        let id = try XCTUnwrap(sale["id"]?.stringValue, r.text)
        XCTAssertEqual(sale["product"]?.stringValue, "demo-game-key", r.text)
        XCTAssertEqual(sale["price"]?.intValue, 1450, "half the product's 2900: \(r.text)")
        XCTAssertEqual(sale["quantity"]?.intValue, 5, r.text)
        XCTAssertEqual(sale["remaining"]?.intValue, 5, r.text)
        XCTAssertEqual(sale["per_user"]?.intValue, 1, r.text)
        XCTAssertEqual(sale["state"]?.stringValue, "scheduled", r.text)
        let startsAt = try XCTUnwrap(sale["starts_at"]?.intValue, r.text)
        XCTAssertTrue((before + 30_000 - 1000...after + 30_000 + 1000).contains(startsAt), "30 s ahead on the node's clock: \(r.text)")
        XCTAssertEqual(sale["ends_at"]?.intValue, startsAt + 600_000, r.text)
        XCTAssertEqual(try call(node, "GET", "/dev/sales").json?["id"]?.stringValue, id)
        let read = try call(node, "GET", "/dev/sales/\(id)")
        XCTAssertEqual(read.status, 200, read.text)
        XCTAssertEqual(read.json?["remaining"]?.intValue, 5, read.text)
        XCTAssertEqual(try call(node, "GET", "/dev/sales/no-such-sale").status, 404)

        let stock = { (product: String) in
            try self.call(node, "GET", "/dev/products").json?["products"]?.arrayValue?
                .first { $0["id"]?.stringValue == product }?["stock"]?.intValue ?? -1
        }
        let had = try stock("demo-steam-50")
        XCTAssertLessThan(had, 1000, "the demo stock is short of 1000")
        let big = try call(node, "POST", "/dev/sales",
                           #"{"product":"demo-steam-50","quantity":1000,"per_user":2,"price":100,"starts_in_s":5,"duration_s":60}"#)
        XCTAssertEqual(big.status, 201, big.text)
        XCTAssertEqual(big.json?["remaining"]?.intValue, 1000, big.text)
        XCTAssertEqual(big.json?["price"]?.intValue, 100, big.text)
        XCTAssertEqual(big.json?["per_user"]?.intValue, 2, big.text)
        XCTAssertEqual(big.json?["ends_at"]?.intValue, (big.json?["starts_at"]?.intValue ?? 0) + 60_000, big.text)
        XCTAssertGreaterThanOrEqual(try stock("demo-steam-50"), 50, "topped up to cover the sale and keep some")
        XCTAssertEqual(try call(node, "GET", "/dev/sales").json?["id"], big.json?["id"], "the latest")

        for (body, field) in [(#"{"quantity":0}"#, "quantity"), (#"{"quantity":1001}"#, "quantity"), (#"{"starts_in_s":-1}"#, "starts_in_s"),
                              (#"{"duration_s":"long"}"#, "duration_s"), (#"{"price":-1}"#, "price"), (#"{"quantity":2,"per_user":3}"#, "per_user"),
                              (#"{"product":"no such"}"#, "product")] {
            let bad = try call(node, "POST", "/dev/sales", body)
            XCTAssertEqual(bad.status, 400, "\(body): \(bad.text)")
            XCTAssertEqual(errorCode(bad), "bad_request", bad.text)
            XCTAssertTrue(bad.text.contains(field), "\(body) names \(field): \(bad.text)")
        }
        XCTAssertEqual(try call(node, "POST", "/dev/sales", "[1]").status, 400)
        XCTAssertEqual(try call(node, "POST", "/dev/sales", #"{"product":"p-none"}"#).status, 404)
        XCTAssertEqual(try call(node, "GET", "/dev/sales").json?["id"], big.json?["id"], "refusals change nothing")
    }
}
