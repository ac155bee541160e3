import CommunityCore
@testable import GatewayNode
import GatewayProtocol
import GatewayRedis
import XCTest

/// The outbox relay: relay.lua's dedupe, lib_emit's two modes (in send_alerts.lua), and
/// OutboxRelay end to end. A single server stands in for a cluster (`cluster: true`):
/// the outbox code paths are the same, every key just happens to be in reach.
final class RelayScriptTests: XCTestCase {
    private func relayEntry(_ f: StoreFixture, _ id: String, outbox: String = "gw:{product:p}:outbox", data: String = "{}") -> Int64? {
        let ch = Channel.user("u")
        return f.redis.run(ChannelScripts.relay, keys: [StoreKeys.meta(ch), StoreKeys.log(ch)],
                           args: [outbox, id, "user:u", "t", data, 10, 600, "e1"]).int
    }

    func testTheSameEntryTwiceIsPublishedOnceAndAnOlderEntryIsSkipped() throws {
        let f = try StoreFixture()
        XCTAssertEqual(relayEntry(f, "1700000000005-1"), 1)
        XCTAssertEqual(relayEntry(f, "1700000000005-1"), 0, "relayed already")
        XCTAssertEqual(relayEntry(f, "1700000000004-9"), 0, "older than the last relayed")
        XCTAssertEqual(relayEntry(f, "1700000000005-2"), 2)
        XCTAssertEqual(relayEntry(f, "1700000000010-0"), 3, "a later millisecond, whatever its sequence")
        XCTAssertEqual(relayEntry(f, "1700000000009-0", outbox: "gw:{product:q}:outbox"), 4, "each outbox keeps its own mark")
        XCTAssertEqual(f.pushes("user:u").count, 4)
    }

    /// send_alerts.lua with lib_emit: inline publishes into the user channels (their keys in
    /// KEYS); outbox mode writes `ch type data size` entries to the product's outbox only.
    func testSendAlertsPublishesInlineOrWritesTheOutbox() throws {
        let f = try StoreFixture()
        f.redis.call(["HSET", StoreKeys.watchRecords("p"), "a", "r1", "b", "r2"])
        let u = Channel.user("a"), v = Channel.user("b")
        let alerts: [RedisArgument] = ["a", "r1", "r1'", "{\"n\":1}", "b", "r2", "r2'", "{\"n\":2}"]
        let inline = f.redis.run(CommunityScripts.sendAlerts,
                                 keys: [StoreKeys.watchRecords("p"), StoreKeys.outbox("p"), StoreKeys.meta(u), StoreKeys.log(u),
                                        StoreKeys.meta(v), StoreKeys.log(v)],
                                 args: ["inline", 10, 600, "e1"] + alerts)
        XCTAssertEqual(inline.int, 2)
        XCTAssertEqual(f.pushes("user:a").count, 1)
        XCTAssertEqual(f.redis.call(["EXISTS", StoreKeys.outbox("p")]).int, 0)

        f.redis.call(["HSET", StoreKeys.watchRecords("p"), "a", "r1", "b", "r2"])
        let outbox = f.redis.run(CommunityScripts.sendAlerts, keys: [StoreKeys.watchRecords("p"), StoreKeys.outbox("p")],
                                 args: ["outbox", 10, 600, "e1"] + alerts)
        XCTAssertEqual(outbox.int, 2)
        XCTAssertEqual(f.pushes("user:a").count, 1, "nothing published inline")
        let entries = try [OutboxRelay.Entry](redisReply: f.redis.call(["XRANGE", StoreKeys.outbox("p"), "-", "+"]))
        XCTAssertEqual(entries.map(\.channel), ["user:a", "user:b"])
        XCTAssertEqual(entries.map(\.type), ["price.drop", "price.drop"])
        XCTAssertEqual(entries.map(\.data), ["{\"n\":1}", "{\"n\":2}"])
        XCTAssertEqual(entries.map(\.size), ["10", "10"])
    }

    func testOnOneServerNothingIsRegisteredOrRelayed() throws {
        let f = try StoreFixture(cluster: false)
        var registered: Bool?
        f.relay.register(StoreKeys.outbox("p")) { registered = $0 }
        XCTAssertEqual(registered, true)
        XCTAssertEqual(f.redis.call(["EXISTS", StoreKeys.relays]).int, 0)
        f.redis.call(["XADD", StoreKeys.outbox("p"), "*", "ch", "user:u", "type", "t", "data", "{}", "size", "10"])
        f.relay.relay(StoreKeys.outbox("p"))
        f.relay.sweep()
        XCTAssertEqual(f.redis.call(["XLEN", StoreKeys.outbox("p")]).int, 1, "untouched")
        XCTAssertEqual(f.link.sent.filter { $0.hasPrefix("relay") }, [])
    }

    /// Cluster mode: the batch is registered first, written to the outbox, then relayed into
    /// the user channels in order, and the relayed entries are deleted.
    func testAlertsOnAClusterGoThroughTheOutboxAndAreRelayedOnce() throws {
        let f = try StoreFixture(cluster: true)
        XCTAssertTrue(try f.value { f.community.createProduct(ProductRecord(id: "p", merchant: "m", title: "T", price: 100,
                                                                            currency: "CNY", createdAt: 1), $0) })
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for user in ["a", "b"] { _ = try f.value { f.community.watch(product: "p", user: user, below: nil, nowMs: now, ttlMs: 60_000, $0) } }
        let page = try f.value { f.community.watchersBelow(product: "p", price: 80, start: 0, count: 10, $0) }
        let drop = PriceDrop(product: "p", title: "T", currency: "CNY", previous: 100, price: 80, cooldownMs: 0)
        XCTAssertEqual(try f.value { f.community.sendAlerts(product: "p", drop.alerts(page.watches, now: now), $0) }, 2)
        let order = f.link.sent.filter { ["relay_register", "send_alerts", "relay", "XDEL"].contains($0) }
        XCTAssertEqual(order, ["relay_register", "send_alerts", "relay", "relay", "XDEL"])
        XCTAssertEqual(f.pushes("user:a").count, 1)
        XCTAssertEqual(f.pushes("user:b").count, 1)
        XCTAssertEqual(f.redis.call(["XLEN", StoreKeys.outbox("p")]).int, 0, "relayed entries are deleted")
        XCTAssertNotEqual(f.redis.call(["ZSCORE", StoreKeys.relays, StoreKeys.outbox("p")]), .null,
                          "the registration stays until a sweep finds it due")
    }

    /// A node relayed the first entry and died before deleting it: relaying the outbox again
    /// (another node, or the sweep) publishes every entry exactly once, in order.
    func testARelayAfterACrashDoesNotDoubleAndKeepsTheOrder() throws {
        let f = try StoreFixture(cluster: true)
        let outbox = StoreKeys.outbox("p")
        var ids: [String] = []
        for n in 1...3 {
            ids.append(f.redis.call(["XADD", outbox, "*", "ch", "user:u", "type", "t", "data", "{\"n\":\(n)}", "size", "10"]).text ?? "")
        }
        XCTAssertEqual(relayEntry(f, ids[0], data: "{\"n\":1}"), 1, "relayed by a node that then died")
        var emptied: Bool?
        f.relay.relay(outbox) { emptied = $0 }
        XCTAssertEqual(emptied, true)
        XCTAssertEqual(f.pushes("user:u").map { $0.contains("\"data\":{\"n\":") ? String($0.suffix(8)) : $0 },
                       ["{\"n\":1}}", "{\"n\":2}}", "{\"n\":3}}"])
        f.relay.relay(outbox)
        XCTAssertEqual(f.pushes("user:u").count, 3)
    }

    func testTheSweepRelaysDueOutboxesAndForgetsOnlyUnchangedRegistrations() throws {
        let f = try StoreFixture(cluster: true)
        let (due, fresh) = (StoreKeys.outbox("p"), StoreKeys.outbox("q"))
        f.redis.call(["ZADD", StoreKeys.relays, 1000, due])
        f.redis.call(["XADD", due, "*", "ch", "user:u", "type", "t", "data", "{}", "size", "10"])
        var registered: Bool?
        f.relay.register(fresh) { registered = $0 }
        XCTAssertEqual(registered, true)
        f.relay.sweep()
        XCTAssertEqual(f.pushes("user:u").count, 1)
        XCTAssertEqual(f.redis.call(["ZSCORE", StoreKeys.relays, due]), .null, "relayed and forgotten")
        XCTAssertNotEqual(f.redis.call(["ZSCORE", StoreKeys.relays, fresh]), .null, "not due yet: kept")

        // Registered again (a new decision) after the sweep read it: its removal is refused.
        f.redis.call(["ZADD", StoreKeys.relays, 2000, due])
        XCTAssertEqual(f.redis.run(ChannelScripts.relayDone, keys: [StoreKeys.relays], args: [due, "1000"]).int, 0)
        XCTAssertEqual(f.redis.run(ChannelScripts.relayDone, keys: [StoreKeys.relays], args: [due, "2000"]).int, 1)
    }
}
