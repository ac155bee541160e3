import Foundation
import GatewayProtocol
import XCTest

/// The browser client and contract 4.3: a token refreshed on `token.expiring` keeps the
/// connection past the first token's end, and `channel.removed` forgets the channel.
extension BrowserTests {
    func testClientRefreshesItsTokenAndForgetsARemovedChannel() throws {
        let node = try startNode("n1")
        try createProduct(node, "p-rm")
        _ = try uploadKeys(node, "p-rm", ["RM-1"])
        let order = try buy(node, "rita", "p-rm")
        let page = try openClientPage(node, "live-control")
        let opened = try page.evaluate("""
            (async () => {
              const t = window.t, short = \(BrowserPage.literal(token("rita", ttl: 3))), long = \(BrowserPage.literal(token("rita")));
              let asked = 0;
              const c = t.client = t.watch(new t.m.GatewayClient(t.url, { WebSocket: t.WS,
                getToken: async () => (asked++ === 0 ? short : long) }));
              c.connect();
              await c.subscribe('group:p-rm');
              for (let i = 0; i < 200 && c.token !== long; i++) await t.sleep(25);
              const refreshed = c.token === long;
              await t.sleep(4000); // past the first token's end
              return { refreshed, state: c.state, sockets: t.sockets.length, closed: t.closed.length,
                       warned: t.pushes.filter((p) => p.push === 'token.expiring').length };
            })()
            """, timeout: 30)
        XCTAssertEqual(opened["refreshed"]?.boolValue, true, "\(opened)")
        XCTAssertEqual(opened["warned"]?.intValue, 1, "\(opened)")
        XCTAssertEqual(opened["state"]?.stringValue, "open", "\(opened)")
        XCTAssertEqual(opened["sockets"]?.intValue, 1, "no reconnect: \(opened)")

        XCTAssertEqual(try node.http("POST", "/api/v1/orders/\(order["id"]!.stringValue!)/refund").status, 200)
        let removed = try page.evaluate("""
            (async () => {
              const t = window.t, c = t.client;
              for (let i = 0; i < 200 && !t.pushes.some((p) => p.push === 'channel.removed'); i++) await t.sleep(25);
              const push = t.pushes.find((p) => p.push === 'channel.removed');
              c.ws.close(); // a reconnect must not resubscribe the group
              for (let i = 0; i < 400 && !(c.state === 'open' && t.sockets.length === 2); i++) await t.sleep(25);
              await t.sleep(300);
              return { channel: push && push.data.channel, known: c.channels.has('group:p-rm'), state: c.state,
                       errors: t.errors };
            })()
            """, timeout: 30)
        XCTAssertEqual(removed["channel"]?.stringValue, "group:p-rm", "\(removed)")
        XCTAssertEqual(removed["known"]?.boolValue, false, "\(removed)")
        XCTAssertEqual(removed["state"]?.stringValue, "open", "\(removed)")
        XCTAssertEqual(removed["errors"]?.arrayValue?.count, 0, "\(removed)")
    }

    /// The demo page: a refund leaves the group shown (`channel.removed`), and the shop's
    /// disconnect (4010) says so instead of reconnecting.
    func testDemoPageLeavesARefundedGroupAndShowsTheShopsDisconnect() throws {
        let node = try startNode("n1", dev: true)
        try stockProduct(node, "p-gone")
        let order = try payFromAPI(node, buyer: "rex", product: "p-gone")
        let page = try openDemo(node, as: "rex")
        try joinGroup(page, "p-gone")
        try page.waitFor("/\\b1\\b/.test(document.querySelector('#group-buyers')?.textContent || '')", "#group-buyers to show 1")

        XCTAssertEqual(try node.http("POST", "/api/v1/orders/\(order)/refund").status, 200)
        try page.waitFor("document.querySelector('#group-name').textContent === 'not in a group'", "the group left")
        try page.waitFor("document.querySelector('#chat-result').textContent.includes('refunded')", "the reason shown")

        XCTAssertEqual(try node.http("POST", "/api/v1/users/rex/disconnect", body: #"{"reason":"support"}"#).json?["closed"]?.intValue, 1)
        try page.waitFor("document.querySelector('#notice').textContent.includes('Disconnected by the shop: support')", "the 4010 notice")
        try waitState(page, "closed")
    }
}
