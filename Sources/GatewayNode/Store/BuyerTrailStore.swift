import Foundation
import GatewayProtocol
import GatewayRedis
import OrderCore

/// What buyers did, kept for retention (contract 4.6): who owns what and the co-purchase
/// counts it feeds (also-bought), and when each user was last seen (dormant buyers). Kept
/// beside the decisions, best effort: orders live in their products' slots, owners and
/// their seen state in the users' slots, so each script touches one hash tag.
protocol BuyerTrailStore: AnyObject {
    /// Records that `user` owns `product` now (or no longer does); when that changed, moves
    /// the co-purchase counts of `product` and of the user's other products (pipelined).
    /// In the same call (the user's slot): frees the risk places of `releasing` (orders that
    /// left `pending_payment`) whatever ownership did, and on a first ownership sets `arm`.
    func noteOwner(product: String, user: String, owns: Bool, nowMs: Int64, releasing: [String], arm: DormancyArm?)
    /// Up to `limit` products most bought by the buyers of `product`, most buyers first.
    func alsoBought(product: String, limit: Int, _ done: @escaping (StoreResult<[AlsoBought]>) -> Void)
    /// A connection of `user` opened or closed on node `instance`; `arm` is called when no
    /// dormancy timer is known to exist for the user.
    func noteSeen(user: String, opened: Bool, instance: String, arm: @escaping () -> Void)
    /// Sets the dormancy timer `member` due at `dueMs` (`onlyIfAbsent`: keeps a timer already set).
    func armDormancy(_ member: String, dueMs: Int64, onlyIfAbsent: Bool)
    /// Removes the dormancy timer `member` unless it was armed again since it was read due at `dueMs`.
    func disarmDormancy(_ member: String, dueMs: Int64, _ done: @escaping () -> Void)
    /// `user`'s last connect or disconnect (ms), nil if never seen.
    func lastSeen(user: String, _ done: @escaping (StoreResult<Int64?>) -> Void)
    /// Decides a due dormancy timer (user_dormant.lua), writing the `user.dormant` event when the spell is new.
    func checkDormant(user: String, nowMs: Int64, spellMs: Int64, liveInstances: [String],
                      _ done: @escaping (StoreResult<DormantCheck>) -> Void)
    /// The node instances heard of lately (their stats written within `withinMs`).
    func liveInstances(withinMs: Int64, _ done: @escaping (StoreResult<[String]>) -> Void)
}

/// A dormancy timer to set unless one is (`ZADD NX`): its member and due time (ms).
struct DormancyArm: Equatable {
    var member: String
    var dueMs: Int64
}

/// One row of also-bought: a product and how many buyers of the asked product own it too.
struct AlsoBought: Equatable {
    var product: ProductRecord
    var buyers: Int64
}

/// user_dormant.lua's answer.
enum DormantCheck: Equatable, RedisReplyDecodable {
    /// Not dormant yet (or connected): check again at `due` (ms).
    case later(due: Int64)
    /// Dormant: the event was written. The timer goes.
    case dormant
    /// Not a buyer, or this spell was told already. The timer goes.
    case off

    init(redisReply: RedisReply) throws(RedisDecodingError) {
        var reader = try RedisArrayReader(redisReply)
        let verdict: String = try reader.next()
        switch verdict {
        case "later": self = .later(due: try reader.next())
        case "dormant": self = .dormant
        case "off": self = .off
        default: throw .unexpected(expected: "later, dormant or off", got: verdict)
        }
    }
}

final class RedisBuyerTrailStore: BuyerTrailStore {
    let calls: RedisCalls
    /// Cluster only: the user slot's outbox carries the dormant event to the log.
    let relay: EventStore?
    let eventRetentionMs: Int64
    /// Most other products one ownership change moves counts for (a user owning more moves the most recent).
    static let mostOtherProducts = 200
    /// The live instances read last, reused for a second: a sweep page of 200 due `dorm:`
    /// timers (a launch day's buyers falling due together) reads the node board once.
    private var instancesRead: (atNs: UInt64, withinMs: Int64, instances: [String])?
    static let instancesReuseNs: UInt64 = 1_000_000_000

    init(redis: any RedisLink, relay: EventStore?, eventRetentionMs: Int64, log: @escaping (String) -> Void) {
        calls = RedisCalls(redis: redis, log: log)
        self.relay = relay
        self.eventRetentionMs = eventRetentionMs
    }

    func noteOwner(product: String, user: String, owns: Bool, nowMs: Int64, releasing: [String] = [], arm: DormancyArm? = nil) {
        var keys = [StoreKeys.owns(user)]
        var args: [RedisArgument] = [product, owns ? "1" : "0", nowMs, Self.mostOtherProducts]
        // One server: the timer is set in the same step. A cluster keeps gw:timers in another slot.
        let armInline = owns && arm != nil && !calls.redis.isCluster
        if !releasing.isEmpty || armInline {
            keys.append(StoreKeys.riskPending(user))
            args.append(releasing.joined(separator: " "))
        }
        if armInline, let arm {
            keys.append(CommerceKeys.timers)
            args += [arm.member, arm.dueMs]
        }
        calls.run(BuyerTrailScripts.ownsUpdate, keys: keys, args: args, as: [String].self) { [calls, weak self] result in
            guard case .success(let reply) = result, reply.first == "1" else { return }
            if owns, !armInline, let arm { self?.armDormancy(arm.member, dueMs: arm.dueMs, onlyIfAbsent: true) }
            let others = Array(reply.dropFirst())
            guard !others.isEmpty else { return }
            let delta: Int64 = owns ? 1 : -1
            calls.run(BuyerTrailScripts.alsoCount, keys: [StoreKeys.alsoBought(product)],
                      args: [delta as RedisArgument] + others.map { $0 as RedisArgument }, as: Int64.self) { _ in }
            for other in others {
                calls.run(BuyerTrailScripts.alsoCount, keys: [StoreKeys.alsoBought(other)], args: [delta, product],
                          as: Int64.self) { _ in }
            }
        }
    }

    func alsoBought(product: String, limit: Int, _ done: @escaping (StoreResult<[AlsoBought]>) -> Void) {
        let key = StoreKeys.alsoBought(product)
        calls.send(["ZREVRANGEBYSCORE", key, "+inf", "1", "WITHSCORES", "LIMIT", "0", Int64(limit)], key: key,
                   as: [String].self) { [calls] listed in
            let flat: [String]
            switch listed {
            case .failure(let e): return done(.failure(e))
            case .success(let f): flat = f
            }
            var ranked: [(String, Int64)] = []
            var i = 0
            while i + 1 < flat.count {
                ranked.append((flat[i], Int64(Double(flat[i + 1]) ?? 0)))
                i += 2
            }
            let gather = Gather<ProductRecord?>(ranked.count) { infos in
                done(infos.map { products in
                    // A product deleted since keeps no row.
                    zip(ranked, products).compactMap { row, product in product.map { AlsoBought(product: $0, buyers: row.1) } }
                })
            }
            for (index, row) in ranked.enumerated() {
                let info = StoreKeys.productInfo(row.0)
                calls.send(["HGETALL", info], key: info, as: RedisHash.self) { read in
                    gather.report(index, read.map { ProductRecord($0) })
                }
            }
        }
    }

    func noteSeen(user: String, opened: Bool, instance: String, arm: @escaping () -> Void) {
        calls.run(BuyerTrailScripts.userSeen, keys: [StoreKeys.seen(user)], args: [opened ? "open" : "close", instance],
                  as: Int64.self) { result in
            if case .success(1) = result { arm() }
        }
    }

    func armDormancy(_ member: String, dueMs: Int64, onlyIfAbsent: Bool) {
        let key = CommerceKeys.timers
        calls.redis.send(onlyIfAbsent ? ["ZADD", key, "NX", dueMs, member] : ["ZADD", key, dueMs, member], key: key) { _ in }
    }

    func disarmDormancy(_ member: String, dueMs: Int64, _ done: @escaping () -> Void) {
        calls.run(CommerceScripts.timerDrop, keys: [CommerceKeys.timers], args: [member, dueMs], as: Int64.self) { _ in done() }
    }

    func lastSeen(user: String, _ done: @escaping (StoreResult<Int64?>) -> Void) {
        let key = StoreKeys.seen(user)
        calls.send(["HGET", key, "last_seen"], key: key, as: String?.self) { done($0.map { $0.flatMap { Int64($0) } }) }
    }

    func checkDormant(user: String, nowMs: Int64, spellMs: Int64, liveInstances: [String],
                      _ done: @escaping (StoreResult<DormantCheck>) -> Void) {
        let outbox = StoreKeys.userOutbox(user)
        let cluster = calls.redis.isCluster
        let run = { [calls, eventRetentionMs] in
            let template = DormantEvent.template(user: user)
            calls.run(BuyerTrailScripts.userDormant,
                      keys: [StoreKeys.seen(user), StoreKeys.owns(user), cluster ? outbox : StoreKeys.eventsLog],
                      args: [user, nowMs, spellMs, cluster ? "outbox" : "inline", eventRetentionMs, template] as [RedisArgument]
                        + liveInstances.map { $0 as RedisArgument },
                      as: DormantCheck.self, done)
        }
        guard cluster, let relay else { return run() }
        // The outbox is registered before anything is written to it, so another node relays it should this one die.
        relay.register(outbox) { registered in
            guard registered else { return done(.failure(.redisUnavailable)) }
            run()
            relay.relay(outbox)
        }
    }

    func liveInstances(withinMs: Int64, _ done: @escaping (StoreResult<[String]>) -> Void) {
        let nowNs = DispatchTime.now().uptimeNanoseconds
        if let read = instancesRead, read.withinMs == withinMs, nowNs - read.atNs < Self.instancesReuseNs {
            return done(.success(read.instances))
        }
        calls.run(AdminScripts.board, keys: [StoreKeys.adminStats, StoreKeys.adminSeen, StoreKeys.mutedGroups],
                  args: [withinMs, 0, 0], as: AdminBoard.self) { read in
            let listed = read.map { board in
                board.nodes.compactMap { stored in
                    (try? JSON.parse(Array(stored.stats.utf8))).flatMap { $0["instance"]?.stringValue }
                }
            }
            if case .success(let instances) = listed { self.instancesRead = (nowNs, withinMs, instances) }
            done(listed)
        }
    }
}

/// The `user.dormant` event's data (contract 4.6), owned here; user_dormant.lua fills `$LAST_SEEN`.
enum DormantEvent {
    static func template(user: String) -> String {
        JSON.object([("user", .string(user)), ("last_seen", .string("$LAST_SEEN"))]).serialized()
            .replacingOccurrences(of: "\"$LAST_SEEN\"", with: "$LAST_SEEN")
    }
}

/// Lua of the buyers' trail (Lua/owns_update, also_count, user_seen, user_dormant; the timer goes with timer_drop).
enum BuyerTrailScripts {
    static let ownsUpdate = LuaScript.embedded("owns_update", PackageResources.owns_update_lua)
    static let alsoCount = LuaScript.embedded("also_count", PackageResources.also_count_lua)
    static let userSeen = LuaScript.embedded("user_seen", PackageResources.user_seen_lua,
                                             libraries: [PackageResources.lib_publish_lua])
    static let userDormant = LuaScript.embedded("user_dormant", PackageResources.user_dormant_lua,
                                                libraries: [PackageResources.lib_publish_lua, PackageResources.lib_event_lua,
                                                            PackageResources.lib_emit_lua])
    static let all: [LuaScript] = [ownsUpdate, alsoCount, userSeen, userDormant]
}
