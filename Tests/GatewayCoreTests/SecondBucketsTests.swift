import GatewayCore
import XCTest

final class SecondBucketsTests: XCTestCase {
    func testTakesDueEntriesOnceInSecondOrder() {
        var b = SecondBuckets<Int>(nowSecond: 100)
        b.set(1, at: 103)
        b.set(2, at: 101)
        b.set(3, at: 200)
        XCTAssertEqual(b.take(upTo: 100), [])
        XCTAssertEqual(b.take(upTo: 103), [2, 1])
        XCTAssertEqual(b.take(upTo: 150), [])
        XCTAssertEqual(b.count, 1)
        XCTAssertEqual(b.take(upTo: 10_000), [3], "a long gap walks only the seconds holding entries")
        XCTAssertEqual(b.count, 0)
    }

    func testMovedAndRemovedEntriesAreNotTakenAtTheirOldSecond() {
        var b = SecondBuckets<Int>(nowSecond: 0)
        b.set(1, at: 5)
        b.set(1, at: 9)
        b.set(2, at: 5)
        b.remove(2)
        XCTAssertEqual(b.take(upTo: 8), [])
        XCTAssertEqual(b.take(upTo: 9), [1])
    }

    func testAPastDeadlineIsDueAtTheNextSweep() {
        var b = SecondBuckets<Int>(nowSecond: 50)
        b.set(7, at: 10)
        XCTAssertEqual(b.take(upTo: 51), [7])
    }
}
