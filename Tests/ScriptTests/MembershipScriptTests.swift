@testable import GatewayNode
import GatewayProtocol
import GatewayRedis
@testable import OrderCore
import XCTest

/// Validity memberships (4.6) in the scripts: commerce_load's membership element (through
/// the order's link, for the owner or a claimer, and the `membership` entry), and
/// commerce_apply's check_field, save_field and set_add; the memory twin alike.
final class MembershipScriptTests: XCTestCase {
    var redis: ScriptRedis!
    let product = Product(id: "p1", merchant: "m1", title: "VIP", price: 1999, currency: "CNY", validityDays: 30)
    let rules = OrderRules(times: CommerceTimes(orderTTL: 900_000, giftTTL: 86_400_000, friendpayTTL: 1_800_000, paymentGrace: 60_000))
    let retention = KeyRetention(CommerceTimes(orderTTL: 900_000, giftTTL: 86_400_000, friendpayTTL: 1_800_000, paymentGrace: 60_000))
    let now: Int64 = 1_763_900_000_000
    /// The create and payment decisions `delivered` applied, for the memory twin to run too.
    var steps: [Decision] = []

    override func setUpWithError() throws {
        redis = try ScriptRedis()
        redis.call(["HSET", CommerceKeys.info("p1"), "id", "p1", "merchant", "m1", "title", "VIP", "price", "1999",
                    "currency", "CNY", "validity_days", "30"])
        redis.call(["RPUSH", CommerceKeys.stock("p1"), "k1", "k2"])
    }

    override func tearDown() { redis = nil }

    func settings(viaOutbox: Bool = false) -> CommerceProgram.Settings {
        CommerceProgram.Settings(retention: retention, historySize: { _ in 100 }, viaOutbox: viaOutbox)
    }

    @discardableResult
    func apply(_ decision: Decision) throws -> (applied: Bool, detail: Int) {
        let program = try XCTUnwrap(CommerceProgram(decision, product: "p1", settings()))
        let reply = redis.run(CommerceScripts.apply, keys: program.keys, args: [program.encoded, "ep1", 3600, program.outbox, 259_200_000, "[]"])
        var items = try RedisArrayReader(reply)
        return (try items.next(Int.self) == 1, try items.next(Int.self))
    }

    /// Elements 5 and 6 of commerce_load: the hold (never read here) and the membership record.
    func loadTail(_ keys: [String], _ args: [RedisArgument]) throws -> (hold: String?, membership: String?, count: Int) {
        let reply = redis.run(CommerceScripts.load, keys: keys, args: args)
        var items = try RedisArrayReader(reply)
        _ = try items.next(RedisHash.self); _ = try items.next(RedisHash.self); _ = try items.next(RedisHash.self)
        _ = try items.next(Int.self)
        let hold = try items.next(String?.self), membership = try items.next(String?.self)
        return (hold, membership, 6)
    }

    /// A normal order of u1 created and delivered through the scripts, with the membership the load gave.
    func delivered(_ n: Int, membership: Linked<Membership>) throws -> (Order, Decision) {
        let fresh = FreshIDs(order: CommerceKeys.freshID("o", product: "p1", random: "\(n)"), giftCode: "g", payCode: "f")
        let create = try rules.create(OrderRequest(buyer: "u1", product: "p1", quantity: 1, kind: .normal), product: product, now: now, fresh: fresh).get()
        XCTAssertTrue(try apply(create).applied)
        steps.append(create)
        let order = try XCTUnwrap(create.savedOrder)
        let pd = try rules.createPayment(order: order, payer: "u1", paymentID: CommerceKeys.freshID("pay", product: "p1", random: "\(n)"), now: now).get()
        XCTAssertTrue(try apply(pd).applied)
        steps.append(pd)
        let payment = try XCTUnwrap(pd.savedPayment)
        let notify = PaymentNotify(payment: payment.id, order: order.id, amount: payment.amount, currency: "CNY", outcome: .success, tradeNo: "T")
        let d = try rules.notify(notify, payment: payment, order: order, stock: 2, now: now, product: product, membership: membership).get()
        return (order, d)
    }

    func testTheDeliverySavesTheRecordIndexAndTimerAndTheLoadReadsItBack() throws {
        let (order, d) = try delivered(1, membership: .absent)
        XCTAssertTrue(try apply(d).applied)
        let record = "\(now)|\(now + 30 * OrderRules.dayMs)|\(now)"
        XCTAssertEqual(redis.call(["HGET", CommerceKeys.memberships("p1"), "u1"]).text, record)
        XCTAssertEqual(redis.call(["SISMEMBER", StoreKeys.userMemberships("u1"), "p1"]).int, 1, "one server: the index in the same step")
        XCTAssertEqual(redis.call(["ZSCORE", CommerceKeys.timers, "mem:p1/u1"]).text, String(now + 27 * OrderRules.dayMs))

        let orderKey = try XCTUnwrap(CommerceKeys.order(order.id))
        let owner = try loadTail([orderKey], ["order"])
        XCTAssertEqual(owner.hold, "", "linked through link:holds, no hold")
        XCTAssertEqual(owner.membership, record, "the owner's, through link:memberships")
        XCTAssertEqual(try loadTail([orderKey], ["order", "u3"]).membership, "", "a claimer without one: empty, not unlinked")
        let entry = try loadTail([CommerceKeys.info("p1"), CommerceKeys.stock("p1"), CommerceKeys.memberships("p1")], ["membership", "u1"])
        XCTAssertEqual(entry.membership, record)

        redis.call(["HDEL", orderKey, CommerceKeys.Link.memberships])
        XCTAssertNil(try loadTail([orderKey], ["order"]).membership, "an order saved before memberships links none")
    }

    func testAStaleMembershipRefusesTheDecisionAndChangesNothing() throws {
        let (_, first) = try delivered(1, membership: .absent)
        XCTAssertTrue(try apply(first).applied)
        let before = redis.call(["HGET", CommerceKeys.memberships("p1"), "u1"]).text
        // Decided on "no membership" while one was saved meanwhile (another node's delivery).
        let (_, stale) = try delivered(2, membership: .absent)
        let (applied, failed) = try apply(stale)
        XCTAssertFalse(applied)
        XCTAssertEqual(stale.preconditions[failed - 1], .membershipRecord(product: "p1", user: "u1", record: ""))
        XCTAssertEqual(redis.call(["HGET", CommerceKeys.memberships("p1"), "u1"]).text, before)
    }

    func testOnAClusterTheIndexIsWrittenAheadNotInTheStep() throws {
        let (_, d) = try delivered(1, membership: .absent)
        let program = try XCTUnwrap(CommerceProgram(d, product: "p1", settings(viaOutbox: true)))
        XCTAssertEqual(program.setsAhead.map(\.key), [StoreKeys.userMemberships("u1")])
        XCTAssertEqual(program.setsAhead.map(\.member), ["p1"])
        XCTAssertTrue(program.remindersAfter.contains { $0.member == "mem:p1/u1" }, "written ahead where absent, moved after")
        XCTAssertFalse(program.timersAhead.contains { $0.member == "mem:p1/u1" })
        XCTAssertFalse(program.ops.contains { if case .setAdd = $0 { true } else { false } })
        XCTAssertFalse(program.keys.contains(StoreKeys.userMemberships("u1")), "no key of another slot in the step")
    }

    func testTheMemoryTwinKeepsMembershipsAsTheScriptDoes() throws {
        let memory = MemoryCommerceStore()
        memory.addProduct(product)
        memory.addKeys(product: "p1", merchant: nil, ["k1", "k2"].map { SealedCardKey(id: $0, sealed: "s") },
                       terms: RestockTerms(nowMs: 0, holdMs: 0)) { _ in }
        let (_, d) = try delivered(1, membership: .absent)
        XCTAssertTrue(try apply(d).applied)
        for step in steps + [d] { XCTAssertNil(memory.run(try XCTUnwrap(CommerceProgram(step, product: "p1", settings())))) }
        let stored = try redis.call(["HGETALL", CommerceKeys.memberships("p1")]).decode(as: RedisHash.self)
        XCTAssertEqual(memory.hashes[CommerceKeys.memberships("p1")], stored.fields)
        XCTAssertEqual(memory.sets[StoreKeys.userMemberships("u1")], ["p1"])
        var loaded: CommerceSnapshot?
        memory.load(.membership(product: "p1", user: "u1")) { loaded = try? $0.get() }
        XCTAssertEqual(loaded?.product?.validityDays, 30)
        guard case .present(let m)? = loaded?.membership else { return XCTFail("\(String(describing: loaded))") }
        XCTAssertEqual(m.endsAt, now + 30 * OrderRules.dayMs)
    }

    func testATimerIsDroppedOnlyWhileUnmoved() throws {
        redis.call(["ZADD", CommerceKeys.timers, 1_766_492_000_000, "mem:p1/u1"])
        let moved = redis.run(CommerceScripts.timerDrop, keys: [CommerceKeys.timers], args: ["mem:p1/u1", 1_766_000_000_000])
        XCTAssertEqual(moved.int, 0)
        XCTAssertNotNil(redis.call(["ZSCORE", CommerceKeys.timers, "mem:p1/u1"]).text, "a member moved since it was read stays")
        XCTAssertEqual(redis.run(CommerceScripts.timerDrop, keys: [CommerceKeys.timers], args: ["mem:p1/u1", 1_766_492_000_000]).int, 1)
        XCTAssertNil(redis.call(["ZSCORE", CommerceKeys.timers, "mem:p1/u1"]).text)
        XCTAssertEqual(redis.run(CommerceScripts.timerDrop, keys: [CommerceKeys.timers], args: ["mem:p1/u1", 1]).int, 0, "absent: nothing")
    }
}
