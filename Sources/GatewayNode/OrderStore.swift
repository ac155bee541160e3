import GatewayProtocol
import OrderCore

/// Runs order-core decisions against a `CommerceStore`: reads a snapshot, lets the pure
/// rules decide, applies the decision guarded by its preconditions, and decides again on
/// a conflict. No Redis here: the store owns the key layout and every call.
package final class OrderStore {
    let store: any CommerceStore
    static let maxAttempts = 12
    /// Told of every decision once applied (and durable when asked): for indexes kept in
    /// other slots, written after the decision, best effort (the refunds list).
    var afterApply: ((Decision) -> Void)?

    init(store: any CommerceStore) {
        self.store = store
    }

    package func load(_ entry: CommerceEntry, _ done: @escaping (Result<CommerceSnapshot, GatewayError>) -> Void) {
        store.load(entry, done)
    }

    /// Sends the load of `entry` now, for a `run` that starts once calls it does not depend on
    /// have answered (an order's creation: beside the buyer's risk reservation), so the two
    /// are one wait, not one after the other.
    package func sendLoad(_ entry: CommerceEntry) -> SentLoad {
        let sent = SentLoad()
        store.load(entry, member: nil) { sent.answer($0) }
        return sent
    }

    /// Load, decide, apply; again from the top when a precondition no longer holds.
    /// `done` gets the decision that was applied (possibly empty) and the snapshot it was made on.
    /// `durable`: an applied decision is answered only once `redis.durability` holds for it
    /// (false for the timer sweep, which answers nobody).
    /// `member`: whose validity membership the snapshot reads instead of the order's owner (a gift's claimer).
    /// `sent`: the first attempt's load, sent earlier by `sendLoad(entry)` (a retry loads again).
    package func run(_ entry: CommerceEntry, member: String? = nil, attempt: Int = 1, durable: Bool = true, sent: SentLoad? = nil,
             decide: @escaping (CommerceSnapshot) -> Result<Decision, GatewayError>,
             done: @escaping (Result<(Decision, CommerceSnapshot), GatewayError>) -> Void) {
        let load: (@escaping (Result<CommerceSnapshot, GatewayError>) -> Void) -> Void =
            sent.map { sent in { sent.take($0) } } ?? { self.store.load(entry, member: member, $0) }
        load { [weak self] loaded in
            guard let self else { return }
            switch loaded {
            case .failure(let e): done(.failure(e))
            case .success(let snapshot):
                let product = Self.product(of: snapshot, entry)
                switch decide(snapshot) {
                case .failure(let e): done(.failure(e))
                case .success(let decision) where decision.isEmpty:
                    // A repeat (a notify already applied, say) answers success too: only once
                    // the first write it repeats is as durable as a fresh one would be.
                    guard durable, let product else { return done(.success((decision, snapshot))) }
                    self.store.confirmDurable(product: product, repeated: true) { error in
                        done(error.map { .failure($0) } ?? .success((decision, snapshot)))
                    }
                case .success(let decision):
                    guard let product else { return done(.failure(GatewayError(.internal, "a decision without a product"))) }
                    self.store.apply(decision, product: product) { applied in
                        switch applied {
                        case .failure(let e): done(.failure(e))
                        case .success(.applied):
                            guard durable else {
                                self.store.deliverPushes(of: decision, product: product)
                                self.afterApply?(decision)
                                return done(.success((decision, snapshot)))
                            }
                            // Pushes go out only once the decision is durable: a push about a
                            // decision a failover may still lose would tell users something false.
                            self.store.confirmDurable(product: product, repeated: false) { error in
                                if let error { return done(.failure(error)) }
                                self.store.deliverPushes(of: decision, product: product)
                                self.afterApply?(decision)
                                done(.success((decision, snapshot)))
                            }
                        case .success(.refused(.idempotencyAbsent)):
                            // Another request made an order with this key: deciding again cannot
                            // succeed; the caller answers the existing order.
                            done(.failure(Self.idempotencyKeyTaken))
                        case .success(.refused):
                            guard attempt < Self.maxAttempts else {
                                return done(.failure(GatewayError(.unavailable, "too much contention on this order, retry")))
                            }
                            self.run(entry, member: member, attempt: attempt + 1, durable: durable, decide: decide, done: done)
                        }
                    }
                }
            }
        }
    }

    /// The flash sales' store: the order store's own, nil with one that has none (the memory twin).
    var sales: (any SaleStore)? { store as? any SaleStore }

    /// A `sale.buy`: `decision` (`OrderRules.createSaleOrder`) applied with the sale's checks
    /// in one step, as `run` applies one (durable before answering, pushes handed on, told to
    /// `afterApply`), but with no load before it and no retry: a refusal is the answer.
    package func buySale(_ decision: Decision, sale: Sale, buyer: String, quantity: Int,
                         done: @escaping (Result<SaleBuyOutcome, GatewayError>) -> Void) {
        guard let sales else { return done(.failure(GatewayError(.unavailable, "flash sales need Redis"))) }
        let product = sale.product
        sales.buySale(decision, sale: sale, buyer: buyer, quantity: quantity, product: product) { [weak self] result in
            guard let self, case .success(.bought) = result else { return done(result) }
            // As `run`: pushes only once the order is durable.
            self.store.confirmDurable(product: product, repeated: false) { error in
                if let error { return done(.failure(error)) }
                self.store.deliverPushes(of: decision, product: product)
                self.afterApply?(decision)
                done(result)
            }
        }
    }

    /// A snapshot load on its way (`sendLoad`), taken by one `run`, whichever comes first.
    package final class SentLoad {
        private var result: Result<CommerceSnapshot, GatewayError>?
        private var taker: ((Result<CommerceSnapshot, GatewayError>) -> Void)?

        func answer(_ loaded: Result<CommerceSnapshot, GatewayError>) {
            guard let taker else { return result = loaded }
            self.taker = nil
            taker(loaded)
        }

        func take(_ done: @escaping (Result<CommerceSnapshot, GatewayError>) -> Void) {
            guard let result else { return taker = done }
            self.result = nil
            done(result)
        }
    }

    /// The failure of a create whose idempotency key another request used meanwhile.
    static let idempotencyKeyTaken = GatewayError(.conflict, "idempotency_key already used")

    /// With `redis.durability` `replicas:N`: nil once N replicas hold the writes in the slot
    /// of `product`. Fewer in time is 503 `unavailable` (temporary): the write stands on the
    /// primary and every money call is safe to repeat (notify, claim, decline and refund
    /// are idempotent; order creation with an `idempotency_key`).
    func confirmDurable(product: String, repeated: Bool = false, _ done: @escaping (GatewayError?) -> Void) {
        store.confirmDurable(product: product, repeated: repeated, done)
    }

    /// How long past due a timer whose order does not exist is kept: timers are written
    /// ahead of the decision that creates their order, so one seen a moment before its
    /// order lands must not be dropped; one left by a decision that never applied is.
    static let timerWithoutOrderGraceMs: Int64 = 60_000

    /// Whether a due timer whose expiry decided nothing is removed: yes when its order
    /// moved on; when its order does not exist, only once it is past the grace.
    static func dropsTimer(_ timer: DueTimer, orderExists: Bool, now: Int64) -> Bool {
        orderExists || now - timer.due >= timerWithoutOrderGraceMs
    }

    /// The product whose slot a decision on `snapshot` writes to.
    static func product(of snapshot: CommerceSnapshot, _ entry: CommerceEntry) -> String? {
        if let order = snapshot.order { return order.product }
        if let product = snapshot.product { return product.id }
        switch entry {
        case .product(let id), .idempotency(let id, _, _), .membership(let id, _): return id
        default: return nil
        }
    }
}
