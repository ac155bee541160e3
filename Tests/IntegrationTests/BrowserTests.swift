import Foundation
import GatewayProtocol
import XCTest

/// The demo page (`/demo/`, served by `gateway serve --dev`) in a real headless chromium,
/// against real gateway nodes and Redis. Pages are driven only through the DOM contract
/// the page documents (ids, `data-*` attributes, `window.demo`).
final class BrowserTests: IntegrationCase {
    private var browser: Chromium?
    private var pages: [BrowserPage] = []
    /// Set once a failure message carried the diagnostics, so tearDown does not print them again.
    private var diagnosed = false

    /// Where screenshots go: `<repo>/test-artifacts/` (ignored by git).
    static let artifacts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("test-artifacts")

    override func setUpWithError() throws {
        guard Chromium.executable != nil else {
            throw XCTSkip("chromium is not installed (.ci/setup installs it)")
        }
        try super.setUpWithError()
    }

    override func tearDown() {
        if let run = testRun, run.totalFailureCount > 0 {
            // Everything a reader needs to see why: the pages, the nodes, the browser.
            if !diagnosed { print(diagnostics()) }
            for page in pages {
                _ = try? page.screenshot(to: Self.artifacts.appendingPathComponent("failed-\(testSlug)-\(page.name).png"))
            }
        }
        pages = []
        browser?.close()
        browser = nil
        super.tearDown()
    }

    private var testSlug: String {
        name.split(separator: " ").last.map { $0.filter { $0.isLetter || $0.isNumber } } ?? "test"
    }

    // MARK: Helpers

    /// A fresh page in its own browser context (separate storage: a separate person).
    func newPage(_ name: String) throws -> BrowserPage {
        if browser == nil { browser = try Chromium() }
        let page = try browser!.newPage(name: name)
        page.diagnose = { [unowned self] in
            self.diagnosed = true
            return self.diagnostics()
        }
        pages.append(page)
        return page
    }

    /// Opens the demo page on `node`, logs in as `user` and waits for the live connection.
    func openDemo(_ node: GatewayNodeProcess, as user: String, page name: String? = nil) throws -> BrowserPage {
        let page = try newPage(name ?? user)
        try page.navigate("http://127.0.0.1:\(node.port)/demo/")
        try page.waitFor("document.querySelector('#login-user') && document.querySelector('#login')", "the login form")
        try page.setValue("#login-user", user)
        try page.click("#login")
        try page.waitFor("document.querySelector('#me') && document.querySelector('#me').textContent.trim() === \(BrowserPage.literal(user))",
                         "#me to show \(user)")
        try waitState(page, "open")
        return page
    }

    func waitState(_ page: BrowserPage, _ state: String, timeout: Double = 20) throws {
        try page.waitFor("document.querySelector('#conn-state') && document.querySelector('#conn-state').getAttribute('data-state') === \(BrowserPage.literal(state))",
                         "#conn-state data-state=\(state)", timeout: timeout)
    }

    /// The order's element once it shows `status`.
    func waitOrder(_ page: BrowserPage, _ id: String, _ status: String, timeout: Double = 20) throws {
        try page.waitFor("document.querySelector('#orders [data-order-id=\(BrowserPage.literal(id))][data-status=\(BrowserPage.literal(status))]')",
                         "order \(id) shown as \(status)", timeout: timeout)
    }

    /// Waits until the page's chat log shows `text` from `from`; returns its offset.
    @discardableResult
    func waitChat(_ page: BrowserPage, from: String, _ text: String, timeout: Double = 20) throws -> Int64 {
        let value = try page.waitFor("""
            (() => { for (const m of document.querySelectorAll('#chat-log .chat-msg[data-offset]')) {
                const f = m.querySelector('.chat-from'), t = m.querySelector('.chat-text');
                if (f && t && f.textContent.includes(\(BrowserPage.literal(from))) && t.textContent.trim() === \(BrowserPage.literal(text)))
                  return m.getAttribute('data-offset') } return null })()
            """, "\(from)'s message \"\(text)\" in #chat-log", timeout: timeout)
        return Int64(value.stringValue ?? "") ?? value.intValue ?? -1
    }

    /// Waits for a push of `type` on `channel` in #events whose text holds every string in `containing`.
    func waitEvent(_ page: BrowserPage, _ type: String, channel: String, containing: [String], timeout: Double = 20) throws {
        let needles = "[" + containing.map(BrowserPage.literal).joined(separator: ",") + "]"
        try page.waitFor("""
            [...document.querySelectorAll('#events .event')].some(e => e.getAttribute('data-type') === \(BrowserPage.literal(type))
              && e.getAttribute('data-channel') === \(BrowserPage.literal(channel)) && \(needles).every(n => e.textContent.includes(n)))
            """, "a \(type) event on \(channel) with \(containing) in #events", timeout: timeout)
    }

    /// Creates an order with the Buy card and returns the id of the new order element.
    func createOrderOnPage(_ page: BrowserPage, product: String, kind: String, to friend: String = "") throws -> String {
        let before = try page.evaluate("[...document.querySelectorAll('#orders [data-order-id]')].map(e => e.getAttribute('data-order-id'))")
        try page.setValue("#buy-product", product)
        try page.setValue("#buy-kind", kind)
        try page.setValue("#buy-to", friend)
        try page.click("#buy")
        let id = try page.waitFor("""
            (() => { const known = new Set(\(before.serialized()));
              const e = [...document.querySelectorAll('#orders [data-order-id]')].find(e => !known.has(e.getAttribute('data-order-id')));
              return e ? e.getAttribute('data-order-id') : null })()
            """, "a new \(kind) order in #orders")
        return try XCTUnwrap(id.stringValue)
    }

    func waitDemoProducts(_ node: GatewayNodeProcess) throws {
        // The page lists the demo products it finds when it loads; a new dev node makes them within a second or so.
        try waitUntil(timeout: 20, "the dev node's demo products") {
            ((try? node.http("GET", "/dev/products", key: nil))?.json?["products"]?.arrayValue?.count ?? 0) > 0
        }
    }

    func joinGroup(_ page: BrowserPage, _ product: String) throws {
        try page.setValue("#group-product", product)
        try page.click("#group-join")
    }

    func sendChat(_ page: BrowserPage, _ text: String) throws {
        try page.setValue("#chat-input", text)
        try page.click("#chat-send")
    }

    /// A product with card keys in stock.
    func stockProduct(_ node: GatewayNodeProcess, _ id: String, keys: Int = 4) throws {
        try createProduct(node, id)
        _ = try uploadKeys(node, id, (0..<keys).map { "\(id.uppercased())-KEY-\($0)" })
    }

    /// An order for `buyer` created, paid and confirmed through the shop API and a signed
    /// notify (as the shop backend and the payment provider would); returns its id.
    @discardableResult
    func payFromAPI(_ node: GatewayNodeProcess, buyer: String, product: String) throws -> String {
        let delivered = try buy(node, buyer, product)
        XCTAssertEqual(delivered["status"]?.stringValue, "delivered", "\(delivered)")
        return try XCTUnwrap(delivered["id"]?.stringValue, "\(delivered)")
    }

    func diagnostics() -> String {
        var out = "\n===== browser test diagnostics (\(name)) =====\n"
        for page in pages { out += page.report() + "\n" }
        for node in nodes {
            let tail = node.log().split(separator: "\n").suffix(30).joined(separator: "\n")
            out += "--- node \(node.name) (port \(node.port), \(node.process?.isRunning == true ? "running" : "down")) log tail ---\n\(tail)\n"
        }
        if let browser { out += "--- chromium log tail ---\n\(browser.logTail())\n" }
        return out + "===== end diagnostics =====\n"
    }

    // MARK: Tests

    /// The DevTools client itself, on a page of its own: evaluate, wait, type, click, screenshot.
    func testDevToolsClientDrivesAPage() throws {
        let page = try newPage("probe")
        let html = "<input id=i><button id=b onclick=\"document.title='clicked:'+i.value;console.log('hi from page')\">go</button>"
        try page.navigate("data:text/html," + html.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)
        XCTAssertEqual(try page.evaluate("1 + 2").intValue, 3)
        XCTAssertEqual(try page.evaluate("new Promise(r => setTimeout(() => r('later'), 50))").stringValue, "later")
        XCTAssertThrowsError(try page.evaluate("(() => { throw new Error('boom') })()")) {
            XCTAssertTrue("\($0)".contains("boom"), "\($0)")
        }
        try page.setValue("#i", "typed")
        try page.click("#b")
        try page.waitFor("document.title === 'clicked:typed'", "the click handler")
        try waitUntil(timeout: 5, "the console line") { page.consoleLines.contains { $0.contains("hi from page") } }
        let shot = Self.artifacts.appendingPathComponent("devtools-probe.png")
        XCTAssertGreaterThan(try page.screenshot(to: shot), 100)
        XCTAssertThrowsError(try page.waitFor("false", "nothing", timeout: 0.3))
    }

    /// Two people in one product group, each on their own page, see each other's messages.
    func testTwoBrowsersChatInOneGroup() throws {
        let node = try startNode("n1", dev: true)
        try stockProduct(node, "p-chat")
        try payFromAPI(node, buyer: "alice", product: "p-chat")
        try payFromAPI(node, buyer: "bob", product: "p-chat")

        let alice = try openDemo(node, as: "alice")
        let bob = try openDemo(node, as: "bob")
        try joinGroup(alice, "p-chat")
        try joinGroup(bob, "p-chat")
        // Both are buyers: once joined each page knows the group's buyer count.
        for page in [alice, bob] {
            try page.waitFor("/\\b2\\b/.test(document.querySelector('#group-buyers')?.textContent || '')", "#group-buyers to show 2")
        }

        try sendChat(alice, "hello from alice")
        let first = try waitChat(bob, from: "alice", "hello from alice")
        XCTAssertEqual(try waitChat(alice, from: "alice", "hello from alice"), first, "one offset on both pages")
        try sendChat(bob, "hi alice, bob here")
        let second = try waitChat(alice, from: "bob", "hi alice, bob here")
        try waitChat(bob, from: "bob", "hi alice, bob here")
        XCTAssertGreaterThan(second, first)
        // Each message once, on each page (no duplicates from history and push).
        for page in [alice, bob] {
            let offsets = try page.evaluate("[...document.querySelectorAll('#chat-log .chat-msg[data-offset]')].map(m => m.getAttribute('data-offset'))")
            let list = offsets.arrayValue?.compactMap(\.stringValue) ?? []
            XCTAssertEqual(list.count, Set(list).count, "[\(page.name)] duplicate chat offsets: \(list)")
        }
        try alice.screenshot(to: Self.artifacts.appendingPathComponent("demo-chat-alice.png"))
    }

    /// An order paid through the shop API and the provider's notify shows as delivered on the
    /// page of its buyer, live (the page is not reloaded).
    func testOrderPaidFromAPIShowsDeliveredLive() throws {
        let node = try startNode("n1", dev: true)
        try stockProduct(node, "p-live")
        let page = try openDemo(node, as: "carol")
        try page.evaluate("window.__sameDocument = 'yes'")

        let created = try order(node, #"{"buyer":"carol","product":"p-live"}"#)
        let id = try XCTUnwrap(created["id"]?.stringValue, "\(created)")
        try waitOrder(page, id, "pending_payment")
        let payment = try pay(node, id, payer: "carol")
        XCTAssertEqual(try signedNotify(node, notifyBody(payment)).status, 200)
        try waitOrder(page, id, "delivered")
        XCTAssertEqual(try page.evaluate("window.__sameDocument").stringValue, "yes", "the page was reloaded")
        try waitEvent(page, "order.status", channel: "user:carol", containing: [id, #""status":"delivered""#])
    }

    /// The page's node dies; while it is down the user's order is paid through another node;
    /// when the node is back the page reconnects by itself and shows the push it missed.
    func testPageReconnectsAndShowsMissedPushes() throws {
        let a = try startNode("a", dev: true)
        let b = try startNode("b", dev: true)
        try stockProduct(a, "p-resume")
        let page = try openDemo(a, as: "dave")
        // Pushes before the outage (sent through node b), so the page holds a position on its channel.
        let early = try payFromAPI(b, buyer: "dave", product: "p-resume")
        try waitOrder(page, early, "delivered")

        let created = try order(b, #"{"buyer":"dave","product":"p-resume"}"#)
        let missed = try XCTUnwrap(created["id"]?.stringValue, "\(created)")
        try waitOrder(page, missed, "pending_payment")
        let eventsBefore = try page.evaluate("document.querySelectorAll('#events .event[data-type=\"order.status\"]').length").intValue ?? 0

        a.signal(SIGKILL)
        XCTAssertNotNil(a.waitExit(), "node a did not die")
        try waitState(page, "reconnecting")

        // Paid while the page has no connection: the pushes are only in Redis.
        let payment = try pay(b, missed, payer: "dave")
        XCTAssertEqual(try signedNotify(b, notifyBody(payment)).status, 200)
        XCTAssertEqual(try getOrder(b, missed)["status"]?.stringValue, "delivered")
        XCTAssertEqual(try page.evaluate("document.querySelector('#orders [data-order-id=\(BrowserPage.literal(missed))]').getAttribute('data-status')").stringValue,
                       "pending_payment", "the page cannot know yet")

        try a.start()   // same port
        try waitState(page, "open", timeout: 40)
        try waitOrder(page, missed, "delivered")
        // The page's history reload would also show the order; only the resumed pushes (connect
        // with `since`, `recovered: true`) reach #events.
        try waitEvent(page, "order.status", channel: "user:dave", containing: [missed, #""status":"delivered""#])
        let eventsAfter = try page.evaluate("document.querySelectorAll('#events .event[data-type=\"order.status\"]').length").intValue ?? 0
        XCTAssertGreaterThan(eventsAfter, eventsBefore, "the missed order.status pushes in #events")
        // Resumed, not reloaded: each order once.
        let ids = try page.evaluate("[...document.querySelectorAll('#orders [data-order-id]')].map(e => e.getAttribute('data-order-id'))")
            .arrayValue?.compactMap(\.stringValue) ?? []
        XCTAssertEqual(ids.count, Set(ids).count, "duplicate orders: \(ids)")
    }

    /// Every card of the page, driven through the page alone by two people: buy and pay, a gift
    /// claimed by the friend, a friend paying a request, and a price drop reaching a watcher.
    func testBuyGiftFriendPayAndPriceDropThroughThePage() throws {
        let node = try startNode("n1", dev: true)
        try waitDemoProducts(node)
        let alice = try openDemo(node, as: "alice")
        let bob = try openDemo(node, as: "bob")
        for page in [alice, bob] {
            try page.waitFor("document.querySelectorAll('#buy-product option').length > 0", "the demo products in #buy-product")
        }
        let productID = "demo-game-key"

        // Buy for me, pay with the order's sandbox button.
        let mine = try createOrderOnPage(alice, product: productID, kind: "normal")
        try alice.click("button[data-pay=\(BrowserPage.literal(mine))]")
        try waitOrder(alice, mine, "delivered")
        try alice.waitFor("document.querySelector('#orders [data-order-id=\(BrowserPage.literal(mine))] .keys')", "the card key of \(mine)")

        // A gift for bob: alice pays, bob's page gets the code and claims it.
        let gift = try createOrderOnPage(alice, product: productID, kind: "gift", to: "bob")
        try alice.click("button[data-pay=\(BrowserPage.literal(gift))]")
        try waitOrder(alice, gift, "paid")
        try bob.waitFor("/^g-/.test(document.querySelector('#gift-code').value)", "the gift code filled in on bob's page")
        try bob.click("#gift-claim")
        try bob.waitFor("document.querySelector('#gift-result').textContent.includes('Claimed')", "the claim result")
        try waitOrder(bob, gift, "delivered")
        try waitOrder(alice, gift, "delivered")

        // Alice asks bob to pay: bob's page gets the request and pays it.
        let ask = try createOrderOnPage(alice, product: productID, kind: "friendpay", to: "bob")
        try bob.waitFor("/^f-/.test(document.querySelector('#fp-code').value)", "the pay code filled in on bob's page")
        try bob.click("#fp-view")
        try bob.waitFor("document.querySelector('#fp-result').textContent.includes('alice')", "the pay request shown")
        try bob.click("#fp-pay")
        try bob.waitFor("document.querySelector('#fp-result').textContent.startsWith('Paid')", "bob's payment result")
        try waitOrder(alice, ask, "delivered")

        // Bob watches a product; alice (playing the shop) lowers its price; bob's page shows the alert.
        try bob.setValue("#watch-product", productID)
        try bob.setValue("#watch-below", "")
        try bob.click("#watch")
        try bob.waitFor("document.querySelector('#watch-result').textContent.startsWith('Watching')", "the watch confirmed")
        let price = try XCTUnwrap(try product(node, productID)["price"]?.intValue)
        try alice.setValue("#price-product", productID)
        try alice.setValue("#price-value", String(price - 100))
        try alice.click("#price-set")
        try bob.waitFor("document.querySelector('#alerts > .alert[data-product=\(BrowserPage.literal(productID))]')", "a price-drop alert on bob's page")
        try bob.screenshot(to: Self.artifacts.appendingPathComponent("demo-flows-bob.png"))
    }

    /// A picture of the page as a person sees it, logged in with an order and a chat line,
    /// kept in test-artifacts/ (never in the repository).
    func testScreenshotOfTheDemoPage() throws {
        let node = try startNode("n1", dev: true)
        try stockProduct(node, "p-shot")
        try payFromAPI(node, buyer: "erin", product: "p-shot")
        try waitDemoProducts(node)
        let page = try openDemo(node, as: "erin")
        try page.waitFor("document.querySelectorAll('#buy-product option').length > 0", "the demo products in #buy-product")
        let id = try payFromAPI(node, buyer: "erin", product: "p-shot")
        try waitOrder(page, id, "delivered")
        try joinGroup(page, "p-shot")
        try sendChat(page, "Hello from the screenshot test")
        try waitChat(page, from: "erin", "Hello from the screenshot test")

        let file = Self.artifacts.appendingPathComponent("demo-page.png")
        try? FileManager.default.removeItem(at: file)
        try page.screenshot(to: file)
        let png = try Data(contentsOf: file)
        XCTAssertGreaterThan(png.count, 1000)
        XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "PNG signature")
        print("demo page screenshot: \(file.path) (\(png.count) bytes)")
    }
}
