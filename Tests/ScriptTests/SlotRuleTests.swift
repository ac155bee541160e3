@testable import GatewayNode
import GatewayProtocol
import XCTest

/// The cluster rule for scripts: every key a script gets shares one hash tag (so one slot),
/// and no script builds a key name of its own.
final class SlotRuleTests: XCTestCase {
    /// The hash tag Redis Cluster hashes: the first `{...}` with something inside, else the key.
    private func tag(_ key: String) -> String {
        guard let open = key.firstIndex(of: "{"), let close = key[open...].firstIndex(of: "}"),
              key.index(after: open) < close else { return key }
        return String(key[key.index(after: open)..<close])
    }

    func testEveryScriptCallOnAClusterTouchesOneHashTag() throws {
        let f = try StoreFixture(cluster: true)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        _ = try f.value { f.community.createProduct(ProductRecord(id: "p", merchant: "m", title: "T", price: 100, currency: "CNY", createdAt: 1), $0) }
        _ = try f.value { f.channels.publish(.product("p"), type: "x", data: "{}", merchant: "m", $0) }
        _ = try f.value { f.channels.publish(.group("p"), type: "x", data: "{}", merchant: "m", $0) }
        _ = try f.value { f.channels.publish(.user("u"), type: "x", data: "{}", merchant: nil, $0) }
        _ = try f.value { f.channels.read(.user("u"), since: StreamPosition(offset: 0, epoch: "e1"), purpose: .gapFill, $0) }
        _ = try f.value { f.channels.history(.user("u"), since: nil, limit: 10, $0) }
        _ = try f.value { f.community.groupPublish(product: "p", user: "u", limited: true, rate: 5, windowMs: 1_000, data: "{}", $0) }
        _ = try f.value { f.community.moderate(product: "p", action: .mute, user: "u", untilMs: now + 1_000, offset: 0, $0) }
        _ = try f.value { f.community.moderate(product: "p", action: .delete, user: "", untilMs: 0, offset: 1, $0) }
        _ = try f.value { f.community.presenceJoin(.group("p"), node: "dead.x", ttlMs: 1_000, user: "g", $0) }
        _ = try f.value { f.community.presenceJoin(.group("p"), node: "n.x", ttlMs: 30_000, user: "u", $0) }
        f.redis.call(["ZADD", StoreKeys.presenceNodes(.group("p")), 1, "dead.x"])
        _ = try f.value { f.community.presence(.group("p"), $0) }
        _ = try f.value { f.community.presenceRenew(.group("p"), node: "n.x", ttlMs: 30_000, $0) }
        f.community.presenceSync(.group("p"), node: "n.x", ttlMs: 30_000, users: ["u"])
        f.community.presenceLeave(.group("p"), node: "n.x", user: "u")
        for user in ["a", "b"] { _ = try f.value { f.community.watch(product: "p", user: user, below: nil, nowMs: now, ttlMs: 60_000, $0) } }
        _ = try f.value { f.community.watches(user: "a", nowMs: now, $0) }
        _ = try f.value { f.community.updateProduct("p", price: 80, title: nil, merchant: "m", $0) }
        let page = try f.value { f.community.watchersBelow(product: "p", price: 80, start: 0, count: 10, $0) }
        let drop = PriceDrop(product: "p", title: "T", currency: "CNY", previous: 100, price: 80, cooldownMs: 0)
        _ = try f.value { f.community.sendAlerts(product: "p", drop.alerts(page.watches, now: now), $0) }
        try f.value { f.community.openAlerts(product: "p", job: "j", spec: drop.spec, price: 80, ttlMs: 60_000, $0) }
        if case .page(let claimed) = try f.value({ f.community.claimAlertPage(product: "p", job: "j", count: 10, leaseMs: 1_000, $0) }) {
            f.community.alertPageDone(product: "p", job: "j", page: claimed, sent: 0)
        }
        try f.value { f.community.unwatch(product: "p", user: "a", $0) }
        _ = try f.value { f.community.product("p", $0) }
        _ = try f.value { f.community.renewBotLease(node: "n", ttlMs: 1_000, $0) }
        f.redis.call(["XADD", StoreKeys.outbox("p"), "*", "ch", "no channel"])  // dead-lettered
        f.redis.call(["XADD", StoreKeys.outbox("p"), "*", "ev", "order.paid", "key", "o-1", "at", "1", "data", "{}"])  // to the event log
        f.relay.relay(StoreKeys.outbox("p"))
        f.relay.sweep()
        _ = try f.value { f.community.watch(product: "p", user: "c", below: nil, restock: true, nowMs: now, ttlMs: 60_000, $0) }
        let line = try f.value { f.community.restockLine(product: "p", after: nil, count: 10, nowMs: now, $0) }
        _ = try f.value { f.community.restockNotify(product: "p", users: line.users, data: "{}", onlyInLine: true, $0) }

        let ran = Set(f.link.scriptKeys.map(\.name))
        let expected = Set((ChannelScripts.all + CommunityScripts.all).map(\.name))
        XCTAssertEqual(expected.subtracting(ran), [], "the scenario runs every script")
        for call in f.link.scriptKeys {
            XCTAssertFalse(call.keys.isEmpty, "\(call.name) gets its keys in KEYS")
            XCTAssertEqual(Set(call.keys.map(tag)).count, 1, "\(call.name): \(call.keys)")
        }
    }

    func testNoScriptBuildsAKeyName() {
        for script in ChannelScripts.all + CommunityScripts.all + CommerceScripts.all {
            XCTAssertFalse(script.source.contains("'gw:"), "\(script.name) builds a key name")
            XCTAssertFalse(script.source.contains("\"gw:"), "\(script.name) builds a key name")
        }
    }
}
