import GatewayCore
import XCTest

final class SaleGateTests: XCTestCase {
    typealias Gate = SaleGate<Int>

    func testAtMostInFlightStartAndTheRestWaitInOrder() {
        var gate = Gate(inFlight: 3, maxQueued: 100)
        let first = (1...10).map { gate.arrive("s1", $0, now: 0) }
        XCTAssertEqual(first.prefix(3).map { $0 }, [.start(1), .start(2), .start(3)])
        XCTAssertTrue(first.dropFirst(3).allSatisfy { $0 == nil }, "the rest wait")
        XCTAssertEqual(gate.running("s1"), 3)
        XCTAssertEqual(gate.queued("s1"), 7)
        // Another sale has its own door.
        XCTAssertEqual(gate.arrive("s2", 99, now: 0), .start(99))

        var started: [Int] = []
        for _ in 0..<10 {
            for case .start(let t) in gate.finished("s1", soldOut: false, now: 1) { started.append(t) }
        }
        XCTAssertEqual(started, Array(4...10), "one waiting buy starts per answer, in arrival order")
        XCTAssertEqual(gate.running("s1"), 0)
        XCTAssertEqual(gate.queued("s1"), 0)
    }

    func testANewBuyDoesNotOvertakeWaitingOnes() {
        var gate = Gate(inFlight: 1, maxQueued: 100)
        XCTAssertEqual(gate.arrive("s", 1, now: 0), .start(1))
        XCTAssertNil(gate.arrive("s", 2, now: 0))
        XCTAssertEqual(gate.finished("s", soldOut: false, now: 0), [.start(2)])
        XCTAssertNil(gate.arrive("s", 3, now: 0), "2 runs: 3 waits")
        XCTAssertEqual(gate.finished("s", soldOut: false, now: 0), [.start(3)])
    }

    func testSoldOutRefusesTheWaitingAndNewBuysForTheWindowOnly() {
        var gate = Gate(inFlight: 2, maxQueued: 100)
        XCTAssertEqual(gate.arrive("s", 1, now: 1_000), .start(1))
        XCTAssertEqual(gate.arrive("s", 2, now: 1_000), .start(2))
        XCTAssertNil(gate.arrive("s", 3, now: 1_000))
        XCTAssertNil(gate.arrive("s", 4, now: 1_000))
        XCTAssertEqual(gate.finished("s", soldOut: true, now: 1_010), [.soldOut(3), .soldOut(4)])
        XCTAssertEqual(gate.arrive("s", 5, now: 1_100), .soldOut(5))
        XCTAssertEqual(gate.finished("s", soldOut: false, now: 1_200), [], "the other running buy just ends")
        XCTAssertEqual(gate.arrive("s", 6, now: 1_259), .soldOut(6))
        XCTAssertEqual(gate.arrive("s", 7, now: 1_260), .start(7), "250 ms later Redis is asked again")
        XCTAssertEqual(gate.running("s"), 1)
    }

    func testStockWithUnitsEndsTheWindowAtOnce() {
        var gate = Gate(inFlight: 1, maxQueued: 100)
        XCTAssertEqual(gate.arrive("s", 1, now: 0), .start(1))
        XCTAssertEqual(gate.finished("s", soldOut: true, now: 10), [])
        XCTAssertEqual(gate.arrive("s", 2, now: 20), .soldOut(2))
        XCTAssertEqual(gate.stock("s", remaining: 0, now: 30), [])
        XCTAssertEqual(gate.arrive("s", 3, now: 40), .soldOut(3), "remaining 0 keeps the window")
        XCTAssertEqual(gate.stock("s", remaining: 1, now: 50), [])
        XCTAssertEqual(gate.arrive("s", 4, now: 60), .start(4), "a unit came back: Redis decides again")
    }

    func testQueueIsBounded() {
        var gate = Gate(inFlight: 1, maxQueued: 2)
        XCTAssertEqual(gate.arrive("s", 1, now: 0), .start(1))
        XCTAssertNil(gate.arrive("s", 2, now: 0))
        XCTAssertNil(gate.arrive("s", 3, now: 0))
        XCTAssertEqual(gate.arrive("s", 4, now: 0), .busy(4))
        XCTAssertEqual(gate.queued("s"), 2)
    }

    func testIdleSalesAreForgotten() {
        var gate = Gate(inFlight: 4, maxQueued: 10)
        for i in 0..<100 {
            XCTAssertEqual(gate.arrive("s\(i)", i, now: 0), .start(i))
            XCTAssertEqual(gate.finished("s\(i)", soldOut: false, now: 0), [])
        }
        XCTAssertEqual(gate.sales, 0)
        XCTAssertEqual(gate.finished("never", soldOut: true, now: 0), [], "an unknown sale's answer changes nothing")
        XCTAssertEqual(gate.arrive("never", 1, now: 1), .start(1))
    }
}
