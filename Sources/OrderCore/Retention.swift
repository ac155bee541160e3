/// How long the order core's lookup keys live (ms). Each lives as long as what it points
/// to can still be used through it, plus a grace, so none piles up forever.
public struct KeyRetention: Equatable, Sendable {
    /// Idempotency keys: a retry of the create can come until the order could no longer be
    /// paid (its TTL plus the payment grace), and for at least a day.
    public var idempotencyMs: Int64
    /// Gift codes: the gift can be paid until `orders.ttl_s` plus the payment grace (a late
    /// notify), is claimable for `gifts.ttl_s` from then, and its code answers for one
    /// grace more (a late claim answers `gone` rather than `not_found`).
    public var giftCodeMs: Int64
    /// Pay codes: payable until `friendpay.ttl_s` plus the payment grace, then one grace more.
    public var payCodeMs: Int64

    public static let day: Int64 = 86_400_000

    public init(_ times: CommerceTimes) {
        let grace = times.paymentGrace
        idempotencyMs = max(Self.day, max(times.orderTTL, times.friendpayTTL) + grace)
        giftCodeMs = times.orderTTL + grace + times.giftTTL + grace
        payCodeMs = times.friendpayTTL + grace + grace
    }
}
