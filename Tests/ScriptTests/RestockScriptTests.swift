@testable import GatewayNode
import GatewayProtocol
import GatewayRedis
@testable import OrderCore
import GatewayConfig
import XCTest

/// Restock holds on a real redis-server: consuming a hold at payment (commerce_load's hold,
/// commerce_apply's check_field and take_held_key), the upload that gives holds (keys_add),
/// their release (holds_release) and the restock line (watch, restock_line, restock_notify).
final class RestockScriptTests: XCTestCase {
    var redis: ScriptRedis!
    let product = Product(id: "p1", merchant: "m1", title: "Steam key", price: 1999, currency: "CNY")
    let times = CommerceTimes(orderTTL: 900_000, giftTTL: 86_400_000, friendpayTTL: 1_800_000, paymentGrace: 60_000)
    lazy var rules = OrderRules(times: times)
    let now: Int64 = 1_763_900_000_000

    override func setUpWithError() throws {
        redis = try ScriptRedis()
        redis.call(["HSET", CommerceKeys.info("p1"), "id", "p1", "merchant", "m1", "title", "Steam key", "price", "1999", "currency", "CNY"])
    }

    override func tearDown() { redis = nil }

    func settings(viaOutbox: Bool = false) -> CommerceProgram.Settings {
        CommerceProgram.Settings(retention: KeyRetention(times), historySize: { _ in 100 }, viaOutbox: viaOutbox)
    }

    /// {applied, detail}: detail is the emitted pushes, or the 1-based index of the failed check.
    @discardableResult
    func apply(_ decision: Decision) throws -> (applied: Bool, detail: Int) {
        let program = try XCTUnwrap(CommerceProgram(decision, product: "p1", settings()))
        let reply = redis.run(CommerceScripts.apply, keys: program.keys,
                              args: [program.encoded, "ep1", 3600, program.outbox, 259_200_000, MemberLevels.none.scriptArgument])
        var items = try RedisArrayReader(reply)
        return (try items.next(Int.self) == 1, try items.next(Int.self))
    }

    /// commerce_load through the real store's decoder (the 5th element is the hold).
    func load(order id: String, payment: String? = nil) throws -> CommerceSnapshot {
        let entry = try payment.map { (try XCTUnwrap(CommerceKeys.payment($0)), "payment") } ?? (try XCTUnwrap(CommerceKeys.order(id)), "order")
        let reply = redis.run(CommerceScripts.load, keys: [entry.0], args: [entry.1])
        var items = try RedisArrayReader(reply)
        let o = try items.next(RedisHash.self), p = try items.next(RedisHash.self), pr = try items.next(RedisHash.self)
        let stock = try items.next(Int.self)
        let order = Order(record: o.fields)
        return CommerceSnapshot(order: order, payment: Payment(record: p.fields), product: Product(record: pr.fields), stock: stock,
                                hold: RedisCommerceStore.hold(try items.next(String?.self), buyer: order?.buyer))
    }

    func freshID(_ prefix: String, _ n: Int) -> String { CommerceKeys.freshID(prefix, product: "p1", random: String(n)) }

    /// An order of `buyer`, created and with a payment; returns the order and the payment.
    func pending(_ buyer: String, _ n: Int) throws -> (Order, Payment) {
        let request = OrderRequest(buyer: buyer, product: "p1", quantity: 1, kind: .normal)
        let create = try rules.create(request, product: product, now: now,
                                      fresh: FreshIDs(order: freshID("o", n), giftCode: freshID("g", n), payCode: freshID("f", n))).get()
        XCTAssertTrue(try apply(create).applied)
        let order = try XCTUnwrap(create.savedOrder)
        let pd = try rules.createPayment(order: order, payer: buyer, paymentID: freshID("pay", n), now: now).get()
        XCTAssertTrue(try apply(pd).applied)
        return (order, try XCTUnwrap(pd.savedPayment))
    }

    func notifyDecision(_ order: Order, _ payment: Payment) throws -> Decision {
        let s = try load(order: order.id, payment: payment.id)
        let n = PaymentNotify(payment: payment.id, order: order.id, amount: payment.amount, currency: payment.currency, outcome: .success, tradeNo: "T")
        return try rules.notify(n, payment: s.payment, order: s.order, stock: s.stock, hold: s.hold, now: now).get()
    }

    func giveHold(_ user: String, key: String, until: Int64, on server: ScriptRedis? = nil) {
        let redis = server ?? self.redis!
        redis.call(["HSET", CommerceKeys.cardKeys("p1"), key, "sealed"])
        redis.call(["HSET", CommerceKeys.holds("p1"), user, RestockHold(user: user, keyID: key, until: until).record])
        redis.call(["ZADD", CommerceKeys.holdsDue("p1"), until, user])
    }

    // MARK: consuming a hold at payment

    func testOnlyTheHoldersOrderTakesTheHeldKey() throws {
        giveHold("u1", key: "kh", until: now + 300_000)
        let (other, otherPayment) = try pending("u3", 1)
        let (mine, myPayment) = try pending("u1", 2)
        XCTAssertEqual(try load(order: other.id).hold, .absent, "a new order links the holds: no hold for u3")

        let snipe = try notifyDecision(other, otherPayment)
        XCTAssertTrue(try apply(snipe).applied)
        XCTAssertEqual(try load(order: other.id).order?.status, .abnormal, "a held key is nobody else's")

        let held = try notifyDecision(mine, myPayment)
        XCTAssertTrue(try apply(held).applied)
        let after = try load(order: mine.id)
        XCTAssertEqual(after.order?.status, .delivered)
        XCTAssertEqual(after.order?.keyIDs, ["kh"])
        XCTAssertEqual(after.hold, .absent, "the hold ended")
        XCTAssertEqual(redis.call(["ZCARD", CommerceKeys.holdsDue("p1")]).int, 0)
        XCTAssertEqual(redis.call(["LLEN", CommerceKeys.stock("p1")]).int, 0)

        // The memory twin runs the same programs to the same end.
        let memory = MemoryCommerceStore()
        memory.addProduct(product)
        memory.seedHold(product: "p1", RestockHold(user: "u1", keyID: "kh", until: now + 300_000))
        let ids = [1, 2]
        for (i, buyer) in ["u3", "u1"].enumerated() {
            let request = OrderRequest(buyer: buyer, product: "p1", quantity: 1, kind: .normal)
            let n = ids[i]
            let create = try rules.create(request, product: product, now: now,
                                          fresh: FreshIDs(order: freshID("o", n), giftCode: freshID("g", n), payCode: freshID("f", n))).get()
            XCTAssertNil(memory.run(try XCTUnwrap(CommerceProgram(create, product: "p1", settings()))))
            let order = try XCTUnwrap(create.savedOrder)
            let pd = try rules.createPayment(order: order, payer: buyer, paymentID: freshID("pay", n), now: now).get()
            XCTAssertNil(memory.run(try XCTUnwrap(CommerceProgram(pd, product: "p1", settings()))))
            let payment = try XCTUnwrap(pd.savedPayment)
            var snapshot: CommerceSnapshot?
            memory.load(.payment(payment.id)) { snapshot = try? $0.get() }
            let s = try XCTUnwrap(snapshot)
            let n2 = PaymentNotify(payment: payment.id, order: order.id, amount: payment.amount, currency: payment.currency, outcome: .success, tradeNo: "T")
            let d = try rules.notify(n2, payment: s.payment, order: s.order, stock: s.stock, hold: s.hold, now: now).get()
            XCTAssertNil(memory.run(try XCTUnwrap(CommerceProgram(d, product: "p1", settings()))))
        }
        for key in [CommerceKeys.order(other.id)!, CommerceKeys.order(mine.id)!] {
            let stored = try redis.call(["HGETALL", key]).decode(as: RedisHash.self).fields
            let twin = memory.hashes[key] ?? [:]
            for name in ["status", "keys", CommerceKeys.Link.holds] { XCTAssertEqual(twin[name], stored[name], "\(key) \(name)") }
        }
        XCTAssertEqual(memory.hashes[CommerceKeys.holds("p1")] ?? [:], [:])
    }

    func testAReleaseBetweenLoadAndApplyRefusesTheApply() throws {
        giveHold("u1", key: "kh", until: now + 300_000)
        let (mine, myPayment) = try pending("u1", 1)
        let decision = try notifyDecision(mine, myPayment)
        // The hold is released (its key back to stock) after the load, before the apply.
        redis.call(["HDEL", CommerceKeys.holds("p1"), "u1"])
        redis.call(["RPUSH", CommerceKeys.stock("p1"), "kh"])
        let refused = try apply(decision)
        XCTAssertFalse(refused.applied)
        let index = refused.detail
        XCTAssertEqual(decision.preconditions[index - 1], .holdRecord(product: "p1", user: "u1", record: "kh|\(now + 300_000)"))
        XCTAssertEqual(try load(order: mine.id).order?.status, .pendingPayment, "nothing changed")
        // Decided again on the new snapshot: from stock.
        let again = try notifyDecision(mine, myPayment)
        XCTAssertTrue(try apply(again).applied)
        XCTAssertEqual(try load(order: mine.id).order?.keyIDs, ["kh"])
    }

    func testAHoldGivenBeforeAnAbnormalApplyIsUsed() throws {
        let (mine, myPayment) = try pending("u1", 1)
        let abnormal = try notifyDecision(mine, myPayment)
        XCTAssertEqual(abnormal.savedOrder?.status, .abnormal, "no stock, no hold yet")
        // A restock gives u1 a hold after the load, before the apply.
        giveHold("u1", key: "kh", until: now + 300_000)
        let refused = try apply(abnormal)
        XCTAssertFalse(refused.applied)
        XCTAssertEqual(abnormal.preconditions[refused.detail - 1], .holdRecord(product: "p1", user: "u1", record: ""))
        let again = try notifyDecision(mine, myPayment)
        XCTAssertTrue(try apply(again).applied)
        XCTAssertEqual(try load(order: mine.id).order?.status, .delivered)
        XCTAssertEqual(try load(order: mine.id).order?.keyIDs, ["kh"])
    }

    // MARK: keys_add v2 (the restock step)

    /// keys_add's KEYS on one server (the timers and the event log last).
    static func keysAddKeys(_ product: String) -> [String] {
        [CommerceKeys.info(product), CommerceKeys.cardKeys(product), CommerceKeys.stock(product), StoreKeys.restockLine(product),
         StoreKeys.watchExpiry(product), CommerceKeys.holds(product), CommerceKeys.holdsDue(product), CommerceKeys.outbox(product),
         CommerceKeys.timers, CommerceKeys.eventsLog]
    }

    /// keys_add's params on one server.
    static func keysAddParams(_ product: String, now: Int64, holdMs: Int64) -> String {
        JSON.object([("now", .int(now)), ("until", .int(now + holdMs)), ("hold_ms", .int(holdMs)), ("member", .string("hold:\(product)/r1")),
                     ("timers", .int(9)), ("log", .int(10)), ("outbox", .int(0)), ("retention", .int(259_200_000)),
                     ("event", .string(RestockOutcome.eventTemplate(product: product))),
                     ("key", .string(RestockOutcome.eventKey(product: product)))]).serialized()
    }

    /// The stores on this server (one server, or a cluster's outbox mode).
    func stores(cluster: Bool = false) throws -> (StoreFixture, RedisCommerceStore) {
        let f = try StoreFixture(cluster: cluster)
        let commerce = RedisCommerceStore(redis: f.link, retention: KeyRetention(times), historyTTL: 600, historySize: { _ in 50 },
                                          durability: .fsync, durabilityTimeoutMs: 1000, newEpoch: { "e1" })
        commerce.relay = f.relay
        XCTAssertTrue(try f.value { f.community.createProduct(ProductRecord(id: "p1", merchant: "m1", title: #"100% "real" key"#, price: 1999,
                                                                            currency: "CNY", createdAt: 1), $0) })
        return (f, commerce)
    }

    func line(_ f: StoreFixture, _ users: [String], at: Int64? = nil) throws {
        for u in users {
            _ = try f.value { f.community.watch(product: "p1", user: u, below: nil, restock: true, nowMs: at ?? now, ttlMs: 60_000, $0) }
        }
    }

    func upload(_ commerce: RedisCommerceStore, _ ids: [String], holdMs: Int64 = 300_000) throws -> KeysAdded {
        var out: Result<KeysAdded, GatewayError>?
        commerce.addKeys(product: "p1", merchant: nil, ids.map { SealedCardKey(id: $0, sealed: "s") },
                         terms: RestockTerms(nowMs: now, holdMs: holdMs)) { out = $0 }
        return try XCTUnwrap(out).get()
    }

    func events(_ f: StoreFixture) -> [String] {
        (f.redis.call(["XRANGE", CommerceKeys.eventsLog, "-", "+"]).array ?? []).compactMap { entry in
            let fields = entry.array?.last?.array?.compactMap(\.text) ?? []
            return stride(from: 0, to: fields.count - 1, by: 2).first { fields[$0] == "data" }.map { fields[$0 + 1] }
        }
    }

    func testAnUploadFromZeroHoldsKeysForTheFirstNInWatchOrder() throws {
        let (f, commerce) = try stores()
        try line(f, ["w1", "w2", "w3", "w4", "w5"])
        guard case .added(3, 0, 0, let restock?) = try upload(commerce, ["k1", "k2", "k3"]) else { return XCTFail("no restock") }
        XCTAssertEqual(restock.holders, ["w1", "w2", "w3"])
        XCTAssertEqual(restock.until, now + 300_000)
        XCTAssertEqual(restock.title, #"100% "real" key"#)
        let holds = try f.redis.call(["HGETALL", CommerceKeys.holds("p1")]).decode(as: RedisHash.self).fields
        XCTAssertEqual(holds, ["w1": "k1|\(now + 300_000)", "w2": "k2|\(now + 300_000)", "w3": "k3|\(now + 300_000)"])
        XCTAssertEqual(f.redis.call(["ZRANGE", StoreKeys.restockLine("p1"), 0, -1]).array?.compactMap(\.text), ["w4", "w5"])
        XCTAssertEqual(f.redis.call(["LLEN", CommerceKeys.stock("p1")]).int, 0)
        XCTAssertEqual(f.redis.call(["ZRANGEBYSCORE", CommerceKeys.timers, "-inf", "+inf"]).array?.compactMap(\.text).filter { $0.hasPrefix("hold:p1/") }.count, 1)
        XCTAssertEqual(events(f), [#"{"product":"p1","keys":3,"holds":3,"stock":0}"#])
        // The pushes: holders with the hold, the rest of the line without.
        XCTAssertEqual(try f.value { f.community.restockNotify(product: "p1", users: restock.holders, data: restock.pushData(hold: true), onlyInLine: false, $0) }, 3)
        XCTAssertTrue(f.pushes("user:w1").last?.contains(#""hold":{"until":\#(now + 300_000)}"#) ?? false, "\(f.pushes("user:w1"))")
        let page = try f.value { f.community.restockLine(product: "p1", after: nil, count: 1000, nowMs: now, $0) }
        XCTAssertEqual(page.users, ["w4", "w5"])
        XCTAssertEqual(try f.value { f.community.restockNotify(product: "p1", users: page.users + ["w1"], data: restock.pushData(hold: false), onlyInLine: true, $0) }, 2,
                       "a holder left the line: one push per restock")
        XCTAssertTrue(f.pushes("user:w5").last?.contains(#""product.restock""#) ?? false)
        XCTAssertFalse(f.pushes("user:w5").last?.contains("hold") ?? true)
        XCTAssertEqual(f.pushes("user:w1").count, 1)
    }

    func testAnUploadOntoStockHoldsNothing() throws {
        let (f, commerce) = try stores()
        f.redis.call(["RPUSH", CommerceKeys.stock("p1"), "k0"])
        try line(f, ["w1"])
        XCTAssertEqual(try upload(commerce, ["k1"]), .added(count: 1, duplicates: 0, stock: 2, restock: nil))
        XCTAssertEqual(f.redis.call(["HLEN", CommerceKeys.holds("p1")]).int, 0)
        XCTAssertEqual(events(f), [])
        XCTAssertEqual(f.redis.call(["ZCARD", CommerceKeys.timers]).int, 0)
    }

    func testAnUploadNobodyWaitedForWritesNoEvent() throws {
        let (f, commerce) = try stores()
        guard case .added(1, 0, 1, let restock?) = try upload(commerce, ["k1"]) else { return XCTFail("a restock all the same") }
        XCTAssertEqual(restock.holders, [])
        XCTAssertEqual(events(f), [])
    }

    func testEndedWatchesAreSkippedAndLeaveTheLine() throws {
        let (f, commerce) = try stores()
        try line(f, ["old"], at: now - 60_000)
        try line(f, ["w1"])
        guard case .added(_, _, _, let restock?) = try upload(commerce, ["k1", "k2"]) else { return XCTFail("no restock") }
        XCTAssertEqual(restock.holders, ["w1"], "fewer watchers than keys: the rest stays in stock")
        XCTAssertEqual(restock.stock, 1)
        XCTAssertEqual(f.redis.call(["ZCARD", StoreKeys.restockLine("p1")]).int, 0, "the ended watch left the line")
        XCTAssertEqual(events(f), [#"{"product":"p1","keys":2,"holds":1,"stock":1}"#])
    }

    func testHoldsOffStillAnnouncesTheRestock() throws {
        let (f, commerce) = try stores()
        try line(f, ["w1"])
        guard case .added(_, _, 1, let restock?) = try upload(commerce, ["k1"], holdMs: 0) else { return XCTFail("no restock") }
        XCTAssertEqual(restock.holders, [])
        XCTAssertEqual(f.redis.call(["ZCARD", StoreKeys.restockLine("p1")]).int, 1)
        XCTAssertEqual(events(f).count, 1)
    }

    func testOnAClusterTheEventGoesToTheOutboxAndTheTimerAhead() throws {
        let (f, commerce) = try stores(cluster: true)
        commerce.relay = nil  // the entries stay in the outbox to be read here
        try line(f, ["w1", "w2"])
        guard case .added(_, _, _, let restock?) = try upload(commerce, ["k1"]) else { return XCTFail("no restock") }
        XCTAssertEqual(restock.holders, ["w1"])
        let outbox = f.redis.call(["XRANGE", CommerceKeys.outbox("p1"), "-", "+"]).array ?? []
        XCTAssertEqual(outbox.count, 1)
        XCTAssertEqual(outbox.first?.array?.last?.array?.first?.text, "ev")
        XCTAssertEqual(f.redis.call(["EXISTS", CommerceKeys.eventsLog]).int, 0)
        XCTAssertEqual(f.redis.call(["ZCARD", CommerceKeys.timers]).int, 1, "written ahead")
    }

    // MARK: holds_release

    func testReleaseReturnsDueHoldsAndAnswersTheNextDue() throws {
        let (f, commerce) = try stores()
        giveHold("a", key: "ka", until: now - 1, on: f.redis)
        giveHold("b", key: "kb", until: now, on: f.redis)
        giveHold("c", key: "kc", until: now + 5_000, on: f.redis)
        var out: Result<HoldsReleased, GatewayError>?
        commerce.releaseHolds(product: "p1", nowMs: now, limit: 1) { out = $0 }
        XCTAssertEqual(try XCTUnwrap(out).get(), HoldsReleased(released: 1, more: true, nextDue: now))
        commerce.releaseHolds(product: "p1", nowMs: now, limit: 10) { out = $0 }
        XCTAssertEqual(try XCTUnwrap(out).get(), HoldsReleased(released: 1, more: false, nextDue: now + 5_000))
        XCTAssertEqual(f.redis.call(["LRANGE", CommerceKeys.stock("p1"), 0, -1]).array?.compactMap(\.text), ["ka", "kb"])
        XCTAssertEqual(try f.redis.call(["HGETALL", CommerceKeys.holds("p1")]).decode(as: RedisHash.self).fields.keys.sorted(), ["c"])
        commerce.releaseHolds(product: "p1", nowMs: now + 5_000, limit: 10) { out = $0 }
        XCTAssertEqual(try XCTUnwrap(out).get(), HoldsReleased(released: 1, more: false, nextDue: nil))
    }

    // MARK: the line

    func testWatchKeepsItsPlaceWatchWithoutRestockAndUnwatchLeaveTheLine() throws {
        let (f, _) = try stores()
        try line(f, ["a", "b", "c"])
        try line(f, ["a"])
        XCTAssertEqual(f.redis.call(["ZRANGE", StoreKeys.restockLine("p1"), 0, -1]).array?.compactMap(\.text), ["a", "b", "c"],
                       "watching again keeps the place")
        _ = try f.value { f.community.watch(product: "p1", user: "b", below: nil, nowMs: now, ttlMs: 60_000, $0) }
        try f.value { f.community.unwatch(product: "p1", user: "c", $0) }
        XCTAssertEqual(f.redis.call(["ZRANGE", StoreKeys.restockLine("p1"), 0, -1]).array?.compactMap(\.text), ["a"])
        try line(f, ["b"])
        XCTAssertEqual(f.redis.call(["ZRANGE", StoreKeys.restockLine("p1"), 0, -1]).array?.compactMap(\.text), ["a", "b"], "back at the end")
        giveHold("a", key: "ka", until: now + 1_000, on: f.redis)
        let listed = try f.value { f.community.watches(user: "a", nowMs: now, $0) }
        XCTAssertEqual(listed.first?.restock, true)
        XCTAssertEqual(listed.first?.hold, RestockHold(user: "a", keyID: "ka", until: now + 1_000))
        XCTAssertEqual(try f.value { f.community.watches(user: "a", nowMs: now + 1_000, $0) }.first?.hold, nil, "an ended hold is not shown")
        XCTAssertEqual(try f.value { f.community.product("p1", $0) }?.held, 1)
    }
}

extension RestockScriptTests {
    /// keys_add and holds_release as a cluster runs them: every key in the product's slot
    /// (the timer is written ahead, the event goes to the outbox).
    func testRestockScriptsTouchOneHashTagOnACluster() throws {
        let (f, commerce) = try stores(cluster: true)
        try line(f, ["w1"])
        _ = try upload(commerce, ["k1"])
        var released: Result<HoldsReleased, GatewayError>?
        commerce.releaseHolds(product: "p1", nowMs: now + 300_000, limit: 10) { released = $0 }
        XCTAssertEqual(try XCTUnwrap(released).get().released, 1)
        let calls = f.link.scriptKeys.filter { ["keys_add", "holds_release"].contains($0.name) }
        XCTAssertEqual(Set(calls.map(\.name)), ["keys_add", "holds_release"])
        for call in calls {
            XCTAssertEqual(Set(call.keys.map { HashSlot.of($0) }).count, 1, "\(call.name): \(call.keys)")
        }
    }
}
