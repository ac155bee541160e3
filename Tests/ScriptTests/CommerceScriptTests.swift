@testable import GatewayNode
import GatewayIO
import GatewayProtocol
import GatewayRedis
@testable import OrderCore
import XCTest

/// commerce_load, commerce_apply (every opcode, every failed check) and keys_add on a real
/// redis-server, with programs built by `CommerceProgram` from order-core decisions.
final class CommerceScriptTests: XCTestCase {
    var redis: ScriptRedis!
    let product = Product(id: "p1", merchant: "m1", title: "Steam key", price: 1999, currency: "CNY")
    let rules = OrderRules(times: CommerceTimes(orderTTL: 900_000, giftTTL: 86_400_000, friendpayTTL: 1_800_000, paymentGrace: 60_000))
    let retention = KeyRetention(CommerceTimes(orderTTL: 900_000, giftTTL: 86_400_000, friendpayTTL: 1_800_000, paymentGrace: 60_000))
    let now: Int64 = 1_763_900_000_000
    static let eventRetentionMs: Int64 = 259_200_000
    /// `members.levels` as the apply gets it (ARGV[6]).
    var ladder = MemberLevels.none

    override func setUpWithError() throws {
        redis = try ScriptRedis()
        redis.call(["HSET", CommerceKeys.info("p1"), "id", "p1", "merchant", "m1", "title", "Steam key", "price", "1999", "currency", "CNY"])
    }

    override func tearDown() { redis = nil }

    func id(_ prefix: String, _ n: Int) -> String { CommerceKeys.freshID(prefix, product: "p1", random: String(n)) }

    func fresh(_ n: Int) -> FreshIDs { FreshIDs(order: id("o", n), giftCode: id("g", n), payCode: id("f", n)) }

    func stockUp(_ ids: [String]) {
        redis.call(["RPUSH", CommerceKeys.stock("p1")] + ids.map { $0 as RedisArgument })
    }

    /// Runs `decision` through commerce_apply; {1, emitted} or {0, failed check}.
    @discardableResult
    func apply(_ decision: Decision, viaOutbox: Bool = false) throws -> (applied: Bool, detail: Int) {
        let settings = CommerceProgram.Settings(retention: retention, historySize: { _ in 100 }, viaOutbox: viaOutbox)
        let program = try XCTUnwrap(CommerceProgram(decision, product: "p1", settings))
        let reply = redis.run(CommerceScripts.apply, keys: program.keys, args: [program.encoded, "ep1", 3600, program.outbox, Self.eventRetentionMs,
                                                                          ladder.scriptArgument])
        var items = try RedisArrayReader(reply)
        return (try items.next(Int.self) == 1, try items.next(Int.self))
    }

    func load(_ keys: [String], _ entry: String) throws -> CommerceSnapshot {
        var items = try RedisArrayReader(redis.run(CommerceScripts.load, keys: keys, args: [entry]))
        let o = try items.next(RedisHash.self), p = try items.next(RedisHash.self), pr = try items.next(RedisHash.self)
        return CommerceSnapshot(order: Order(record: o.fields), payment: Payment(record: p.fields),
                                product: Product(record: pr.fields), stock: try items.next(Int.self))
    }

    func request(_ json: String) throws -> OrderRequest { try OrderRequest.decode(JSON.parse(Array(json.utf8))).get() }

    func created(_ json: String = #"{"buyer":"u1","product":"p1"}"#, _ n: Int = 1) throws -> Order {
        let d = try rules.create(request(json), product: product, now: now, fresh: fresh(n)).get()
        XCTAssertTrue(try apply(d).applied)
        return try XCTUnwrap(d.savedOrder)
    }

    /// A paid order: payment created, success notify applied.
    func paid(_ order: Order, payer: String = "u1", _ n: Int = 1) throws -> (Order, Payment) {
        let pd = try rules.createPayment(order: order, payer: payer, paymentID: id("pay", n), now: now).get()
        XCTAssertTrue(try apply(pd).applied)
        let payment = try XCTUnwrap(pd.savedPayment)
        let notify = PaymentNotify(payment: payment.id, order: order.id, amount: payment.amount, currency: payment.currency,
                                   outcome: .success, tradeNo: "T")
        let stock = Int(redis.call(["LLEN", CommerceKeys.stock("p1")]).int ?? 0)
        let d = try rules.notify(notify, payment: payment, order: order, stock: stock, now: now).get()
        XCTAssertTrue(try apply(d).applied)
        return (try XCTUnwrap(d.savedOrder), try XCTUnwrap(d.savedPayment))
    }

    // MARK: save_order, save_payment, index_code, push; commerce_load through every entry

    func testCreateSavesIndexesAndLoadFollowsTheLinks() throws {
        let order = try created(#"{"buyer":"u1","product":"p1","kind":"gift","gift":{"to":"u2"},"idempotency_key":"shop/k1"}"#)
        let orderKey = try XCTUnwrap(CommerceKeys.order(order.id))
        XCTAssertEqual(HashSlot.of(orderKey), HashSlot.of(CommerceKeys.stock("p1")), "the order lives in its product's slot")
        XCTAssertEqual(redis.call(["HGET", orderKey, "status"]).text, "pending_payment")
        XCTAssertEqual(redis.call(["HGET", orderKey, CommerceKeys.Link.info]).text, CommerceKeys.info("p1"))
        let giftKey = try XCTUnwrap(CommerceKeys.giftCode(order.gift!.code))
        XCTAssertEqual(redis.call(["GET", giftKey]).text, orderKey, "index_code points at the order's key")
        let ttl = try XCTUnwrap(redis.call(["PTTL", giftKey]).int)
        XCTAssertTrue((1...retention.giftCodeMs).contains(ttl), "\(ttl)")
        let idem = CommerceKeys.idempotency(product: "p1", buyer: "u1", key: "shop/k1")
        XCTAssertEqual(redis.call(["GET", idem]).text, orderKey)
        XCTAssertEqual(redis.call(["ZSCORE", CommerceKeys.timers, "pay:\(order.id)"]).text.flatMap { Int64($0) }, order.expiresAt,
                       "one server: the script writes the timer with the decision")
        // The status push went out inline, on the buyer's channel.
        let log = redis.call(["XRANGE", StoreKeys.log(Channel(kind: .user, id: "u1")), "-", "+"]).array ?? []
        XCTAssertEqual(log.count, 1)

        for (keys, entry) in [([orderKey], "order"), ([giftKey], "lookup"), ([idem], "lookup")] {
            let s = try load(keys, entry)
            XCTAssertEqual(s.order, order, entry)
            XCTAssertEqual(s.product, product, entry)
            XCTAssertNil(s.payment)
        }
        let byProduct = try load([CommerceKeys.info("p1"), CommerceKeys.stock("p1")], "product")
        XCTAssertNil(byProduct.order)
        XCTAssertEqual(byProduct.product, product)
        XCTAssertNil(try load([CommerceKeys.giftCode(id("g", 99))!], "lookup").order, "an unknown code loads nothing")
    }

    func testNotifyAllocatesKeysAndLoadByPaymentReachesTheOrder() throws {
        stockUp(["k1", "k2", "k3"])
        let order = try created(#"{"buyer":"u1","product":"p1","quantity":2}"#)
        let (delivered, payment) = try paid(order)
        XCTAssertEqual(delivered.status, .delivered)
        let s = try load([CommerceKeys.payment(payment.id)!], "payment")
        XCTAssertEqual(s.order?.keyIDs, ["k1", "k2"], "allocate_keys took the head of the stock")
        XCTAssertEqual(s.payment?.status, .succeeded)
        XCTAssertEqual(s.stock, 1)
        XCTAssertEqual(try load([CommerceKeys.order(order.id)!], "order").payment?.id, payment.id, "the order links its payment")
        XCTAssertNil(redis.call(["ZSCORE", CommerceKeys.timers, "pay:\(order.id)"]).text, "one server: the script removed the paid order's timer")
        XCTAssertEqual(redis.call(["HGET", CommerceKeys.members("p1"), "u1"]).text, "1")
    }

    // MARK: return_keys, burn_keys, add_member, remove_member

    func testRefundBurnsDeliveredKeysAndRemovesTheMember() throws {
        stockUp(["k1", "k2"])
        let (delivered, payment) = try paid(try created())
        let productLog = StoreKeys.log(Channel(kind: .product, id: "p1"))
        XCTAssertEqual((redis.call(["XRANGE", productLog, "-", "+"]).array ?? []).count, 1, "add_member: product.buyers once")
        let refund = try rules.refund(delivered, payment: payment, now: now).get()
        XCTAssertTrue(try apply(refund).applied)
        XCTAssertEqual(redis.call(["SMEMBERS", CommerceKeys.burned("p1")]).array?.compactMap(\.text), ["k1"])
        XCTAssertEqual(redis.call(["HEXISTS", CommerceKeys.members("p1"), "u1"]).int, 0, "remove_member drops the user at 0")
        let buyers = (redis.call(["XRANGE", productLog, "-", "+"]).array ?? []).compactMap { $0.array?[1].array?[1].text }
        XCTAssertEqual(buyers.count, 2)
        XCTAssertTrue(buyers[1].contains(#""data":{"product":"p1","buyers":0}"#), buyers[1])
        XCTAssertEqual(redis.call(["LRANGE", CommerceKeys.stock("p1"), 0, -1]).array?.compactMap(\.text), ["k2"], "burned keys are not restocked")
    }

    // MARK: The payments ledger

    func testRefundLeavesThePaymentOwedUntilTheShopsRefundedCall() throws {
        stockUp(["k1"])
        let (delivered, payment) = try paid(try created())
        let paymentKey = try XCTUnwrap(CommerceKeys.payment(payment.id))
        XCTAssertEqual(redis.call(["HGET", paymentKey, "provider"]).text, "hmac")
        let refund = try rules.refund(delivered, payment: payment, now: now + 5).get()
        XCTAssertTrue(try apply(refund).applied)
        let owed = try XCTUnwrap(try load([paymentKey], "payment").payment)
        XCTAssertEqual(owed.status, .refundRequired)
        XCTAssertEqual(owed.updatedAt, now + 5)
        let buyerLog = StoreKeys.log(Channel(kind: .user, id: "u1"))
        func pushTypes() -> [String] {
            (redis.call(["XRANGE", buyerLog, "-", "+"]).array ?? []).compactMap { $0.array?[1].array?[1].text }
                .compactMap { try? JSON.parse(Array($0.utf8))["push"]?.stringValue }
        }
        XCTAssertTrue(pushTypes().contains("payment.refund_required"))
        XCTAssertFalse(pushTypes().contains("payment.refunded"), "nothing was sent back yet")

        let settle = try rules.markRefunded(owed, id: owed.id, refundNo: "R-1", now: now + 9).get()
        // A second node deciding on the same snapshot loses the version check and writes nothing.
        let rival = try rules.markRefunded(owed, id: owed.id, refundNo: "R-2", now: now + 9).get()
        XCTAssertTrue(try apply(settle).applied)
        XCTAssertFalse(try apply(rival).applied)
        let settled = try XCTUnwrap(try load([paymentKey], "payment").payment)
        XCTAssertEqual(settled.status, .refunded)
        XCTAssertEqual(settled.refundNo, "R-1")
        XCTAssertEqual(settled.updatedAt, now + 9)
        XCTAssertEqual(pushTypes().filter { $0 == "payment.refunded" }.count, 1)
        XCTAssertEqual(try rules.markRefunded(settled, id: settled.id, refundNo: "R-1", now: now + 10).get(), Decision(),
                       "the same call again changes nothing")
    }

    func testLateSuccessOfAFailedPaymentPaysThroughTheScript() throws {
        stockUp(["k1"])
        let order = try created()
        let pd = try rules.createPayment(order: order, payer: "u1", paymentID: id("pay", 1), now: now).get()
        XCTAssertTrue(try apply(pd).applied)
        let payment = try XCTUnwrap(pd.savedPayment)
        func notice(_ outcome: PaymentNotify.Outcome, _ trade: String) -> PaymentNotify {
            PaymentNotify(payment: payment.id, order: order.id, amount: payment.amount, currency: payment.currency,
                          outcome: outcome, tradeNo: trade, provider: "epay")
        }
        let failed = try rules.notify(notice(.failed, "T-F"), payment: payment, order: order, stock: 1, now: now).get()
        XCTAssertTrue(try apply(failed).applied)
        let paymentKey = try XCTUnwrap(CommerceKeys.payment(payment.id))
        let s = try load([paymentKey], "payment")
        XCTAssertEqual(s.payment?.status, .failed)
        XCTAssertEqual(s.payment?.tradeNo, "T-F")
        let late = try rules.notify(notice(.success, "T-S"), payment: s.payment, order: s.order, stock: s.stock, now: now + 1).get()
        XCTAssertEqual(NotifyOutcome(late), .paid)
        XCTAssertTrue(try apply(late).applied)
        let after = try load([paymentKey], "payment")
        XCTAssertEqual(after.payment?.status, .succeeded)
        XCTAssertEqual(after.payment?.tradeNo, "T-S")
        XCTAssertEqual(after.payment?.provider, "epay")
        XCTAssertEqual(after.order?.status, .delivered)
        XCTAssertEqual(after.order?.keyIDs, ["k1"])
    }

    func testSecondOrderOfAMemberPublishesNoBuyersChange() throws {
        stockUp(["k1", "k2"])
        _ = try paid(try created(#"{"buyer":"u1","product":"p1"}"#, 1), 1)
        _ = try paid(try created(#"{"buyer":"u1","product":"p1"}"#, 2), 2)
        XCTAssertEqual(redis.call(["HGET", CommerceKeys.members("p1"), "u1"]).text, "2")
        XCTAssertEqual((redis.call(["XRANGE", StoreKeys.log(Channel(kind: .product, id: "p1")), "-", "+"]).array ?? []).count, 1)
    }

    func testDeclinedGiftReturnsItsKeysToStock() throws {
        stockUp(["k1", "k2"])
        let (gift, payment) = try paid(try created(#"{"buyer":"u1","product":"p1","kind":"gift","gift":{"to":"u2"}}"#))
        XCTAssertEqual(gift.status, .paid)
        XCTAssertEqual(redis.call(["LRANGE", CommerceKeys.stock("p1"), 0, -1]).array?.compactMap(\.text), ["k2"])
        let stored = try XCTUnwrap(try load([CommerceKeys.order(gift.id)!], "order").order)
        let d = try rules.decline(stored, by: "u2", payment: payment, now: now).get()
        XCTAssertTrue(try apply(d).applied)
        XCTAssertEqual(redis.call(["LRANGE", CommerceKeys.stock("p1"), 0, -1]).array?.compactMap(\.text), ["k2", "k1"])
        XCTAssertEqual(redis.call(["HGET", CommerceKeys.order(gift.id)!, "keys"]).text, "")
    }

    // MARK: push through the outbox (cluster)

    func testPushesGoToTheOutboxOnACluster() throws {
        let d = try rules.create(request(#"{"buyer":"u1","product":"p1","kind":"friendpay","friendpay":{"to":"u2"}}"#),
                                 product: product, now: now, fresh: fresh(1)).get()
        let settings = CommerceProgram.Settings(retention: retention, historySize: { _ in 100 }, viaOutbox: true)
        let program = try XCTUnwrap(CommerceProgram(d, product: "p1", settings))
        XCTAssertTrue(program.keys.allSatisfy { HashSlot.of($0) == HashSlot.of("product:p1") }, "one slot: \(program.keys)")
        let result = try apply(d, viaOutbox: true)
        XCTAssertTrue(result.applied)
        XCTAssertEqual(result.detail, 2, "order.status to u1 and friendpay.requested to u2")
        let entries = redis.call(["XRANGE", CommerceKeys.outbox("p1"), "-", "+"]).array ?? []
        XCTAssertEqual(entries.compactMap { $0.array?[1].array?[1].text }, ["user:u1", "user:u2"])
        XCTAssertEqual(redis.call(["EXISTS", StoreKeys.log(Channel(kind: .user, id: "u1"))]).int, 0, "nothing published inline")
        XCTAssertEqual(redis.call(["EXISTS", CommerceKeys.timers]).int, 0, "cluster: timers are written by the store, in their own slot")
        XCTAssertEqual(program.timersAhead.map(\.member), ["pay:\(d.savedOrder!.id)"])
    }

    // MARK: events (contract 4.4): in the decision's own step

    /// The log's entries: (id, type, key, at).
    func events() -> [(id: String, type: String, key: String, at: String)] {
        (redis.call(["XRANGE", CommerceKeys.eventsLog, "-", "+"]).array ?? []).compactMap { entry in
            guard let id = entry.array?[0].text, let f = entry.array?[1].array?.compactMap(\.text) else { return nil }
            var map: [String: String] = [:]
            for i in stride(from: 0, to: f.count - 1, by: 2) { map[f[i]] = f[i + 1] }
            return (id, map["type"] ?? "", map["key"] ?? "", map["at"] ?? "")
        }
    }

    func streamID(_ id: String) throws -> [Int64] {
        let parts = id.split(separator: "-").compactMap { Int64($0) }
        XCTAssertEqual(parts.count, 2, "a stream id: \(id)")
        return parts
    }

    func testApplyAppendsEventsToTheLogInTheSameStep() throws {
        stockUp(["k1"])
        let order = try created()
        XCTAssertTrue(events().isEmpty, "creating an order tells the shop nothing")
        let (_, payment) = try paid(order)
        let log = events()
        XCTAssertEqual(log.map(\.type), ["order.paid", "order.delivered"])
        XCTAssertEqual(log.map(\.key), [order.id, order.id])
        XCTAssertEqual(log.map(\.at), [String(now), String(now)], "the decision's time")
        let (first, second) = (try streamID(log[0].id), try streamID(log[1].id))
        XCTAssertTrue(first.lexicographicallyPrecedes(second), "ids increase: \(first) \(second)")
        let data = redis.call(["XRANGE", CommerceKeys.eventsLog, "-", "+"]).array?.first?.array?[1].array?.last?.text ?? ""
        XCTAssertFalse(data.contains("k1"), "no card key id in an event")

        // The same notify decided on the old snapshot again: its check fails, nothing is written.
        let stale = PaymentNotify(payment: payment.id, order: order.id, amount: payment.amount, currency: payment.currency,
                                  outcome: .success, tradeNo: "T")
        var unpaid = payment
        unpaid.status = .created
        unpaid.version -= 1
        let again = try rules.notify(stale, payment: unpaid, order: order, stock: 1, now: now + 5).get()
        XCTAssertFalse(again.events.isEmpty)
        XCTAssertFalse(try apply(again).applied)
        XCTAssertEqual(events().count, 2, "a refused decision writes no event")
    }

    func testEventsOfARefundFollowTheRefundInOneStep() throws {
        stockUp(["k1"])
        let (order, payment) = try paid(try created())
        let refund = try rules.refund(order, payment: payment, now: now + 10).get()
        XCTAssertTrue(try apply(refund).applied)
        XCTAssertEqual(events().map(\.type), ["order.paid", "order.delivered", "order.refunded", "payment.refund_required"])
        XCTAssertEqual(redis.call(["HGET", CommerceKeys.payment(payment.id)!, "status"]).text, "refund_required")
    }

    /// One key in stock, an order paid and its success notify decided, and that decision as
    /// a cluster runs it (pushes, events and points through the outbox).
    private func clusterDelivery() throws -> (Order, Decision, CommerceProgram) {
        stockUp(["k1"])
        let order = try created()
        let pd = try rules.createPayment(order: order, payer: "u1", paymentID: id("pay", 1), now: now).get()
        XCTAssertTrue(try apply(pd).applied)
        let payment = try XCTUnwrap(pd.savedPayment)
        let notify = PaymentNotify(payment: payment.id, order: order.id, amount: payment.amount, currency: payment.currency,
                                   outcome: .success, tradeNo: "T")
        let d = try rules.notify(notify, payment: payment, order: order, stock: 1, now: now).get()
        let settings = CommerceProgram.Settings(retention: retention, historySize: { _ in 100 }, viaOutbox: true)
        return (order, d, try XCTUnwrap(CommerceProgram(d, product: "p1", settings)))
    }

    func testOnAClusterEventsGoToTheOutboxNotTheLog() throws {
        let (order, d, program) = try clusterDelivery()
        XCTAssertFalse(program.keys.contains(CommerceKeys.eventsLog), "the log is in another slot")
        XCTAssertTrue(program.keys.allSatisfy { HashSlot.of($0) == HashSlot.of("product:p1") }, "one slot: \(program.keys)")
        XCTAssertTrue(try apply(d, viaOutbox: true).applied)
        let entries = (redis.call(["XRANGE", CommerceKeys.outbox("p1"), "-", "+"]).array ?? []).compactMap { $0.array?[1].array?.compactMap(\.text) }
        let evs = entries.filter { $0.first == "ev" }
        XCTAssertEqual(evs.map { $0[1] }, ["order.paid", "order.delivered"])
        XCTAssertEqual(evs.first?[2...5].map { $0 }, ["key", order.id, "at", String(now)])
        XCTAssertEqual(redis.call(["EXISTS", CommerceKeys.eventsLog]).int, 0, "nothing appended inline")
    }

    // MARK: every failed check

    func testEveryFailedCheckChangesNothing() throws {
        stockUp(["k1"])
        let order = try created()
        let orderKey = CommerceKeys.order(order.id)!
        let save = Effect.saveOrder(order)
        var moved = order
        moved.status = .canceled
        let cases: [(String, Precondition)] = [
            ("check_version", .orderVersion(order.id, order.version + 1)),
            ("check_absent", .orderAbsent(order.id)),
            ("check_stock_at_least", .stockAtLeast(product: "p1", 2)),
            ("check_stock_below", .stockBelow(product: "p1", 1)),
        ]
        for (name, failing) in cases {
            let d = Decision(preconditions: [.orderVersion(order.id, order.version), failing],
                             effects: [.saveOrder(moved), .push(user: "u9", type: "t", data: .object([]))])
            let result = try apply(d)
            XCTAssertFalse(result.applied, name)
            XCTAssertEqual(result.detail, 2, "\(name): the index of the failed check")
            XCTAssertEqual(redis.call(["HGET", orderKey, "status"]).text, "pending_payment", name)
            XCTAssertEqual(redis.call(["EXISTS", StoreKeys.log(Channel(kind: .user, id: "u9"))]).int, 0, name)
        }
        // And each holds when it should.
        let holding = Decision(preconditions: [.orderVersion(order.id, order.version), .paymentAbsent(id("pay", 5)),
                                               .stockAtLeast(product: "p1", 1), .stockBelow(product: "p1", 2),
                                               .idempotencyAbsent(buyer: "u1", product: "p1", key: "shop/x")],
                               effects: [save])
        XCTAssertTrue(try apply(holding).applied)
    }

    // MARK: Member points (lib_points): in the decision's step, or through the outbox

    /// The `member.level` pushes on a user's channel, as data.
    func levelPushes(_ user: String) throws -> [JSON] {
        try (redis.call(["XRANGE", StoreKeys.log(.user(user)), "-", "+"]).array ?? []).compactMap { entry in
            let push = try JSON.parse(try XCTUnwrap(entry.array?.last?.array?.last?.text))
            return push["push"] == .string("member.level") ? push["data"] : nil
        }
    }

    func testDeliveryCountsPointsAndARefundTakesThemBackInTheSameStep() throws {
        ladder = try MemberLevels(validating: [MemberLevel(name: "silver", minPoints: 1_999, discountPercent: 5)])
        stockUp(["k1"])
        let (delivered, payment) = try paid(try created())
        let points = StoreKeys.memberPoints("u1")
        XCTAssertEqual(redis.call(["HGET", points, "total"]).text, "1999")
        XCTAssertEqual(redis.call(["HGET", points, "o:\(delivered.id)"]).text, "1999")
        XCTAssertEqual(try levelPushes("u1"), [try JSON.parse(#"{"level":"silver","previous":null,"points":1999}"#)])
        XCTAssertTrue(try apply(try rules.refund(delivered, payment: payment, now: now).get()).applied)
        XCTAssertEqual(redis.call(["HGET", points, "total"]).text, "0")
        XCTAssertEqual(redis.call(["HEXISTS", points, "o:\(delivered.id)"]).int, 0)
        XCTAssertEqual(try levelPushes("u1").last, try JSON.parse(#"{"level":null,"previous":"silver","points":0}"#))
    }

    /// The memory twin moves points and pushes `member.level` as lib_points does.
    func testMemoryStoreMovesPointsAsTheScriptDoes() throws {
        ladder = try MemberLevels(validating: [MemberLevel(name: "silver", minPoints: 1_999, discountPercent: 5)])
        stockUp(["k1"])
        let memory = MemoryCommerceStore()
        memory.memberLevels = ladder
        let settings = CommerceProgram.Settings(retention: retention, historySize: { _ in 100 }, viaOutbox: false)
        let (delivered, payment) = try paid(try created())
        let award = Decision(effects: [.awardPoints(user: "u1", order: delivered.id, amount: delivered.amount)])
        XCTAssertNil(memory.run(try XCTUnwrap(CommerceProgram(award, product: "p1", settings))))
        XCTAssertNil(memory.run(try XCTUnwrap(CommerceProgram(award, product: "p1", settings))), "a repeat")
        let refund = try rules.refund(delivered, payment: payment, now: now).get()
        XCTAssertTrue(try apply(refund).applied)
        XCTAssertNil(memory.run(try XCTUnwrap(CommerceProgram(Decision(effects: [.revokePoints(user: "u1", order: delivered.id)]),
                                                              product: "p1", settings))))
        let key = StoreKeys.memberPoints("u1")
        XCTAssertEqual(memory.hashes[key], try redis.call(["HGETALL", key]).decode(as: RedisHash.self).fields)
        let twinPushes = try memory.pushes.filter { $0.type == "member.level" }.map { try JSON.parse($0.data) }
        XCTAssertEqual(twinPushes, try levelPushes("u1"))
        XCTAssertEqual(twinPushes.count, 2, "up at the delivery, down at the refund")
    }

    /// Cluster: the user's points are in the user's slot, so the apply writes a `member.points`
    /// entry of the user's channel; relay.lua applies it there, once however often it is relayed.
    func testOnAClusterPointsGoThroughTheOutboxAndTheRelayAppliesThemOnce() throws {
        ladder = try MemberLevels(validating: [MemberLevel(name: "silver", minPoints: 1_999, discountPercent: 5)])
        let (order, d, program) = try clusterDelivery()
        XCTAssertTrue(program.keys.allSatisfy { HashSlot.of($0) == HashSlot.of("product:p1") }, "one slot: \(program.keys)")
        XCTAssertTrue(try apply(d, viaOutbox: true).applied)
        XCTAssertEqual(redis.call(["EXISTS", StoreKeys.memberPoints("u1")]).int, 0, "nothing applied inline")
        let entries = redis.call(["XRANGE", CommerceKeys.outbox("p1"), "-", "+"]).array ?? []
        let moves = entries.filter { $0.array?[1].array?.compactMap(\.text).contains("member.points") == true }
        XCTAssertEqual(moves.count, 1)
        let move = try XCTUnwrap(moves.first?.array)
        let fields = try XCTUnwrap(move[1].array?.compactMap(\.text))
        XCTAssertEqual(fields[1], "user:u1")
        let data = fields[5]
        XCTAssertEqual(try JSON.parse(data), try JSON.parse(#"{"order":"\#(order.id)","amount":"1999","ladder":[[1999,"silver"]]}"#))
        let user = Channel.user("u1")
        let keys = [StoreKeys.meta(user), StoreKeys.log(user), StoreKeys.memberPoints("u1")]
        let args: [RedisArgument] = [CommerceKeys.outbox("p1"), "user:u1", 600, "e1", try XCTUnwrap(move[0].text), "member.points", data, 100]
        for _ in 1...2 {
            let reply = redis.run(ChannelScripts.relay, keys: keys, args: args)
            XCTAssertEqual(reply.array?.count, 1, "\(reply)")
        }
        XCTAssertEqual(redis.call(["HGET", StoreKeys.memberPoints("u1"), "total"]).text, "1999", "counted once")
        XCTAssertEqual(try levelPushes("u1"), [try JSON.parse(#"{"level":"silver","previous":null,"points":1999}"#)])
    }

    func testUnknownOpcodeIsRefusedBeforeAnyWrite() throws {
        let keys = ["gw:{\(CommerceKeys.tag(product: "p1"))}:order:x"]
        let program = #"{"checks":[],"ops":[{"op":"save_order","key":1,"fields":["a","1"]},{"op":"teleport"}]}"#
        let reply = redis.run(CommerceScripts.apply, keys: keys, args: [program, "e", 60, 0])
        guard case .error(let message) = reply else { return XCTFail("\(reply)") }
        XCTAssertTrue(message.contains("unknown op teleport"), message)
        XCTAssertEqual(redis.call(["EXISTS", keys[0]]).int, 0)
    }

    // MARK: keys_add

    func testKeysAddChecksTheMerchantAndSkipsDuplicates() throws {
        let keys = RestockScriptTests.keysAddKeys("p1")
        func add(_ merchant: String, _ pairs: [String], product: [String]? = nil) -> [String] {
            let reply = redis.run(CommerceScripts.addKeys, keys: product ?? keys,
                                  args: [merchant, RestockScriptTests.keysAddParams("p1", now: now, holdMs: 0)] + pairs.map { $0 as RedisArgument })
            return Array((reply.array ?? []).compactMap { $0.text ?? $0.int.map(String.init) }.prefix(4))
        }
        XCTAssertEqual(add("m1", ["a", "sa", "b", "sb"]), ["ok", "2", "0", "2"])
        XCTAssertEqual(add("", ["b", "sb2", "c", "sc"]), ["ok", "1", "1", "3"], "the shop may add; a seen id is a duplicate")
        XCTAssertEqual(redis.call(["HGET", keys[1], "b"]).text, "sb", "a duplicate never replaces the stored key")
        XCTAssertEqual(add("m2", ["d", "sd"]), ["other_merchant", "0", "0", "0"])
        let none = RestockScriptTests.keysAddKeys("p2")
        XCTAssertEqual(add("", ["d", "sd"], product: none), ["no_product", "0", "0", "0"])
        XCTAssertEqual(redis.call(["LRANGE", keys[2], 0, -1]).array?.compactMap(\.text), ["a", "b", "c"])
    }

    // MARK: the in-memory twin agrees with the script

    func testMemoryStoreRunsProgramsAsTheScriptDoes() throws {
        stockUp(["k1", "k2", "k3"])
        let memory = MemoryCommerceStore()
        memory.addProduct(product)
        memory.addKeys(product: "p1", merchant: nil, ["k1", "k2", "k3"].map { SealedCardKey(id: $0, sealed: "s") },
                       terms: RestockTerms(nowMs: now, holdMs: 0)) { _ in }
        let settings = CommerceProgram.Settings(retention: retention, historySize: { _ in 100 }, viaOutbox: false)
        let order = try created(#"{"buyer":"u1","product":"p1","quantity":2}"#)
        let create = try rules.create(request(#"{"buyer":"u1","product":"p1","quantity":2}"#), product: product, now: now, fresh: fresh(1)).get()
        XCTAssertNil(memory.run(try XCTUnwrap(CommerceProgram(create, product: "p1", settings))))
        let (_, payment) = try paid(order)
        let pd = try rules.createPayment(order: order, payer: "u1", paymentID: payment.id, now: now).get()
        XCTAssertNil(memory.run(try XCTUnwrap(CommerceProgram(pd, product: "p1", settings))))
        let notify = PaymentNotify(payment: payment.id, order: order.id, amount: payment.amount, currency: payment.currency, outcome: .success, tradeNo: "T")
        let nd = try rules.notify(notify, payment: pd.savedPayment, order: order, stock: 3, now: now).get()
        XCTAssertNil(memory.run(try XCTUnwrap(CommerceProgram(nd, product: "p1", settings))))
        for key in [CommerceKeys.order(order.id)!, CommerceKeys.payment(payment.id)!, CommerceKeys.members("p1"),
                    StoreKeys.memberPoints("u1")] {
            let stored = try redis.call(["HGETALL", key]).decode(as: RedisHash.self)
            XCTAssertEqual(memory.hashes[key], stored.fields, key)
        }
        XCTAssertEqual(memory.stock("p1"), ["k3"])
        XCTAssertEqual(redis.call(["LRANGE", CommerceKeys.stock("p1"), 0, -1]).array?.compactMap(\.text), ["k3"])
    }

    /// The link fields are the store's, not the record's: commerce_load follows them and
    /// leaves them out of what it returns (the node decodes every field it gets).
    func testLoadReturnsNoLinkFields() throws {
        stockUp(["k1"])
        let (_, payment) = try paid(try created())
        for (keys, entry) in [([CommerceKeys.payment(payment.id)!], "payment"), ([CommerceKeys.order(payment.order)!], "order")] {
            var items = try RedisArrayReader(redis.run(CommerceScripts.load, keys: keys, args: [entry]))
            let order = try items.next(RedisHash.self), paid = try items.next(RedisHash.self)
            XCTAssertEqual(order["status"], "delivered", entry)
            XCTAssertEqual(paid["status"], "succeeded", entry)
            for (name, record) in [("order", order), ("payment", paid)] {
                XCTAssertEqual(record.fields.keys.filter { $0.hasPrefix("link:") }, [], "\(entry): \(name)")
            }
        }
    }

    /// A record with `link:info` and no `link:stock` (a partly upgraded v1 record) reads
    /// the product and no stock instead of raising on LLEN of nothing.
    func testLoadOfARecordWithOneLinkAndNotTheOther() throws {
        let order = try created()
        let key = try XCTUnwrap(CommerceKeys.order(order.id))
        redis.call(["HDEL", key, CommerceKeys.Link.stock])
        XCTAssertFalse(redis.run(CommerceScripts.load, keys: [key], args: ["order"]).isFailure)
        let s = try load([key], "order")
        XCTAssertEqual(s.order?.id, order.id)
        XCTAssertEqual(s.product, product)
        XCTAssertEqual(s.stock, 0)
    }

    /// The v1 upgrade's steps: each changes a record once, and only the record it was read from.
    func testLegacyUpgradeStepsAreIdempotent() throws {
        let order = "gw:{order:o-0123456789abcdef0123}:info"
        XCTAssertEqual(redis.run(CommerceScripts.legacyLink, keys: [order], args: ["link:info", "x"]).int, 0, "no record: nothing made")
        XCTAssertEqual(redis.call(["EXISTS", order]).int, 0)
        redis.call(["HSET", order, "id", "o-0123456789abcdef0123"])
        XCTAssertEqual(redis.run(CommerceScripts.legacyLink, keys: [order], args: ["link:info", "x"]).int, 1)
        XCTAssertEqual(redis.run(CommerceScripts.legacyLink, keys: [order], args: ["link:info", "x"]).int, 0, "rerun")
        XCTAssertEqual(redis.call(["HGET", order, "link:info"]).bytes.map { String(decoding: $0, as: UTF8.self) }, "x")

        let code = "gw:giftcode:g-0123456789abcdef0123"
        redis.call(["SET", code, "o-0123456789abcdef0123", "PX", 600_000])
        XCTAssertEqual(redis.run(CommerceScripts.legacyLookup, keys: [code], args: ["o-0123456789abcdef0123", order]).int, 1)
        XCTAssertEqual(redis.run(CommerceScripts.legacyLookup, keys: [code], args: ["o-0123456789abcdef0123", order]).int, 0, "rerun")
        XCTAssertEqual(redis.call(["GET", code]).bytes.map { String(decoding: $0, as: UTF8.self) }, order)
        XCTAssertGreaterThan(redis.call(["PTTL", code]).int ?? -1, 0, "TTL kept")

        let old = "gw:idem:{u1}:shop/k", today = CommerceKeys.idempotency(product: "p1", buyer: "u1", key: "shop/k")
        redis.call(["SET", old, "o-0123456789abcdef0123", "PX", 600_000])
        XCTAssertEqual(redis.run(CommerceScripts.legacyIdempotency, keys: [old, today], args: ["o-0123456789abcdef0123", order]).int, 1)
        XCTAssertEqual(redis.run(CommerceScripts.legacyIdempotency, keys: [old, today], args: ["o-0123456789abcdef0123", "other"]).int, 0, "NX")
        XCTAssertEqual(redis.call(["GET", today]).bytes.map { String(decoding: $0, as: UTF8.self) }, order)
        let ttl = redis.call(["PTTL", today]).int ?? -1
        XCTAssertTrue(ttl > 0 && ttl <= 600_000, "the old key's remaining TTL: \(ttl)")
    }
}
