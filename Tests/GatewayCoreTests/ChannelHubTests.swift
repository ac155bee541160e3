import XCTest
@testable import GatewayCore
import GatewayProtocol

/// `HubAction` carries classes and is not Equatable; tests compare this normalized form.
/// Delivery targets are sorted, publications are named by `epoch/offset`.
enum Act: Hashable, CustomStringConvertible {
    case sub(Channel)
    case unsub(Channel)
    /// `since` as `epoch/offset`, purpose as `gapFill` or `conn#request`.
    case reading(Channel, since: String?, purpose: String)
    case deliver(String, to: [ConnectionID])
    case subscribed(ConnectionID, request: Int64, Channel, offset: UInt64, epoch: String, recovered: Bool, pubs: [String])
    case failed(ConnectionID, request: Int64, Channel, ErrorCode)
    case resync(ConnectionID, Channel)

    static func read(_ channel: Channel, since: StreamPosition?, purpose: ReadPurpose) -> Act {
        let p: String
        switch purpose {
        case .gapFill: p = "gapFill"
        case .subscriber(let conn, let request): p = "\(conn)#\(request)"
        }
        return .reading(channel, since: since.map { "\($0.epoch)/\($0.offset)" }, purpose: p)
    }

    var description: String {
        switch self {
        case .sub(let c): "sub(\(c))"
        case .unsub(let c): "unsub(\(c))"
        case .reading(let c, let since, let purpose): "read(\(c), since: \(since ?? "nil"), \(purpose))"
        case .deliver(let p, let to): "deliver(\(p) -> \(to))"
        case .subscribed(let conn, let req, let c, let offset, let epoch, let rec, let pubs):
            "subscribed(\(conn), req \(req), \(c), \(epoch)/\(offset), recovered: \(rec), \(pubs))"
        case .failed(let conn, let req, let c, let code): "failed(\(conn), req \(req), \(c), \(code.rawValue))"
        case .resync(let conn, let c): "resync(\(conn), \(c))"
        }
    }
}

func name(_ payload: Payload) -> String { String(decoding: payload.bytes, as: UTF8.self) }

func norm(_ actions: [HubAction]) -> [Act] {
    actions.map { action in
        switch action {
        case .redisSubscribe(let c): .sub(c)
        case .redisUnsubscribe(let c): .unsub(c)
        case .read(let c, let since, let purpose): .read(c, since: since, purpose: purpose)
        case .deliver(let p, let to, _): .deliver(name(p), to: to.sorted())
        case .subscribed(let conn, let request, let c, let r):
            .subscribed(conn, request: request, c, offset: r.offset, epoch: r.epoch, recovered: r.recovered,
                        pubs: r.publications.map { name($0.payload) })
        case .subscribeFailed(let conn, let request, let c, let e): .failed(conn, request: request, c, e.code)
        case .resync(let conn, let c): .resync(conn, c)
        }
    }
}

final class ChannelHubTests: XCTestCase {
    let g1 = Channel.group("p1")
    let g2 = Channel.group("p2")
    let u1 = Channel.user("u1")

    var hub = ChannelHub()
    /// Publications made so far, by name, so identity of payloads can be checked.
    var made: [String: Payload] = [:]

    override func setUp() {
        hub = ChannelHub()
        made = [:]
    }

    // MARK: helpers

    func pub(_ offset: UInt64, _ epoch: String = "e1") -> Publication {
        let key = "\(epoch)/\(offset)"
        let payload = made[key] ?? Payload(Array(key.utf8))
        made[key] = payload
        return Publication(offset: offset, epoch: epoch, payload: payload)
    }

    func result(_ offset: UInt64, _ epoch: String = "e1", recovered: Bool = false, pubs: [UInt64] = []) -> ReadResult {
        ReadResult(offset: offset, epoch: epoch, recovered: recovered, publications: pubs.map { pub($0, epoch) })
    }

    func pos(_ offset: UInt64, _ epoch: String = "e1") -> StreamPosition { StreamPosition(offset: offset, epoch: epoch) }

    func d(_ offset: UInt64, _ epoch: String = "e1", to: [ConnectionID]) -> Act {
        .deliver("\(epoch)/\(offset)", to: to.sorted())
    }

    func ok(_ conn: ConnectionID, _ request: Int64, _ channel: Channel, _ offset: UInt64, _ epoch: String = "e1",
            recovered: Bool = false, pubs: [UInt64] = []) -> Act {
        .subscribed(conn, request: request, channel, offset: offset, epoch: epoch, recovered: recovered,
                    pubs: pubs.map { "\(epoch)/\($0)" })
    }

    func assertActs(_ actions: [HubAction], _ expected: [Act], file: StaticString = #filePath, line: UInt = #line) {
        let got = norm(actions)
        XCTAssertEqual(got, expected, "\n got: \(got)\nwant: \(expected)", file: file, line: line)
    }

    /// For actions whose relative order comes from dictionary iteration.
    func assertActSet(_ actions: [HubAction], _ expected: [Act], file: StaticString = #filePath, line: UInt = #line) {
        let got = norm(actions)
        XCTAssertEqual(got.count, expected.count, "\n got: \(got)\nwant: \(expected)", file: file, line: line)
        XCTAssertEqual(Set(got), Set(expected), "\n got: \(got)\nwant: \(expected)", file: file, line: line)
    }

    /// Redis up, `conns` subscribed to `channel` and all active at `offset` (request id = conn id).
    func activate(_ channel: Channel, _ conns: [ConnectionID], at offset: UInt64, epoch: String = "e1",
                  file: StaticString = #filePath, line: UInt = #line) {
        if !hub.redisReady { assertActs(hub.redisConnected(), [], file: file, line: line) }
        for (i, conn) in conns.enumerated() {
            let actions = norm(hub.subscribe(conn, to: channel, since: nil, request: Int64(conn)))
            if i == 0 { XCTAssertEqual(actions, [.sub(channel)], file: file, line: line) }
            else { XCTAssertEqual(actions, [], file: file, line: line) }
        }
        assertActSet(hub.redisSubscribed(channel),
                     conns.map { .read(channel, since: nil, purpose: .subscriber($0, request: Int64($0))) },
                     file: file, line: line)
        for conn in conns {
            assertActs(hub.readCompleted(channel, purpose: .subscriber(conn, request: Int64(conn)), result(offset, epoch)),
                       [ok(conn, Int64(conn), channel, offset, epoch)], file: file, line: line)
        }
    }

    // MARK: subscribe and Redis pub/sub reference counting

    func testSubscribeBeforeRedisReadyWaitsForConnection() {
        XCTAssertFalse(hub.redisReady)
        assertActs(hub.subscribe(1, to: g1, since: nil, request: 7), [])
        XCTAssertTrue(hub.isSubscribed(1, to: g1))
        XCTAssertEqual(hub.channelCount, 1)
        XCTAssertEqual(hub.subscriptionCount, 1)

        assertActs(hub.redisConnected(), [.sub(g1)])
        XCTAssertTrue(hub.redisReady)
        assertActs(hub.redisSubscribed(g1), [.read(g1, since: nil, purpose: .subscriber(1, request: 7))])
        assertActs(hub.readCompleted(g1, purpose: .subscriber(1, request: 7), result(4)), [ok(1, 7, g1, 4)])
        assertActs(hub.message(g1, pub(5)), [d(5, to: [1])])
    }

    func testSubscribeAfterRedisReadyReadsOnlyAfterSubscribeConfirmed() {
        assertActs(hub.redisConnected(), [])
        assertActs(hub.subscribe(1, to: g1, since: pos(3), request: 2), [.sub(g1)])
        // No read before Redis confirms the SUBSCRIBE, whatever else happens.
        assertActs(hub.message(g1, pub(4)), [])
        assertActs(hub.redisSubscribed(g2), [])
        assertActs(hub.redisSubscribed(g1), [.read(g1, since: pos(3), purpose: .subscriber(1, request: 2))])
        // A duplicate confirmation does not issue a second read.
        assertActs(hub.redisSubscribed(g1), [])
    }

    func testSubscribeIsIssuedOncePerChannel() {
        assertActs(hub.redisConnected(), [])
        assertActs(hub.subscribe(1, to: g1, since: nil, request: 1), [.sub(g1)])
        assertActs(hub.subscribe(2, to: g1, since: nil, request: 1), [])
        assertActs(hub.subscribe(3, to: g1, since: pos(9), request: 5), [])
        assertActs(hub.subscribe(1, to: g2, since: nil, request: 2), [.sub(g2)])
        XCTAssertEqual(hub.channelCount, 2)
        XCTAssertEqual(hub.subscriberCount(g1), 3)
        XCTAssertEqual(hub.subscriptionCount, 4)
        assertActSet(hub.redisSubscribed(g1), [
            .read(g1, since: nil, purpose: .subscriber(1, request: 1)),
            .read(g1, since: nil, purpose: .subscriber(2, request: 1)),
            .read(g1, since: pos(9), purpose: .subscriber(3, request: 5)),
        ])
    }

    func testSubscriberJoiningActiveChannelReadsAtOnceWithoutRedisSubscribe() {
        activate(g1, [1], at: 10)
        assertActs(hub.subscribe(2, to: g1, since: pos(8), request: 4),
                   [.read(g1, since: pos(8), purpose: .subscriber(2, request: 4))])
        assertActs(hub.readCompleted(g1, purpose: .subscriber(2, request: 4), result(10, recovered: true, pubs: [9, 10])),
                   [ok(2, 4, g1, 10, recovered: true, pubs: [9, 10])])
        assertActs(hub.message(g1, pub(11)), [d(11, to: [1, 2])])
    }

    func testUnsubscribeLastSubscriberReleasesRedis() {
        activate(g1, [1, 2], at: 10)
        assertActs(hub.unsubscribe(1, from: g1), [])
        XCTAssertFalse(hub.isSubscribed(1, to: g1))
        assertActs(hub.message(g1, pub(11)), [d(11, to: [2])])
        // Unknown connection or channel: nothing.
        assertActs(hub.unsubscribe(1, from: g1), [])
        assertActs(hub.unsubscribe(2, from: g2), [])
        assertActs(hub.unsubscribe(2, from: g1), [.unsub(g1)])
        XCTAssertEqual(hub.subscriberCount(g1), 0)
        // Nothing is pushed while the UNSUBSCRIBE is in flight.
        assertActs(hub.message(g1, pub(12)), [])
        assertActs(hub.redisUnsubscribed(g1), [])
        XCTAssertEqual(hub.channelCount, 0)
        XCTAssertEqual(hub.subscriptionCount, 0)
        assertActs(hub.redisUnsubscribed(g1), [])
    }

    func testSharedSubscriberCountsSkipUserChannelsAndFollowReleases() {
        func shared() -> [Channel: Int] {
            var out: [Channel: Int] = [:]
            hub.forEachSharedSubscriberCount { out[$0] = $1 }
            return out
        }
        let product = Channel.product("p9")
        activate(g1, [1, 2], at: 10)
        activate(u1, [1], at: 3)
        activate(product, [3], at: 1)
        XCTAssertEqual(shared(), [g1: 2, product: 1], "no personal user: channel")
        assertActs(hub.unsubscribe(1, from: g1), [])
        XCTAssertEqual(shared(), [g1: 1, product: 1])
        assertActs(hub.unsubscribe(3, from: product), [.unsub(product)])
        assertActs(hub.redisUnsubscribed(product), [])
        XCTAssertEqual(shared(), [g1: 1], "a released channel is gone")
        // Reconnecting drops channels left without subscribers; one before Redis is ready too.
        assertActs(hub.unsubscribe(2, from: g1), [.unsub(g1)])
        hub.redisDisconnected()
        assertActSet(hub.redisConnected(), [.sub(u1)])
        assertActs(hub.subscribe(4, to: g2, since: nil, request: 4), [.sub(g2)])
        hub.redisDisconnected()
        assertActs(hub.unsubscribe(4, from: g2), [])
        XCTAssertEqual(shared(), [:])
    }

    func testUnsubscribeBeforeSubscribeConfirmed() {
        assertActs(hub.redisConnected(), [])
        assertActs(hub.subscribe(1, to: g1, since: nil, request: 1), [.sub(g1)])
        assertActs(hub.unsubscribe(1, from: g1), [.unsub(g1)])
        // The late SUBSCRIBE confirmation must not start reads for nobody.
        assertActs(hub.redisSubscribed(g1), [])
        assertActs(hub.redisUnsubscribed(g1), [])
        XCTAssertEqual(hub.channelCount, 0)
    }

    func testUnsubscribeBeforeRedisReadyForgetsChannel() {
        assertActs(hub.subscribe(1, to: g1, since: nil, request: 1), [])
        assertActs(hub.unsubscribe(1, from: g1), [])
        XCTAssertEqual(hub.channelCount, 0)
        assertActs(hub.redisConnected(), [])
    }

    func testJoinWhileUnsubscribeInFlightResubscribes() {
        activate(g1, [1], at: 10)
        assertActs(hub.unsubscribe(1, from: g1), [.unsub(g1)])
        // Joins while the UNSUBSCRIBE is in flight: no read yet, no second SUBSCRIBE yet.
        assertActs(hub.subscribe(2, to: g1, since: pos(10), request: 3), [])
        XCTAssertTrue(hub.isSubscribed(2, to: g1))
        assertActs(hub.message(g1, pub(11)), [])
        assertActs(hub.redisUnsubscribed(g1), [.sub(g1)])
        XCTAssertEqual(hub.channelCount, 1)
        assertActs(hub.redisSubscribed(g1), [.read(g1, since: pos(10), purpose: .subscriber(2, request: 3))])
        assertActs(hub.readCompleted(g1, purpose: .subscriber(2, request: 3), result(12, recovered: true, pubs: [11, 12])),
                   [ok(2, 3, g1, 12, recovered: true, pubs: [11, 12])])
        assertActs(hub.message(g1, pub(12)), [])
        assertActs(hub.message(g1, pub(13)), [d(13, to: [2])])
    }

    func testRejoinWhileGapFillInFlightDoesNotStallTheNewSubscription() {
        activate(g1, [1], at: 10)
        assertActs(hub.message(g1, pub(12)), [.read(g1, since: pos(10), purpose: .gapFill)])
        assertActs(hub.unsubscribe(1, from: g1), [.unsub(g1)])
        assertActs(hub.subscribe(2, to: g1, since: nil, request: 1), [])
        assertActs(hub.redisUnsubscribed(g1), [.sub(g1)])
        assertActs(hub.redisSubscribed(g1), [.read(g1, since: nil, purpose: .subscriber(2, request: 1))])
        assertActs(hub.readCompleted(g1, purpose: .subscriber(2, request: 1), result(20)), [ok(2, 1, g1, 20)])
        // The new subscription is live at once, not held back by the old channel's fill.
        assertActs(hub.message(g1, pub(21)), [d(21, to: [2])])
        // The stale fill's answer, when it comes, pushes nothing old.
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(12, recovered: true, pubs: [11, 12])), [])
        assertActs(hub.message(g1, pub(22)), [d(22, to: [2])])
    }

    func testDoubleSubscribeIsConflict() {
        activate(g1, [1], at: 10)
        assertActs(hub.subscribe(1, to: g1, since: nil, request: 9), [.failed(1, request: 9, g1, .conflict)])
        XCTAssertEqual(hub.subscriberCount(g1), 1)
        assertActs(hub.message(g1, pub(11)), [d(11, to: [1])])

        // Also while the first subscribe is still pending: the first one still completes.
        assertActs(hub.subscribe(2, to: g1, since: nil, request: 1), [.read(g1, since: nil, purpose: .subscriber(2, request: 1))])
        assertActs(hub.subscribe(2, to: g1, since: nil, request: 2), [.failed(2, request: 2, g1, .conflict)])
        assertActs(hub.readCompleted(g1, purpose: .subscriber(2, request: 1), result(11)), [ok(2, 1, g1, 11)])
        assertActs(hub.message(g1, pub(12)), [d(12, to: [1, 2])])
    }

    func testConflictErrorDetails() {
        assertActs(hub.subscribe(1, to: u1, since: nil, request: 1), [])
        let actions = hub.subscribe(1, to: u1, since: nil, request: 2)
        guard actions.count == 1, case .subscribeFailed(let conn, let request, let channel, let error) = actions[0] else {
            return XCTFail("expected one subscribeFailed, got \(norm(actions))")
        }
        XCTAssertEqual(conn, 1)
        XCTAssertEqual(request, 2)
        XCTAssertEqual(channel, u1)
        XCTAssertEqual(error.code, .conflict)
        XCTAssertFalse(error.temporary)
    }

    // MARK: live delivery

    func testMessagesDeliveredInOrderOnceToAllActiveSubscribers() {
        activate(g1, [1, 2, 3], at: 10)
        activate(g2, [2], at: 0)
        let p11 = pub(11)
        let actions = hub.message(g1, p11)
        assertActs(actions, [d(11, to: [1, 2, 3])])
        // One shared payload, not a copy per subscriber.
        if case .deliver(let payload, _, _) = actions.first { XCTAssertTrue(payload === p11.payload) }
        assertActs(hub.message(g1, pub(12)), [d(12, to: [1, 2, 3])])
        assertActs(hub.message(g1, pub(13)), [d(13, to: [1, 2, 3])])
        // Channels are independent.
        assertActs(hub.message(g2, pub(1)), [d(1, to: [2])])
        // Messages for channels nobody here listens to are ignored.
        assertActs(hub.message(Channel.product("nope"), pub(1)), [])
    }

    func testDuplicatesAreDropped() {
        activate(g1, [1, 2], at: 10)
        assertActs(hub.message(g1, pub(10)), [])
        assertActs(hub.message(g1, pub(3)), [])
        assertActs(hub.message(g1, pub(11)), [d(11, to: [1, 2])])
        assertActs(hub.message(g1, pub(11)), [])
        assertActs(hub.message(g1, pub(12)), [d(12, to: [1, 2])])
        assertActs(hub.message(g1, pub(11)), [])
        assertActs(hub.message(g1, pub(12)), [])
    }

    func testGapTriggersExactlyOneGapFillAndBufferedMessagesFollowInOrder() {
        activate(g1, [1, 2], at: 10)
        assertActs(hub.message(g1, pub(13)), [.read(g1, since: pos(10), purpose: .gapFill)])
        assertActs(hub.message(g1, pub(15)), [])
        assertActs(hub.message(g1, pub(14)), [])
        assertActs(hub.message(g1, pub(14)), [])
        assertActs(hub.message(g1, pub(16)), [])
        // History has everything up to when it was read, 11...14.
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(14, recovered: true, pubs: [11, 12, 13, 14])), [
            d(11, to: [1, 2]), d(12, to: [1, 2]), d(13, to: [1, 2]), d(14, to: [1, 2]),
            d(15, to: [1, 2]), d(16, to: [1, 2]),
        ])
        assertActs(hub.message(g1, pub(16)), [])
        assertActs(hub.message(g1, pub(17)), [d(17, to: [1, 2])])
        // A repeated fill answer changes nothing.
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(14, recovered: true, pubs: [11, 12, 13, 14])), [])
    }

    func testGapFillThatFallsShortFillsAgainFromWhereItGot() {
        activate(g1, [1], at: 10)
        assertActs(hub.message(g1, pub(14)), [.read(g1, since: pos(10), purpose: .gapFill)])
        // History only had up to 12 (13 went missing in between?): deliver 11, 12, then fill again.
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(12, recovered: true, pubs: [11, 12])), [
            d(11, to: [1]), d(12, to: [1]), .read(g1, since: pos(12), purpose: .gapFill),
        ])
        assertActs(hub.message(g1, pub(15)), [])
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(15, recovered: true, pubs: [13, 14, 15])), [
            d(13, to: [1]), d(14, to: [1]), d(15, to: [1]),
        ])
    }

    func testGapFillFailureRetriesOnNextMessage() {
        activate(g1, [1], at: 10)
        assertActs(hub.message(g1, pub(12)), [.read(g1, since: pos(10), purpose: .gapFill)])
        assertActs(hub.readFailed(g1, purpose: .gapFill, .redisUnavailable), [])
        assertActs(hub.message(g1, pub(13)), [.read(g1, since: pos(10), purpose: .gapFill)])
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(13, recovered: true, pubs: [11, 12, 13])),
                   [d(11, to: [1]), d(12, to: [1]), d(13, to: [1])])
    }

    func testUnrecoverableGapResyncsActiveSubscribers() {
        activate(g1, [1, 2], at: 10)
        // 3 is still reading: it gets its own consistent answer instead of a resync.
        assertActs(hub.subscribe(3, to: g1, since: nil, request: 1), [.read(g1, since: nil, purpose: .subscriber(3, request: 1))])
        assertActs(hub.message(g1, pub(40)), [.read(g1, since: pos(10), purpose: .gapFill)])
        assertActs(hub.message(g1, pub(41)), [])
        let actions = hub.readCompleted(g1, purpose: .gapFill, result(40, recovered: false))
        let got = norm(actions)
        // Both active subscribers resync; 41 (above the channel's offset) still follows, nothing at or below 40.
        XCTAssertEqual(Set(got.prefix(2)), [.resync(1, g1), .resync(2, g1)], "\(got)")
        XCTAssertEqual(Array(got.dropFirst(2)), [d(41, to: [1, 2])], "\(got)")
        XCTAssertFalse(got.contains(.resync(3, g1)))

        assertActs(hub.readCompleted(g1, purpose: .subscriber(3, request: 1), result(41)), [ok(3, 1, g1, 41)])
        assertActs(hub.message(g1, pub(42)), [d(42, to: [1, 2, 3])])
    }

    func testUnrecoverableGapWithNewEpochResyncs() {
        activate(g1, [1], at: 10)
        assertActs(hub.message(g1, pub(12)), [.read(g1, since: pos(10), purpose: .gapFill)])
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(3, "e2", recovered: true, pubs: [1, 2, 3])),
                   [.resync(1, g1)])
        assertActs(hub.message(g1, pub(4, "e2")), [d(4, "e2", to: [1])])
    }

    func testEpochChangeOnLiveMessageResyncs() {
        activate(g1, [1, 2], at: 10)
        let got = norm(hub.message(g1, pub(1, "e2")))
        XCTAssertEqual(got.count, 3, "\(got)")
        XCTAssertEqual(Set(got.prefix(2)), [.resync(1, g1), .resync(2, g1)], "\(got)")
        XCTAssertEqual(got.last, d(1, "e2", to: [1, 2]))
        // The channel now follows the new epoch.
        assertActs(hub.message(g1, pub(1, "e2")), [])
        assertActs(hub.message(g1, pub(2, "e2")), [d(2, "e2", to: [1, 2])])
        assertActs(hub.message(g1, pub(4, "e2")), [.read(g1, since: pos(2, "e2"), purpose: .gapFill)])
    }

    func testSubscriberReadWithNewEpochResyncsOthersButNotItself() {
        activate(g1, [1], at: 10)
        assertActs(hub.subscribe(2, to: g1, since: nil, request: 5), [.read(g1, since: nil, purpose: .subscriber(2, request: 5))])
        assertActs(hub.readCompleted(g1, purpose: .subscriber(2, request: 5), result(2, "e2")),
                   [.resync(1, g1), ok(2, 5, g1, 2, "e2")])
        // The channel now follows e2 from offset 2.
        assertActs(hub.message(g1, pub(2, "e2")), [])
        assertActs(hub.message(g1, pub(3, "e2")), [d(3, "e2", to: [1, 2])])
    }

    // MARK: subscriber reads racing live publications

    func testPublicationDuringReadDeliveredAfterSubscribedOnlyAboveReadOffset() {
        activate(g1, [1], at: 10)
        assertActs(hub.subscribe(2, to: g1, since: nil, request: 8), [.read(g1, since: nil, purpose: .subscriber(2, request: 8))])
        assertActs(hub.message(g1, pub(11)), [d(11, to: [1])])
        assertActs(hub.message(g1, pub(12)), [d(12, to: [1])])
        assertActs(hub.message(g1, pub(13)), [d(13, to: [1])])
        // The read saw the channel at 12: 11 and 12 are covered by it, only 13 follows, after the reply.
        assertActs(hub.readCompleted(g1, purpose: .subscriber(2, request: 8), result(12)),
                   [ok(2, 8, g1, 12), d(13, to: [2])])
        assertActs(hub.message(g1, pub(13)), [])
        assertActs(hub.message(g1, pub(14)), [d(14, to: [1, 2])])
    }

    func testPublicationsDuringReadAllFollowWhenReadIsOlder() {
        activate(g1, [1], at: 10)
        assertActs(hub.subscribe(2, to: g1, since: pos(9), request: 8), [.read(g1, since: pos(9), purpose: .subscriber(2, request: 8))])
        assertActs(hub.message(g1, pub(11)), [d(11, to: [1])])
        assertActs(hub.message(g1, pub(12)), [d(12, to: [1])])
        assertActs(hub.readCompleted(g1, purpose: .subscriber(2, request: 8), result(10, recovered: true, pubs: [10])),
                   [ok(2, 8, g1, 10, recovered: true, pubs: [10]), d(11, to: [2]), d(12, to: [2])])
    }

    func testReadNewerThanLiveStreamSkipsLaterDuplicates() {
        activate(g1, [1], at: 10)
        assertActs(hub.subscribe(2, to: g1, since: nil, request: 8), [.read(g1, since: nil, purpose: .subscriber(2, request: 8))])
        // The read sees 12 before pub/sub brought 11 and 12 here.
        assertActs(hub.readCompleted(g1, purpose: .subscriber(2, request: 8), result(12)), [ok(2, 8, g1, 12)])
        assertActs(hub.message(g1, pub(11)), [d(11, to: [1])])
        assertActs(hub.message(g1, pub(12)), [d(12, to: [1])])
        assertActs(hub.message(g1, pub(13)), [d(13, to: [1, 2])])
    }

    func testMessagesBeforeFirstReadAreBufferedAndDeliveredAboveReadOffset() {
        assertActs(hub.redisConnected(), [])
        assertActs(hub.subscribe(1, to: g1, since: nil, request: 1), [.sub(g1)])
        assertActs(hub.redisSubscribed(g1), [.read(g1, since: nil, purpose: .subscriber(1, request: 1))])
        assertActs(hub.message(g1, pub(6)), [])
        assertActs(hub.message(g1, pub(7)), [])
        assertActs(hub.message(g1, pub(8)), [])
        assertActs(hub.readCompleted(g1, purpose: .subscriber(1, request: 1), result(6)),
                   [ok(1, 1, g1, 6), d(7, to: [1]), d(8, to: [1])])
        assertActs(hub.message(g1, pub(9)), [d(9, to: [1])])
    }

    func testTwoPendingSubscribersBothGetEverythingAfterTheirOwnRead() {
        assertActs(hub.redisConnected(), [])
        assertActs(hub.subscribe(1, to: g1, since: nil, request: 1), [.sub(g1)])
        assertActs(hub.subscribe(2, to: g1, since: nil, request: 1), [])
        assertActSet(hub.redisSubscribed(g1), [
            .read(g1, since: nil, purpose: .subscriber(1, request: 1)),
            .read(g1, since: nil, purpose: .subscriber(2, request: 1)),
        ])
        assertActs(hub.message(g1, pub(6)), [])
        assertActs(hub.message(g1, pub(7)), [])
        assertActs(hub.readCompleted(g1, purpose: .subscriber(1, request: 1), result(5)),
                   [ok(1, 1, g1, 5), d(6, to: [1]), d(7, to: [1])])
        assertActs(hub.message(g1, pub(8)), [d(8, to: [1])])
        assertActs(hub.readCompleted(g1, purpose: .subscriber(2, request: 1), result(6)),
                   [ok(2, 1, g1, 6), d(7, to: [2]), d(8, to: [2])])
        assertActs(hub.message(g1, pub(9)), [d(9, to: [1, 2])])
    }

    func testPendingSubscriberReceivesGapFilledPublicationsAfterItsRead() {
        activate(g1, [1], at: 10)
        assertActs(hub.subscribe(2, to: g1, since: nil, request: 3), [.read(g1, since: nil, purpose: .subscriber(2, request: 3))])
        assertActs(hub.message(g1, pub(12)), [.read(g1, since: pos(10), purpose: .gapFill)])
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(12, recovered: true, pubs: [11, 12])),
                   [d(11, to: [1]), d(12, to: [1])])
        assertActs(hub.readCompleted(g1, purpose: .subscriber(2, request: 3), result(11)),
                   [ok(2, 3, g1, 11), d(12, to: [2])])
    }

    func testFirstReadWithNewEpochDropsPublicationsOfTheOldEpoch() {
        assertActs(hub.redisConnected(), [])
        assertActs(hub.subscribe(1, to: g1, since: nil, request: 1), [.sub(g1)])
        assertActs(hub.redisSubscribed(g1), [.read(g1, since: nil, purpose: .subscriber(1, request: 1))])
        // Announced just before the stream was recreated; the read already sees the new epoch.
        assertActs(hub.message(g1, pub(5)), [])
        assertActs(hub.message(g1, pub(6)), [])
        assertActs(hub.readCompleted(g1, purpose: .subscriber(1, request: 1), result(1, "e2")), [ok(1, 1, g1, 1, "e2")])
        assertActs(hub.message(g1, pub(2, "e2")), [d(2, "e2", to: [1])])
    }

    // MARK: recovery

    func testRecoveredPublicationsArePassedThrough() throws {
        assertActs(hub.redisConnected(), [])
        assertActs(hub.subscribe(1, to: u1, since: pos(7), request: 1), [.sub(u1)])
        assertActs(hub.redisSubscribed(u1), [.read(u1, since: pos(7), purpose: .subscriber(1, request: 1))])
        let r = result(10, recovered: true, pubs: [8, 9, 10])
        let actions = hub.readCompleted(u1, purpose: .subscriber(1, request: 1), r)
        assertActs(actions, [ok(1, 1, u1, 10, recovered: true, pubs: [8, 9, 10])])
        guard case .subscribed(_, _, _, let passed) = try XCTUnwrap(actions.first) else { return XCTFail() }
        XCTAssertEqual(passed.publications.map(\.offset), [8, 9, 10])
        XCTAssertTrue(zip(passed.publications, r.publications).allSatisfy { $0.payload === $1.payload })
        // Pub/sub copies of recovered publications are not pushed again.
        assertActs(hub.message(u1, pub(9)), [])
        assertActs(hub.message(u1, pub(10)), [])
        assertActs(hub.message(u1, pub(11)), [d(11, to: [1])])
    }

    func testUnrecoveredSubscribeIsPassedThroughWithoutPublications() {
        activate(u1, [1], at: 50)
        assertActs(hub.subscribe(2, to: u1, since: pos(3, "old"), request: 2),
                   [.read(u1, since: pos(3, "old"), purpose: .subscriber(2, request: 2))])
        assertActs(hub.readCompleted(u1, purpose: .subscriber(2, request: 2), result(50, recovered: false)),
                   [ok(2, 2, u1, 50, recovered: false)])
        assertActs(hub.message(u1, pub(51)), [d(51, to: [1, 2])])
    }

    // MARK: read failures and stale answers

    func testReadFailedForSubscriberFailsAndReleasesChannel() throws {
        assertActs(hub.redisConnected(), [])
        assertActs(hub.subscribe(1, to: g1, since: nil, request: 4), [.sub(g1)])
        assertActs(hub.redisSubscribed(g1), [.read(g1, since: nil, purpose: .subscriber(1, request: 4))])
        let actions = hub.readFailed(g1, purpose: .subscriber(1, request: 4), .redisUnavailable)
        assertActs(actions, [.failed(1, request: 4, g1, .unavailable), .unsub(g1)])
        guard case .subscribeFailed(_, _, _, let error) = try XCTUnwrap(actions.first) else { return XCTFail() }
        XCTAssertEqual(error, .redisUnavailable)
        XCTAssertFalse(hub.isSubscribed(1, to: g1))
        assertActs(hub.redisUnsubscribed(g1), [])
        XCTAssertEqual(hub.channelCount, 0)
        // Retrying works from scratch.
        assertActs(hub.subscribe(1, to: g1, since: nil, request: 5), [.sub(g1)])
    }

    func testReadFailedForSubscriberKeepsChannelForOthers() {
        activate(g1, [1], at: 10)
        assertActs(hub.subscribe(2, to: g1, since: nil, request: 4), [.read(g1, since: nil, purpose: .subscriber(2, request: 4))])
        assertActs(hub.readFailed(g1, purpose: .subscriber(2, request: 4), GatewayError(.internal, "boom")),
                   [.failed(2, request: 4, g1, .internal)])
        XCTAssertEqual(hub.subscriberCount(g1), 1)
        assertActs(hub.message(g1, pub(11)), [d(11, to: [1])])
        // A second failure for the same request, or for an unknown channel, is ignored.
        assertActs(hub.readFailed(g1, purpose: .subscriber(2, request: 4), .redisUnavailable), [])
        assertActs(hub.readFailed(g2, purpose: .subscriber(2, request: 4), .redisUnavailable), [])
    }

    func testReadFailedForRequestThatDoesNotMatchIsIgnored() {
        activate(g1, [1], at: 10)
        // 1 is active: a failure of some old read of it must not drop it.
        assertActs(hub.readFailed(g1, purpose: .subscriber(1, request: 1), .redisUnavailable), [])
        XCTAssertTrue(hub.isSubscribed(1, to: g1))
    }

    func testStaleReadAnswerAfterResubscribeIsIgnored() {
        activate(g1, [1], at: 10)
        assertActs(hub.subscribe(2, to: g1, since: nil, request: 1), [.read(g1, since: nil, purpose: .subscriber(2, request: 1))])
        assertActs(hub.unsubscribe(2, from: g1), [])
        assertActs(hub.subscribe(2, to: g1, since: nil, request: 2), [.read(g1, since: nil, purpose: .subscriber(2, request: 2))])
        assertActs(hub.readCompleted(g1, purpose: .subscriber(2, request: 1), result(10)), [])
        assertActs(hub.readCompleted(g1, purpose: .subscriber(2, request: 2), result(10)), [ok(2, 2, g1, 10)])
        // Answers for channels or connections that are gone are ignored.
        assertActs(hub.readCompleted(g2, purpose: .subscriber(2, request: 2), result(10)), [])
        assertActs(hub.readCompleted(g1, purpose: .subscriber(9, request: 2), result(10)), [])
        // A gap-fill answer nobody asked for is ignored.
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(12, recovered: true, pubs: [11, 12])), [])
        assertActs(hub.message(g1, pub(11)), [d(11, to: [1, 2])])
    }

    // MARK: Redis connection loss

    func testRedisReconnectResubscribesAndFillsFromLastOffset() {
        activate(g1, [1, 2], at: 10)
        activate(g2, [3], at: 5)
        assertActs(hub.message(g1, pub(11)), [d(11, to: [1, 2])])
        // A channel whose UNSUBSCRIBE was in flight when Redis went away is forgotten.
        activate(u1, [4], at: 1)
        assertActs(hub.unsubscribe(4, from: u1), [.unsub(u1)])

        hub.redisDisconnected()
        XCTAssertFalse(hub.redisReady)
        assertActs(hub.message(g1, pub(12)), [])
        // Subscribing while Redis is away waits for it.
        let p1 = Channel.product("p1")
        assertActs(hub.subscribe(5, to: p1, since: nil, request: 1), [])

        assertActSet(hub.redisConnected(), [.sub(g1), .sub(g2), .sub(p1)])
        XCTAssertEqual(hub.channelCount, 3)
        XCTAssertEqual(hub.subscriptionCount, 4)
        // Nothing is pushed before the SUBSCRIBE is confirmed again.
        assertActs(hub.message(g1, pub(13)), [])

        assertActs(hub.redisSubscribed(g1), [.read(g1, since: pos(11), purpose: .gapFill)])
        assertActs(hub.message(g1, pub(14)), [])
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(13, recovered: true, pubs: [12, 13])),
                   [d(12, to: [1, 2]), d(13, to: [1, 2]), d(14, to: [1, 2])])
        assertActs(hub.message(g1, pub(15)), [d(15, to: [1, 2])])

        assertActs(hub.redisSubscribed(g2), [.read(g2, since: pos(5), purpose: .gapFill)])
        assertActs(hub.readCompleted(g2, purpose: .gapFill, result(5, recovered: true)), [])
        assertActs(hub.message(g2, pub(6)), [d(6, to: [3])])

        assertActs(hub.redisSubscribed(p1), [.read(p1, since: nil, purpose: .subscriber(5, request: 1))])
    }

    func testRedisReconnectRestartsInterruptedSubscriberReadsAndFills() {
        activate(g1, [1], at: 10)
        assertActs(hub.subscribe(2, to: g1, since: pos(4), request: 6), [.read(g1, since: pos(4), purpose: .subscriber(2, request: 6))])
        assertActs(hub.message(g1, pub(12)), [.read(g1, since: pos(10), purpose: .gapFill)])
        hub.redisDisconnected()
        // The interrupted fill's failure must not matter.
        assertActs(hub.readFailed(g1, purpose: .gapFill, .redisUnavailable), [])
        assertActs(hub.redisConnected(), [.sub(g1)])
        assertActSet(hub.redisSubscribed(g1), [
            .read(g1, since: pos(10), purpose: .gapFill),
            .read(g1, since: pos(4), purpose: .subscriber(2, request: 6)),
        ])
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(12, recovered: true, pubs: [11, 12])),
                   [d(11, to: [1]), d(12, to: [1])])
        assertActs(hub.readCompleted(g1, purpose: .subscriber(2, request: 6), result(11, recovered: true, pubs: [5, 6, 7, 8, 9, 10, 11])),
                   [ok(2, 6, g1, 11, recovered: true, pubs: [5, 6, 7, 8, 9, 10, 11]), d(12, to: [2])])
    }

    func testRedisReconnectWithUnrecoverableHistoryResyncs() {
        activate(g1, [1], at: 10)
        hub.redisDisconnected()
        assertActs(hub.redisConnected(), [.sub(g1)])
        assertActs(hub.redisSubscribed(g1), [.read(g1, since: pos(10), purpose: .gapFill)])
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(2, "e9", recovered: false)), [.resync(1, g1)])
        assertActs(hub.message(g1, pub(3, "e9")), [d(3, "e9", to: [1])])
    }

    // MARK: Reply caps (history.max_reply_bytes, history.max_recover)

    /// After a Redis reconnect nothing new may arrive to re-trigger a fill, so a capped
    /// page that ends before the channel's offset must be followed by the next read.
    func testReconnectGapFillLongerThanOnePageReadsOnUntilCaughtUp() {
        activate(g1, [1, 2], at: 10)
        hub.redisDisconnected()
        assertActs(hub.redisConnected(), [.sub(g1)])
        assertActs(hub.redisSubscribed(g1), [.read(g1, since: pos(10), purpose: .gapFill)])
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(20, recovered: true, pubs: [11, 12, 13])), [
            d(11, to: [1, 2]), d(12, to: [1, 2]), d(13, to: [1, 2]), .read(g1, since: pos(13), purpose: .gapFill),
        ])
        // Newer publications wait for the fill, in order.
        assertActs(hub.message(g1, pub(21)), [])
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(20, recovered: true, pubs: [14, 15, 16, 17])), [
            d(14, to: [1, 2]), d(15, to: [1, 2]), d(16, to: [1, 2]), d(17, to: [1, 2]), .read(g1, since: pos(17), purpose: .gapFill),
        ])
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(21, recovered: true, pubs: [18, 19, 20, 21])), [
            d(18, to: [1, 2]), d(19, to: [1, 2]), d(20, to: [1, 2]), d(21, to: [1, 2]),
        ])
        assertActs(hub.message(g1, pub(22)), [d(22, to: [1, 2])])
    }

    func testGapFillPagedWhileLiveMessagesArriveKeepsOrder() {
        activate(g1, [1], at: 10)
        assertActs(hub.message(g1, pub(16)), [.read(g1, since: pos(10), purpose: .gapFill)])
        assertActs(hub.message(g1, pub(17)), [])
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(16, recovered: true, pubs: [11, 12])), [
            d(11, to: [1]), d(12, to: [1]), .read(g1, since: pos(12), purpose: .gapFill),
        ])
        // The held live messages close the rest of the gap: no further read.
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(17, recovered: true, pubs: [13, 14, 15])), [
            d(13, to: [1]), d(14, to: [1]), d(15, to: [1]), d(16, to: [1]), d(17, to: [1]),
        ])
        assertActs(hub.message(g1, pub(18)), [d(18, to: [1])])
    }

    /// A fill that says "recovered" yet brings nothing while the channel is ahead can never
    /// close the gap: subscribers resync (1001) instead of the node reading forever.
    func testGapFillPageWithoutProgressResyncs() {
        activate(g1, [1], at: 10)
        assertActs(hub.message(g1, pub(15)), [.read(g1, since: pos(10), purpose: .gapFill)])
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(15, recovered: true, pubs: [])), [.resync(1, g1)])
        assertActs(hub.message(g1, pub(16)), [d(16, to: [1])])
    }

    /// Recovery past a cap: `recovered: false` with the newest page that fit; the
    /// subscriber then continues live from the channel's offset.
    func testCappedRecoveryPassesNewestPageThroughAndContinuesLive() {
        activate(g1, [1], at: 20)
        assertActs(hub.subscribe(2, to: g1, since: pos(2), request: 7), [.read(g1, since: pos(2), purpose: .subscriber(2, request: 7))])
        assertActs(hub.message(g1, pub(21)), [d(21, to: [1])])
        assertActs(hub.readCompleted(g1, purpose: .subscriber(2, request: 7), result(20, recovered: false, pubs: [18, 19, 20])),
                   [ok(2, 7, g1, 20, recovered: false, pubs: [18, 19, 20]), d(21, to: [2])])
        assertActs(hub.message(g1, pub(22)), [d(22, to: [1, 2])])
    }

    func testUnsubscribeWhileRedisAwayForgetsChannelOnReconnect() {
        activate(g1, [1], at: 10)
        hub.redisDisconnected()
        assertActs(hub.unsubscribe(1, from: g1), [])
        XCTAssertEqual(hub.channelCount, 0)
        assertActs(hub.redisConnected(), [])
    }
    // MARK: a subscription Redis dropped on its own (Redis Cluster: slot moved, failover)

    func testSubscriptionDroppedByRedisIsRestoredAndItsGapFilledFromTheStream() {
        activate(g1, [1, 2], at: 10)
        assertActs(hub.message(g1, pub(11)), [d(11, to: [1, 2])])
        // An unrequested `sunsubscribe`: nothing to send, the link subscribes again itself.
        assertActs(hub.redisUnsubscribed(g1), [])
        XCTAssertEqual(hub.subscriberCount(g1), 2)
        // The restored subscription reads from the last delivered offset: 12 and 13 were
        // published while no subscription was in place.
        assertActs(hub.redisSubscribed(g1), [.read(g1, since: pos(11), purpose: .gapFill)])
        assertActs(hub.message(g1, pub(14)), [])
        assertActs(hub.readCompleted(g1, purpose: .gapFill, result(13, recovered: true, pubs: [12, 13])),
                   [d(12, to: [1, 2]), d(13, to: [1, 2]), d(14, to: [1, 2])])
        assertActs(hub.message(g1, pub(15)), [d(15, to: [1, 2])])
    }

    func testUnsubscribeWhileADroppedSubscriptionIsBeingRestored() {
        activate(g1, [1], at: 10)
        assertActs(hub.redisUnsubscribed(g1), [])
        assertActs(hub.unsubscribe(1, from: g1), [.unsub(g1)])
        assertActs(hub.redisSubscribed(g1), [])
        assertActs(hub.redisUnsubscribed(g1), [])
        XCTAssertEqual(hub.channelCount, 0)
    }
}
