import GatewayProtocol
import OrderCore

/// `CommerceStore` in memory, for unit tests of the order handlers: it runs the same
/// `CommerceProgram` the apply script runs (same checks, key allocation, links and
/// timers), on dictionaries standing for the Redis keys. Answers synchronously.
final class MemoryCommerceStore: CommerceStore {
    var hashes: [String: [String: String]] = [:]
    private(set) var strings: [String: String] = [:]
    private(set) var lists: [String: [String]] = [:]
    private(set) var sets: [String: Set<String>] = [:]
    var timers: [String: Int64] = [:]
    /// Sorted sets other than the timers (the holds' due times): key -> member -> score.
    private(set) var sortedSets: [String: [String: Int64]] = [:]
    /// Pushes in the order they were made: channel, push type, data JSON.
    private(set) var pushes: [(channel: String, type: String, data: String)] = []
    /// The event log, in log order: type, ordering key, time, data JSON (ids are the index + 1).
    private(set) var events: [(type: String, key: String, at: Int64, data: String)] = []
    var retention = KeyRetention(CommerceTimes(orderTTL: 900_000, giftTTL: 86_400_000, friendpayTTL: 86_400_000, paymentGrace: 60_000))
    var viaOutbox = false
    var historySize: (Channel.Kind) -> Int = { _ in 100 }
    /// `members.levels`, as the apply gets it.
    var memberLevels = MemberLevels.none
    var isReady = true
    /// Set to make the next apply find its preconditions broken (a concurrent writer).
    var interfere: ((MemoryCommerceStore) -> Void)?

    init() {}

    /// A product as `product_create` leaves it.
    func addProduct(_ product: Product) {
        hashes[CommerceKeys.info(product.id)] = ["id": product.id, "merchant": product.merchant, "title": product.title,
                                                 "price": String(product.price), "currency": product.currency]
        if let days = product.validityDays { hashes[CommerceKeys.info(product.id)]?["validity_days"] = String(days) }
    }

    func stock(_ product: String) -> [String] { lists[CommerceKeys.stock(product)] ?? [] }

    /// A hold as keys_add leaves it (the key already out of the stock).
    func seedHold(product: String, _ hold: RestockHold) {
        hashes[CommerceKeys.holds(product), default: [:]][hold.user] = hold.record
        sortedSets[CommerceKeys.holdsDue(product), default: [:]][hold.user] = hold.until
    }

    func load(_ entry: CommerceEntry, member: String?, _ done: @escaping (Result<CommerceSnapshot, GatewayError>) -> Void) {
        guard isReady else { return done(.failure(.redisUnavailable)) }
        var orderKey: String?, paymentKey: String?, infoKey: String?, stockKey: String?, membershipsKey: String?
        var member = member ?? entry.membershipUser
        switch entry {
        case .order(let id): orderKey = CommerceKeys.order(id)
        case .payment(let id):
            paymentKey = CommerceKeys.payment(id)
            orderKey = paymentKey.flatMap { hashes[$0]?[CommerceKeys.Link.order] }
        case .giftCode(let code): orderKey = CommerceKeys.giftCode(code).flatMap { strings[$0] }
        case .payCode(let code): orderKey = CommerceKeys.payCode(code).flatMap { strings[$0] }
        case .idempotency(let product, let buyer, let key): orderKey = strings[CommerceKeys.idempotency(product: product, buyer: buyer, key: key)]
        case .product(let id): (infoKey, stockKey) = (CommerceKeys.info(id), CommerceKeys.stock(id))
        case .membership(let product, _):
            (infoKey, stockKey, membershipsKey) = (CommerceKeys.info(product), CommerceKeys.stock(product), CommerceKeys.memberships(product))
        }
        let order = orderKey.flatMap { hashes[$0] } ?? [:]
        if !order.isEmpty {
            paymentKey = paymentKey ?? order[CommerceKeys.Link.payment]
            (infoKey, stockKey) = (order[CommerceKeys.Link.info], order[CommerceKeys.Link.stock])
            membershipsKey = order[CommerceKeys.Link.memberships]
            member = member ?? order["owner"]
        }
        let payment = paymentKey.flatMap { hashes[$0] } ?? [:]
        let product = infoKey.flatMap { hashes[$0] } ?? [:]
        let decodedOrder = order.isEmpty ? nil : Order(record: order)
        let holdRecord = order[CommerceKeys.Link.holds].map { hashes[$0]?[order["buyer"] ?? ""] ?? "" }
        var s = CommerceSnapshot(order: decodedOrder,
                                 payment: payment.isEmpty ? nil : Payment(record: payment),
                                 product: product.isEmpty ? nil : Product(record: product),
                                 stock: stockKey.map { lists[$0]?.count ?? 0 } ?? 0,
                                 hold: RedisCommerceStore.hold(holdRecord, buyer: decodedOrder?.buyer))
        let record = membershipsKey.flatMap { key in member.map { hashes[key]?[$0] ?? "" } }
        s.membership = CommerceSnapshot.membership(record, product: s.order?.product ?? s.product?.id, user: member)
        done(.success(s))
    }

    func apply(_ decision: Decision, product: String, _ done: @escaping (Result<ApplyOutcome, GatewayError>) -> Void) {
        guard isReady else { return done(.failure(.redisUnavailable)) }
        let settings = CommerceProgram.Settings(retention: retention, historySize: historySize, viaOutbox: viaOutbox)
        guard let program = CommerceProgram(decision, product: product, settings) else {
            return done(.failure(GatewayError(.internal, "a decision named a record without a slot tag")))
        }
        for t in program.timersAhead { timers[t.member] = t.due }
        for t in program.remindersAfter where timers[t.member] == nil { timers[t.member] = t.due }
        for entry in program.setsAhead { sets[entry.key, default: []].insert(entry.member) }
        if let interfere { self.interfere = nil; interfere(self) }
        if let refused = run(program) { return done(.success(.refused(decision.preconditions[refused - 1]))) }
        for t in program.remindersAfter { timers[t.member] = t.due }
        done(.success(.applied))
    }

    /// Nothing to hand on: `pushes` were recorded by the apply, as one server publishes inline.
    func deliverPushes(of decision: Decision, product: String) {}

    /// The program as commerce_apply.lua runs it: nil when applied, else the 1-based index of the failed check.
    func run(_ program: CommerceProgram) -> Int? {
        let keys = program.keys
        func k(_ i: Int) -> String { keys[i - 1] }
        for (index, check) in program.checks.enumerated() {
            let ok: Bool
            switch check {
            case .checkVersion(let key, let v): ok = hashes[k(key)]?["version"] == String(v)
            case .checkAbsent(let key): ok = hashes[k(key)] == nil && strings[k(key)] == nil
            case .checkStockAtLeast(let key, let n): ok = (lists[k(key)]?.count ?? 0) >= n
            case .checkStockBelow(let key, let n): ok = (lists[k(key)]?.count ?? 0) < n
            case .checkField(let key, let field, let value): ok = (hashes[k(key)]?[field] ?? "") == value
            }
            if !ok { return index + 1 }
        }
        func ids(_ order: String) -> [String] { (hashes[order]?["keys"] ?? "").split(separator: ",").map(String.init) }
        func buyers(_ members: String, _ b: CommerceOp.BuyersChannel) {
            pushes.append((b.channel, "product.buyers", #"{"product":"\#(b.product)","buyers":\#(hashes[members]?.count ?? 0)}"#))
        }
        for op in program.ops {
            switch op {
            case .saveOrder(let key, let fields), .savePayment(let key, let fields):
                for f in fields { hashes[k(key), default: [:]][f.name] = f.value }
            case .allocateKeys(let order, let stock, let count):
                let taken = Array((lists[k(stock)] ?? []).prefix(count))
                lists[k(stock)] = Array((lists[k(stock)] ?? []).dropFirst(count))
                hashes[k(order), default: [:]]["keys"] = taken.joined(separator: ",")
            case .returnKeys(let order, let stock):
                lists[k(stock), default: []] += ids(k(order))
                hashes[k(order), default: [:]]["keys"] = ""
            case .burnKeys(let order, let burned):
                sets[k(burned), default: []].formUnion(ids(k(order)))
            case .takeHeldKey(let order, let holds, let due, let user):
                guard let hold = hashes[k(holds)]?[user].flatMap({ RestockHold(user: user, record: $0) }) else { break }
                hashes[k(holds)]?[user] = nil
                sortedSets[k(due)]?[user] = nil
                hashes[k(order), default: [:]]["keys"] = (ids(k(order)) + [hold.keyID]).joined(separator: ",")
            case .addMember(let members, let user, let count, let b):
                let n = Int(hashes[k(members)]?[user] ?? "0")! + count
                hashes[k(members), default: [:]][user] = String(n)
                if n == count { buyers(k(members), b) }
            case .removeMember(let members, let user, let count, let b):
                let n = Int(hashes[k(members)]?[user] ?? "0")! - count
                hashes[k(members), default: [:]][user] = String(n)
                if n <= 0 {
                    hashes[k(members)]?[user] = nil
                    buyers(k(members), b)
                }
            case .indexCode(let key, let order, _):
                strings[k(key)] = k(order)
            case .push(_, _, let channel, let type, let data, _):
                pushes.append((channel, type, data))
            case .event(_, let type, let key, let at, let data):
                events.append((type, key, at, data))
            case .points(_, _, _, let channel, let order, let amount, _):
                // lib_points' ledger, in the user's points hash.
                let user = String(channel.dropFirst("user:".count))
                let key = StoreKeys.memberPoints(user)
                let before = Int64(hashes[key]?["total"] ?? "0")!
                var after = before
                if let amount, hashes[key]?["o:\(order)"] == nil {
                    hashes[key, default: [:]]["o:\(order)"] = String(amount)
                    after += amount
                    hashes[key, default: [:]]["total"] = String(after)
                } else if amount == nil, let counted = hashes[key]?["o:\(order)"].flatMap({ Int64($0) }) {
                    hashes[key]?["o:\(order)"] = nil
                    after -= counted
                    hashes[key, default: [:]]["total"] = String(after)
                }
                if let push = memberLevels.levelPush(from: before, to: after) { pushes.append((channel, "member.level", push.serialized())) }
            case .scheduleTimer(_, let member, let due):
                timers[member] = due
            case .unscheduleTimer(_, let member):
                timers[member] = nil
            case .saveField(let key, let field, let value):
                hashes[k(key), default: [:]][field] = value
            case .setAdd(let key, let member):
                sets[k(key), default: []].insert(member)
            case .takeSaleUnits:
                break  // This twin has no sales (sale_buy.lua runs them; ScriptTests check it).
            case .returnSaleUnits(let order, let stock, _):
                lists[k(stock), default: []] += ids(k(order))
                hashes[k(order), default: [:]]["keys"] = ""
            }
        }
        for member in program.timersAfter { timers[member] = nil }
        return nil
    }

    /// The restock line lives in the community store: this twin gives no holds, but reports
    /// a restock (stock from 0) as keys_add does.
    func addKeys(product: String, merchant: String?, _ keys: [SealedCardKey], terms: RestockTerms,
                 _ done: @escaping (Result<KeysAdded, GatewayError>) -> Void) {
        guard isReady else { return done(.failure(.redisUnavailable)) }
        guard let owner = hashes[CommerceKeys.info(product)]?["merchant"] else { return done(.success(.noProduct)) }
        if let merchant, owner != merchant { return done(.success(.otherMerchant)) }
        var added = 0
        let before = stock(product).count
        for key in keys where hashes[CommerceKeys.cardKeys(product)]?[key.id] == nil {
            hashes[CommerceKeys.cardKeys(product), default: [:]][key.id] = key.sealed
            lists[CommerceKeys.stock(product), default: []].append(key.id)
            added += 1
        }
        let info = hashes[CommerceKeys.info(product)] ?? [:]
        let restock = before == 0 && added > 0
            ? RestockOutcome(product: product, title: info["title"] ?? "", price: Int64(info["price"] ?? "") ?? 0,
                             currency: info["currency"] ?? "", stock: stock(product).count, holders: [], until: terms.until)
            : nil
        done(.success(.added(count: added, duplicates: keys.count - added, stock: stock(product).count, restock: restock)))
    }

    func releaseHolds(product: String, nowMs: Int64, limit: Int, _ done: @escaping (Result<HoldsReleased, GatewayError>) -> Void) {
        let dueKey = CommerceKeys.holdsDue(product), holdsKey = CommerceKeys.holds(product)
        let due = (sortedSets[dueKey] ?? [:]).filter { $0.value <= nowMs }.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.prefix(limit)
        for (user, _) in due {
            if let hold = hashes[holdsKey]?[user].flatMap({ RestockHold(user: user, record: $0) }) {
                lists[CommerceKeys.stock(product), default: []].append(hold.keyID)
            }
            hashes[holdsKey]?[user] = nil
            sortedSets[dueKey]?[user] = nil
        }
        done(.success(HoldsReleased(released: due.count, more: due.count == limit, nextDue: sortedSets[dueKey]?.values.min())))
    }

    func scheduleTimer(_ member: String, at due: Int64) { timers[member] = due }

    func relayOutbox(product: String) {}

    func sealedKeys(of order: Order, _ done: @escaping (Result<[String?], GatewayError>) -> Void) {
        done(.success(order.keyIDs.map { hashes[CommerceKeys.cardKeys(order.product)]?[$0] }))
    }

    func memberPoints(_ user: String, countOrders: Bool, _ done: @escaping (Result<MemberPoints, GatewayError>) -> Void) {
        let hash = hashes[StoreKeys.memberPoints(user)] ?? [:]
        done(.success(MemberPoints(points: Int64(hash["total"] ?? "0")!, orders: countOrders ? max(0, hash.count - 1) : 0)))
    }

    func membershipProducts(of user: String, _ done: @escaping (Result<[String], GatewayError>) -> Void) {
        done(.success((sets[StoreKeys.userMemberships(user)] ?? []).sorted()))
    }

    func dueTimers(now: Int64, limit: Int, _ done: @escaping (Result<[DueTimer], GatewayError>) -> Void) {
        let due = timers.filter { $0.value <= now }.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.prefix(limit)
        done(.success(due.map { DueTimer(member: $0.key, due: $0.value) }))
    }

    func removeTimer(_ member: String, _ done: @escaping () -> Void) {
        timers[member] = nil
        done()
    }

    func removeTimer(ifUnmoved timer: DueTimer, _ done: @escaping () -> Void) {
        if timers[timer.member] == timer.due { timers[timer.member] = nil }
        done()
    }

    func confirmDurable(product: String, repeated: Bool, _ done: @escaping (GatewayError?) -> Void) { done(nil) }
}
