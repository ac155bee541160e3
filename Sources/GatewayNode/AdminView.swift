import GatewayProtocol

/// A channel's subscribers summed over the live nodes that reported it.
struct MergedCount: Equatable {
    var channel: String
    var subscribers: Int
    var nodes: Int
}

/// A group as the admin API lists it: its subscribers over the live nodes and its live mutes.
struct ListedGroup: Equatable {
    var group: MergedCount
    var mutes: [GroupMute]
}

/// The cluster as the admin API shows it: the nodes' stored stats, parsed and merged. Pure.
struct ClusterView {
    struct Member: Equatable {
        var stats: NodeStats
        /// When it last wrote (Redis clock).
        var seenMs: Int64
        /// Heard of within `AdminStats.liveWithinMs`: its numbers count in the merged lists.
        var live: Bool
    }

    /// The Redis clock when the stats were read.
    let nowMs: Int64
    /// By name.
    let members: [Member]
    /// Nodes whose stored stats did not parse (another version's format).
    let unreadable: [String]

    init(_ board: AdminBoard, liveWithinMs: Int64) {
        nowMs = board.nowMs
        var members: [Member] = []
        var unreadable: [String] = []
        for stored in board.nodes {
            guard let json = try? JSON.parse(stored.stats), let stats = NodeStats(json: json) else {
                unreadable.append(stored.node)
                continue
            }
            members.append(Member(stats: stats, seenMs: stored.seenMs, live: board.nowMs - stored.seenMs <= liveWithinMs))
        }
        self.members = members.sorted { $0.stats.name < $1.stats.name }
        self.unreadable = unreadable
    }

    private var live: [NodeStats] { members.filter(\.live).map(\.stats) }

    /// Channels by subscribers over the live nodes. Each node reports only its own busiest, so
    /// a channel just below every node's list is missed: this ranks the busiest, it is no census.
    func busiest(limit: Int) -> [MergedCount] {
        Array(Self.merge(live.map(\.busiest)).prefix(limit))
    }

    /// The groups whose mutes the groups part reads: those the muted-groups index names, then
    /// the busiest groups it does not (the index is written after the mute and may lag, but a
    /// listed group always shows its mutes).
    func groupsToRead(indexed: [String], limit: Int) -> [String] {
        var seen = Set(indexed)
        let busiest = Self.merge(live.map(\.groups)).prefix(limit).compactMap { Channel($0.channel)?.id }
        return indexed + busiest.filter { seen.insert($0).inserted }
    }

    /// Groups with live mutes first, in the order given (the muted-groups index: the latest
    /// mute end first), with their subscribers where a live node listed them; then the live
    /// nodes' busiest groups not listed yet, with whatever mutes were read for them. At most `limit` of each, so a busy shop's groups
    /// never hide a mute and many mutes never hide the busiest groups.
    func groups(muted: [(product: String, mutes: [GroupMute])], limit: Int) -> [ListedGroup] {
        let merged = Self.merge(live.map(\.groups))
        let listed = Dictionary(merged.map { ($0.channel, $0) }, uniquingKeysWith: { first, _ in first })
        var out: [ListedGroup] = []
        var shown = Set<String>()
        for (product, mutes) in muted where !mutes.isEmpty && out.count < limit {
            let channel = Channel.group(product).description
            guard shown.insert(channel).inserted else { continue }
            out.append(ListedGroup(group: listed[channel] ?? MergedCount(channel: channel, subscribers: 0, nodes: 0), mutes: mutes))
        }
        // A busy group shows the mutes read for it even when the muted part is full.
        let read = Dictionary(muted.map { (Channel.group($0.product).description, $0.mutes) }, uniquingKeysWith: { first, _ in first })
        out += merged.lazy.filter { !shown.contains($0.channel) }.prefix(limit).map { ListedGroup(group: $0, mutes: read[$0.channel] ?? []) }
        return out
    }

    /// Most subscribers first, then by name.
    private static func merge(_ lists: [[ChannelCount]]) -> [MergedCount] {
        var sums: [String: MergedCount] = [:]
        for list in lists {
            for count in list {
                sums[count.channel, default: MergedCount(channel: count.channel, subscribers: 0, nodes: 0)].subscribers += count.subscribers
                sums[count.channel]!.nodes += 1
            }
        }
        return sums.values.sorted { $0.subscribers != $1.subscribers ? $0.subscribers > $1.subscribers : $0.channel < $1.channel }
    }
}

/// One part of the operators' view; `/api/v1/admin/<part>` answers it alone.
enum AdminPart: String, CaseIterable {
    case nodes, channels, groups, refunds, webhooks, series
}

/// One admin answer: the parts a route asks for, as JSON. Pure.
struct AdminReport {
    var view: ClusterView
    /// The listed groups (`ClusterView.groups`).
    var groups: [ListedGroup] = []
    /// Issue 13 seams: payments in `refund_required` and the webhook event log's backlog.
    /// Neither exists before it, so they read empty and 0.
    var refundRequired: [JSON] = []
    var webhookBacklog = 0
    var webhookOldestSeconds = 0.0
    /// Read with the `webhooks` part only.
    var webhookTrouble = WebhookTrouble(dead: 0, retrying: [])

    func json(_ parts: [AdminPart]) -> JSON {
        .object([("now_ms", .int(view.nowMs)), ("live_within_ms", .int(AdminStats.liveWithinMs))] + parts.map(member))
    }

    private func member(_ part: AdminPart) -> (String, JSON) {
        switch part {
        case .nodes:
            return ("nodes", .array(view.members.map(Self.node)))
        case .channels:
            return ("channels", .array(view.busiest(limit: AdminStats.busiest).map(Self.count)))
        case .groups:
            return ("groups", .array(groups.map { row in
                .object([("group", .string(Channel(row.group.channel)?.id ?? row.group.channel)),
                         ("subscribers", .int(Int64(row.group.subscribers))),
                         ("mutes", .array(row.mutes.map { .object([("user", .string($0.user)), ("until_ms", .int($0.untilMs))]) }))])
            }))
        case .refunds:
            return ("refund_required", .array(refundRequired))
        case .webhooks:
            return ("webhooks", .object([("backlog", .int(Int64(webhookBacklog))), ("oldest_seconds", .double(webhookOldestSeconds)),
                                         ("dead", .int(Int64(webhookTrouble.dead))),
                                         ("retrying", .array(webhookTrouble.retrying.map(Self.retrying)))]))
        case .series:
            return ("series", .array(view.members.map { member in
                .object([("node", .string(member.stats.name)), ("live", .bool(member.live)),
                         ("points", .array(member.stats.series.map(Self.point)))])
            }))
        }
    }

    private static func node(_ member: ClusterView.Member) -> JSON {
        let s = member.stats, last = s.series.last
        return .object([
            ("name", .string(s.name)), ("instance", .string(s.instance)), ("live", .bool(member.live)),
            ("started_ms", .int(s.startedMs)), ("seen_ms", .int(member.seenMs)),
            ("connections", .int(Int64(s.connections))), ("subscriptions", .int(Int64(s.subscriptions))),
            ("channels", .int(Int64(s.channels))),
            ("pushes_per_s", last.map { .double($0.pushesPerSecond) } ?? .null),
            ("p99_ms", last.map { .double($0.p99Seconds * 1000) } ?? .null),
        ])
    }

    private static func retrying(_ r: RetryingWebhook) -> JSON {
        .object([("key", .string(r.key)), ("event", .string(r.eventID)), ("type", .string(r.type)),
                 ("attempts", .int(Int64(r.attempts))), ("next_attempt_ms", .int(r.dueMs)), ("in_flight", .bool(r.inFlight))])
    }

    private static func count(_ c: MergedCount) -> JSON {
        .object([("channel", .string(c.channel)), ("subscribers", .int(Int64(c.subscribers))), ("nodes", .int(Int64(c.nodes)))])
    }

    private static func point(_ p: LivePoint) -> JSON {
        .object([("at_ms", .int(p.atMs)), ("pushes_per_s", .double(p.pushesPerSecond)), ("p99_ms", .double(p.p99Seconds * 1000))])
    }
}
