/// When a live connection hears about its token's end (contract 4.3): `token.expiring`
/// `warningMs` before `exp`, then a close with 4003 at `exp` unless a `refresh` moved it.
/// Pure: the node keeps one timer per connection for `next`.
public struct TokenLifetime: Equatable, Sendable {
    public static let warningMs: Int64 = 60_000

    public enum Step: Equatable, Sendable {
        /// Push `token.expiring` in `afterMs`.
        case warn(afterMs: Int64)
        /// Close with 4003 in `afterMs`.
        case expire(afterMs: Int64)
    }

    /// Unix seconds, as the token's claim.
    public private(set) var exp: Int64
    /// Whether `token.expiring` went out for this `exp`.
    public private(set) var warned = false

    /// 9999-12-31T23:59:59Z: a later `exp` (a "never expires" bot token of Int64.max) counts
    /// as this, so no millisecond of it overflows.
    public static let latestExp: Int64 = 253_402_300_799

    public init(exp: Int64) { self.exp = Self.bounded(exp) }

    private static func bounded(_ exp: Int64) -> Int64 { min(max(exp, 0), latestExp) }

    /// A refresh: a later `exp` warns again; an earlier or equal one changes nothing.
    public mutating func refreshed(exp newExp: Int64) {
        let newExp = Self.bounded(newExp)
        guard newExp > exp else { return }
        exp = newExp
        warned = false
    }

    public mutating func didWarn() { warned = true }

    /// What to do next, and when. A token with less than `warningMs` left (a short one, or a
    /// refresh just before the end) is warned at once.
    public func next(nowMs: Int64) -> Step {
        let endMs = exp * 1_000
        if !warned { return .warn(afterMs: max(0, endMs - Self.warningMs - nowMs)) }
        return .expire(afterMs: max(0, endMs - nowMs))
    }
}
