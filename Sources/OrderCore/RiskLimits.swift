import GatewayProtocol

/// Per-buyer limits on creating orders (contract 4.6, `risk.*`). Pure: what an order is
/// counted against and which decisions end a count; the counting itself is atomic in
/// Redis, across nodes (`RiskStore`).
public struct RiskLimits: Equatable, Sendable {
    /// Unpaid orders of one buyer at once; 0: no limit.
    public var maxPendingOrders: Int
    /// Gift and friend-pay orders of one buyer in any `windowMs`; 0: no limit.
    public var maxRequestsPerHour: Int
    /// The sliding window of `maxRequestsPerHour`.
    public static let windowMs: Int64 = 3_600_000

    public init(maxPendingOrders: Int, maxRequestsPerHour: Int) {
        self.maxPendingOrders = maxPendingOrders
        self.maxRequestsPerHour = maxRequestsPerHour
    }

    /// The place an order about to be created takes, or nil when no limit counts it.
    /// `payWindowMs` bounds how long a place is held should its release be lost.
    public func reservation(order: String, buyer: String, kind: OrderKind, payWindowMs: Int64) -> RiskReservation? {
        let requests = kind == .normal ? 0 : maxRequestsPerHour
        guard maxPendingOrders > 0 || requests > 0 else { return nil }
        return RiskReservation(order: order, buyer: buyer, maxPending: maxPendingOrders, maxRequests: requests,
                               payWindowMs: payWindowMs, windowMs: Self.windowMs)
    }

    /// The orders an applied decision took out of `pending_payment`: paid (delivered, gift
    /// paid, abnormal), canceled or expired. Their places are free again. A decision that
    /// ends an order's payment timer or cancels it is exactly that; claims and refunds of
    /// orders paid long before are not, so they cost no release.
    public static func leftPending(_ decision: Decision) -> [(order: String, buyer: String)] {
        guard let order = decision.savedOrder, order.status != .pendingPayment else { return [] }
        let endsPayTimer = decision.effects.contains { $0 == .unschedule(order: order.id, .payment) }
        guard endsPayTimer || order.status == .canceled else { return [] }
        return [(order.id, order.buyer)]
    }
}

/// One order's claim on its buyer's limits, taken before the order is created.
public struct RiskReservation: Equatable, Sendable {
    public var order: String
    public var buyer: String
    /// 0: not counted against the limit.
    public var maxPending: Int
    public var maxRequests: Int
    public var payWindowMs: Int64
    public var windowMs: Int64

    public init(order: String, buyer: String, maxPending: Int, maxRequests: Int, payWindowMs: Int64, windowMs: Int64) {
        self.order = order
        self.buyer = buyer
        self.maxPending = maxPending
        self.maxRequests = maxRequests
        self.payWindowMs = payWindowMs
        self.windowMs = windowMs
    }
}

/// Which limit refused a reservation, and when a place is free again.
public enum RiskRefusal: Equatable, Sendable {
    case pendingOrders(limit: Int, retryAfterMs: Int64)
    case requestsPerHour(limit: Int, retryAfterMs: Int64)

    /// 429 `rate_limited` (temporary): the buyer may try again after `retry_after_ms`.
    public var error: GatewayError {
        switch self {
        case .pendingOrders(let limit, let after):
            GatewayError(.rateLimited, "at most \(limit) unpaid orders per buyer: pay or cancel one first",
                         temporary: true, retryAfterMs: max(1, after))
        case .requestsPerHour(let limit, let after):
            GatewayError(.rateLimited, "at most \(limit) gift and friend-pay orders per buyer per hour",
                         temporary: true, retryAfterMs: max(1, after))
        }
    }
}
