import GatewayProtocol
import OrderCore

/// A check of the apply script: the decision is applied only when every one holds.
enum CommerceCheck: Equatable {
    /// The hash's `version` field is `version`.
    case checkVersion(key: Int, version: Int)
    case checkAbsent(key: Int)
    /// The stock list holds at least `count` key ids.
    case checkStockAtLeast(key: Int, count: Int)
    case checkStockBelow(key: Int, count: Int)
}

/// One step of the apply script. Keys are 1-based indexes into the program's `keys`
/// (the script's KEYS), so the script never builds or receives a key name elsewhere.
enum CommerceOp: Equatable {
    /// HSET of the record's fields (never `keys`: the key ops own it) and its links.
    case saveOrder(key: Int, fields: [Field])
    case savePayment(key: Int, fields: [Field])
    /// LPOP `count` ids from the stock into the order's `keys` field.
    case allocateKeys(order: Int, stock: Int, count: Int)
    /// The order's key ids back to the end of the stock; its `keys` field emptied.
    case returnKeys(order: Int, stock: Int)
    /// The order's key ids into the burned set (revealed: never sold again).
    case burnKeys(order: Int, burned: Int)
    /// HINCRBY of the user's membership count; `product.buyers` is published on the
    /// product channel (same slot) when the user became a member / stopped being one.
    case addMember(members: Int, user: String, count: Int, buyers: BuyersChannel)
    case removeMember(members: Int, user: String, count: Int, buyers: BuyersChannel)
    /// SET of a lookup key (gift code, pay code, idempotency key) to the order's key, with a TTL.
    case indexCode(key: Int, order: Int, ttlMs: Int64)
    /// A push to a user channel through lib_emit: published inline with the channel's keys
    /// (one server), or written to the outbox (cluster: `meta`/`log` are nil).
    case push(meta: Int?, log: Int?, channel: String, type: String, data: String, size: Int)

    struct Field: Equatable {
        var name: String
        var value: String
    }

    struct BuyersChannel: Equatable {
        var meta: Int
        var log: Int
        var channel: String
        var product: String
        var size: Int
    }
}

/// A decision as the apply script runs it: the one place that maps `Effect`s and
/// `Precondition`s to opcodes and lists the keys they touch. Timers are not in it: they
/// live in another slot and are written ahead of the apply (`timersAhead`) or removed
/// after it (`timersAfter`) by the store.
struct CommerceProgram: Equatable {
    private(set) var keys: [String] = []
    private(set) var checks: [CommerceCheck] = []
    private(set) var ops: [CommerceOp] = []
    /// `gw:timers` members to ZADD before the apply, with their due time (ms).
    private(set) var timersAhead: [(member: String, due: Int64)] = []
    /// Members to ZREM (best effort) once the apply went through.
    private(set) var timersAfter: [String] = []
    /// 1-based KEYS index of the outbox, 0 when pushes are published inline.
    private(set) var outbox = 0
    var hasPushes: Bool { ops.contains { if case .push = $0 { true } else { false } } }

    struct Settings {
        var retention: KeyRetention
        var historySize: (Channel.Kind) -> Int
        /// Cluster: pushes go to the product's outbox, not inline.
        var viaOutbox: Bool
    }

    /// Nil when the decision names a record whose id has no valid slot tag (it cannot exist).
    init?(_ decision: Decision, product: String, _ settings: Settings) {
        for p in decision.preconditions {
            guard let check = check(p) else { return nil }
            checks.append(check)
        }
        for e in decision.effects {
            guard mapEffect(e, product: product, settings) else { return nil }
        }
        if settings.viaOutbox, hasPushes { outbox = key(CommerceKeys.outbox(product)) }
    }

    static func == (a: CommerceProgram, b: CommerceProgram) -> Bool {
        a.keys == b.keys && a.checks == b.checks && a.ops == b.ops && a.outbox == b.outbox
            && a.timersAhead.map(\.member) == b.timersAhead.map(\.member) && a.timersAfter == b.timersAfter
    }

    /// The index of `name` in KEYS, added when new.
    private mutating func key(_ name: String) -> Int {
        if let i = keys.firstIndex(of: name) { return i + 1 }
        keys.append(name)
        return keys.count
    }

    private mutating func check(_ p: Precondition) -> CommerceCheck? {
        switch p {
        case .orderVersion(let id, let v): CommerceKeys.order(id).map { .checkVersion(key: key($0), version: v) }
        case .paymentVersion(let id, let v): CommerceKeys.payment(id).map { .checkVersion(key: key($0), version: v) }
        case .orderAbsent(let id): CommerceKeys.order(id).map { .checkAbsent(key: key($0)) }
        case .paymentAbsent(let id): CommerceKeys.payment(id).map { .checkAbsent(key: key($0)) }
        case .idempotencyAbsent(let buyer, let product, let k):
            .checkAbsent(key: key(CommerceKeys.idempotency(product: product, buyer: buyer, key: k)))
        case .stockAtLeast(let product, let n): .checkStockAtLeast(key: key(CommerceKeys.stock(product)), count: n)
        case .stockBelow(let product, let n): .checkStockBelow(key: key(CommerceKeys.stock(product)), count: n)
        }
    }

    private mutating func mapEffect(_ e: Effect, product: String, _ settings: Settings) -> Bool {
        switch e {
        case .saveOrder(let o):
            guard let orderKey = CommerceKeys.order(o.id) else { return false }
            var fields = o.record.filter { $0.0 != "keys" }.map { CommerceOp.Field(name: $0.0, value: $0.1) }
            fields.append(.init(name: CommerceKeys.Link.info, value: CommerceKeys.info(o.product)))
            fields.append(.init(name: CommerceKeys.Link.stock, value: CommerceKeys.stock(o.product)))
            if let p = o.payment {
                guard let paymentKey = CommerceKeys.payment(p) else { return false }
                fields.append(.init(name: CommerceKeys.Link.payment, value: paymentKey))
            }
            ops.append(.saveOrder(key: key(orderKey), fields: fields))
        case .savePayment(let p):
            guard let paymentKey = CommerceKeys.payment(p.id), let orderKey = CommerceKeys.order(p.order) else { return false }
            var fields = p.record.map { CommerceOp.Field(name: $0.0, value: $0.1) }
            fields.append(.init(name: CommerceKeys.Link.order, value: orderKey))
            ops.append(.savePayment(key: key(paymentKey), fields: fields))
        case .allocateKeys(let order, let product, let count):
            guard let orderKey = CommerceKeys.order(order) else { return false }
            ops.append(.allocateKeys(order: key(orderKey), stock: key(CommerceKeys.stock(product)), count: count))
        case .returnKeys(let order, let product):
            guard let orderKey = CommerceKeys.order(order) else { return false }
            ops.append(.returnKeys(order: key(orderKey), stock: key(CommerceKeys.stock(product))))
        case .burnKeys(let order, let product):
            guard let orderKey = CommerceKeys.order(order) else { return false }
            ops.append(.burnKeys(order: key(orderKey), burned: key(CommerceKeys.burned(product))))
        case .membership(let product, let user, let delta):
            guard delta != 0 else { return true }
            let channel = Channel(kind: .product, id: product)
            let buyers = CommerceOp.BuyersChannel(meta: key(CommerceKeys.channelMeta(channel)), log: key(CommerceKeys.channelLog(channel)),
                                                  channel: channel.description, product: product, size: settings.historySize(.product))
            let members = key(CommerceKeys.members(product))
            ops.append(delta > 0 ? .addMember(members: members, user: user, count: delta, buyers: buyers)
                                 : .removeMember(members: members, user: user, count: -delta, buyers: buyers))
        case .schedule(let order, let kind, let at):
            timersAhead.append((member: "\(kind.rawValue):\(order)", due: at))
        case .unschedule(let order, let kind):
            timersAfter.append("\(kind.rawValue):\(order)")
        case .indexIdempotency(let buyer, let product, let k, let order):
            guard let orderKey = CommerceKeys.order(order) else { return false }
            let lookup = key(CommerceKeys.idempotency(product: product, buyer: buyer, key: k))
            ops.append(.indexCode(key: lookup, order: key(orderKey), ttlMs: settings.retention.idempotencyMs))
        case .indexGiftCode(let code, let order):
            guard let codeKey = CommerceKeys.giftCode(code), let orderKey = CommerceKeys.order(order) else { return false }
            ops.append(.indexCode(key: key(codeKey), order: key(orderKey), ttlMs: settings.retention.giftCodeMs))
        case .indexPayCode(let code, let order):
            guard let codeKey = CommerceKeys.payCode(code), let orderKey = CommerceKeys.order(order) else { return false }
            ops.append(.indexCode(key: key(codeKey), order: key(orderKey), ttlMs: settings.retention.payCodeMs))
        case .push(let user, let type, let data):
            let channel = Channel(kind: .user, id: user)
            let inline = !settings.viaOutbox
            ops.append(.push(meta: inline ? key(CommerceKeys.channelMeta(channel)) : nil,
                             log: inline ? key(CommerceKeys.channelLog(channel)) : nil,
                             channel: channel.description, type: type, data: data.serialized(),
                             size: settings.historySize(.user)))
        }
        return true
    }

    /// ARGV[1] of commerce_apply.lua.
    var json: JSON {
        .object([("checks", .array(checks.map(\.json))), ("ops", .array(ops.map(\.json)))])
    }
}

extension CommerceCheck {
    var json: JSON {
        switch self {
        case .checkVersion(let k, let v): .object([("op", .string("check_version")), ("key", .int(Int64(k))), ("version", .string(String(v)))])
        case .checkAbsent(let k): .object([("op", .string("check_absent")), ("key", .int(Int64(k)))])
        case .checkStockAtLeast(let k, let n): .object([("op", .string("check_stock_at_least")), ("key", .int(Int64(k))), ("count", .int(Int64(n)))])
        case .checkStockBelow(let k, let n): .object([("op", .string("check_stock_below")), ("key", .int(Int64(k))), ("count", .int(Int64(n)))])
        }
    }
}

extension CommerceOp {
    var json: JSON {
        func i(_ n: Int) -> JSON { .int(Int64(n)) }
        func fieldList(_ f: [Field]) -> JSON { .array(f.flatMap { [JSON.string($0.name), .string($0.value)] }) }
        func buyersFields(_ b: BuyersChannel) -> [(String, JSON)] {
            [("meta", i(b.meta)), ("log", i(b.log)), ("channel", .string(b.channel)), ("product", .string(b.product)), ("size", i(b.size))]
        }
        switch self {
        case .saveOrder(let k, let f): return .object([("op", .string("save_order")), ("key", i(k)), ("fields", fieldList(f))])
        case .savePayment(let k, let f): return .object([("op", .string("save_payment")), ("key", i(k)), ("fields", fieldList(f))])
        case .allocateKeys(let o, let s, let n): return .object([("op", .string("allocate_keys")), ("order", i(o)), ("stock", i(s)), ("count", i(n))])
        case .returnKeys(let o, let s): return .object([("op", .string("return_keys")), ("order", i(o)), ("stock", i(s))])
        case .burnKeys(let o, let b): return .object([("op", .string("burn_keys")), ("order", i(o)), ("burned", i(b))])
        case .addMember(let m, let u, let n, let b):
            return .object([("op", .string("add_member")), ("members", i(m)), ("user", .string(u)), ("count", i(n))] + buyersFields(b))
        case .removeMember(let m, let u, let n, let b):
            return .object([("op", .string("remove_member")), ("members", i(m)), ("user", .string(u)), ("count", i(n))] + buyersFields(b))
        case .indexCode(let k, let o, let ttl): return .object([("op", .string("index_code")), ("key", i(k)), ("order", i(o)), ("ttl_ms", .int(ttl))])
        case .push(let meta, let log, let ch, let type, let data, let size):
            var f: [(String, JSON)] = [("op", .string("push"))]
            if let meta, let log { f += [("meta", i(meta)), ("log", i(log))] }
            return .object(f + [("channel", .string(ch)), ("type", .string(type)), ("data", .string(data)), ("size", i(size))])
        }
    }
}
