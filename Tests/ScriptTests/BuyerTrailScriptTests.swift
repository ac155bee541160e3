@testable import GatewayNode
import GatewayProtocol
import GatewayRedis
import OrderCore
import XCTest

/// owns_update, also_count, user_seen and user_dormant through RedisBuyerTrailStore against a
/// real server: counts move once per ownership transition, connections count per instance,
/// and a due dormancy timer is put back, told once, or dropped.
final class BuyerTrailScriptTests: XCTestCase {
    private let spell: Int64 = 60_000

    private func counts(_ f: StoreFixture, _ product: String) -> [String: String] {
        let flat = (f.redis.call(["ZRANGE", StoreKeys.alsoBought(product), 0, -1, "WITHSCORES"]).array ?? []).compactMap(\.text)
        return Dictionary(uniqueKeysWithValues: stride(from: 0, to: flat.count, by: 2).map { (flat[$0], flat[$0 + 1]) })
    }

    private func store(_ f: StoreFixture) -> RedisBuyerTrailStore {
        RedisBuyerTrailStore(redis: f.link, relay: f.link.isCluster ? f.relay : nil, eventRetentionMs: 3_600_000, log: { _ in })
    }

    private func dormantEvents(_ f: StoreFixture) -> [String] {
        (f.redis.call(["XRANGE", StoreKeys.eventsLog, "-", "+"]).array ?? []).compactMap { entry in
            let fields = (entry.array?.last?.array ?? []).compactMap(\.text)
            guard let type = fields.firstIndex(of: "type"), fields[type + 1] == "user.dormant",
                  let data = fields.firstIndex(of: "data") else { return nil }
            return fields[data + 1]
        }
    }

    func testCountsMoveOncePerOwnershipTransition() throws {
        let f = try StoreFixture()
        let trail = store(f)
        trail.noteOwner(product: "pa", user: "u1", owns: true, nowMs: 1_000)
        XCTAssertEqual(counts(f, "pa"), [:], "a first product has nothing to pair with")
        trail.noteOwner(product: "pb", user: "u1", owns: true, nowMs: 2_000)
        trail.noteOwner(product: "pb", user: "u1", owns: true, nowMs: 3_000)
        XCTAssertEqual(counts(f, "pa"), ["pb": "1"], "a repeat counts once")
        XCTAssertEqual(counts(f, "pb"), ["pa": "1"])
        trail.noteOwner(product: "pb", user: "u2", owns: true, nowMs: 4_000)
        trail.noteOwner(product: "pa", user: "u2", owns: true, nowMs: 5_000)
        trail.noteOwner(product: "pc", user: "u2", owns: true, nowMs: 6_000)
        XCTAssertEqual(counts(f, "pa"), ["pb": "2", "pc": "1"], "distinct buyers, whichever came first")
        XCTAssertEqual(counts(f, "pc"), ["pa": "1", "pb": "1"])

        trail.noteOwner(product: "pb", user: "u1", owns: false, nowMs: 7_000)
        trail.noteOwner(product: "pb", user: "u1", owns: false, nowMs: 8_000)
        XCTAssertEqual(counts(f, "pa"), ["pb": "1", "pc": "1"], "a refund takes the buyer off once")
        trail.noteOwner(product: "pb", user: "u2", owns: false, nowMs: 9_000)
        XCTAssertEqual(counts(f, "pa"), ["pc": "1"], "a count at 0 leaves")
        XCTAssertEqual(counts(f, "pb"), [:])

        f.redis.call(["HSET", StoreKeys.productInfo("pc"), "id", "pc", "merchant", "m1", "title", "Card pc", "price", "100",
                      "currency", "CNY", "created_at", "1"])
        let rows = try f.value { trail.alsoBought(product: "pa", limit: 5, $0) }
        XCTAssertEqual(rows.map(\.product.id), ["pc"])
        XCTAssertEqual(rows.first?.buyers, 1)
        XCTAssertEqual(rows.first?.product.title, "Card pc")
    }

    /// A delivery's work in the buyer's slot is one call: the order's risk place freed (also on
    /// a repeat, which changes no ownership) and, on one server, the first ownership's timer.
    func testADeliveryFreesTheRiskPlaceAndArmsTheTimerInOneCall() throws {
        let f = try StoreFixture()
        let trail = store(f)
        let pending = StoreKeys.riskPending("u1")
        f.redis.call(["ZADD", pending, 9_000_000_000_000, "o-1", 9_000_000_000_000, "o-2", 9_000_000_000_000, "o-3"])
        trail.noteOwner(product: "pa", user: "u1", owns: true, nowMs: 1_000, releasing: ["o-1", "o-3"],
                        arm: DormancyArm(member: "dorm:u1", dueMs: 5_000))
        XCTAssertEqual((f.redis.call(["ZRANGE", pending, 0, -1]).array ?? []).compactMap(\.text), ["o-2"])
        XCTAssertEqual(f.redis.call(["ZSCORE", CommerceKeys.timers, "dorm:u1"]).text, "5000", "armed in the same step")
        XCTAssertEqual(f.redis.call(["ZSCORE", StoreKeys.owns("u1"), "pa"]).text, "1000")
        trail.noteOwner(product: "pa", user: "u1", owns: true, nowMs: 2_000, releasing: ["o-2"],
                        arm: DormancyArm(member: "dorm:u1", dueMs: 9_000))
        XCTAssertEqual(f.redis.call(["ZCARD", pending]).int, 0, "a repeat delivery frees its place too")
        XCTAssertEqual(f.redis.call(["ZSCORE", CommerceKeys.timers, "dorm:u1"]).text, "5000", "and starts no new spell")
        XCTAssertEqual(f.link.sent, ["owns_update", "owns_update"], "no call beside the script")
    }

    /// On a cluster the timer is in another slot: ZADDed after a first ownership only.
    func testOnAClusterTheTimerOfAFirstOwnershipIsSetAfter() throws {
        let f = try StoreFixture(cluster: true)
        let trail = store(f)
        f.redis.call(["ZADD", StoreKeys.riskPending("u1"), 9_000_000_000_000, "o-1"])
        trail.noteOwner(product: "pa", user: "u1", owns: true, nowMs: 1_000, releasing: ["o-1"],
                        arm: DormancyArm(member: "dorm:u1", dueMs: 5_000))
        trail.noteOwner(product: "pa", user: "u1", owns: true, nowMs: 2_000, releasing: [],
                        arm: DormancyArm(member: "dorm:u1", dueMs: 9_000))
        XCTAssertEqual(f.redis.call(["ZCARD", StoreKeys.riskPending("u1")]).int, 0)
        XCTAssertEqual(f.redis.call(["ZSCORE", CommerceKeys.timers, "dorm:u1"]).text, "5000")
        XCTAssertEqual(f.link.scriptKeys.map(\.keys), [[StoreKeys.owns("u1"), StoreKeys.riskPending("u1")], [StoreKeys.owns("u1")]],
                       "the user's slot only")
        XCTAssertEqual(f.link.sent, ["owns_update", "ZADD", "owns_update"], "one ZADD NX, for the first ownership")
    }

    func testConnectionsCountPerInstanceAndTheTimerIsArmedOnce() throws {
        let f = try StoreFixture()
        let trail = store(f)
        var armed = 0
        trail.noteSeen(user: "u1", opened: true, instance: "n1.a") { armed += 1 }
        trail.noteSeen(user: "u1", opened: true, instance: "n1.a") { armed += 1 }
        trail.noteSeen(user: "u1", opened: true, instance: "n2.b") { armed += 1 }
        XCTAssertEqual(armed, 1, "only the first connect arms the timer")
        XCTAssertEqual(f.redis.call(["HGET", StoreKeys.seen("u1"), "conn:n1.a"]).text, "2")
        trail.noteSeen(user: "u1", opened: false, instance: "n1.a") { armed += 1 }
        trail.noteSeen(user: "u1", opened: false, instance: "n1.a") { armed += 1 }
        XCTAssertEqual(f.redis.call(["HEXISTS", StoreKeys.seen("u1"), "conn:n1.a"]).int, 0, "no open connection left there")
        XCTAssertNotNil(try f.value { trail.lastSeen(user: "u1", $0) })
        XCTAssertNil(try f.value { trail.lastSeen(user: "u2", $0) })
        XCTAssertEqual(armed, 1)
    }

    func testADueTimerIsPutBackToldOnceOrDropped() throws {
        let f = try StoreFixture()
        let trail = store(f)
        let now: Int64 = 10_000_000
        f.redis.call(["HSET", StoreKeys.seen("u1"), "last_seen", now - 2 * spell, "conn:n2.gone", 1, "armed", 1])
        f.redis.call(["ZADD", StoreKeys.owns("u1"), now - 3 * spell, "p1"])
        XCTAssertEqual(try f.value { trail.checkDormant(user: "u1", nowMs: now, spellMs: self.spell, liveInstances: ["n1.a"], $0) }, .dormant,
                       "a connection counted on a dead instance does not count")
        XCTAssertEqual(f.redis.call(["HEXISTS", StoreKeys.seen("u1"), "conn:n2.gone"]).int, 0, "and is dropped")
        XCTAssertEqual(dormantEvents(f), [#"{"user":"u1","last_seen":\#(now - 2 * spell)}"#])
        XCTAssertEqual(try f.value { trail.checkDormant(user: "u1", nowMs: now + 1, spellMs: self.spell, liveInstances: [], $0) }, .off,
                       "one event per spell")
        XCTAssertEqual(dormantEvents(f).count, 1)

        f.redis.call(["HSET", StoreKeys.seen("u1"), "conn:n1.a", 1])
        XCTAssertEqual(try f.value { trail.checkDormant(user: "u1", nowMs: now, spellMs: self.spell, liveInstances: ["n1.a"], $0) },
                       .later(due: now + spell), "connected on a live instance: checked again a spell later")
        f.redis.call(["HDEL", StoreKeys.seen("u1"), "conn:n1.a"])
        f.redis.call(["HSET", StoreKeys.seen("u1"), "last_seen", now - 1_000])
        XCTAssertEqual(try f.value { trail.checkDormant(user: "u1", nowMs: now, spellMs: self.spell, liveInstances: [], $0) },
                       .later(due: now - 1_000 + spell), "seen within the spell")
        XCTAssertEqual(try f.value { trail.checkDormant(user: "u1", nowMs: now + spell, spellMs: self.spell, liveInstances: [], $0) },
                       .dormant, "a new spell, a new event")
        XCTAssertEqual(dormantEvents(f).last, #"{"user":"u1","last_seen":\#(now - 1_000)}"#)

        f.redis.call(["HSET", StoreKeys.seen("u2"), "last_seen", 1])
        XCTAssertEqual(try f.value { trail.checkDormant(user: "u2", nowMs: now, spellMs: self.spell, liveInstances: [], $0) }, .off,
                       "not a buyer: never dormant")
        f.redis.call(["ZADD", StoreKeys.owns("u3"), now - 2 * spell, "p1"])
        XCTAssertEqual(try f.value { trail.checkDormant(user: "u3", nowMs: now, spellMs: self.spell, liveInstances: [], $0) }, .dormant)
        XCTAssertEqual(dormantEvents(f).last, #"{"user":"u3","last_seen":null}"#, "a buyer never seen counts from the delivery")
    }

    func testOnAClusterTheEventGoesThroughTheUserSlotsOutbox() throws {
        let f = try StoreFixture(cluster: true)
        let trail = store(f)
        f.redis.call(["ZADD", StoreKeys.owns("u1"), 1, "p1"])
        XCTAssertEqual(try f.value { trail.checkDormant(user: "u1", nowMs: 10_000_000, spellMs: self.spell, liveInstances: [], $0) },
                       .dormant)
        XCTAssertTrue(f.link.scriptKeys.contains { $0.name == "user_dormant" && $0.keys.last == StoreKeys.userOutbox("u1") })
        XCTAssertEqual(dormantEvents(f).count, 1, "relayed to the log")
    }

    /// The cluster rule (SlotRuleTests) for these scripts: one hash tag per call, no key built in Lua.
    func testEveryCallTouchesOneHashTag() throws {
        let f = try StoreFixture(cluster: true)
        let trail = store(f)
        f.redis.call(["HSET", StoreKeys.productInfo("pb"), "id", "pb", "merchant", "m1"])
        trail.noteOwner(product: "pa", user: "u1", owns: true, nowMs: 1)
        trail.noteOwner(product: "pb", user: "u1", owns: true, nowMs: 2, releasing: ["o-1"],
                        arm: DormancyArm(member: "dorm:u1", dueMs: 3))
        _ = try f.value { trail.alsoBought(product: "pa", limit: 5, $0) }
        trail.noteSeen(user: "u1", opened: true, instance: "n1.a") {}
        _ = try f.value { trail.checkDormant(user: "u1", nowMs: 10_000_000, spellMs: self.spell, liveInstances: ["n1.a"], $0) }
        trail.disarmDormancy("dorm:u1", dueMs: 1) {}
        _ = try f.value { trail.liveInstances(withinMs: 10_000, $0) }
        let ran = Set(f.link.scriptKeys.map(\.name))
        XCTAssertEqual(Set(BuyerTrailScripts.all.map(\.name)).subtracting(ran), [], "the scenario runs every script")
        for call in f.link.scriptKeys {
            let tags = Set(call.keys.map { key -> Substring in
                guard let open = key.firstIndex(of: "{"), let close = key[open...].firstIndex(of: "}") else { return Substring(key) }
                return key[open...close]
            })
            XCTAssertEqual(tags.count, 1, "\(call.name): \(call.keys)")
        }
        for script in BuyerTrailScripts.all {
            XCTAssertFalse(script.source.contains("'gw:") || script.source.contains("\"gw:"), "\(script.name) builds a key name")
        }
    }

    func testADisarmKeepsATimerArmedAgain() throws {
        let f = try StoreFixture()
        let trail = store(f)
        f.redis.call(["ZADD", CommerceKeys.timers, 5_000, "dorm:u1"])
        trail.disarmDormancy("dorm:u1", dueMs: 4_000) {}
        XCTAssertEqual(f.redis.call(["ZSCORE", CommerceKeys.timers, "dorm:u1"]).text, "5000", "armed again since read: kept")
        trail.disarmDormancy("dorm:u1", dueMs: 5_000) {}
        XCTAssertNil(f.redis.call(["ZSCORE", CommerceKeys.timers, "dorm:u1"]).text)
    }
}
