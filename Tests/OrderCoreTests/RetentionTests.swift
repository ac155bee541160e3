import XCTest
@testable import OrderCore

/// How long the order core's lookup keys (idempotency keys, gift and pay codes) live.
final class RetentionTests: XCTestCase {
    func testDefaultsOutliveEverythingThatCanStillUseThem() {
        let times = CommerceTimes(orderTTL: 900_000, giftTTL: 86_400_000, friendpayTTL: 1_800_000, paymentGrace: 43_200_000)
        let r = KeyRetention(times)
        // The longest an order stays payable is its TTL plus the grace of a late notify.
        XCTAssertEqual(r.idempotencyMs, KeyRetention.day, "at least a day")
        XCTAssertEqual(r.giftCodeMs, 900_000 + 43_200_000 + 86_400_000 + 43_200_000)
        XCTAssertEqual(r.payCodeMs, 1_800_000 + 2 * 43_200_000)
        XCTAssertGreaterThan(r.giftCodeMs, times.orderTTL + times.paymentGrace + times.giftTTL, "a late claim still finds the code")
    }

    func testLongTimesStretchTheIdempotencyWindow() {
        let times = CommerceTimes(orderTTL: 3 * KeyRetention.day, giftTTL: 1_000, friendpayTTL: 5 * KeyRetention.day, paymentGrace: 1_000)
        XCTAssertEqual(KeyRetention(times).idempotencyMs, 5 * KeyRetention.day + 1_000, "the longer of the order and pay-request TTLs, plus the grace")
    }

    func testShortTimesStillExpire() {
        let r = KeyRetention(CommerceTimes(orderTTL: 1_000, giftTTL: 1_000, friendpayTTL: 1_000, paymentGrace: 0))
        XCTAssertEqual(r.giftCodeMs, 2_000)
        XCTAssertEqual(r.payCodeMs, 1_000)
        XCTAssertGreaterThan(r.payCodeMs, 0, "a TTL of 0 would make SET PX fail")
    }
}
