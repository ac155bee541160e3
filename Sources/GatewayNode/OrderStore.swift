import Foundation
import GatewayConfig
import GatewayCrypto
import GatewayIO
import GatewayProtocol
import OrderCore

/// A consistent read of what a decision is made on.
struct CommerceSnapshot {
    var order: Order?
    var payment: Payment?
    var product: Product?
    var stock: Int
}

/// Applies order-core decisions to Redis: reads a snapshot, lets the pure rules
/// decide, applies the decision in one Lua script guarded by versions, and decides
/// again on a conflict. This is the only place that knows the commerce key layout.
final class OrderStore {
    let redis: any RedisLink
    let historySize: (Channel.Kind) -> Int
    let historyTTL: Int
    let newEpoch: () -> String
    let retention: KeyRetention
    let durability: RedisDurability
    let durabilityTimeoutMs: Int
    static let maxAttempts = 12

    init(redis: any RedisLink, historyTTL: Int, retention: KeyRetention, durability: RedisDurability = .fsync,
         durabilityTimeoutMs: Int = 1_000, historySize: @escaping (Channel.Kind) -> Int, newEpoch: @escaping () -> String) {
        self.redis = redis
        self.historyTTL = historyTTL
        self.retention = retention
        self.durability = durability
        self.durabilityTimeoutMs = durabilityTimeoutMs
        self.historySize = historySize
        self.newEpoch = newEpoch
    }

    enum LoadMode: String { case order, payment, gift, pay, product }

    func load(_ mode: LoadMode, _ id: String, _ done: @escaping (Result<CommerceSnapshot, GatewayError>) -> Void) {
        redis.eval(CommerceScripts.load, keys: [], args: [mode.rawValue, id]) { [self] reply in
            guard let items = reply.array, items.count == 4, let stock = items[3].int else {
                return done(.failure(self.failure(reply, "unexpected store reply")))
            }
            func record(_ r: RedisReply) -> [String: String] {
                var out: [String: String] = [:]
                let flat = r.array ?? []
                var i = 0
                while i + 1 < flat.count {
                    if let k = flat[i].text { out[k] = flat[i + 1].text ?? "" }
                    i += 2
                }
                return out
            }
            let o = record(items[0]), p = record(items[1]), pr = record(items[2])
            done(.success(CommerceSnapshot(order: o.isEmpty ? nil : Order(record: o),
                                           payment: p.isEmpty ? nil : Payment(record: p),
                                           product: pr.isEmpty ? nil : Product(record: pr), stock: Int(stock))))
        }
    }

    /// Load, decide, apply; again from the top when a precondition no longer holds.
    /// `done` gets the decision that was applied (possibly empty) and the snapshot it was made on.
    /// `durable`: an applied decision is answered only once `redis.durability` holds for it
    /// (false for the timer sweep, which answers nobody).
    func run(_ mode: LoadMode, _ id: String, attempt: Int = 1, durable: Bool = true,
             decide: @escaping (CommerceSnapshot) -> Result<Decision, GatewayError>,
             done: @escaping (Result<(Decision, CommerceSnapshot), GatewayError>) -> Void) {
        load(mode, id) { [weak self] loaded in
            guard let self else { return }
            switch loaded {
            case .failure(let e): done(.failure(e))
            case .success(let snapshot):
                switch decide(snapshot) {
                case .failure(let e): done(.failure(e))
                case .success(let decision) where decision.isEmpty:
                    // A repeat (a notify already applied, say) answers success too: only once
                    // the first write it repeats is as durable as a fresh one would be.
                    guard durable else { return done(.success((decision, snapshot))) }
                    self.confirmExisting { error in done(error.map { .failure($0) } ?? .success((decision, snapshot))) }
                case .success(let decision):
                    self.apply(decision, durable: durable) { applied in
                        switch applied {
                        case .failure(let e): done(.failure(e))
                        case .success(true): done(.success((decision, snapshot)))
                        case .success(false):
                            guard attempt < Self.maxAttempts else {
                                return done(.failure(GatewayError(.unavailable, "too much contention on this order, retry")))
                            }
                            self.run(mode, id, attempt: attempt + 1, durable: durable, decide: decide, done: done)
                        }
                    }
                }
            }
        }
    }

    /// True when applied, false when a precondition failed (nothing was changed).
    func apply(_ decision: Decision, durable: Bool = true, _ done: @escaping (Result<Bool, GatewayError>) -> Void) {
        let program = JSON.object([("checks", .array(decision.preconditions.map(check))),
                                   ("ops", .array(decision.effects.map(op))),
                                   ("epoch", .string(newEpoch())), ("ttl", .int(Int64(historyTTL))),
                                   ("psize", .int(Int64(historySize(.product))))])
        redis.eval(CommerceScripts.apply, keys: [], args: [program.serialized()]) { [self] reply in
            if reply.int == 1 {
                guard durable else { return done(.success(true)) }
                return self.confirmDurable { error in done(error.map { .failure($0) } ?? .success(true)) }
            }
            if let a = reply.array, a.first?.int == 0 { return done(.success(false)) }
            done(.failure(self.failure(reply, "store refused the change")))
        }
    }

    /// With `redis.durability` `replicas:N`: WAIT until N replicas hold the writes answered
    /// so far; nil when they do (or with `fsync`, where the server's AOF policy is the promise).
    /// Fewer in time is 503 `unavailable` (temporary): the write stands on the primary and
    /// every money call is safe to repeat (notify, claim, decline and refund are idempotent;
    /// order creation with an `idempotency_key`).
    func confirmDurable(_ done: @escaping (GatewayError?) -> Void) {
        guard case .replicas(let n) = durability else { return done(nil) }
        redis.awaitReplicas(n, timeoutMs: durabilityTimeoutMs) { acknowledged in
            done(acknowledged ? nil : GatewayError(.unavailable, "written, but not confirmed by \(n) Redis replica\(n == 1 ? "" : "s") in time; retry", temporary: true))
        }
    }

    /// `confirmDurable` for an answer that repeats an earlier write (a repeated notify, an
    /// idempotency key seen before). That write may have been made on an earlier connection,
    /// which a WAIT on this one does not cover, so a small write here comes first: replicas
    /// that hold it hold everything before it in the replication stream.
    func confirmExisting(_ done: @escaping (GatewayError?) -> Void) {
        guard case .replicas = durability else { return done(nil) }
        redis.send(["INCR", CommerceKeys.durabilityMark]) { [self] reply in
            if reply.isFailure { return done(failure(reply, "durability mark")) }
            confirmDurable(done)
        }
    }

    /// A script error is a bug or a Redis problem: log it, answer `internal` or `unavailable`.
    private func failure(_ reply: RedisReply, _ what: String) -> GatewayError {
        switch reply {
        case .error(let message):
            FileHandle.standardError.write(Data("order store: \(what): \(message)\n".utf8))
            return GatewayError(.internal, what)
        case .disconnected:
            return .redisUnavailable
        default:
            return GatewayError(.internal, what)
        }
    }

    private func check(_ p: Precondition) -> JSON {
        switch p {
        case .orderVersion(let id, let v):
            .object([("t", .string("hv")), ("k", .string(CommerceKeys.order(id))), ("v", .string(String(v)))])
        case .paymentVersion(let id, let v):
            .object([("t", .string("hv")), ("k", .string(CommerceKeys.payment(id))), ("v", .string(String(v)))])
        case .orderAbsent(let id):
            .object([("t", .string("absent")), ("k", .string(CommerceKeys.order(id)))])
        case .paymentAbsent(let id):
            .object([("t", .string("absent")), ("k", .string(CommerceKeys.payment(id)))])
        case .idempotencyAbsent(let buyer, let key):
            .object([("t", .string("absent")), ("k", .string(CommerceKeys.idempotency(buyer, key)))])
        case .stockAtLeast(let product, let n):
            .object([("t", .string("llen")), ("k", .string(CommerceKeys.stock(product))), ("n", .int(Int64(n)))])
        case .stockBelow(let product, let n):
            .object([("t", .string("llen<")), ("k", .string(CommerceKeys.stock(product))), ("n", .int(Int64(n)))])
        }
    }

    private func hset(_ key: String, _ record: [(String, String)]) -> JSON {
        .object([("t", .string("hset")), ("k", .string(key)),
                 ("kv", .array(record.flatMap { [JSON.string($0.0), .string($0.1)] }))])
    }

    private func op(_ e: Effect) -> JSON {
        switch e {
        case .saveOrder(let o):
            // The key list is owned by the key effects (alloc/return), never overwritten from a snapshot.
            return hset(CommerceKeys.order(o.id), o.record.filter { $0.0 != "keys" })
        case .savePayment(let p):
            return hset(CommerceKeys.payment(p.id), p.record)
        case .allocateKeys(let order, let product, let count):
            return .object([("t", .string("alloc")), ("order", .string(CommerceKeys.order(order))),
                            ("stock", .string(CommerceKeys.stock(product))), ("n", .int(Int64(count)))])
        case .returnKeys(let order, let product):
            return .object([("t", .string("return")), ("order", .string(CommerceKeys.order(order))),
                            ("stock", .string(CommerceKeys.stock(product)))])
        case .burnKeys(let order, let product):
            return .object([("t", .string("burn")), ("order", .string(CommerceKeys.order(order))),
                            ("burned", .string(CommerceKeys.burned(product)))])
        case .membership(let product, let user, let delta):
            return .object([("t", .string("member")), ("k", .string(CommerceKeys.members(product))), ("f", .string(user)),
                            ("d", .int(Int64(delta))), ("p", .string(product))])
        case .schedule(let order, let kind, let at):
            return .object([("t", .string("zadd")), ("k", .string(CommerceKeys.timers)), ("s", .int(at)),
                            ("m", .string("\(kind.rawValue):\(order)"))])
        case .unschedule(let order, let kind):
            return .object([("t", .string("zrem")), ("k", .string(CommerceKeys.timers)), ("m", .string("\(kind.rawValue):\(order)"))])
        case .indexIdempotency(let buyer, let key, let order):
            return .object([("t", .string("set")), ("k", .string(CommerceKeys.idempotency(buyer, key))), ("v", .string(order)),
                            ("px", .int(retention.idempotencyMs))])
        case .indexGiftCode(let code, let order):
            return .object([("t", .string("set")), ("k", .string(CommerceKeys.giftCode(code))), ("v", .string(order)),
                            ("px", .int(retention.giftCodeMs))])
        case .indexPayCode(let code, let order):
            return .object([("t", .string("set")), ("k", .string(CommerceKeys.payCode(code))), ("v", .string(order)),
                            ("px", .int(retention.payCodeMs))])
        case .push(let user, let type, let data):
            return .object([("t", .string("pub")), ("ch", .string("user:\(user)")), ("type", .string(type)),
                            ("data", .string(data.serialized())), ("size", .int(Int64(historySize(.user))))])
        }
    }
}
