import Foundation
import GatewayProtocol
import XCTest

/// The operators' page (`/admin/`, served without `--dev`) in headless chromium against a
/// real node: it refuses a wrong key, shows a live connection count, and its chart copes
/// with an empty series as with a full one.
extension BrowserTests {
    /// The admin page of `node`, loaded, with no key yet.
    func openAdmin(_ node: GatewayNodeProcess) throws -> BrowserPage {
        let page = try newPage("admin")
        try page.navigate("\(node.baseURL)/admin/")
        try page.waitFor("document.querySelector('#key-form') && window.adminPage", "the admin page's key form")
        return page
    }

    func adminState(_ page: BrowserPage, _ state: String, timeout: Double = 20) throws {
        try page.waitFor("document.querySelector('#state').dataset.state === \(BrowserPage.literal(state))",
                         "#state data-state=\(state)", timeout: timeout)
    }

    func typeKey(_ page: BrowserPage, _ key: String) throws {
        try page.setValue("#key", key)
        try page.click("#key-submit")
    }

    /// The connection count the page shows for `node` (nil while it has no row).
    func shownConnections(_ page: BrowserPage, _ node: String) throws -> Int? {
        let text = try page.evaluate("""
            (() => { const td = document.querySelector('#nodes tr[data-node=\(BrowserPage.literal(node))] td[data-field=connections]');
                     return td ? td.textContent : null })()
            """).stringValue
        return text.flatMap { Int($0) }
    }

    func testAdminPageRefusesWrongKeysAndShowsALiveConnectionCount() throws {
        let node = try startNode("n1")
        let page = try openAdmin(node)

        try typeKey(page, "not-the-shop-key")
        try adminState(page, "refused")
        XCTAssertTrue(try page.text("#refusal")?.contains("not the shop key") == true, page.report())
        XCTAssertEqual(try page.evaluate("document.querySelector('#board').hidden"), .bool(true), "nothing shown")
        try typeKey(page, TestSecrets.merchantKey)
        try page.waitFor("document.querySelector('#refusal').textContent.includes('merchant key')", "the merchant key refused")

        try typeKey(page, TestSecrets.shopKey)
        try adminState(page, "live")
        try page.waitFor("document.querySelector('#nodes tr[data-node=\"n1\"]')", "node n1 in the table")
        let before = try XCTUnwrap(try shownConnections(page, "n1"))
        let (session, _) = try open(node, "u1")
        try page.waitFor("""
            (() => { const td = document.querySelector('#nodes tr[data-node="n1"] td[data-field=connections]');
                     return td && Number(td.textContent) === \(before + 1) })()
            """, "n1's connections to go from \(before) to \(before + 1)")
        session.close()
        try page.waitFor("""
            (() => { const td = document.querySelector('#nodes tr[data-node="n1"] td[data-field=connections]');
                     return td && Number(td.textContent) === \(before) })()
            """, "n1's connections back to \(before)")

        // The key is in no URL, storage, cookie or element: only in the module's memory.
        let traces = try page.evaluate("""
            (() => { const key = \(BrowserPage.literal(TestSecrets.shopKey));
              return [location.href, JSON.stringify(localStorage), JSON.stringify(sessionStorage), document.cookie,
                      document.documentElement.outerHTML, document.querySelector('#key').value,
                      ...performance.getEntriesByType('resource').map((e) => e.name)].filter((s) => s.includes(key)).length })()
            """)
        XCTAssertEqual(traces.intValue, 0, page.report())
        _ = try? page.screenshot(to: Self.artifacts.appendingPathComponent("admin-page.png"))

        try page.click("#sign-out")
        try adminState(page, "signed-out")
        XCTAssertEqual(try page.evaluate("document.querySelector('#board').hidden"), .bool(true))
    }

    func testAdminPageKeepsPollingAfterAnAnswerItCannotRead() throws {
        let node = try startNode("n1")
        let page = try openAdmin(node)
        try typeKey(page, TestSecrets.shopKey)
        try adminState(page, "live")
        // The next poll gets a proxy's HTML page with status 200, then the gateway again. The
        // states the badge goes through are recorded, so a short-lived one is not missed.
        _ = try page.evaluate("""
            (() => { const badge = document.querySelector('#state'); window.seenStates = [];
              new MutationObserver(() => window.seenStates.push(badge.dataset.state + ':' + badge.textContent))
                .observe(badge, { attributes: true, childList: true, characterData: true, subtree: true });
              const real = window.fetch;
              window.fetch = (...args) => { window.fetch = real;
                return Promise.resolve(new Response('<html><body>502 from a proxy</body></html>',
                                                    { status: 200, headers: { 'Content-Type': 'text/html' } })); };
              return true })()
            """)
        try page.waitFor("window.seenStates.includes('error:unreadable answer')", "the unreadable answer shown as an error")
        try page.waitFor("""
            (() => { const i = window.seenStates.indexOf('error:unreadable answer');
                     return window.seenStates.slice(i + 1).includes('live:live') })()
            """, "the page live again after it")
        try adminState(page, "live")
    }

    func testAdminChartDrawsOneLinePerNodeAndSaysSoWhenThereIsNoData() throws {
        let node = try startNode("n1")
        let page = try openAdmin(node)
        // Drawn straight from an overview (no key, no polling), the way a poll would.
        let result = try page.evaluate("""
            (() => {
              const now = Date.now(), at = (s) => now - s * 1000;
              const overview = (series) => ({ now_ms: now, nodes: [], channels: [], groups: [], refund_required: [],
                                              webhooks: { backlog: 0, oldest_seconds: 0 }, series });
              const lines = (id) => [...document.querySelectorAll(id + ' polyline')].map((l) => l.getAttribute('data-node'));
              window.adminPage.render(overview([{ node: 'n1', live: true, points: [] }]));
              const empty = { pushes: document.querySelector('#chart-pushes').dataset.empty, lines: lines('#chart-pushes'),
                              text: document.querySelector('#chart-p99').textContent };
              window.adminPage.render(overview([
                { node: 'n1', live: true, points: [{ at_ms: at(4), pushes_per_s: 10, p99_ms: 2 }, { at_ms: at(2), pushes_per_s: 30, p99_ms: 4 }] },
                { node: 'n2', live: true, points: [{ at_ms: at(2), pushes_per_s: 5, p99_ms: 1 }] },
                { node: 'n3', live: false, points: [{ at_ms: at(3600), pushes_per_s: 99, p99_ms: 9 }] }]));
              const full = { pushes: document.querySelector('#chart-pushes').dataset.empty, lines: lines('#chart-pushes'),
                             p99: lines('#chart-p99'), legend: document.querySelector('#legend').textContent,
                             top: window.adminPage.chartLines([{ node: 'n1', points: [{ at_ms: now, pushes_per_s: 30 }] }], 'pushes_per_s',
                                                              { nowMs: now, spanMs: 300000, width: 600, height: 170 }).top };
              document.querySelector('#board').hidden = false;
              return { empty, full };
            })()
            """)
        _ = try? page.screenshot(to: Self.artifacts.appendingPathComponent("admin-chart.png"))
        XCTAssertEqual(result["empty"]?["pushes"]?.stringValue, "true", "\(result)")
        XCTAssertEqual(result["empty"]?["lines"]?.arrayValue?.count, 0, "\(result)")
        XCTAssertTrue(result["empty"]?["text"]?.stringValue?.contains("no data yet") == true, "\(result)")
        XCTAssertEqual(result["full"]?["pushes"]?.stringValue, "false", "\(result)")
        XCTAssertEqual(result["full"]?["lines"]?.arrayValue?.compactMap(\.stringValue), ["n1", "n2"], "n3's only point is an hour old: \(result)")
        XCTAssertEqual(result["full"]?["p99"]?.arrayValue?.count, 2, "\(result)")
        XCTAssertTrue(result["full"]?["legend"]?.stringValue?.contains("n3 (silent)") == true, "\(result)")
        XCTAssertEqual(result["full"]?["top"]?.intValue, 50, "a round top above 30: \(result)")
    }

    func testAdminShowsTheWebhooksGivenUpAndBeingRetried() throws {
        let node = try startNode("n1")
        let page = try openAdmin(node)
        // Drawn straight from an overview, the way a poll would.
        let result = try page.evaluate("""
            (() => {
              const now = Date.now();
              const overview = (webhooks) => ({ now_ms: now, nodes: [], channels: [], groups: [], refund_required: [], webhooks, series: [] });
              const rows = () => [...document.querySelectorAll('#webhook-retrying li[data-key]')].map((li) => li.textContent);
              window.adminPage.render(overview({ backlog: 7, oldest_seconds: 95, dead: 2, retrying: [
                { key: 'o-1', event: '1700-0', type: 'order.paid', attempts: 5, next_attempt_ms: now + 30000, in_flight: false },
                { key: 'o-2', event: '1701-0', type: 'payment.refund_required', attempts: 2, next_attempt_ms: now + 30000, in_flight: true }] }));
              const full = { dead: document.querySelector('#webhook-dead').textContent, rows: rows(),
                             backlog: document.querySelector('#webhook-backlog').textContent };
              window.adminPage.render(overview({ backlog: 0, oldest_seconds: 0 }));
              const older = { dead: document.querySelector('#webhook-dead').textContent, rows: rows(),
                              empty: document.querySelector('#webhook-retrying').textContent };
              return { full, older };
            })()
            """)
        XCTAssertEqual(result["full"]?["dead"]?.stringValue, "2", "\(result)")
        XCTAssertEqual(result["full"]?["backlog"]?.stringValue, "7", "\(result)")
        XCTAssertEqual(result["full"]?["rows"], .array([.string("o-1 · order.paid · 5 attempts · next in 30 s"),
                                                         .string("o-2 · payment.refund_required · 2 attempts · in flight")]), "\(result)")
        XCTAssertEqual(result["older"]?["dead"]?.stringValue, "0", "an answer without the fields: \(result)")
        XCTAssertEqual(result["older"]?["rows"]?.arrayValue?.count, 0, "\(result)")
        XCTAssertEqual(result["older"]?["empty"]?.stringValue, "none", "\(result)")
    }
}
