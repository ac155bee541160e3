import GatewayRedis
import XCTest

private func s(_ text: String) -> RedisReply { .string(Array(text.utf8)) }
private func ep(_ port: Int, _ host: String = "127.0.0.1") -> RedisEndpoint { .tcp(host: host, port: port) }

/// What the cluster client relies on (commerce's HashSlotTests cover HashSlot itself): a channel's keys,
/// its shard channel and its bare name hash alike.
final class ClusterKeySlotTests: XCTestCase {
    func testKnownSlots() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        XCTAssertEqual(HashSlot.of("foo"), 12_182)
        XCTAssertEqual(HashSlot.of("bar"), 5_061)
        XCTAssertEqual(HashSlot.of("123456789"), 0x31C3 % 16_384)
        XCTAssertEqual(HashSlot.of(""), 0)
    }

    func testHashTags() {
        XCTAssertEqual(HashSlot.of("{user1000}.following"), HashSlot.of("user1000"))
        XCTAssertEqual(HashSlot.of("gw:{group:p1}:meta"), HashSlot.of("group:p1"))
        XCTAssertEqual(HashSlot.of("gw:{group:p1}"), HashSlot.of("gw:{group:p1}:log"))
        // Only the first {...}; an empty {} hashes the whole key.
        XCTAssertEqual(HashSlot.of("foo{bar}{zap}"), HashSlot.of("bar"))
        XCTAssertEqual(HashSlot.of("foo{{bar}}zap"), HashSlot.of("{bar"))
        XCTAssertNotEqual(HashSlot.of("foo{}{bar}"), HashSlot.of("bar"))
        XCTAssertNotEqual(HashSlot.of("foo{bar"), HashSlot.of("bar"))
    }
}

final class ClusterRedirectTests: XCTestCase {
    func testMovedAndAsk() {
        XCTAssertEqual(ClusterRedirect(error: "MOVED 3999 127.0.0.1:6381", answeredBy: ep(7000)),
                       .moved(slot: 3999, to: ep(6381)))
        XCTAssertEqual(ClusterRedirect(error: "ASK 3999 10.0.0.2:7002", answeredBy: ep(7000)),
                       .ask(slot: 3999, to: ep(7002, "10.0.0.2")))
        XCTAssertEqual(ClusterRedirect(error: "MOVED 1 redis-2.local:7001", answeredBy: ep(7000))?.target,
                       ep(7001, "redis-2.local"))
        XCTAssertEqual(ClusterRedirect(error: "MOVED 1 [::1]:7001", answeredBy: ep(7000)), .moved(slot: 1, to: ep(7001, "::1")))
    }

    func testEmptyHostIsTheServerThatAnswered() {
        XCTAssertEqual(ClusterRedirect(error: "MOVED 3999 :6381", answeredBy: ep(7000, "10.1.2.3")),
                       .moved(slot: 3999, to: ep(6381, "10.1.2.3")))
        XCTAssertNil(ClusterRedirect(error: "MOVED 3999 :6381", answeredBy: .unix(path: "/tmp/r.sock")))
    }

    func testOtherErrorsAreNotRedirects() {
        for error in ["ERR unknown command", "MOVED", "MOVED x 1.2.3.4:1", "MOVED 16384 a:1", "MOVED 1 a:0",
                      "MOVED 1 a", "TRYAGAIN Multiple keys request during rehashing of slot", "CLUSTERDOWN The cluster is down",
                      "NOSCRIPT No matching script", "ASKING 1 a:1"] {
            XCTAssertNil(ClusterRedirect(error: error, answeredBy: ep(7000)), error)
        }
    }
}

final class ClusterTopologyTests: XCTestCase {
    /// `CLUSTER SLOTS` of a 3-master, 3-replica cluster, in Redis 7's shape.
    static let slotsReply = RedisReply.array([
        .array([.integer(5461), .integer(10922),
                .array([s("127.0.0.1"), .integer(7001), s("id-b"), .array([])]),
                .array([s("127.0.0.1"), .integer(7004), s("id-e"), .array([])])]),
        .array([.integer(0), .integer(5460),
                .array([s("127.0.0.1"), .integer(7000), s("id-a"), .array([])]),
                .array([s("127.0.0.1"), .integer(7003), s("id-d"), .array([])])]),
        .array([.integer(10923), .integer(16383),
                .array([s(""), .integer(7002), s("id-c")])]),
    ])

    func testDecodesRangesMastersAndLooksUpSlots() throws {
        let topology = try ClusterTopology(clusterSlots: Self.slotsReply, answeredBy: ep(7000, "10.0.0.9"))
        XCTAssertEqual(topology.ranges.map(\.slots), [0...5460, 5461...10922, 10923...16383])
        XCTAssertEqual(Set(topology.masters), [ep(7000), ep(7001), ep(7002, "10.0.0.9")])
        XCTAssertEqual(topology.master(forSlot: 0), ep(7000))
        XCTAssertEqual(topology.master(forSlot: 5460), ep(7000))
        XCTAssertEqual(topology.master(forSlot: 5461), ep(7001))
        XCTAssertEqual(topology.master(forSlot: 16383), ep(7002, "10.0.0.9"))
        XCTAssertNil(topology.master(forSlot: 16384))
        XCTAssertEqual(topology.master(forKey: "foo"), ep(7002, "10.0.0.9"))
        XCTAssertEqual(topology.master(forKey: "bar"), ep(7000))
        XCTAssertTrue(topology.coversAllSlots)
        // Replicas are never masters.
        XCTAssertFalse(topology.masters.contains(ep(7003)))
    }

    func testSeveralRangesOfOneMasterAndUncoveredSlots() throws {
        let reply = RedisReply.array([
            .array([.integer(0), .integer(99), .array([s("h"), .integer(1)])]),
            .array([.integer(200), .integer(299), .array([s("h"), .integer(1)])]),
        ])
        let topology = try ClusterTopology(clusterSlots: reply, answeredBy: ep(1, "h"))
        XCTAssertEqual(topology.masters, [ep(1, "h")])
        XCTAssertNil(topology.master(forSlot: 150))
        XCTAssertFalse(topology.coversAllSlots)
    }

    func testMalformedRepliesAreErrors() {
        for reply: RedisReply in [.error("ERR This instance has cluster support disabled"), .disconnected, s("x"),
                                  .array([.array([.integer(0)])]),
                                  .array([.array([.integer(10), .integer(5), .array([s("h"), .integer(1)])])]),
                                  .array([.array([.integer(0), .integer(16384), .array([s("h"), .integer(1)])])]),
                                  .array([.array([.integer(0), .integer(1), .array([s("h"), .integer(0)])])])] {
            XCTAssertThrowsError(try ClusterTopology(clusterSlots: reply, answeredBy: ep(1)), "\(reply)")
        }
    }
}

final class ClusterCommandRetryTests: XCTestCase {
    func testRedirectsAndRetriesUntilTheDeadline() {
        var retry = ClusterCommandRetry(nowMs: 1_000, timeoutMs: 500)
        XCTAssertEqual(retry.decide(s("ok"), answeredBy: ep(1), nowMs: 1_000), .deliver)
        XCTAssertEqual(retry.decide(.error("ERR wrong type"), answeredBy: ep(1), nowMs: 1_000), .deliver)
        XCTAssertEqual(retry.decide(.disconnected, answeredBy: ep(1), nowMs: 1_000), .deliver)
        XCTAssertEqual(retry.decide(.error("MOVED 5 :7002"), answeredBy: ep(7000), nowMs: 1_000), .moved(slot: 5, to: ep(7002)))
        XCTAssertEqual(retry.decide(.error("ASK 5 127.0.0.1:7001"), answeredBy: ep(7000), nowMs: 1_000), .ask(slot: 5, to: ep(7001)))
        XCTAssertEqual(retry.decide(.error("TRYAGAIN Multiple keys"), answeredBy: ep(1), nowMs: 1_000), .retry(afterMs: 50))
        XCTAssertEqual(retry.decide(.error("CLUSTERDOWN The cluster is down"), answeredBy: ep(1), nowMs: 1_100), .retry(afterMs: 100))
        XCTAssertEqual(retry.decide(.error("CLUSTERDOWN The cluster is down"), answeredBy: ep(1), nowMs: 1_200), .retry(afterMs: 200))
        // The next delay would end past the deadline: give up as unavailable.
        XCTAssertEqual(retry.decide(.error("CLUSTERDOWN The cluster is down"), answeredBy: ep(1), nowMs: 1_400), .unavailable)
    }

    func testARedirectLoopEndsAsTheError() {
        var retry = ClusterCommandRetry(nowMs: 0, timeoutMs: 10_000)
        for _ in 0..<ClusterCommandRetry.maxRedirects {
            XCTAssertEqual(retry.decide(.error("MOVED 5 :7002"), answeredBy: ep(7000), nowMs: 0), .moved(slot: 5, to: ep(7002)))
        }
        XCTAssertEqual(retry.decide(.error("MOVED 5 :7002"), answeredBy: ep(7000), nowMs: 0), .deliver)
    }
}

final class ClusterLinkStateTests: XCTestCase {
    typealias Action = ClusterLinkState.Action
    let a = ep(7000), b = ep(7001), c = ep(7002)

    func topology(_ owners: [(ClosedRange<Int>, RedisEndpoint)]) -> ClusterTopology {
        ClusterTopology(ranges: owners.map { .init(slots: $0.0, master: $0.1) })
    }

    /// Three masters: a 0-5460, b 5461-10922, c 10923-16383.
    var three: ClusterTopology { topology([(0...5460, a), (5461...10922, b), (10923...16383, c)]) }

    /// Channel names whose slot is on each master of `three`.
    func channel(on master: RedisEndpoint, _ n: Int = 0) -> String {
        let range = three.ranges.first { $0.master == master }!.slots
        var found = 0
        for i in 0..<100_000 where range.contains(HashSlot.of("gw:{group:g\(i)}")) {
            if found == n { return "gw:{group:g\(i)}" }
            found += 1
        }
        fatalError("no channel on \(master)")
    }

    func testReadyOnceEveryMasterIsUp() {
        var state = ClusterLinkState()
        XCTAssertNil(state.master(forKey: "x"))
        XCTAssertEqual(state.topologyLoaded(three), [.open(a), .open(b), .open(c)])
        XCTAssertFalse(state.isReady)
        XCTAssertEqual(state.masterUp(a), [])
        XCTAssertEqual(state.masterUp(b), [])
        XCTAssertEqual(state.masterUp(c), [.ready])
        XCTAssertTrue(state.isReady)
        XCTAssertEqual(state.master(forKey: "foo"), c)
        XCTAssertEqual(state.master(forKey: "bar"), a)
        // A master that is not in the topology is ignored.
        XCTAssertEqual(state.masterUp(ep(9)), [])
    }

    func testSubscriptionsArePlacedOnTheOwnerOnceItIsUp() {
        var state = ClusterLinkState()
        _ = state.topologyLoaded(three)
        let onA = channel(on: a), onB = channel(on: b)
        XCTAssertEqual(state.subscribe([onA, onB]), [])
        XCTAssertEqual(state.masterUp(a), [.subscribe([onA], on: a)])
        XCTAssertEqual(state.masterUp(b), [.subscribe([onB], on: b)])
        // Asked again (a node resubscribing after a reconnect): sent again, answered again.
        XCTAssertEqual(state.subscribe([onA]), [.subscribe([onA], on: a)])
        XCTAssertEqual(state.unsubscribe([onA, onB]), [.unsubscribe([onA], on: a), .unsubscribe([onB], on: b)])
        XCTAssertTrue(state.subscriptions.isEmpty)
    }

    func testUnsubscribingAChannelThatWasNotPlacedIsAnsweredLocally() {
        var state = ClusterLinkState()
        _ = state.topologyLoaded(three)
        let onC = channel(on: c)
        XCTAssertEqual(state.subscribe([onC]), [])
        XCTAssertEqual(state.unsubscribe([onC]), [.unsubscribedLocally([onC])])
    }

    func testFailoverLosesTheMastersSubscriptionsAndRestoresThemOnThePromotedReplica() {
        var state = ClusterLinkState()
        _ = state.topologyLoaded(three)
        _ = state.masterUp(a); _ = state.masterUp(b); _ = state.masterUp(c)
        let onA = channel(on: a), onB = channel(on: b)
        _ = state.subscribe([onA, onB])
        XCTAssertEqual(state.masterDown(a), [.subscriptionsLost([onA]), .notReady, .refreshTopology])
        XCTAssertFalse(state.isReady)
        // Still the old view (the failover has not happened yet): nothing to move.
        XCTAssertEqual(state.topologyLoaded(three), [])
        // The replica d took a's slots.
        let d = ep(7003)
        let after = topology([(0...5460, d), (5461...10922, b), (10923...16383, c)])
        XCTAssertEqual(state.topologyLoaded(after), [.close(a), .open(d)])
        XCTAssertEqual(state.masterUp(d), [.subscribe([onA], on: d), .ready])
        XCTAssertEqual(state.subscriptions[onB], .some(b))
        XCTAssertEqual(state.master(forKey: onA), d)
    }

    func testASlotMovedByReshardingMovesItsSubscription() {
        var state = ClusterLinkState()
        _ = state.topologyLoaded(three)
        _ = state.masterUp(a); _ = state.masterUp(b); _ = state.masterUp(c)
        let onA = channel(on: a), other = channel(on: a, 1)
        _ = state.subscribe([onA, other])
        // Redis' own sunsubscribe from the old owner: lost, ask the topology.
        XCTAssertEqual(state.unsubscribed(onA, on: a), [.subscriptionsLost([onA]), .refreshTopology])
        let slot = HashSlot.of(onA)
        var ranges: [(ClosedRange<Int>, RedisEndpoint)] = [(5461...10922, b), (10923...16383, c), (slot...slot, b)]
        if slot > 0 { ranges.append((0...(slot - 1), a)) }
        if slot < 5460 { ranges.append(((slot + 1)...5460, a)) }
        XCTAssertEqual(state.topologyLoaded(topology(ranges)), [.subscribe([onA], on: b)])
        XCTAssertEqual(state.subscriptions[other], .some(a))
        // A late sunsubscribe from the old owner after the move is swallowed.
        XCTAssertEqual(state.unsubscribed(onA, on: a), [])
        // One the node asked for is passed on.
        _ = state.unsubscribe([other])
        XCTAssertNil(state.unsubscribed(other, on: a))
    }

    func testAMovedSlotFoundByTheTopologyFirst() {
        var state = ClusterLinkState()
        _ = state.topologyLoaded(three)
        _ = state.masterUp(a); _ = state.masterUp(b); _ = state.masterUp(c)
        let onA = channel(on: a)
        _ = state.subscribe([onA])
        let slot = HashSlot.of(onA)
        var ranges: [(ClosedRange<Int>, RedisEndpoint)] = [(5461...10922, b), (10923...16383, c), (slot...slot, c)]
        if slot > 0 { ranges.append((0...(slot - 1), a)) }
        if slot < 5460 { ranges.append(((slot + 1)...5460, a)) }
        XCTAssertEqual(state.topologyLoaded(topology(ranges)), [.subscriptionsLost([onA]), .subscribe([onA], on: c)])
    }
}

extension ClusterLinkStateTests {
    func testASubscribeRefusedWithMovedWaitsForTheTopology() {
        var state = ClusterLinkState()
        _ = state.topologyLoaded(three)
        _ = state.masterUp(a); _ = state.masterUp(b); _ = state.masterUp(c)
        let onA = channel(on: a), other = channel(on: a, 1)
        XCTAssertEqual(state.subscribe([onA, other]), [.subscribe([onA, other], on: a)])
        let slot = HashSlot.of(onA)
        XCTAssertEqual(state.subscribeRefused("ERR unknown command", on: a), [])
        XCTAssertEqual(state.subscribeRefused("MOVED \(slot) 127.0.0.1:7001", on: a), [.refreshTopology])
        XCTAssertEqual(state.subscriptions[onA], .some(nil))
        XCTAssertEqual(state.subscriptions[other], .some(a))
        var ranges: [(ClosedRange<Int>, RedisEndpoint)] = [(5461...10922, b), (10923...16383, c), (slot...slot, b)]
        if slot > 0 { ranges.append((0...(slot - 1), a)) }
        if slot < 5460 { ranges.append(((slot + 1)...5460, a)) }
        // Never confirmed, so not reported lost: the node still waits for its `ssubscribe`.
        XCTAssertEqual(state.topologyLoaded(topology(ranges)), [.subscribe([onA], on: b)])
    }
}
