@testable import GatewayNode
import GatewayProtocol
@testable import OrderCore
import XCTest

/// The order runner (`OrderStore`) against the in-memory commerce store: slot-tagged ids,
/// retries on a broken precondition, timers written ahead, idempotency per product.
final class CommerceStoreTests: XCTestCase {
    let product = Product(id: "p1", merchant: "m1", title: "Steam key", price: 1999, currency: "CNY")
    let rules = OrderRules(times: CommerceTimes(orderTTL: 900_000, giftTTL: 86_400_000, friendpayTTL: 1_800_000, paymentGrace: 60_000))
    let now: Int64 = 1_763_900_000_000
    var memory: MemoryCommerceStore!
    var orders: OrderStore!

    override func setUp() {
        memory = MemoryCommerceStore()
        memory.addProduct(product)
        memory.addProduct(Product(id: "p2", merchant: "m2", title: "Other", price: 100, currency: "CNY"))
        orders = OrderStore(store: memory)
    }

    func fresh(_ n: Int, product: String = "p1") -> FreshIDs {
        FreshIDs(order: CommerceKeys.freshID("o", product: product, random: "r\(n)"),
                 giftCode: CommerceKeys.freshID("g", product: product, random: "r\(n)"),
                 payCode: CommerceKeys.freshID("f", product: product, random: "r\(n)"))
    }

    func request(_ json: String) throws -> OrderRequest { try OrderRequest.decode(JSON.parse(Array(json.utf8))).get() }

    /// Runs synchronously (the memory store answers at once).
    func run(_ entry: CommerceEntry, _ decide: @escaping (CommerceSnapshot) -> Result<Decision, GatewayError>) throws -> (Decision, CommerceSnapshot) {
        var result: Result<(Decision, CommerceSnapshot), GatewayError>?
        orders.run(entry, decide: decide) { result = $0 }
        return try XCTUnwrap(result).get()
    }

    func load(_ entry: CommerceEntry) throws -> CommerceSnapshot {
        var result: Result<CommerceSnapshot, GatewayError>?
        orders.load(entry) { result = $0 }
        return try XCTUnwrap(result).get()
    }

    func create(_ json: String, _ n: Int = 1, product: String = "p1") throws -> Order {
        let r = try request(json)
        let (d, _) = try run(.product(product)) { s in self.rules.create(r, product: s.product, now: self.now, fresh: self.fresh(n, product: product)) }
        return try XCTUnwrap(d.savedOrder)
    }

    func testIdsCarryTheirProductsSlotTag() throws {
        let order = try create(#"{"buyer":"u1","product":"p1"}"#)
        XCTAssertEqual(CommerceKeys.tag(ofID: order.id), CommerceKeys.tag(product: "p1"))
        XCTAssertEqual(try load(.order(order.id)).order, order)
        XCTAssertEqual(try load(.order(order.id)).product, product)
    }

    func testMalformedIdsAreSimplyNotFound() throws {
        for entry: CommerceEntry in [.order("o-nope"), .order("o-00000000000000000000"), .payment("pay-zzzz-1"),
                                     .giftCode("g-1"), .payCode("f--x"), .order("")] {
            let s = try load(entry)
            XCTAssertNil(s.order, "\(entry)")
            XCTAssertNil(s.payment, "\(entry)")
        }
        XCTAssertNil(CommerceKeys.order("o-nope-1"), "a tag that is not the tag of its slot")
    }

    func testIdempotencyKeysArePerProduct() throws {
        let order = try create(#"{"buyer":"u1","product":"p1","idempotency_key":"k"}"#)
        XCTAssertEqual(try load(.idempotency(product: "p1", buyer: "u1", key: "k")).order?.id, order.id)
        XCTAssertNil(try load(.idempotency(product: "p2", buyer: "u1", key: "k")).order, "same key, another product")
        XCTAssertNil(try load(.idempotency(product: "p1", buyer: "u2", key: "k")).order, "same key, another buyer")
        let other = try create(#"{"buyer":"u1","product":"p2","idempotency_key":"k"}"#, 2, product: "p2")
        XCTAssertNotEqual(other.id, order.id)
    }

    /// Ids may hold `:`, so `:` between product, buyer and key made two different triples one key name.
    func testIdempotencyKeyNamesDoNotRunIntoEachOther() {
        XCTAssertNotEqual(CommerceKeys.idempotency(product: "p1", buyer: "u:x", key: "shop/k"),
                          CommerceKeys.idempotency(product: "p1", buyer: "u", key: "x:shop/k"))
        XCTAssertNotEqual(CommerceKeys.idempotency(product: "p1", buyer: "a:b", key: "k"),
                          CommerceKeys.idempotency(product: "p1:a", buyer: "b", key: "k"))
    }

    /// A create that loses the race for its idempotency key cannot win by deciding again:
    /// it ends at once, so the handler answers the order that won.
    func testACreateThatLostItsIdempotencyKeyStopsAtOnce() throws {
        let r = try request(#"{"buyer":"u1","product":"p1","idempotency_key":"k"}"#)
        memory.interfere = { store in
            let winner = try! self.rules.create(r, product: self.product, now: self.now, fresh: self.fresh(9)).get()
            XCTAssertNil(store.run(CommerceProgram(winner, product: "p1", .init(retention: store.retention, historySize: { _ in 1 }, viaOutbox: false))!))
        }
        var decisions = 0
        var result: Result<(Decision, CommerceSnapshot), GatewayError>?
        orders.run(.product("p1"), decide: { s in
            decisions += 1
            return self.rules.create(r, product: s.product, now: self.now, fresh: self.fresh(decisions))
        }) { result = $0 }
        XCTAssertEqual(decisions, 1, "no second attempt after the idempotency check failed")
        XCTAssertThrowsError(try XCTUnwrap(result).get()) { XCTAssertEqual($0 as? GatewayError, OrderStore.idempotencyKeyTaken) }
        XCTAssertEqual(try load(.idempotency(product: "p1", buyer: "u1", key: "k")).order?.id, fresh(9).order)
    }

    /// Cluster: a membership's reminder is written ahead only where none is, and moved once the
    /// apply went through. A renewal refused after its write-ahead (the order went abnormal)
    /// leaves the current reminder where it was, not weeks later.
    func testOnAClusterARefusedRenewalLeavesTheCurrentReminderInPlace() throws {
        memory.viaOutbox = true
        let member = TimerMember.membership(product: "p1", user: "u1").member
        let current = Membership(product: "p1", user: "u1", startsAt: now, endsAt: now + 30 * OrderRules.dayMs, remindedAt: now)
        let renewed = Membership(product: "p1", user: "u1", startsAt: now, endsAt: now + 60 * OrderRules.dayMs, remindedAt: now)
        memory.hashes[CommerceKeys.memberships("p1"), default: [:]]["u1"] = current.record
        memory.timers[member] = now + 27 * OrderRules.dayMs
        func renew(expecting record: String) -> ApplyOutcome? {
            var outcome: ApplyOutcome?
            memory.apply(Decision(preconditions: [.membershipRecord(product: "p1", user: "u1", record: record)],
                                  effects: [.saveMembership(renewed), .scheduleReminder(product: "p1", user: "u1", at: now + 57 * OrderRules.dayMs)]),
                         product: "p1") { outcome = try? $0.get() }
            return outcome
        }
        guard case .refused = renew(expecting: "stale") else { return XCTFail("a stale record refuses the apply") }
        XCTAssertEqual(memory.timers[member], now + 27 * OrderRules.dayMs, "the current reminder stays")
        XCTAssertEqual(renew(expecting: current.record), .applied)
        XCTAssertEqual(memory.timers[member], now + 57 * OrderRules.dayMs, "moved once applied")

        memory.timers[member] = nil
        _ = renew(expecting: "stale")
        XCTAssertEqual(memory.timers[member], now + 57 * OrderRules.dayMs, "a missing reminder is written ahead (a harmless orphan if refused)")
    }

    /// An early timer is put back at its order's due time; the order is left as it is.
    func testAnEarlyTimerIsPutBackNotFired() throws {
        let order = try create(#"{"buyer":"u1","product":"p1"}"#)
        let (d, _) = try run(.order(order.id)) { s in .success(self.rules.expire(s.order!, .payment, payment: nil, now: self.now)) }
        XCTAssertNil(d.savedOrder)
        XCTAssertEqual(memory.timers, ["pay:\(order.id)": order.expiresAt])
        XCTAssertEqual(try load(.order(order.id)).order, order)
    }

    func testLegacyIdsNameTheirV1Records() {
        let id = "o-0123456789abcdef0123"
        XCTAssertEqual(CommerceKeys.order(id), "gw:{order:\(id)}:info")
        XCTAssertEqual(CommerceKeys.payment("pay-0123456789abcdef0123"), "gw:{payment:pay-0123456789abcdef0123}:info")
        XCTAssertEqual(CommerceKeys.giftCode("g-0123456789abcdef0123"), "gw:giftcode:g-0123456789abcdef0123")
        XCTAssertEqual(CommerceKeys.payCode("f-0123456789abcdef0123"), "gw:paycode:f-0123456789abcdef0123")
        for notV1 in ["o-0123", "o-0123456789ABCDEF0123", "x-0123456789abcdef0123", "o-0123456789abcdef0123-1"] {
            XCTAssertNil(CommerceKeys.order(notV1), notV1)
        }
        // A payment of a v1 order is a v1 payment (beside its order on the one server).
        XCTAssertEqual(CommerceKeys.paymentID(forOrder: id, random: "fedcba9876543210fedc"), "pay-fedcba9876543210fedc")
        XCTAssertNotNil(CommerceKeys.payment("pay-fedcba9876543210fedc"))
        let tagged = CommerceKeys.freshID("o", product: "p1", random: "r")
        XCTAssertEqual(CommerceKeys.paymentID(forOrder: tagged, random: "x"), "pay-\(CommerceKeys.tag(product: "p1"))-x")
        XCTAssertNil(CommerceKeys.paymentID(forOrder: "o-nope", random: "x"))
    }

    func testTimersAreWrittenAheadAndRemovedAfterTheDecision() throws {
        let order = try create(#"{"buyer":"u1","product":"p1"}"#)
        XCTAssertEqual(memory.timers, ["pay:\(order.id)": order.expiresAt])
        _ = try run(.order(order.id)) { s in self.rules.cancel(s.order!, now: self.now) }
        XCTAssertEqual(memory.timers, [:], "unscheduled after the cancel")
    }

    func testABrokenPreconditionDecidesAgainOnAFreshSnapshot() throws {
        memory.addKeys(product: "p1", merchant: nil, [SealedCardKey(id: "k1", sealed: "s1")], terms: RestockTerms(nowMs: now, holdMs: 0)) { _ in }
        let order = try create(#"{"buyer":"u1","product":"p1"}"#)
        let paymentID = CommerceKeys.freshID("pay", product: "p1", random: "1")
        let (pd, _) = try run(.order(order.id)) { s in self.rules.createPayment(order: s.order!, payer: "u1", paymentID: paymentID, now: self.now) }
        let payment = try XCTUnwrap(pd.savedPayment)
        // Between the snapshot and the apply, another order takes the last key.
        memory.interfere = { store in
            let other = Decision(effects: [.allocateKeys(order: CommerceKeys.freshID("o", product: "p1", random: "x"), product: "p1", count: 1)])
            _ = store.run(CommerceProgram(other, product: "p1", .init(retention: store.retention, historySize: { _ in 1 }, viaOutbox: false))!)
        }
        var decisions = 0
        let notify = PaymentNotify(payment: payment.id, order: order.id, amount: payment.amount, currency: payment.currency,
                                   outcome: .success, tradeNo: "T")
        let (d, _) = try run(.payment(payment.id)) { s in
            decisions += 1
            return self.rules.notify(notify, payment: s.payment, order: s.order, stock: s.stock, now: self.now)
        }
        XCTAssertEqual(decisions, 2, "decided again after check_stock_at_least failed")
        XCTAssertEqual(d.savedOrder?.status, .abnormal, "no key left: paid but abnormal")
        XCTAssertEqual(try load(.payment(payment.id)).order?.status, .abnormal)
    }

    /// An order's creation sends its product load beside the risk reservation: the run decides
    /// on that snapshot (not a second load), answered before or after the run asks for it.
    func testARunDecidesOnTheLoadSentAhead() throws {
        let r = try request(#"{"buyer":"u1","product":"p1"}"#)
        var prices: [Int64] = []
        let decide = { (s: CommerceSnapshot) -> Result<Decision, GatewayError> in
            prices.append(s.product?.price ?? -1)
            return self.rules.create(r, product: s.product, now: self.now, fresh: self.fresh(prices.count))
        }
        let sent = orders.sendLoad(.product("p1"))
        memory.addProduct(Product(id: "p1", merchant: "m1", title: "Steam key", price: 2999, currency: "CNY"))
        var result: Result<(Decision, CommerceSnapshot), GatewayError>?
        orders.run(.product("p1"), sent: sent, decide: decide) { result = $0 }
        XCTAssertEqual(try XCTUnwrap(result).get().0.savedOrder?.amount, 1999, "decided on the snapshot sent ahead")
        XCTAssertEqual(prices, [1999])

        // The run asks before the load answered: it waits for that answer.
        let late = OrderStore.SentLoad()
        result = nil
        orders.run(.product("p1"), sent: late, decide: decide) { result = $0 }
        XCTAssertNil(result)
        late.answer(.success(try load(.product("p1"))))
        XCTAssertEqual(try XCTUnwrap(result).get().0.savedOrder?.amount, 2999)
        XCTAssertEqual(prices, [1999, 2999])
    }

    /// A timer is written before the decision that creates its order: seen first, it is kept
    /// (the order may be landing); a minute past due with still no order, it is dropped.
    func testTimerWithoutItsOrderIsKeptForAGraceThenDropped() throws {
        let order = try create(#"{"buyer":"u1","product":"p1"}"#)
        let timer = DueTimer(member: "pay:\(order.id)", due: now)
        XCTAssertTrue(OrderStore.dropsTimer(timer, orderExists: true, now: now), "an order that moved on")
        XCTAssertFalse(OrderStore.dropsTimer(timer, orderExists: false, now: now + 1_000))
        XCTAssertTrue(OrderStore.dropsTimer(timer, orderExists: false, now: now + OrderStore.timerWithoutOrderGraceMs))
        // The rules decide nothing for an order that moved on: the sweeper's empty decision.
        let (canceled, _) = try run(.order(order.id)) { s in self.rules.cancel(s.order!, now: self.now) }
        XCTAssertEqual(rules.expire(try XCTUnwrap(canceled.savedOrder), .payment, payment: nil, now: now + 1), Decision())
    }

    func testKeysAddChecksTheMerchant() {
        var results: [KeysAdded] = []
        let keys = [SealedCardKey(id: "a", sealed: "s")]
        let terms = RestockTerms(nowMs: now, holdMs: 0)
        memory.addKeys(product: "p1", merchant: "m2", keys, terms: terms) { results.append(try! $0.get()) }
        memory.addKeys(product: "p9", merchant: nil, keys, terms: terms) { results.append(try! $0.get()) }
        memory.addKeys(product: "p1", merchant: "m1", keys, terms: terms) { results.append(try! $0.get()) }
        memory.addKeys(product: "p1", merchant: nil, keys, terms: terms) { results.append(try! $0.get()) }
        XCTAssertEqual(results, [.otherMerchant, .noProduct, .added(count: 1, duplicates: 0, stock: 1, restock: RestockOutcome(product: "p1", title: product.title, price: product.price,
                                                                        currency: product.currency, stock: 1, holders: [], until: now)),
                                 .added(count: 0, duplicates: 1, stock: 1, restock: nil)])
    }
}
