import Foundation
import GatewayClient
import GatewayProtocol
import GatewayTestSupport
import XCTest

/// Flash sales (contract 4.8) on two real nodes sharing one Redis: sales through the HTTP
/// API (units set aside at once, given back at the end), the `sale:` channel's timed pushes,
/// `sale.buy` with its errors, and THE rush: 2,000 buys from 1,000 users over both nodes
/// for 100 units. Run on the shared cluster too (.ci/cluster).
final class FlashSaleTests: IntegrationCase {
    var nowMs: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    private func code(_ reply: JSON) -> String? { reply["error"]?["code"]?.stringValue }
    private func message(_ reply: JSON) -> String { reply["error"]?["message"]?.stringValue ?? reply.serialized() }

    /// Two nodes and product `p1` (price 1999, merchant m1) with `keys` keys in stock.
    private func shop(keys: Int, env: [String: String] = [:]) throws -> (GatewayNodeProcess, GatewayNodeProcess) {
        let a = try startNode("n1", env: env), b = try startNode("n2", env: env)
        try createProduct(a, "p1")
        if keys > 0 { _ = try uploadKeys(a, "p1", (1...keys).map { "K-\($0)" }) }
        return (a, b)
    }

    private func saleBody(_ id: String = "s1", product: String = "p1", price: Int64 = 99, quantity: Int = 5,
                          startsAt: Int64, endsAt: Int64, perUser: Int? = nil) -> String {
        var f: [(String, JSON)] = [("id", .string(id)), ("product", .string(product)), ("price", .int(price)),
                                   ("quantity", .int(Int64(quantity))), ("starts_at", .int(startsAt)), ("ends_at", .int(endsAt))]
        if let perUser { f.append(("per_user", .int(Int64(perUser)))) }
        return JSON.object(f).serialized()
    }

    @discardableResult
    private func createSale(_ node: GatewayNodeProcess, _ body: String, status: Int = 201) throws -> JSON {
        let r = try node.http("POST", "/api/v1/sales", body: body)
        XCTAssertEqual(r.status, status, r.text)
        return r.json ?? .null
    }

    private func sale(_ node: GatewayNodeProcess, _ id: String) throws -> JSON {
        let r = try node.http("GET", "/api/v1/sales/\(id)")
        XCTAssertEqual(r.status, 200, r.text)
        return try XCTUnwrap(r.json)
    }

    private func stock(_ node: GatewayNodeProcess) throws -> Int64? { try product(node, "p1")["stock"]?.intValue }

    private func buy(_ s: GatewaySession, _ sale: String, quantity: Int? = nil, product: String? = nil) throws -> JSON {
        var f: [(String, JSON)] = [("sale", .string(sale))]
        if let quantity { f.append(("quantity", .int(Int64(quantity)))) }
        if let product { f.append(("product", .string(product))) }
        return try s.command("sale.buy", f)
    }

    private func waitUntil(_ ms: Int64) {
        let wait = Double(ms - nowMs) / 1000
        if wait > 0 { Thread.sleep(forTimeInterval: wait) }
    }

    /// `gateway_sale_buys_total` of `node`, by outcome.
    private func saleBuys(_ node: GatewayNodeProcess) throws -> [String: Int] {
        var out: [String: Int] = [:]
        for line in try node.http("GET", "/metrics", key: nil).text.split(separator: "\n") where line.hasPrefix("gateway_sale_buys_total{") {
            guard let q1 = line.firstIndex(of: "\""), let q2 = line[line.index(after: q1)...].firstIndex(of: "\""),
                  let n = Int(line.split(separator: " ").last ?? "") else { continue }
            out[String(line[line.index(after: q1)..<q2])] = n
        }
        return out
    }

    private func unitsLeft(_ sale: String) throws -> Int64? {
        let key = "gw:{product:p1}:sale:\(sale):units"
        return try redisCall(key, ["LLEN", key]).int
    }

    // MARK: HTTP

    func testCreateGetCloseAndEveryBadInputChangesNothing() throws {
        let (a, b) = try shop(keys: 10)
        let start = nowMs + 60_000, end = start + 600_000
        let created = try createSale(a, saleBody(quantity: 4, startsAt: start, endsAt: end, perUser: 2))
        XCTAssertEqual(created["state"]?.stringValue, "scheduled", created.serialized())
        XCTAssertEqual(created["remaining"]?.intValue, 4)
        XCTAssertEqual(created["sold"]?.intValue, 0)
        XCTAssertEqual(created["per_user"]?.intValue, 2)
        XCTAssertEqual(created["title"]?.stringValue, "Card p1")
        XCTAssertEqual(created["currency"]?.stringValue, "CNY")
        XCTAssertEqual(try stock(b), 6, "units are set aside at creation")
        XCTAssertEqual(try unitsLeft("s1"), 4)
        XCTAssertEqual(try sale(b, "s1"), created)
        // The same again: 200, the same sale; anything different: 409.
        let again = try a.http("POST", "/api/v1/sales", body: saleBody(quantity: 4, startsAt: start, endsAt: end, perUser: 2))
        XCTAssertEqual(again.status, 200, again.text)
        XCTAssertEqual(again.json?["remaining"]?.intValue, 4)
        let reused = try b.http("POST", "/api/v1/sales", body: saleBody(quantity: 3, startsAt: start, endsAt: end, perUser: 2))
        XCTAssertEqual(reused.status, 409, reused.text)
        XCTAssertTrue(reused.text.contains("sale id already used"), reused.text)

        let bad: [(String, String)] = [
            (#"{"id":"s 2","product":"p1","price":1,"quantity":1,"starts_at":\#(start),"ends_at":\#(end)}"#, "id"),
            (#"{"id":"s2","product":"p 1","price":1,"quantity":1,"starts_at":\#(start),"ends_at":\#(end)}"#, "product"),
            (saleBody("s2", price: -1, quantity: 1, startsAt: start, endsAt: end), "price"),
            (#"{"id":"s2","product":"p1","price":1.5,"quantity":1,"starts_at":\#(start),"ends_at":\#(end)}"#, "price"),
            (saleBody("s2", price: 1_000_000_000_001, quantity: 1, startsAt: start, endsAt: end), "price"),
            (saleBody("s2", quantity: 0, startsAt: start, endsAt: end), "quantity"),
            (saleBody("s2", quantity: -3, startsAt: start, endsAt: end), "quantity"),
            (saleBody("s2", quantity: 100_001, startsAt: start, endsAt: end), "quantity"),
            (#"{"id":"s2","product":"p1","price":1,"quantity":1,"starts_at":"soon","ends_at":\#(end)}"#, "starts_at"),
            (#"{"id":"s2","product":"p1","price":1,"quantity":1,"starts_at":\#(start)}"#, "ends_at"),
            (saleBody("s2", quantity: 1, startsAt: start, endsAt: start - 1), "ends_at"),
            (saleBody("s2", quantity: 1, startsAt: start, endsAt: start), "ends_at"),
            (saleBody("s2", quantity: 1, startsAt: nowMs - 60_000, endsAt: nowMs - 1_000), "ends_at"),
            (saleBody("s2", quantity: 2, startsAt: start, endsAt: end, perUser: 0), "per_user"),
            (saleBody("s2", quantity: 2, startsAt: start, endsAt: end, perUser: 3), "per_user"),
            (#"{"id":"s2","product":"p1","price":1,"quantity":2,"starts_at":\#(start),"ends_at":\#(end),"per_user":1e30}"#, "per_user"),
            (#"{"id":"s2","product":"p1","price":1,"quantity":2,"starts_at":\#(start),"ends_at":\#(end),"per_user":9223372036854775808}"#, "per_user"),
        ]
        for (body, field) in bad {
            let r = try a.http("POST", "/api/v1/sales", body: body)
            XCTAssertEqual(r.status, 400, "\(body): \(r.text)")
            XCTAssertEqual(r.json?["error"]?["code"]?.stringValue, "bad_request", body)
            XCTAssertTrue(r.text.contains(field), "\(body) names \(field): \(r.text)")
        }
        let short = try a.http("POST", "/api/v1/sales", body: saleBody("s2", quantity: 7, startsAt: start, endsAt: end))
        XCTAssertEqual(short.status, 409, short.text)
        XCTAssertTrue(short.text.contains("stock is short: 6 keys in stock, 7 asked"), short.text)
        let noProduct = try a.http("POST", "/api/v1/sales", body: saleBody("s2", product: "p9", quantity: 1, startsAt: start, endsAt: end))
        XCTAssertEqual(noProduct.status, 404, noProduct.text)
        try createProduct(a, "p2", merchant: "m2")
        _ = try uploadKeys(a, "p2", ["Q-1"])
        let notYours = try a.http("POST", "/api/v1/sales", body: saleBody("s2", product: "p2", quantity: 1, startsAt: start, endsAt: end),
                                  key: TestSecrets.merchantKey)
        XCTAssertEqual(notYours.status, 403, notYours.text)
        XCTAssertEqual(try product(a, "p2")["stock"]?.intValue, 1)
        XCTAssertEqual(try b.http("GET", "/api/v1/sales/s2").status, 404, "nothing was created")
        XCTAssertEqual(try stock(b), 6, "no bad input set anything aside")
        XCTAssertEqual(try sale(a, "s1")["remaining"]?.intValue, 4)

        // A merchant's own sale: created, read and closed with its key.
        XCTAssertEqual(try a.http("GET", "/api/v1/sales/s1", key: TestSecrets.merchantKey).status, 200)
        XCTAssertEqual(try a.http("GET", "/api/v1/sales/nope").status, 404)
        XCTAssertEqual(try a.http("POST", "/api/v1/sales/nope/close").status, 404)
        let closed = try b.http("POST", "/api/v1/sales/s1/close", key: TestSecrets.merchantKey)
        XCTAssertEqual(closed.status, 200, closed.text)
        XCTAssertEqual(closed.json?["state"]?.stringValue, "closed")
        XCTAssertEqual(try stock(a), 10, "unsold units are back in stock")
        XCTAssertEqual(try unitsLeft("s1"), 0)
        let twice = try a.http("POST", "/api/v1/sales/s1/close")
        XCTAssertEqual(twice.status, 200, twice.text)
        XCTAssertEqual(try stock(a), 10, "closing twice gives nothing back twice")
    }

    func testConnectCarriesServerTime() throws {
        let a = try startNode()
        let before = nowMs
        let (_, connected) = try open(a, "u1")
        let serverTime = try XCTUnwrap(connected["ok"]?["server_time"]?.intValue, connected.serialized())
        XCTAssertGreaterThanOrEqual(serverTime, before - 1_000)
        XCTAssertLessThanOrEqual(serverTime, nowMs + 1_000)
    }

    // MARK: Pushes

    /// A sale starting ~2.5 s ahead: subscribers on both nodes see its pushes in order, each
    /// open, sold-out and close once, the open not before `starts_at`.
    func testTimedPushesReachSubscribersOnBothNodes() throws {
        let (a, b) = try shop(keys: 3)
        let start = nowMs + 2_500, end = start + 2_500
        try createSale(a, saleBody(quantity: 2, startsAt: start, endsAt: end))
        let (watchA, _) = try open(a, "w1"), (watchB, _) = try open(b, "w2")
        for s in [watchA, watchB] {
            let r = try s.command("subscribe", [("channel", .string("sale:s1"))])
            XCTAssertNotNil(r["ok"], r.serialized())
        }
        // The buyers press at the open they are told of (so the open's remaining is the full sale).
        let (u1, _) = try open(a, "u1"), (u2, _) = try open(b, "u2")
        XCTAssertNotNil(try u1.command("subscribe", [("channel", .string("sale:s1"))])["ok"])
        XCTAssertNotNil(push(u1, "sale.open", timeout: 8), "sale.open reaches a buyer")
        for s in [u1, u2] {
            let r = try buy(s, "s1")
            XCTAssertNotNil(r["ok"], r.serialized())
        }
        waitUntil(end + 1_000)
        let unknown = try watchA.command("subscribe", [("channel", .string("sale:nope"))])
        XCTAssertEqual(code(unknown), "not_found", unknown.serialized())

        for (name, s) in [("n1", watchA), ("n2", watchB)] {
            var pushes: [JSON] = []
            while let p = s.nextPush(timeout: 1.5) { pushes.append(p) }
            let types = pushes.compactMap { $0["push"]?.stringValue }.filter { $0.hasPrefix("sale.") }
            for type in ["sale.open", "sale.sold_out", "sale.closed"] {
                XCTAssertEqual(types.filter { $0 == type }.count, 1, "\(name): \(type) once in \(types)")
            }
            // Created 2.5 s ahead, the 10 s countdown is due at once (a subscriber may see it
            // or not); the 1 s one goes out once, in time.
            let countdowns = pushes.filter { $0["push"]?.stringValue == "sale.countdown" }
            let last = countdowns.filter { ($0["data"]?["server_time"]?.intValue ?? 0) >= start - 1_000 }
            XCTAssertEqual(last.count, 1, "\(name): the 1 s countdown once in \(types)")
            XCTAssertLessThanOrEqual(countdowns.count, 2, "\(name): \(types)")
            XCTAssertLessThan(last.first?["data"]?["server_time"]?.intValue ?? .max, start, "before the start")
            XCTAssertGreaterThanOrEqual(types.filter { $0 == "sale.stock" }.count, 1, "\(name): \(types)")
            let order = ["sale.countdown", "sale.open", "sale.stock", "sale.sold_out", "sale.closed"]
            let firsts = order.compactMap { t in types.firstIndex(of: t) }
            XCTAssertEqual(firsts, firsts.sorted(), "\(name): in order: \(types)")
            for p in pushes {
                XCTAssertEqual(p["channel"]?.stringValue, "sale:s1")
                XCTAssertEqual(p["data"]?["sale"]?.stringValue, "s1", p.serialized())
            }
            XCTAssertTrue(countdowns.allSatisfy { $0["data"]?["starts_at"]?.intValue == start })
            let open = try XCTUnwrap(pushes.first { $0["push"]?.stringValue == "sale.open" })
            XCTAssertGreaterThanOrEqual(open["ts"]?.intValue ?? 0, start, "open not before starts_at")
            print("\(name): sale.open published \((open["ts"]?.intValue ?? 0) - start) ms after starts_at")
            XCTAssertEqual(open["data"]?["remaining"]?.intValue, 2)
            XCTAssertEqual(open["data"]?["ends_at"]?.intValue, end)
            let closed = try XCTUnwrap(pushes.first { $0["push"]?.stringValue == "sale.closed" })
            XCTAssertEqual(closed["data"]?["reason"]?.stringValue, "ended")
            XCTAssertEqual(closed["data"]?["remaining"]?.intValue, 0)
            let stocks = pushes.filter { $0["push"]?.stringValue == "sale.stock" }.compactMap { $0["data"]?["remaining"]?.intValue }
            XCTAssertEqual(stocks, stocks.sorted(by: >), "\(name): remaining only falls: \(stocks)")
        }
        XCTAssertEqual(try sale(b, "s1")["state"]?.stringValue, "closed")
        XCTAssertEqual(try stock(b), 1, "the sold units stay sold")
    }

    // MARK: sale.buy

    func testEveryBuyErrorAndTheOrderItMakes() throws {
        let (a, b) = try shop(keys: 10)
        try createProduct(a, "p2")
        _ = try uploadKeys(a, "p2", ["Q-1"])
        let start = nowMs + 2_000
        try createSale(a, saleBody(price: 50, quantity: 3, startsAt: start, endsAt: start + 600_000, perUser: 2))
        try createSale(a, saleBody("s2", quantity: 1, startsAt: nowMs - 1_000, endsAt: nowMs + 1_000))
        try createSale(a, saleBody("s3", quantity: 1, startsAt: nowMs - 1_000, endsAt: nowMs + 600_000))
        try createSale(a, saleBody("other", product: "p2", quantity: 1, startsAt: nowMs - 1_000, endsAt: nowMs + 600_000))
        let (u1, _) = try open(a, "u1"), (u2, _) = try open(b, "u2"), (u3, _) = try open(a, "u3")

        let early = try buy(u1, "s1")
        XCTAssertEqual(code(early), "bad_request", early.serialized())
        let retry = try XCTUnwrap(early["error"]?["retry_after_ms"]?.intValue, early.serialized())
        XCTAssertTrue((1...2_000).contains(retry), "\(retry)")
        XCTAssertTrue(message(early).hasPrefix("sale s1 opens in "), message(early))
        let unknown = try buy(u1, "nope")
        XCTAssertEqual(code(unknown), "not_found")
        XCTAssertEqual(message(unknown), "no sale nope")
        let mismatch = try buy(u1, "other", product: "p1")
        XCTAssertEqual(code(mismatch), "bad_request")
        XCTAssertEqual(message(mismatch), "sale other is for product p2")
        let zero = try buy(u1, "s1", quantity: 0)
        XCTAssertEqual(code(zero), "bad_request", zero.serialized())
        XCTAssertEqual(try b.http("POST", "/api/v1/sales/s3/close").status, 200)
        let closed = try buy(u2, "s3")
        XCTAssertEqual(code(closed), "gone", closed.serialized())
        XCTAssertEqual(message(closed), "sale s3 has ended")

        waitUntil(start)
        var first = try buy(u1, "s1", quantity: 2, product: "p1")
        while code(first) == "bad_request" {  // the node's clock may be a hair ahead of Redis's
            Thread.sleep(forTimeInterval: 0.02)
            first = try buy(u1, "s1", quantity: 2, product: "p1")
        }
        let order = try XCTUnwrap(first["ok"], first.serialized())
        XCTAssertEqual(order["sale"]?.stringValue, "s1")
        XCTAssertEqual(order["status"]?.stringValue, "pending_payment")
        XCTAssertEqual(order["amount"]?.intValue, 100)
        XCTAssertEqual(order["quantity"]?.intValue, 2)
        XCTAssertEqual(order["buyer"]?.stringValue, "u1")
        XCTAssertNil(order["keys"], "no keys before payment")
        XCTAssertEqual((order["expires_at"]?.intValue ?? 0) - (order["created_at"]?.intValue ?? 0), 300_000, "sales.pay_s")
        let over = try buy(u1, "s1")
        XCTAssertEqual(code(over), "forbidden")
        XCTAssertEqual(message(over), "at most 2 per buyer in this sale (you hold 2)")
        let tooMany = try buy(u2, "s1", quantity: 2)
        XCTAssertEqual(code(tooMany), "conflict")
        XCTAssertEqual(message(tooMany), "only 1 left")
        XCTAssertNotNil(try buy(u2, "s1")["ok"])
        let gone = try buy(u3, "s1")
        XCTAssertEqual(code(gone), "conflict")
        XCTAssertEqual(message(gone), "sold out")

        waitUntil(start + 1_000)
        let ended = try buy(u3, "s2")
        XCTAssertEqual(code(ended), "gone", ended.serialized())
        XCTAssertEqual(message(ended), "sale s2 has ended")
        let view = try sale(b, "s1")
        XCTAssertEqual(view["remaining"]?.intValue, 0)
        XCTAssertEqual(view["sold"]?.intValue, 3)
        XCTAssertEqual(view["state"]?.stringValue, "sold_out")
        // s3's unit came back at its close, s2's at its end (the sweep's tick): only s1's three are out.
        var left: Int64? = -1
        let until = Date().addingTimeInterval(5)
        while left != 7, Date() < until {
            left = try stock(a)
            if left != 7 { Thread.sleep(forTimeInterval: 0.1) }
        }
        XCTAssertEqual(left, 7)
    }

    /// The issue's test: 2,000 `sale.buy` from 1,000 users over both nodes for 100 units,
    /// `per_user` 1: exactly 100 orders, nobody with two, nothing left.
    func testTwoThousandBuysFromAThousandUsersTakeExactlyTheHundredUnits() throws {
        let (a, b) = try shop(keys: 120)
        let start = nowMs + 1_500
        try createSale(a, saleBody(quantity: 100, startsAt: start, endsAt: start + 600_000, perUser: 1))
        var sessions: [(String, GatewaySession)] = []
        for i in 0..<1_000 {
            let user = "r\(i)"
            let (s, _) = try open(i % 2 == 0 ? a : b, user)
            sessions.append((user, s))
        }
        waitUntil(start + 50)
        // Two buys per user in one frame, every user before any answer is read.
        for (_, s) in sessions {
            s.sendRawText(#"{"id":900001,"op":"sale.buy","sale":"s1"}"# + "\n" + #"{"id":900002,"op":"sale.buy","sale":"s1","product":"p1"}"#)
        }
        var orders: [String: [String]] = [:]
        var refusals: [String: Int] = [:]
        let deadline = Date().addingTimeInterval(60)  // for all answers: a lost one fails, it does not stall each
        for (user, s) in sessions {
            for id: Int64 in [900001, 900002] {
                let r = try XCTUnwrap(s.reply(id: id, timeout: max(0.01, deadline.timeIntervalSinceNow)), "\(user) \(id)")
                if let order = r["ok"] {
                    XCTAssertEqual(order["sale"]?.stringValue, "s1")
                    XCTAssertEqual(order["buyer"]?.stringValue, user)
                    orders[user, default: []].append(order["id"]?.stringValue ?? "")
                } else {
                    refusals[message(r), default: 0] += 1
                    XCTAssertTrue(["sold out", "at most 1 per buyer in this sale (you hold 1)"].contains(message(r)), r.serialized())
                }
            }
        }
        XCTAssertEqual(orders.values.reduce(0) { $0 + $1.count }, 100, "\(refusals)")
        XCTAssertTrue(orders.values.allSatisfy { $0.count == 1 }, "nobody holds two")
        XCTAssertEqual(Set(orders.values.flatMap { $0 }).count, 100)
        let view = try sale(b, "s1")
        XCTAssertEqual(view["remaining"]?.intValue, 0)
        XCTAssertEqual(view["sold"]?.intValue, 100)
        XCTAssertEqual(try unitsLeft("s1"), 0, "the sale's units list is empty")
        XCTAssertEqual(try stock(a), 20, "the product's own stock is untouched")
        var outcomes: [String: Int] = [:]
        for node in [a, b] { for (k, v) in try saleBuys(node) { outcomes[k, default: 0] += v } }
        XCTAssertEqual(outcomes["bought"], 100, "\(outcomes)")
        XCTAssertEqual(outcomes.values.reduce(0, +), 2_000, "every buy counted once: \(outcomes)")
        print("flash sale rush: \(outcomes) (sold_out_here: answered by the nodes without a script)")
    }

    /// A sale id used again once the first sale's records are gone (they expire 7 days after
    /// its end; deleted here): a node still caching the first one is refused `stale` by the
    /// script, looks the id up again and buys from the new sale.
    func testABuyOnAReusedSaleIDLooksTheSaleUpAgain() throws {
        let (a, b) = try shop(keys: 4)
        try createSale(a, saleBody(quantity: 1, startsAt: nowMs - 1_000, endsAt: nowMs + 600_000))
        let (u1, _) = try open(a, "u1"), (u2, _) = try open(a, "u2")
        XCTAssertNotNil(try buy(u1, "s1")["ok"], "the node now caches s1")
        for key in ["gw:{sale:s1}:product", "gw:{product:p1}:sale:s1", "gw:{product:p1}:sale:s1:units", "gw:{product:p1}:sale:s1:buyers"] {
            _ = try redisCall(key, ["DEL", key])
        }
        // Made through the other node: `a` still caches the first s1.
        try createSale(b, saleBody(price: 7, quantity: 2, startsAt: nowMs - 1_000, endsAt: nowMs + 600_000))
        let again = try buy(u2, "s1")
        XCTAssertEqual(again["ok"]?["amount"]?.intValue, 7, "bought from the new sale: \(again.serialized())")
        XCTAssertEqual(try sale(a, "s1")["remaining"]?.intValue, 1)
    }

    // MARK: After the buy

    func testAnUnpaidSaleOrderGivesItsUnitBackToTheNextBuyer() throws {
        let (a, b) = try shop(keys: 2, env: ["GATEWAY_SALES_PAY_S": "2"])
        try createSale(a, saleBody(quantity: 1, startsAt: nowMs - 1_000, endsAt: nowMs + 600_000))
        let (watch, _) = try open(b, "w1")
        XCTAssertNotNil(try watch.command("subscribe", [("channel", .string("sale:s1"))])["ok"])
        let (u1, _) = try open(a, "u1"), (u2, _) = try open(b, "u2")
        let first = try XCTUnwrap(try buy(u1, "s1")["ok"])
        XCTAssertEqual((first["expires_at"]?.intValue ?? 0) - (first["created_at"]?.intValue ?? 0), 2_000)
        XCTAssertEqual(message(try buy(u2, "s1")), "sold out")
        // Canceled like any unpaid order, its unit back in the sale.
        var canceled: JSON?
        let deadline = Date().addingTimeInterval(10)
        while canceled == nil, Date() < deadline, let p = push(u1, "order.status", timeout: 10) {
            if p["data"]?["status"]?.stringValue == "canceled" { canceled = p }
        }
        XCTAssertEqual(canceled?["data"]?["order"]?.stringValue ?? canceled?["data"]?["id"]?.stringValue, first["id"]?.stringValue)
        var back: JSON?
        while back == nil, Date() < deadline, let p = push(watch, "sale.stock", timeout: 5) {
            if p["data"]?["remaining"]?.intValue == 1 { back = p }
        }
        XCTAssertNotNil(back, "sale.stock says the unit is back")
        var second = try buy(u2, "s1")
        // The node may still be inside its 250 ms sold-out window.
        while message(second) == "sold out", Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
            second = try buy(u2, "s1")
        }
        XCTAssertNotNil(second["ok"], second.serialized())
        XCTAssertEqual(try sale(a, "s1")["sold"]?.intValue, 1)
        XCTAssertEqual(try stock(a), 1)
    }

    func testAShopCancelOfAnUnpaidSaleOrderGivesItsUnitsBack() throws {
        let (a, b) = try shop(keys: 3)
        try createSale(a, saleBody(quantity: 2, startsAt: nowMs - 1_000, endsAt: nowMs + 600_000, perUser: 2))
        let (u1, _) = try open(b, "u1")
        let order = try XCTUnwrap(try buy(u1, "s1", quantity: 2)["ok"])
        XCTAssertEqual(try sale(a, "s1")["remaining"]?.intValue, 0)
        let canceled = try a.http("POST", "/api/v1/orders/\(order["id"]?.stringValue ?? "")/cancel")
        XCTAssertEqual(canceled.json?["status"]?.stringValue, "canceled", canceled.text)
        let view = try sale(b, "s1")
        XCTAssertEqual(view["remaining"]?.intValue, 2, view.serialized())
        XCTAssertEqual(view["sold"]?.intValue, 0)
        XCTAssertNotNil(try buy(u1, "s1", quantity: 2)["ok"], "the buyer's share came back too")
        XCTAssertEqual(try stock(a), 1)
    }

    /// Past the sale's end an expiring order's units go to the product's stock, not the closed sale.
    func testAnUnpaidOrderOfAnEndedSaleGivesItsUnitToStock() throws {
        let (a, b) = try shop(keys: 2, env: ["GATEWAY_SALES_PAY_S": "2"])
        try createSale(a, saleBody(quantity: 2, startsAt: nowMs - 1_000, endsAt: nowMs + 1_000))
        let (u1, _) = try open(b, "u1")
        XCTAssertNotNil(try buy(u1, "s1")["ok"])
        var left: Int64? = -1
        let deadline = Date().addingTimeInterval(10)
        while left != 2, Date() < deadline {
            left = try stock(a)
            if left != 2 { Thread.sleep(forTimeInterval: 0.1) }
        }
        XCTAssertEqual(left, 2, "the unsold unit at the end, the expired order's after it")
        XCTAssertEqual(try sale(b, "s1")["state"]?.stringValue, "closed")
        XCTAssertEqual(try unitsLeft("s1"), 0, "nothing went back to the ended sale")
    }

    func testAPaidSaleOrderIsDeliveredAndItsEventNamesTheSale() throws {
        let (a, b) = try shop(keys: 3)
        try createSale(a, saleBody(price: 10, quantity: 2, startsAt: nowMs - 1_000, endsAt: nowMs + 600_000, perUser: 2))
        let (u1, _) = try open(b, "u1")
        let order = try XCTUnwrap(try buy(u1, "s1", quantity: 2)["ok"])
        let id = try XCTUnwrap(order["id"]?.stringValue)
        let payment = try pay(a, id, payer: "u1")
        XCTAssertEqual(payment["amount"]?.intValue, 20)
        XCTAssertEqual(try signedNotify(a, notifyBody(payment)).status, 200)
        let got = try u1.command("order.get", [("order", .string(id))])
        XCTAssertEqual(got["ok"]?["status"]?.stringValue, "delivered", got.serialized())
        XCTAssertEqual(got["ok"]?["sale"]?.stringValue, "s1")
        let keys = got["ok"]?["keys"]?.arrayValue?.compactMap(\.stringValue) ?? []
        XCTAssertEqual(keys.count, 2)
        XCTAssertTrue(keys.allSatisfy { $0.hasPrefix("K-") }, "\(keys)")
        var delivered: JSON?
        let deadline = Date().addingTimeInterval(10)
        while delivered == nil, Date() < deadline {
            let events = try a.http("GET", "/api/v1/events").json?["events"]?.arrayValue ?? []
            delivered = events.first { $0["type"]?.stringValue == "order.delivered" && $0["data"]?["order"]?.stringValue == id }
            if delivered == nil { Thread.sleep(forTimeInterval: 0.2) }
        }
        XCTAssertEqual(delivered?["data"]?["sale"]?.stringValue, "s1", delivered?.serialized() ?? "no order.delivered event")
        // Closing the sold-out sale gives nothing back; the third key never left stock.
        XCTAssertEqual(try a.http("POST", "/api/v1/sales/s1/close").status, 200)
        XCTAssertEqual(try stock(b), 1)
    }

    func testClosingReturnsOnlyTheUnsoldUnits() throws {
        let (a, b) = try shop(keys: 5)
        try createSale(a, saleBody(quantity: 4, startsAt: nowMs - 1_000, endsAt: nowMs + 600_000))
        XCTAssertEqual(try stock(a), 1)
        let (u1, _) = try open(b, "u1")
        XCTAssertNotNil(try buy(u1, "s1")["ok"])
        let (watch, _) = try open(a, "w1")
        XCTAssertNotNil(try watch.command("subscribe", [("channel", .string("sale:s1"))])["ok"])
        let closed = try b.http("POST", "/api/v1/sales/s1/close")
        XCTAssertEqual(closed.json?["state"]?.stringValue, "closed", closed.text)
        XCTAssertEqual(closed.json?["sold"]?.intValue, 1)
        XCTAssertEqual(try stock(a), 4, "three unsold units back, the sold one stays with its order")
        let push = try XCTUnwrap(push(watch, "sale.closed"))
        XCTAssertEqual(push["data"]?["reason"]?.stringValue, "closed")
        let after = try buy(u1, "s1")
        XCTAssertEqual(code(after), "gone", after.serialized())
    }
}
