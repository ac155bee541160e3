import CommunityCore
@testable import GatewayNode
import GatewayProtocol
import GatewayRedis
import XCTest

/// The outbox relay: relay.lua's dedupe, lib_emit's two modes (in send_alerts.lua), and
/// OutboxRelay end to end. A single server stands in for a cluster (`cluster: true`):
/// the outbox code paths are the same, every key just happens to be in reach.
final class RelayScriptTests: XCTestCase {
    /// relay.lua for one channel's entries (`id`, `data`), in order: its answer.
    private func relayEntries(_ f: StoreFixture, _ entries: [(id: String, data: String)], channel: String = "u",
                              outbox: String = "gw:{product:p}:outbox") -> [RedisReply] {
        let ch = Channel.user(channel)
        var args: [RedisArgument] = [outbox, "user:\(channel)", 600, "e1"]
        for entry in entries { args += [entry.id, "t", entry.data, 10] }
        return f.redis.run(ChannelScripts.relay, keys: [StoreKeys.meta(ch), StoreKeys.log(ch)], args: args).array ?? []
    }

    private func relayEntry(_ f: StoreFixture, _ id: String, outbox: String = "gw:{product:p}:outbox", data: String = "{}") -> Int64? {
        relayEntries(f, [(id, data)], outbox: outbox).first?.int
    }

    /// The `n` of each push in a channel's log, in order.
    private func numbers(_ f: StoreFixture, _ channel: String) -> [Int] {
        f.pushes(channel).compactMap { push in
            guard let r = push.range(of: "\"data\":{\"n\":") else { return nil }
            return Int(push[r.upperBound...].prefix { $0.isNumber })
        }
    }

    @discardableResult
    private func add(_ f: StoreFixture, _ outbox: String, _ channel: String, _ n: Int, size: String = "10") -> String {
        f.redis.call(["XADD", outbox, "*", "ch", channel, "type", "t", "data", "{\"n\":\(n)}", "size", size]).text ?? ""
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
        XCTAssertEqual(f.redis.call(["ZSCORE", StoreKeys.relays, StoreKeys.outbox("p")]), .null,
                       "the node's own relay emptied the outbox: its registration is taken back")
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

    // MARK: events for the event log (cluster): one ordered call to the {events} slot

    @discardableResult
    private func addEvent(_ f: StoreFixture, _ outbox: String, _ type: String, key: String = "o-1", at: String = "5") -> String {
        f.redis.call(["XADD", outbox, "*", "ev", type, "key", key, "at", at, "data", "{\"order\":\"\(key)\"}"]).text ?? ""
    }

    /// The log's entries as `type key` in log order.
    private func logged(_ f: StoreFixture) -> [String] {
        (f.redis.call(["XRANGE", StoreKeys.eventsLog, "-", "+"]).array ?? []).compactMap { entry in
            guard let fields = entry.array?[1].array?.compactMap(\.text), fields.count >= 4 else { return nil }
            return "\(fields[1]) \(fields[3])"
        }
    }

    func testEventEntriesAreAppendedToTheLogInOutboxOrderBesideThePushes() throws {
        let f = try StoreFixture(cluster: true)
        let outbox = StoreKeys.outbox("p")
        addEvent(f, outbox, "order.paid")
        add(f, outbox, "user:u", 1)
        addEvent(f, outbox, "order.delivered")
        addEvent(f, outbox, "order.canceled", key: "o-2")
        var emptied: Bool?
        f.relay.relay(outbox) { emptied = $0 }
        XCTAssertEqual(emptied, true)
        XCTAssertEqual(logged(f), ["order.paid o-1", "order.delivered o-1", "order.canceled o-2"])
        XCTAssertEqual(numbers(f, "user:u"), [1], "the pushes of the batch are relayed as before")
        XCTAssertEqual(f.redis.call(["XLEN", outbox]).int, 0)
        XCTAssertEqual(f.redis.call(["HGET", StoreKeys.eventsRelayed, outbox]).text != nil, true, "the mark is kept per outbox")
    }

    /// A node appended the first event and died before deleting the batch: relaying the
    /// outbox again appends each event exactly once, in order.
    func testARelayOfEventsAfterACrashDoesNotDouble() throws {
        let f = try StoreFixture(cluster: true)
        let outbox = StoreKeys.outbox("p")
        let first = addEvent(f, outbox, "order.paid")
        addEvent(f, outbox, "order.delivered")
        let answer = f.redis.run(ChannelScripts.eventsRelay, keys: [StoreKeys.eventsLog, StoreKeys.eventsRelayed],
                                 args: [outbox, 60_000, first, "order.paid", "o-1", "5", "{}"])
        XCTAssertEqual(answer.array?.first?.int, 1, "appended by a node that then died")
        f.relay.relay(outbox)
        f.relay.relay(outbox)
        XCTAssertEqual(logged(f), ["order.paid o-1", "order.delivered o-1"])
    }

    func testAnUndecodableEventEntryIsDeadLetteredAndTheRestAppended() throws {
        let f = try StoreFixture(cluster: true)
        let outbox = StoreKeys.outbox("p")
        f.redis.call(["XADD", outbox, "*", "ev", "order.paid", "key", "o-1", "data", "{}"]) // no `at`
        addEvent(f, outbox, "order.canceled", key: "o-2")
        var emptied: Bool?
        f.relay.relay(outbox) { emptied = $0 }
        XCTAssertEqual(emptied, true)
        XCTAssertEqual(logged(f), ["order.canceled o-2"])
        XCTAssertEqual(f.redis.call(["XLEN", StoreKeys.deadLetters(ofOutbox: outbox)]).int, 1)
    }

    /// Redis out of memory (or refusing writes) while relaying: the whole call fails, no
    /// entry is struck or dead-lettered however often it happens, and all of it is relayed
    /// once Redis takes writes again.
    func testAServerRefusingWritesFailsTheWholeCallAndStrikesNoEntry() throws {
        let f = try StoreFixture(cluster: true)
        let events = StoreKeys.outbox("p"), pushes = StoreKeys.outbox("q")
        addEvent(f, events, "order.paid")
        add(f, pushes, "user:u", 1)
        func relay(_ outbox: String) -> Bool? {
            var emptied: Bool?
            f.relay.relay(outbox) { emptied = $0 }
            return emptied
        }
        f.redis.call(["CONFIG", "SET", "maxmemory", "1"])
        for _ in 0..<(OutboxRelay.strikesBeforeDeadLetter + 1) {
            XCTAssertEqual(relay(events), false)
            XCTAssertEqual(relay(pushes), false)
        }
        XCTAssertEqual(f.relay.strikes, [:], "no strike: a burial would succeed the moment memory frees up")
        f.redis.call(["CONFIG", "SET", "maxmemory", "0"])
        for outbox in [events, pushes] {
            XCTAssertEqual(f.redis.call(["EXISTS", StoreKeys.deadLetters(ofOutbox: outbox)]).int, 0, "nothing buried")
            XCTAssertEqual(relay(outbox), true)
        }
        XCTAssertEqual(logged(f), ["order.paid o-1"])
        XCTAssertEqual(numbers(f, "user:u"), [1])
    }

    /// The trim (MINID ~, by age) keeps every event younger than the retention; a whole
    /// stream node of old ones (100 entries by default) goes.
    func testTheLogIsTrimmedOnlyPastItsRetention() throws {
        let f = try StoreFixture(cluster: true)
        let outbox = StoreKeys.outbox("p")
        for n in 1...250 {
            f.redis.call(["XADD", StoreKeys.eventsLog, "1000-\(n)", "type", "order.paid", "key", "old", "at", "1", "data", "{}"])
        }
        var args: [RedisArgument] = [outbox, 60_000]
        for n in 1...300 { args += ["1700000000000-\(n)", "order.paid", "o-\(n)", "5", "{}"] }
        _ = f.redis.run(ChannelScripts.eventsRelay, keys: [StoreKeys.eventsLog, StoreKeys.eventsRelayed], args: args)
        let kept = logged(f)
        XCTAssertEqual(kept.filter { $0 != "order.paid old" }.count, 300, "every recent event kept")
        XCTAssertLessThan(kept.filter { $0 == "order.paid old" }.count, 250, "old ones are trimmed")
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

    /// A channel's entries of a batch go in one call: when it fails (a NOSCRIPT after a
    /// SCRIPT FLUSH, a MOVED retry), nothing of the batch is deleted and the whole list is
    /// sent again, so a later entry can never be published while an earlier one was not.
    func testAFailedChannelCallIsSentAgainWholeAndNothingIsLost() throws {
        let f = try StoreFixture(cluster: true)
        let outbox = StoreKeys.outbox("p")
        add(f, outbox, "user:u", 1)
        add(f, outbox, "user:v", 2)
        add(f, outbox, "user:u", 3)
        f.link.answerInstead["relay"] = [.error("NOSCRIPT No matching script")]
        var emptied: Bool?
        f.relay.relay(outbox) { emptied = $0 }
        XCTAssertEqual(emptied, false)
        XCTAssertEqual(f.link.sent.filter { $0 == "relay" }.count, 2, "one call per channel")
        XCTAssertEqual(f.redis.call(["XLEN", outbox]).int, 3, "nothing deleted while a channel call failed")
        XCTAssertEqual(numbers(f, "user:u"), [], "user:u's call failed as a whole")
        XCTAssertEqual(numbers(f, "user:v"), [2])

        f.relay.relay(outbox) { emptied = $0 }
        XCTAssertEqual(emptied, true)
        XCTAssertEqual(numbers(f, "user:u"), [1, 3], "no push lost, in order")
        XCTAssertEqual(numbers(f, "user:v"), [2], "a true repeat is skipped")
        XCTAssertEqual(f.redis.call(["XLEN", outbox]).int, 0)
    }

    /// relay.lua stops at an entry that fails: later entries of the channel are not tried,
    /// earlier ones are published and marked.
    func testTheRelayScriptStopsAtTheFirstFailingEntry() throws {
        let f = try StoreFixture()
        let answer = relayEntries(f, [("1700000000001-0", "{\"n\":1}"), ("1700000000002-0", "{\"n\":2}")])
        XCTAssertEqual(answer.compactMap(\.int), [1, 2])
        f.redis.call(["SET", StoreKeys.meta(.user("w")), "not a hash"])
        let failed = relayEntries(f, [("1700000000001-0", "{}"), ("1700000000002-0", "{}")], channel: "w")
        XCTAssertEqual(failed.count, 1, "one error, nothing after it")
        XCTAssertTrue(failed.first?.text?.contains("WRONGTYPE") ?? false, "\(failed)")
    }

    /// A decision's apply may take up to `redis.timeout_s` per call (retries included): a
    /// registration must not come due (and be swept away) before the decision is over.
    func testARegistrationComesDueOnlyAfterThreeRedisTimeouts() throws {
        var settings = StoreFixture.settings
        settings.redisTimeoutSeconds = 10
        let f = try StoreFixture(cluster: true, settings: settings)
        var registered: Bool?
        f.relay.register(StoreKeys.outbox("p")) { registered = $0 }
        XCTAssertEqual(registered, true)
        let time = f.redis.call(["TIME"]).array?.compactMap { $0.text.flatMap { Int64($0) } } ?? []
        let nowMs = time[0] * 1000 + time[1] / 1000
        let due = Int64(f.redis.call(["ZSCORE", StoreKeys.relays, StoreKeys.outbox("p")]).text ?? "") ?? 0
        XCTAssertGreaterThanOrEqual(due - nowMs, 29_000)
    }

    /// The node's own relay after a decision failed (Redis lost): the outbox is registered
    /// again, so a sweep relays it even if the first registration was swept away meanwhile;
    /// when Redis is away for that too, the next tick registers it.
    func testAFailedOwnRelayRegistersTheOutboxAgain() throws {
        let f = try StoreFixture(cluster: true)
        let outbox = StoreKeys.outbox("p")
        f.relay.register(outbox) { _ in }
        f.redis.call(["ZREM", StoreKeys.relays, outbox])  // a sweep took it while the apply was slow
        add(f, outbox, "user:u", 1)
        f.link.answerInstead["XRANGE"] = [.disconnected]
        f.relay.relay(outbox)
        XCTAssertNotEqual(f.redis.call(["ZSCORE", StoreKeys.relays, outbox]), .null, "registered again")

        f.redis.call(["ZREM", StoreKeys.relays, outbox])
        f.link.answerInstead["XRANGE"] = [.disconnected]
        f.link.answerInstead["relay_register"] = [.disconnected]
        f.relay.relay(outbox)
        XCTAssertEqual(f.redis.call(["ZSCORE", StoreKeys.relays, outbox]), .null)
        f.relay.registerUnregistered()
        XCTAssertNotEqual(f.redis.call(["ZSCORE", StoreKeys.relays, outbox]), .null, "registered on the next tick")
        XCTAssertEqual(f.redis.call(["XLEN", outbox]).int, 1, "still waiting for its relay")
    }

    /// A registration another decision shares (its own still pending) is left to the sweep:
    /// the first decision may still be writing to the outbox.
    func testAnOwnRelayTakesBackOnlyARegistrationNoOtherDecisionShares() throws {
        let f = try StoreFixture(cluster: true)
        let other = OutboxRelay(redis: f.link, settings: StoreFixture.settings, log: { _ in }, schedule: nil)
        let outbox = StoreKeys.outbox("p")
        f.relay.register(outbox) { _ in }  // decision A, this node
        other.register(outbox) { _ in }    // decision B, another node, while A is pending
        add(f, outbox, "user:u", 1)
        other.relay(outbox)                // B applied and relayed: A may still be writing
        XCTAssertNotEqual(f.redis.call(["ZSCORE", StoreKeys.relays, outbox]), .null, "B's registration is shared")
        f.relay.relay(outbox)              // A relayed: B renewed the registration, so it is not A's to take
        XCTAssertNotEqual(f.redis.call(["ZSCORE", StoreKeys.relays, outbox]), .null, "left to the sweep")
        XCTAssertEqual(numbers(f, "user:u"), [1])

        f.redis.call(["DEL", StoreKeys.relays])
        f.relay.register(outbox) { _ in }
        f.relay.relay(outbox)
        XCTAssertEqual(f.redis.call(["EXISTS", StoreKeys.relays]).int, 0, "an exclusive registration is taken back")
    }

    /// A sweep whose page of due registrations could not be finished goes on after it next
    /// time, instead of reading the same page again and never reaching the rest.
    func testTheSweepPagesPastRegistrationsItCouldNotFinish() throws {
        let f = try StoreFixture(cluster: true)
        for n in 1...OutboxRelay.batch { f.redis.call(["ZADD", StoreKeys.relays, 1000 + n, StoreKeys.outbox("stuck\(n)")]) }
        let last = StoreKeys.outbox("last")
        f.redis.call(["ZADD", StoreKeys.relays, 5000, last])
        add(f, last, "user:u", 1)
        f.link.answerInstead["XRANGE"] = Array(repeating: .disconnected, count: OutboxRelay.batch)
        f.relay.sweep()
        f.relay.sweep()
        XCTAssertEqual(numbers(f, "user:u"), [1], "the registration behind the unfinished page was relayed")
        XCTAssertEqual(f.redis.call(["ZSCORE", StoreKeys.relays, last]), .null)
    }

    /// Under `replicas:N` a batch is deleted only after every channel master it published to
    /// confirmed the writes on replicas; unconfirmed, the entries stay for another relay.
    func testUnderReplicasTheRelayWaitsBeforeDeleting() throws {
        var settings = StoreFixture.settings
        settings.durability = .replicas(1)
        let f = try StoreFixture(cluster: true, settings: settings)
        let outbox = StoreKeys.outbox("p")
        add(f, outbox, "user:u", 1)
        add(f, outbox, "user:v", 2)
        f.link.replicasConfirm = false
        var emptied: Bool?
        f.relay.relay(outbox) { emptied = $0 }
        XCTAssertEqual(emptied, false)
        XCTAssertEqual(f.redis.call(["XLEN", outbox]).int, 2, "kept: not confirmed on a replica")
        XCTAssertFalse(f.link.sent.contains("XDEL"))
        XCTAssertTrue(f.logged.contains { $0.contains("replicas did not confirm") })

        f.link.replicasConfirm = true
        f.relay.relay(outbox) { emptied = $0 }
        XCTAssertEqual(emptied, true)
        let tail = f.link.sent.filter { ["relay", "WAIT", "XDEL"].contains($0) }.suffix(4)
        XCTAssertEqual(Array(tail), ["relay", "relay", "WAIT", "XDEL"])
        XCTAssertEqual(numbers(f, "user:u"), [1])
        XCTAssertEqual(numbers(f, "user:v"), [2])
    }

    /// An undecodable entry goes to `<outbox>:dead` at once (logged by id, never its data)
    /// and the entries around it are relayed.
    func testAnUndecodableEntryIsDeadLetteredAndTheRelayGoesOn() throws {
        let f = try StoreFixture(cluster: true)
        let outbox = StoreKeys.outbox("p")
        add(f, outbox, "user:u", 1)
        let bad = f.redis.call(["XADD", outbox, "*", "ch", "user:u", "type", "t", "data", "{\"secret\":\"s3cr3t\"}"]).text ?? ""
        add(f, outbox, "user:u", 3, size: "ten")
        add(f, outbox, "user:u", 4)
        var emptied: Bool?
        f.relay.relay(outbox) { emptied = $0 }
        XCTAssertEqual(emptied, true)
        XCTAssertEqual(numbers(f, "user:u"), [1, 4])
        XCTAssertEqual(f.redis.call(["XLEN", outbox]).int, 0)
        let dead = f.redis.call(["XRANGE", StoreKeys.deadLetters(ofOutbox: outbox), "-", "+"]).array ?? []
        let deadFields = dead.map { ($0.array?.last?.array ?? []).compactMap(\.text) }
        XCTAssertEqual(deadFields.count, 2)
        XCTAssertEqual(deadFields.first?.prefix(2), ["id", bad])
        XCTAssertTrue(deadFields.first?.contains("{\"secret\":\"s3cr3t\"}") ?? false, "the original fields are kept")
        XCTAssertTrue(f.logged.contains { $0.contains(bad) && $0.contains(":dead") })
        XCTAssertFalse(f.logged.contains { $0.contains("s3cr3t") }, "push data is never logged")
    }

    /// An entry whose relay keeps failing with a script error is dead-lettered after three
    /// strikes; the other channels' entries were relayed (once) all along and the outbox
    /// empties.
    func testAnEntryFailingWithAScriptErrorIsDeadLetteredAfterThreeStrikes() throws {
        let f = try StoreFixture(cluster: true)
        let outbox = StoreKeys.outbox("p")
        f.redis.call(["SET", StoreKeys.meta(.user("w")), "not a hash"])
        add(f, outbox, "user:u", 1)
        let bad = add(f, outbox, "user:w", 2)
        add(f, outbox, "user:u", 3)
        var emptied: Bool?
        for _ in 1...2 {
            f.relay.relay(outbox) { emptied = $0 }
            XCTAssertEqual(emptied, false)
            XCTAssertEqual(f.redis.call(["XLEN", outbox]).int, 3)
        }
        f.relay.relay(outbox) { emptied = $0 }
        XCTAssertEqual(emptied, true)
        XCTAssertEqual(f.redis.call(["XLEN", outbox]).int, 0)
        XCTAssertEqual(numbers(f, "user:u"), [1, 3], "relayed once, whatever the retries")
        let dead = f.redis.call(["XRANGE", StoreKeys.deadLetters(ofOutbox: outbox), "-", "+"]).array ?? []
        XCTAssertEqual(dead.count, 1)
        XCTAssertEqual(dead.first?.array?.last?.array?.compactMap(\.text).prefix(2), ["id", bad])
        XCTAssertTrue(f.logged.contains { $0.contains(bad) && $0.contains("channel user:w") && $0.contains("failed 3 time") })
    }

    /// Under `replicas:N` price-drop alerts are relayed only once a replica holds the
    /// outbox entries (so their ids are safe as dedupe marks); unconfirmed, they wait for
    /// the sweep.
    func testUnderReplicasAlertsAreRelayedOnlyOnceAReplicaHoldsThem() throws {
        var settings = StoreFixture.settings
        settings.durability = .replicas(1)
        let f = try StoreFixture(cluster: true, settings: settings)
        XCTAssertTrue(try f.value { f.community.createProduct(ProductRecord(id: "p", merchant: "m", title: "T", price: 100,
                                                                            currency: "CNY", createdAt: 1), $0) })
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        _ = try f.value { f.community.watch(product: "p", user: "a", below: nil, nowMs: now, ttlMs: 60_000, $0) }
        let page = try f.value { f.community.watchersBelow(product: "p", price: 80, start: 0, count: 10, $0) }
        let drop = PriceDrop(product: "p", title: "T", currency: "CNY", previous: 100, price: 80, cooldownMs: 0)
        f.link.replicasConfirm = false
        XCTAssertEqual(try f.value { f.community.sendAlerts(product: "p", drop.alerts(page.watches, now: now), $0) }, 1)
        XCTAssertEqual(f.link.sent.filter { ["send_alerts", "WAIT", "relay"].contains($0) }, ["send_alerts", "WAIT"])
        XCTAssertEqual(f.redis.call(["XLEN", StoreKeys.outbox("p")]).int, 1, "left for the sweep")
        XCTAssertEqual(f.pushes("user:a").count, 0)
    }
}
