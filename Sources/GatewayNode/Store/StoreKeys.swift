import GatewayProtocol

/// Every non-commerce Redis key and shard channel name (commerce keys: `CommerceKeys`).
/// Scripts never build a key: they get every key in KEYS from here. Keys that one script
/// touches share a hash tag, so under Redis Cluster each script runs in one slot:
/// - a channel `{kind:id}`: its meta, log, shard channel, presence, group moderation;
/// - a product `{product:P}`: its info and watch keys and outbox (the same tag as its
///   `product:` channel, so a price change publishes inline);
/// - a user `{user:U}`: the products the user watches;
/// - global keys in slots of their own.
/// Layout and slot rules: Store/README.md.
enum StoreKeys {
    static func tag(_ channel: Channel) -> String { "{\(channel.kind.rawValue):\(channel.id)}" }

    // MARK: Channels

    /// Hash: `offset`, `epoch`, and `relayed:<outbox key>` (last outbox entry relayed here).
    static func meta(_ channel: Channel) -> String { "gw:\(tag(channel)):meta" }
    /// Stream of pushes; entry id `0-<offset>`, field `d` holds the push JSON.
    static func log(_ channel: Channel) -> String { "gw:\(tag(channel)):log" }
    /// Shard channel (SPUBLISH/SSUBSCRIBE) carrying `<offset> <epoch> <push JSON>`; the
    /// meta key without `:meta` (lib_publish.lua relies on that).
    static func shardChannel(_ channel: Channel) -> String { "gw:\(tag(channel))" }

    /// Inverse of `shardChannel`: `gw:{group:p1}` -> group:p1.
    static func channel(fromShardChannel name: [UInt8]) -> Channel? {
        guard name.count > 5, name.starts(with: Array("gw:{".utf8)), name.last == UInt8(ascii: "}") else { return nil }
        return Channel(String(decoding: name[4..<(name.count - 1)], as: UTF8.self))
    }

    // MARK: Presence (group: and product: channels; lib_presence.lua)

    /// Hash user -> number of node instances the user is present through.
    static func presenceOnline(_ channel: Channel) -> String { "gw:\(tag(channel)):online" }
    /// Sorted set of node instances present on the channel, by heartbeat expiry (ms).
    static func presenceNodes(_ channel: Channel) -> String { "gw:\(tag(channel)):onodes" }
    /// Set of the users present through one node instance.
    static func presenceNode(_ channel: Channel, _ node: String) -> String { "gw:\(tag(channel)):on:\(node)" }

    // MARK: Group moderation (the group channel's slot)

    /// String: until when (ms) `user` is muted; expires with the mute.
    static func groupMute(_ product: String, _ user: String) -> String { "gw:\(tag(.group(product))):mute:\(user)" }
    /// Hash user -> until ms: mutes written before they were keys of their own (read, then dropped).
    static func groupLegacyMuted(_ product: String) -> String { "gw:\(tag(.group(product))):muted" }
    /// Counter of `user`'s messages in the current rate window.
    static func groupRate(_ product: String, _ user: String) -> String { "gw:\(tag(.group(product))):rate:\(user)" }
    /// Sorted set user -> until ms of the group's live mutes, for the operators' view (the
    /// mute keys above stay the truth; this lists them without a SCAN).
    static func groupMutes(_ product: String) -> String { "gw:\(tag(.group(product))):mutes" }

    // MARK: Products (the product's slot; stock, keys, burned, members: CommerceKeys)

    /// Hash: id, merchant, title, price, currency, created_at.
    static func productInfo(_ id: String) -> String { "gw:\(tag(.product(id))):info" }
    /// Sorted set user -> alert threshold.
    static func watchers(_ id: String) -> String { "gw:\(tag(.product(id))):watchers" }
    /// Hash user -> watch record (CommunityCore `Watch.record`).
    static func watchRecords(_ id: String) -> String { "gw:\(tag(.product(id))):watch" }
    /// Sorted set user -> watch expiry (ms).
    static func watchExpiry(_ id: String) -> String { "gw:\(tag(.product(id))):watch:exp" }
    /// Sorted set user -> place: the product's restock line, in watch order (restock holds, 4.6).
    static func restockLine(_ id: String) -> String { "gw:\(tag(.product(id))):restock" }
    /// Hash: one price drop's alert job (`spec`, `price`, `next` page start, `end`, `sent`, `at`);
    /// its pages are claimed by any node (alert_claim.lua).
    static func alertJob(_ id: String, _ job: String) -> String { "gw:\(tag(.product(id))):alerts:\(job)" }
    /// Sorted set page start -> lease end (ms): the job's pages claimed and not yet sent.
    static func alertClaims(_ id: String, _ job: String) -> String { "gw:\(tag(.product(id))):alerts:\(job):claims" }
    /// Stream of pushes to other slots waiting to be relayed (cluster only): `ch type data size`,
    /// and of events for the event log: `ev <type> key <ordering key> at <ms> data <json>`.
    static func outbox(_ id: String) -> String { "gw:\(tag(.product(id))):outbox" }
    /// Stream of the outbox entries that could not be relayed (`<outbox>:dead`, the same
    /// slot): the original fields plus `id` and `reason`, for an operator to look at.
    static func deadLetters(ofOutbox outbox: String) -> String { "\(outbox):dead" }

    // MARK: Users

    /// Set of the products `user` watches.
    static func userWatches(_ user: String) -> String { "gw:\(tag(.user(user))):watches" }
    /// Sorted set order id -> when its place lapses (ms): `user`'s unpaid orders (`risk.max_pending_orders`).
    static func riskPending(_ user: String) -> String { "gw:\(tag(.user(user))):risk:pending" }
    /// Sorted set order id -> created (ms): `user`'s gift and friend-pay orders of the last hour
    /// (`risk.max_requests_per_hour`).
    static func riskRequests(_ user: String) -> String { "gw:\(tag(.user(user))):risk:requests" }
    /// String: until when (ms) `user` is banned (PROTOCOL 4.3); expires with the ban.
    static func userBan(_ user: String) -> String { "gw:\(tag(.user(user))):ban" }
    /// Sorted set product -> first delivery (ms): the products `user` owns now (also-bought).
    static func owns(_ user: String) -> String { "gw:\(tag(.user(user))):owns" }
    /// Hash `last_seen`, `conn:<node instance>`, `dormant_for`, `armed` (dormant buyers; user_seen.lua).
    static func seen(_ user: String) -> String { "gw:\(tag(.user(user))):seen" }
    /// The user slot's outbox (cluster only): the `user.dormant` event on its way to the log.
    static func userOutbox(_ user: String) -> String { "gw:\(tag(.user(user))):outbox" }

    // MARK: Also-bought (the product's slot)

    /// Sorted set other product -> how many distinct owners of `product` own it too.
    static func alsoBought(_ product: String) -> String { "gw:\(tag(.product(product))):also" }

    // MARK: Global keys (each in a slot of its own)

    /// Sorted set outbox key -> due ms: outboxes a node may not have relayed yet (cluster only).
    static let relays = "gw:relays"
    /// Shard channel every node subscribes to: `ControlSignal`s between nodes (disconnect, ban).
    /// Not a `gw:{kind:id}` name, so `channel(fromShardChannel:)` never takes it for a channel.
    static let control = "gw:{control}"
    /// Sorted set `<job>:<product>` -> job expiry (ms): the price drops' alert jobs still open,
    /// which every node sweeps (a node that missed the job's signal, or restarted, walks it too).
    static let alertJobs = "gw:alerts:open"
    /// The demo bot's lease (dev mode).
    static let botLease = "gw:demo:bot-lease"

    // MARK: The operators' view (one slot: `{admin}`)

    /// Hash node name -> its latest stats (JSON, `NodeStats`).
    static let adminStats = "gw:{admin}:stats"
    /// Sorted set node name -> when it last wrote its stats (ms, Redis clock).
    static let adminSeen = "gw:{admin}:seen"
    /// Sorted set group (product id) -> end of its latest mute (ms): groups that may have live mutes.
    static let mutedGroups = "gw:{admin}:muted-groups"
    /// Hash group -> version (moderate.lua's) of the last write to `mutedGroups`, so writes
    /// arriving out of order never undo a newer one; it expires with `mutedGroups`.
    static let mutedGroupVersions = "gw:{admin}:muted-versions"
    /// Sorted set payment id -> when it became `refund_required` (ms): the payments to
    /// refund by hand, for the operators' list. Written after each decision (the payments
    /// live in their products' slots); the list re-reads each payment, so an entry a write
    /// behind is dropped there.
    static let refundsOwed = "gw:{admin}:refund-required"

    // MARK: The event log (one slot: `{events}`; contract 4.4)

    /// Stream of events, `type key at data`; the entry id is the event's id. Written in the
    /// decision's step on one server, relayed from the slots' outboxes on a cluster.
    static let eventsLog = "gw:{events}:log"
    /// Hash outbox key -> the last outbox entry id appended to the log (cluster relay dedupe).
    static let eventsRelayed = "gw:{events}:relayed"

    // Webhook delivery (same slot; webhook_*.lua; Store/README.md "Webhooks")

    /// String: the last log id handed to the delivery queues.
    static let webhookDispatched = "gw:{events}:dispatched"
    /// Hash ordering key -> its undelivered event ids, space-separated, in log order.
    static let webhookQueues = "gw:{events}:queues"
    /// Sorted set ordering key -> next attempt (ms, Redis clock); a leased key's lease end.
    static let webhookDue = "gw:{events}:due"
    /// Hash ordering key -> `<token> <event id>` of the delivery in flight.
    static let webhookLeases = "gw:{events}:leases"
    /// Hash event id -> attempts so far.
    static let webhookAttempts = "gw:{events}:attempts"
    /// Sorted set ordering key -> time (ms) of its oldest undelivered event.
    static let webhookHeads = "gw:{events}:heads"
    /// Hash `backlog` (queued, undelivered), `delivered`, `given_up`, `claims`.
    static let webhookStats = "gw:{events}:stats"
    /// Stream of given-up events `id key type reason`, capped.
    static let webhookDead = "gw:{events}:dead"
}
