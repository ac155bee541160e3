import Foundation
import GatewayClient
import GatewayCrypto
import GatewayProtocol
import GatewayRedis
import GatewayTestSupport
import XCTest

/// A master of the Redis Cluster dies (SIGKILL) under a stream of publications and concurrent
/// paid orders, on 2 nodes with `redis.durability replicas:1`; its replica takes over.
/// Nothing acknowledged may be lost or doubled: every subscriber gets every acknowledged
/// publication once and in order (a publish answered 503 is retried with the same data, and
/// the publication's own number in `data` shows any double), every order answered paid holds
/// its keys and no key is on two orders, and both nodes are ready again within a bound.
/// The victim also holds the event log's slot (`{events}`) and the nodes send webhooks: each
/// paid order's `order.paid` and `order.delivered` are logged exactly once, and every logged
/// event reaches the receiver (at least once), each order's in log order.
///
/// Runs in cluster mode only (`GATEWAY_TEST_REDIS_CLUSTER`, see `.ci/cluster`), on a cluster of
/// its own so the kill leaves the shared one alone.
final class ClusterFailoverTests: IntegrationCase {
    private var cluster: RedisClusterLauncher?

    override func setUpWithError() throws {
        guard TestRedis.isCluster else {
            throw XCTSkip("cluster mode only: GATEWAY_TEST_REDIS_CLUSTER=start (or a redis+cluster:// URL), as .ci/cluster runs it")
        }
    }

    override func tearDown() {
        super.tearDown()
        cluster?.stop()
        cluster = nil
    }

    private static let rounds = 60          // publications per channel (product history keeps 100)
    private static let ordersPerWorker = 12
    private static let orderWorkers = 3
    /// How long a retried call may keep meeting 503 / a refused connection after the kill.
    private static let retryWindow = 30.0
    /// Both nodes answer /readyz 200 again within this many seconds of the kill.
    private static let readyBound = 30.0

    func testMasterKilledMidStreamLosesAndDoublesNothing() throws {
        let cluster = try RedisClusterLauncher(dir: TestRedis.clusterFolder("failover"))
        self.cluster = cluster
        let receiver = try WebhookReceiver(secret: "whsec-failover")
        defer { receiver.stop() }
        let env = ["GATEWAY_REDIS_DURABILITY": "replicas:1", "GATEWAY_WEBHOOKS_URL": receiver.url,
                   "GATEWAY_WEBHOOKS_SECRET": "whsec-failover", "GATEWAY_WEBHOOKS_MAX_BACKOFF_S": "2"]
        let a = try GatewayNodeProcess(name: "n1", redisPort: 0, env: env, redisURL: cluster.url)
        nodes.append(a)
        let b = try GatewayNodeProcess(name: "n2", redisPort: 0, env: env, redisURL: cluster.url)
        nodes.append(b)

        // Two product channels on every master; products double as the orders' products.
        let masters = try cluster.masters().map(\.port)
        var products: [String] = []
        var perMaster: [Int: Int] = [:]
        for i in 0..<1000 where products.count < 2 * masters.count {
            let id = "f\(i)"
            let owner = try cluster.masterFor(key: "{product:\(id)}")
            if perMaster[owner, default: 0] < 2 {
                perMaster[owner, default: 0] += 1
                products.append(id)
            }
        }
        // The first product (whose master is killed) shares its master with the event log.
        let eventsMaster = try cluster.masterFor(key: "{events}")
        if let i = try products.firstIndex(where: { try cluster.masterFor(key: "{product:\($0)}") == eventsMaster }) {
            products.swapAt(0, i)
        }
        let productIDs = products
        let channels = products.map { "product:\($0)" }
        let victimSlot = HashSlot.of("{\(channels[0])}")
        let victim = try cluster.masterFor(slot: victimSlot)
        let keysPerProduct = Self.orderWorkers * Self.ordersPerWorker
        for id in products {
            try createProduct(a, id)
            _ = try uploadKeys(a, id, (0..<keysPerProduct).map { "K-\(id)-\($0)" })
        }

        // Subscribers: two on each node, every channel each.
        let subscribers = try [a, b, a, b].enumerated().map { i, node in
            try Subscriber(loop: Self.loop, url: node.wsURL, user: "s\(i)", channels: channels)
        }
        defer { subscribers.forEach { $0.stop() } }

        // The publisher: round by round over every channel, alternating nodes.
        let acked = Locked<[String: [Int: Int64]]>([:])   // channel -> publication number -> offset
        let publishProblems = Locked<[String]>([])
        let rounds = Locked(0)
        let publisher = Thread {
            for r in 1...Self.rounds {
                for (c, channel) in channels.enumerated() {
                    let node = (r + c) % 2 == 0 ? a : b
                    let body = #"{"channel":"\#(channel)","type":"test.seq","data":{"n":\#(r)}}"#
                    switch Self.retrying({ try node.http("POST", "/api/v1/publish", body: body) }) {
                    case .success(let reply):
                        if let offset = reply.json?["offset"]?.intValue {
                            acked.mutate { $0[channel, default: [:]][r] = offset }
                        } else {
                            publishProblems.mutate { $0.append("\(channel) #\(r): \(reply.status) \(reply.text)") }
                        }
                    case .failure(let why):
                        publishProblems.mutate { $0.append("\(channel) #\(r): \(why)") }
                    }
                }
                rounds.mutate { $0 = r }
                usleep(20_000)
            }
        }

        // Buyers: concurrent create + pay + signed notify, each step retried on 503 (safely:
        // the order by its idempotency key, the notify by its payment).
        let paid = Locked<[String]>([])
        let orderProblems = Locked<[String]>([])
        let workersDone = DispatchGroup()
        // The buyers only call HTTP helpers, which read the nodes and the secrets.
        nonisolated(unsafe) let test = self
        for w in 0..<Self.orderWorkers {
            workersDone.enter()
            Thread.detachNewThread {
                defer { workersDone.leave() }
                for i in 0..<Self.ordersPerWorker {
                    let node = (w + i) % 2 == 0 ? a : b
                    let product = productIDs[(w * Self.ordersPerWorker + i) % productIDs.count]
                    do {
                        let id = try test.paidOrder(node, buyer: "b\(w)-\(i)", product: product, idempotencyKey: "k\(w)-\(i)")
                        paid.mutate { $0.append(id) }
                    } catch {
                        orderProblems.mutate { $0.append("b\(w)-\(i) on \(product): \(error)") }
                    }
                    usleep(100_000)
                }
            }
        }

        publisher.start()
        // Mid-stream for both: a third of the publications and of the orders are through.
        try waitUntil(timeout: 60, "a third of the publications and orders") {
            rounds.value >= Self.rounds / 3 && paid.value.count >= Self.orderWorkers * Self.ordersPerWorker / 3
        }
        let killedAt = Date()
        cluster.kill(port: victim)
        try waitUntil(timeout: 20, "a replica promoted for slot \(victimSlot)") {
            (try? cluster.masterFor(slot: victimSlot)).map { $0 != victim } ?? false
        }
        // The failed machine comes back and rejoins as the new master's replica: until then
        // that shard has no replica, and `replicas:1` rightly answers its writes 503.
        try cluster.restart(port: victim)
        try waitUntil(timeout: Self.readyBound, "both nodes ready again") {
            [a, b].allSatisfy { (try? $0.http("GET", "/readyz"))?.status == 200 }
        }
        print("failover: both nodes ready \(String(format: "%.1f", Date().timeIntervalSince(killedAt))) s after the kill")

        try waitUntil(timeout: 120, "the publisher done") { rounds.value == Self.rounds }
        XCTAssertEqual(workersDone.wait(timeout: .now() + 120), .success, "the buyers finished")
        XCTAssertEqual(publishProblems.value, [], "every publication acknowledged within the retry window")
        XCTAssertEqual(orderProblems.value, [], "every order paid within the retry window")

        // Every subscriber: every acknowledged publication once, in order, at its acknowledged offset.
        let expected = acked.value
        for s in subscribers {
            try? waitUntil(timeout: 20, "\(s.user) caught up") {
                channels.allSatisfy { ch in s.lastOffset(ch) >= (expected[ch]?.values.max() ?? 0) }
            }
        }
        for s in subscribers {
            for channel in channels {
                let got = s.received(channel)
                let numbers = got.compactMap(\.n)
                let first = s.baseOffset(channel) + 1
                XCTAssertEqual(got.map(\.offset), (0..<got.count).map { first + Int64($0) }, "\(s.user) \(channel): offsets without gaps or repeats")
                XCTAssertTrue(zip(numbers, numbers.dropFirst()).allSatisfy { $0 < $1 }, "\(s.user) \(channel): each publication once, in order: \(numbers)")
                for (n, offset) in expected[channel] ?? [:] {
                    XCTAssertEqual(got.filter { $0.n == n }.map(\.offset), [offset], "\(s.user) \(channel): publication \(n) once at offset \(offset)")
                }
            }
            XCTAssertEqual(s.problems, [], "\(s.user)")
            if !s.reconnects.isEmpty { print("\(s.user): \(s.reconnects.joined(separator: "; "))") }
        }

        // Every order answered paid is delivered with its one key; no key is on two orders.
        var keys: [String: String] = [:]
        for id in paid.value {
            let order = try getOrder(a, id)
            XCTAssertEqual(order["status"]?.stringValue, "delivered", id)
            let orderKeys = order["keys"]?.arrayValue?.compactMap(\.stringValue) ?? []
            XCTAssertEqual(orderKeys.count, 1, "\(id): its key exactly once")
            for key in orderKeys {
                XCTAssertNil(keys[key], "\(key) on \(id) and \(keys[key] ?? "")")
                keys[key] = id
            }
        }
        XCTAssertEqual(paid.value.count, Self.orderWorkers * Self.ordersPerWorker)
        XCTAssertEqual(victim, eventsMaster, "the event log's master was the one killed")

        // The event log: each paid order's two events exactly once; every one delivered.
        var log: [JSON] = []
        try waitUntil(timeout: 30, "every paid order's events relayed to the log") {
            log = []
            var after: String?
            while let page = try? events(a, after: after, limit: 1000), let last = page.last {
                log += page
                after = last["id"]?.stringValue
            }
            return log.count >= 2 * paid.value.count
        }
        for id in paid.value {
            XCTAssertEqual(log.filter { $0["data"]?["order"]?.stringValue == id }.map { $0["type"]?.stringValue },
                           ["order.paid", "order.delivered"], "\(id): logged once each, in order")
        }
        try waitUntil(timeout: 60, "every logged event delivered") {
            Set(receiver.delivered().map(\.eventID)).isSuperset(of: log.compactMap { $0["id"]?.stringValue })
        }
        let audit = WebhookAudit(log: log.compactMap(WebhookAudit.LoggedEvent.init), receipts: receiver.receipts())
        XCTAssertEqual(audit.missing, 0)
        XCTAssertEqual(audit.unexpected, 0)
        XCTAssertEqual(audit.outOfOrder, 0, "each order's events in log order")
        XCTAssertEqual(audit.signaturesInvalid, 0)
        print("failover: \(audit.received) events delivered, \(audit.duplicates) sent again (at least once)")
        for id in products {
            let sold = keys.keys.filter { $0.hasPrefix("K-\(id)-") }.count
            XCTAssertEqual(try product(a, id)["stock"]?.intValue, Int64(keysPerProduct - sold), "\(id): stock matches the keys sold")
        }
    }

    /// Creates, pays and confirms one order; returns its id once the notify is answered 200.
    private func paidOrder(_ node: GatewayNodeProcess, buyer: String, product: String, idempotencyKey: String) throws -> String {
        let create = #"{"buyer":"\#(buyer)","product":"\#(product)","idempotency_key":"\#(idempotencyKey)"}"#
        let created = try Self.retrying { try node.http("POST", "/api/v1/orders", body: create) }.get()
        guard [200, 201].contains(created.status), let id = created.json?["id"]?.stringValue else {
            throw TestError("create: \(created.status) \(created.text)")
        }
        let pay = #"{"payer":"\#(buyer)"}"#
        let payment = try Self.retrying { try node.http("POST", "/api/v1/orders/\(id)/payments", body: pay) }.get()
        guard payment.status == 201, let p = payment.json?["payment"] else { throw TestError("pay \(id): \(payment.status) \(payment.text)") }
        let notify = notifyBody(p)
        let sig = Crypto.hex(Crypto.hmacSHA256(key: Array(TestSecrets.payments.utf8), message: Array(notify.utf8)))
        let answer = try Self.retrying {
            try node.http("POST", "/api/v1/payments/notify", body: notify, key: nil, headers: ["X-Signature": sig])
        }.get()
        guard answer.status == 200 else { throw TestError("notify \(id): \(answer.status) \(answer.text)") }
        return id
    }

    /// The call, again with the same request while it answers 503 or the connection fails,
    /// for up to `retryWindow` seconds.
    private static func retrying(_ call: () throws -> HTTPResponse) -> Result<HTTPResponse, TestError> {
        let deadline = Date().addingTimeInterval(retryWindow)
        var last = "not tried"
        while Date() < deadline {
            do {
                let r = try call()
                if r.status != 503 { return .success(r) }
                last = "503 \(r.text)"
            } catch {
                last = "\(error)"
            }
            usleep(100_000)
        }
        return .failure(TestError("still failing after \(retryWindow) s: \(last)"))
    }
}

/// One WebSocket subscriber to several channels that records every publication it gets and,
/// if its node closes it, reconnects and resubscribes from its last offsets (`since`).
private final class Subscriber: @unchecked Sendable {
    /// `n` is the publisher's number (nil for the node's own pushes, e.g. `product.buyers`).
    struct Publication { let offset: Int64; let n: Int? }

    let user: String
    private let loop: ClientLoop
    private let url: String
    private let channels: [String]
    private let lock = NSLock()
    private var got: [String: [Publication]] = [:]
    private var epochs: [String: String] = [:]
    /// Each channel's offset when first subscribed: every later offset follows it.
    private var base: [String: Int64] = [:]
    private var problemList: [String] = []
    /// Closes by the node: allowed (the client resumes with `since`), shown in the log.
    private var reconnectList: [String] = []
    private var stopping = false
    private let done = DispatchSemaphore(value: 0)

    init(loop: ClientLoop, url: String, user: String, channels: [String]) throws {
        self.loop = loop
        self.url = url
        self.user = user
        self.channels = channels
        let session = try connect()
        Thread.detachNewThread { self.run(session) }
    }

    var problems: [String] { lock.withLock { problemList } }
    var reconnects: [String] { lock.withLock { reconnectList } }
    func received(_ channel: String) -> [Publication] { lock.withLock { got[channel] ?? [] } }
    func lastOffset(_ channel: String) -> Int64 { received(channel).last?.offset ?? baseOffset(channel) }
    func baseOffset(_ channel: String) -> Int64 { lock.withLock { base[channel] ?? 0 } }

    func stop() {
        lock.withLock { stopping = true }
        done.wait()
    }

    private func note(_ problem: String) { lock.withLock { problemList.append(problem) } }

    /// Connects and subscribes to every channel, from the last offset seen if any.
    private func connect() throws -> GatewaySession {
        let (session, reply) = try GatewaySession.open(loop: loop, url: url, token: token(user))
        guard reply["ok"] != nil else { throw TestError("\(user) connect: \(reply.serialized())") }
        for channel in channels {
            var fields: [(String, JSON)] = [("channel", .string(channel))]
            let (last, epoch) = lock.withLock { (got[channel]?.last?.offset, epochs[channel]) }
            if let last, let epoch {
                fields.append(("since", .object([("offset", .int(last)), ("epoch", .string(epoch))])))
            }
            let r = try session.command("subscribe", fields, timeout: 10)
            guard let ok = r["ok"] else { throw TestError("\(user) subscribe \(channel): \(r.serialized())") }
            if last != nil && ok["recovered"]?.boolValue != true { note("\(channel): not recovered after a reconnect: \(ok.serialized())") }
            lock.withLock {
                if let e = ok["epoch"]?.stringValue { epochs[channel] = e }
                if base[channel] == nil { base[channel] = ok["offset"]?.intValue ?? 0 }
            }
            for p in ok["publications"]?.arrayValue ?? [] { record(p) }
        }
        return session
    }

    private func record(_ push: JSON) {
        guard let channel = push["channel"]?.stringValue, let offset = push["offset"]?.intValue else { return }
        let n = push["push"]?.stringValue == "test.seq" ? push["data"]?["n"]?.intValue.map(Int.init) : nil
        lock.withLock {
            if let e = push["epoch"]?.stringValue, let known = epochs[channel], e != known {
                problemList.append("\(channel): epoch changed from \(known) to \(e) at offset \(offset)")
            }
            got[channel, default: []].append(Publication(offset: offset, n: n))
        }
    }

    private func run(_ first: GatewaySession) {
        defer { done.signal() }
        var session: GatewaySession? = first
        while !lock.withLock({ stopping }) {
            guard let s = session else {
                usleep(200_000)
                session = try? connect()
                continue
            }
            if let push = s.nextPush(timeout: 0.2) {
                record(push)
            } else if s.isClosed {
                lock.withLock { reconnectList.append("closed by the node (\(s.closeReason)), resumed with since") }
                session = nil
            }
        }
        session?.close()
    }
}
