import GatewayRedis

/// The one-time upgrade of a v1 installation's order records, so its orders keep working.
///
/// v1 ran on one Redis server and stored `gw:{order:<id>}:info`, `gw:{payment:<id>}:info`,
/// `gw:giftcode:<code>` / `gw:paycode:<code>` (value: the order id) and
/// `gw:idem:{<buyer>}:<scoped key>` (value: the order id). Its ids (`o-<20 hex>`) still name
/// those records (`CommerceKeys.Legacy`); what the load script needs on top is added here:
/// the link fields of orders and payments, lookup codes holding the order's key, and each
/// idempotency key under today's name (per scope, buyer, product) beside v1's, with the same
/// remaining TTL. Timers (`gw:timers`, `<kind>:<order id>`) have not changed.
///
/// Runs at every connect on one server until `gw:schema` is 2 (never on a cluster: v1 never
/// ran on one). It walks the keyspace with SCAN in pages of `pageSize`, one page at a time,
/// so a big database never holds up the loop or Redis. Every step is idempotent (guarded by
/// the value it replaces, or NX, or the record's existence), so several nodes upgrading at
/// once change each record the same way, and a run cut short (a lost connection, a crash)
/// simply starts again from the first page; the marker is written only after a full pass.
/// Until it is done the commerce store answers 503 `unavailable` (temporary) and the node's
/// `/readyz` stays 503, so no decision is made on a record that is half upgraded.
final class LegacyCommerceMigration {
    /// What this node changed (nodes upgrading at once split the work: their counts add up).
    struct Counts: Equatable {
        var orders = 0, payments = 0, codes = 0, idempotencyKeys = 0, scanned = 0
    }

    let redis: any RedisLink
    let pageSize: Int
    let log: (String) -> Void
    /// Runs `body` after `ms` (the node's loop): a failed run is tried again after a second.
    let after: (Int, @escaping () -> Void) -> Void
    private(set) var isDone = false
    private(set) var counts = Counts()
    private var running = false

    init(redis: any RedisLink, pageSize: Int = 500, log: @escaping (String) -> Void,
         after: @escaping (Int, @escaping () -> Void) -> Void) {
        self.redis = redis
        self.pageSize = pageSize
        self.log = log
        self.after = after
    }

    /// Called at every connect; does nothing once done or while a run is under way.
    func start() {
        guard !isDone, !running else { return }
        if redis.isCluster { isDone = true; return }
        running = true
        counts = Counts()
        let marker = CommerceKeys.Legacy.schemaMarker
        redis.send(["GET", marker], key: marker) { reply in
            switch reply {
            case .string(let bytes) where Int(String(decoding: bytes, as: UTF8.self)) ?? 0 >= CommerceKeys.Legacy.schema:
                self.running = false
                self.isDone = true
            case .string, .null: self.scan(cursor: "0")
            default: self.failed("reading \(marker): \(reply)")
            }
        }
    }

    private func failed(_ why: String) {
        running = false
        log("upgrade of v1 order records interrupted (\(why)); starting again")
        after(1_000) { [weak self] in if self?.redis.isReady == true { self?.start() } }
    }

    private func scan(cursor: String) {
        redis.send(["SCAN", cursor, "MATCH", "gw:*", "COUNT", pageSize], key: nil) { reply in
            var items: RedisArrayReader
            let next: String, keys: [String]
            do {
                items = try RedisArrayReader(reply)
                next = try items.next(String.self)
                keys = try items.next([String].self)
            } catch {
                return self.failed("SCAN: \(error)")
            }
            self.counts.scanned += keys.count
            let steps = keys.compactMap(self.step(for:))
            var remaining = steps.count, allDone = true
            let pageDone = {
                guard allDone else { return self.failed("a step failed") }
                next == "0" ? self.finish() : self.scan(cursor: next)
            }
            guard remaining > 0 else { return pageDone() }
            for step in steps {
                step { ok in
                    allDone = allDone && ok
                    remaining -= 1
                    if remaining == 0 { pageDone() }
                }
            }
        }
    }

    private func finish() {
        let marker = CommerceKeys.Legacy.schemaMarker
        redis.send(["SET", marker, CommerceKeys.Legacy.schema], key: marker) { reply in
            guard !reply.isFailure else { return self.failed("writing \(marker): \(reply)") }
            self.running = false
            self.isDone = true
            let c = self.counts
            self.log("order records at schema \(CommerceKeys.Legacy.schema): upgraded \(c.orders) v1 orders, \(c.payments) payments, "
                     + "\(c.codes) gift/pay codes, \(c.idempotencyKeys) idempotency keys (\(c.scanned) keys scanned)")
        }
    }

    typealias Step = (@escaping (Bool) -> Void) -> Void

    /// The upgrade of one v1 key, nil for any other key.
    private func step(for key: String) -> Step? {
        if let id = Self.between(key, "gw:{order:", "}:info"), CommerceKeys.Legacy.isID(id) { return order(key) }
        if let id = Self.between(key, "gw:{payment:", "}:info"), CommerceKeys.Legacy.isID(id) { return payment(key) }
        if let code = Self.between(key, "gw:giftcode:", ""), CommerceKeys.Legacy.isID(code) { return lookup(key) }
        if let code = Self.between(key, "gw:paycode:", ""), CommerceKeys.Legacy.isID(code) { return lookup(key) }
        if let rest = Self.between(key, "gw:idem:{", ""), let close = rest.range(of: "}:") {
            return idempotency(key, buyer: String(rest[..<close.lowerBound]), scopedKey: String(rest[close.upperBound...]))
        }
        return nil
    }

    /// Order: `link:info`, `link:stock` from its product, `link:payment` from its payment.
    private func order(_ key: String) -> Step {
        { done in
            self.redis.send(["HMGET", key, "product", "payment"], key: key) { reply in
                guard let fields = try? [String?](redisReply: reply), fields.count == 2 else { return done(false) }
                guard let product = fields[0], !product.isEmpty else { return done(true) }
                var links: [RedisArgument] = [CommerceKeys.Link.info, CommerceKeys.info(product),
                                              CommerceKeys.Link.stock, CommerceKeys.stock(product)]
                if let payment = fields[1], let paymentKey = CommerceKeys.payment(payment) {
                    links += [CommerceKeys.Link.payment, paymentKey]
                }
                self.redis.run(CommerceScripts.legacyLink, keys: [key], args: links) { reply in
                    if reply.int == 1 { self.counts.orders += 1 }
                    done(!reply.isFailure)
                }
            }
        }
    }

    /// Payment: `link:order` from its order id.
    private func payment(_ key: String) -> Step {
        { done in
            self.redis.send(["HGET", key, "order"], key: key) { reply in
                guard !reply.isFailure else { return done(false) }
                guard let order = try? String?(redisReply: reply), let orderKey = CommerceKeys.order(order) else { return done(true) }
                self.redis.run(CommerceScripts.legacyLink, keys: [key], args: [CommerceKeys.Link.order, orderKey]) { reply in
                    if reply.int == 1 { self.counts.payments += 1 }
                    done(!reply.isFailure)
                }
            }
        }
    }

    /// Gift or pay code: the order's key instead of its id.
    private func lookup(_ key: String) -> Step {
        { done in
            self.redis.send(["GET", key], key: key) { reply in
                guard !reply.isFailure else { return done(false) }
                // Already the order's key (a rerun), or gone.
                guard let value = try? String?(redisReply: reply), CommerceKeys.Legacy.isID(value), let orderKey = CommerceKeys.order(value) else { return done(true) }
                self.redis.run(CommerceScripts.legacyLookup, keys: [key], args: [value, orderKey]) { reply in
                    if reply.int == 1 { self.counts.codes += 1 }
                    done(!reply.isFailure)
                }
            }
        }
    }

    /// Idempotency key: today's name needs the order's product.
    private func idempotency(_ key: String, buyer: String, scopedKey: String) -> Step {
        { done in
            self.redis.send(["GET", key], key: key) { reply in
                guard !reply.isFailure else { return done(false) }
                guard let value = try? String?(redisReply: reply), let orderKey = CommerceKeys.order(value) else { return done(true) }
                self.redis.send(["HGET", orderKey, "product"], key: orderKey) { reply in
                    guard !reply.isFailure else { return done(false) }
                    guard let product = try? String?(redisReply: reply), !product.isEmpty else { return done(true) }
                    let today = CommerceKeys.idempotency(product: product, buyer: buyer, key: scopedKey)
                    self.redis.run(CommerceScripts.legacyIdempotency, keys: [key, today], args: [value, orderKey]) { reply in
                        if reply.int == 1 { self.counts.idempotencyKeys += 1 }
                        done(!reply.isFailure)
                    }
                }
            }
        }
    }

    /// The part of `key` between `prefix` and `suffix` (which may be empty), nil when it has neither or is empty.
    static func between(_ key: String, _ prefix: String, _ suffix: String) -> String? {
        guard key.hasPrefix(prefix), key.hasSuffix(suffix), key.utf8.count > prefix.utf8.count + suffix.utf8.count else { return nil }
        return String(key.dropFirst(prefix.count).dropLast(suffix.count))
    }
}
