import GatewayCore
import XCTest

final class ConnectionQuotaTests: XCTestCase {
    func testCapPerKeyAndFreedSlots() {
        var quota = ConnectionQuota(limit: 2)
        XCTAssertTrue(quota.tryAdd("u1"))
        XCTAssertTrue(quota.tryAdd("u1"))
        XCTAssertFalse(quota.tryAdd("u1"), "the third connection of u1 is over the cap")
        XCTAssertEqual(quota.count("u1"), 2, "a refusal counts nothing")
        XCTAssertTrue(quota.tryAdd("u2"), "other keys are independent")
        quota.remove("u1")
        XCTAssertTrue(quota.allows("u1"))
        XCTAssertTrue(quota.tryAdd("u1"))
        quota.remove("u1")
        quota.remove("u1")
        quota.remove("u1")
        XCTAssertEqual(quota.count("u1"), 0, "never negative")
        quota.remove("u2")
        XCTAssertEqual(quota.keyCount, 0, "keys without connections are forgotten")
    }

    func testZeroMeansNoLimit() {
        var quota = ConnectionQuota(limit: 0)
        for _ in 0..<10_000 { XCTAssertTrue(quota.tryAdd("10.0.0.1")) }
        XCTAssertEqual(quota.keyCount, 0, "nothing is tracked without a limit")
    }
}
