import GatewayProtocol

/// Redis key and pub/sub names. Everything about one channel shares the hash tag
/// `{kind:id}`, so a channel's Lua scripts touch one slot under Redis Cluster and a
/// channel can be placed on a shard by hashing that tag.
enum Keys {
    static func tag(_ channel: Channel) -> String { "{\(channel.kind.rawValue):\(channel.id)}" }
    /// Hash: `offset`, `epoch`.
    static func meta(_ channel: Channel) -> String { "gw:\(tag(channel)):meta" }
    /// Stream of pushes; entry id `0-<offset>`, field `d` holds the push JSON.
    static func log(_ channel: Channel) -> String { "gw:\(tag(channel)):log" }
    /// Pub/sub channel carrying `<offset> <epoch> <push JSON>`.
    static func pubsub(_ channel: Channel) -> String { "gw:\(tag(channel))" }
    /// Presence of a group: or product: channel (see `CommunityScripts.presenceFunctions`).
    /// Hash user -> number of node instances the user is present through: `HLEN` is `online`.
    static func presenceOnline(_ channel: Channel) -> String { "gw:\(tag(channel)):online" }
    /// Sorted set of node instances present on the channel, by heartbeat expiry (ms).
    static func presenceNodes(_ channel: Channel) -> String { "gw:\(tag(channel)):onodes" }
    /// Set of the users present through one node instance.
    static func presenceNode(_ channel: Channel, _ node: String) -> String { "gw:\(tag(channel)):on:\(node)" }
    /// Hash of a product: id, merchant, title, price, currency, created_at.
    static func product(_ id: String) -> String { "gw:{product:\(id)}:info" }

    /// Inverse of `pubsub`: `gw:{group:p1}` -> group:p1.
    static func channel(fromPubSub name: [UInt8]) -> Channel? {
        guard name.count > 5, name.starts(with: Array("gw:{".utf8)), name.last == UInt8(ascii: "}") else { return nil }
        return Channel(String(decoding: name[4..<(name.count - 1)], as: UTF8.self))
    }
}
