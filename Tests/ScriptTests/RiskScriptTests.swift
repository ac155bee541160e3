@testable import GatewayNode
import GatewayProtocol
import GatewayRedis
import OrderCore
import XCTest

/// risk_reserve.lua through RedisRiskStore against a real server: the limits are hit
/// exactly at N, a release frees a place, the hour window slides, a refusal takes nothing.
final class RiskScriptTests: XCTestCase {
    private let hourMs = RiskLimits.windowMs

    private func place(_ order: String, buyer: String = "u1", pending: Int = 3, requests: Int = 0,
                       hold: Int64 = 900_000) -> RiskReservation {
        RiskReservation(order: order, buyer: buyer, maxPending: pending, maxRequests: requests, payWindowMs: hold, windowMs: hourMs)
    }

    private func members(_ f: StoreFixture, _ key: String) -> [String] {
        (f.redis.call(["ZRANGE", key, 0, -1]).array ?? []).compactMap(\.text)
    }

    func testUnpaidOrdersStopAtTheLimitAndAReleaseFreesAPlace() throws {
        let f = try StoreFixture()
        let risk = RedisRiskStore(redis: f.link, log: { _ in })
        for i in 1...3 { XCTAssertNil(try f.value { risk.reserve(self.place("o-\(i)"), $0) }, "place \(i)") }
        let refusal = try f.value { risk.reserve(self.place("o-4"), $0) }
        guard case .pendingOrders(let limit, let after)? = refusal else { return XCTFail("\(String(describing: refusal))") }
        XCTAssertEqual(limit, 3)
        XCTAssertGreaterThan(after, 0)
        XCTAssertLessThanOrEqual(after, 900_000, "when the oldest place lapses at the latest")
        XCTAssertEqual(members(f, StoreKeys.riskPending("u1")), ["o-1", "o-2", "o-3"], "a refusal takes nothing")
        XCTAssertNil(try f.value { risk.reserve(self.place("x-1", buyer: "u2"), $0) }, "another buyer has places of their own")

        risk.releasePending(order: "o-2", buyer: "u1")
        XCTAssertNil(try f.value { risk.reserve(self.place("o-4"), $0) })
        XCTAssertNotNil(try f.value { risk.reserve(self.place("o-5"), $0) }, "full again")
        XCTAssertGreaterThan(f.redis.call(["PTTL", StoreKeys.riskPending("u1")]).int ?? -1, 0, "the set expires with its last place")
    }

    func testAPlaceWhoseReleaseWasLostLapsesAtThePayDeadline() throws {
        let f = try StoreFixture()
        let risk = RedisRiskStore(redis: f.link, log: { _ in })
        for i in 1...3 { XCTAssertNil(try f.value { risk.reserve(self.place("o-\(i)"), $0) }) }
        // o-1's pay window ended and its release never came.
        f.redis.call(["ZADD", StoreKeys.riskPending("u1"), "XX", 1, "o-1"])
        XCTAssertNil(try f.value { risk.reserve(self.place("o-4"), $0) })
        XCTAssertEqual(members(f, StoreKeys.riskPending("u1")).sorted(), ["o-2", "o-3", "o-4"])
    }

    func testGiftAndFriendPayOrdersStopAtTheHourlyLimitUntilTheOldestLeavesTheWindow() throws {
        let f = try StoreFixture()
        let risk = RedisRiskStore(redis: f.link, log: { _ in })
        for i in 1...2 {
            let r = place("g-\(i)", pending: 5, requests: 2)
            XCTAssertNil(try f.value { risk.reserve(r, $0) })
            risk.releasePending(order: r.order, buyer: r.buyer)  // paid at once: only the hour counts
        }
        let refusal = try f.value { risk.reserve(self.place("g-3", pending: 5, requests: 2), $0) }
        guard case .requestsPerHour(let limit, let after)? = refusal else { return XCTFail("\(String(describing: refusal))") }
        XCTAssertEqual(limit, 2)
        XCTAssertGreaterThan(after, hourMs - 60_000, "the oldest leaves the window in about an hour")
        XCTAssertLessThanOrEqual(after, hourMs)
        XCTAssertEqual(members(f, StoreKeys.riskPending("u1")), [], "a refusal by the hour takes no unpaid place either")
        XCTAssertNil(try f.value { risk.reserve(self.place("n-1", pending: 5, requests: 0), $0) }, "a normal order is not counted by the hour")

        // g-1 was made an hour and a millisecond ago: out of the window.
        let now = try XCTUnwrap(f.redis.call(["TIME"]).array?.first?.text.flatMap { Int64($0) }) * 1000
        f.redis.call(["ZADD", StoreKeys.riskRequests("u1"), "XX", now - hourMs - 1, "g-1"])
        XCTAssertNil(try f.value { risk.reserve(self.place("g-3", pending: 5, requests: 2), $0) })
        XCTAssertEqual(members(f, StoreKeys.riskRequests("u1")), ["g-2", "g-3"])
    }

    func testACanceledReservationCountsNowhere() throws {
        let f = try StoreFixture()
        let risk = RedisRiskStore(redis: f.link, log: { _ in })
        let r = place("g-1", pending: 1, requests: 1)
        XCTAssertNil(try f.value { risk.reserve(r, $0) })
        risk.cancel(r)
        XCTAssertEqual(members(f, StoreKeys.riskPending("u1")), [])
        XCTAssertEqual(members(f, StoreKeys.riskRequests("u1")), [])
        XCTAssertNil(try f.value { risk.reserve(self.place("g-2", pending: 1, requests: 1), $0) })
    }

    func testOnAClusterTheReserveTouchesOnlyTheBuyersSlot() throws {
        let f = try StoreFixture(cluster: true)
        let risk = RedisRiskStore(redis: f.link, log: { _ in })
        XCTAssertNil(try f.value { risk.reserve(self.place("g-1", pending: 1, requests: 1), $0) })
        let calls = f.link.scriptKeys.filter { $0.name == RiskScripts.reserve.name }
        XCTAssertEqual(calls.count, 1)
        for call in calls { XCTAssertEqual(Set(call.keys.map { $0.split(separator: "}").first.map(String.init) ?? $0 }).count, 1, "\(call.keys)") }
        for script in RiskScripts.all { XCTAssertFalse(script.source.contains("'gw:"), "\(script.name) builds a key name") }
    }
}
