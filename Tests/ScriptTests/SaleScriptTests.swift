import Foundation
@testable import GatewayNode
import GatewayProtocol
import GatewayRedis
import OrderCore
import XCTest

/// The flash-sale scripts (sale_create, sale_buy, sale_tick, sale_close, and the order
/// program's return_sale_units) through RedisCommerceStore against a real redis-server.
/// Time moves by rewriting the sale's own times, never by sleeping.
final class SaleScriptTests: XCTestCase {
    let times = CommerceTimes(orderTTL: 900_000, giftTTL: 86_400_000, friendpayTTL: 1_800_000, paymentGrace: 60_000, saleTTL: 300_000)
    lazy var rules = OrderRules(times: times)
    private var orders = 0

    private func stores(keys: Int = 10, cluster: Bool = false) throws -> (StoreFixture, RedisCommerceStore) {
        let f = try StoreFixture(cluster: cluster)
        let commerce = RedisCommerceStore(redis: f.link, retention: KeyRetention(times), historyTTL: 600, historySize: { _ in 50 },
                                          durability: .fsync, durabilityTimeoutMs: 1000, newEpoch: { "e1" })
        commerce.relay = f.relay
        XCTAssertTrue(try f.value { f.community.createProduct(ProductRecord(id: "p1", merchant: "m1", title: "Steam key", price: 1999,
                                                                            currency: "CNY", createdAt: 1), $0) })
        var added: Result<KeysAdded, GatewayError>?
        commerce.addKeys(product: "p1", merchant: nil, (1...keys).map { SealedCardKey(id: "k\($0)", sealed: "s") },
                         terms: RestockTerms(nowMs: 1, holdMs: 0)) { added = $0 }
        _ = try XCTUnwrap(added).get()
        return (f, commerce)
    }

    private func clock(_ f: StoreFixture) -> Int64 {
        let t = f.redis.call(["TIME"]).array ?? []
        return (Int64(t[0].text ?? "0") ?? 0) * 1000 + (Int64(t[1].text ?? "0") ?? 0) / 1000
    }

    /// A sale that opened a second ago (or opens in `opensIn` ms), ending in an hour.
    private func spec(_ f: StoreFixture, id: String = "s1", quantity: Int = 3, perUser: Int = 1, opensIn: Int64 = -1000) -> SaleSpec {
        let now = clock(f)
        return SaleSpec(id: id, product: "p1", price: 100, quantity: quantity, startsAt: now + opensIn, endsAt: now + 3_600_000,
                        perUser: perUser)
    }

    private func create(_ c: RedisCommerceStore, _ spec: SaleSpec, merchant: String? = nil) -> Result<(Sale, created: Bool), GatewayError> {
        var out: Result<(Sale, created: Bool), GatewayError>?
        c.createSale(spec, merchant: merchant) { out = $0 }
        return out ?? .failure(GatewayError(.internal, "no answer"))
    }

    private func buy(_ c: RedisCommerceStore, _ sale: Sale, _ buyer: String, _ q: Int = 1) throws -> (SaleBuyOutcome, String) {
        orders += 1
        let id = CommerceKeys.freshID("o", product: "p1", random: "b\(orders)")
        let d = rules.createSaleOrder(sale, buyer: buyer, quantity: q, now: 1, orderID: id)
        var out: Result<SaleBuyOutcome, GatewayError>?
        c.buySale(d, sale: sale, buyer: buyer, quantity: q, product: "p1") { out = $0 }
        return (try XCTUnwrap(out).get(), id)
    }

    private func tick(_ c: RedisCommerceStore, _ sale: String = "s1") throws -> SaleTick {
        var out: Result<SaleTick, GatewayError>?
        c.tickSale(product: "p1", sale: sale) { out = $0 }
        return try XCTUnwrap(out).get()
    }

    private func view(_ c: RedisCommerceStore, _ id: String = "s1") throws -> Sale? {
        var out: Result<Sale?, GatewayError>?
        c.sale(id) { out = $0 }
        return try XCTUnwrap(out).get()
    }

    /// (push type, data) of the `sale:S` channel, oldest first.
    private func pushes(_ f: StoreFixture, _ sale: String = "s1") -> [(String, JSON)] {
        f.pushes("sale:\(sale)").compactMap { text in
            guard let j = try? JSON.parse(text), let type = j["push"]?.stringValue, let data = j["data"] else { return nil }
            return (type, data)
        }
    }
    private func types(_ f: StoreFixture) -> [String] { pushes(f).map(\.0) }

    private func list(_ f: StoreFixture, _ key: String) -> [String] {
        (f.redis.call(["LRANGE", key, 0, -1]).array ?? []).compactMap(\.text)
    }
    private func field(_ f: StoreFixture, _ key: String, _ name: String) -> String? { f.redis.call(["HGET", key, name]).text }
    private let saleKey = CommerceKeys.sale(product: "p1", "s1")
    private let units = CommerceKeys.saleUnits(product: "p1", "s1")
    private let stock = CommerceKeys.stock("p1")

    // MARK: create

    func testCreateSetsUnitsAsideAndARepeatIsIdempotent() throws {
        let (f, c) = try stores(keys: 5)
        let s = spec(f, quantity: 3, opensIn: 120_000)
        let (sale, created) = try create(c, s).get()
        XCTAssertTrue(created)
        XCTAssertEqual(sale.spec, s)
        XCTAssertEqual(sale.title, "Steam key")
        XCTAssertEqual(sale.merchant, "m1")
        XCTAssertEqual(sale.remaining, 3)
        XCTAssertEqual(sale.nonce.count, 16)
        XCTAssertEqual(list(f, units), ["k1", "k2", "k3"])
        XCTAssertEqual(list(f, stock), ["k4", "k5"])
        XCTAssertEqual(f.redis.call(["GET", CommerceKeys.saleProduct("s1")]).text, "p1")
        XCTAssertEqual(f.redis.call(["ZSCORE", CommerceKeys.timers, "sale:p1/s1"]).text.flatMap { Int64($0) }, s.firstDue(at: .min),
                       "the first countdown is due next (lib_sale and SaleSpec agree)")
        let (again, createdAgain) = try create(c, s).get()
        XCTAssertFalse(createdAgain)
        XCTAssertEqual(again.nonce, sale.nonce)
        XCTAssertEqual(list(f, stock), ["k4", "k5"], "a repeat sets nothing more aside")
        XCTAssertEqual(try view(c)?.spec, s)
        XCTAssertNil(try view(c, "nope"))
    }

    func testAReusedIdShortStockAndAnotherMerchantChangeNothing() throws {
        let (f, c) = try stores(keys: 5)
        let s = spec(f, quantity: 3)
        _ = try create(c, s).get()
        var other = s
        other.price = 99
        XCTAssertEqual(create(c, other).failure, GatewayError(.conflict, "sale id already used"))
        XCTAssertEqual(list(f, stock), ["k4", "k5"])

        let short = spec(f, id: "s2", quantity: 3)
        XCTAssertEqual(create(c, short).failure, GatewayError(.conflict, "stock is short: 2 keys in stock, 3 asked"))
        XCTAssertEqual(list(f, stock), ["k4", "k5"], "nothing set aside")
        XCTAssertNil(try view(c, "s2"))
        XCTAssertEqual(f.redis.call(["EXISTS", CommerceKeys.saleProduct("s2")]).int, 0, "the id is free again")

        let theirs = spec(f, id: "s3", quantity: 1)
        XCTAssertEqual(create(c, theirs, merchant: "m2").failure?.code, .forbidden)
        XCTAssertEqual(try create(c, theirs, merchant: "m1").get().created, true, "the product's own merchant may")
        var noProduct = spec(f, id: "s4", quantity: 1)
        noProduct.product = "p9"
        XCTAssertEqual(create(c, noProduct).failure?.code, .notFound)
    }

    /// The pointer gone while the sale exists (as when a racing create of the same id wrote it
    /// first and was then refused): a create that finds the sale, refused or not, leaves the
    /// pointer and timer it wrote, since they are the sale's now. Only a refusal proving no
    /// sale exists (no product, another merchant's product, short stock) takes them back.
    func testACreateThatFindsTheSaleLeavesItsPointerAndTimer() throws {
        for cluster in [false, true] {
            let (f, c) = try stores(keys: 5, cluster: cluster)
            let s = spec(f, quantity: 3, opensIn: 120_000)
            _ = try create(c, s).get()
            let pointer = CommerceKeys.saleProduct("s1")
            func lose() {
                f.redis.call(["DEL", pointer])
                if cluster { f.redis.call(["ZREM", CommerceKeys.timers, "sale:p1/s1"]) }
            }
            func kept(_ why: String) {
                XCTAssertEqual(f.redis.call(["GET", pointer]).text, "p1", "cluster \(cluster): \(why)")
                XCTAssertNotNil(f.redis.call(["ZSCORE", CommerceKeys.timers, "sale:p1/s1"]).text, "cluster \(cluster): \(why)")
            }
            lose()
            XCTAssertEqual(create(c, s, merchant: "m2").failure, GatewayError(.forbidden, "sale s1 is another merchant's"))
            kept("another merchant's create of the existing sale")
            lose()
            var other = s
            other.price += 1
            XCTAssertEqual(create(c, other).failure, GatewayError(.conflict, "sale id already used"))
            kept("a create with other terms")
            XCTAssertEqual(list(f, units), ["k1", "k2", "k3"])
            XCTAssertEqual(try view(c)?.spec, s, "the sale is found again")
            var short = spec(f, id: "s2", quantity: 9)
            short.startsAt = s.startsAt
            XCTAssertEqual(create(c, short).failure?.code, .conflict)
            XCTAssertNil(f.redis.call(["GET", CommerceKeys.saleProduct("s2")]).text, "short: no sale, the id is free again")
            // The timer is never taken back (a racing create's sale may own it); a stray one ticks once and goes.
            XCTAssertEqual(f.redis.call(["ZSCORE", CommerceKeys.timers, "sale:p1/s2"]).text != nil, cluster)
        }
    }

    /// Two creates of one id at once, one refused as short and one created: the refused one's
    /// undo (its pointer DEL) lands after the other's script, yet the created sale keeps its
    /// pointer and timer.
    func testARefusedCreateRacingACreatedOneLeavesItsPointerAndTimer() throws {
        for cluster in [false, true] {
            let (f, c) = try stores(keys: 5, cluster: cluster)
            var queued: [() -> Void] = []
            f.link.answer = { queued.append($0) }
            var short = spec(f, quantity: 9, opensIn: 120_000)
            let made = spec(f, quantity: 3, opensIn: 120_000)
            short.startsAt = made.startsAt
            var outA: Result<(Sale, created: Bool), GatewayError>?, outB: Result<(Sale, created: Bool), GatewayError>?
            c.createSale(short, merchant: nil) { outA = $0 }
            c.createSale(made, merchant: nil) { outB = $0 }
            // Replies in the order sent: A's script runs first (short), B's next (created), then A's undo.
            while !queued.isEmpty { queued.removeFirst()() }
            XCTAssertEqual(outA?.failure?.code, .conflict, "cluster \(cluster)")
            XCTAssertEqual(try outB?.get().created, true, "cluster \(cluster)")
            XCTAssertEqual(f.redis.call(["GET", CommerceKeys.saleProduct("s1")]).text, "p1", "cluster \(cluster): the pointer")
            XCTAssertNotNil(f.redis.call(["ZSCORE", CommerceKeys.timers, "sale:p1/s1"]).text, "cluster \(cluster): the timer")
            f.link.answer = { $0() }
            XCTAssertEqual(try view(c)?.spec, made, "cluster \(cluster)")
        }
    }

    // MARK: buy

    func testABuyTakesUnitsIntoTheOrderAndSoldOutGoesOutOnce() throws {
        let (f, c) = try stores(keys: 5)
        let sale = try create(c, spec(f, quantity: 2, perUser: 2)).get().0
        let sentBefore = f.link.sent.count
        let (first, order) = try buy(c, sale, "u1")
        guard case .bought(let due?) = first else { return XCTFail("\(first)") }
        XCTAssertGreaterThan(due, 0)
        XCTAssertEqual(f.link.sent.filter { $0 == "sale_buy" }.count, f.link.sent.count - sentBefore, "a buy is one round trip")
        let orderKey = try XCTUnwrap(CommerceKeys.order(order))
        XCTAssertEqual(field(f, orderKey, "keys"), "k1")
        XCTAssertEqual(field(f, orderKey, "sale"), "s1")
        XCTAssertEqual(field(f, orderKey, "amount"), "100")
        XCTAssertEqual(field(f, saleKey, "remaining"), "1")
        XCTAssertEqual(field(f, saleKey, "sold"), "1")
        XCTAssertEqual(field(f, CommerceKeys.saleBuyers(product: "p1", "s1"), "u1"), "1")
        XCTAssertNotNil(f.redis.call(["ZSCORE", CommerceKeys.timers, "pay:\(order)"]).text, "the pay timer")

        XCTAssertEqual(try buy(c, sale, "u2", 2).0, .refused(.onlyLeft(1)))
        guard case .bought(nil) = try buy(c, sale, "u2").0 else { return XCTFail("a stock push was already pending") }
        XCTAssertEqual(types(f).filter { $0 == "sale.sold_out" }.count, 1)
        let before = f.link.sent.count
        XCTAssertEqual(try buy(c, sale, "u3").0, .refused(.soldOut))
        XCTAssertEqual(Array(f.link.sent[before...]), ["sale_buy"], "one round trip, and nothing after a refusal")
        XCTAssertEqual(types(f).filter { $0 == "sale.sold_out" }.count, 1, "once")
        XCTAssertEqual(field(f, saleKey, "remaining"), "0", "never below 0")
        XCTAssertEqual(list(f, units), [])
    }

    /// A buy reaching Redis past starts_at before any tick opens the sale itself: `sale.open`
    /// (with the remaining before that buy) goes out first, and the tick sends it no more.
    func testABuyBeforeTheOpenTickOpensTheSaleFirst() throws {
        for cluster in [false, true] {
            let (f, c) = try stores(keys: 3, cluster: cluster)
            let sale = try create(c, spec(f, quantity: 1)).get().0
            guard case .bought = try buy(c, sale, "u1").0 else { return XCTFail("cluster \(cluster)") }
            _ = try tick(c)
            if cluster { f.relay.relay(CommerceKeys.outbox("p1")) }
            let seen = types(f)
            XCTAssertEqual(Array(seen.prefix(2)), ["sale.open", "sale.sold_out"], "cluster \(cluster): \(seen)")
            XCTAssertEqual(seen.filter { $0 == "sale.open" }.count, 1, "cluster \(cluster): \(seen)")
            XCTAssertEqual(pushes(f).first?.1["remaining"]?.intValue, 1, "the open's remaining is the sale's before the buy")
            XCTAssertEqual(field(f, saleKey, "phase"), "4")
        }
    }

    /// The order program's check failing (the fresh order id exists) is worth a retry, and takes nothing.
    func testABuyWhoseOrderIDIsTakenIsTemporary() throws {
        let (f, c) = try stores()
        let sale = try create(c, spec(f, quantity: 2)).get().0
        let id = CommerceKeys.freshID("o", product: "p1", random: "taken")
        f.redis.call(["HSET", try XCTUnwrap(CommerceKeys.order(id)), "id", id])
        let d = rules.createSaleOrder(sale, buyer: "u1", quantity: 1, now: 1, orderID: id)
        var out: Result<SaleBuyOutcome, GatewayError>?
        c.buySale(d, sale: sale, buyer: "u1", quantity: 1, product: "p1") { out = $0 }
        guard case .failure(let e)? = out else { return XCTFail("\(String(describing: out))") }
        XCTAssertEqual(e.code, .unavailable)
        XCTAssertTrue(e.temporary, "a retry gets a fresh id")
        XCTAssertEqual(field(f, saleKey, "remaining"), "2")
        XCTAssertEqual(list(f, units).count, 2)
    }

    /// The script checks the buyer and units it was given; the program takes the ones its op
    /// names. Should they ever differ, nothing is taken.
    func testABuyWhoseTakeIsNotTheCheckedOneChangesNothing() throws {
        let (f, c) = try stores()
        let sale = try create(c, spec(f, quantity: 3, perUser: 2)).get().0
        for (buyer, q) in [("u2", 1), ("u1", 2)] {
            let d = rules.createSaleOrder(sale, buyer: "u1", quantity: 1, now: 1,
                                          orderID: CommerceKeys.freshID("o", product: "p1", random: "x\(buyer)\(q)"))
            var out: Result<SaleBuyOutcome, GatewayError>?
            c.buySale(d, sale: sale, buyer: buyer, quantity: q, product: "p1") { out = $0 }
            guard case .failure? = out else { return XCTFail("\(buyer) \(q): \(String(describing: out))") }
        }
        XCTAssertEqual(field(f, saleKey, "remaining"), "3")
        XCTAssertEqual(list(f, units).count, 3)
    }

    func testPerUserHoldsAcrossBuysAndEveryRefusalChangesNothing() throws {
        let (f, c) = try stores(keys: 10)
        let sale = try create(c, spec(f, quantity: 5, perUser: 2)).get().0
        guard case .bought = try buy(c, sale, "u1").0 else { return XCTFail() }
        XCTAssertEqual(try buy(c, sale, "u1", 2).0, .refused(.overLimit(held: 1, perUser: 2)))
        guard case .bought = try buy(c, sale, "u1").0 else { return XCTFail() }
        XCTAssertEqual(try buy(c, sale, "u1").0, .refused(.overLimit(held: 2, perUser: 2)))

        var stale = sale
        stale.nonce = "0000000000000000"
        XCTAssertEqual(try buy(c, stale, "u2").0, .refused(.stale))
        var unknown = sale
        unknown.spec.id = "s9"
        XCTAssertEqual(try buy(c, unknown, "u2").0, .refused(.unknown))

        let later = try create(c, spec(f, id: "s2", quantity: 1, opensIn: 60_000)).get().0
        guard case .refused(.tooEarly(let ms)) = try buy(c, later, "u2").0 else { return XCTFail() }
        XCTAssertGreaterThan(ms, 50_000)
        XCTAssertLessThanOrEqual(ms, 60_000)

        f.redis.call(["HSET", saleKey, "ends_at", clock(f) - 1])
        XCTAssertEqual(try buy(c, sale, "u2").0, .refused(.ended))
        XCTAssertEqual(field(f, saleKey, "remaining"), "3")
        XCTAssertEqual(field(f, saleKey, "sold"), "2")
        XCTAssertEqual(f.redis.call(["ZCARD", CommerceKeys.timers]).int, 2 + 2, "two sales, two pay timers: refusals left none")
    }

    // MARK: units back

    private func expire(_ c: RedisCommerceStore, _ f: StoreFixture, _ orderID: String) throws {
        let key = try XCTUnwrap(CommerceKeys.order(orderID))
        let order = try XCTUnwrap(Order(record: (try RedisHash(redisReply: f.redis.call(["HGETALL", key]))).fields))
        let d = rules.expire(order, .payment, payment: nil, now: order.expiresAt)
        var out: Result<ApplyOutcome, GatewayError>?
        c.apply(d, product: "p1") { out = $0 }
        XCTAssertEqual(try XCTUnwrap(out).get(), .applied)
    }

    func testAnExpiredOrderGivesItsUnitsBackToALiveSaleElseToStock() throws {
        let (f, c) = try stores(keys: 4)
        let sale = try create(c, spec(f, quantity: 2, perUser: 1)).get().0
        let (_, o1) = try buy(c, sale, "u1")
        let (_, o2) = try buy(c, sale, "u2")
        XCTAssertEqual(try tick(c).sale?.remaining, 0)
        try expire(c, f, o1)
        XCTAssertEqual(list(f, units), ["k1"])
        XCTAssertEqual(field(f, saleKey, "remaining"), "1")
        XCTAssertEqual(field(f, saleKey, "sold"), "1")
        XCTAssertNil(field(f, CommerceKeys.saleBuyers(product: "p1", "s1"), "u1"), "u1 holds nothing now")
        XCTAssertEqual(field(f, saleKey, "stock_dirty"), "1", "a sale.stock is pending")
        guard case .bought = try buy(c, sale, "u1").0 else { return XCTFail("u1 may buy again") }

        _ = try closeSale(c)
        try expire(c, f, o2)
        XCTAssertEqual(list(f, stock), ["k3", "k4", "k2"], "after the close: to the product's stock")
        XCTAssertEqual(field(f, saleKey, "sold"), "1")
    }

    /// An order of an earlier sale whose id now names another sale of the product (its nonce
    /// differs) expires: its unit goes to stock, the new sale's counts stay as they were.
    func testAnExpiredOrderOfAnEarlierSaleOfTheIdGivesItsUnitToStock() throws {
        let (f, c) = try stores(keys: 4)
        let sale = try create(c, spec(f, quantity: 2)).get().0
        let (_, order) = try buy(c, sale, "u1")
        let key = try XCTUnwrap(CommerceKeys.order(order))
        XCTAssertEqual(field(f, key, "sale_nonce"), sale.nonce)
        f.redis.call(["HSET", saleKey, "nonce", "ffffffffffffffff", "sold", "0", "remaining", "1"])  // the id reused
        f.redis.call(["HDEL", CommerceKeys.saleBuyers(product: "p1", "s1"), "u1"])
        try expire(c, f, order)
        XCTAssertEqual(list(f, stock), ["k3", "k4", "k1"], "to the product's stock")
        XCTAssertEqual(list(f, units), ["k2"], "not into the other sale")
        XCTAssertEqual(field(f, saleKey, "remaining"), "1")
        XCTAssertEqual(field(f, saleKey, "sold"), "0", "never below 0")
        XCTAssertNil(field(f, CommerceKeys.saleBuyers(product: "p1", "s1"), "u1"))
    }

    private func closeSale(_ c: RedisCommerceStore, merchant: String? = nil) throws -> Sale? {
        var out: Result<Sale?, GatewayError>?
        c.closeSale("s1", merchant: merchant) { out = $0 }
        return try XCTUnwrap(out).get()
    }

    // MARK: ticks

    func testCountdownsPushOnlyTheLatestDueThenOpenOnce() throws {
        let (f, c) = try stores()
        let s = spec(f, quantity: 2, opensIn: 9_500)
        _ = try create(c, s).get()
        let t = try tick(c)
        XCTAssertEqual(types(f), ["sale.countdown"], "60 s and 10 s are both past: one push")
        XCTAssertEqual(field(f, saleKey, "phase"), "2")
        XCTAssertEqual(t.nextDue, s.startsAt - SaleSpec.countdownsBeforeMs[2], "lib_sale's last countdown is SaleSpec's")
        _ = try tick(c)
        XCTAssertEqual(types(f), ["sale.countdown"], "nothing new is due")
        // The start passes: the 1 s countdown is skipped, open goes out once however many tick.
        f.redis.call(["HSET", saleKey, "starts_at", clock(f) - 1])
        _ = try tick(c)
        _ = try tick(c)
        XCTAssertEqual(types(f), ["sale.countdown", "sale.open"])
        let open = pushes(f)[1].1
        XCTAssertEqual(open["sale"]?.stringValue, "s1")
        XCTAssertEqual(open["remaining"]?.intValue, 2)
        XCTAssertEqual(f.redis.call(["ZSCORE", CommerceKeys.timers, "sale:p1/s1"]).text.flatMap { Int64($0) }, s.endsAt, "the end is next")
    }

    func testStockPushesAreCoalescedAndTheFinalValueGoesOut() throws {
        let (f, c) = try stores()
        let sale = try create(c, spec(f, quantity: 5, perUser: 1)).get().0
        _ = try tick(c)
        XCTAssertEqual(types(f), ["sale.open"])
        _ = try buy(c, sale, "u1")
        _ = try buy(c, sale, "u2")
        _ = try tick(c)
        XCTAssertEqual(types(f), ["sale.open", "sale.stock"], "two buys, one push")
        XCTAssertEqual(pushes(f)[1].1["remaining"]?.intValue, 3, "with the final remaining")
        guard case .bought(let due?) = try buy(c, sale, "u3").0 else { return XCTFail() }
        let pushedAt = try XCTUnwrap(field(f, saleKey, "stock_at").flatMap { Int64($0) })
        XCTAssertEqual(due, pushedAt + 250, "the next push waits out its 250 ms")
        XCTAssertEqual(f.redis.call(["ZSCORE", CommerceKeys.timers, "sale:p1/s1"]).text.flatMap { Int64($0) }, due)
        _ = try tick(c)
        if clock(f) < due { XCTAssertEqual(types(f).count, 2, "not before its time") }
        f.redis.call(["HSET", saleKey, "stock_at", clock(f) - 250])
        _ = try tick(c)
        XCTAssertEqual(types(f), ["sale.open", "sale.stock", "sale.stock"])
        XCTAssertEqual(pushes(f)[2].1["remaining"]?.intValue, 2)
    }

    func testEndAndCloseReturnUnsoldUnitsToStockOnce() throws {
        let (f, c) = try stores(keys: 6)
        let sale = try create(c, spec(f, quantity: 4)).get().0
        _ = try tick(c)
        _ = try buy(c, sale, "u1")
        var refused: Result<Sale?, GatewayError>?
        c.closeSale("s1", merchant: "m2") { refused = $0 }
        XCTAssertEqual(refused?.failure?.code, .forbidden)
        XCTAssertEqual(field(f, saleKey, "closed"), "0", "another merchant's close changes nothing")

        let closed = try XCTUnwrap(try closeSale(c, merchant: "m1"))
        XCTAssertEqual(closed.state(at: clock(f)), .closed)
        XCTAssertEqual(list(f, stock), ["k5", "k6", "k2", "k3", "k4"])
        XCTAssertEqual(types(f), ["sale.open", "sale.stock", "sale.closed"], "the pending remaining goes out before the close")
        XCTAssertEqual(pushes(f)[2].1["reason"]?.stringValue, "closed")
        XCTAssertEqual(pushes(f)[2].1["remaining"]?.intValue, 3)
        XCTAssertEqual(closed.remaining, 0, "the units went back: the closed sale holds none")
        XCTAssertEqual(field(f, saleKey, "remaining"), "0")
        _ = try closeSale(c)
        _ = try tick(c)
        XCTAssertEqual(types(f).count, 3, "closed once")
        XCTAssertEqual(list(f, stock).count, 5, "returned once")
        XCTAssertEqual(f.redis.call(["ZSCORE", CommerceKeys.timers, "sale:p1/s1"]).text, nil, "nothing more is due")
        XCTAssertGreaterThan(f.redis.call(["PTTL", saleKey]).int ?? -1, 0, "the records expire")

        _ = try create(c, spec(f, id: "s2", quantity: 2)).get()
        XCTAssertEqual(list(f, stock), ["k2", "k3", "k4"])
        f.redis.call(["HSET", CommerceKeys.sale(product: "p1", "s2"), "ends_at", clock(f) - 1])
        _ = try tick(c, "s2")
        XCTAssertEqual(pushes(f, "s2").map(\.0), ["sale.closed"])
        XCTAssertEqual(pushes(f, "s2")[0].1["reason"]?.stringValue, "ended")
        XCTAssertEqual(list(f, stock), ["k2", "k3", "k4", "k5", "k6"])

        // A close reaching a sale past its end before any tick: it ended, and says so.
        _ = try create(c, spec(f, id: "s3", quantity: 1)).get()
        f.redis.call(["HSET", CommerceKeys.sale(product: "p1", "s3"), "ends_at", clock(f) - 1])
        var late: Result<Sale?, GatewayError>?
        c.closeSale("s3", merchant: nil) { late = $0 }
        XCTAssertEqual(try XCTUnwrap(late).get()?.remaining, 0)
        XCTAssertEqual(pushes(f, "s3").map(\.0), ["sale.closed"])
        XCTAssertEqual(pushes(f, "s3").first?.1["reason"]?.stringValue, "ended")
    }

    func testAClusterBuyAndTickGoThroughTheOutbox() throws {
        let (f, c) = try stores(cluster: true)
        let first = spec(f, quantity: 1)
        let sale = try create(c, first).get().0
        XCTAssertNotNil(f.redis.call(["ZSCORE", CommerceKeys.timers, "sale:p1/s1"]).text, "the timer written ahead")
        var reused = first
        reused.price += 1
        XCTAssertEqual(create(c, reused).failure, GatewayError(.conflict, "sale id already used"))
        XCTAssertNotNil(f.redis.call(["ZSCORE", CommerceKeys.timers, "sale:p1/s1"]).text, "a refused create leaves the sale's timer")
        let next = try XCTUnwrap(try tick(c).nextDue)
        XCTAssertLessThanOrEqual(next, clock(f) + 1000, "while open, a cluster's tick comes back within a second")
        XCTAssertEqual(f.redis.call(["ZSCORE", CommerceKeys.timers, "sale:p1/s1"]).text.flatMap { Int64($0) }, next)
        guard case .bought(let due?) = try buy(c, sale, "u1").0 else { return XCTFail() }
        XCTAssertEqual(try buy(c, sale, "u2").0, .refused(.soldOut))
        XCTAssertEqual(f.redis.call(["ZCARD", CommerceKeys.timers]).int, 2, "the sale's and the bought order's: the refused one's pay timer was taken back")
        XCTAssertEqual(f.redis.call(["ZSCORE", CommerceKeys.timers, "sale:p1/s1"]).text.flatMap { Int64($0) }, due,
                       "the store brought the timer forward")
        f.relay.relay(CommerceKeys.outbox("p1"))  // what OrderStore.buySale does once durable
        XCTAssertEqual(types(f), ["sale.open", "sale.sold_out"], "relayed to the sale's channel")
        _ = try closeSale(c)
        XCTAssertEqual(types(f), ["sale.open", "sale.sold_out", "sale.stock", "sale.closed"])
        XCTAssertEqual(f.redis.call(["ZSCORE", CommerceKeys.timers, "sale:p1/s1"]).text, nil, "the store removed the timer")
        // The cluster rule (SlotRuleTests): each sale script gets its keys in one slot (orders: their tag T).
        let calls = f.link.scriptKeys.filter { $0.name.hasPrefix("sale_") }
        XCTAssertEqual(Set(calls.map(\.name)), ["sale_create", "sale_tick", "sale_buy", "sale_close"])
        for call in calls {
            XCTAssertEqual(Set(call.keys.map { HashSlot.of($0) }).count, 1, "\(call.name): \(call.keys)")
        }
    }
}

private extension Result {
    var failure: Failure? { if case .failure(let e) = self { e } else { nil } }
}
