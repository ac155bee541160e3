import Foundation
import GatewayProtocol
import XCTest

/// Flash sales on the demo page (contract 4.8, issue 17): the countdown on the server's
/// clock, the buy button opened by `sale.open`, live "N left", the buy's answer. Driven
/// only through the page's DOM contract (ids, `data-*` attributes).
extension BrowserTests {
    /// Waits until the page's sale card shows `state` with `left` units.
    func waitSale(_ page: BrowserPage, state: String, left: Int, timeout: Double = 20) throws {
        try page.waitFor("""
            document.querySelector('#sale').getAttribute('data-state') === \(BrowserPage.literal(state))
              && document.querySelector('#sale-left').getAttribute('data-left') === '\(left)'
            """, "#sale \(state) with \(left) left", timeout: timeout)
    }

    /// Presses the sale's buy button and waits for its answer; returns `data-outcome`.
    func pressBuy(_ page: BrowserPage) throws -> String {
        try page.evaluate("document.querySelector('#sale-result').setAttribute('data-outcome', '')")
        try page.click("#sale-buy")
        let outcome = try page.waitFor("document.querySelector('#sale-result').getAttribute('data-outcome') || null",
                                       "the answer to sale.buy in #sale-result")
        return try XCTUnwrap(outcome.stringValue)
    }

    /// Needs the sales backend (`/dev/sales`, `sale:` pushes, `sale.buy`): fails before issue
    /// 17's merge. Two buyers on two nodes wait on one unit; the button opens with `sale.open` (never
    /// earlier: a watcher records whether `sale.open` had arrived when it did); the first
    /// press gets the order, the second hears "sold out", both show 0 left, and a page
    /// opened afterwards finds the sale and shows it sold out.
    func testTwoBrowsersWaitOnASaleAndOnlyOneGetsTheLastUnit() throws {
        let node = try startNode("n1", dev: true)
        let other = try startNode("n2", dev: true)
        try waitDemoProducts(node)
        let first = try openDemo(node, as: "amy")
        let second = try openDemo(other, as: "ben")

        let created = try node.http("POST", "/dev/sales", body: #"{"quantity":1,"per_user":1,"starts_in_s":10}"#, key: nil)
        XCTAssertEqual(created.status, 201, created.text)
        let id = try XCTUnwrap(created.json?["id"]?.stringValue, created.text)
        XCTAssertEqual(created.json?["state"]?.stringValue, "scheduled", created.text)
        let channel = "sale:\(id)"

        for page in [first, second] {
            try page.setValue("#sale-id", id)
            try page.click("#sale-watch")
            try waitSale(page, state: "scheduled", left: 1)
            XCTAssertEqual(try page.evaluate("document.querySelector('#sale-buy').disabled").boolValue, true, "closed until sale.open")
            try page.waitFor("/^opens in 0:\\d\\d$/.test(document.querySelector('#sale-countdown').textContent)", "the countdown")
            try page.evaluate("""
                (() => { const b = document.querySelector('#sale-buy');
                  window.openedBy = null;
                  new MutationObserver(() => { if (!b.disabled && window.openedBy === null)
                    window.openedBy = !!document.querySelector('#events .event[data-type="sale.open"]') })
                    .observe(b, { attributes: true }); return true })()
                """)
        }

        for page in [first, second] {
            try page.waitFor("!document.querySelector('#sale-buy').disabled", "the buy button opened", timeout: 30)
            try waitSale(page, state: "open", left: 1)
            XCTAssertEqual(try page.evaluate("window.openedBy").boolValue, true, "opened by sale.open, not the local countdown")
            try waitEvent(page, "sale.open", channel: channel, containing: ["\"remaining\":1"])
        }

        XCTAssertEqual(try pressBuy(first), "ordered", (try? first.text("#sale-result")) ?? "")
        let order = try XCTUnwrap(first.waitFor("""
            (() => { const e = document.querySelector('#orders [data-order-id][data-status="pending_payment"]');
              return e ? e.getAttribute('data-order-id') : null })()
            """, "the sale's order in #orders").stringValue)
        XCTAssertTrue(try first.text("#sale-result")?.contains(order) == true)
        for page in [first, second] { try waitSale(page, state: "sold_out", left: 0) }

        XCTAssertEqual(try pressBuy(second), "sold_out", (try? second.text("#sale-result")) ?? "")
        XCTAssertTrue(try second.text("#sale-result")?.contains("Sold out") == true)
        XCTAssertEqual(try second.evaluate("document.querySelectorAll('#orders [data-order-id]').length").intValue, 0)
        for page in [first, second] { try waitSale(page, state: "sold_out", left: 0) }
        try second.evaluate("document.querySelector('#sale-card').scrollIntoView()")
        try second.screenshot(to: Self.artifacts.appendingPathComponent("demo-sale-ben.png"))

        let later = try openDemo(node, as: "amy", page: "amy-later")
        try waitSale(later, state: "sold_out", left: 0)
        XCTAssertEqual(try later.evaluate("document.querySelector('#sale-id').value").stringValue, id, "the latest demo sale found")
    }

    /// Needs the sales backend: fails before issue 17's merge. A second press past `per_user`
    /// is told the limit; the shop's close ends the sale on the page (button shut, no countdown).
    func testSalePageSaysOverTheLimitAndEndsWhenTheShopCloses() throws {
        let node = try startNode("n1", dev: true)
        try waitDemoProducts(node)
        let created = try node.http("POST", "/dev/sales", body: #"{"quantity":2,"per_user":1,"starts_in_s":0}"#, key: nil)
        XCTAssertEqual(created.status, 201, created.text)
        let id = try XCTUnwrap(created.json?["id"]?.stringValue, created.text)
        let page = try openDemo(node, as: "cai")
        try page.waitFor("document.querySelector('#sale-id').value === \(BrowserPage.literal(id))", "the latest demo sale found")
        try waitSale(page, state: "open", left: 2)

        XCTAssertEqual(try pressBuy(page), "ordered", (try? page.text("#sale-result")) ?? "")
        try waitSale(page, state: "open", left: 1)
        XCTAssertEqual(try pressBuy(page), "over_limit", (try? page.text("#sale-result")) ?? "")
        XCTAssertTrue(try page.text("#sale-result")?.contains("at most 1 per buyer") == true)

        let closed = try node.http("POST", "/api/v1/sales/\(id)/close")
        XCTAssertEqual(closed.status, 200, closed.text)
        try waitSale(page, state: "closed", left: 1)
        XCTAssertEqual(try page.evaluate("document.querySelector('#sale-buy').disabled").boolValue, true)
        XCTAssertEqual(try page.text("#sale-status"), "closed by the shop")
        XCTAssertEqual(try page.text("#sale-countdown"), "")
    }

    /// The client's server clock: the connect reply's `server_time` bounds the offset by its
    /// round trip, a later stamp narrows it, and one outside the bounds starts over.
    func testClientTakesTheServersClockFromTheConnectReply() throws {
        let node = try startNode("n1")
        let page = try openClientPage(node, "clock")
        let result = try page.evaluate("""
            (async () => {
              const t = window.t, fakes = [];
              \(Self.fakeSocketClass)
              const until = async (f, what) => { for (let i = 0; i < 300; i++) { const v = f(); if (v) return v; await t.sleep(10) }
                                                 throw new Error('timed out waiting for ' + what) };
              const c = t.client = new t.m.GatewayClient('ws://fake/ws', { token: 'x', WebSocket: Fake });
              const before = Date.now();
              c.connect();
              const sent = await until(() => fakes[0] && fakes[0].sent.find((m) => m.op === 'connect'), 'connect');
              const ahead = 3600000, serverTime = Date.now() + ahead;
              await t.sleep(30);
              fakes[0].frame({ id: sent.id, ok: { user: 'u', channel: 'user:u', offset: 0, epoch: 'e', recovered: true,
                                                  publications: [], server_time: serverTime } });
              const after = Date.now();
              const offset = Math.round(c.serverNow() - Date.now());
              const { lo, hi } = c.clock;
              c.refineClock(serverTime + 1000, serverTime - hi + 1001);       // offset hi - 1: narrows lo
              const narrowed = Object.assign({}, c.clock);
              c.refineClock(serverTime + 5000, serverTime - hi);              // offset hi + 5000: the clocks moved
              return { offset, lo, hi, min: serverTime - after, max: serverTime - before, narrowed, moved: c.clock };
            })()
            """, timeout: 30)
        let offset = try XCTUnwrap(result["offset"]?.intValue, "\(result)")
        let min = try XCTUnwrap(result["min"]?.intValue), max = try XCTUnwrap(result["max"]?.intValue)
        let hi = try XCTUnwrap(result["hi"]?.intValue)
        XCTAssertGreaterThanOrEqual(offset, min - 2, "\(result)")
        XCTAssertLessThanOrEqual(offset, max + 2, "\(result)")
        XCTAssertGreaterThan(offset, 3_000_000, "an hour ahead, not the local clock: \(result)")
        XCTAssertEqual(result["narrowed"]?["lo"]?.intValue, hi - 1, "\(result)")
        XCTAssertEqual(result["narrowed"]?["hi"]?.intValue, hi, "\(result)")
        XCTAssertEqual(result["moved"]?["lo"]?.intValue, hi + 5000, "\(result)")
        XCTAssertEqual(result["moved"]?["hi"]?.intValue, hi + 5000, "\(result)")
    }
}
