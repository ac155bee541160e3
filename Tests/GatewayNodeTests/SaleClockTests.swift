@testable import GatewayNode
import XCTest

/// The node's local sale timers: on time when the due is ahead, backing off when the node's
/// clock runs ahead of Redis's (the tick keeps answering a due the node thinks is past).
final class SaleClockTests: XCTestCase {
    func testADueAheadFiresOnTime() {
        XCTAssertEqual(SaleClock.delayMs(due: 1_700, now: 1_000, repeats: 0), 700)
        XCTAssertEqual(SaleClock.delayMs(due: 1_700, now: 1_000, repeats: 5), 700)
    }

    func testAPassedDueIsAskedAgainBackingOff() {
        let delays = (0..<10).map { SaleClock.delayMs(due: 1_000, now: 1_000, repeats: $0) }
        XCTAssertEqual(delays, [5, 10, 20, 40, 80, 160, 250, 250, 250, 250])
        XCTAssertEqual(SaleClock.delayMs(due: 1_000, now: 2_000, repeats: 1_000), 250, "no overflow, never past the sweep's period")
        var elapsed: Int64 = 0, ticks = 0
        while elapsed < 1_000 { elapsed += SaleClock.delayMs(due: 0, now: 1, repeats: ticks); ticks += 1 }
        XCTAssertLessThanOrEqual(ticks, 10, "a node 1 s ahead of Redis")
    }
}
