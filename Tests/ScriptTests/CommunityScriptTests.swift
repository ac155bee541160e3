import CommunityCore
@testable import GatewayNode
import GatewayProtocol
import XCTest

/// Group publish and moderation, presence, watches, products, alerts: each script through
/// RedisCommunityStore against a real server.
final class GroupScriptTests: XCTestCase {
    func testMutedUsersAreRefusedAndBuyersAreRateLimited() throws {
        let f = try StoreFixture()
        let send = { (user: String, limited: Bool) in
            try f.value { f.community.groupPublish(product: "p", user: user, limited: limited, rate: 2, windowMs: 60_000, data: "{}", $0) }
        }
        XCTAssertEqual(try send("b", true), .published(offset: 1))
        XCTAssertEqual(try send("b", true), .published(offset: 2))
        guard case .rateLimited(let retry) = try send("b", true) else { return XCTFail("third message in the window") }
        XCTAssertGreaterThan(retry, 0)
        XCTAssertEqual(try send("m", false), .published(offset: 3), "merchants are not rate limited")
        XCTAssertGreaterThan(f.redis.call(["PTTL", StoreKeys.groupRate("p", "b")]).int ?? -1, 0, "the window expires")

        let until = Int64(Date().timeIntervalSince1970 * 1000) + 60_000
        XCTAssertTrue(try f.value { f.community.moderate(product: "p", action: .mute, user: "m", untilMs: until, offset: 0, $0) })
        XCTAssertEqual(try send("m", false), .muted(untilMs: until))
        XCTAssertGreaterThan(f.redis.call(["PTTL", StoreKeys.groupMute("p", "m")]).int ?? -1, 0, "a mute ends on its own")
        XCTAssertTrue(try f.value { f.community.moderate(product: "p", action: .unmute, user: "m", untilMs: 0, offset: 0, $0) })
        XCTAssertEqual(try send("m", false), .published(offset: 4))
    }

    func testALegacyMuteIsHonouredUntilItEnds() throws {
        let f = try StoreFixture()
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        f.redis.call(["HSET", StoreKeys.groupLegacyMuted("p"), "a", String(now + 60_000), "b", String(now - 1)])
        let send = { (user: String) in
            try f.value { f.community.groupPublish(product: "p", user: user, limited: false, rate: 9, windowMs: 1_000, data: "{}", $0) }
        }
        XCTAssertEqual(try send("a"), .muted(untilMs: now + 60_000))
        XCTAssertEqual(try send("b"), .published(offset: 1))
        XCTAssertEqual(f.redis.call(["HEXISTS", StoreKeys.groupLegacyMuted("p"), "b"]).int, 0, "an ended legacy mute is dropped")
    }

    func testDeletingPublishesOnlyForAnExistingOffset() throws {
        let f = try StoreFixture()
        _ = try f.value { f.community.groupPublish(product: "p", user: "u", limited: false, rate: 9, windowMs: 1_000, data: "{}", $0) }
        XCTAssertFalse(try f.value { f.community.moderate(product: "p", action: .delete, user: "", untilMs: 0, offset: 2, $0) })
        XCTAssertTrue(try f.value { f.community.moderate(product: "p", action: .delete, user: "", untilMs: 0, offset: 1, $0) })
        XCTAssertTrue(f.pushes("group:p").last?.contains(#""push":"group.deleted""#) == true)
        XCTAssertTrue(f.pushes("group:p").last?.hasSuffix(#""data":{"offset":1}}"#) == true)
    }
}

final class PresenceScriptTests: XCTestCase {
    func testJoinLeaveAndASecondNodeCountOnce() throws {
        let f = try StoreFixture()
        let ch = Channel.group("p")
        f.redis.call(["HSET", CommerceKeys.members("p"), "a", "1", "z", "2"])
        XCTAssertTrue(try f.value { f.community.presenceJoin(ch, node: "n1.x", ttlMs: 30_000, user: "a", $0) }, "first join: no live heartbeat")
        XCTAssertFalse(try f.value { f.community.presenceJoin(ch, node: "n1.x", ttlMs: 30_000, user: "b", $0) })
        _ = try f.value { f.community.presenceJoin(ch, node: "n2.y", ttlMs: 30_000, user: "a", $0) }
        var snapshot = try f.value { f.community.presence(ch, $0) }
        XCTAssertEqual(snapshot.online, 2)
        XCTAssertEqual(snapshot.buyers, 2)
        XCTAssertEqual(Set(snapshot.users), ["a", "b"])
        f.community.presenceLeave(ch, node: "n1.x", user: "a")
        XCTAssertEqual(try f.value { f.community.presence(ch, $0) }.online, 2, "a is still there through n2")
        f.community.presenceLeave(ch, node: "n2.y", user: "a")
        snapshot = try f.value { f.community.presence(ch, $0) }
        XCTAssertEqual(snapshot.users, ["b"])
    }

    func testADeadNodeIsReapedInSlicesAndARenewalAfterDeathAsksForASync() throws {
        let f = try StoreFixture()
        let ch = Channel.product("p")
        _ = try f.value { f.community.presenceJoin(ch, node: "live.x", ttlMs: 30_000, user: "me", $0) }
        for i in 1...1_500 { f.redis.call(["SADD", StoreKeys.presenceNode(ch, "dead.x"), "g\(i)"]) ; f.redis.call(["HINCRBY", StoreKeys.presenceOnline(ch), "g\(i)", 1]) }
        f.redis.call(["ZADD", StoreKeys.presenceNodes(ch), 1, "dead.x"])
        XCTAssertEqual(try f.value { f.community.presence(ch, $0) }.online, 501, "a read reaps 1,000 first")
        XCTAssertEqual(try f.value { f.community.presence(ch, $0) }.online, 1)
        XCTAssertEqual(f.redis.call(["ZSCORE", StoreKeys.presenceNodes(ch), "dead.x"]), .null, "the dead node is gone")

        // live.x taken for dead (heartbeat aged), reaped by a read, then renews: it must sync.
        f.redis.call(["ZADD", StoreKeys.presenceNodes(ch), 1, "live.x"])
        XCTAssertEqual(try f.value { f.community.presence(ch, $0) }.online, 0)
        XCTAssertTrue(try f.value { f.community.presenceRenew(ch, node: "live.x", ttlMs: 30_000, $0) })
        XCTAssertFalse(try f.value { f.community.presenceRenew(ch, node: "live.x", ttlMs: 30_000, $0) })
        f.community.presenceSync(ch, node: "live.x", ttlMs: 30_000, users: ["me", "you"])
        XCTAssertEqual(Set(try f.value { f.community.presence(ch, $0) }.users), ["me", "you"])
        f.community.presenceSync(ch, node: "live.x", ttlMs: 30_000, users: ["you"])
        XCTAssertEqual(try f.value { f.community.presence(ch, $0) }.users, ["you"], "sync takes out who left")
    }

    func testARenewalReapsDeadNodes() throws {
        let f = try StoreFixture()
        let ch = Channel.group("p")
        _ = try f.value { f.community.presenceJoin(ch, node: "dead.x", ttlMs: 30_000, user: "ghost", $0) }
        _ = try f.value { f.community.presenceJoin(ch, node: "live.x", ttlMs: 30_000, user: "me", $0) }
        f.redis.call(["ZADD", StoreKeys.presenceNodes(ch), 1, "dead.x"])
        XCTAssertFalse(try f.value { f.community.presenceRenew(ch, node: "live.x", ttlMs: 30_000, $0) })
        XCTAssertEqual(f.redis.call(["HLEN", StoreKeys.presenceOnline(ch)]).int, 1)
        XCTAssertEqual(f.redis.call(["EXISTS", StoreKeys.presenceNode(ch, "dead.x")]).int, 0)
    }
}

final class WatchScriptTests: XCTestCase {
    private func product(_ f: StoreFixture, _ id: String = "p", price: Int64 = 100, merchant: String = "m1") throws {
        XCTAssertTrue(try f.value { f.community.createProduct(ProductRecord(id: id, merchant: merchant, title: "T", price: price,
                                                                            currency: "CNY", createdAt: 1), $0) })
    }

    func testWatchUnwatchAndWatchesAcrossTheUserAndProductKeys() throws {
        let f = try StoreFixture()
        try product(f)
        try product(f, "q", price: 50)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        XCTAssertEqual(try f.value { f.community.watch(product: "p", user: "u", below: 90, nowMs: now, ttlMs: 60_000, $0) }, 100)
        XCTAssertEqual(try f.value { f.community.watch(product: "q", user: "u", below: nil, nowMs: now, ttlMs: 60_000, $0) }, 50)
        XCTAssertEqual(try f.value { f.community.watch(product: "none", user: "u", below: nil, nowMs: now, ttlMs: 60_000, $0) }, Int64?.none)
        XCTAssertEqual(f.redis.call(["SISMEMBER", StoreKeys.userWatches("u"), "none"]).int, 0, "taken back from the user's list")
        XCTAssertEqual(f.redis.call(["HGET", StoreKeys.watchRecords("p"), "u"]).text, "90|100|||\(now + 60_000)", "Watch.record's format")
        let listed = try f.value { f.community.watches(user: "u", nowMs: now, $0) }
        XCTAssertEqual(listed.map(\.watch.product), ["p", "q"])
        XCTAssertEqual(listed.map(\.watch.threshold), [90, 50])
        XCTAssertEqual(listed.map(\.price), [100, 50])

        try f.value { f.community.unwatch(product: "p", user: "u", $0) }
        XCTAssertEqual(try f.value { f.community.watches(user: "u", nowMs: now, $0) }.map(\.watch.product), ["q"])
        XCTAssertEqual(f.redis.call(["ZSCORE", StoreKeys.watchers("p"), "u"]), .null)

        // A product gone: dropped from the list when it is read.
        f.redis.call(["DEL", StoreKeys.productInfo("q")])
        XCTAssertEqual(try f.value { f.community.watches(user: "u", nowMs: now, $0) }, [])
        XCTAssertEqual(f.redis.call(["SCARD", StoreKeys.userWatches("u")]).int, 0)
    }

    func testEndedWatchesAreLeftOutAndDroppedByTheNextWatch() throws {
        let f = try StoreFixture()
        try product(f)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        _ = try f.value { f.community.watch(product: "p", user: "old", below: nil, nowMs: now - 10_000, ttlMs: 5_000, $0) }
        XCTAssertEqual(try f.value { f.community.watches(user: "old", nowMs: now, $0) }, [], "an ended watch is not listed")
        _ = try f.value { f.community.watch(product: "p", user: "new", below: nil, nowMs: now, ttlMs: 60_000, $0) }
        XCTAssertEqual(f.redis.call(["HEXISTS", StoreKeys.watchRecords("p"), "old"]).int, 0)
        XCTAssertEqual(f.redis.call(["ZCARD", StoreKeys.watchExpiry("p")]).int, 1)
        XCTAssertEqual(f.redis.call(["SCARD", StoreKeys.userWatches("old")]).int, 0, "out of its user's list too")
        XCTAssertGreaterThan(f.redis.call(["PTTL", StoreKeys.watchers("p")]).int ?? -1, 50_000)
    }

    func testProductUpdateChecksTheMerchantAndAnnouncesAPriceChange() throws {
        let f = try StoreFixture()
        try product(f)
        XCTAssertEqual(try f.value { f.community.updateProduct("p", price: 80, title: nil, merchant: "m2", $0) }, .notYours)
        XCTAssertEqual(try f.value { f.community.updateProduct("x", price: 80, title: nil, merchant: nil, $0) }, .noProduct)
        XCTAssertEqual(f.pushes("product:p"), [], "a refused update changes nothing")
        XCTAssertEqual(try f.value { f.community.updateProduct("p", price: 80, title: "New", merchant: "m1", $0) },
                       .updated(previous: 100, price: 80, title: "New", currency: "CNY"))
        XCTAssertEqual(f.pushes("product:p").count, 1)
        XCTAssertTrue(f.pushes("product:p")[0].contains(#""push":"product.price""#))
        XCTAssertEqual(try f.value { f.community.updateProduct("p", price: nil, title: "Newer", merchant: nil, $0) },
                       .updated(previous: 80, price: 80, title: "Newer", currency: "CNY"))
        XCTAssertEqual(f.pushes("product:p").count, 1, "a title change alone is not announced")
        let view = try f.value { f.community.product("p", $0) }
        XCTAssertEqual(view?.product.title, "Newer")
        XCTAssertEqual(view?.product.price, 80)
        XCTAssertFalse(try f.value { f.community.createProduct(view!.product, $0) }, "an existing id is not created again")
    }

    func testWatchersBelowPagesByRankAndSendAlertsSkipsAChangedWatch() throws {
        let f = try StoreFixture()
        try product(f)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for (user, below) in [("a", 40 as Int64?), ("b", 90), ("c", nil), ("d", 95)] {
            _ = try f.value { f.community.watch(product: "p", user: user, below: below, nowMs: now, ttlMs: 60_000, $0) }
        }
        let first = try f.value { f.community.watchersBelow(product: "p", price: 80, start: 0, count: 2, $0) }
        XCTAssertEqual(first.scanned, 2)
        XCTAssertEqual(first.watches.map(\.user), ["b", "d"], "thresholds above 80, lowest first")
        let second = try f.value { f.community.watchersBelow(product: "p", price: 80, start: 2, count: 2, $0) }
        XCTAssertEqual(second.watches.map(\.user), ["c"])

        let drop = PriceDrop(product: "p", title: "T", currency: "CNY", previous: 100, price: 80, cooldownMs: 60_000)
        let alerts = drop.alerts(first.watches + second.watches, now: now)
        XCTAssertEqual(alerts.count, 3)
        // d's watch changes before the batch goes out: its alert is skipped.
        _ = try f.value { f.community.watch(product: "p", user: "d", below: 70, nowMs: now, ttlMs: 60_000, $0) }
        XCTAssertEqual(try f.value { f.community.sendAlerts(product: "p", alerts, $0) }, 2)
        XCTAssertEqual(f.pushes("user:b").count, 1)
        XCTAssertTrue(f.pushes("user:b")[0].contains(#""push":"price.drop""#))
        XCTAssertEqual(f.pushes("user:d"), [])
        XCTAssertEqual(f.redis.call(["HGET", StoreKeys.watchRecords("p"), "b"]).text, alerts[0].after.record)
        XCTAssertEqual(try f.value { f.community.sendAlerts(product: "p", alerts, $0) }, 0, "the same batch again sends nothing")
        XCTAssertEqual(f.redis.call(["XLEN", StoreKeys.outbox("p")]).int, 0, "one server: nothing in the outbox")
    }

    func testTheBotLeaseIsHeldByOneNode() throws {
        let f = try StoreFixture()
        XCTAssertTrue(try f.value { f.community.renewBotLease(node: "a", ttlMs: 10_000, $0) })
        XCTAssertFalse(try f.value { f.community.renewBotLease(node: "b", ttlMs: 10_000, $0) })
        XCTAssertTrue(try f.value { f.community.renewBotLease(node: "a", ttlMs: 10_000, $0) })
    }
}
