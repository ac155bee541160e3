import GatewayCore
import XCTest

final class TokenLifetimeTests: XCTestCase {
    func testWarnsAMinuteBeforeThenExpires() {
        var life = TokenLifetime(exp: 1_000)
        XCTAssertEqual(life.next(nowMs: 900_000), .warn(afterMs: 40_000))
        life.didWarn()
        XCTAssertEqual(life.next(nowMs: 940_000), .expire(afterMs: 60_000))
        XCTAssertEqual(life.next(nowMs: 1_200_000), .expire(afterMs: 0), "overdue: at once")
    }

    func testShortTokenIsWarnedAtOnce() {
        XCTAssertEqual(TokenLifetime(exp: 1_000).next(nowMs: 990_000), .warn(afterMs: 0))
    }

    func testOnlyALaterExpiryRestartsTheWarning() {
        var life = TokenLifetime(exp: 1_000)
        life.didWarn()
        life.refreshed(exp: 900)
        XCTAssertEqual(life.exp, 1_000)
        XCTAssertTrue(life.warned, "an earlier token does not shorten the connection's life")
        life.refreshed(exp: 4_600)
        XCTAssertEqual(life.exp, 4_600)
        XCTAssertEqual(life.next(nowMs: 940_000), .warn(afterMs: 3_600_000))
    }

    func testAnExpAsFarAsInt64GoesEndsInYear9999WithoutOverflow() {
        var life = TokenLifetime(exp: .max)
        XCTAssertEqual(life.exp, TokenLifetime.latestExp)
        XCTAssertEqual(life.next(nowMs: 0), .warn(afterMs: TokenLifetime.latestExp * 1_000 - TokenLifetime.warningMs))
        life.refreshed(exp: .max)
        XCTAssertEqual(life.exp, TokenLifetime.latestExp)
        XCTAssertEqual(TokenLifetime(exp: .min).exp, 0)
    }
}
