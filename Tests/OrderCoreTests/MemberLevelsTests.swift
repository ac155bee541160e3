import XCTest
import GatewayProtocol
@testable import OrderCore

/// Member levels (contract 4.6): the ladder's checks, points to level, and the discounted amount.
final class MemberLevelsTests: XCTestCase {
    static let silver = MemberLevel(name: "silver", minPoints: 10_000, discountPercent: 5)
    static let gold = MemberLevel(name: "gold", minPoints: 50_000, discountPercent: 12)
    static let ladder = try! MemberLevels(validating: [
        MemberLevel(name: "bronze", minPoints: 0, discountPercent: 0), silver, gold,
    ])

    func problems(_ levels: [MemberLevel], file: StaticString = #filePath, line: UInt = #line) -> [String] {
        do {
            _ = try MemberLevels(validating: levels)
            XCTFail("expected the ladder to be refused", file: file, line: line)
            return []
        } catch {
            return error.problems
        }
    }

    // MARK: Points to level

    func testLevelAtPoints() {
        let l = Self.ladder
        XCTAssertEqual(l.level(at: 0)?.name, "bronze")
        XCTAssertEqual(l.level(at: 9_999)?.name, "bronze")
        XCTAssertEqual(l.level(at: 10_000)?.name, "silver", "min_points is reached at exactly that many points")
        XCTAssertEqual(l.level(at: 49_999)?.name, "silver")
        XCTAssertEqual(l.level(at: 50_000)?.name, "gold")
        XCTAssertEqual(l.level(at: .max)?.name, "gold")
    }

    func testNextLevel() {
        let l = Self.ladder
        XCTAssertEqual(l.nextLevel(after: 0), Self.silver)
        XCTAssertEqual(l.nextLevel(after: 9_999), Self.silver)
        XCTAssertEqual(l.nextLevel(after: 10_000), Self.gold)
        XCTAssertNil(l.nextLevel(after: 50_000), "nothing above the top")
    }

    func testBelowTheFirstLevelThereIsNone() throws {
        let l = try MemberLevels(validating: [Self.silver, Self.gold])
        XCTAssertNil(l.level(at: 0))
        XCTAssertNil(l.level(at: 9_999))
        XCTAssertEqual(l.nextLevel(after: 0), Self.silver)
        XCTAssertEqual(l.level(at: 10_000), Self.silver)
    }

    func testNoLadderGivesNoLevel() {
        XCTAssertNil(MemberLevels.none.level(at: 1_000_000))
        XCTAssertNil(MemberLevels.none.nextLevel(after: 0))
    }

    func testLevelPushOnlyWhenTheLevelChanges() throws {
        let l = Self.ladder
        XCTAssertNil(l.levelPush(from: 0, to: 9_999))
        XCTAssertNil(l.levelPush(from: 10_000, to: 49_999))
        XCTAssertEqual(l.levelPush(from: 9_999, to: 10_000), try parse(#"{"level":"silver","previous":"bronze","points":10000}"#), "up")
        XCTAssertEqual(l.levelPush(from: 60_000, to: 20_000), try parse(#"{"level":"silver","previous":"gold","points":20000}"#),
                       "down, after a refund")
        XCTAssertEqual(l.levelPush(from: 0, to: 50_000), try parse(#"{"level":"gold","previous":"bronze","points":50000}"#),
                       "two rungs at once")
        let above = try MemberLevels(validating: [Self.silver])
        XCTAssertEqual(above.levelPush(from: 10_000, to: 0), try parse(#"{"level":null,"previous":"silver","points":0}"#),
                       "back below the first level")
        XCTAssertNil(MemberLevels.none.levelPush(from: 0, to: 1_000_000))
    }

    func testUserView() throws {
        let l = Self.ladder
        XCTAssertEqual(l.userJSON(id: "u1", points: 12_000, lastSeen: Fx.t0, orders: 3), try parse(
            #"{"id":"u1","points":12000,"level":"silver","next_level":{"name":"gold","min_points":50000},"last_seen":1763900000000,"orders":3}"#))
        XCTAssertEqual(l.userJSON(id: "u1", points: 50_000, lastSeen: nil, orders: 9), try parse(
            #"{"id":"u1","points":50000,"level":"gold","last_seen":null,"orders":9}"#), "no next_level at the top")
        XCTAssertEqual(MemberLevels.none.userJSON(id: "u2", points: 0, lastSeen: nil, orders: 0), try parse(
            #"{"id":"u2","points":0,"level":null,"last_seen":null,"orders":0}"#), "no ladder")
        let above = try MemberLevels(validating: [Self.silver])
        XCTAssertEqual(above.userJSON(id: "u3", points: 5, lastSeen: nil, orders: 1), try parse(
            #"{"id":"u3","points":5,"level":null,"next_level":{"name":"silver","min_points":10000},"last_seen":null,"orders":1}"#))
    }

    // MARK: The amount

    func testDiscountedAmountFloors() {
        let five = MemberLevel(name: "five", minPoints: 0, discountPercent: 5)
        XCTAssertEqual(five.discounted(1999), 1899, "1999 * 95 / 100 = 1899.05, floored")
        XCTAssertEqual(five.discounted(19), 18, "18.05")
        XCTAssertEqual(five.discounted(1), 0, "0.95")
        XCTAssertEqual(five.discounted(0), 0)
        XCTAssertEqual(MemberLevel(name: "none", minPoints: 0, discountPercent: 0).discounted(1999), 1999)
        XCTAssertEqual(MemberLevel(name: "free", minPoints: 0, discountPercent: 100).discounted(1999), 0)
        XCTAssertEqual(MemberLevel(name: "third", minPoints: 0, discountPercent: 33).discounted(3), 2, "2.01")
    }

    /// The contract's formula on every small amount and discount, against plain arithmetic
    /// where it cannot overflow.
    func testDiscountedAmountMatchesTheFormula() {
        for d in 0...100 {
            let level = MemberLevel(name: "l", minPoints: 0, discountPercent: d)
            for gross in Int64(0)...1_000 {
                XCTAssertEqual(level.discounted(gross), gross * Int64(100 - d) / 100, "gross \(gross), discount \(d)")
            }
        }
    }

    /// `gross * (100 - d)` overflows Int64 here; the split form stays exact.
    func testDiscountedAmountIsExactNearInt64Max() {
        let gross = Int64.max - 7  // 9223372036854775800 = 100 * 92233720368547758
        XCTAssertEqual(MemberLevel(name: "l", minPoints: 0, discountPercent: 1).discounted(gross), 92_233_720_368_547_758 * 99)
        XCTAssertEqual(MemberLevel(name: "l", minPoints: 0, discountPercent: 0).discounted(.max), .max)
        // .max = 100 * 92233720368547758 + 7: 7 * 50 / 100 = 3.5, floored to 3.
        XCTAssertEqual(MemberLevel(name: "l", minPoints: 0, discountPercent: 50).discounted(.max), 92_233_720_368_547_758 * 50 + 3)
    }

    // MARK: Refused ladders

    func testEmptyLadderIsValid() throws {
        XCTAssertEqual(try MemberLevels(validating: []), .none)
    }

    func testOutOfOrderIsRefused() {
        XCTAssertEqual(problems([Self.gold, Self.silver]), [
            "level 2: min_points must be above level 1's 50000 (levels go from fewest points up, none at the same points), got 10000",
            "level 2: discount_percent must not be below level 1's 12, got 5",
        ])
    }

    func testOverlappingIsRefused() {
        var twin = Self.gold
        twin.name = "platinum"
        twin.minPoints = Self.silver.minPoints
        XCTAssertEqual(problems([Self.silver, twin]), [
            "level 2: min_points must be above level 1's 10000 (levels go from fewest points up, none at the same points), got 10000",
        ])
    }

    func testDecreasingDiscountIsRefused() {
        var stingy = Self.gold
        stingy.discountPercent = 4
        XCTAssertEqual(problems([Self.silver, stingy]), ["level 2: discount_percent must not be below level 1's 5, got 4"])
        var same = Self.gold
        same.discountPercent = Self.silver.discountPercent
        XCTAssertNoThrow(try MemberLevels(validating: [Self.silver, same]), "an equal discount is fine")
    }

    func testNamesMustBeNonEmptyUniqueAndClean() {
        var blank = Self.silver
        blank.name = " "
        XCTAssertEqual(problems([blank]), ["level 1: name must not be empty"])
        var empty = Self.silver
        empty.name = ""
        XCTAssertEqual(problems([empty]), ["level 1: name must not be empty"])
        var twice = Self.gold
        twice.name = "silver"
        XCTAssertEqual(problems([Self.silver, twice]), [#"level 2: name "silver" is used twice"#])
        var padded = Self.silver
        padded.name = "silver "
        XCTAssertEqual(problems([padded]), [#"level 1: name "silver " must not start or end with spaces or hold control characters"#])
        var long = Self.silver
        long.name = String(repeating: "金", count: 33)
        XCTAssertEqual(problems([long]), ["level 1: name must be at most 32 characters, got 33"])
        var chinese = Self.silver
        chinese.name = String(repeating: "金", count: 32)
        XCTAssertNoThrow(try MemberLevels(validating: [chinese]))
    }

    func testRangesAreChecked() {
        var negative = Self.silver
        negative.minPoints = -1
        var huge = Self.gold
        huge.minPoints = MemberLevels.maxPoints + 1
        huge.discountPercent = 101
        var minus = Self.silver
        minus.discountPercent = -1
        XCTAssertEqual(problems([negative, huge]), [
            "level 1: min_points must be between 0 and 9007199254740991, got -1",
            "level 2: min_points must be between 0 and 9007199254740991, got 9007199254740992",
            "level 2: discount_percent must be between 0 and 100, got 101",
        ])
        XCTAssertEqual(problems([minus]), ["level 1: discount_percent must be between 0 and 100, got -1"])
    }

    func testTooManyLevels() {
        let many = (0...MemberLevels.maxLevels).map { MemberLevel(name: "l\($0)", minPoints: Int64($0), discountPercent: 0) }
        XCTAssertEqual(problems(many), ["at most 100 levels, got 101"])
        XCTAssertNoThrow(try MemberLevels(validating: Array(many.dropLast())))
    }

    // MARK: Orders

    func testCreateTakesTheLevelsDiscountAndRecordsIt() throws {
        let d = try success(Fx.rules.create(Fx.request(quantity: 3), product: Fx.product, level: Self.silver, now: Fx.t0,
                                            fresh: Fx.fresh))
        let o = try XCTUnwrap(d.savedOrder)
        XCTAssertEqual(o.amount, 5697, "floor(1999 * 3 * 95 / 100) = floor(5697.15)")
        XCTAssertEqual(o.level, "silver")
        XCTAssertEqual(o.json(for: .user("u1"))["level"], .string("silver"))
        XCTAssertEqual(d.pushes("order.status").first?.data["amount"], .int(5697), "the push says the discounted amount")
        let payment = try makePayment(o, payer: "u1")
        XCTAssertEqual(payment.amount, 5697, "the payment charges the discounted amount")
    }

    func testCreateWithoutLevelKeepsTheFullAmountAndNoLevel() throws {
        let o = try create(Fx.request(quantity: 3))
        XCTAssertEqual(o.amount, 5997)
        XCTAssertNil(o.level)
        XCTAssertNil(o.json(for: .shop)["level"])
    }

    func testLevelIsInTheOrdersEvents() throws {
        let d = try success(Fx.rules.create(Fx.request(), product: Fx.product, level: Self.gold, now: Fx.t0, fresh: Fx.fresh))
        let (paid, _) = try pay(try XCTUnwrap(d.savedOrder), payer: "u1")
        XCTAssertEqual(paid.level, "gold")
        XCTAssertEqual(EventRecord.order(.orderDelivered, paid, at: Fx.t0).data["level"], .string("gold"))
    }

    /// The gross amount is still checked against its range before any discount: a discount
    /// does not make an order over the limit acceptable.
    func testOverflowIsRefusedWhateverTheDiscount() {
        var pricey = Fx.product
        pricey.price = Int64.max / 2
        let free = MemberLevel(name: "free", minPoints: 0, discountPercent: 100)
        assertFailure(Fx.rules.create(Fx.request(quantity: 3), product: pricey, level: free, now: Fx.t0, fresh: Fx.fresh), .badRequest)
    }
}

/// Who the rules give points to, and when (contract 4.6: delivered, not refunded amounts).
final class MemberPointsTests: XCTestCase {
    let rules = Fx.rules
    let now = Fx.t0 + 2_000

    func points(_ d: Decision) -> [Effect] {
        d.effects.filter {
            switch $0 {
            case .awardPoints, .revokePoints: true
            default: false
            }
        }
    }

    func testDeliveryCountsTheDiscountedAmountForTheOwner() throws {
        let silver = MemberLevel(name: "silver", minPoints: 0, discountPercent: 5)
        let o = try XCTUnwrap(try success(rules.create(Fx.request(quantity: 3), product: Fx.product, level: silver, now: Fx.t0,
                                                       fresh: Fx.fresh)).savedOrder)
        let p = try makePayment(o, payer: "u1")
        let d = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 5, now: now))
        XCTAssertEqual(points(d), [.awardPoints(user: "u1", order: "o-1", amount: 5697)], "what was paid, not the list price")
    }

    func testFriendpayCountsForTheRequesterNotThePayer() throws {
        let o = try create(Fx.request(.friendpay, friend: "u2"))
        let p = try makePayment(o, payer: "u9")
        let d = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 5, now: now))
        XCTAssertEqual(points(d), [.awardPoints(user: "u1", order: "o-1", amount: 1999)])
    }

    func testNothingCountsUntilDelivered() throws {
        let o = try create(Fx.request())
        let p = try makePayment(o, payer: "u1")
        let abnormal = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 0, now: now))
        XCTAssertEqual(abnormal.savedOrder?.status, .abnormal)
        XCTAssertEqual(points(abnormal), [], "paid but out of stock is not delivered")
        XCTAssertEqual(points(try success(rules.refund(try XCTUnwrap(abnormal.savedOrder), payment: abnormal.savedPayment, now: now))), [],
                       "so its refund takes nothing back")
        let gift = try create(Fx.request(.gift, giftTo: "u3"))
        let giftPayment = try makePayment(gift, payer: "u1")
        let paid = try success(rules.notify(Fx.notice(giftPayment), payment: giftPayment, order: gift, stock: 5, now: now))
        XCTAssertEqual(paid.savedOrder?.status, .paid)
        XCTAssertEqual(points(paid), [], "a gift counts once claimed")
    }

    func testAClaimCountsForTheClaimerAndItsRefundTakesItBack() throws {
        let (paid, p) = try pay(try create(Fx.request(.gift, giftTo: "u3")), payer: "u1")
        let claim = try success(rules.claim(paid, by: "u3", now: now + 1))
        XCTAssertEqual(points(claim), [.awardPoints(user: "u3", order: "o-1", amount: 1999)])
        let refund = try success(rules.refund(try XCTUnwrap(claim.savedOrder), payment: p, now: now + 2))
        XCTAssertEqual(points(refund), [.revokePoints(user: "u3", order: "o-1")])
    }

    func testDeclinedOrExpiredGiftsNeverCounted() throws {
        let (paid, p) = try pay(try create(Fx.request(.gift, giftTo: "u3")), payer: "u1")
        XCTAssertEqual(points(try success(rules.decline(paid, by: "u3", payment: p, now: now + 1))), [])
        XCTAssertEqual(points(rules.expire(paid, .gift, payment: p, now: paid.gift!.expiresAt! + 1)), [])
    }
}
