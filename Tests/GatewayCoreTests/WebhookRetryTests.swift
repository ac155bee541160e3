import GatewayCore
import XCTest

final class WebhookRetryTests: XCTestCase {
    let retry = WebhookRetry(maxBackoffSeconds: 600, retryForSeconds: 259_200)

    func testBackoffDoublesFromOneSecondUpToTheCap() {
        let seconds = (1...12).map { retry.backoffMs(attempt: $0, jitter: 0.5) / 1_000 }
        XCTAssertEqual(seconds, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600])
        XCTAssertEqual(retry.backoffMs(attempt: 10_000, jitter: 0.5), 600_000, "no overflow however many attempts")
    }

    func testJitterStaysWithinTwentyPercentAndUnderTheCap() {
        XCTAssertEqual(retry.backoffMs(attempt: 1, jitter: 0), 800)
        XCTAssertEqual(retry.backoffMs(attempt: 1, jitter: 0.999_999), 1_200)
        XCTAssertEqual(retry.backoffMs(attempt: 11, jitter: 0.999_999), 600_000, "the cap holds with jitter")
        XCTAssertEqual(retry.backoffMs(attempt: 11, jitter: 0), 480_000)
    }

    func testTheLastTryIsAtTheDeadlineThenTheEventIsGivenUp() {
        let short = WebhookRetry(maxBackoffSeconds: 600, retryForSeconds: 60)
        XCTAssertEqual(short.afterFailure(attempt: 1, eventAtMs: 0, nowMs: 10_000, jitter: 0.5), .retry(atMs: 11_000))
        XCTAssertEqual(short.afterFailure(attempt: 9, eventAtMs: 0, nowMs: 50_000, jitter: 0.5), .retry(atMs: 60_000),
                       "a backoff past the deadline is cut to it")
        XCTAssertEqual(short.afterFailure(attempt: 10, eventAtMs: 0, nowMs: 60_000, jitter: 0.5), .giveUp)
    }

    func testTheLeaseOutlastsTheAnswerTimeout() {
        XCTAssertGreaterThanOrEqual(WebhookRetry.leaseMs, 3 * WebhookRetry.answerTimeoutMs)
    }
}
