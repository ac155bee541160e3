import GatewayCore
import XCTest

final class CommandBudgetTests: XCTestCase {
    func testInflightWindowCapsWhatStartsAndEachReplyFreesOneSlot() {
        var budget = CommandBudget(maxInflight: 64, perSecond: 1_000_000, now: 0)
        var admitted = 0
        var refused: [CommandBudget.Decision] = []
        for _ in 0..<1_300 {
            let d = budget.admit(now: 0)
            if d == .admit { admitted += 1 } else { refused.append(d) }
        }
        XCTAssertEqual(admitted, 64, "a frame of 1,300 commands starts at most max_inflight")
        XCTAssertEqual(refused.count, 1_236)
        XCTAssertEqual(Set(refused.map { "\($0)" }).count, 1)
        XCTAssertEqual(refused.first, .reject(retryAfterMs: CommandBudget.inflightRetryMs, reason: .inflight))
        XCTAssertEqual(budget.inflight, 64)

        budget.completed()
        XCTAssertEqual(budget.admit(now: 0), .admit)
        XCTAssertEqual(budget.admit(now: 0), .reject(retryAfterMs: CommandBudget.inflightRetryMs, reason: .inflight))
    }

    func testTokenBucketAllowsTwiceTheRateAsBurstThenTheRate() {
        var budget = CommandBudget(maxInflight: 1_000_000, perSecond: 50, now: 100)
        var admitted = 0
        var last: CommandBudget.Decision = .admit
        for _ in 0..<500 {
            last = budget.admit(now: 100)
            if last == .admit { admitted += 1; budget.completed() }
        }
        XCTAssertEqual(admitted, 100, "burst is 2x commands_per_s")
        // One token comes back every 20 ms at 50/s.
        XCTAssertEqual(last, .reject(retryAfterMs: 20, reason: .rate))
        XCTAssertEqual(budget.admit(now: 100.010), .reject(retryAfterMs: 10, reason: .rate))
        XCTAssertEqual(budget.admit(now: 100.020), .admit)
        XCTAssertEqual(budget.admit(now: 100.020), .reject(retryAfterMs: 20, reason: .rate))
        // A second later: 50 more, not more than that.
        var again = 0
        while budget.admit(now: 101.020) == .admit { again += 1 }
        XCTAssertEqual(again, 50)
        // A long pause refills only up to the burst.
        var afterPause = 0
        while budget.admit(now: 1_000) == .admit { afterPause += 1 }
        XCTAssertEqual(afterPause, 100)
    }

    func testRefusalsCostNothingAndCompletionNeverGoesNegative() {
        var budget = CommandBudget(maxInflight: 2, perSecond: 1, now: 0)
        XCTAssertEqual(budget.admit(now: 0), .admit)
        XCTAssertEqual(budget.admit(now: 0), .admit)
        for _ in 0..<10 { _ = budget.admit(now: 0) }
        XCTAssertEqual(budget.inflight, 2)
        budget.completed()
        budget.completed()
        budget.completed()
        XCTAssertEqual(budget.inflight, 0)
        // The in-flight refusals above did not spend tokens: the bucket (2) is empty
        // because two were admitted, and one comes back per second.
        XCTAssertEqual(budget.admit(now: 0), .reject(retryAfterMs: 1000, reason: .rate))
        XCTAssertEqual(budget.admit(now: 1), .admit)
    }

    func testClockGoingBackwardsDoesNotMintTokens() {
        var budget = CommandBudget(maxInflight: 10, perSecond: 1, now: 50)
        XCTAssertEqual(budget.admit(now: 50), .admit)
        budget.completed()
        XCTAssertEqual(budget.admit(now: 50), .admit)
        budget.completed()
        XCTAssertEqual(budget.admit(now: 10), .reject(retryAfterMs: 1000, reason: .rate))
    }
}
