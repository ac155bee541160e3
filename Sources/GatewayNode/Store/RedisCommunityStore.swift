import CommunityCore
import GatewayProtocol
import GatewayRedis
import OrderCore

/// Community on Redis: every call and key of groups, presence, products and watches.
/// Calls that touch two hash slots (a watch: the product's keys and the user's list;
/// presence: the group's keys and the product's buyers) are separate calls, pipelined.
final class RedisCommunityStore: CommunityStore {
    let calls: RedisCalls
    let settings: StoreSettings
    let relay: any EventStore
    /// Users sampled by `presence`, and users of dead nodes reaped per presence read / renewal.
    static let presenceSample = 100
    static let reapPerRead = 1_000
    static let reapPerRenewal = 10_000

    init(redis: any RedisLink, settings: StoreSettings, relay: any EventStore, log: @escaping (String) -> Void) {
        calls = RedisCalls(redis: redis, log: log)
        self.settings = settings
        self.relay = relay
    }

    private var redis: any RedisLink { calls.redis }

    func isBuyer(product: String, user: String, _ done: @escaping (StoreResult<Bool>) -> Void) {
        let key = CommerceKeys.members(product)
        calls.send(["HGET", key, user], key: key, as: Int64?.self) { done($0.map { ($0 ?? 0) > 0 }) }
    }

    func productExists(_ id: String, _ done: @escaping (StoreResult<Bool>) -> Void) {
        let key = StoreKeys.productInfo(id)
        calls.send(["EXISTS", key], key: key, as: Bool.self, done)
    }

    // MARK: Groups

    func groupPublish(product: String, user: String, limited: Bool, rate: Int, windowMs: Int, data: String,
                      _ done: @escaping (StoreResult<GroupPublishOutcome>) -> Void) {
        let channel = Channel.group(product)
        let keys = [StoreKeys.meta(channel), StoreKeys.log(channel), StoreKeys.groupMute(product, user),
                    StoreKeys.groupRate(product, user), StoreKeys.groupLegacyMuted(product)]
        let args: [RedisArgument] = [channel.description, user, limited ? "1" : "0", rate, windowMs, data,
                                     settings.historyGroupSize, settings.historyTTLSeconds, settings.newEpoch()]
        calls.run(CommunityScripts.groupPublish, keys: keys, args: args, done)
    }

    func moderate(product: String, action: ModerationAction, user: String, untilMs: Int64, offset: UInt64,
                  _ done: @escaping (StoreResult<Bool>) -> Void) {
        let channel = Channel.group(product)
        let keys = [StoreKeys.meta(channel), StoreKeys.log(channel), StoreKeys.groupMute(product, user),
                    StoreKeys.groupLegacyMuted(product), StoreKeys.groupMutes(product)]
        let args: [RedisArgument] = [channel.description, action.rawValue, user, untilMs, offset,
                                     settings.historyGroupSize, settings.historyTTLSeconds, settings.newEpoch()]
        calls.run(CommunityScripts.moderate, keys: keys, args: args, as: [Int64].self) { [calls] result in
            // moderate.lua answers {applied, end of the group's last live mute (0: none), version}
            // to a mute or unmute. The index of muted groups lives in another slot: set to
            // exactly that afterwards, best effort, the version keeping racing writes in order.
            if action != .delete, case .success(let reply) = result, reply.count == 3 {
                calls.run(AdminScripts.mutedGroup, keys: [StoreKeys.mutedGroups, StoreKeys.mutedGroupVersions],
                          args: [product, reply[1], reply[2]], as: RedisReply.self) { written in
                    if case .failure(let error) = written { calls.log("muted-groups index of \(product) not written: \(error)") }
                }
            }
            done(result.map { $0.first == 1 })
        }
    }

    // MARK: Presence

    private func presenceKeys(_ channel: Channel, _ node: String) -> [String] {
        [StoreKeys.presenceOnline(channel), StoreKeys.presenceNodes(channel), StoreKeys.presenceNode(channel, node)]
    }

    func presenceJoin(_ channel: Channel, node: String, ttlMs: Int64, user: String, _ done: @escaping (StoreResult<Bool>) -> Void) {
        calls.run(CommunityScripts.presenceJoin, keys: presenceKeys(channel, node), args: [node, ttlMs, user], as: Int64.self) {
            done($0.map { $0 == 1 })
        }
    }

    func presenceLeave(_ channel: Channel, node: String, user: String) {
        calls.run(CommunityScripts.presenceLeave, keys: presenceKeys(channel, node), args: [node, user], as: RedisReply.self) { _ in }
    }

    func presenceRenew(_ channel: Channel, node: String, ttlMs: Int64, _ done: @escaping (StoreResult<Bool>) -> Void) {
        calls.run(CommunityScripts.presenceRenew, keys: presenceKeys(channel, node), args: [node, ttlMs], as: [String].self) { result in
            guard case .success(let reply) = result, let expired = reply.first else { return done(result.map { _ in false }) }
            let dead = Array(reply.dropFirst())
            if !dead.isEmpty { self.reap(channel, dead, budget: Self.reapPerRenewal) { _ in } }
            done(.success(expired == "1"))
        }
    }

    func presenceSync(_ channel: Channel, node: String, ttlMs: Int64, users: [String]) {
        let args: [RedisArgument] = [node, ttlMs] + users.map { $0 as RedisArgument }
        calls.run(CommunityScripts.presenceSync, keys: presenceKeys(channel, node), args: args, as: RedisReply.self) { _ in }
    }

    /// Takes out up to `budget` users of the dead node instances named (each with its own key).
    private func reap(_ channel: Channel, _ dead: [String], budget: Int, _ done: @escaping (StoreResult<Int64>) -> Void) {
        let keys = [StoreKeys.presenceOnline(channel), StoreKeys.presenceNodes(channel)] + dead.map { StoreKeys.presenceNode(channel, $0) }
        calls.run(CommunityScripts.presenceReap, keys: keys, args: [budget] + dead.map { $0 as RedisArgument }, done)
    }

    /// presence_read.lua: {online, {dead node, ...}, {user, ...}}.
    private struct PresenceRead: RedisReplyDecodable {
        var online: Int64, dead: [String], users: [String]
        init(redisReply: RedisReply) throws(RedisDecodingError) {
            var reader = try RedisArrayReader(redisReply)
            online = try reader.next()
            dead = try reader.next()
            users = try reader.next()
        }
    }

    func presence(_ channel: Channel, _ done: @escaping (StoreResult<PresenceSnapshot>) -> Void) {
        let keys = [StoreKeys.presenceOnline(channel), StoreKeys.presenceNodes(channel)]
        let read = { (next: @escaping (StoreResult<PresenceRead>) -> Void) in
            self.calls.run(CommunityScripts.presenceRead, keys: keys, args: [Self.presenceSample], next)
        }
        // The product's buyers live in the product's slot: a separate call, pipelined.
        var buyers: StoreResult<Int64>?
        var online: StoreResult<PresenceRead>?
        let finish = {
            guard let buyers, let online else { return }
            done(online.flatMap { o in buyers.map { PresenceSnapshot(online: o.online, buyers: $0, users: o.users) } })
        }
        read { first in
            // Dead node instances named: reap a slice of them and read again.
            guard case .success(let r) = first, !r.dead.isEmpty else { online = first; return finish() }
            self.reap(channel, r.dead, budget: Self.reapPerRead) { _ in
                read { online = $0; finish() }
            }
        }
        let members = CommerceKeys.members(channel.id)
        calls.send(["HLEN", members], key: members, as: Int64.self) { buyers = $0; finish() }
    }

    // MARK: Watches

    func watch(product: String, user: String, below: Int64?, restock: Bool, nowMs: Int64, ttlMs: Int64,
               _ done: @escaping (StoreResult<Int64?>) -> Void) {
        let mine = StoreKeys.userWatches(user)
        let template = WatchRecords.template(product: product, user: user, below: below, expiresAt: nowMs + ttlMs)
        let gather = Gather<Int64?>(2) { done($0.map { $0[1] }) }
        // The user's list first (pipelined): an entry for a product that turns out not to
        // exist is taken back, and any left over is dropped when the list is read.
        calls.run(CommunityScripts.userWatches, keys: [mine], args: ["add", product, ttlMs], as: RedisReply.self) {
            gather.report(0, $0.map { _ in nil })
        }
        let keys = [StoreKeys.productInfo(product), StoreKeys.watchers(product), StoreKeys.watchRecords(product),
                    StoreKeys.watchExpiry(product), StoreKeys.restockLine(product)]
        let args: [RedisArgument] = [user, below.map { String($0) } ?? "", template, nowMs, ttlMs, restock ? "1" : ""]
        calls.run(CommunityScripts.watch, keys: keys, args: args, as: [String].self) { result in
            gather.report(1, result.map { reply in
                guard let price = reply.first.flatMap({ Int64($0) }), price >= 0 else {
                    self.forget(product, of: [user])
                    return nil
                }
                // Ended watches the script dropped: out of their users' lists too (best effort).
                self.forget(product, of: Array(reply.dropFirst()))
                return price
            })
        }
    }

    /// Takes `product` out of the users' watch lists (each list in its user's slot).
    private func forget(_ product: String, of users: [String]) {
        for user in users {
            calls.run(CommunityScripts.userWatches, keys: [StoreKeys.userWatches(user)], args: ["remove", product],
                      as: RedisReply.self) { _ in }
        }
    }

    func unwatch(product: String, user: String, _ done: @escaping (StoreResult<Void>) -> Void) {
        let gather = Gather<Void>(2) { done($0.map { _ in () }) }
        calls.run(CommunityScripts.unwatch, keys: [StoreKeys.watchers(product), StoreKeys.watchRecords(product),
                                                    StoreKeys.watchExpiry(product), StoreKeys.restockLine(product)],
                  args: [user], as: RedisReply.self) {
            gather.report(0, $0.map { _ in () })
        }
        calls.run(CommunityScripts.userWatches, keys: [StoreKeys.userWatches(user)], args: ["remove", product], as: RedisReply.self) {
            gather.report(1, $0.map { _ in () })
        }
    }

    /// watches.lua: {record, price, in line 0|1, hold record or ''} or {} when gone.
    private struct WatchEntry: RedisReplyDecodable {
        var found: (record: String, price: Int64, inLine: Bool, hold: String)?
        init(redisReply: RedisReply) throws(RedisDecodingError) {
            var reader = try RedisArrayReader(redisReply)
            found = reader.isAtEnd ? nil : (try reader.next(), try reader.next(), try reader.next(Int64.self) == 1, try reader.next())
        }
    }

    func watches(user: String, nowMs: Int64, _ done: @escaping (StoreResult<[WatchedProduct]>) -> Void) {
        let mine = StoreKeys.userWatches(user)
        calls.run(CommunityScripts.userWatches, keys: [mine], args: ["list"], as: [String].self) { listed in
            guard case .success(let products) = listed else { return done(listed.map { _ in [] }) }
            let gather = Gather<WatchEntry>(products.count) { result in
                done(result.map { entries in
                    var gone: [String] = []
                    var out: [WatchedProduct] = []
                    for (product, entry) in zip(products, entries) {
                        guard let found = entry.found else { gone.append(product); continue }
                        if let w = Watch(product: product, user: user, record: found.record), w.expiresAt > nowMs {
                            let hold = RestockHold(user: user, record: found.hold).flatMap { $0.isLive(at: nowMs) ? $0 : nil }
                            out.append(WatchedProduct(watch: w, price: found.price, restock: found.inLine, hold: hold))
                        }
                    }
                    if !gone.isEmpty {
                        self.calls.run(CommunityScripts.userWatches, keys: [mine], args: ["remove"] + gone.map { $0 as RedisArgument },
                                       as: RedisReply.self) { _ in }
                    }
                    return out.sorted { $0.watch.product < $1.watch.product }
                })
            }
            for (i, product) in products.enumerated() {
                let keys = [StoreKeys.productInfo(product), StoreKeys.watchRecords(product), StoreKeys.restockLine(product),
                            CommerceKeys.holds(product)]
                self.calls.run(CommunityScripts.watches, keys: keys, args: [user], as: WatchEntry.self) { gather.report(i, $0) }
            }
        }
    }

    // MARK: Products

    func createProduct(_ product: ProductRecord, _ done: @escaping (StoreResult<Bool>) -> Void) {
        calls.run(CommunityScripts.productCreate, keys: [StoreKeys.productInfo(product.id)], args: product.fields, as: Int64.self) {
            done($0.map { $0 == 1 })
        }
    }

    func product(_ id: String, _ done: @escaping (StoreResult<ProductView?>) -> Void) {
        let keys = [StoreKeys.productInfo(id), CommerceKeys.stock(id), CommerceKeys.members(id), StoreKeys.watchers(id), CommerceKeys.holds(id)]
        calls.run(CommunityScripts.productView, keys: keys, args: [], as: ProductViewReply.self) { done($0.map(\.view)) }
    }

    func updateProduct(_ id: String, price: Int64?, title: String?, merchant: String?,
                       _ done: @escaping (StoreResult<ProductUpdate>) -> Void) {
        let channel = Channel.product(id)
        let keys = [StoreKeys.productInfo(id), StoreKeys.meta(channel), StoreKeys.log(channel)]
        let args: [RedisArgument] = [id, price.map { String($0) } ?? "", title ?? "", merchant ?? "",
                                     settings.historyProductSize, settings.historyTTLSeconds, settings.newEpoch()]
        calls.run(CommunityScripts.productUpdate, keys: keys, args: args, done)
    }

    func watchersBelow(product: String, price: Int64, start: Int, count: Int, _ done: @escaping (StoreResult<WatcherPage>) -> Void) {
        calls.run(CommunityScripts.watchersBelow, keys: [StoreKeys.watchers(product), StoreKeys.watchRecords(product)],
                  args: [price, start, count], as: [String].self) { result in
            done(result.map { reply in
                WatcherPage(scanned: reply.first.flatMap { Int($0) } ?? 0,
                            watches: WatchRecords.decode(product: product, pairs: Array(reply.dropFirst())))
            })
        }
    }

    /// One server: the alerts are published inline (each user channel's keys in KEYS).
    /// Cluster: they go to the product's outbox, registered before and relayed after.
    func sendAlerts(product: String, _ alerts: [PriceDropAlert], _ done: @escaping (StoreResult<Int>) -> Void) {
        guard !alerts.isEmpty else { return done(.success(0)) }
        var args: [RedisArgument] = []
        for alert in alerts { args += [alert.seen.user, alert.seen.record, alert.after.record, alert.data] }
        pushToUsers(CommunityScripts.sendAlerts, product: product, first: StoreKeys.watchRecords(product),
                    users: alerts.map(\.seen.user), head: [], args: args, done)
    }

    /// A price drop's alert job lives in the product's slot beside its watches, so a claim
    /// reads its page in the same call (Store/README.md, "Price-drop alerts").
    func openAlerts(product: String, job: String, spec: String, price: Int64, ttlMs: Int, _ done: @escaping (StoreResult<Void>) -> Void) {
        calls.run(CommunityScripts.alertOpen, keys: [StoreKeys.alertJob(product, job)], args: [spec, price, ttlMs],
                  as: RedisReply.self) { done($0.map { _ in () }) }
    }

    func claimAlertPage(product: String, job: String, count: Int, leaseMs: Int, _ done: @escaping (StoreResult<AlertClaim>) -> Void) {
        let keys = [StoreKeys.alertJob(product, job), StoreKeys.alertClaims(product, job), StoreKeys.watchers(product),
                    StoreKeys.watchRecords(product)]
        calls.run(CommunityScripts.alertClaim, keys: keys, args: [count, leaseMs], as: AlertClaimReply.self) { result in
            done(result.map { reply in
                guard case .page(var page) = reply.claim else { return reply.claim }
                page.watches = WatchRecords.decode(product: product, pairs: reply.pairs)
                return .page(page)
            })
        }
    }

    /// alert_claim.lua: {'page', start, lease, read, spec, user, record, ...} | {'wait', ms} | {'done', sent, ms} | {'gone'}.
    private struct AlertClaimReply: RedisReplyDecodable {
        var claim: AlertClaim
        var pairs: [String] = []
        init(redisReply: RedisReply) throws(RedisDecodingError) {
            var reader = try RedisArrayReader(redisReply)
            switch try reader.next(String.self) {
            case "page":
                claim = .page(AlertPage(start: Int(try reader.next(Int64.self)), lease: try reader.next(), scanned: Int(try reader.next(Int64.self)),
                                        spec: try reader.next(), watches: []))
                while !reader.isAtEnd { pairs.append(try reader.next()) }
            case "wait": claim = .wait(ms: Int(try reader.next(Int64.self)))
            case "done": claim = .done(sent: Int(try reader.next(Int64.self)), ms: Int(try reader.next(Int64.self)))
            default: claim = .gone
            }
        }
    }

    func alertPageDone(product: String, job: String, page: AlertPage, sent: Int) {
        calls.run(CommunityScripts.alertDone, keys: [StoreKeys.alertJob(product, job), StoreKeys.alertClaims(product, job)],
                  args: [page.start, page.lease, sent], as: RedisReply.self) { _ in }
    }

    func closeAlerts(product: String, job: String) {
        let key = StoreKeys.alertJob(product, job)
        calls.send(["DEL", key, StoreKeys.alertClaims(product, job)], key: key, as: RedisReply.self) { _ in }
    }

    /// The index is a key of its own slot: these are plain commands after the open, not in it.
    func listAlerts(product: String, job: String, untilMs: Int64, _ done: @escaping (StoreResult<Void>) -> Void) {
        calls.send(["ZADD", StoreKeys.alertJobs, untilMs, "\(job):\(product)"], key: StoreKeys.alertJobs, as: RedisReply.self) { done($0.map { _ in () }) }
    }

    func unlistAlerts(product: String, job: String) {
        calls.send(["ZREM", StoreKeys.alertJobs, "\(job):\(product)"], key: StoreKeys.alertJobs, as: RedisReply.self) { _ in }
    }

    func listedAlerts(nowMs: Int64, _ done: @escaping (StoreResult<[(product: String, job: String)]>) -> Void) {
        calls.send(["ZRANGEBYSCORE", StoreKeys.alertJobs, nowMs, "+inf", "LIMIT", 0, 100], key: StoreKeys.alertJobs, as: [String].self) { result in
            done(result.map { $0.compactMap(AlertJobs.entry) })
        }
    }

    func restockLine(product: String, after: String?, count: Int, nowMs: Int64, _ done: @escaping (StoreResult<RestockLinePage>) -> Void) {
        calls.run(CommunityScripts.restockLine, keys: [StoreKeys.restockLine(product), StoreKeys.watchExpiry(product)],
                  args: [nowMs, after ?? "-inf", count], as: [String].self) { result in
            done(result.map { reply in
                let last = reply.count > 1 && reply[1] != "-inf" ? reply[1] : after
                return RestockLinePage(read: reply.first.flatMap { Int($0) } ?? 0, last: last, users: Array(reply.dropFirst(2)))
            })
        }
    }

    func restockNotify(product: String, users: [String], data: String, onlyInLine: Bool, _ done: @escaping (StoreResult<Int>) -> Void) {
        guard !users.isEmpty else { return done(.success(0)) }
        pushToUsers(CommunityScripts.restockNotify, product: product, first: StoreKeys.restockLine(product), users: users,
                    head: [data, onlyInLine ? "1" : ""], args: users.map { $0 as RedisArgument }, done)
    }

    /// A script that pushes to `users` (send_alerts, restock_notify): KEYS `first`, the outbox,
    /// then on one server each user channel's meta and log (published inline); ARGV mode,
    /// history size, ttl, epoch, `head`, `args`. On a cluster the pushes go to the product's
    /// outbox, registered before and relayed after.
    private func pushToUsers(_ script: LuaScript, product: String, first: String, users: [String], head: [RedisArgument],
                             args: [RedisArgument], _ done: @escaping (StoreResult<Int>) -> Void) {
        let outbox = StoreKeys.outbox(product)
        let cluster = redis.isCluster
        var keys = [first, outbox]
        if !cluster {
            for user in users { keys += [StoreKeys.meta(.user(user)), StoreKeys.log(.user(user))] }
        }
        let args: [RedisArgument] = [cluster ? "outbox" : "inline", settings.historyUserSize, settings.historyTTLSeconds,
                                     settings.newEpoch()] + head + args
        relay.register(outbox) { registered in
            guard registered else { return done(.failure(.redisUnavailable)) }
            self.calls.run(script, keys: keys, args: args, as: Int.self) { result in
                guard cluster else { return done(result) }
                // Under replicas:N the entries are relayed only once a replica holds them
                // (stream ids as dedupe marks, Store/README.md); unconfirmed, the sweep
                // relays them later.
                guard case .replicas(let n) = self.settings.durability else {
                    self.relay.relay(outbox)
                    return done(result)
                }
                self.redis.awaitReplicas(n, timeoutMs: self.settings.durabilityTimeoutMs, key: outbox) { confirmed in
                    if confirmed { self.relay.relay(outbox) }
                    done(result)
                }
            }
        }
    }

    func renewBotLease(node: String, ttlMs: Int, _ done: @escaping (StoreResult<Bool>) -> Void) {
        calls.run(CommunityScripts.botLease, keys: [StoreKeys.botLease], args: [node, ttlMs], as: Int64.self) { done($0.map { $0 == 1 }) }
    }
}
