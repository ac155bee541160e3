@testable import GatewayNode
import GatewayRedis
import GatewayCore
import GatewayCrypto
import XCTest

/// The webhook sender's state in Redis (Store/README.md "Webhooks"): dispatch queues each event
/// once per ordering key; a claim leases a key's head so no other claim gets it until the
/// lease ends; a settle is taken only under its own lease; a key's next event is claimable
/// only once its head settled.
final class WebhookScriptTests: XCTestCase {
    var redis: ScriptRedis!

    override func setUpWithError() throws { redis = try ScriptRedis() }
    override func tearDown() { redis = nil }

    @discardableResult
    func append(_ key: String, _ type: String = "order.paid") -> String {
        redis.call(["XADD", StoreKeys.eventsLog, "*", "type", type, "key", key, "at", "1", "data", "{}"]).text ?? ""
    }

    @discardableResult
    func dispatch(_ limit: Int = 100) -> Int64 {
        redis.run(WebhookScripts.dispatch, keys: WebhookScripts.dispatchKeys, args: [limit, WebhookScripts.deadCap]).int ?? -1
    }

    var missing: [String] = []

    struct Claim: Equatable {
        var key: String
        var id: String
        var token: String
        var attempt: Int64
    }

    /// The claims (and in `missing`, the heads given up as gone from the log): a settle
    /// call with no settlements.
    func claim(_ count: Int = 10, leaseMs: Int = 60_000, node: String = "n1") -> [Claim] {
        let reply = redis.run(WebhookScripts.settle, keys: WebhookScripts.settleKeys, args: [count, leaseMs, node, WebhookScripts.deadCap])
        missing = (reply.array?.last?.array ?? []).compactMap { $0.array?.last?.text }
        return (reply.array?[1].array ?? []).compactMap { c in
            guard let a = c.array, a.count == 5, let key = a[0].text, let id = a[1].text, let token = a[2].text, let n = a[3].int else { return nil }
            return Claim(key: key, id: id, token: token, attempt: n)
        }
    }

    /// 1 when taken, 0 when the lease was not this attempt's (claims nothing after it).
    @discardableResult
    func settle(_ c: Claim, _ outcome: String, retryIn: Int64 = 0, reason: String = "") -> Int64 {
        let reply = redis.run(WebhookScripts.settle, keys: WebhookScripts.settleKeys,
                              args: [0, 0, "n1", WebhookScripts.deadCap, c.key, c.id, c.token, outcome, retryIn, reason, "order.paid"])
        return reply.array?.first?.array?.first?.int ?? -1
    }

    func stats() -> (backlog: Int64, oldest: Int64) {
        let a = redis.run(WebhookScripts.stats, keys: WebhookScripts.statsKeys, args: []).array ?? []
        return (a.first?.int ?? -1, a.last?.int ?? -1)
    }

    func testDispatchQueuesEachEventOncePerKeyInLogOrder() {
        let a1 = append("o-a"), b1 = append("o-b"), a2 = append("o-a")
        XCTAssertEqual(stats().backlog, 3, "undispatched events count")
        XCTAssertEqual(dispatch(2), 2, "at most the limit")
        XCTAssertEqual(dispatch(), 1, "from the cursor on")
        XCTAssertEqual(dispatch(), 0, "a second dispatcher finds nothing new")
        XCTAssertEqual(redis.call(["HGET", StoreKeys.webhookQueues, "o-a"]).text, "\(a1) \(a2)")
        XCTAssertEqual(redis.call(["HGET", StoreKeys.webhookQueues, "o-b"]).text, b1)
        XCTAssertEqual(stats().backlog, 3)
        XCTAssertEqual(stats().oldest, Int64(a1.split(separator: "-")[0]))
    }

    func testAKeyIsDeliveredOneEventAtATimeInOrder() {
        let a1 = append("o-a"), a2 = append("o-a"), b1 = append("o-b")
        dispatch()
        let first = claim()
        XCTAssertEqual(Set(first.map(\.id)), [a1, b1], "only each key's head")
        XCTAssertEqual(first.map(\.attempt), [1, 1])
        XCTAssertEqual(claim(), [], "leased keys are not claimed again")
        let a = first.first { $0.key == "o-a" }!
        XCTAssertEqual(settle(a, "delivered"), 1)
        let next = claim()
        XCTAssertEqual(next.map(\.id), [a2], "the key's next event, once its head was delivered")
        XCTAssertEqual(stats().backlog, 2)
        XCTAssertEqual(settle(next[0], "delivered"), 1)
        XCTAssertEqual(settle(first.first { $0.key == "o-b" }!, "delivered"), 1)
        XCTAssertEqual(stats().backlog, 0)
        XCTAssertEqual(stats().oldest, 0)
        XCTAssertEqual(redis.call(["HLEN", StoreKeys.webhookQueues]).int, 0, "nothing left behind")
        XCTAssertEqual(redis.call(["ZCARD", StoreKeys.webhookDue]).int, 0)
        XCTAssertEqual(redis.call(["HLEN", StoreKeys.webhookAttempts]).int, 0)
    }

    func testARetryComesDueAtItsTimeWithTheNextAttemptNumber() {
        let a1 = append("o-a")
        dispatch()
        let c = claim()[0]
        XCTAssertEqual(settle(c, "retry", retryIn: 3_600_000), 1)
        XCTAssertEqual(claim(), [], "not due before its time")
        redis.call(["ZADD", StoreKeys.webhookDue, 0, "o-a"])  // its time came
        let again = claim()
        XCTAssertEqual(again.map(\.id), [a1])
        XCTAssertEqual(again.map(\.attempt), [2])
        XCTAssertNotEqual(again[0].token, c.token)
    }

    /// A node killed mid-delivery: its lease lapses, another node claims the same event; the
    /// first node's late answer is not taken.
    func testALapsedLeaseGoesToAnotherNodeAndTheOldAnswerIsRefused() {
        let a1 = append("o-a")
        dispatch()
        let dead = claim(leaseMs: 1, node: "n1")[0]
        let deadline = Date().addingTimeInterval(5)
        var taken: [Claim] = []
        while taken.isEmpty && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.005)
            taken = claim(node: "n2")
        }
        XCTAssertEqual(taken.map(\.id), [a1])
        XCTAssertTrue(taken[0].token.hasPrefix("n2:"))
        XCTAssertEqual(settle(dead, "delivered"), 0, "the lapsed lease's answer is not taken")
        XCTAssertEqual(stats().backlog, 1)
        XCTAssertEqual(settle(taken[0], "delivered"), 1)
        XCTAssertEqual(stats().backlog, 0)
    }

    func testAGivenUpOrMissingEventGoesToTheDeadLettersAndTheKeyGoesOn() {
        let a1 = append("o-a"), a2 = append("o-a"), a3 = append("o-a")
        dispatch()
        let c = claim()[0]
        XCTAssertEqual(c.id, a1)
        XCTAssertEqual(settle(c, "give_up", reason: "retried for 259200 s"), 1)
        redis.call(["XDEL", StoreKeys.eventsLog, a2])  // trimmed or lost
        XCTAssertEqual(claim().map(\.id), [a3], "a head missing from the log is given up and the next claimed")
        XCTAssertEqual(missing, [a2], "and named in the reply, for the node to log and count")
        let dead = (redis.call(["XRANGE", StoreKeys.webhookDead, "-", "+"]).array ?? []).compactMap { $0.array?[1].array?.compactMap(\.text) }
        XCTAssertEqual(dead.map { $0[1] }, [a1, a2])
        XCTAssertEqual(dead.map { $0[5] }, ["order.paid", ""], "the type, when the log still had the event")
        XCTAssertEqual(dead.map { $0[7] }, ["retried for 259200 s", "missing from the log"])
        XCTAssertEqual(redis.call(["HGET", StoreKeys.webhookStats, "given_up"]).text, "2")
    }

    /// A node stalls past its lease, the head is then found missing by another node's claim:
    /// the stalled node's late settle must not touch the key's next event.
    func testALateSettleAfterTheHeadWasGivenUpIsRefused() {
        let a1 = append("o-a")
        dispatch()
        let stalled = claim(leaseMs: 1)[0]
        Thread.sleep(forTimeInterval: 0.01)
        redis.call(["XDEL", StoreKeys.eventsLog, a1])
        XCTAssertEqual(claim(), [], "the missing head is given up")
        XCTAssertEqual(redis.call(["HEXISTS", StoreKeys.webhookLeases, "o-a"]).int, 0, "its lease went with it")
        let a2 = append("o-a")
        dispatch()
        XCTAssertEqual(settle(stalled, "retry", retryIn: 600_000), 0, "the late answer is not taken")
        XCTAssertEqual(claim().map(\.id), [a2], "the next event is due at once, not pushed back by it")
    }

    /// A script's writes are not undone by a later error: bad arguments are refused before
    /// the first write, so nothing is half settled or half dispatched.
    func testBadArgumentsAreRefusedBeforeAnyWrite() {
        append("o-a")
        dispatch()
        let c = claim()[0]
        for args: [RedisArgument] in [
            [0, 0, "n1", WebhookScripts.deadCap, c.key, c.id, c.token, "retry", "soon", "", "order.paid"],
            [0, 0, "n1", WebhookScripts.deadCap, c.key, c.id, c.token, "delivered", 0, ""],
            ["x", 0, "n1", WebhookScripts.deadCap, c.key, c.id, c.token, "delivered", 0, "", "order.paid"],
        ] {
            guard case .error = redis.run(WebhookScripts.settle, keys: WebhookScripts.settleKeys, args: args) else {
                return XCTFail("\(args) was taken")
            }
            XCTAssertEqual(redis.call(["HEXISTS", StoreKeys.webhookLeases, "o-a"]).int, 1, "the lease is untouched")
        }
        append("o-b")
        guard case .error = redis.run(WebhookScripts.dispatch, keys: WebhookScripts.dispatchKeys, args: [100]) else {
            return XCTFail("a dispatch without its dead-letter cap was taken")
        }
        XCTAssertEqual(redis.call(["HEXISTS", StoreKeys.webhookQueues, "o-b"]).int, 0, "nothing queued")
        XCTAssertEqual(dispatch(), 1)
    }

    func testAnEventWithoutAnOrderingKeyIsDeadLetteredNotSkipped() {
        redis.call(["XADD", StoreKeys.eventsLog, "*", "type", "order.paid", "at", "1", "data", "{}"])
        let a1 = append("o-a")
        XCTAssertEqual(dispatch(), 2)
        XCTAssertEqual(claim().map(\.id), [a1])
        XCTAssertEqual(redis.call(["XLEN", StoreKeys.webhookDead]).int, 1)
        XCTAssertEqual(redis.call(["HGET", StoreKeys.webhookStats, "given_up"]).text, "1")
    }

    /// The store over the scripts: claims decode into the logged event, settles answer
    /// whether they were taken, the backlog reads back.
    func testRedisWebhookStoreDecodesClaimsAndSettles() throws {
        let f = try StoreFixture()
        let store = RedisWebhookStore(redis: f.link, log: { _ in })
        let id = f.redis.call(["XADD", StoreKeys.eventsLog, "*", "type", "order.paid", "key", "o-a", "at", "42",
                               "data", #"{"order":"o-a"}"#]).text ?? ""
        XCTAssertEqual(try f.value { store.dispatch(limit: 100, $0) }, 1)
        let claims = try f.value { store.claim($0) }.leased
        XCTAssertEqual(claims.count, 1)
        let c = try XCTUnwrap(claims.first)
        XCTAssertEqual(c.key, "o-a")
        XCTAssertEqual(c.attempt, 1)
        XCTAssertEqual(c.event, LoggedEvent(id: id, type: "order.paid", key: "o-a", createdAt: 42, data: #"{"order":"o-a"}"#))
        XCTAssertEqual(try f.value { store.backlog($0) }.count, 1)
        var stale = c
        stale.token = "n9:1"
        XCTAssertEqual(try f.value { store.settleOne(stale, .delivered, $0) }, false, "not this attempt's lease")
        XCTAssertEqual(try f.value { store.settleOne(c, .retry(afterMs: 0), $0) }, true)
        let again = try f.value { store.claim($0) }.leased
        XCTAssertEqual(again.map(\.attempt), [2])
        XCTAssertEqual(try f.value { store.settleOne(again[0], .delivered, $0) }, true)
        XCTAssertEqual(try f.value { store.backlog($0) }, WebhookBacklog(count: 0, oldestMs: 0))
    }

    /// The admin page's list: keys whose head was tried more than once, oldest first, with
    /// the head's type, attempts and next time; a first attempt is not listed; given-up
    /// events are counted.
    func testRetryingListsKeysTriedMoreThanOnceOldestFirstAndCountsTheDead() throws {
        let f = try StoreFixture()
        let store = RedisWebhookStore(redis: f.link, log: { _ in })
        func log(_ key: String, _ type: String) -> String {
            f.redis.call(["XADD", StoreKeys.eventsLog, "*", "type", type, "key", key, "at", "1", "data", "{}"]).text ?? ""
        }
        let a1 = log("o-a", "order.paid"), b1 = log("o-b", "order.canceled")
        _ = log("o-c", "order.paid")
        _ = log("o-a", "order.delivered")
        XCTAssertEqual(try f.value { store.dispatch(limit: 100, $0) }, 4)
        XCTAssertEqual(try f.value { store.trouble(limit: 20, $0) }, WebhookTrouble(dead: 0, retrying: []), "nothing tried yet")

        let first = try f.value { store.claim($0) }.leased
        XCTAssertEqual(first.map(\.attempt), [1, 1, 1])
        XCTAssertEqual(try f.value { store.trouble(limit: 20, $0) }.retrying, [], "a first attempt is not a retry")
        for claim in first where claim.key != "o-c" {
            XCTAssertEqual(try f.value { store.settleOne(claim, .retry(afterMs: 0), $0) }, true)
        }
        let c = try XCTUnwrap(first.first { $0.key == "o-c" })
        XCTAssertEqual(try f.value { store.settleOne(c, .giveUp(reason: "retried for 60 s"), $0) }, true)
        let second = try f.value { store.claim($0) }.leased
        XCTAssertEqual(Set(second.map(\.key)), ["o-a", "o-b"])
        let b = try XCTUnwrap(second.first { $0.key == "o-b" })
        XCTAssertEqual(try f.value { store.settleOne(b, .retry(afterMs: 3_600_000), $0) }, true)

        let trouble = try f.value { store.trouble(limit: 20, $0) }
        XCTAssertEqual(trouble.dead, 1)
        XCTAssertEqual(trouble.retrying.map(\.key), ["o-a", "o-b"], "oldest head first")
        XCTAssertEqual(trouble.retrying.map(\.eventID), [a1, b1])
        XCTAssertEqual(trouble.retrying.map(\.type), ["order.paid", "order.canceled"])
        XCTAssertEqual(trouble.retrying.map(\.attempts), [2, 2])
        XCTAssertEqual(trouble.retrying.map(\.inFlight), [true, false], "o-a is leased, o-b waits for its retry")
        let redisNow = try XCTUnwrap(f.redis.call(["TIME"]).array?.first?.text.flatMap { Int64($0) }) * 1_000
        XCTAssertGreaterThan(trouble.retrying[1].dueMs, redisNow + 3_000_000, "the retry's time, on Redis' clock")
        XCTAssertEqual(try f.value { store.trouble(limit: 1, $0) }.retrying.map(\.key), ["o-a"], "at most the limit")

        let a = try XCTUnwrap(second.first { $0.key == "o-a" })
        XCTAssertEqual(try f.value { store.settleOne(a, .delivered, $0) }, true)
        XCTAssertEqual(try f.value { store.trouble(limit: 20, $0) }.retrying.map(\.key), ["o-b"],
                       "o-a's next event has not been tried yet")
    }

    func testTheOldestAgeNeverGoesNegative() {
        XCTAssertEqual(WebhookBacklog(count: 2, oldestMs: 10_000).oldestSeconds(nowMs: 12_500), 2.5)
        XCTAssertEqual(WebhookBacklog(count: 2, oldestMs: 10_000).oldestSeconds(nowMs: 9_000), 0, "Redis' clock ahead of the node's")
        XCTAssertEqual(WebhookBacklog(count: 0, oldestMs: 0).oldestSeconds(nowMs: 9_000), 0)
    }

    func testEveryScriptTouchesOnlyTheEventsSlot() {
        for keys in [WebhookScripts.dispatchKeys, WebhookScripts.settleKeys, WebhookScripts.statsKeys,
                     WebhookScripts.retryingKeys] {
            XCTAssertEqual(Set(keys.map { HashSlot.of($0) }), [HashSlot.of(StoreKeys.eventsLog)], "\(keys)")
        }
        for script in WebhookScripts.all {
            XCTAssertFalse(script.source.contains("'gw:"), "\(script.name) builds a key name")
        }
    }
}

/// The sender's loop against the scripts on a real redis-server, with a transport that
/// answers as told: the issue's "500 twice, then 200" arrives exactly once as delivered,
/// with a valid signature, and a key's events go one at a time in log order.
final class WebhookSenderTests: XCTestCase {
    final class ScriptedReceiver: WebhookTransport {
        var answers: [Int?] = []
        var received: [(id: String, signature: String, body: [UInt8])] = []
        func post(body: [UInt8], headers: [WebhookDelivery.Header], timeoutMs: Int64, _ done: @escaping (Int?) -> Void) {
            let byName = Dictionary(uniqueKeysWithValues: headers.map { ($0.name, $0.value) })
            received.append((byName["X-Gateway-Event-Id"] ?? "", byName["X-Gateway-Signature"] ?? "", body))
            done(answers.isEmpty ? 200 : answers.removeFirst())
        }
    }

    func testFailsTwiceThenDeliveredOnceSignedAndInOrderPerKey() throws {
        let f = try StoreFixture()
        let store = RedisWebhookStore(redis: f.link, log: { _ in })
        let receiver = ScriptedReceiver()
        receiver.answers = [500, nil]
        var lines: [String] = []
        // No jitter, no waiting: a retry's delay is made due by hand below.
        let sender = WebhookSender(store: store, transport: receiver, retry: WebhookRetry(maxBackoffSeconds: 600, retryForSeconds: 3_600),
                                   secret: "whsec-test", node: "n1", concurrency: 4,
                                   nowMs: { Int64(Date().timeIntervalSince1970 * 1_000) }, jitter: { 0.5 }, schedule: { _, _ in {} },
                                   log: { lines.append($0) })
        var ids: [String] = []
        for type in ["order.paid", "order.delivered"] {
            ids.append(f.redis.call(["XADD", StoreKeys.eventsLog, "*", "type", type, "key", "o-a", "at", "1", "data", "{}"]).text ?? "")
        }
        for _ in 0..<4 {
            sender.tick()
            f.redis.call(["ZADD", StoreKeys.webhookDue, "XX", 0, "o-a"])  // a retry's time came
        }
        XCTAssertEqual(receiver.received.map(\.id), [ids[0], ids[0], ids[0], ids[1]], "the second event waits for the first")
        let now = Int64(Date().timeIntervalSince1970)
        for r in receiver.received {
            XCTAssertTrue(WebhookSignature.verify(header: r.signature, secret: "whsec-test", body: r.body, now: now))
        }
        XCTAssertEqual(sender.inFlight, 0)
        XCTAssertEqual(try f.value { store.backlog($0) }.count, 0, "both delivered")
        XCTAssertEqual(f.redis.call(["HGET", StoreKeys.webhookStats, "delivered"]).text, "2", "each delivered exactly once")
        XCTAssertEqual(lines, [])
    }
}

extension RedisWebhookStore {
    /// A claim alone: a settle call with nothing to settle.
    func claim(_ done: @escaping (StoreResult<WebhookStep>) -> Void) {
        settle([], thenClaim: 8, leaseMs: 30_000, node: "n1", done)
    }

    /// One settlement alone; whether it was taken.
    func settleOne(_ claim: WebhookClaim, _ outcome: WebhookOutcome, _ done: @escaping (StoreResult<Bool>) -> Void) {
        settle([WebhookSettlement(claim: claim, outcome: outcome)], thenClaim: 0, leaseMs: 30_000, node: "n1") {
            done($0.map { $0.taken == [true] })
        }
    }
}
