import Foundation
import GatewayProtocol

/// How the operators' view is kept: every node writes its stats every `writeEveryMs`; a node
/// heard of within `liveWithinMs` is live (its numbers count), one silent for `keepMs` is
/// dropped. Generous against a loaded host: a node is shown down only after five missed writes.
enum AdminStats {
    static let writeEveryMs = 2_000
    static let liveWithinMs: Int64 = 10_000
    static let keepMs: Int64 = 60_000
    /// Channels each node reports and the admin API lists.
    static let busiest = 20
    /// Group channels each node reports, and groups the admin API lists (as many again with mutes).
    static let groups = 50
    static let mutesPerGroup = 100
    /// Muted groups read from the index per admin read: more than are listed, in case a few
    /// entries are a write behind (see RedisCommunityStore.moderate); those without a live
    /// mute are left out.
    static let mutedGroupCandidates = 2 * groups
    /// Payments to refund by hand the admin API lists, the longest owed first.
    static let refunds = 100
    /// Webhook keys being retried the admin API lists, the oldest first.
    static let retryingWebhooks = 20
}

/// A channel and its number of subscribers.
struct ChannelCount: Equatable {
    var channel: String
    var subscribers: Int
}

/// What one node writes for the operators' view (JSON under `StoreKeys.adminStats`): counts,
/// channel names and its live series. Never a key, token or secret.
struct NodeStats: Equatable {
    var name: String
    /// The process (`Node.presenceNode`): a restarted node shows as a new instance.
    var instance: String
    var startedMs: Int64
    var connections: Int
    var subscriptions: Int
    var channels: Int
    /// group: and product: channels with the most local subscribers, most first.
    var busiest: [ChannelCount]
    /// group: channels with the most local subscribers, most first.
    var groups: [ChannelCount]
    /// `NodeMetrics.livePoints()`, oldest first.
    var series: [LivePoint]

    var json: JSON {
        func counts(_ list: [ChannelCount]) -> JSON { .array(list.map { .array([.string($0.channel), .int(Int64($0.subscribers))]) }) }
        return .object([
            ("name", .string(name)), ("instance", .string(instance)), ("started_ms", .int(startedMs)),
            ("connections", .int(Int64(connections))), ("subscriptions", .int(Int64(subscriptions))),
            ("channels", .int(Int64(channels))), ("busiest", counts(busiest)), ("groups", counts(groups)),
            ("series", .array(series.map { .array([.int($0.atMs), .double($0.pushesPerSecond), .double($0.p99Seconds)]) })),
        ])
    }

    /// nil when `json` is not stats of this shape (a field missing or of another type).
    init?(json: JSON) {
        func counts(_ value: JSON?) -> [ChannelCount]? {
            guard let list = value?.arrayValue else { return nil }
            var out: [ChannelCount] = []
            for pair in list {
                guard let p = pair.arrayValue, p.count == 2, let channel = p[0].stringValue, let n = p[1].intValue else { return nil }
                out.append(ChannelCount(channel: channel, subscribers: Int(n)))
            }
            return out
        }
        guard let name = json["name"]?.stringValue, let instance = json["instance"]?.stringValue,
              let started = json["started_ms"]?.intValue, let connections = json["connections"]?.intValue,
              let subscriptions = json["subscriptions"]?.intValue, let channels = json["channels"]?.intValue,
              let busiest = counts(json["busiest"]), let groups = counts(json["groups"]),
              let rawSeries = json["series"]?.arrayValue else { return nil }
        var series: [LivePoint] = []
        for point in rawSeries {
            guard let p = point.arrayValue, p.count == 3, let at = p[0].intValue, let pushes = p[1].numberValue,
                  let p99 = p[2].numberValue else { return nil }
            series.append(LivePoint(atMs: at, pushesPerSecond: pushes, p99Seconds: p99))
        }
        self.init(name: name, instance: instance, startedMs: started, connections: Int(connections),
                  subscriptions: Int(subscriptions), channels: Int(channels), busiest: busiest, groups: groups, series: series)
    }

    init(name: String, instance: String, startedMs: Int64, connections: Int, subscriptions: Int, channels: Int,
         busiest: [ChannelCount], groups: [ChannelCount], series: [LivePoint]) {
        self.name = name
        self.instance = instance
        self.startedMs = startedMs
        self.connections = connections
        self.subscriptions = subscriptions
        self.channels = channels
        self.busiest = busiest
        self.groups = groups
        self.series = series
    }
}

extension JSON {
    /// Any JSON number as a Double.
    var numberValue: Double? {
        switch self {
        case .int(let i): Double(i)
        case .double(let d): d
        default: nil
        }
    }
}

/// The `limit` largest counts offered, most first (ties: `before` on the keys), in one pass
/// without sorting everything: a node ranks all of its channels each time it writes its stats.
struct TopCounts<Key> {
    let limit: Int
    let before: (Key, Key) -> Bool
    private(set) var items: [(key: Key, count: Int)] = []

    init(limit: Int, tieBreak before: @escaping (Key, Key) -> Bool) {
        self.limit = limit
        self.before = before
    }

    private func ranksAbove(_ a: (key: Key, count: Int), _ b: (key: Key, count: Int)) -> Bool {
        a.count != b.count ? a.count > b.count : before(a.key, b.key)
    }

    mutating func offer(_ key: Key, _ count: Int) {
        guard limit > 0, count > 0 else { return }
        let item = (key: key, count: count)
        if items.count == limit, let last = items.last, !ranksAbove(item, last) { return }
        let at = items.firstIndex { !ranksAbove($0, item) } ?? items.count
        items.insert(item, at: at)
        if items.count > limit { items.removeLast() }
    }
}

extension Channel {
    /// Channel order for ties in rankings: by kind, then id.
    static func ranksBefore(_ a: Channel, _ b: Channel) -> Bool {
        a.kind.rawValue != b.kind.rawValue ? a.kind.rawValue < b.kind.rawValue : a.id < b.id
    }
}

extension Node {
    /// This node's stats now: counts from the hub, channels ranked by local subscribers.
    func adminStats() -> NodeStats {
        var busiest = TopCounts<Channel>(limit: AdminStats.busiest, tieBreak: Channel.ranksBefore)
        var groups = TopCounts<Channel>(limit: AdminStats.groups, tieBreak: Channel.ranksBefore)
        hub.forEachSharedSubscriberCount { channel, count in
            busiest.offer(channel, count)
            if channel.kind == .group { groups.offer(channel, count) }
        }
        func counts(_ top: TopCounts<Channel>) -> [ChannelCount] {
            top.items.map { ChannelCount(channel: $0.key.description, subscribers: $0.count) }
        }
        return NodeStats(name: options.nodeName, instance: presenceNode, startedMs: startedMs, connections: clients.count,
                         subscriptions: hub.subscriptionCount, channels: hub.channelCount, busiest: counts(busiest),
                         groups: counts(groups), series: metrics.livePoints())
    }

    /// Writes this node's stats every `AdminStats.writeEveryMs` while Redis is up (from `run`).
    func reportAdminStats() {
        loop.schedule(afterMs: AdminStats.writeEveryMs) { [weak self] in
            guard let self else { return }
            defer { self.reportAdminStats() }
            guard self.redis.isReady else { return }
            self.adminStore.writeStats(node: self.options.nodeName, stats: self.adminStats().json.serialized(),
                                       keepMs: AdminStats.keepMs) { _ in }
        }
    }
}
