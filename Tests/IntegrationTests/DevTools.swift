import Foundation
import GatewayClient
import GatewayProtocol

// A minimal Chrome DevTools Protocol client for browser tests, on the project's own lws
// client: one WebSocket to the browser, flat sessions (`sessionId` on every message) for
// the pages, request/reply by id, and the page's console kept for failure reports.

/// A `Runtime.evaluate` or protocol failure, with the page's own words.
struct DevToolsError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// One WebSocket to a browser's DevTools endpoint. Waiting methods block the caller;
/// never call them on the client loop thread.
final class DevToolsConnection: @unchecked Sendable {   // its state is under `cond`
    private let cond = NSCondition()
    private var opened = false
    private var closedReason: String?
    private var nextID: Int64 = 1
    private var replies: [Int64: JSON] = [:]
    /// Console lines, uncaught exceptions and log entries per session id.
    private var logs: [String: [String]] = [:]
    private var crashed: [String] = []
    private var connection: ClientConnection!

    init(loop: ClientLoop, url: String, timeout: Double = 15) throws {
        let handlers = ClientHandlers(
            onOpen: { [weak self] _ in self?.update { $0.opened = true } },
            onText: { [weak self] _, bytes in self?.receive(bytes) },
            onClose: { [weak self] _, code, reason in
                self?.update { $0.closedReason = "closed (\(code.map(String.init) ?? "no close frame")): \(reason)" }
            })
        connection = try loop.connect(url: url, handlers: handlers)
        let deadline = Date().addingTimeInterval(timeout)
        cond.lock()
        defer { cond.unlock() }
        while !opened && closedReason == nil && cond.wait(until: deadline) {}
        if let closedReason { throw DevToolsError("DevTools socket \(url): \(closedReason)") }
        if !opened { throw DevToolsError("DevTools socket \(url) did not open in \(timeout) s") }
    }

    deinit { connection?.abort() }

    func close() { connection.abort() }

    private func update(_ change: (DevToolsConnection) -> Void) {
        cond.lock()
        change(self)
        cond.broadcast()
        cond.unlock()
    }

    /// Loop thread: replies by id, events into the logs. CDP sends one JSON object a message.
    private func receive(_ bytes: [UInt8]) {
        guard let message = try? JSON.parse(bytes, maxDepth: 256) else { return }
        if let id = message["id"]?.intValue {
            update { $0.replies[id] = message }
            return
        }
        guard let method = message["method"]?.stringValue, let params = message["params"] else { return }
        let session = message["sessionId"]?.stringValue ?? ""
        var line: String?
        switch method {
        case "Runtime.consoleAPICalled":
            let args = (params["args"]?.arrayValue ?? []).map(Self.describe).joined(separator: " ")
            line = "console.\(params["type"]?.stringValue ?? "log"): \(args)"
        case "Runtime.exceptionThrown":
            let details = params["exceptionDetails"]
            let text = details?["exception"]?["description"]?.stringValue ?? details?["text"]?.stringValue ?? "?"
            line = "uncaught: \(text)"
        case "Log.entryAdded":
            let entry = params["entry"]
            line = "log.\(entry?["level"]?.stringValue ?? "?") [\(entry?["source"]?.stringValue ?? "?")]: "
                + "\(entry?["text"]?.stringValue ?? "") \(entry?["url"]?.stringValue ?? "")"
        case "Inspector.targetCrashed":
            update { $0.crashed.append(session) }
            line = "renderer crashed"
        default:
            return
        }
        if let line {
            let stamp = Self.clock.string(from: Date())
            update { $0.logs[session, default: []].append("\(stamp) \(line)") }
        }
    }

    private static let clock: DateFormatter = {
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss.SSS"
        f.timeZone = TimeZone(identifier: "UTC")
        return f
    }()

    /// A console argument as the page would print it (remote objects by description).
    static func describe(_ arg: JSON) -> String {
        if let value = arg["value"] {
            if let s = value.stringValue { return s }
            return value.serialized()
        }
        return arg["description"]?.stringValue ?? arg["unserializableValue"]?.stringValue ?? arg["type"]?.stringValue ?? "?"
    }

    func log(session: String) -> [String] {
        cond.lock()
        defer { cond.unlock() }
        return logs[session] ?? []
    }

    func hasCrashed(session: String) -> Bool {
        cond.lock()
        defer { cond.unlock() }
        return crashed.contains(session)
    }

    /// Sends one command and waits for its reply's `result`; a protocol error throws.
    @discardableResult
    func send(_ method: String, _ params: [(String, JSON)] = [], session: String? = nil,
              timeout: Double = 15) throws -> JSON {
        cond.lock()
        let id = nextID
        nextID += 1
        let gone = closedReason
        cond.unlock()
        if let gone { throw DevToolsError("\(method): DevTools socket \(gone)") }
        var message: [(String, JSON)] = [("id", .int(id)), ("method", .string(method)), ("params", .object(params))]
        if let session { message.append(("sessionId", .string(session))) }
        connection.send(JSON.object(message).serialized())

        let deadline = Date().addingTimeInterval(timeout)
        cond.lock()
        defer { cond.unlock() }
        while replies[id] == nil && closedReason == nil && cond.wait(until: deadline) {}
        guard let reply = replies.removeValue(forKey: id) else {
            throw DevToolsError("\(method): " + (closedReason.map { "DevTools socket \($0)" } ?? "no reply in \(timeout) s"))
        }
        if let error = reply["error"] {
            throw DevToolsError("\(method): \(error["message"]?.stringValue ?? error.serialized())")
        }
        return reply["result"] ?? .object([])
    }
}

/// A headless chromium in its own process group with a throwaway profile; `close()` kills
/// the whole group and removes the profile.
final class Chromium {
    /// Debian's launcher (it execs the real binary, so the pid is the browser's).
    static let executable: String? = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    /// One loop for every DevTools socket: lws reassembles the large frames (screenshots)
    /// up to `maxMessageSize`.
    static let loop = try! ClientLoop(maxMessageSize: 64 << 20)

    let pid: pid_t
    let workDir: URL
    let cdp: DevToolsConnection
    private var pages: [BrowserPage] = []
    private var closed = false

    var profileDir: URL { workDir.appendingPathComponent("profile") }
    var logURL: URL { workDir.appendingPathComponent("chromium.log") }

    init(windowSize: String = "420,900", timeout: Double = 20) throws {
        guard let executable = Self.executable else { throw DevToolsError("chromium is not installed") }
        workDir = FileManager.default.temporaryDirectory.appendingPathComponent("gw-chromium-\(UUID().uuidString.prefix(8))")
        let profile = workDir.appendingPathComponent("profile")
        try FileManager.default.createDirectory(at: profile, withIntermediateDirectories: true)
        let arguments = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
                         "--remote-allow-origins=*", "--user-data-dir=\(profile.path)", "--window-size=\(windowSize)",
                         "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--disable-features=Translate,MediaRouter",
                         "--hide-scrollbars", "--mute-audio"]
            // The nodes of a TLS run (`GATEWAY_TEST_TLS`) show a self-signed certificate.
            + (TestTLS.enabledByEnvironment ? ["--ignore-certificate-errors"] : []) + ["about:blank"]
        pid = try spawnInOwnGroup(arguments, log: workDir.appendingPathComponent("chromium.log").path)

        // Chromium writes the port and the browser target's path once it listens.
        let portFile = profile.appendingPathComponent("DevToolsActivePort")
        var endpoint: String?
        let deadline = Date().addingTimeInterval(timeout)
        while endpoint == nil && Date() < deadline {
            if let text = try? String(contentsOf: portFile, encoding: .utf8) {
                let lines = text.split(separator: "\n").map(String.init)
                if lines.count >= 2, let port = Int(lines[0]) { endpoint = "ws://127.0.0.1:\(port)\(lines[1])" }
            }
            if endpoint == nil {
                var status: Int32 = 0
                if waitpid(pid, &status, WNOHANG) == pid {
                    let log = (try? String(contentsOf: workDir.appendingPathComponent("chromium.log"), encoding: .utf8)) ?? ""
                    try? FileManager.default.removeItem(at: workDir)
                    throw DevToolsError("chromium exited (status \(status)) before listening:\n\(log.suffix(3000))")
                }
                usleep(50_000)
            }
        }
        guard let endpoint else {
            kill(-pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            try? FileManager.default.removeItem(at: workDir)
            throw DevToolsError("chromium did not report its DevTools port in \(timeout) s")
        }
        do {
            cdp = try DevToolsConnection(loop: Self.loop, url: endpoint)
        } catch {
            kill(-pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            try? FileManager.default.removeItem(at: workDir)
            throw error
        }
    }

    deinit { close() }

    /// A page in a fresh browser context (its own cookies and storage: a separate user).
    func newPage(name: String) throws -> BrowserPage {
        let context = try cdp.send("Target.createBrowserContext", [("disposeOnDetach", .bool(true))])
        guard let contextID = context["browserContextId"]?.stringValue else { throw DevToolsError("no browserContextId: \(context)") }
        let target = try cdp.send("Target.createTarget", [("url", .string("about:blank")), ("browserContextId", .string(contextID))])
        guard let targetID = target["targetId"]?.stringValue else { throw DevToolsError("no targetId: \(target)") }
        let attached = try cdp.send("Target.attachToTarget", [("targetId", .string(targetID)), ("flatten", .bool(true))])
        guard let session = attached["sessionId"]?.stringValue else { throw DevToolsError("no sessionId: \(attached)") }
        let page = BrowserPage(name: name, cdp: cdp, session: session, targetID: targetID)
        for domain in ["Runtime.enable", "Page.enable", "Log.enable"] { try cdp.send(domain, session: session) }
        // A phone-sized viewport (headless windows are at least 500 px wide): the page must read well there.
        try cdp.send("Emulation.setDeviceMetricsOverride", [("width", .int(412)), ("height", .int(900)),
                                                            ("deviceScaleFactor", .int(1)), ("mobile", .bool(true))],
                     session: session)
        pages.append(page)
        return page
    }

    /// Kills the browser's process group, reaps the browser and removes its profile.
    func close() {
        guard !closed else { return }
        closed = true
        cdp.close()
        kill(-pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // Helpers left in the group (zygotes, renderers) die with SIGKILL too; wait briefly for them.
        let deadline = Date().addingTimeInterval(5)
        while kill(-pid, 0) == 0 && Date() < deadline { usleep(20_000) }
        try? FileManager.default.removeItem(at: workDir)
    }

    /// The browser's own stderr (crashes, GPU and network errors), last lines.
    func logTail(_ characters: Int = 2000) -> String {
        let text = (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
        // dbus noise fills the log on machines without a session bus.
        return text.split(separator: "\n").filter { !$0.contains("dbus") }.joined(separator: "\n").suffix(characters).description
    }
}

/// posix_spawn with the child as leader of a new process group (so one kill reaches its helpers),
/// stdin from /dev/null, stdout and stderr to `log`.
private func spawnInOwnGroup(_ arguments: [String], log: String) throws -> pid_t {
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP))
    posix_spawnattr_setpgroup(&attr, 0)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, arguments[0], &actions, &attr, argv, environ)
    guard rc == 0 else { throw DevToolsError("posix_spawn \(arguments[0]) failed: \(String(cString: strerror(rc)))") }
    return pid
}

/// One tab, driven through its flat session: evaluate, poll, type, click, screenshot.
final class BrowserPage {
    let name: String
    let cdp: DevToolsConnection
    let session: String
    let targetID: String
    /// Called when a wait fails, so the error carries what the page (and the servers) showed.
    var diagnose: (() -> String)?

    init(name: String, cdp: DevToolsConnection, session: String, targetID: String) {
        self.name = name
        self.cdp = cdp
        self.session = session
        self.targetID = targetID
    }

    /// Console, uncaught exceptions and log entries so far.
    var consoleLines: [String] { cdp.log(session: session) }

    /// A string as a JavaScript literal (JSON strings are JavaScript strings).
    static func literal(_ s: String) -> String { JSON.string(s).serialized() }

    /// Navigates and waits until the document has loaded.
    func navigate(_ url: String, timeout: Double = 20) throws {
        let result = try cdp.send("Page.navigate", [("url", .string(url))], session: session, timeout: timeout)
        if let error = result["errorText"]?.stringValue { throw DevToolsError("[\(name)] navigate \(url): \(error)") }
        try waitFor("document.readyState === 'complete' && location.href === \(Self.literal(url))",
                    "\(url) to load", timeout: timeout)
    }

    /// Evaluates `expression` (awaiting a promise) and returns its value as JSON;
    /// an exception thrown by the page throws here.
    @discardableResult
    func evaluate(_ expression: String, timeout: Double = 15) throws -> JSON {
        let result = try cdp.send("Runtime.evaluate", [
            ("expression", .string(expression)), ("awaitPromise", .bool(true)), ("returnByValue", .bool(true)),
            ("userGesture", .bool(true)), ("timeout", .int(Int64(timeout * 1000))),
        ], session: session, timeout: timeout + 5)
        if let details = result["exceptionDetails"] {
            let text = details["exception"]?["description"]?.stringValue ?? details["text"]?.stringValue ?? details.serialized()
            throw DevToolsError("[\(name)] \(expression.prefix(200)): \(text)")
        }
        return result["result"]?["value"] ?? .null
    }

    /// Polls `condition` (a JavaScript expression) until it is truthy and returns its value.
    /// A timeout throws with the page's diagnostics.
    @discardableResult
    func waitFor(_ condition: String, _ what: String, timeout: Double = 20) throws -> JSON {
        let deadline = Date().addingTimeInterval(timeout)
        var lastError = ""
        repeat {
            do {
                let value = try evaluate("(() => { const v = (\(condition)); return v ? v : false })()", timeout: 10)
                switch value {
                case .null, .bool(false): break
                default: return value
                }
                lastError = ""
            } catch {
                lastError = "\(error)"
                if cdp.hasCrashed(session: session) { break }
            }
            usleep(100_000)
        } while Date() < deadline
        throw DevToolsError("[\(name)] timed out after \(timeout) s waiting for \(what)\n  condition: \(condition)"
            + (lastError.isEmpty ? "" : "\n  last error: \(lastError)") + "\n" + (diagnose?() ?? report()))
    }

    /// Sets an input's value the way typing would announce it (`input` and `change` events).
    func setValue(_ selector: String, _ value: String) throws {
        try evaluate("""
            (() => { const el = document.querySelector(\(Self.literal(selector)));
              if (!el) throw new Error('no element ' + \(Self.literal(selector)));
              el.value = \(Self.literal(value));
              el.dispatchEvent(new Event('input', { bubbles: true }));
              el.dispatchEvent(new Event('change', { bubbles: true }));
              return true })()
            """)
    }

    /// Clicks an element once it exists and is enabled.
    func click(_ selector: String, timeout: Double = 10) throws {
        try waitFor("(() => { const el = document.querySelector(\(Self.literal(selector))); return el && !el.disabled })()",
                    "\(selector) to be clickable", timeout: timeout)
        try evaluate("document.querySelector(\(Self.literal(selector))).click(), true")
    }

    /// Text of the first element matching `selector`, or nil.
    func text(_ selector: String) throws -> String? {
        try evaluate("(() => { const el = document.querySelector(\(Self.literal(selector))); return el ? el.textContent : null })()")
            .stringValue
    }

    /// A PNG of the viewport (or the whole page) written to `url`; returns its size.
    @discardableResult
    func screenshot(to url: URL, fullPage: Bool = true) throws -> Int {
        var params: [(String, JSON)] = [("format", .string("png"))]
        if fullPage { params.append(("captureBeyondViewport", .bool(true))) }
        let result = try cdp.send("Page.captureScreenshot", params, session: session, timeout: 30)
        guard let base64 = result["data"]?.stringValue, let data = Data(base64Encoded: base64) else {
            throw DevToolsError("[\(name)] screenshot without data")
        }
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: url)
        return data.count
    }

    /// What the page shows and said: for failure messages.
    func report(extra: String = "") -> String {
        let snapshot = (try? evaluate("""
            (() => {
              const q = (s) => document.querySelector(s);
              const attr = (s, a) => { const el = q(s); return el ? el.getAttribute(a) : '(missing)' };
              const lines = [];
              lines.push('url: ' + location.href);
              lines.push('#conn-state: ' + attr('#conn-state', 'data-state') + '  #me: ' + (q('#me') ? JSON.stringify(q('#me').textContent) : '(missing)'));
              lines.push('#orders: ' + [...document.querySelectorAll('#orders [data-order-id]')]
                .map(e => e.getAttribute('data-order-id') + '=' + e.getAttribute('data-status')).join(', '));
              lines.push('#chat-log: ' + [...document.querySelectorAll('#chat-log .chat-msg')].slice(-10)
                .map(e => e.getAttribute('data-offset') + ' ' + e.textContent.trim().replace(/\\s+/g, ' ')).join(' | '));
              lines.push('#events (last 25):');
              for (const e of [...document.querySelectorAll('#events .event')].slice(-25))
                lines.push('  ' + e.getAttribute('data-type') + ' ' + e.getAttribute('data-channel') + ' ' + e.textContent.trim().replace(/\\s+/g, ' ').slice(0, 200));
              return lines.join('\\n');
            })()
            """, timeout: 5).stringValue) ?? "(page did not answer)"
        let console = consoleLines.suffix(40).map { "  " + $0 }.joined(separator: "\n")
        return "--- page \(name) ---\n\(snapshot)\nconsole (last 40):\n\(console)\n\(extra)"
    }
}
