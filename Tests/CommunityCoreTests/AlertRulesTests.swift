import XCTest
import GatewayProtocol
@testable import CommunityCore

/// Price-drop rules, PROTOCOL.md section 3: fire when the new price is below `below`
/// (or the price at watch time) and below the last alerted price; at most one alert per
/// product per cooldown unless the price is a new low for that watch.
final class AlertRulesTests: XCTestCase {
    private let hour: Int64 = 3_600_000
    private let t0: Int64 = 1_763_900_000_000
    private var expiry: Int64 { t0 + 30 * 24 * hour }

    private func watch(below: Int64? = nil, baseline: Int64 = 2000, lastAlerted: Int64? = nil,
                       lastAlertAt: Int64? = nil, expiresAt: Int64? = nil) -> Watch {
        Watch(product: "p1", user: "u1", below: below, baseline: baseline, lastAlerted: lastAlerted,
              lastAlertAt: lastAlertAt, expiresAt: expiresAt ?? expiry)
    }

    private func should(_ w: Watch, _ price: Int64, at now: Int64? = nil, cooldown: Int64? = nil) -> Bool {
        AlertRules.shouldAlert(w, newPrice: price, now: now ?? t0, cooldownMs: cooldown ?? hour)
    }

    // MARK: threshold

    func testAlertsOnlyBelowBaseline() {
        let w = watch(baseline: 2000)
        XCTAssertTrue(should(w, 1999))
        XCTAssertTrue(should(w, 1))
        XCTAssertTrue(should(w, 0))
        XCTAssertFalse(should(w, 2000), "equal is not below")
        XCTAssertFalse(should(w, 2001))
        XCTAssertFalse(should(w, 50_000))
    }

    func testAlertsOnlyBelowExplicitBelow() {
        let w = watch(below: 1500, baseline: 2000)
        XCTAssertFalse(should(w, 1999), "below the baseline but not below `below`")
        XCTAssertFalse(should(w, 1500), "equal is not below")
        XCTAssertTrue(should(w, 1499))
    }

    func testExplicitBelowAboveBaselineIsTheThreshold() {
        let w = watch(below: 2500, baseline: 2000)
        XCTAssertTrue(should(w, 2400))
        XCTAssertFalse(should(w, 2500))
    }

    // MARK: expiry

    func testExpiredWatchNeverAlerts() {
        let w = watch(baseline: 2000, expiresAt: t0)
        XCTAssertFalse(should(w, 1, at: t0), "a watch is gone at its expiry")
        XCTAssertFalse(should(w, 1, at: t0 + 1))
        XCTAssertFalse(should(w, 1, at: t0 + 365 * 24 * hour))
        XCTAssertTrue(should(w, 1, at: t0 - 1), "one millisecond before expiry it still works")
    }

    func testExpiredWatchWithHistoryNeverAlerts() {
        let w = watch(baseline: 2000, lastAlerted: 1800, lastAlertAt: t0 - 10 * hour, expiresAt: t0)
        XCTAssertFalse(should(w, 100, at: t0 + hour))
    }

    // MARK: first alert

    func testFirstAlertNeedsOnlyTheThreshold() {
        let w = watch(baseline: 2000)
        XCTAssertNil(w.lastAlerted)
        XCTAssertTrue(should(w, 1999, cooldown: Int64.max))
        XCTAssertTrue(should(w, 1999, cooldown: 0))
    }

    // MARK: alerted

    func testAlertedRecordsPriceAndTime() {
        let w = watch(below: 1900, baseline: 2000)
        let after = AlertRules.alerted(w, price: 1800, now: t0 + 42)
        XCTAssertEqual(after.lastAlerted, 1800)
        XCTAssertEqual(after.lastAlertAt, t0 + 42)
        // Nothing else changes.
        XCTAssertEqual(after.product, w.product)
        XCTAssertEqual(after.user, w.user)
        XCTAssertEqual(after.below, 1900)
        XCTAssertEqual(after.baseline, 2000)
        XCTAssertEqual(after.threshold, 1900)
        XCTAssertEqual(after.expiresAt, w.expiresAt)
        // The input is a value: untouched.
        XCTAssertNil(w.lastAlerted)
        XCTAssertNil(w.lastAlertAt)
    }

    func testAlertedOverwritesAnEarlierAlert() {
        let w = watch(lastAlerted: 1800, lastAlertAt: t0)
        let after = AlertRules.alerted(w, price: 1400, now: t0 + hour)
        XCTAssertEqual(after.lastAlerted, 1400)
        XCTAssertEqual(after.lastAlertAt, t0 + hour)
    }

    func testAlertedSurvivesTheRecord() {
        let after = AlertRules.alerted(watch(), price: 1800, now: t0)
        XCTAssertEqual(after.record, "|2000|1800|\(t0)|\(expiry)")
        XCTAssertEqual(Watch(product: "p1", user: "u1", record: after.record), after)
    }

    // MARK: flapping price

    func testFlappingPrice() {
        var w = watch(baseline: 2000)
        var now = t0

        // Down: first alert at 1800.
        XCTAssertTrue(should(w, 1800, at: now))
        w = AlertRules.alerted(w, price: 1800, now: now)

        // Up again: above the threshold, nothing.
        now += 60_000
        XCTAssertFalse(should(w, 2100, at: now))
        XCTAssertFalse(should(w, 2000, at: now))

        // Down to 1850: below the threshold but not below the last alert.
        now += 60_000
        XCTAssertFalse(should(w, 1850, at: now))
        XCTAssertFalse(should(w, 1800, at: now), "the same price again is no news")

        // Down to 1400: a new low, alerts even inside the cooldown.
        now += 60_000
        XCTAssertLessThan(now - w.lastAlertAt!, hour)
        XCTAssertTrue(should(w, 1400, at: now))
        w = AlertRules.alerted(w, price: 1400, now: now)
        XCTAssertEqual(w.lastAlerted, 1400)

        // Back up to 1800 and down to 1500: still nothing.
        XCTAssertFalse(should(w, 1800, at: now + 1))
        XCTAssertFalse(should(w, 1500, at: now + 2))
    }

    /// The same flapping sequence run through the stored record each step, as the node does.
    func testFlappingPriceThroughTheRecord() {
        var record = watch(baseline: 2000).record
        var now = t0
        var alerts: [Int64] = []
        for price: Int64 in [1800, 2100, 1850, 2050, 1850, 1400, 1450, 1399] {
            now += 1000
            let w = Watch(product: "p1", user: "u1", record: record)!
            if AlertRules.shouldAlert(w, newPrice: price, now: now, cooldownMs: hour) {
                alerts.append(price)
                record = AlertRules.alerted(w, price: price, now: now).record
            }
        }
        XCTAssertEqual(alerts, [1800, 1400, 1399])
    }

    // MARK: cooldown vs new low

    func testNewLowPassesTheCooldown() {
        let w = watch(baseline: 2000, lastAlerted: 1800, lastAlertAt: t0)
        XCTAssertTrue(should(w, 1799, at: t0, cooldown: hour), "right after the last alert")
        XCTAssertTrue(should(w, 1799, at: t0 + hour - 1, cooldown: hour))
        XCTAssertTrue(should(w, 1, at: t0 + 1, cooldown: Int64.max / 2))
    }

    func testNotANewLowInsideTheCooldown() {
        let w = watch(baseline: 2000, lastAlerted: 1800, lastAlertAt: t0)
        XCTAssertFalse(should(w, 1800, at: t0 + 1, cooldown: hour))
        XCTAssertFalse(should(w, 1900, at: t0 + 1, cooldown: hour))
    }

    func testNotBelowTheLastAlertEvenAfterTheCooldown() {
        let w = watch(baseline: 2000, lastAlerted: 1800, lastAlertAt: t0)
        XCTAssertFalse(should(w, 1800, at: t0 + hour, cooldown: hour))
        XCTAssertFalse(should(w, 1850, at: t0 + 2 * hour, cooldown: hour))
        XCTAssertFalse(should(w, 1999, at: t0 + 100 * hour, cooldown: hour))
        // Below the last alert after the cooldown: alerts.
        XCTAssertTrue(should(w, 1700, at: t0 + 2 * hour, cooldown: hour))
    }

    func testZeroCooldown() {
        let w = watch(baseline: 2000, lastAlerted: 1800, lastAlertAt: t0)
        XCTAssertTrue(should(w, 1799, at: t0, cooldown: 0))
        XCTAssertFalse(should(w, 1800, at: t0, cooldown: 0))
    }

    func testLastAlertAboveAChangedThresholdStillNeedsTheThreshold() {
        // Watch re-made with a lower `below` but an old alert price still above it.
        let w = watch(below: 1000, baseline: 2000, lastAlerted: 1800, lastAlertAt: t0)
        XCTAssertFalse(should(w, 1500, at: t0 + 2 * hour))
        XCTAssertFalse(should(w, 1000, at: t0 + 2 * hour))
        XCTAssertTrue(should(w, 999, at: t0 + 2 * hour))
    }

    // MARK: alertData

    func testAlertDataWithBelow() {
        let w = watch(below: 1500, baseline: 2000)
        let data = AlertRules.alertData(w, title: "Steam 100 CNY", previous: 2000, price: 1400, currency: "CNY")
        XCTAssertEqual(data, .object([
            ("product", .string("p1")), ("title", .string("Steam 100 CNY")), ("previous", .int(2000)),
            ("price", .int(1400)), ("currency", .string("CNY")), ("below", .int(1500)),
        ]))
        XCTAssertEqual(data.serialized(),
                       #"{"product":"p1","title":"Steam 100 CNY","previous":2000,"price":1400,"currency":"CNY","below":1500}"#)
    }

    func testAlertDataWithoutBelowOmitsIt() {
        let w = watch(below: nil, baseline: 2000, lastAlerted: 1800, lastAlertAt: t0)
        let data = AlertRules.alertData(w, title: "Card", previous: 1900, price: 1700, currency: "USD")
        XCTAssertEqual(data, .object([
            ("product", .string("p1")), ("title", .string("Card")), ("previous", .int(1900)),
            ("price", .int(1700)), ("currency", .string("USD")),
        ]))
        XCTAssertNil(data["below"], "below only when the watcher set one, not the baseline")
        XCTAssertNil(data["baseline"])
        XCTAssertNil(data["user"])
    }

    func testAlertDataRoundTripsThroughJSONText() throws {
        let w = watch(below: 10, baseline: 2000)
        let data = AlertRules.alertData(w, title: "礼品卡 \"100\"\n", previous: 20, price: 5, currency: "CNY")
        let parsed = try JSON.parse(data.serialized())
        XCTAssertEqual(parsed, data)
        XCTAssertEqual(parsed["title"]?.stringValue, "礼品卡 \"100\"\n")
    }
}
