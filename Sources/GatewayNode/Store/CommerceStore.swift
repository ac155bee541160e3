import Foundation
import GatewayConfig
import GatewayProtocol
import GatewayRedis
import Logging
import OrderCore

/// A consistent read of what a decision is made on.
package struct CommerceSnapshot: Equatable {
    package var order: Order?
    package var payment: Payment?
    package var product: Product?
    package var stock: Int
    /// The validity membership (4.6) of the order's owner (or the gift's claimer, or the
    /// membership entry's user) in the product: `.notLinked` when the order has no link to it.
    package var membership: Linked<Membership> = .notLinked
    /// The order buyer's restock hold, read through the order's `link:holds`.
    package var hold: Linked<RestockHold> = .notLinked
}

/// What a snapshot is loaded through.
package enum CommerceEntry: Equatable {
    case order(String)
    case payment(String)
    case giftCode(String)
    case payCode(String)
    /// A product with no order: its record and stock (order creation, the demo's stock).
    case product(String)
    /// The order an `idempotency_key` made, per (caller scope, buyer, product): `key`
    /// carries the caller's scope. No order in the snapshot when the key is unused.
    case idempotency(product: String, buyer: String, key: String)
    /// A user's validity membership of a product, with the product (the `mem:` reminder timer).
    case membership(product: String, user: String)

    /// The user a load reads the validity membership of, when not the order's owner.
    var membershipUser: String? {
        if case .membership(_, let user) = self { user } else { nil }
    }
}

/// The answer of a key upload. `restock`: the upload took the stock from 0 (contract 4.6).
enum KeysAdded: Equatable {
    case added(count: Int, duplicates: Int, stock: Int, restock: RestockOutcome?)
    case noProduct
    /// The product belongs to another merchant than the one uploading.
    case otherMerchant
}

/// What an upload needs to give restock holds: its time and how long a hold lasts (0: none).
struct RestockTerms: Equatable {
    var nowMs: Int64
    var holdMs: Int64

    var until: Int64 { nowMs + holdMs }
}

/// A restock as keys_add made it: the first watchers of the line hold a key each until `until`.
struct RestockOutcome: Equatable {
    var product: String
    var title: String
    var price: Int64
    var currency: String
    /// Keys a non-holder can buy now (after the holds).
    var stock: Int
    /// In watch order; they left the line.
    var holders: [String]
    var until: Int64

    /// `product.restock`'s data; with `hold` for the holders.
    func pushData(hold: Bool) -> String {
        var fields: [(String, JSON)] = [("product", .string(product)), ("title", .string(title)), ("price", .int(price)),
                                        ("currency", .string(currency)), ("stock", .int(Int64(stock)))]
        if hold { fields.append(("hold", .object([("until", .int(until))]))) }
        return JSON.object(fields).serialized()
    }

    /// The event `product.restocked`'s data as keys_add fills it ($KEYS, $HOLDS, $STOCK), and its ordering key.
    static func eventTemplate(product: String) -> String {
        #"{"product":\#(JSON.string(product).serialized()),"keys":$KEYS,"holds":$HOLDS,"stock":$STOCK}"#
    }
    static func eventKey(product: String) -> String { "product:\(product)" }
}

/// A card key as stored: its id (a keyed fingerprint) and the sealed key.
struct SealedCardKey: Equatable {
    var id: String
    var sealed: String
}

/// holds_release.lua's answer.
struct HoldsReleased: Equatable {
    var released: Int
    /// The limit was reached: more may be due.
    var more: Bool
    /// The next hold's end (ms), nil when none is left.
    var nextDue: Int64?
}

/// A `gw:timers` member that is due: `<kind>:<order id>` and its due time (ms).
struct DueTimer: Equatable {
    var member: String
    var due: Int64
}

/// The answer of an apply.
enum ApplyOutcome: Equatable {
    case applied
    /// Nothing was changed: `precondition` no longer held.
    case refused(Precondition)
}

/// The order core's storage: snapshots, decisions applied atomically under their
/// preconditions, card keys and timers. `RedisCommerceStore` holds every Redis call of the
/// order core; `MemoryCommerceStore` has the same semantics for unit tests.
protocol CommerceStore: AnyObject {
    var isReady: Bool { get }
    /// `member`: whose validity membership to read instead of the order's owner (a gift's claimer).
    func load(_ entry: CommerceEntry, member: String?, _ done: @escaping (Result<CommerceSnapshot, GatewayError>) -> Void)
    /// Applies `decision` (its records all in `product`'s slot), or refuses it when a
    /// precondition no longer held (nothing was changed). Scheduled timers are written
    /// ahead of the apply, unscheduled ones removed (best effort) after it. A decision
    /// that only schedules (a timer put back) writes the timers and nothing else.
    func apply(_ decision: Decision, product: String, _ done: @escaping (Result<ApplyOutcome, GatewayError>) -> Void)
    /// Hands the pushes of an applied `decision` on to their channels, once it is as
    /// durable as it must be (cluster: relays the product's outbox; one server: they were
    /// published inline by the apply). Pushes not handed on wait in the outbox for the
    /// relay's sweep.
    func deliverPushes(of decision: Decision, product: String)
    /// `merchant`: nil for the shop; another merchant's product is refused inside the script.
    /// An upload onto no stock gives restock holds on `terms` in the same step.
    func addKeys(product: String, merchant: String?, _ keys: [SealedCardKey], terms: RestockTerms,
                 _ done: @escaping (Result<KeysAdded, GatewayError>) -> Void)
    /// Returns the product's due restock holds to stock (at most `limit`).
    func releaseHolds(product: String, nowMs: Int64, limit: Int, _ done: @escaping (Result<HoldsReleased, GatewayError>) -> Void)
    /// ZADD of a `gw:timers` member (a hold release put back or moved).
    func scheduleTimer(_ member: String, at due: Int64)
    /// Hands the product's outbox on (cluster: its event and pushes); nothing on one server.
    func relayOutbox(product: String)
    /// The sealed keys of `order.keyIDs`, in order (nil for one that is missing).
    func sealedKeys(of order: Order, _ done: @escaping (Result<[String?], GatewayError>) -> Void)
    /// A user's member points (lib_points' hash in the user's slot): the total and, with
    /// `countOrders`, how many delivered, not refunded orders make it (0 otherwise).
    func memberPoints(_ user: String, countOrders: Bool, _ done: @escaping (Result<MemberPoints, GatewayError>) -> Void)
    /// The products in a user's membership listing index (4.6), some maybe without a record.
    func membershipProducts(of user: String, _ done: @escaping (Result<[String], GatewayError>) -> Void)
    func dueTimers(now: Int64, limit: Int, _ done: @escaping (Result<[DueTimer], GatewayError>) -> Void)
    func removeTimer(_ member: String, _ done: @escaping () -> Void)
    /// Removes `timer` only while its score is still the due time it was read with (a member
    /// a concurrent decision moved stays).
    func removeTimer(ifUnmoved timer: DueTimer, _ done: @escaping () -> Void)
    /// With `redis.durability replicas:N`: nil once N replicas hold what was written in
    /// `product`'s slot so far; `repeated`: the write being vouched for may have been made
    /// earlier on another connection (a repeated notify, an idempotency key seen before).
    func confirmDurable(product: String, repeated: Bool, _ done: @escaping (GatewayError?) -> Void)
}

extension CommerceStore {
    func load(_ entry: CommerceEntry, _ done: @escaping (Result<CommerceSnapshot, GatewayError>) -> Void) {
        load(entry, member: nil, done)
    }
}

extension CommerceSnapshot {
    /// The record of element 6 of commerce_load (nil: not linked, '': none) as the snapshot's.
    static func membership(_ record: String?, product: String?, user: String?) -> Linked<Membership> {
        guard let record, let product, let user else { return .notLinked }
        return Membership(product: product, user: user, record: record).map { .present($0) } ?? .absent
    }
}

/// The order core's Redis calls. Every key comes from `CommerceKeys`; every reply is
/// decoded through `RedisReplyDecodable`.
final class RedisCommerceStore: CommerceStore {
    let redis: any RedisLink
    let settings: () -> CommerceProgram.Settings
    let historyTTL: Int
    let newEpoch: () -> String
    let durability: RedisDurability
    let durabilityTimeoutMs: Int
    /// Cluster only; nil until the relay is wired (pushes then wait in the outbox).
    var relay: EventStore?
    /// How long the event log keeps an event at least (`webhooks.retry_for_s`), in ms.
    var eventRetentionMs: Int64 = 259_200_000
    /// `members.levels` as lib_points reads it (`MemberLevels.scriptArgument`).
    var memberLadder = MemberLevels.none.scriptArgument
    /// One server: v1 records are upgraded before any order is read or decided on.
    var legacyMigration: LegacyCommerceMigration?
    private var upgrading: Bool { legacyMigration.map { !$0.isDone } ?? false }
    static let upgradingError = GatewayError(.unavailable, "upgrading stored orders, retry", temporary: true)

    init(redis: any RedisLink, retention: KeyRetention, historyTTL: Int, historySize: @escaping (Channel.Kind) -> Int,
         durability: RedisDurability, durabilityTimeoutMs: Int, newEpoch: @escaping () -> String) {
        self.redis = redis
        self.historyTTL = historyTTL
        self.newEpoch = newEpoch
        self.durability = durability
        self.durabilityTimeoutMs = durabilityTimeoutMs
        let link = redis
        settings = { CommerceProgram.Settings(retention: retention, historySize: historySize, viaOutbox: link.isCluster) }
    }

    var isReady: Bool { redis.isReady && !upgrading }

    func load(_ entry: CommerceEntry, member: String?, _ done: @escaping (Result<CommerceSnapshot, GatewayError>) -> Void) {
        guard !upgrading else { return done(.failure(Self.upgradingError)) }
        let member = member ?? entry.membershipUser
        let keys: [String]?
        let kind: String
        switch entry {
        case .order(let id): (keys, kind) = (CommerceKeys.order(id).map { [$0] }, "order")
        case .payment(let id): (keys, kind) = (CommerceKeys.payment(id).map { [$0] }, "payment")
        case .giftCode(let code): (keys, kind) = (CommerceKeys.giftCode(code).map { [$0] }, "lookup")
        case .payCode(let code): (keys, kind) = (CommerceKeys.payCode(code).map { [$0] }, "lookup")
        case .idempotency(let product, let buyer, let key):
            (keys, kind) = ([CommerceKeys.idempotency(product: product, buyer: buyer, key: key)], "lookup")
        case .product(let id): (keys, kind) = ([CommerceKeys.info(id), CommerceKeys.stock(id)], "product")
        case .membership(let product, _):
            (keys, kind) = ([CommerceKeys.info(product), CommerceKeys.stock(product), CommerceKeys.memberships(product)], "membership")
        }
        // An id without a valid slot tag names nothing.
        guard let keys else { return done(.success(CommerceSnapshot(stock: 0))) }
        redis.run(CommerceScripts.load, keys: keys, args: [kind, member ?? ""]) { reply in
            done(Self.decode(reply, "load") { (r: RedisReply) throws(RedisDecodingError) in
                var items = try RedisArrayReader(r)
                let order = try items.next(RedisHash.self), payment = try items.next(RedisHash.self)
                let product = try items.next(RedisHash.self), stock = try items.next(Int.self)
                // An older script answers fewer elements: no link seen.
                let holdRecord = items.isAtEnd ? nil : try items.next(String?.self)
                let membershipRecord = items.isAtEnd ? nil : try items.next(String?.self)
                let decodedOrder = order.isEmpty ? nil : Order(record: order.fields)
                var s = CommerceSnapshot(order: decodedOrder,
                                         payment: payment.isEmpty ? nil : Payment(record: payment.fields),
                                         product: product.isEmpty ? nil : Product(record: product.fields), stock: stock,
                                         hold: Self.hold(holdRecord, buyer: decodedOrder?.buyer))
                s.membership = CommerceSnapshot.membership(membershipRecord, product: s.order?.product ?? s.product?.id,
                                                           user: member ?? s.order?.owner)
                return s
            })
        }
    }

    /// commerce_load's hold element: nil = the order has no `link:holds`, '' = no hold.
    static func hold(_ record: String?, buyer: String?) -> Linked<RestockHold> {
        guard let record, let buyer else { return .notLinked }
        return RestockHold(user: buyer, record: record).map { .present($0) } ?? .absent
    }

    func apply(_ decision: Decision, product: String, _ done: @escaping (Result<ApplyOutcome, GatewayError>) -> Void) {
        guard !upgrading else { return done(.failure(Self.upgradingError)) }
        guard let program = CommerceProgram(decision, product: product, settings()) else {
            return done(.failure(GatewayError(.internal, "a decision named a record without a slot tag")))
        }
        guard let routing = program.keys.first else {
            // Only timers (an early timer put back at its order's due time): nothing to apply.
            let timers = program.timersAhead + program.remindersAfter
            guard !timers.isEmpty, program.timersAfter.isEmpty else {
                return done(.failure(GatewayError(.internal, "a decision that touches no record")))
            }
            return scheduleAhead(timers, before: nil) { error in done(error.map { .failure($0) } ?? .success(.applied)) }
        }
        let outbox = program.outbox > 0 ? program.keys[program.outbox - 1] : nil
        let args: [RedisArgument] = [program.encoded, newEpoch(), historyTTL, program.outbox, eventRetentionMs, memberLadder]
        let applyNow = {
            self.redis.run(CommerceScripts.apply, keys: program.keys, args: args) { reply in
                let outcome = Self.decode(reply, "apply") { (r: RedisReply) throws(RedisDecodingError) -> ApplyOutcome in
                    var items = try RedisArrayReader(r)
                    let applied = try items.next(Int.self), index = try items.next(Int.self)
                    if applied == 1 { return .applied }
                    // Checks are the decision's preconditions, one each, in order.
                    guard index >= 1, index <= decision.preconditions.count else {
                        throw .unexpected(expected: "the index of a failed check", got: String(index))
                    }
                    return .refused(decision.preconditions[index - 1])
                }
                if case .success(.applied) = outcome, !program.timersAfter.isEmpty {
                    // Best effort: a timer left behind finds its order moved on and is removed by the sweep.
                    self.redis.send(["ZREM", CommerceKeys.timers] + program.timersAfter.map { $0 as RedisArgument },
                                    key: CommerceKeys.timers) { _ in }
                }
                if case .success(.applied) = outcome, !program.saleTimersAfter.isEmpty {
                    // Cluster: units given back to a sale make a `sale.stock` due within 250 ms (LT: never later).
                    let due = Int64(Date().timeIntervalSince1970 * 1000) + 250
                    for member in program.saleTimersAfter {
                        self.redis.send(["ZADD", CommerceKeys.timers, "LT", due, member], key: CommerceKeys.timers) { _ in }
                    }
                }
                if case .success(.applied) = outcome, !program.remindersAfter.isEmpty {
                    // Best effort: the member written ahead (or an earlier one) fires and is put back.
                    self.redis.send(Self.zadd(program.remindersAfter), key: CommerceKeys.timers) { _ in }
                }
                done(outcome)
            }
        }
        let writeTimers = {
            self.scheduleAhead(program.timersAhead, before: routing) { error in
                if let error { return done(.failure(error)) }
                self.scheduleAhead(program.remindersAfter, ifAbsent: true, before: routing) { error in
                    if let error { return done(.failure(error)) }
                    self.addToSetsAhead(program.setsAhead) { error in
                        if let error { return done(.failure(error)) }
                        applyNow()
                    }
                }
            }
        }
        guard let outbox, let relay else { return writeTimers() }
        relay.register(outbox) { ok in ok ? writeTimers() : done(.failure(.redisUnavailable)) }
    }

    static func zadd(_ timers: [(member: String, due: Int64)], ifAbsent: Bool = false) -> [RedisArgument] {
        var args: [RedisArgument] = ["ZADD", CommerceKeys.timers]
        if ifAbsent { args.append("NX") }
        for t in timers { args += [t.due, t.member] }
        return args
    }

    func deliverPushes(of decision: Decision, product: String) {
        guard let relay, redis.isCluster, decision.effects.contains(where: {
            switch $0 {
            case .push, .event: true
            default: false
            }
        }) else { return }
        relay.relay(CommerceKeys.outbox(product))
    }

    /// ZADD of the timers a decision schedules, before the decision: pipelined on the same
    /// connection as the apply when there is one (commands on one connection are applied in
    /// order, and the WAIT after the apply covers it), awaited first otherwise (a cluster,
    /// where `gw:timers` has its own slot; with `replicas:N` the timer's own master is then
    /// WAITed on too, as no later WAIT on the order's master covers it). `key` nil: no apply follows.
    private func scheduleAhead(_ timers: [(member: String, due: Int64)], ifAbsent: Bool = false, before key: String?,
                               _ then: @escaping (GatewayError?) -> Void) {
        guard !timers.isEmpty else { return then(nil) }
        let args = Self.zadd(timers, ifAbsent: ifAbsent)
        if let key, redis.sameConnection(CommerceKeys.timers, key) {
            redis.send(args, key: CommerceKeys.timers) { reply in
                if case .error(let e) = reply { Self.log("timer write failed: \(e)") }
            }
            return then(nil)
        }
        redis.send(args, key: CommerceKeys.timers) { reply in
            guard !reply.isFailure else { return then(.redisUnavailable) }
            guard key != nil, case .replicas(let n) = self.durability else { return then(nil) }
            // Not held by enough replicas: the decision is not sent (its timer alone is harmless).
            self.redis.awaitReplicas(n, timeoutMs: self.durabilityTimeoutMs, key: CommerceKeys.timers) { acknowledged in
                then(acknowledged ? nil : Self.notConfirmed(n))
            }
        }
    }

    /// Cluster: SADD of the index entries a decision makes in other slots, awaited before the
    /// apply (like its timers); one left by a decision that is then refused is dropped by its reader.
    private func addToSetsAhead(_ entries: [(key: String, member: String)], _ then: @escaping (GatewayError?) -> Void) {
        guard let first = entries.first else { return then(nil) }
        redis.send(["SADD", first.key, first.member], key: first.key) { reply in
            guard !reply.isFailure else { return then(.redisUnavailable) }
            self.addToSetsAhead(Array(entries.dropFirst()), then)
        }
    }

    func addKeys(product: String, merchant: String?, _ keys: [SealedCardKey], terms: RestockTerms,
                 _ done: @escaping (Result<KeysAdded, GatewayError>) -> Void) {
        let cluster = redis.isCluster
        var keyNames = [CommerceKeys.info(product), CommerceKeys.cardKeys(product), CommerceKeys.stock(product),
                        StoreKeys.restockLine(product), StoreKeys.watchExpiry(product), CommerceKeys.holds(product),
                        CommerceKeys.holdsDue(product), CommerceKeys.outbox(product)]
        // One server: the timer and the event in the script's own step; a cluster writes the
        // timer ahead (its own slot) and the event to the outbox.
        if !cluster { keyNames += [CommerceKeys.timers, CommerceKeys.eventsLog] }
        let member = TimerMember.holds(product: product, upload: String(format: "%08x", UInt32.random(in: .min ... .max))).member
        let params: JSON = .object([
            ("now", .int(terms.nowMs)), ("until", .int(terms.until)), ("hold_ms", .int(terms.holdMs)), ("member", .string(member)),
            ("timers", .int(cluster ? 0 : 9)), ("log", .int(cluster ? 0 : 10)), ("outbox", .int(cluster ? 8 : 0)),
            ("retention", .int(eventRetentionMs)), ("event", .string(RestockOutcome.eventTemplate(product: product))),
            ("key", .string(RestockOutcome.eventKey(product: product))),
        ])
        var args: [RedisArgument] = [merchant ?? "", params.serialized()]
        for k in keys { args += [k.id, k.sealed] }
        let run = {
            self.redis.run(CommerceScripts.addKeys, keys: keyNames, args: args) { reply in
                let result = Self.decode(reply, "keys_add") { (r: RedisReply) throws(RedisDecodingError) -> KeysAdded in
                    try Self.keysAdded(r, product: product, until: terms.until)
                }
                if cluster, terms.holdMs > 0, case .success(.added(_, _, _, let restock)) = result, (restock?.holders ?? []).isEmpty {
                    // No holds given: the timer written ahead has nothing to release (best effort).
                    self.redis.send(["ZREM", CommerceKeys.timers, member], key: CommerceKeys.timers) { _ in }
                }
                done(result)
            }
        }
        guard cluster else { return run() }
        let ahead = terms.holdMs > 0 ? [(member: member, due: terms.until)] : []
        let write = { self.scheduleAhead(ahead, before: keyNames[0]) { error in error.map { done(.failure($0)) } ?? run() } }
        guard let relay else { return write() }
        relay.register(CommerceKeys.outbox(product)) { ok in ok ? write() : done(.failure(.redisUnavailable)) }
    }

    /// keys_add.lua: {outcome, added, duplicates, stock, holds, restocked, title, price, currency, holder...}.
    static func keysAdded(_ r: RedisReply, product: String, until: Int64) throws(RedisDecodingError) -> KeysAdded {
        var items = try RedisArrayReader(r)
        let outcome = try items.next(String.self)
        let added = try items.next(Int.self), duplicates = try items.next(Int.self), stock = try items.next(Int.self)
        switch outcome {
        case "ok":
            let holds = try items.next(Int.self), restocked = try items.next(Int.self) == 1
            let title = try items.next(String.self), price = try items.next(Int64.self), currency = try items.next(String.self)
            var holders: [String] = []
            while !items.isAtEnd { holders.append(try items.next(String.self)) }
            guard holders.count == holds else { throw .unexpected(expected: "\(holds) holders", got: String(holders.count)) }
            let restock = restocked ? RestockOutcome(product: product, title: title, price: price, currency: currency,
                                                     stock: stock, holders: holders, until: until) : nil
            return .added(count: added, duplicates: duplicates, stock: stock, restock: restock)
        case "no_product": return .noProduct
        case "other_merchant": return .otherMerchant
        default: throw .unexpected(expected: "ok, no_product or other_merchant", got: outcome)
        }
    }

    func releaseHolds(product: String, nowMs: Int64, limit: Int, _ done: @escaping (Result<HoldsReleased, GatewayError>) -> Void) {
        let keys = [CommerceKeys.holds(product), CommerceKeys.holdsDue(product), CommerceKeys.stock(product)]
        redis.run(CommerceScripts.holdsRelease, keys: keys, args: [nowMs, limit]) { reply in
            done(Self.decode(reply, "holds_release") { (r: RedisReply) throws(RedisDecodingError) in
                var items = try RedisArrayReader(r)
                let released = try items.next(Int.self), more = try items.next(Int.self) == 1, next = try items.next(Int64.self)
                return HoldsReleased(released: released, more: more, nextDue: next > 0 ? next : nil)
            })
        }
    }

    func scheduleTimer(_ member: String, at due: Int64) {
        redis.send(["ZADD", CommerceKeys.timers, due, member], key: CommerceKeys.timers) { _ in }
    }

    func relayOutbox(product: String) {
        guard let relay, redis.isCluster else { return }
        relay.relay(CommerceKeys.outbox(product))
    }

    func sealedKeys(of order: Order, _ done: @escaping (Result<[String?], GatewayError>) -> Void) {
        guard !order.keyIDs.isEmpty else { return done(.success([])) }
        let key = CommerceKeys.cardKeys(order.product)
        redis.send(["HMGET", key] + order.keyIDs.map { $0 as RedisArgument }, key: key) { reply in
            done(Self.decode(reply, "card keys") { (r: RedisReply) throws(RedisDecodingError) in try [String?](redisReply: r) })
        }
    }

    func memberPoints(_ user: String, countOrders: Bool, _ done: @escaping (Result<MemberPoints, GatewayError>) -> Void) {
        let key = StoreKeys.memberPoints(user)
        redis.send(["HGET", key, "total"], key: key) { reply in
            let total = Self.decode(reply, "member points") { (r: RedisReply) throws(RedisDecodingError) -> Int64 in
                guard let text = try String?(redisReply: r) else { return 0 }
                guard let n = Int64(text) else { throw .unexpected(expected: "a whole number", got: text) }
                return n
            }
            guard case .success(let points) = total, countOrders else { return done(total.map { MemberPoints(points: $0, orders: 0) }) }
            self.redis.send(["HLEN", key], key: key) { reply in
                // The hash holds `total` beside one field per order.
                done(Self.decode(reply, "member points") { (r: RedisReply) throws(RedisDecodingError) in
                    MemberPoints(points: points, orders: max(0, Int(try Int64(redisReply: r)) - 1))
                })
            }
        }
    }

    func membershipProducts(of user: String, _ done: @escaping (Result<[String], GatewayError>) -> Void) {
        let key = StoreKeys.userMemberships(user)
        redis.send(["SMEMBERS", key], key: key) { reply in
            done(Self.decode(reply, "memberships") { (r: RedisReply) throws(RedisDecodingError) in try [String](redisReply: r) })
        }
    }

    func dueTimers(now: Int64, limit: Int, _ done: @escaping (Result<[DueTimer], GatewayError>) -> Void) {
        redis.send(["ZRANGEBYSCORE", CommerceKeys.timers, "-inf", now, "WITHSCORES", "LIMIT", 0, limit],
                   key: CommerceKeys.timers) { reply in
            done(Self.decode(reply, "timers") { (r: RedisReply) throws(RedisDecodingError) -> [DueTimer] in
                var items = try RedisArrayReader(r)
                var out: [DueTimer] = []
                while !items.isAtEnd {
                    let member = try items.next(String.self), score = try items.next(String.self)
                    guard let due = Double(score) else { throw .unexpected(expected: "a score", got: score) }
                    out.append(DueTimer(member: member, due: Int64(due)))
                }
                return out
            })
        }
    }

    func removeTimer(_ member: String, _ done: @escaping () -> Void) {
        redis.send(["ZREM", CommerceKeys.timers, member], key: CommerceKeys.timers) { _ in done() }
    }

    func removeTimer(ifUnmoved timer: DueTimer, _ done: @escaping () -> Void) {
        redis.run(CommerceScripts.timerDrop, keys: [CommerceKeys.timers], args: [timer.member, timer.due]) { _ in done() }
    }

    func confirmDurable(product: String, repeated: Bool, _ done: @escaping (GatewayError?) -> Void) {
        guard case .replicas(let n) = durability else { return done(nil) }
        let wait = {
            // WAIT on the connection that owns the slot written (the order's, the product's).
            self.redis.awaitReplicas(n, timeoutMs: self.durabilityTimeoutMs, key: CommerceKeys.stock(product)) { acknowledged in
                done(acknowledged ? nil : Self.notConfirmed(n))
            }
        }
        guard repeated else { return wait() }
        // That write may have been made on an earlier connection, which a WAIT on this one
        // does not cover: a small write in the slot first, so replicas holding it hold everything before it.
        let mark = CommerceKeys.durabilityMark(product: product)
        redis.send(["INCR", mark], key: mark) { reply in
            if case .failure(let e) = Self.decode(reply, "durability mark", { (r: RedisReply) throws(RedisDecodingError) in try Int(redisReply: r) }) {
                return done(e)
            }
            wait()
        }
    }

    static func notConfirmed(_ n: Int) -> GatewayError {
        GatewayError(.unavailable, "written, but not confirmed by \(n) Redis replica\(n == 1 ? "" : "s") in time; retry", temporary: true)
    }

    /// A script error is a bug or a Redis problem: logged, answered `internal`; a lost
    /// connection is `unavailable`.
    static func decode<T>(_ reply: RedisReply, _ what: String,
                                  _ body: (RedisReply) throws(RedisDecodingError) -> T) -> Result<T, GatewayError> {
        do {
            return .success(try body(reply))
        } catch .disconnected {
            return .failure(.redisUnavailable)
        } catch {
            log("\(what): \(error)")
            return .failure(GatewayError(.internal, "store refused the change"))
        }
    }

    /// Static code has no node at hand: the process logger (JSON lines once the CLI bootstrapped it).
    private static func log(_ message: String) {
        logger.warning("order store: \(message)")
    }

    private static let logger = Logger(label: "gateway.store")
}
