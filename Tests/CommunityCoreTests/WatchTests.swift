import XCTest
import GatewayProtocol
@testable import CommunityCore

/// `Watch`: the per-watcher hash field `below|baseline|lastAlerted|lastAlertAt|expiresAt`,
/// its threshold and its `watches` JSON (PROTOCOL.md 2.2).
final class WatchTests: XCTestCase {
    // MARK: record round trip

    func testRecordRoundTripWithoutOptionals() {
        let w = Watch(product: "p1", user: "u1", below: nil, baseline: 2000, expiresAt: 1_763_900_000_000)
        XCTAssertEqual(w.record, "|2000|||1763900000000")
        let back = Watch(product: "p1", user: "u1", record: w.record)
        XCTAssertEqual(back, w)
        XCTAssertNil(back?.below)
        XCTAssertNil(back?.lastAlerted)
        XCTAssertNil(back?.lastAlertAt)
    }

    func testRecordRoundTripWithBelow() {
        let w = Watch(product: "p1", user: "u1", below: 1500, baseline: 2000, expiresAt: 99)
        XCTAssertEqual(w.record, "1500|2000|||99")
        let back = Watch(product: "p1", user: "u1", record: w.record)
        XCTAssertEqual(back, w)
        XCTAssertEqual(back?.below, 1500)
        XCTAssertEqual(back?.baseline, 2000)
        XCTAssertEqual(back?.expiresAt, 99)
    }

    func testRecordRoundTripWithLastAlert() {
        let w = Watch(product: "p1", user: "u1", below: nil, baseline: 2000, lastAlerted: 1800,
                      lastAlertAt: 1_763_900_000_123, expiresAt: 1_764_000_000_000)
        XCTAssertEqual(w.record, "|2000|1800|1763900000123|1764000000000")
        let back = Watch(product: "p1", user: "u1", record: w.record)
        XCTAssertEqual(back, w)
        XCTAssertEqual(back?.lastAlerted, 1800)
        XCTAssertEqual(back?.lastAlertAt, 1_763_900_000_123)
    }

    func testRecordRoundTripWithEverything() {
        let w = Watch(product: "prod.x:1", user: "user_9", below: 1, baseline: 0, lastAlerted: 0,
                      lastAlertAt: 5, expiresAt: Int64.max)
        XCTAssertEqual(w.record, "1|0|0|5|\(Int64.max)")
        XCTAssertEqual(Watch(product: "prod.x:1", user: "user_9", record: w.record), w)
    }

    func testEveryCombinationOfOptionalsRoundTrips() {
        for below in [nil, Int64(1234)] {
            for lastAlerted in [nil, Int64(1100)] {
                for lastAlertAt in [nil, Int64(1_700_000_000_000)] {
                    let w = Watch(product: "p", user: "u", below: below, baseline: 2000, lastAlerted: lastAlerted,
                                  lastAlertAt: lastAlertAt, expiresAt: 1_800_000_000_000)
                    XCTAssertEqual(w.record.split(separator: "|", omittingEmptySubsequences: false).count, 5, w.record)
                    XCTAssertEqual(Watch(product: "p", user: "u", record: w.record), w, w.record)
                }
            }
        }
    }

    func testRecordTakesProductAndUserFromArguments() {
        let w = Watch(product: "p2", user: "alice", record: "|300|||400")
        XCTAssertEqual(w?.product, "p2")
        XCTAssertEqual(w?.user, "alice")
        XCTAssertEqual(w?.baseline, 300)
        XCTAssertEqual(w?.expiresAt, 400)
    }

    /// The record the `watch` Lua script writes: `below .. '|' .. price .. '|||' .. expiry`.
    func testRecordAsWrittenByTheWatchScript() {
        XCTAssertEqual(Watch(product: "p", user: "u", record: "" + "|" + "1999" + "|||" + "1000"),
                       Watch(product: "p", user: "u", below: nil, baseline: 1999, expiresAt: 1000))
        XCTAssertEqual(Watch(product: "p", user: "u", record: "1500" + "|" + "1999" + "|||" + "1000"),
                       Watch(product: "p", user: "u", below: 1500, baseline: 1999, expiresAt: 1000))
    }

    // MARK: malformed records

    func testMalformedRecordsAreRejected() {
        let bad = [
            "",                         // nothing
            "|",                        // too few fields
            "|2000||1",                 // 4 fields
            "|2000||||1",               // 6 fields
            "1|2000|3|4|5|6",           // 6 fields
            "||||1",                    // no baseline
            "|2000|||",                 // no expiry
            "|abc|||1",                 // baseline not a number
            "|2000|||soon",             // expiry not a number
            "|20.5|||1",                // baseline not an integer
            "|2000|||1.0",              // expiry not an integer
            "|99999999999999999999|||1", // baseline overflows Int64
            "2000,2000,,,1",            // wrong separator
            "abc|2000|||1",             // below present but not a number
            "1.5|2000|||1",             // below not an integer
            "|2000|x||1",               // lastAlerted present but not a number
            "|2000||yesterday|1",       // lastAlertAt present but not a number
            " |2000|||1",               // blank below is not "none"
            "|2000|1800| |1",           // blank lastAlertAt is not "none"
        ]
        for record in bad {
            XCTAssertNil(Watch(product: "p", user: "u", record: record), "accepted \"\(record)\"")
        }
    }

    // MARK: threshold

    func testThresholdIsBelowWhenSet() {
        XCTAssertEqual(Watch(product: "p", user: "u", below: 1500, baseline: 2000, expiresAt: 1).threshold, 1500)
        // An explicit `below` wins even above the price at watch time.
        XCTAssertEqual(Watch(product: "p", user: "u", below: 2500, baseline: 2000, expiresAt: 1).threshold, 2500)
        XCTAssertEqual(Watch(product: "p", user: "u", below: 0, baseline: 2000, expiresAt: 1).threshold, 0)
    }

    func testThresholdIsBaselineWithoutBelow() {
        XCTAssertEqual(Watch(product: "p", user: "u", below: nil, baseline: 2000, expiresAt: 1).threshold, 2000)
    }

    func testThresholdIgnoresLastAlerted() {
        let w = Watch(product: "p", user: "u", below: nil, baseline: 2000, lastAlerted: 1200, lastAlertAt: 5, expiresAt: 9)
        XCTAssertEqual(w.threshold, 2000)
    }

    // MARK: json

    func testJSONWithPriceAndBelow() {
        let w = Watch(product: "p1", user: "u1", below: 1500, baseline: 2000, lastAlerted: 1400, lastAlertAt: 7, expiresAt: 9)
        let json = w.json(price: 1800)
        XCTAssertEqual(json, .object([("product", .string("p1")), ("price", .int(1800)), ("below", .int(1500))]))
        XCTAssertEqual(json.serialized(), #"{"product":"p1","price":1800,"below":1500}"#)
        // Watcher-private state stays out of the reply.
        XCTAssertNil(json["baseline"])
        XCTAssertNil(json["user"])
        XCTAssertNil(json["expires_at"])
    }

    func testJSONBelowIsBaselineWithoutExplicitBelow() {
        let w = Watch(product: "p1", user: "u1", below: nil, baseline: 2000, expiresAt: 9)
        XCTAssertEqual(w.json(price: 1999), .object([("product", .string("p1")), ("price", .int(1999)), ("below", .int(2000))]))
    }

    func testJSONWithoutPrice() {
        let w = Watch(product: "p1", user: "u1", below: nil, baseline: 2000, expiresAt: 9)
        let json = w.json(price: nil)
        XCTAssertEqual(json, .object([("product", .string("p1")), ("below", .int(2000))]))
        XCTAssertNil(json["price"])
    }

    func testJSONSerializesProductSafely() {
        let w = Watch(product: "a\"b", user: "u", below: 1, baseline: 2, expiresAt: 3)
        let parsed = try? JSON.parse(w.json(price: 2).serialized())
        XCTAssertEqual(parsed?["product"]?.stringValue, "a\"b")
        XCTAssertEqual(parsed?["below"]?.intValue, 1)
    }
}
