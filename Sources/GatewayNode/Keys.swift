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
    /// Sorted set of `<node>|<user>` by expiry: who is online in a group: or product: channel.
    static func presence(_ channel: Channel) -> String { "gw:\(tag(channel)):presence" }
    /// Hash of a product: id, merchant, title, price, currency, created_at.
    static func product(_ id: String) -> String { "gw:{product:\(id)}:info" }

    /// Inverse of `pubsub`: `gw:{group:p1}` -> group:p1.
    static func channel(fromPubSub name: [UInt8]) -> Channel? {
        guard name.count > 5, name.starts(with: Array("gw:{".utf8)), name.last == UInt8(ascii: "}") else { return nil }
        return Channel(String(decoding: name[4..<(name.count - 1)], as: UTF8.self))
    }
}
