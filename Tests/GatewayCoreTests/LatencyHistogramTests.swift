import GatewayCore
import XCTest

final class LatencyHistogramTests: XCTestCase {
    func testBucketsAreUpperBoundsInclusive() {
        var h = LatencyHistogram(bounds: [0.001, 0.01, 0.1])
        h.record(0.001)
        h.record(0.002, times: 3)
        h.record(0.1)
        h.record(5)
        XCTAssertEqual(h.counts, [1, 3, 1, 1])
        XCTAssertEqual(h.count, 6)
        XCTAssertEqual(h.sum, 0.001 + 0.006 + 0.1 + 5, accuracy: 1e-9)
    }

    func testNegativeLatencyFromSkewedClocksCountsAsZero() {
        var h = LatencyHistogram(bounds: [0.001])
        h.record(-0.5)
        XCTAssertEqual(h.counts, [1, 0])
        XCTAssertEqual(h.sum, 0)
    }

    func testQuantileIsTheTopOfItsBucket() {
        var h = LatencyHistogram(bounds: [0.001, 0.01, 0.1, 1])
        XCTAssertEqual(h.quantile(0.99), 0, "empty")
        h.record(0.0005, times: 98)
        h.record(0.05, times: 2)
        XCTAssertEqual(h.quantile(0.5), 0.001)
        XCTAssertEqual(h.quantile(0.98), 0.001)
        XCTAssertEqual(h.quantile(0.99), 0.1)
        h.record(30, times: 1_000)
        XCTAssertEqual(h.quantile(0.99), 1, "above the last bound: the last bound")
    }

    func testSinceIsTheDifferenceOfTwoReadings() {
        var h = LatencyHistogram(bounds: [0.01, 1])
        h.record(0.005, times: 10)
        let earlier = h
        h.record(0.5, times: 4)
        let delta = h.since(earlier)
        XCTAssertEqual(delta.counts, [0, 4, 0])
        XCTAssertEqual(delta.count, 4)
        XCTAssertEqual(delta.sum, 2, accuracy: 1e-9)
        XCTAssertEqual(delta.quantile(0.99), 1)
    }

    func testRecorderCountsWholeMillisecondsLikeTheHistogram() {
        let bounds = [0.001, 0.0025, 0.01, 1]
        let recorder = LatencyRecorder(bounds: bounds)
        var expected = LatencyHistogram(bounds: bounds)
        for ms: Int64 in [0, 1, 2, 3, 10, 11, 999, 1_000, 1_001, 60_000, -5] {
            recorder.record(ms: ms)
            expected.record(Double(max(0, ms)) / 1_000)
        }
        let first = recorder.histogram
        XCTAssertEqual(first.counts, expected.counts)
        XCTAssertEqual(first.counts, [3, 1, 2, 3, 2])
        XCTAssertEqual(first.count, 11)
        XCTAssertEqual(first.sum, expected.sum, accuracy: 1e-9)
        recorder.record(ms: 5)
        XCTAssertEqual(first.counts[2], 2, "a reading is a copy")
        XCTAssertEqual(recorder.histogram.counts[2], 3)
    }

    func testAPushCarriesItsPublicationTimestamp() {
        let push = #"{"push":"test.note","channel":"product:p1","offset":7,"epoch":"e1","ts":1763900000123,"data":{"ts":5}}"#
        XCTAssertEqual(Payload(push: Array(push.utf8)).publishedAtMs, 1_763_900_000_123)
        XCTAssertEqual(Payload(Array(push.utf8)).publishedAtMs, 0, "a reply is not timed")
        XCTAssertEqual(Payload(push: Array(#"{"push":"x","data":{}}"#.utf8)).publishedAtMs, 0, "no ts: not timed")
        XCTAssertEqual(Payload(push: Array(#"{"ts":12}"#.utf8)).publishedAtMs, 0, "only the field after another")
        XCTAssertEqual(Payload(push: Array(#"{"a":1,"ts":"#.utf8)).publishedAtMs, 0, "cut short")
    }
}
