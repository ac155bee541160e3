import XCTest
@testable import GatewayCore
import GatewayProtocol

final class FanoutSchedulerTests: XCTestCase {
    let g1 = Channel.group("p1")
    let g2 = Channel.group("p2")
    var hub = ChannelHub()
    var fanout = FanoutScheduler(budget: 3)
    /// What "the node" wrote, per connection, as payload names in write order.
    var written: [ConnectionID: [String]] = [:]
    /// Slices run (the immediate one and each timer).
    var slices: [[String]] = []
    var request: Int64 = 0

    override func setUp() {
        hub = ChannelHub()
        fanout = FanoutScheduler(budget: 3)
        written = [:]
        slices = []
        _ = hub.redisConnected()
    }

    func subscribe(_ conns: [ConnectionID], to channel: Channel, at offset: UInt64 = 0) {
        for conn in conns {
            request += 1
            _ = hub.subscribe(conn, to: channel, since: nil, request: request)
            _ = hub.redisSubscribed(channel)
            let acts = hub.readCompleted(channel, purpose: .subscriber(conn, request: request),
                                         ReadResult(offset: offset, epoch: "e1", recovered: true, publications: []))
            XCTAssertTrue(acts.contains { if case .subscribed = $0 { true } else { false } })
        }
    }

    /// Publication `offset` on `channel`, its hub actions carried out as the node does.
    func publish(_ channel: Channel, _ offset: UInt64) {
        let payload = Payload(Array("\(channel)#\(offset)".utf8))
        execute(hub.message(channel, Publication(offset: offset, epoch: "e1", payload: payload)))
    }

    func execute(_ actions: [HubAction]) {
        for case .deliver(let payload, let targets, let channel) in actions {
            if fanout.add(payload, to: targets, channel, hub: hub) { record(fanout.slice(hub)) }
        }
    }

    func record(_ sends: [FanoutScheduler.Send]) {
        slices.append(sends.map { "\($0.conn):" + String(decoding: $0.payload.bytes, as: UTF8.self) })
        for s in sends { written[s.conn, default: []].append(String(decoding: s.payload.bytes, as: UTF8.self)) }
    }

    /// The loop turns that follow: each armed timer fires once.
    func runTimers(limit: Int = 100) {
        var n = 0
        while fanout.armed && n < limit {
            record(fanout.timerFired(hub))
            n += 1
        }
        XCTAssertFalse(fanout.armed, "timers kept re-arming")
    }

    func testBigDeliveryGoesOutABudgetPerTurnAndLaterWorkQueuesBehind() {
        subscribe([1, 2, 3, 4, 5, 6, 7], to: g1)
        subscribe([1], to: g2)
        publish(g1, 1)
        XCTAssertEqual(slices.count, 1)
        XCTAssertEqual(slices[0].count, 3, "one budget at once")
        XCTAssertTrue(fanout.armed)
        XCTAssertEqual(fanout.waiting, 4)
        // Later publications, even small ones on another channel, wait behind.
        publish(g2, 1)
        publish(g1, 2)
        XCTAssertEqual(slices.count, 1)
        runTimers()
        XCTAssertTrue(slices.allSatisfy { $0.count <= 3 }, "\(slices)")
        XCTAssertEqual(slices.map(\.count).reduce(0, +), 7 + 1 + 7)
        XCTAssertEqual(written[1], ["group:p1#1", "group:p2#1", "group:p1#2"])
        for conn: ConnectionID in 2...7 { XCTAssertEqual(written[conn], ["group:p1#1", "group:p1#2"]) }
        XCTAssertEqual(fanout.waiting, 0)
    }

    func testSmallDeliveriesGoAtOnceUntilTheBudgetIsSpent() {
        subscribe([1], to: g1)
        publish(g1, 1)
        publish(g1, 2)
        XCTAssertEqual(written[1], ["group:p1#1", "group:p1#2"], "sent in the turn they were decided")
        XCTAssertFalse(fanout.armed)
        publish(g1, 3)
        // The count carries over: the fourth send in a row yields a turn first.
        publish(g1, 4)
        XCTAssertEqual(written[1], ["group:p1#1", "group:p1#2", "group:p1#3"])
        XCTAssertTrue(fanout.armed)
        runTimers()
        XCTAssertEqual(written[1], ["group:p1#1", "group:p1#2", "group:p1#3", "group:p1#4"])
    }

    func testUnsubscribedOrClosedConnectionGetsNothingMoreFromAPendingSlice() {
        let all: [ConnectionID] = [1, 2, 3, 4, 5, 6]
        subscribe(all, to: g1)
        subscribe(all, to: g2)
        publish(g1, 1)
        publish(g2, 1)
        XCTAssertEqual(written.count, 3)
        let later = Set(all).subtracting(written.keys).sorted()
        // One of the waiting ones unsubscribes from g1, another closes (the node unsubscribes
        // it from every channel).
        _ = hub.unsubscribe(later[0], from: g1)
        _ = hub.unsubscribe(later[1], from: g1)
        _ = hub.unsubscribe(later[1], from: g2)
        runTimers()
        XCTAssertEqual(written[later[0]], ["group:p2#1"])
        XCTAssertNil(written[later[1]])
        for conn in all where conn != later[0] && conn != later[1] {
            XCTAssertEqual(written[conn], ["group:p1#1", "group:p2#1"], "conn \(conn)")
        }
    }

    func testSubscriptionBegunAfterTheDecisionGetsNothingFromIt() {
        subscribe([1, 2, 3, 4, 5], to: g1)
        publish(g1, 1)
        let waiting = Set<ConnectionID>([1, 2, 3, 4, 5]).subtracting(written.keys).sorted()
        XCTAssertEqual(waiting.count, 2)
        // A re-subscribe of a waiting connection (its reply carried offset 1), and a new
        // connection that took a closed one's id.
        _ = hub.unsubscribe(waiting[0], from: g1)
        subscribe([waiting[0]], to: g1, at: 1)
        _ = hub.unsubscribe(waiting[1], from: g1)
        subscribe([waiting[1]], to: g1, at: 1)
        subscribe([9], to: g1, at: 1)
        publish(g1, 2)
        runTimers()
        for conn in waiting + [9] { XCTAssertEqual(written[conn], ["group:p1#2"], "conn \(conn)") }
        for conn in Set<ConnectionID>([1, 2, 3, 4, 5]).subtracting(waiting) {
            XCTAssertEqual(written[conn], ["group:p1#1", "group:p1#2"], "conn \(conn)")
        }
    }

    func testRecoveredSubscriberBufferedPushesQueueBehindEarlierWork() {
        subscribe([1, 2, 3, 4], to: g1)
        // Conn 9 subscribes; its read is in flight when publication 1 is decided.
        _ = hub.subscribe(9, to: g1, since: nil, request: 99)
        publish(g1, 1)
        publish(g1, 2)
        XCTAssertTrue(fanout.armed)
        // The read saw offset 0: the hub pushes 1 and 2 to it directly, after the reply.
        execute(hub.readCompleted(g1, purpose: .subscriber(9, request: 99),
                                  ReadResult(offset: 0, epoch: "e1", recovered: true, publications: [])))
        runTimers()
        XCTAssertEqual(written[9], ["group:p1#1", "group:p1#2"])
        for conn: ConnectionID in 1...4 { XCTAssertEqual(written[conn], ["group:p1#1", "group:p1#2"]) }
        let flat = slices.flatMap { $0 }
        XCTAssertGreaterThan(flat.firstIndex(of: "9:group:p1#1")!, flat.lastIndex { $0.hasSuffix("group:p1#1") && !$0.hasPrefix("9:") }!)
    }

    /// Past the backlog limit the scheduler stops holding work: everything waiting goes out
    /// at once, in order, and the connections' own queue limits take over.
    func testPastTheBacklogLimitEverythingWaitingGoesOutInOrder() {
        fanout = FanoutScheduler(budget: 3, backlogLimit: 8)
        subscribe([1, 2, 3, 4, 5], to: g1)
        publish(g1, 1)
        XCTAssertEqual(fanout.waiting, 2, "one slice of 3 out, 2 waiting")
        publish(g1, 2)
        XCTAssertEqual(fanout.waiting, 7, "under the limit: held for the timer")
        publish(g1, 3)
        XCTAssertEqual(fanout.waiting, 0, "over the limit: everything handed out")
        XCTAssertTrue(fanout.armed, "the timer armed before the overload is still the one pending")
        publish(g1, 4)
        XCTAssertEqual(written[1]?.count, 3, "new work waits for that timer, no second one is armed")
        for conn: ConnectionID in 1...5 {
            XCTAssertEqual(Array(written[conn]!.prefix(3)), ["group:p1#1", "group:p1#2", "group:p1#3"], "connection \(conn)")
        }
        runTimers()
        for conn: ConnectionID in 1...5 { XCTAssertEqual(written[conn]?.last, "group:p1#4") }
    }
}

