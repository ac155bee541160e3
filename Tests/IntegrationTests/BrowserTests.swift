import Foundation
import GatewayProtocol
import XCTest

/// The demo page (`/demo/`, served by `gateway serve --dev`) in a real headless chromium,
/// against real gateway nodes and Redis. Pages are driven only through the DOM contract
/// the page documents (ids, `data-*` attributes, `window.demo`).
final class BrowserTests: IntegrationCase {
    /// A scripted stand-in for `WebSocket` in the page (pushed into `fakes`): tests drive the
    /// browser client frame by frame and close by close.
    static let fakeSocketClass = """
        class Fake {
          constructor() { this.sent = []; this.readyState = 0; fakes.push(this);
            setTimeout(() => { this.readyState = 1; if (this.onopen) this.onopen() }, 0) }
          send(line) { this.sent.push(JSON.parse(line)) }
          close() { if (this.readyState === 3) return; this.readyState = 3;
            setTimeout(() => { if (this.onclose) this.onclose({ code: 1005, reason: '' }) }, 0) }
          frame(...objects) { this.onmessage({ data: objects.map((o) => JSON.stringify(o)).join('\\n') }) }
          serverClose(code, reason = '') { this.readyState = 3; if (this.onclose) this.onclose({ code, reason }) }
        }
        """

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
        try page.navigate("\(node.baseURL)/demo/")
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

    /// A plain page of `node` (its /healthz) that imports the browser client itself: `window.t`
    /// holds the module (`m`), the gateway URL, a WebSocket class that records every socket the
    /// client opens (`WS`, `sockets`), and `watch(client)`, which records what a client emits.
    func openClientPage(_ node: GatewayNodeProcess, _ name: String) throws -> BrowserPage {
        let page = try newPage(name)
        try page.navigate("\(node.baseURL)/healthz")
        try page.evaluate("""
            (async () => {
              const t = window.t = { m: await import('/client/gateway-client.js'), url: (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws',
                sockets: [], pushes: [], resyncs: [], errors: [], closed: [],
                sleep: (ms) => new Promise((r) => setTimeout(r, ms)) };
              t.WS = class extends WebSocket { constructor(u) { super(u); t.sockets.push(this) } };
              t.watch = (client) => {
                client.addEventListener('push', (e) => t.pushes.push(e.detail));
                client.addEventListener('resync', (e) => t.resyncs.push(e.detail));
                client.addEventListener('error', (e) => t.errors.push(String(e.detail.message)));
                client.addEventListener('closed', (e) => t.closed.push(e.detail.code));
                return client;
              };
              return true })()
            """)
        return page
    }

    /// Closes the client's socket from the page `rounds` times, each time once the client is open
    /// again and `channel` resubscribed, after a random 20–150 ms: every resubscribe races live pushes.
    func dropSocketRepeatedly(_ page: BrowserPage, channel: String, rounds: Int) throws {
        let done = try page.evaluate("""
            (async () => {
              const t = window.t, c = t.client;
              for (let i = 0; i < \(rounds); i++) {
                for (let w = 0; w < 1000; w++) {
                  const entry = c.channels.get(\(BrowserPage.literal(channel)));
                  if (c.state === 'open' && entry && entry.subscribed) break;
                  await t.sleep(10);
                }
                await t.sleep(20 + Math.random() * 130);
                if (c.ws) c.ws.close();
              }
              return \(rounds) })()
            """, timeout: 90)
        XCTAssertEqual(done.intValue, Int64(rounds))
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

    /// The group's history is lost (Redis keys gone): the next message starts a new epoch at
    /// offset 1. The page must show it, not take it for the old epoch's offset 1.
    func testChatShowsMessagesAfterTheGroupHistoryIsRecreated() throws {
        try requireSingleRedis("deletes the group's history keys with a raw DEL on the server port")
        let node = try startNode("n1", dev: true)
        try stockProduct(node, "p-epoch")
        try payFromAPI(node, buyer: "gina", product: "p-epoch")
        let page = try openDemo(node, as: "gina")
        try joinGroup(page, "p-epoch")
        try page.waitFor("document.querySelector('#chat-result').classList.contains('ok')", "the group joined")
        try sendChat(page, "before the reset")
        XCTAssertEqual(try waitChat(page, from: "gina", "before the reset"), 1)

        let reply = try rawExchange(port: redis.port, Array("DEL gw:{group:p-epoch}:meta gw:{group:p-epoch}:log\r\n".utf8),
                                    readUntilClose: false)
        XCTAssertEqual(String(decoding: reply, as: UTF8.self), ":2\r\n")
        try waitState(page, "open")
        try sendChat(page, "after the reset")
        XCTAssertEqual(try waitChat(page, from: "gina", "after the reset"), 1, "offset 1 of the new epoch")
        // The node closes (1001) who it cannot keep in order; the page resumes, hears `resync`
        // and reloads the chat: the old epoch's lines go.
        try page.waitFor("!document.querySelector('#chat-log').textContent.includes('before the reset')",
                         "the old epoch's line gone from #chat-log")
    }

    // MARK: The client module itself

    /// A busy product channel while the connection drops again and again (closed from the page,
    /// and once the node is killed and restarted): the app sees every publication exactly once,
    /// in order, and no resync. The subscribe reply carries the recovered publications and the
    /// server puts the pushes it held during the subscribe right after it, in the same frame:
    /// handling that reply later than the pushes after it loses the recovered ones.
    func testClientKeepsEveryPublicationOfABusyChannelAcrossReconnects() throws {
        // History long enough for the node's restart, and recovery replies large enough for all
        // it missed (history.max_recover, max_reply_bytes): the test is about the client, not caps.
        let env = ["GATEWAY_HISTORY_PRODUCT_SIZE": "100000", "GATEWAY_HISTORY_MAX_RECOVER": "100000",
                   "GATEWAY_HISTORY_MAX_REPLY_BYTES": "16777216"]
        let a = try startNode("a", env: env)
        let b = try startNode("b", env: env)
        try createProduct(b, "p-busy")
        let channel = "product:p-busy"
        let page = try openClientPage(a, "busy")
        try page.evaluate("""
            (async () => {
              const t = window.t;
              t.client = t.watch(new t.m.GatewayClient(t.url, { token: \(BrowserPage.literal(token("walt"))),
                backoff: { base: 50, cap: 400 } }));
              t.client.connect();
              await t.client.subscribe(\(BrowserPage.literal(channel)));
              return true })()
            """)

        let publisher = BackgroundPublisher(node: b, channel: channel)
        defer { _ = publisher.stop() }
        try dropSocketRepeatedly(page, channel: channel, rounds: 15)
        a.signal(SIGKILL)
        XCTAssertNotNil(a.waitExit(), "node a did not die")
        try page.waitFor("window.t.client.state === 'reconnecting'", "the client to notice the dead node")
        usleep(300_000)
        try a.start()
        try page.waitFor("window.t.client.state === 'open'", "the client back on node a", timeout: 40)
        try dropSocketRepeatedly(page, channel: channel, rounds: 10)
        let (published, failures) = publisher.stop()
        XCTAssertEqual(failures, [], "publish calls failed")
        let count = published.count
        XCTAssertGreaterThan(count, 200, "too few publications to mean anything")
        XCTAssertEqual(published, (1...Int64(count)).map { $0 }, "the API's offsets")
        print("published \(count) notes while the client reconnected")

        try page.waitFor("(window.t.client.position(\(BrowserPage.literal(channel))) || {}).offset >= \(count)",
                         "the client's position to reach \(count)", timeout: 30)
        try page.evaluate("window.t.sleep(300).then(() => true)") // anything late would show now
        let offsets = try page.evaluate("window.t.pushes.filter((p) => p.channel === \(BrowserPage.literal(channel))).map((p) => p.offset)")
            .arrayValue?.compactMap(\.intValue) ?? []
        if offsets != (1...Int64(count)).map({ $0 }) {
            var problems: [String] = []
            var expected: Int64 = 1
            for o in offsets where problems.count < 8 {
                if o != expected { problems.append(o < expected ? "duplicate or late \(o) after \(expected - 1)" : "gap \(expected)...\(o - 1)") }
                expected = max(expected, o + 1)
            }
            XCTFail("app saw \(offsets.count) pushes for \(count) publications: \(problems)")
        }
        let resyncs = try page.evaluate("JSON.stringify(window.t.resyncs.slice(0, 3))").stringValue ?? ""
        XCTAssertEqual(resyncs, "[]", "no resync")
    }

    /// close() and connect() while getToken is still running: a token that comes back for an
    /// older attempt opens nothing, so there is only ever one socket (and one login).
    func testCloseAndConnectWhileGetTokenRunsOpenOneSocket() throws {
        let node = try startNode("n1")
        let page = try openClientPage(node, "token-race")
        let result = try page.evaluate("""
            (async () => {
              const t = window.t, token = \(BrowserPage.literal(token("tina")));
              const asked = [];
              const make = () => t.watch(new t.m.GatewayClient(t.url, { WebSocket: t.WS, backoff: { base: 50, cap: 200 },
                getToken: () => new Promise((resolve) => asked.push(resolve)) }));
              // Closed while the token is fetched: nothing opens when it comes.
              const first = make();
              first.connect(); first.close();
              asked[0](token); await t.sleep(300);
              const afterClose = { sockets: t.sockets.length, state: first.state };
              // close() then connect() while the token is fetched: only the newer attempt may open a socket.
              const c = t.client = make();
              c.connect(); c.close(); c.connect();
              asked[1](token); await t.sleep(50); asked[2](token);
              for (let i = 0; i < 200 && c.state !== 'open'; i++) await t.sleep(25);
              await t.sleep(700);
              return { afterClose, asked: asked.length, state: c.state, sockets: t.sockets.length,
                       live: t.sockets.filter((s) => s.readyState === WebSocket.OPEN).length };
            })()
            """, timeout: 30)
        XCTAssertEqual(result["afterClose"]?["sockets"]?.intValue, 0, "\(result)")
        XCTAssertEqual(result["afterClose"]?["state"]?.stringValue, "closed", "\(result)")
        XCTAssertEqual(result["asked"]?.intValue, 3, "each connect() asks for a token: \(result)")
        XCTAssertEqual(result["state"]?.stringValue, "open", "\(result)")
        XCTAssertEqual(result["sockets"]?.intValue, 1, "sockets opened: \(result)")
        XCTAssertEqual(result["live"]?.intValue, 1, "sockets open now: \(result)")
    }

    /// A close after which reconnecting cannot help (4002 bad token, 4011 protocol violations)
    /// rejects every subscribe still waiting, with `closed`, and opens no new socket.
    func testFinalCloseRejectsWaitingSubscribes() throws {
        let node = try startNode("n1")
        try createProduct(node, "p-final")
        try createProduct(node, "p-final-2")
        let page = try openClientPage(node, "final")
        let result = try page.evaluate("""
            (async () => {
              const t = window.t, backoff = { base: 50, cap: 200 };
              const outcome = (p) => Promise.race([p.then(() => 'resolved', (e) => 'rejected:' + e.code),
                                                   t.sleep(4000).then(() => 'pending')]);
              // Bad token: subscribed before connecting, the close 4002 ends it.
              const bad = t.watch(new t.m.GatewayClient(t.url, { token: 'not.a.token', WebSocket: t.WS, backoff }));
              const early = bad.subscribe('product:p-final');
              bad.connect();
              const badSubscribe = await outcome(early);
              await t.sleep(500);
              const badSockets = t.sockets.length;
              // Ten lines that are not JSON and a subscribe behind them, in one frame: the server closes
              // (4011) at the tenth and never answers the subscribe. (One frame, so that no data
              // arrives after the close: that could reset the connection and hide the code.)
              const c = t.watch(new t.m.GatewayClient(t.url, { token: \(BrowserPage.literal(token("vera"))), WebSocket: t.WS, backoff }));
              c.connect();
              await c.subscribe('product:p-final');
              const ws = c.ws, send = ws.send.bind(ws);
              ws.send = (line) => { ws.send = send; send('not json\\n'.repeat(10) + line) };
              const inFlight = c.subscribe('product:p-final-2');
              const violSubscribe = await outcome(inFlight);
              await t.sleep(500);
              return { badSubscribe, badState: bad.state, badSockets, violSubscribe, violState: c.state,
                       closed: t.closed, sockets: t.sockets.length, channels: c.channels.size };
            })()
            """, timeout: 30)
        XCTAssertEqual(result["badSubscribe"]?.stringValue, "rejected:closed", "\(result)")
        XCTAssertEqual(result["badState"]?.stringValue, "closed", "\(result)")
        XCTAssertEqual(result["badSockets"]?.intValue, 1, "no reconnect after 4002: \(result)")
        XCTAssertEqual(result["violSubscribe"]?.stringValue, "rejected:closed", "\(result)")
        XCTAssertEqual(result["violState"]?.stringValue, "closed", "\(result)")
        XCTAssertEqual(result["closed"]?.arrayValue?.compactMap(\.intValue), [4002, 4011], "\(result)")
        XCTAssertEqual(result["sockets"]?.intValue, 2, "no reconnect after 4011: \(result)")
        XCTAssertEqual(result["channels"]?.intValue, 0, "channels forgotten: \(result)")
    }

    /// The client against a scripted server (a fake WebSocket in the page), for what a real
    /// gateway never does on purpose: a push right behind a subscribe reply in one frame, a gap,
    /// a new epoch, a push for a channel already left, a subscribe that is never answered, and
    /// reconnects that do not last (the backoff must keep growing).
    func testClientAgainstAScriptedServer() throws {
        let node = try startNode("n1")
        let page = try openClientPage(node, "scripted")
        let result = try page.evaluate("""
            (async () => {
              const t = window.t, fakes = [];
              \(Self.fakeSocketClass)
              const until = async (f, what) => { for (let i = 0; i < 300; i++) { const v = f(); if (v) return v; await t.sleep(10) }
                                                 throw new Error('timed out waiting for ' + what) };
              const cmd = (fake, op, channel) => until(() => fake.sent.find((m) => m.op === op && (!channel || m.channel === channel)), op + ' ' + (channel || ''));
              const push = (offset, epoch, channel = 'product:p') => ({ push: 'test.note', channel, offset, epoch, ts: 1, data: {} });
              const login = async (fake) => {
                const c = await cmd(fake, 'connect');
                fake.frame({ id: c.id, ok: { user: 'u', channel: 'user:u', offset: 0, epoch: 'e', recovered: true, publications: [] } });
                return c;
              };
              const c = t.client = t.watch(new t.m.GatewayClient('ws://fake/ws', { token: 'x', WebSocket: Fake,
                commandTimeout: 300, backoff: { base: 10, cap: 20 } }));
              c.connect();
              await login(fakes[0]);
              // A subscribe reply and a push held during it, in one frame: no resync, push 4 shown.
              const subscribed = c.subscribe('product:p');
              const s1 = await cmd(fakes[0], 'subscribe', 'product:p');
              fakes[0].frame({ id: s1.id, ok: { channel: 'product:p', offset: 3, epoch: 'E', recovered: false, publications: [] } }, push(4, 'E'));
              await subscribed;
              // A gap (4 -> 7): the client drops the socket and resumes from 4.
              fakes[0].frame(push(7, 'E'));
              await until(() => fakes[1], 'a new socket after the gap');
              const connect2 = await login(fakes[1]);
              const s2 = await cmd(fakes[1], 'subscribe', 'product:p');
              fakes[1].frame({ id: s2.id, ok: { channel: 'product:p', offset: 7, epoch: 'E', recovered: true,
                                                 publications: [push(5, 'E'), push(6, 'E'), push(7, 'E')] } }, push(8, 'E'));
              // A new epoch: resync, and the push is shown.
              fakes[1].frame(push(1, 'F'));
              // Left: its late pushes are not shown and do not bring a position back.
              c.unsubscribe('product:p').catch(() => {});
              fakes[1].frame(push(2, 'F'));
              const afterLeave = c.position('product:p') || null;
              // A subscribe never answered: the socket is dropped and the subscribe sent again.
              const q = c.subscribe('product:q');
              await cmd(fakes[1], 'subscribe', 'product:q');
              await until(() => fakes[2], 'a new socket after the subscribe timed out');
              await login(fakes[2]);
              const s3 = await cmd(fakes[2], 'subscribe', 'product:q');
              fakes[2].frame({ id: s3.id, ok: { channel: 'product:q', offset: 0, epoch: 'Q', recovered: false, publications: [] } });
              const qResult = await q;
              return { pushes: t.pushes.map((p) => p.channel + '#' + p.offset + p.epoch),
                       resyncs: t.resyncs.map((r) => r.channel + ' ' + r.since.offset + r.since.epoch + '->' + r.offset + r.epoch),
                       resumedFrom: s2.since || null, personalSince: connect2.since || null, afterLeave,
                       q: qResult.channel, sockets: fakes.length, attempt: c.attempt, state: c.state };
            })()
            """, timeout: 30)
        XCTAssertEqual(result["pushes"]?.arrayValue?.compactMap(\.stringValue),
                       ["product:p#4E", "product:p#5E", "product:p#6E", "product:p#7E", "product:p#8E", "product:p#1F"], "\(result)")
        XCTAssertEqual(result["resyncs"]?.arrayValue?.compactMap(\.stringValue), ["product:p 8E->1F"], "\(result)")
        XCTAssertEqual(result["resumedFrom"]?["offset"]?.intValue, 4, "\(result)")
        XCTAssertEqual(result["personalSince"]?["epoch"]?.stringValue, "e", "\(result)")
        XCTAssertEqual(result["afterLeave"], .null, "\(result)")
        XCTAssertEqual(result["q"]?.stringValue, "product:q", "\(result)")
        XCTAssertEqual(result["sockets"]?.intValue, 3, "\(result)")
        XCTAssertEqual(result["attempt"]?.intValue, 2, "short-lived connections do not reset the backoff: \(result)")
        XCTAssertEqual(result["state"]?.stringValue, "open", "\(result)")
    }

    /// The issue: 20 publications of 60 KB missed while away. The resuming client used to be
    /// closed with 4008 by its own connect reply and to reconnect with the same `since` forever.
    /// Now it is answered `recovered: false` with the newest page that fits: one `resync`, the
    /// page as pushes, and the connection stays.
    func testClientResumingPastTheReplyCapResyncsOnceAndStaysOpen() throws {
        let a = try startNode("a")
        let b = try startNode("b")
        let page = try openClientPage(a, "big")
        try page.evaluate("""
            (async () => {
              const t = window.t;
              t.connected = 0;
              t.client = t.watch(new t.m.GatewayClient(t.url, { token: \(BrowserPage.literal(token("wren"))),
                backoff: { base: 50, cap: 400 } }));
              t.client.addEventListener('connected', () => t.connected++);
              t.client.connect();
              return true })()
            """)
        try page.waitFor("window.t.client.state === 'open'", "the client open")
        XCTAssertEqual(try publish(b, "user:wren", 1), 1)
        try page.waitFor("(window.t.client.position('user:wren') || {}).offset === 1", "the client at offset 1")

        a.signal(SIGKILL)
        XCTAssertNotNil(a.waitExit(), "node a did not die")
        try page.waitFor("window.t.client.state === 'reconnecting'", "the client to notice the dead node")
        let blob = String(repeating: "x", count: 60_000)
        for n in 2...21 {
            let r = try b.http("POST", "/api/v1/publish", body: #"{"channel":"user:wren","type":"big.note","data":{"n":\#(n),"b":"\#(blob)"}}"#)
            XCTAssertEqual(r.status, 200, r.text)
        }
        try a.start()
        try page.waitFor("window.t.client.state === 'open' && window.t.connected === 2", "the client back on node a", timeout: 40)
        try page.evaluate("window.t.sleep(1500).then(() => true)") // a reconnect loop would show now
        let result = try page.evaluate("""
            (() => { const t = window.t;
              return { state: t.client.state, connected: t.connected,
                       resyncs: t.resyncs.map((r) => r.channel + ' ' + r.since.offset + '->' + r.offset),
                       offsets: t.pushes.filter((p) => p.channel === 'user:wren').map((p) => p.offset),
                       position: (t.client.position('user:wren') || {}).offset } })()
            """)
        XCTAssertEqual(result["state"]?.stringValue, "open", "\(result)")
        XCTAssertEqual(result["connected"]?.intValue, 2, "one reconnect, no loop: \(result)")
        XCTAssertEqual(result["resyncs"]?.arrayValue?.compactMap(\.stringValue), ["user:wren 1->21"], "\(result)")
        XCTAssertEqual(result["position"]?.intValue, 21, "\(result)")
        let offsets = result["offsets"]?.arrayValue?.compactMap(\.intValue) ?? []
        XCTAssertEqual(offsets.first, 1, "\(result)")
        let newest = Array(offsets.dropFirst())
        XCTAssertFalse(newest.isEmpty, "the newest page that fits: \(result)")
        XCTAssertLessThan(newest.count, 20, "\(result)")
        XCTAssertEqual(newest, Array(Int64(22 - newest.count)...21), "the newest page, in order: \(result)")
        XCTAssertEqual(try publish(b, "user:wren", 22), 22)
        try page.waitFor("(window.t.client.position('user:wren') || {}).offset === 22", "a live push after the resync")
    }
}


/// Publishes notes to `channel` through the shop API from `threads` threads of its own, as fast
/// as one connection per call allows, until `stop()`.
private final class BackgroundPublisher: @unchecked Sendable {   // its state is under `lock`
    private let lock = NSLock()
    private var stopped = false
    private var offsets: [Int64] = []
    private var failures: [String] = []
    private let finished = DispatchSemaphore(value: 0)
    private let threads: Int

    init(node: GatewayNodeProcess, channel: String, threads: Int = 3) {
        self.threads = threads
        for _ in 0..<threads {
            Thread.detachNewThread { [self] in
                while !lock.withLock({ stopped }) {
                    let body = #"{"channel":"\#(channel)","type":"test.note","data":{"n":1}}"#
                    do {
                        let r = try node.http("POST", "/api/v1/publish", body: body)
                        if r.status == 200, let offset = r.json?["offset"]?.intValue {
                            lock.withLock { offsets.append(offset) }
                        } else {
                            lock.withLock { failures.append("\(r.status) \(r.text)") }
                        }
                    } catch {
                        lock.withLock { failures.append("\(error)") }
                    }
                }
                finished.signal()
            }
        }
    }

    /// Stops (waiting for the calls under way) and returns the offsets the API answered, sorted,
    /// and any failed calls. Calling it again just returns them.
    func stop() -> ([Int64], [String]) {
        let first = lock.withLock { () -> Bool in defer { stopped = true }; return !stopped }
        if first { for _ in 0..<threads { finished.wait() } }
        return lock.withLock { (offsets.sorted(), failures) }
    }
}
