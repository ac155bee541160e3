import XCTest
import GatewayProtocol
@testable import OrderCore

/// Restock holds at payment (contract 4.6): a live hold of the buyer pays one unit, nobody
/// else's order sees it, and every decision names the hold record it relied on.
final class RestockHoldTests: XCTestCase {
    let now = Fx.t0 + 60_000

    func hold(_ user: String = "u1", until: Int64? = nil) -> RestockHold {
        RestockHold(user: user, keyID: "kh", until: until ?? now + 300_000)
    }

    func notify(_ o: Order, stock: Int, hold: Linked<RestockHold>) throws -> Decision {
        let p = try makePayment(o, payer: o.buyer)
        return try success(Fx.rules.notify(Fx.notice(p), payment: p, order: o, stock: stock, hold: hold, now: now))
    }

    func testHoldRecordRoundTripsAndRefusesGarbage() {
        XCTAssertEqual(RestockHold(user: "u1", record: "k|123"), RestockHold(user: "u1", keyID: "k", until: 123))
        XCTAssertEqual(RestockHold(user: "u1", keyID: "k", until: 123).record, "k|123")
        for bad in ["k", "|1", "k|x", "k|1|2", ""] { XCTAssertNil(RestockHold(user: "u1", record: bad), bad) }
        XCTAssertTrue(hold(until: now + 1).isLive(at: now))
        XCTAssertFalse(hold(until: now).isLive(at: now))
    }

    func testALiveHoldPaysAnOrderOfOneFromNoStock() throws {
        let o = try create(Fx.request())
        let h = hold()
        let d = try notify(o, stock: 0, hold: .present(h))
        XCTAssertEqual(d.savedOrder?.status, .delivered)
        XCTAssertTrue(d.preconditions.contains(.holdRecord(product: "p1", user: "u1", record: h.record)))
        XCTAssertFalse(d.preconditions.contains { if case .stockAtLeast = $0 { true } else { false } })
        XCTAssertTrue(d.effects.contains(.takeHeldKey(order: o.id, product: "p1", user: "u1")))
        XCTAssertFalse(d.effects.contains { if case .allocateKeys = $0 { true } else { false } })
    }

    func testAnOrderOfTwoTakesTheHoldAndOneFromStock() throws {
        let o = try create(Fx.request(quantity: 2))
        let d = try notify(o, stock: 1, hold: .present(hold()))
        XCTAssertEqual(d.savedOrder?.status, .delivered)
        XCTAssertTrue(d.preconditions.contains(.stockAtLeast(product: "p1", 1)))
        let keyEffects = d.effects.filter {
            switch $0 {
            case .allocateKeys, .takeHeldKey: true
            default: false
            }
        }
        XCTAssertEqual(keyEffects, [.allocateKeys(order: o.id, product: "p1", count: 1), .takeHeldKey(order: o.id, product: "p1", user: "u1")],
                       "the stock's keys first, then the held one")
    }

    func testAnOrderOfTwoGoesAbnormalAndKeepsTheHoldWhenStockIsShort() throws {
        let o = try create(Fx.request(quantity: 2))
        let h = hold()
        let d = try notify(o, stock: 0, hold: .present(h))
        XCTAssertEqual(d.savedOrder?.status, .abnormal)
        XCTAssertFalse(d.effects.contains { if case .takeHeldKey = $0 { true } else { false } })
        XCTAssertTrue(d.preconditions.contains(.stockBelow(product: "p1", 1)))
        XCTAssertTrue(d.preconditions.contains(.holdRecord(product: "p1", user: "u1", record: h.record)))
    }

    func testAnotherUsersHoldIsNotUsed() throws {
        let o = try create(Fx.request())
        let d = try notify(o, stock: 1, hold: .present(hold("u9")))
        XCTAssertTrue(d.effects.contains(.allocateKeys(order: o.id, product: "p1", count: 1)))
        XCTAssertFalse(d.effects.contains { if case .takeHeldKey = $0 { true } else { false } })
    }

    func testAnEndedHoldIsNotUsed() throws {
        let o = try create(Fx.request())
        let ended = try notify(o, stock: 1, hold: .present(hold(until: now)))
        XCTAssertTrue(ended.effects.contains(.allocateKeys(order: o.id, product: "p1", count: 1)))
        XCTAssertFalse(ended.effects.contains { if case .takeHeldKey = $0 { true } else { false } })
        let short = try notify(o, stock: 0, hold: .present(hold(until: now)))
        XCTAssertEqual(short.savedOrder?.status, .abnormal, "an ended hold pays nothing")
    }

    func testAnAbnormalDecisionChecksThatNoHoldAppeared() throws {
        let o = try create(Fx.request())
        let absent = try notify(o, stock: 0, hold: .absent)
        XCTAssertEqual(absent.savedOrder?.status, .abnormal)
        XCTAssertTrue(absent.preconditions.contains(.holdRecord(product: "p1", user: "u1", record: "")))
        let unlinked = try notify(o, stock: 0, hold: .notLinked)
        XCTAssertFalse(unlinked.preconditions.contains { if case .holdRecord = $0 { true } else { false } },
                       "an order without the link cannot see holds, so it adds no check")
    }

    func testAFriendPayRequestersHoldServesTheRequest() throws {
        let o = try create(Fx.request(.friendpay, friend: "u2"))
        let p = try makePayment(o, payer: "u2")
        let d = try success(Fx.rules.notify(Fx.notice(p), payment: p, order: o, stock: 0, hold: .present(hold("u1")), now: now))
        XCTAssertEqual(d.savedOrder?.status, .delivered)
        XCTAssertTrue(d.effects.contains(.takeHeldKey(order: o.id, product: "p1", user: "u1")))
    }
}
