@testable import GatewayNode
import GatewayProtocol
import XCTest

/// The operators' view without Redis: ranking a node's channels, a node's stats as stored,
/// merging the nodes' stats, and the admin routes.
final class AdminViewTests: XCTestCase {
    func testTopCountsKeepsTheLargestMostFirstWithTiesByKey() {
        var top = TopCounts<String>(limit: 3, tieBreak: <)
        for (key, count) in [("a", 1), ("b", 5), ("c", 0), ("d", 5), ("e", 2), ("f", 9), ("g", 2), ("h", 1)] {
            top.offer(key, count)
        }
        XCTAssertEqual(top.items.map(\.key), ["f", "b", "d"])
        XCTAssertEqual(top.items.map(\.count), [9, 5, 5])

        var few = TopCounts<String>(limit: 5, tieBreak: <)
        for (key, count) in [("x", 2), ("y", 0), ("w", 2)] { few.offer(key, count) }
        XCTAssertEqual(few.items.map(\.key), ["w", "x"], "zero is not ranked; ties by key")
    }

    func testNodeStatsRoundTripThroughJSON() throws {
        let stats = NodeStats(name: "n1", instance: "n1.ab12", startedMs: 1_700_000_000_000, connections: 3, subscriptions: 7,
                              channels: 4, busiest: [ChannelCount(channel: "product:p1", subscribers: 3)],
                              groups: [ChannelCount(channel: "group:p1", subscribers: 1)],
                              series: [LivePoint(atMs: 1_700_000_002_000, pushesPerSecond: 12.5, p99Seconds: 0.004),
                                       LivePoint(atMs: 1_700_000_004_000, pushesPerSecond: 0, p99Seconds: 0)])
        let parsed = try JSON.parse(stats.json.serialized())
        XCTAssertEqual(NodeStats(json: parsed), stats)
        XCTAssertNil(NodeStats(json: .object([("name", .string("n1"))])), "another shape is not stats")
        var broken = stats.json.objectValue!
        broken.removeAll { $0.0 == "series" }
        broken.append(("series", .array([.array([.int(1), .string("fast"), .double(0)])])))
        XCTAssertNil(NodeStats(json: .object(broken)), "a malformed point")
    }

    private func stored(_ name: String, seen: Int64, connections: Int = 1, busiest: [(String, Int)] = [],
                        groups: [(String, Int)] = [], series: [LivePoint] = []) -> StoredStats {
        let stats = NodeStats(name: name, instance: name + ".x", startedMs: 1, connections: connections, subscriptions: 0, channels: 0,
                              busiest: busiest.map { ChannelCount(channel: $0.0, subscribers: $0.1) },
                              groups: groups.map { ChannelCount(channel: $0.0, subscribers: $0.1) }, series: series)
        return StoredStats(node: name, seenMs: seen, stats: stats.json.serialized())
    }

    func testTheViewMergesLiveNodesOnly() {
        let board = AdminBoard(nowMs: 100_000, nodes: [
            stored("n2", seen: 99_000, busiest: [("product:p1", 2), ("group:p1", 1)], groups: [("group:p1", 1)]),
            stored("n1", seen: 95_000, busiest: [("product:p1", 3), ("product:p2", 5)], groups: [("group:p3", 4)]),
            stored("old", seen: 80_000, busiest: [("product:p9", 100)], groups: [("group:p9", 100)]),
            StoredStats(node: "garbled", seenMs: 99_000, stats: "{not json"),
        ], mutedGroups: [])
        let view = ClusterView(board, liveWithinMs: 10_000)
        XCTAssertEqual(view.members.map(\.stats.name), ["n1", "n2", "old"], "by name")
        XCTAssertEqual(view.members.map(\.live), [true, true, false])
        XCTAssertEqual(view.unreadable, ["garbled"])
        XCTAssertEqual(view.busiest(limit: 10), [
            MergedCount(channel: "product:p1", subscribers: 5, nodes: 2),
            MergedCount(channel: "product:p2", subscribers: 5, nodes: 1),
            MergedCount(channel: "group:p1", subscribers: 1, nodes: 1),
        ], "a silent node's channels do not count; ties by name")
        XCTAssertEqual(view.busiest(limit: 1).count, 1)
        let mute = GroupMute(user: "u1", untilMs: 160_000)
        XCTAssertEqual(view.groups(muted: [("p5", [mute]), ("p1", [mute]), ("p7", [])], limit: 10), [
            ListedGroup(group: MergedCount(channel: "group:p5", subscribers: 0, nodes: 0), mutes: [mute]),
            ListedGroup(group: MergedCount(channel: "group:p1", subscribers: 1, nodes: 1), mutes: [mute]),
            ListedGroup(group: MergedCount(channel: "group:p3", subscribers: 4, nodes: 1), mutes: []),
        ], "muted groups first with their subscribers, then the busiest others; p7 has no live mute")
    }

    func testAMutedGroupIsListedHoweverManyBusierGroupsThereAre() {
        let busy = (1...60).map { ("group:b\($0)", 100 + $0) }
        let board = AdminBoard(nowMs: 100_000, nodes: [stored("n1", seen: 99_000, groups: busy + [("group:quiet", 1)])], mutedGroups: [])
        let view = ClusterView(board, liveWithinMs: 10_000)
        let mute = GroupMute(user: "u1", untilMs: 160_000)
        let listed = view.groups(muted: [("quiet", [mute])], limit: 50)
        XCTAssertEqual(listed.first, ListedGroup(group: MergedCount(channel: "group:quiet", subscribers: 1, nodes: 1), mutes: [mute]))
        XCTAssertEqual(listed.count, 51, "the muted group and the 50 busiest")
        XCTAssertEqual(listed.dropFirst().map(\.mutes), Array(repeating: [], count: 50))
        XCTAssertEqual(listed[1].group.channel, "group:b60")

        let many = (1...60).map { (product: "m\($0)", mutes: [mute]) }
        let crowded = view.groups(muted: many, limit: 50)
        XCTAssertEqual(crowded.filter { !$0.mutes.isEmpty }.count, 50, "at most `limit` muted groups")
        XCTAssertEqual(crowded.filter(\.mutes.isEmpty).count, 50, "and the busiest still shown")
    }

    /// The index is written after the mute and may lag or be crowded by long mutes elsewhere:
    /// the busiest groups' mutes are read anyway, and shown even when the muted part is full.
    func testTheBusiestGroupsShowTheirMutesWhateverTheIndexSays() {
        let board = AdminBoard(nowMs: 100_000, nodes: [stored("n1", seen: 99_000, groups: [("group:busy", 500), ("group:calm", 3)])],
                               mutedGroups: [])
        let view = ClusterView(board, liveWithinMs: 10_000)
        let indexed = (1...100).map { "long\($0)" }
        XCTAssertEqual(view.groupsToRead(indexed: indexed, limit: 50), indexed + ["busy", "calm"])
        XCTAssertEqual(view.groupsToRead(indexed: ["busy"], limit: 50), ["busy", "calm"], "each group read once")

        let ban = GroupMute(user: "spammer", untilMs: 999_000_000)
        let mute = GroupMute(user: "u1", untilMs: 160_000)
        let read = indexed.map { (product: $0, mutes: [ban]) } + [(product: "busy", mutes: [mute]), (product: "calm", mutes: [])]
        let listed = view.groups(muted: read, limit: 50)
        XCTAssertEqual(listed.first { $0.group.channel == "group:busy" }?.mutes, [mute])
    }

    func testTheReportAnswersTheRoutesParts() throws {
        let point = LivePoint(atMs: 99_000, pushesPerSecond: 40, p99Seconds: 0.0025)
        let board = AdminBoard(nowMs: 100_000, nodes: [stored("n1", seen: 99_500, connections: 2, series: [point]),
                                                       stored("n2", seen: 99_500)], mutedGroups: [])
        var report = AdminReport(view: ClusterView(board, liveWithinMs: 10_000))
        report.groups = [ListedGroup(group: MergedCount(channel: "group:p1", subscribers: 3, nodes: 1), mutes: [GroupMute(user: "u9", untilMs: 160_000)])]

        let nodes = report.json([.nodes])
        XCTAssertEqual(nodes["now_ms"]?.intValue, 100_000)
        XCTAssertNil(nodes["channels"])
        let n1 = try XCTUnwrap(nodes["nodes"]?.arrayValue?.first)
        XCTAssertEqual(n1["name"]?.stringValue, "n1")
        XCTAssertEqual(n1["connections"]?.intValue, 2)
        XCTAssertEqual(n1["pushes_per_s"], .double(40))
        XCTAssertEqual(n1["p99_ms"], .double(2.5))
        XCTAssertEqual(nodes["nodes"]?.arrayValue?.last?["pushes_per_s"], .null, "no live points yet: no figure")

        let all = report.json(AdminRoute.overview.parts)
        XCTAssertEqual(all.objectValue?.map(\.0), ["now_ms", "live_within_ms", "nodes", "channels", "groups", "refund_required", "webhooks", "series"])
        XCTAssertEqual(all["groups"], .array([.object([("group", .string("p1")), ("subscribers", .int(3)),
                                                       ("mutes", .array([.object([("user", .string("u9")), ("until_ms", .int(160_000))])]))])]))
        XCTAssertEqual(all["refund_required"], .array([]))
        XCTAssertEqual(all["webhooks"]?["backlog"]?.intValue, 0)
        XCTAssertEqual(all["webhooks"]?["dead"]?.intValue, 0)
        XCTAssertEqual(all["webhooks"]?["retrying"], .array([]))
        report.webhookTrouble = WebhookTrouble(dead: 3, retrying: [
            RetryingWebhook(key: "o-1", eventID: "1700-0", type: "order.paid", attempts: 4, dueMs: 160_000, inFlight: false)])
        XCTAssertEqual(report.json([.webhooks])["webhooks"], .object([
            ("backlog", .int(0)), ("oldest_seconds", .double(0)), ("dead", .int(3)),
            ("retrying", .array([.object([("key", .string("o-1")), ("event", .string("1700-0")), ("type", .string("order.paid")),
                                          ("attempts", .int(4)), ("next_attempt_ms", .int(160_000)), ("in_flight", .bool(false))])])),
        ]))
        let series = all["series"]?.arrayValue ?? []
        XCTAssertEqual(series.map { $0["points"]?.arrayValue?.count }, [1, 0], "an empty series is an empty list")
        XCTAssertEqual(series.first?["points"]?.arrayValue?.first?["p99_ms"], .double(2.5))
    }
}
