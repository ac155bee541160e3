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
    /// The hash's `field` is `value` ('' = the field is missing).
    case checkField(key: Int, field: String, value: String)
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
    /// The user's held key (holds hash) appended to the order's `keys`; the hold and its due entry removed.
    case takeHeldKey(order: Int, holds: Int, due: Int, user: String)
    /// HINCRBY of the user's membership count; `product.buyers` is published on the
    /// product channel (same slot) when the user became a member / stopped being one.
    case addMember(members: Int, user: String, count: Int, buyers: BuyersChannel)
    case removeMember(members: Int, user: String, count: Int, buyers: BuyersChannel)
    /// SET of a lookup key (gift code, pay code, idempotency key) to the order's key, with a TTL.
    case indexCode(key: Int, order: Int, ttlMs: Int64)
    /// A push to a user channel through lib_emit: published inline with the channel's keys
    /// (one server), or written to the outbox (cluster: `meta`/`log` are nil).
    case push(meta: Int?, log: Int?, channel: String, type: String, data: String, size: Int)
    /// An event through lib_emit's emitEvent: appended to the event log (one server: `log`
    /// is its KEYS index) or written to the outbox for the relay (cluster: `log` is nil).
    case event(log: Int?, type: String, key: String, at: Int64, data: String)
    /// A member points move through lib_points' emitPoints: applied inline with the user's
    /// points and channel keys (one server), or written to the outbox for the relay to apply
    /// in the user's slot (cluster: the keys are nil). `amount` nil takes back what the order counted.
    case points(points: Int?, meta: Int?, log: Int?, channel: String, order: String, amount: Int64?, size: Int)
    /// One server only: ZADD / ZREM of a `gw:timers` member, in the decision's own script.
    case scheduleTimer(timers: Int, member: String, due: Int64)
    case unscheduleTimer(timers: Int, member: String)
    /// HSET of one field (a validity membership's record).
    case saveField(key: Int, field: String, value: String)
    /// One server only: SADD to a set in another slot (a cluster writes it ahead, `setsAhead`).
    case setAdd(key: Int, member: String)
    /// LPOP `count` of the sale's unit ids into the order's `keys`; the sale's counts and the
    /// user's share follow; `sale.sold_out` when none are left; the `sale.stock` push made pending.
    case takeSaleUnits(order: Int, sale: SaleNames, count: Int)
    /// The order's key ids back to the sale's units while it is live, else to `stock`; its `keys` emptied.
    case returnSaleUnits(order: Int, stock: Int, sale: SaleNames)

    struct Field: Equatable {
        var name: String
        var value: String
    }

    /// A sale's keys (KEYS indexes) and names, as its ops use them.
    struct SaleNames: Equatable {
        var sale: Int
        var units: Int
        var buyers: Int
        var user: String
        /// One server: `gw:timers` and the `sale:S` channel's keys, written inline; nil on a
        /// cluster (pushes to the outbox, the timer moved by the store after the apply).
        var timers: Int?
        var meta: Int?
        var log: Int?
        var member: String
        var channel: String
        var id: String
        var size: Int
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
/// `Precondition`s to opcodes and lists the keys they touch. On a cluster timers are not
/// in it: they live in another slot and are written ahead of the apply (`timersAhead`) or
/// removed after it (`timersAfter`) by the store. On one server (no slots, one connection)
/// the apply writes them itself, as it publishes pushes inline: atomically with the
/// decision, and two commands fewer per order call.
struct CommerceProgram: Equatable {
    private(set) var keys: [String] = []
    private(set) var checks: [CommerceCheck] = []
    private(set) var ops: [CommerceOp] = []
    /// `gw:timers` members to ZADD before the apply, with their due time (ms).
    private(set) var timersAhead: [(member: String, due: Int64)] = []
    /// Members to ZREM (best effort) once the apply went through.
    private(set) var timersAfter: [String] = []
    /// Cluster: validity memberships' reminders. Written ahead only where absent (a new
    /// membership's timer survives a crash after the apply) and moved once the apply went
    /// through: a renewal written ahead and then refused would push the current reminder
    /// weeks late. Their removal is left to the sweep (conditional, `timer_drop.lua`).
    private(set) var remindersAfter: [(member: String, due: Int64)] = []
    /// Set members to SADD before the apply (cluster: other slots; a membership's listing index).
    private(set) var setsAhead: [(key: String, member: String)] = []
    /// Cluster: sale timers (`sale:<P>/<S>`) to bring forward to a pending `sale.stock` once
    /// the apply went through (units given back: the push is due within 250 ms).
    private(set) var saleTimersAfter: [String] = []
    /// 1-based KEYS index of the outbox, 0 when pushes are published inline.
    private(set) var outbox = 0
    /// Whether a cluster's apply writes to the outbox: pushes and events go there.
    var hasOutboxEntries: Bool {
        ops.contains {
            switch $0 {
            case .push, .event, .points, .takeSaleUnits, .returnSaleUnits: true
            default: false
            }
        }
    }

    struct Settings {
        var retention: KeyRetention
        var historySize: (Channel.Kind) -> Int
        /// Cluster: pushes go to the product's outbox, not inline, and timers are written
        /// by the store around the apply, not by it.
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
        if settings.viaOutbox, hasOutboxEntries { outbox = key(CommerceKeys.outbox(product)) }
        // A decision that only schedules (a timer put back) has no script to ride in.
        if !settings.viaOutbox, !keys.isEmpty, !(timersAhead.isEmpty && timersAfter.isEmpty) {
            let timers = key(CommerceKeys.timers)
            for t in timersAhead { ops.append(.scheduleTimer(timers: timers, member: t.member, due: t.due)) }
            for member in timersAfter { ops.append(.unscheduleTimer(timers: timers, member: member)) }
            timersAhead = []
            timersAfter = []
        }
    }

    static func == (a: CommerceProgram, b: CommerceProgram) -> Bool {
        a.keys == b.keys && a.checks == b.checks && a.ops == b.ops && a.outbox == b.outbox
            && a.timersAhead.map(\.member) == b.timersAhead.map(\.member) && a.timersAfter == b.timersAfter
            && a.setsAhead.map(\.member) == b.setsAhead.map(\.member) && a.remindersAfter.map(\.member) == b.remindersAfter.map(\.member)
            && a.saleTimersAfter == b.saleTimersAfter
    }

    /// The index of `name` in KEYS, added when new.
    private mutating func key(_ name: String) -> Int {
        if let i = keys.firstIndex(of: name) { return i + 1 }
        keys.append(name)
        return keys.count
    }

    /// Key names met before in this program: a decision names its order, payment and
    /// product several times, and each name is a string build (a tag a CRC besides).
    private var memo = Memo()
    private struct Memo {
        var product: (id: String, names: CommerceKeys.ProductNames)?
        var order: (id: String, key: String?)?
        var payment: (id: String, key: String?)?
    }

    private mutating func names(_ product: String) -> CommerceKeys.ProductNames {
        if let m = memo.product, m.id == product { return m.names }
        let names = CommerceKeys.ProductNames(product)
        memo.product = (product, names)
        return names
    }
    private mutating func orderKey(_ id: String) -> String? {
        if let m = memo.order, m.id == id { return m.key }
        let key = CommerceKeys.order(id)
        memo.order = (id, key)
        return key
    }
    private mutating func paymentKey(_ id: String) -> String? {
        if let m = memo.payment, m.id == id { return m.key }
        let key = CommerceKeys.payment(id)
        memo.payment = (id, key)
        return key
    }

    private mutating func check(_ p: Precondition) -> CommerceCheck? {
        switch p {
        case .orderVersion(let id, let v): orderKey(id).map { .checkVersion(key: key($0), version: v) }
        case .paymentVersion(let id, let v): paymentKey(id).map { .checkVersion(key: key($0), version: v) }
        case .orderAbsent(let id): orderKey(id).map { .checkAbsent(key: key($0)) }
        case .paymentAbsent(let id): paymentKey(id).map { .checkAbsent(key: key($0)) }
        case .idempotencyAbsent(let buyer, let product, let k):
            .checkAbsent(key: key(names(product).idempotency(buyer: buyer, key: k)))
        case .stockAtLeast(let product, let n): .checkStockAtLeast(key: key(names(product).stock), count: n)
        case .stockBelow(let product, let n): .checkStockBelow(key: key(names(product).stock), count: n)
        case .membershipRecord(let product, let user, let record):
            .checkField(key: key(CommerceKeys.memberships(product)), field: user, value: record)
        case .holdRecord(let product, let user, let record):
            .checkField(key: key(CommerceKeys.holds(product)), field: user, value: record)
        }
    }

    private mutating func mapEffect(_ e: Effect, product: String, _ settings: Settings) -> Bool {
        switch e {
        case .saveOrder(let o):
            guard let orderKey = orderKey(o.id) else { return false }
            let record = o.record
            var fields: [CommerceOp.Field] = []
            fields.reserveCapacity(record.count + 2)
            for (name, value) in record where name != "keys" { fields.append(.init(name: name, value: value)) }
            let productNames = names(o.product)
            fields.append(.init(name: CommerceKeys.Link.info, value: productNames.info))
            fields.append(.init(name: CommerceKeys.Link.stock, value: productNames.stock))
            fields.append(.init(name: CommerceKeys.Link.memberships, value: CommerceKeys.memberships(o.product)))
            fields.append(.init(name: CommerceKeys.Link.holds, value: CommerceKeys.holds(o.product)))
            if let p = o.payment {
                guard let paymentKey = paymentKey(p) else { return false }
                fields.append(.init(name: CommerceKeys.Link.payment, value: paymentKey))
            }
            ops.append(.saveOrder(key: key(orderKey), fields: fields))
        case .savePayment(let p):
            guard let paymentKey = paymentKey(p.id), let orderKey = orderKey(p.order) else { return false }
            var fields = p.record.map { CommerceOp.Field(name: $0.0, value: $0.1) }
            fields.append(.init(name: CommerceKeys.Link.order, value: orderKey))
            ops.append(.savePayment(key: key(paymentKey), fields: fields))
        case .allocateKeys(let order, let product, let count):
            guard let orderKey = orderKey(order) else { return false }
            ops.append(.allocateKeys(order: key(orderKey), stock: key(names(product).stock), count: count))
        case .returnKeys(let order, let product):
            guard let orderKey = orderKey(order) else { return false }
            ops.append(.returnKeys(order: key(orderKey), stock: key(names(product).stock)))
        case .burnKeys(let order, let product):
            guard let orderKey = orderKey(order) else { return false }
            ops.append(.burnKeys(order: key(orderKey), burned: key(CommerceKeys.burned(product))))
        case .takeHeldKey(let order, let product, let user):
            guard let orderKey = orderKey(order) else { return false }
            ops.append(.takeHeldKey(order: key(orderKey), holds: key(CommerceKeys.holds(product)),
                                    due: key(CommerceKeys.holdsDue(product)), user: user))
        case .membership(let product, let user, let delta):
            guard delta != 0 else { return true }
            let channel = Channel(kind: .product, id: product)
            let buyers = CommerceOp.BuyersChannel(meta: key(CommerceKeys.channelMeta(channel)), log: key(CommerceKeys.channelLog(channel)),
                                                  channel: channel.description, product: product, size: settings.historySize(.product))
            let members = key(CommerceKeys.members(product))
            ops.append(delta > 0 ? .addMember(members: members, user: user, count: delta, buyers: buyers)
                                 : .removeMember(members: members, user: user, count: -delta, buyers: buyers))
        case .awardPoints(let user, let order, let amount):
            points(user: user, order: order, amount: amount, settings)
        case .revokePoints(let user, let order):
            points(user: user, order: order, amount: nil, settings)
        case .schedule(let order, let kind, let at):
            timersAhead.append((member: TimerMember.order(kind, order).member, due: at))
        case .unschedule(let order, let kind):
            timersAfter.append(TimerMember.order(kind, order).member)
        case .indexIdempotency(let buyer, let product, let k, let order):
            guard let orderKey = orderKey(order) else { return false }
            let lookup = key(names(product).idempotency(buyer: buyer, key: k))
            ops.append(.indexCode(key: lookup, order: key(orderKey), ttlMs: settings.retention.idempotencyMs))
        case .indexGiftCode(let code, let order):
            guard let codeKey = CommerceKeys.giftCode(code), let orderKey = orderKey(order) else { return false }
            ops.append(.indexCode(key: key(codeKey), order: key(orderKey), ttlMs: settings.retention.giftCodeMs))
        case .indexPayCode(let code, let order):
            guard let codeKey = CommerceKeys.payCode(code), let orderKey = orderKey(order) else { return false }
            ops.append(.indexCode(key: key(codeKey), order: key(orderKey), ttlMs: settings.retention.payCodeMs))
        case .push(let user, let type, let data):
            let channel = Channel(kind: .user, id: user)
            let inline = !settings.viaOutbox
            ops.append(.push(meta: inline ? key(CommerceKeys.channelMeta(channel)) : nil,
                             log: inline ? key(CommerceKeys.channelLog(channel)) : nil,
                             channel: channel.description, type: type, data: data.serialized(),
                             size: settings.historySize(.user)))
        case .event(let e):
            ops.append(.event(log: settings.viaOutbox ? nil : key(CommerceKeys.eventsLog), type: e.type.rawValue,
                              key: e.key, at: e.createdAt, data: e.data.serialized()))
        case .saveMembership(let m):
            ops.append(.saveField(key: key(CommerceKeys.memberships(m.product)), field: m.user, value: m.record))
        case .scheduleReminder(let product, let user, let at):
            let member = TimerMember.membership(product: product, user: user).member
            if settings.viaOutbox { remindersAfter.append((member: member, due: at)) } else { timersAhead.append((member: member, due: at)) }
        case .unscheduleReminder(let product, let user):
            if !settings.viaOutbox { timersAfter.append(TimerMember.membership(product: product, user: user).member) }
        case .indexMembership(let user, let product):
            let index = StoreKeys.userMemberships(user)
            if settings.viaOutbox { setsAhead.append((key: index, member: product)) } else { ops.append(.setAdd(key: key(index), member: product)) }
        case .takeSaleUnits(let order, let product, let sale, let user, let count):
            guard let orderKey = orderKey(order) else { return false }
            ops.append(.takeSaleUnits(order: key(orderKey), sale: saleNames(product: product, sale: sale, user: user, settings), count: count))
        case .returnSaleUnits(let order, let product, let sale, let user, _):
            guard let orderKey = orderKey(order) else { return false }
            let names = saleNames(product: product, sale: sale, user: user, settings)
            ops.append(.returnSaleUnits(order: key(orderKey), stock: key(self.names(product).stock), sale: names))
            if settings.viaOutbox { saleTimersAfter.append(names.member) }
        }
        return true
    }

    private mutating func saleNames(product: String, sale: String, user: String, _ settings: Settings) -> CommerceOp.SaleNames {
        let channel = Channel.sale(sale)
        let inline = !settings.viaOutbox
        return CommerceOp.SaleNames(
            sale: key(CommerceKeys.sale(product: product, sale)), units: key(CommerceKeys.saleUnits(product: product, sale)),
            buyers: key(CommerceKeys.saleBuyers(product: product, sale)), user: user,
            timers: inline ? key(CommerceKeys.timers) : nil, meta: inline ? key(CommerceKeys.channelMeta(channel)) : nil,
            log: inline ? key(CommerceKeys.channelLog(channel)) : nil, member: TimerMember.sale(product: product, sale: sale).member,
            channel: channel.description, id: sale, size: settings.historySize(.sale))
    }

    /// Points live in the user's slot, beside the user's channel (its `member.level` push).
    private mutating func points(user: String, order: String, amount: Int64?, _ settings: Settings) {
        let channel = Channel(kind: .user, id: user)
        let inline = !settings.viaOutbox
        ops.append(.points(points: inline ? key(StoreKeys.memberPoints(user)) : nil,
                           meta: inline ? key(CommerceKeys.channelMeta(channel)) : nil,
                           log: inline ? key(CommerceKeys.channelLog(channel)) : nil,
                           channel: channel.description, order: order, amount: amount, size: settings.historySize(.user)))
    }

    /// ARGV[1] of commerce_apply.lua: `{"checks":[...],"ops":[...]}`, written straight into
    /// bytes: this runs for every order call, and a `JSON` tree first cost as much again.
    var encoded: [UInt8] {
        var w = ProgramWriter()
        w.bytes.reserveCapacity(1024)
        w.raw("{\"checks\":[")
        for (i, c) in checks.enumerated() {
            if i > 0 { w.raw(",") }
            c.write(into: &w)
        }
        w.raw("],\"ops\":[")
        for (i, o) in ops.enumerated() {
            if i > 0 { w.raw(",") }
            o.write(into: &w)
        }
        w.raw("]}")
        return w.bytes
    }
}

/// Writes the program's JSON objects: `{"op":"<name>","<field>":<value>,...}`.
struct ProgramWriter {
    var bytes: [UInt8] = []

    @inline(__always)
    mutating func raw(_ text: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }
    @inline(__always)
    mutating func open(_ op: StaticString) {
        raw("{\"op\":\"")
        raw(op)
        raw("\"")
    }
    @inline(__always)
    mutating func name(_ field: StaticString) {
        raw(",\"")
        raw(field)
        raw("\":")
    }
    @inline(__always)
    mutating func field(_ field: StaticString, _ value: Int) {
        name(field)
        bytes.append(contentsOf: String(value).utf8)
    }
    @inline(__always)
    mutating func field(_ field: StaticString, _ value: Int64) {
        name(field)
        bytes.append(contentsOf: String(value).utf8)
    }
    @inline(__always)
    mutating func field(_ field: StaticString, _ value: String) {
        name(field)
        appendJSONString(value, into: &bytes)
    }
    /// A flat `[name, value, ...]` list (HSET's arguments).
    @inline(__always)
    mutating func field(_ field: StaticString, _ fields: [CommerceOp.Field]) {
        name(field)
        raw("[")
        for (i, f) in fields.enumerated() {
            if i > 0 { raw(",") }
            appendJSONString(f.name, into: &bytes)
            raw(",")
            appendJSONString(f.value, into: &bytes)
        }
        raw("]")
    }
    mutating func close() { raw("}") }
}

extension CommerceCheck {
    func write(into w: inout ProgramWriter) {
        switch self {
        case .checkVersion(let k, let v):
            w.open("check_version"); w.field("key", k); w.field("version", String(v))
        case .checkAbsent(let k):
            w.open("check_absent"); w.field("key", k)
        case .checkStockAtLeast(let k, let n):
            w.open("check_stock_at_least"); w.field("key", k); w.field("count", n)
        case .checkStockBelow(let k, let n):
            w.open("check_stock_below"); w.field("key", k); w.field("count", n)
        case .checkField(let k, let f, let v):
            w.open("check_field"); w.field("key", k); w.field("field", f); w.field("value", v)
        }
        w.close()
    }
}

extension CommerceOp {
    func write(into w: inout ProgramWriter) {
        func buyers(_ b: BuyersChannel) {
            w.field("meta", b.meta); w.field("log", b.log); w.field("channel", b.channel)
            w.field("product", b.product); w.field("size", b.size)
        }
        func sale(_ n: SaleNames) {
            w.field("sale", n.sale); w.field("units", n.units); w.field("buyers", n.buyers); w.field("user", n.user)
            if let timers = n.timers { w.field("timers", timers) }
            if let meta = n.meta, let log = n.log { w.field("meta", meta); w.field("log", log) }
            w.field("member", n.member); w.field("channel", n.channel); w.field("id", n.id); w.field("size", n.size)
        }
        switch self {
        case .saveOrder(let k, let f):
            w.open("save_order"); w.field("key", k); w.field("fields", f)
        case .savePayment(let k, let f):
            w.open("save_payment"); w.field("key", k); w.field("fields", f)
        case .allocateKeys(let o, let s, let n):
            w.open("allocate_keys"); w.field("order", o); w.field("stock", s); w.field("count", n)
        case .returnKeys(let o, let s):
            w.open("return_keys"); w.field("order", o); w.field("stock", s)
        case .burnKeys(let o, let b):
            w.open("burn_keys"); w.field("order", o); w.field("burned", b)
        case .takeHeldKey(let o, let h, let d, let u):
            w.open("take_held_key"); w.field("order", o); w.field("holds", h); w.field("due", d); w.field("user", u)
        case .addMember(let m, let u, let n, let b):
            w.open("add_member"); w.field("members", m); w.field("user", u); w.field("count", n); buyers(b)
        case .removeMember(let m, let u, let n, let b):
            w.open("remove_member"); w.field("members", m); w.field("user", u); w.field("count", n); buyers(b)
        case .indexCode(let k, let o, let ttl):
            w.open("index_code"); w.field("key", k); w.field("order", o); w.field("ttl_ms", ttl)
        case .push(let meta, let log, let ch, let type, let data, let size):
            w.open("push")
            if let meta, let log { w.field("meta", meta); w.field("log", log) }
            w.field("channel", ch); w.field("type", type); w.field("data", data); w.field("size", size)
        case .event(let log, let type, let key, let at, let data):
            w.open("event")
            if let log { w.field("log", log) }
            w.field("type", type); w.field("key", key); w.field("at", String(at)); w.field("data", data)
        case .points(let points, let meta, let log, let ch, let order, let amount, let size):
            w.open("points")
            if let points, let meta, let log { w.field("points", points); w.field("meta", meta); w.field("log", log) }
            w.field("channel", ch); w.field("order", order)
            if let amount { w.field("amount", String(amount)) }
            w.field("size", size)
        case .scheduleTimer(let t, let member, let due):
            w.open("schedule_timer"); w.field("timers", t); w.field("member", member); w.field("due", String(due))
        case .unscheduleTimer(let t, let member):
            w.open("unschedule_timer"); w.field("timers", t); w.field("member", member)
        case .saveField(let k, let f, let v):
            w.open("save_field"); w.field("key", k); w.field("field", f); w.field("value", v)
        case .setAdd(let k, let member):
            w.open("set_add"); w.field("key", k); w.field("member", member)
        case .takeSaleUnits(let o, let names, let n):
            w.open("take_sale_units"); w.field("order", o); sale(names); w.field("count", n)
        case .returnSaleUnits(let o, let stock, let names):
            w.open("return_sale_units"); w.field("order", o); w.field("stock", stock); sale(names)
        }
        w.close()
    }
}
