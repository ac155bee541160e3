/// How many commands one connection may have going (PROTOCOL 4.1): at most `maxInflight`
/// awaiting replies, and `perSecond` per second from a token bucket that holds twice
/// that (the burst). A frame of 1,300 commands thus starts at most `maxInflight` of them;
/// the rest are refused at once, cheaply, instead of each becoming Redis work.
///
/// Pure: the caller passes the (monotonic) time and reports each reply with `completed()`.
public struct CommandBudget: Sendable {
    public enum Decision: Equatable, Sendable {
        case admit
        /// Refused; worth retrying after this many milliseconds.
        case reject(retryAfterMs: Int64, reason: Reason)
    }

    public enum Reason: Equatable, Sendable {
        /// `maxInflight` commands still await replies.
        case inflight
        /// The token bucket is empty.
        case rate
    }

    /// Retry hint when the in-flight window is full: replies usually come back within a
    /// few milliseconds, so a short wait is enough; any reply frees a slot.
    public static let inflightRetryMs: Int64 = 100

    public let maxInflight: Int
    public let perSecond: Double
    public let burst: Double
    /// Admitted commands whose reply has not gone out yet.
    public private(set) var inflight = 0
    private var tokens: Double
    private var refilledAt: Double

    /// `now` in seconds on a monotonic clock; the bucket starts full.
    public init(maxInflight: Int, perSecond: Int, now: Double) {
        self.maxInflight = max(1, maxInflight)
        self.perSecond = Double(max(1, perSecond))
        burst = 2 * self.perSecond
        tokens = burst
        refilledAt = now
    }

    /// Decides on one command arriving at `now`. An admitted command holds an in-flight
    /// slot until `completed()`; a refused one costs nothing.
    public mutating func admit(now: Double) -> Decision {
        if now > refilledAt {
            tokens = min(burst, tokens + (now - refilledAt) * perSecond)
            refilledAt = now
        }
        if inflight >= maxInflight {
            return .reject(retryAfterMs: Self.inflightRetryMs, reason: .inflight)
        }
        // The epsilon keeps float rounding from refusing a token that has just come back.
        if tokens < 1 - 1e-9 {
            let ms = ((1 - tokens) / perSecond * 1000).rounded(.up)
            return .reject(retryAfterMs: max(1, Int64(ms)), reason: .rate)
        }
        tokens = max(0, tokens - 1)
        inflight += 1
        return .admit
    }

    /// The reply of an admitted command went out (or will never be needed). Call exactly
    /// once per admitted command; extra calls are ignored rather than going negative.
    public mutating func completed() {
        if inflight > 0 { inflight -= 1 }
    }
}
