import Foundation
import GatewayAuth
import GatewayClient
import GatewayProtocol

/// Where one connection stands in a `group:` channel: offsets must come one after
/// another, live or replayed by `since` recovery.
struct GroupPosition {
    var start: Int64
    var last: Int64
    var epoch: String
    var received = 0
    var duplicates = 0
    var gaps = 0
}

/// One simulated browser tab: a user with one connection at a time, its personal
/// channel position (for `since`) and its group subscriptions. Under the fleet lock.
final class HPBrowser: @unchecked Sendable {
    enum State { case idle, connecting, online, down, failed, closed }
    let user: String
    let node: Int
    var state = State.idle
    var conn: ClientConnection?
    /// Bumped on every new connection, so events of an old socket are ignored.
    var generation = 0
    var reconnecting = false
    var personalLast: Int64 = 0
    var personalEpoch: String?
    var groups: [String: GroupPosition] = [:]
    var nextID: Int64 = 10
    var pending: [Int64: (JSON) -> Void] = [:]
    /// Run when this connection is up (connect answered, groups resubscribed).
    var onOnline: ((HPBrowser) -> Void)?
    var connectStartedAt = 0.0

    init(user: String, node: Int) {
        self.user = user
        self.node = node
    }
}

/// Counters of the connections, under the fleet lock.
struct FleetCounts {
    var online = 0
    var connected = 0
    var failed = 0
    var reconnects = 0
    var drops = 0
    var personalGaps = 0
    var personalDuplicates = 0
    var notRecovered = 0
    var failures: [String: Int] = [:]
    var dropReasons: [String: Int] = [:]
}

/// Every browser of the run on a few `ClientLoop`s in this process. One lock guards all
/// browser state; push handlers run under it on a loop thread and must not block
/// (HTTP work goes to the job queue).
final class BrowserFleet: @unchecked Sendable {
    let lock = NSLock()
    private let loops: [ClientLoop]
    private let urls: [String]
    private let minter: TokenMinter
    private let tokenExp: Int64
    private var handlers: ClientHandlers!
    let ledger: PushLedger
    let errors: ErrorTally
    private(set) var counts = FleetCounts()
    private var connectLatency = Latency()
    private var replyLatency: [String: Latency] = [:]
    /// Scenario hook for every push (personal and group), lock held.
    var onPush: ((HPBrowser, String, JSON, Int64, Bool) -> Void)?

    init(urls: [String], secret: String, loops: Int, ttl: Int, ledger: PushLedger, errors: ErrorTally) throws {
        _ = ClientLoop.raiseOpenFileLimit()
        self.loops = try (0..<loops).map { _ in try ClientLoop(rxBufferSize: 16384, connectTimeout: 20, timeout: 20, epoll: true) }
        self.urls = urls
        minter = TokenMinter(secret: secret)
        tokenExp = Int64(Date().timeIntervalSince1970) + Int64(ttl)
        self.ledger = ledger
        self.errors = errors
        handlers = ClientHandlers(
            onMessage: { [self] conn, json in message(conn, json) },
            onClose: { [self] conn, code, reason in closed(conn, code, reason) })
    }

    func shutdown() { loops.forEach { $0.shutdown() } }

    var snapshot: FleetCounts { lock.withLock { counts } }
    var connectSummary: LatencySummary { lock.withLock { connectLatency.summary } }
    var replySummaries: [String: LatencySummary] { lock.withLock { replyLatency.mapValues(\.summary) } }

    /// Opens a connection; with `since` the personal channel (and, once connected, every
    /// group it had) resumes after the last offset seen.
    func connect(_ b: HPBrowser, since: Bool, index: Int) {
        lock.withLock { open(b, since: since, index: index) }
    }

    /// Lock held.
    private func open(_ b: HPBrowser, since: Bool, index: Int) {
        b.generation += 1
        b.state = .connecting
        b.reconnecting = since
        b.pending = [:]
        b.connectStartedAt = Clock.now()
        let token = minter.mint(Claims(sub: b.user, exp: tokenExp))
        var frame = #"{"id":1,"op":"connect","token":"\#(token)""#
        if since, let epoch = b.personalEpoch {
            frame += #","since":{"offset":\#(b.personalLast),"epoch":"\#(epoch)"}"#
        }
        frame += "}"
        do {
            let conn = try loops[index % loops.count].connect(url: urls[b.node], userData: Tag(b, b.generation), handlers: handlers)
            b.conn = conn
            conn.send(frame)
        } catch {
            b.state = .failed
            counts.failed += 1
            counts.failures["\(error)", default: 0] += 1
        }
    }

    /// The storm: drop the socket without a close frame, as a lost Wi-Fi would. False
    /// (and left alone) when not online or waiting for a reply.
    func drop(_ b: HPBrowser) -> Bool {
        lock.withLock {
            guard b.state == .online, b.pending.isEmpty else { return false }
            b.generation += 1
            b.state = .down
            counts.online -= 1
            b.conn?.abort()
            b.conn = nil
            return true
        }
    }

    /// A normal close (offline watchers after watching).
    func close(_ b: HPBrowser) {
        lock.withLock {
            if b.state == .online { counts.online -= 1 }
            b.generation += 1
            b.state = .closed
            b.conn?.close()
            b.conn = nil
        }
    }

    /// Sends a command; the handler runs with the lock held when the reply comes. False
    /// when the browser is not connected. Lock held or not (reentrant use is a bug).
    @discardableResult
    func command(_ b: HPBrowser, _ op: String, _ fields: String, name: String? = nil, _ handler: @escaping (JSON) -> Void) -> Bool {
        lock.withLock { send(b, op, fields, name: name, handler) }
    }

    /// Same as `command`, lock already held.
    @discardableResult
    func send(_ b: HPBrowser, _ op: String, _ fields: String, name: String? = nil, _ handler: @escaping (JSON) -> Void) -> Bool {
        guard b.state == .online, let conn = b.conn else { return false }
        let id = b.nextID
        b.nextID += 1
        let started = Clock.unixMicros()
        let label = name ?? op
        b.pending[id] = { [self] reply in
            replyLatency[label, default: Latency()].record(micros: Clock.unixMicros() - started)
            handler(reply)
        }
        return conn.send(#"{"id":\#(id),"op":"\#(op)"\#(fields.isEmpty ? "" : ",")\#(fields)}"#)
    }

    /// Commands sent and not answered yet on this browser's connection.
    func busy(_ b: HPBrowser) -> Bool { !b.pending.isEmpty }

    // MARK: Loop threads

    private final class Tag: Sendable {
        let browser: HPBrowser
        let generation: Int
        init(_ b: HPBrowser, _ g: Int) {
            browser = b
            generation = g
        }
    }

    private func message(_ conn: ClientConnection, _ json: JSON) {
        guard let tag = conn.userData as? Tag else { return }
        let now = Clock.unixMicros()
        lock.withLock {
            let b = tag.browser
            guard tag.generation == b.generation else { return }
            if json["push"] != nil {
                push(b, json, now: now, recovered: false)
                return
            }
            guard let id = json["id"]?.intValue else {
                errors.add("reply without id: \(json.serialized().prefix(100))")
                return
            }
            if id == 1 {
                connected(b, json)
            } else if let handler = b.pending.removeValue(forKey: id) {
                handler(json)
            }
        }
    }

    /// Lock held.
    private func connected(_ b: HPBrowser, _ json: JSON) {
        guard let ok = json["ok"], let offset = ok["offset"]?.intValue, let epoch = ok["epoch"]?.stringValue else {
            let code = json["error"]?["code"]?.stringValue ?? "?"
            counts.failed += 1
            counts.failures["connect: \(code)", default: 0] += 1
            b.state = .failed
            b.conn?.close()
            return
        }
        connectLatency.record(micros: Int64((Clock.now() - b.connectStartedAt) * 1e6))
        // Online first: a replayed push may make this browser send a command (a gift claim).
        b.state = .online
        counts.online += 1
        counts.connected += 1
        if b.reconnecting {
            counts.reconnects += 1
            if ok["recovered"]?.boolValue != true || epoch != b.personalEpoch {
                counts.notRecovered += 1
                errors.add("reconnect: personal channel not recovered")
            }
            for p in ok["publications"]?.arrayValue ?? [] { push(b, p, now: Clock.unixMicros(), recovered: true) }
            if b.personalLast < offset {
                counts.personalGaps += Int(offset - b.personalLast)
                b.personalLast = offset
            }
        } else {
            b.personalLast = offset
        }
        b.personalEpoch = epoch
        // Resubscribe every group after the last offset seen there.
        for (channel, pos) in b.groups {
            send(b, "subscribe", #""channel":"\#(channel)","since":{"offset":\#(pos.last),"epoch":"\#(pos.epoch)"}"#, name: "subscribe since") { [self] reply in
                resubscribed(b, channel, reply)
            }
        }
        b.onOnline?(b)
    }

    /// Lock held.
    private func resubscribed(_ b: HPBrowser, _ channel: String, _ reply: JSON) {
        guard let ok = reply["ok"], ok["recovered"]?.boolValue == true else {
            counts.notRecovered += 1
            errors.add("resubscribe \(channel.prefix(6)): " + (reply["error"]?["code"]?.stringValue ?? "not recovered"))
            return
        }
        for p in ok["publications"]?.arrayValue ?? [] { push(b, p, now: Clock.unixMicros(), recovered: true) }
    }

    /// Subscribes to a group; the position starts at the reply's offset. Lock not held.
    func subscribe(_ b: HPBrowser, _ channel: String, done: @escaping (Bool) -> Void) {
        command(b, "subscribe", #""channel":"\#(channel)""#) { [self] reply in
            guard let ok = reply["ok"], let offset = ok["offset"]?.intValue, let epoch = ok["epoch"]?.stringValue else {
                errors.add("subscribe: " + (reply["error"]?["code"]?.stringValue ?? "?"))
                done(false)
                return
            }
            if b.groups[channel] == nil { b.groups[channel] = GroupPosition(start: offset, last: offset, epoch: epoch) }
            done(true)
        }
    }

    /// Lock held.
    private func push(_ b: HPBrowser, _ json: JSON, now: Int64, recovered: Bool) {
        guard let type = json["push"]?.stringValue, let channel = json["channel"]?.stringValue,
              let offset = json["offset"]?.intValue else {
            errors.add("malformed push")
            return
        }
        if !recovered, let ts = json["ts"]?.intValue { ledger.fanout(micros: now - ts * 1000) }
        if channel.hasPrefix("user:") {
            if offset <= b.personalLast {
                counts.personalDuplicates += 1
                return
            }
            if offset > b.personalLast + 1 { counts.personalGaps += Int(offset - b.personalLast - 1) }
            b.personalLast = offset
            onPush?(b, type, json, now, recovered)
        } else if channel.hasPrefix("group:") {
            guard var pos = b.groups[channel] else { return }
            if offset <= pos.last {
                pos.duplicates += 1
            } else {
                if offset > pos.last + 1 { pos.gaps += Int(offset - pos.last - 1) }
                pos.last = offset
                pos.received += 1
                onPush?(b, type, json, now, recovered)
            }
            b.groups[channel] = pos
        }
    }

    private func closed(_ conn: ClientConnection, _ code: UInt16?, _ reason: String) {
        guard let tag = conn.userData as? Tag else { return }
        lock.withLock {
            let b = tag.browser
            guard tag.generation == b.generation else { return }
            let why = code.map { "close \($0) \(reason)" } ?? "socket ended \(reason)"
            switch b.state {
            case .connecting:
                b.state = .failed
                counts.failed += 1
                counts.failures[String(why.prefix(100)), default: 0] += 1
            case .online:
                // The tick loop brings it back with `since`, as a browser would.
                b.state = .down
                counts.online -= 1
                counts.drops += 1
                counts.dropReasons[String(why.prefix(100)), default: 0] += 1
            default:
                break
            }
            b.conn = nil
        }
    }
}

/// HTTP work (orders, payments, notifies, the PATCH) on a few threads, each with a
/// keep-alive connection to one node. The queue is under `cond`.
final class JobQueue: @unchecked Sendable {
    private let cond = NSCondition()
    private var jobs: [(ShopClient) -> Void] = []
    private var head = 0
    private var running = 0
    private var stopped = false
    private var threads: [Thread] = []

    init(endpoints: [Endpoint], shopKey: String, threads n: Int, timeout: Double = 20) {
        for i in 0..<n {
            let ep = endpoints[i % endpoints.count]
            let t = Thread { [self] in
                let shop = ShopClient(ep, shopKey: shopKey, timeout: timeout)
                var lastUsed = Clock.now()
                while let job = take() {
                    // The node closes a keep-alive socket idle for limits.http_timeout_s (10 s); a POST
                    // on it would fail (only idempotent calls are retried): start afresh after a pause.
                    if Clock.now() - lastUsed > 5 { shop.disconnect() }
                    job(shop)
                    lastUsed = Clock.now()
                    cond.withLock { running -= 1 }
                }
                shop.disconnect()
            }
            threads.append(t)
            t.start()
        }
    }

    func add(_ job: @escaping (ShopClient) -> Void) {
        cond.withLock {
            jobs.append(job)
            cond.signal()
        }
    }

    private func take() -> ((ShopClient) -> Void)? {
        cond.lock()
        defer { cond.unlock() }
        while head == jobs.count && !stopped { cond.wait() }
        guard head < jobs.count else { return nil }
        let job = jobs[head]
        head += 1
        running += 1
        if head > 4096 && head * 2 > jobs.count {
            jobs.removeFirst(head)
            head = 0
        }
        return job
    }

    /// Queued plus running.
    var pending: Int { cond.withLock { jobs.count - head + running } }

    func stop() {
        cond.withLock {
            stopped = true
            cond.broadcast()
        }
    }
}
