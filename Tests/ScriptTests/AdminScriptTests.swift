@testable import GatewayNode
import GatewayProtocol
import GatewayRedis
import XCTest

/// The operators' view's scripts through RedisAdminStore (and moderate.lua's mutes index)
/// against a real server.
final class AdminScriptTests: XCTestCase {
    private var nowMs: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    func testStatsOfSilentNodesAreLeftOutThenDropped() throws {
        let f = try StoreFixture()
        let admin = RedisAdminStore(redis: f.link, log: { _ in })
        try f.value { admin.writeStats(node: "n1", stats: #"{"a":1}"#, keepMs: 60_000, $0) }
        try f.value { admin.writeStats(node: "n2", stats: #"{"b":2}"#, keepMs: 60_000, $0) }
        try f.value { admin.writeStats(node: "n1", stats: #"{"a":3}"#, keepMs: 60_000, $0) }
        var board = try f.value { admin.board(keepMs: 60_000, nowMs: self.nowMs, groups: 10, $0) }
        XCTAssertEqual(board.nodes.map(\.node).sorted(), ["n1", "n2"])
        XCTAssertEqual(board.nodes.first { $0.node == "n1" }?.stats, #"{"a":3}"#, "the latest write")
        XCTAssertLessThanOrEqual(board.nodes.map(\.seenMs).max() ?? .max, board.nowMs, "seen on the Redis clock")
        XCTAssertGreaterThan(board.nodes.map(\.seenMs).min() ?? 0, board.nowMs - 5_000)
        XCTAssertGreaterThan(f.redis.call(["PTTL", StoreKeys.adminStats]).int ?? -1, 0, "the keys expire once no node writes")

        // n2 went silent 2 minutes ago: left out of reads, and dropped by the next write.
        f.redis.call(["ZADD", StoreKeys.adminSeen, board.nowMs - 120_000, "n2"])
        board = try f.value { admin.board(keepMs: 60_000, nowMs: self.nowMs, groups: 10, $0) }
        XCTAssertEqual(board.nodes.map(\.node), ["n1"])
        XCTAssertEqual(f.redis.call(["HEXISTS", StoreKeys.adminStats, "n2"]).int, 1, "reads write nothing")
        try f.value { admin.writeStats(node: "n1", stats: #"{"a":4}"#, keepMs: 60_000, $0) }
        XCTAssertEqual(f.redis.call(["HEXISTS", StoreKeys.adminStats, "n2"]).int, 0)
        XCTAssertEqual(f.redis.call(["ZSCORE", StoreKeys.adminSeen, "n2"]), .null)
    }

    func testAMuteIsListedWithItsGroupUntilItEndsOrIsLifted() throws {
        let f = try StoreFixture()
        let admin = RedisAdminStore(redis: f.link, log: { _ in })
        let now = nowMs
        for (product, user, seconds) in [("p1", "u1", 600), ("p1", "u2", 60), ("p2", "u3", 300)] {
            XCTAssertTrue(try f.value { f.community.moderate(product: product, action: .mute, user: user, untilMs: now + Int64(seconds) * 1000, offset: 0, $0) })
        }
        var board = try f.value { admin.board(keepMs: 60_000, nowMs: now, groups: 10, $0) }
        XCTAssertEqual(board.mutedGroups, ["p1", "p2"], "the longest muted first")
        var mutes = try f.value { admin.mutes(groups: ["p1", "p2", "p3"], nowMs: now, limit: 10, $0) }
        XCTAssertEqual(mutes, [[GroupMute(user: "u1", untilMs: now + 600_000), GroupMute(user: "u2", untilMs: now + 60_000)],
                               [GroupMute(user: "u3", untilMs: now + 300_000)], []])
        XCTAssertGreaterThan(f.redis.call(["PTTL", StoreKeys.groupMutes("p1")]).int ?? -1, 590_000, "the index expires with its last mute")

        XCTAssertTrue(try f.value { f.community.moderate(product: "p1", action: .unmute, user: "u1", untilMs: 0, offset: 0, $0) })
        mutes = try f.value { admin.mutes(groups: ["p1"], nowMs: now, limit: 10, $0) }
        XCTAssertEqual(mutes, [[GroupMute(user: "u2", untilMs: now + 60_000)]])
        // Seen from 2 minutes on, u2's mute has ended, and so have p1's and p2's entries.
        mutes = try f.value { admin.mutes(groups: ["p1"], nowMs: now + 120_000, limit: 10, $0) }
        XCTAssertEqual(mutes, [[]])
        board = try f.value { admin.board(keepMs: 60_000, nowMs: now, groups: 10, $0) }
        XCTAssertEqual(board.mutedGroups, ["p2", "p1"], "p1's entry is lowered to u2's end when u1 is unmuted")
        board = try f.value { admin.board(keepMs: 60_000, nowMs: now + 120_000, groups: 10, $0) }
        XCTAssertEqual(board.mutedGroups, ["p2"])
        board = try f.value { admin.board(keepMs: 60_000, nowMs: now, groups: 1, $0) }
        XCTAssertEqual(board.mutedGroups, ["p2"], "at most the number asked for")
    }

    func testAShorterMuteLowersTheGroupsEntryAndTheLastUnmuteRemovesIt() throws {
        let f = try StoreFixture()
        let admin = RedisAdminStore(redis: f.link, log: { _ in })
        let now = nowMs
        _ = try f.value { f.community.moderate(product: "p1", action: .mute, user: "u1", untilMs: now + 600_000, offset: 0, $0) }
        _ = try f.value { f.community.moderate(product: "p1", action: .mute, user: "u1", untilMs: now + 30_000, offset: 0, $0) }
        let mutes = try f.value { admin.mutes(groups: ["p1"], nowMs: now, limit: 10, $0) }
        XCTAssertEqual(mutes, [[GroupMute(user: "u1", untilMs: now + 30_000)]], "the mute as it is now")
        XCTAssertEqual(indexed(f, "p1"), now + 30_000, "the group's entry is its mute as it is now")
        _ = try f.value { f.community.moderate(product: "p1", action: .unmute, user: "u1", untilMs: 0, offset: 0, $0) }
        XCTAssertEqual(indexed(f, "p1"), nil, "no mute left: no entry")
    }

    func testLiftedMutesDoNotCrowdOutALiveOne() throws {
        let f = try StoreFixture()
        let admin = RedisAdminStore(redis: f.link, log: { _ in })
        let now = nowMs
        let year: Int64 = 365 * 24 * 3600 * 1000
        for i in 1...51 {
            _ = try f.value { f.community.moderate(product: "pm\(i)", action: .mute, user: "u2", untilMs: now + year, offset: 0, $0) }
            _ = try f.value { f.community.moderate(product: "pm\(i)", action: .unmute, user: "u2", untilMs: 0, offset: 0, $0) }
        }
        _ = try f.value { f.community.moderate(product: "live", action: .mute, user: "u1", untilMs: now + 3_600_000, offset: 0, $0) }
        XCTAssertEqual(indexed(f, "live"), now + 3_600_000, "the live mute indexed")
        let board = try f.value { admin.board(keepMs: 60_000, nowMs: now, groups: 50, $0) }
        XCTAssertEqual(board.mutedGroups, ["live"], "lifted mutes leave no entry")
    }

    /// The group's score in the muted-groups index (the fixture's link answers each call at once,
    /// so the index write that follows a moderation has run).
    private func indexed(_ f: StoreFixture, _ group: String) -> Int64? {
        f.redis.call(["ZSCORE", StoreKeys.mutedGroups, group]).text.flatMap { Int64($0) }
    }

    func testEveryAdminScriptTouchesOneHashTag() throws {
        let f = try StoreFixture(cluster: true)
        let admin = RedisAdminStore(redis: f.link, log: { _ in })
        try f.value { admin.writeStats(node: "n1", stats: "{}", keepMs: 60_000, $0) }
        _ = try f.value { admin.board(keepMs: 60_000, nowMs: self.nowMs, groups: 10, $0) }
        _ = try f.value { f.community.moderate(product: "p1", action: .mute, user: "u", untilMs: self.nowMs + 1_000, offset: 0, $0) }
        _ = try f.value { admin.mutes(groups: ["p1", "p2"], nowMs: self.nowMs, limit: 10, $0) }
        let ran = Set(f.link.scriptKeys.map(\.name))
        XCTAssertEqual(Set(AdminScripts.all.map(\.name)).subtracting(ran), [], "the scenario runs every script")
        for call in f.link.scriptKeys {
            XCTAssertEqual(Set(call.keys.map { HashSlot.of($0) }).count, 1, "\(call.name): \(call.keys)")
        }
        for script in AdminScripts.all {
            XCTAssertFalse(script.source.contains("'gw:") || script.source.contains("\"gw:"), "\(script.name) builds a key name")
        }
    }

    /// Two nodes' index writes for one group may land in either order: the older one (an
    /// unmute's "no mutes") arriving last must not erase the newer mute.
    func testIndexWritesArrivingOutOfOrderKeepTheNewerOne() throws {
        let f = try StoreFixture()
        let admin = RedisAdminStore(redis: f.link, log: { _ in })
        let now = nowMs
        let index: ([RedisArgument]) throws -> Int = { args in
            try f.value { RedisCalls(redis: f.link, log: { _ in }).run(AdminScripts.mutedGroup, keys: [StoreKeys.mutedGroups, StoreKeys.mutedGroupVersions],
                                                                      args: args, as: Int.self, $0) }
        }
        XCTAssertEqual(try index(["g", now + 600_000, 2_000]), 1, "node A's mute (the newer moderation)")
        XCTAssertEqual(try index(["g", 0, 1_000]), 0, "node B's earlier unmute, arriving late, is dropped")
        let board = try f.value { admin.board(keepMs: 60_000, nowMs: now, groups: 10, $0) }
        XCTAssertEqual(board.mutedGroups, ["g"])
        XCTAssertGreaterThan(f.redis.call(["PTTL", StoreKeys.mutedGroupVersions]).int ?? -1, 0, "the versions expire with the index")
        XCTAssertEqual(try index(["g", 0, 3_000]), 1, "a newer unmute removes it")
        XCTAssertEqual(try f.value { admin.board(keepMs: 60_000, nowMs: now, groups: 10, $0) }.mutedGroups, [])
        XCTAssertEqual(f.redis.call(["EXISTS", StoreKeys.mutedGroupVersions]).int, 0, "nothing left once no group is muted")
    }
}
