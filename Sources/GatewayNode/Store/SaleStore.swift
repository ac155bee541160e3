import GatewayProtocol
import GatewayRedis
import OrderCore

/// What `sale_tick.lua` answered: when the sale is due next (nil: finished, its timer is
/// gone) and the sale as it is now (nil: no such sale).
package struct SaleTick: Equatable {
    package var nextDue: Int64?
    package var sale: Sale?
}

/// The answer of a buy: applied, with the due time of the `sale.stock` push it made
/// pending (nil: one was already pending), or refused by the sale's checks (nothing changed).
package enum SaleBuyOutcome: Equatable {
    case bought(stockDue: Int64?)
    case refused(SaleRefusal)
}

/// Flash sales in Redis (contract 4.8). Every script runs in the product's slot; the
/// `sale:S` channel's pushes go inline (one server) or through the product's outbox.
protocol SaleStore: AnyObject {
    /// Sets the sale's units aside from stock; `created` false: the same sale existed (a repeat).
    /// `merchant`: nil for the shop; another merchant's product is 403.
    func createSale(_ spec: SaleSpec, merchant: String?, done: @escaping (Result<(Sale, created: Bool), GatewayError>) -> Void)
    /// Nil: no such sale.
    func sale(_ id: String, done: @escaping (Result<Sale?, GatewayError>) -> Void)
    /// Closes the sale (idempotent) and returns its unsold units to stock. Nil: no such sale.
    func closeSale(_ id: String, merchant: String?, done: @escaping (Result<Sale?, GatewayError>) -> Void)
    /// Runs what is due of the sale (its timer `sale:<product>/<sale>`) and moves its timer.
    func tickSale(product: String, sale: String, done: @escaping (Result<SaleTick, GatewayError>) -> Void)
    /// `decision`: `OrderRules.createSaleOrder`'s, applied in the same step as the sale's
    /// checks (one round trip; no load first).
    func buySale(_ decision: Decision, sale: Sale, buyer: String, quantity: Int, product: String,
                 done: @escaping (Result<SaleBuyOutcome, GatewayError>) -> Void)
}

/// How long a sale's records outlive its end (the pointer too): its late payments and
/// refunds still find it, and GET answers it for a while.
let saleRecordsKeptMs: Int64 = 7 * 86_400_000

extension RedisCommerceStore: SaleStore {
    private static func sale(flat items: inout RedisArrayReader) throws(RedisDecodingError) -> Sale {
        var f: [String: String] = [:]
        while !items.isAtEnd {
            let name = try items.next(String.self), value = try items.next(String.self)
            f[name] = value
        }
        guard let sale = Sale(record: f) else { throw .unexpected(expected: "a sale", got: "fields " + f.keys.sorted().joined(separator: ",")) }
        return sale
    }

    /// The `sale:S` channel's keys in the tick's KEYS (one server), or the outbox (cluster).
    private func tickKeys(product: String, sale: String) -> (keys: [String], args: [RedisArgument], outbox: String?) {
        let channel = Channel.sale(sale)
        var keys = [CommerceKeys.sale(product: product, sale), CommerceKeys.saleUnits(product: product, sale),
                    CommerceKeys.saleBuyers(product: product, sale), CommerceKeys.stock(product)]
        let cluster = redis.isCluster
        keys += cluster ? [CommerceKeys.outbox(product)]
                        : [CommerceKeys.timers, CommerceKeys.channelMeta(channel), CommerceKeys.channelLog(channel)]
        let args: [RedisArgument] = [TimerMember.sale(product: product, sale: sale).member, channel.description, sale, newEpoch(),
                                     historyTTL, settings().historySize(.sale), cluster ? "1" : "0", saleRecordsKeptMs]
        return (keys, args, cluster ? CommerceKeys.outbox(product) : nil)
    }

    /// Runs sale_tick or sale_close; a cluster's outbox is registered before and relayed after,
    /// and the sale's timer moved after (one server: the script moved it).
    private func tick(_ script: LuaScript, product: String, sale: String, extra: [RedisArgument],
                      done: @escaping (Result<SaleTick?, GatewayError>) -> Void) {
        let (keys, args, outbox) = tickKeys(product: product, sale: sale)
        let member = TimerMember.sale(product: product, sale: sale).member
        let run = {
            self.redis.run(script, keys: keys, args: args + extra) { reply in
                let result = Self.decode(reply, script.name) { (r: RedisReply) throws(RedisDecodingError) -> SaleTick? in
                    var items = try RedisArrayReader(r)
                    let next = try items.next(Int64.self)
                    if next < 0 { return nil }
                    return SaleTick(nextDue: next > 0 ? next : nil, sale: items.isAtEnd ? nil : try Self.sale(flat: &items))
                }
                if let outbox, case .success(let tick?) = result {
                    self.relay?.relay(outbox)
                    let timer: [RedisArgument] = tick.nextDue.map { ["ZADD", CommerceKeys.timers, $0, member] }
                        ?? ["ZREM", CommerceKeys.timers, member]
                    self.redis.send(timer, key: CommerceKeys.timers) { _ in }
                }
                done(result)
            }
        }
        guard let outbox, let relay else { return run() }
        relay.register(outbox) { ok in ok ? run() : done(.failure(.redisUnavailable)) }
    }

    /// The product of sale `id` (its pointer), nil when there is none.
    private func saleProduct(_ id: String, _ done: @escaping (Result<String?, GatewayError>) -> Void) {
        guard Names.isValidID(id) else { return done(.success(nil)) }
        let pointer = CommerceKeys.saleProduct(id)
        redis.send(["GET", pointer], key: pointer) { reply in
            done(Self.decode(reply, "sale pointer") { (r: RedisReply) throws(RedisDecodingError) in try String?(redisReply: r) })
        }
    }

    func createSale(_ spec: SaleSpec, merchant: String?, done: @escaping (Result<(Sale, created: Bool), GatewayError>) -> Void) {
        let pointer = CommerceKeys.saleProduct(spec.id)
        let expires = spec.endsAt + saleRecordsKeptMs
        let member = TimerMember.sale(product: spec.product, sale: spec.id).member
        let idUsed = GatewayError(.conflict, "sale id already used")
        // The pointer first (its own slot): an id another product's sale holds is refused here.
        redis.send(["SET", pointer, spec.product, "NX", "GET", "PXAT", expires], key: pointer) { reply in
            let before = Self.decode(reply, "sale pointer") { (r: RedisReply) throws(RedisDecodingError) in try String?(redisReply: r) }
            switch before {
            case .failure(let e): return done(.failure(e))
            case .success(let p?) where p != spec.product: return done(.failure(idUsed))
            case .success: break
            }
            let madePointer = (try? before.get()) == nil
            let cluster = self.redis.isCluster
            var keys = [CommerceKeys.info(spec.product), CommerceKeys.stock(spec.product),
                        CommerceKeys.sale(product: spec.product, spec.id), CommerceKeys.saleUnits(product: spec.product, spec.id)]
            if !cluster { keys.append(CommerceKeys.timers) }
            let nonce = (0..<2).map { _ in String(format: "%08x", UInt32.random(in: .min ... .max)) }.joined()
            let args: [RedisArgument] = [spec.id, spec.product, spec.price, spec.quantity, spec.startsAt, spec.endsAt, spec.perUser,
                                         merchant ?? "", nonce, member, expires]
            let create = {
                self.redis.run(CommerceScripts.saleCreate, keys: keys, args: args) { reply in
                    var noSale = false
                    var created = false
                    let result = Self.decode(reply, "sale_create") { (r: RedisReply) throws(RedisDecodingError) -> Result<(Sale, created: Bool), GatewayError> in
                        var items = try RedisArrayReader(r)
                        let answer = try items.next(String.self)
                        noSale = ["no_product", "other_merchant", "short"].contains(answer)
                        switch answer {
                        case "created": created = true; return .success((try Self.sale(flat: &items), true))
                        case "exists": return .success((try Self.sale(flat: &items), false))
                        case "conflict": return .failure(idUsed)
                        case "not_yours": return .failure(Sale.notYours(spec.id))
                        case "no_product": return .failure(.notFound("no product \(spec.product)"))
                        case "other_merchant": return .failure(.forbidden("product \(spec.product) is another merchant's"))
                        case "short":
                            let stock = try items.next(Int.self)
                            return .failure(GatewayError(.conflict, "stock is short: \(stock) keys in stock, \(spec.quantity) asked"))
                        case let other: throw .unexpected(expected: "a sale_create outcome", got: other)
                        }
                    }
                    let outcome = result.flatMap { $0 }
                    // Only an answer proving no sale hash exists frees the id. After a lost
                    // reply the sale may exist: a stray pointer only blocks the id. The timer is
                    // never taken back: a stray one ticks once and removes itself, while one
                    // removed under a racing create's new sale would strand its units.
                    if noSale, madePointer { self.redis.send(["DEL", pointer], key: pointer) { _ in } }
                    guard created else { return done(outcome) }
                    // A racing refused create of the id may have deleted the pointer after this
                    // one found it: written again, NX so a newer owner of the freed id is kept.
                    self.redis.send(["SET", pointer, spec.product, "NX", "PXAT", expires], key: pointer) { _ in
                        guard cluster else { return done(outcome) }
                        self.addTimerAhead(spec, member) { _ in done(outcome) }
                    }
                }
            }
            guard cluster else { return create() }
            // Cluster: the timer ahead (its own slot); the script cannot add it there.
            self.addTimerAhead(spec, member) { reply in
                guard !reply.isFailure else { return done(.failure(.redisUnavailable)) }
                create()
            }
        }
    }

    /// LT, not NX: a leftover member of the id with a later due (a stale tick's re-add) is moved to this sale's first due.
    private func addTimerAhead(_ spec: SaleSpec, _ member: String, _ done: @escaping (RedisReply) -> Void) {
        redis.send(["ZADD", CommerceKeys.timers, "LT", spec.firstDue(at: .min), member], key: CommerceKeys.timers, done)
    }

    func sale(_ id: String, done: @escaping (Result<Sale?, GatewayError>) -> Void) {
        saleProduct(id) { product in
            switch product {
            case .failure(let e): done(.failure(e))
            case .success(nil): done(.success(nil))
            case .success(let product?):
                let key = CommerceKeys.sale(product: product, id)
                self.redis.send(["HGETALL", key], key: key) { reply in
                    done(Self.decode(reply, "sale") { (r: RedisReply) throws(RedisDecodingError) -> Sale? in
                        let hash = try RedisHash(redisReply: r)
                        return hash.fields.isEmpty ? nil : Sale(record: hash.fields)
                    })
                }
            }
        }
    }

    func closeSale(_ id: String, merchant: String?, done: @escaping (Result<Sale?, GatewayError>) -> Void) {
        saleProduct(id) { product in
            switch product {
            case .failure(let e): done(.failure(e))
            case .success(nil): done(.success(nil))
            case .success(let product?):
                self.tick(CommerceScripts.saleClose, product: product, sale: id, extra: [merchant ?? ""]) { result in
                    switch result {
                    case .failure(let e): done(.failure(e))
                    case .success(nil): done(.failure(Sale.notYours(id)))
                    case .success(let tick?): done(.success(tick.sale))
                    }
                }
            }
        }
    }

    func tickSale(product: String, sale: String, done: @escaping (Result<SaleTick, GatewayError>) -> Void) {
        tick(CommerceScripts.saleTick, product: product, sale: sale, extra: []) { result in
            done(result.map { $0 ?? SaleTick(nextDue: nil, sale: nil) })
        }
    }

    func buySale(_ decision: Decision, sale: Sale, buyer: String, quantity: Int, product: String,
                 done: @escaping (Result<SaleBuyOutcome, GatewayError>) -> Void) {
        guard let program = CommerceProgram(decision, product: product, settings()),
              let saleIndex = program.keys.firstIndex(of: CommerceKeys.sale(product: product, sale.id)),
              let buyersIndex = program.keys.firstIndex(of: CommerceKeys.saleBuyers(product: product, sale.id)) else {
            return done(.failure(GatewayError(.internal, "a sale buy without its sale's keys")))
        }
        let outbox = program.outbox > 0 ? program.keys[program.outbox - 1] : nil
        let args: [RedisArgument] = [program.encoded, newEpoch(), historyTTL, program.outbox, eventRetentionMs, memberLadder,
                                     saleIndex + 1, buyersIndex + 1, buyer, quantity, sale.nonce]
        let member = TimerMember.sale(product: product, sale: sale.id).member
        // Cluster: the pay timer (its own slot) is written before the buy, beside the outbox's
        // registration (one wait for both): an order never holds units without its expiry. A
        // refused buy takes the timer back. One server: the buy script writes it.
        let ahead = program.timersAhead
        let buy = {
            self.redis.run(CommerceScripts.saleBuy, keys: program.keys, args: args) { reply in
                let outcome = Self.decode(reply, "sale_buy") { (r: RedisReply) throws(RedisDecodingError) -> Result<SaleBuyOutcome, GatewayError> in
                    var items = try RedisArrayReader(r)
                    switch try items.next(Int.self) {
                    case 1:
                        _ = try items.next(Int.self)
                        let due = try items.next(Int64.self)
                        return .success(.bought(stockDue: due > 0 ? due : nil))
                    case 2: return .failure(GatewayError(.unavailable, "order id already taken, retry", temporary: true))
                    default:
                        let reason = try items.next(String.self)
                        let n = items.isAtEnd ? 0 : try items.next(Int64.self)
                        let m = items.isAtEnd ? 0 : try items.next(Int64.self)
                        let refusal: SaleRefusal
                        switch reason {
                        case "unknown": refusal = .unknown
                        case "stale": refusal = .stale
                        case "too_early": refusal = .tooEarly(retryAfterMs: n)
                        case "ended": refusal = .ended
                        case "sold_out": refusal = .soldOut
                        case "only_left": refusal = .onlyLeft(Int(n))
                        case "over_limit": refusal = .overLimit(held: Int(n), perUser: Int(m))
                        default: throw .unexpected(expected: "a sale_buy refusal", got: reason)
                        }
                        return .success(.refused(refusal))
                    }
                }.flatMap { $0 }
                if case .success(.bought(let due?)) = outcome, self.redis.isCluster {
                    // Cluster: the pending `sale.stock` brings the sale's timer forward (never later).
                    self.redis.send(["ZADD", CommerceKeys.timers, "LT", due, member], key: CommerceKeys.timers) { _ in }
                }
                if !ahead.isEmpty, (try? outcome.get()).map({ if case .bought = $0 { false } else { true } }) ?? false {
                    self.redis.send(["ZREM", CommerceKeys.timers] + ahead.map { $0.member as RedisArgument }, key: CommerceKeys.timers) { _ in }
                }
                done(outcome)
            }
        }
        var waits = (ahead.isEmpty ? 0 : 1) + (outbox != nil && relay != nil ? 1 : 0)
        guard waits > 0 else { return buy() }
        var failed = false
        let ready = { (ok: Bool) in
            failed = failed || !ok
            waits -= 1
            guard waits == 0 else { return }
            failed ? done(.failure(.redisUnavailable)) : buy()
        }
        if !ahead.isEmpty {
            redis.send(Self.zadd(ahead), key: CommerceKeys.timers) { reply in ready(!reply.isFailure) }
        }
        if let outbox, let relay { relay.register(outbox, ready) }
    }
}
