@testable import GatewayNode
import GatewayConfig
import GatewayIO
import GatewayProtocol
import GatewayRedis
@testable import OrderCore
import XCTest

/// The order of RedisCommerceStore's calls around an apply, on a recording link: timers
/// written by the apply itself on one server, written ahead (awaited) on a cluster, the
/// outbox registered before and relayed after on a cluster, unscheduled timers removed after.
final class RedisCommerceStoreTests: XCTestCase {
    final class RecordingLink: RedisLink {
        var isReady = true
        var isCluster: Bool
        var reconnects = 0
        var lastRoundTrip = 0.0
        var onReady: (() -> Void)?
        var onLost: ((String) -> Void)?
        var onProblem: ((String) -> Void)?
        var onFatal: ((String) -> Void)?
        var onPubSub: ((String, [UInt8], [UInt8]) -> Void)?
        /// What was sent, in order: the command name (or script name) and its routing key.
        var log: [String] = []
        /// Replies held back until `flush`, as a cluster's awaited round trips would be.
        var pending: [() -> Void] = []
        var hold = false
        var applyReply: RedisReply = .array([.integer(1), .integer(0)])

        init(cluster: Bool) { isCluster = cluster }

        func start() {}
        func stop() {}
        func send(_ args: [RedisArgument], key: String?, _ callback: @escaping (RedisReply) -> Void) {
            let name = String(decoding: args[0].redisBytes, as: UTF8.self)
            log.append("\(name) \(key ?? "-")")
            reply(.integer(1), callback)
        }
        func run(_ script: LuaScript, keys: [String], args: [RedisArgument], _ callback: @escaping (RedisReply) -> Void) {
            log.append("\(script.name) \(keys[0])")
            // A load finds nothing (the tests decide without a snapshot).
            reply(script.name == "commerce_load" ? .array([.array([]), .array([]), .array([]), .integer(0)]) : applyReply, callback)
        }
        private func reply(_ r: RedisReply, _ callback: @escaping (RedisReply) -> Void) {
            if hold { pending.append { callback(r) } } else { callback(r) }
        }
        func flush() {
            let now = pending
            pending = []
            now.forEach { $0() }
        }
        func subscribe(_ names: [String]) {}
        func unsubscribe(_ names: [String]) {}
        func awaitReplicas(_ replicas: Int, timeoutMs: Int, key: String?, _ done: @escaping (Bool) -> Void) {
            log.append("WAIT \(key ?? "-")")
            done(true)
        }
        func sameConnection(_ a: String, _ b: String) -> Bool { !isCluster }
    }

    final class RecordingRelay: EventStore {
        var log: [String] = []
        weak var link: RecordingLink?
        func register(_ outbox: String, _ done: @escaping (Bool) -> Void) {
            link?.log.append("register \(outbox)")
            done(true)
        }
        func relay(_ outbox: String) { link?.log.append("relay \(outbox)") }
        func events(after: String?, limit: Int, _ done: @escaping (StoreResult<[LoggedEvent]>) -> Void) { done(.success([])) }
    }

    let product = Product(id: "p1", merchant: "m1", title: "Steam key", price: 1999, currency: "CNY")
    let rules = OrderRules(times: CommerceTimes(orderTTL: 900_000, giftTTL: 86_400_000, friendpayTTL: 1_800_000, paymentGrace: 60_000))

    func store(_ link: RecordingLink, durability: RedisDurability = .fsync) -> RedisCommerceStore {
        RedisCommerceStore(redis: link, retention: KeyRetention(rules.times), historyTTL: 60, historySize: { _ in 10 },
                           durability: durability, durabilityTimeoutMs: 100, newEpoch: { "e" })
    }

    func creation() throws -> Decision {
        let r = try OrderRequest.decode(JSON.parse(Array(#"{"buyer":"u1","product":"p1"}"#.utf8))).get()
        let fresh = FreshIDs(order: CommerceKeys.freshID("o", product: "p1", random: "1"),
                             giftCode: CommerceKeys.freshID("g", product: "p1", random: "1"),
                             payCode: CommerceKeys.freshID("f", product: "p1", random: "1"))
        return try rules.create(r, product: product, now: 1_000, fresh: fresh).get()
    }

    /// One server: the timer rides in the apply (KEYS holds gw:timers), no command of its own.
    func testOneServerWritesTheTimerInTheApply() throws {
        let link = RecordingLink(cluster: false)
        link.hold = true
        var applied: ApplyOutcome?
        let decision = try creation()
        store(link).apply(decision, product: "p1") { applied = try? $0.get() }
        let order = CommerceKeys.order(decision.savedOrder!.id)!
        XCTAssertEqual(link.log, ["commerce_apply \(order)"])
        link.flush()
        XCTAssertEqual(applied, .applied)
    }

    /// A decision that only schedules (an early timer put back) has no apply to ride in.
    func testOneServerWritesATimerOnlyDecisionByItself() throws {
        let link = RecordingLink(cluster: false)
        let orderID = CommerceKeys.freshID("o", product: "p1", random: "1")
        var applied: ApplyOutcome?
        store(link).apply(Decision(effects: [.schedule(order: orderID, .payment, at: 5_000)]), product: "p1") { applied = try? $0.get() }
        XCTAssertEqual(link.log, ["ZADD gw:timers"])
        XCTAssertEqual(applied, .applied)
    }

    /// Cluster, `replicas:1`, through the runner: the outbox registered, the timer written
    /// ahead and WAITed on its own master (no later WAIT covers it), the apply, the WAIT on
    /// the order's master, and only then the relay of the pushes.
    func testClusterAwaitsTheTimerAndRelaysOnlyOnceDurable() throws {
        let link = RecordingLink(cluster: true)
        let relay = RecordingRelay()
        relay.link = link
        let s = store(link, durability: .replicas(1))
        s.relay = relay
        let decision = try creation()
        let order = CommerceKeys.order(decision.savedOrder!.id)!
        var answered = false
        OrderStore(store: s).run(.product("p1"), decide: { _ in .success(decision) }) { answered = (try? $0.get()) != nil }
        XCTAssertTrue(answered)
        XCTAssertEqual(link.log, ["commerce_load gw:{product:p1}:info", "register gw:{product:p1}:outbox", "ZADD gw:timers",
                                  "WAIT gw:timers", "commerce_apply \(order)", "WAIT \(CommerceKeys.stock("p1"))",
                                  "relay gw:{product:p1}:outbox"])
    }

    /// One server, `replicas:1`: no command and no WAIT of its own for the timer (it is in the
    /// apply, which the WAIT after it covers).
    func testOneServerAddsNoRoundTripForTheTimer() throws {
        let link = RecordingLink(cluster: false)
        let s = store(link, durability: .replicas(1))
        let decision = try creation()
        let order = CommerceKeys.order(decision.savedOrder!.id)!
        OrderStore(store: s).run(.product("p1"), decide: { _ in .success(decision) }) { _ in }
        XCTAssertEqual(link.log, ["commerce_load gw:{product:p1}:info", "commerce_apply \(order)",
                                  "WAIT \(CommerceKeys.stock("p1"))"])
    }

    func testUnscheduleIsRemovedOnlyAfterAnAppliedDecision() throws {
        let link = RecordingLink(cluster: true)
        let s = store(link)
        let orderID = CommerceKeys.freshID("o", product: "p1", random: "1")
        let cancel = Decision(preconditions: [.orderVersion(orderID, 1)], effects: [.unschedule(order: orderID, .payment)])
        link.applyReply = .array([.integer(0), .integer(1)])
        var result: ApplyOutcome?
        s.apply(cancel, product: "p1") { result = try? $0.get() }
        XCTAssertEqual(result, .refused(.orderVersion(orderID, 1)))
        XCTAssertFalse(link.log.contains { $0.hasPrefix("ZREM") }, "a decision that did not apply keeps its timers")
        link.applyReply = .array([.integer(1), .integer(0)])
        s.apply(cancel, product: "p1") { result = try? $0.get() }
        XCTAssertEqual(result, .applied)
        XCTAssertEqual(link.log.last, "ZREM gw:timers")
    }
}
