import GatewayProtocol

/// What must still hold when a decision is applied; if any fails the store re-reads
/// and decides again, so concurrent notifies, claims and expiries on several nodes
/// serialize on the order's version.
public enum Precondition: Equatable, Sendable {
    case orderVersion(String, Int)
    case orderAbsent(String)
    case paymentVersion(String, Int)
    case paymentAbsent(String)
    case stockAtLeast(product: String, Int)
    case stockBelow(product: String, Int)
    /// Idempotency keys are per (caller scope, buyer, product); `key` carries the scope.
    case idempotencyAbsent(buyer: String, product: String, key: String)
    /// The user's validity membership record of the product is still `record` ('' = none).
    case membershipRecord(product: String, user: String, record: String)
    /// The user's entry in the product's restock holds is exactly `record` ('' = none): a
    /// compare-and-set, so a release, another payment or a new hold in between re-decides.
    case holdRecord(product: String, user: String, record: String)
}

/// Timers live in Redis by due time; any node runs them.
public enum TimerKind: String, Sendable {
    /// Unpaid order (or friend-pay request) expiry.
    case payment = "pay"
    /// Unclaimed gift expiry.
    case gift
}

/// One change the store applies atomically with the others of a decision.
public enum Effect: Equatable, Sendable {
    case saveOrder(Order)
    case savePayment(Payment)
    /// Move `count` key ids from the product's stock to the order (its `keyIDs` become them).
    case allocateKeys(order: String, product: String, count: Int)
    /// The order's unrevealed keys go back to stock.
    case returnKeys(order: String, product: String)
    /// The order's keys were revealed: never sold again.
    case burnKeys(order: String, product: String)
    /// The user's held restock key joins the order's keys; the hold ends.
    case takeHeldKey(order: String, product: String, user: String)
    /// Group membership held by `user` through orders of `product`.
    case membership(product: String, user: String, delta: Int)
    /// Member points (contract 4.6): a delivered order's amount counts for its owner until a
    /// refund. Keyed by order, so a repeat counts once and a revoke takes back what was counted.
    case awardPoints(user: String, order: String, amount: Int64)
    case revokePoints(user: String, order: String)
    case schedule(order: String, TimerKind, at: Int64)
    case unschedule(order: String, TimerKind)
    case indexIdempotency(buyer: String, product: String, key: String, order: String)
    case indexGiftCode(String, order: String)
    case indexPayCode(String, order: String)
    case push(user: String, type: String, data: JSON)
    /// Appended to the event log in the same atomic step (contract 4.4).
    case event(EventRecord)
    /// A validity membership (4.6) as it is now (not the group membership above).
    case saveMembership(Membership)
    /// The membership's next reminder in the timer set (`mem:<P>/<U>`); a later one moves it.
    case scheduleReminder(product: String, user: String, at: Int64)
    case unscheduleReminder(product: String, user: String)
    /// The user's listing index of memberships (another slot: written ahead on a cluster).
    case indexMembership(user: String, product: String)
    /// A sale order's units (4.8): `count` of the sale's set-aside key ids become the order's
    /// keys, counted against `user`'s share; the sale's checks ran before it in the same step.
    case takeSaleUnits(order: String, product: String, sale: String, user: String, count: Int)
    /// An unpaid sale order's key ids go back to the sale while it is live, else to the
    /// product's stock; `user`'s share shrinks by `count`.
    case returnSaleUnits(order: String, product: String, sale: String, user: String, count: Int)
}

/// A decision of the order core: apply `effects` if every precondition holds.
public struct Decision: Equatable, Sendable {
    public var preconditions: [Precondition]
    public var effects: [Effect]
    public init(preconditions: [Precondition] = [], effects: [Effect] = []) {
        self.preconditions = preconditions
        self.effects = effects
    }

    public var isEmpty: Bool { effects.isEmpty }

    /// The order as it will be after the decision (last save wins).
    public var savedOrder: Order? {
        for e in effects.reversed() { if case .saveOrder(let o) = e { return o } }
        return nil
    }

    public var savedPayment: Payment? {
        for e in effects.reversed() { if case .savePayment(let p) = e { return p } }
        return nil
    }
}
