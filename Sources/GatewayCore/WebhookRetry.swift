/// When a webhook delivery that failed is tried again (contract 4.4): exponential backoff
/// from 1 s, doubling, capped at `webhooks.max_backoff_s`, for `webhooks.retry_for_s` from
/// the event's time; the last try is made at that deadline, then the event is given up.
/// Jitter (+-20 %) keeps many orders that failed together (a receiver down) from retrying
/// in lock-step. Pure: the caller draws the jitter and reads the clock.
public struct WebhookRetry: Equatable, Sendable {
    public var maxBackoffMs: Int64
    public var retryForMs: Int64

    /// No answer within this is a failure (the node ends the request).
    public static let answerTimeoutMs: Int64 = 10_000
    /// How long a claimed event is held by one node: well past the answer timeout, so a live
    /// node always settles (or lets go) inside it; a killed node's events come due after it.
    public static let leaseMs: Int64 = max(30_000, 3 * answerTimeoutMs)
    static let firstBackoffMs: Int64 = 1_000
    static let jitter = 0.2

    public enum Next: Equatable, Sendable {
        case retry(atMs: Int64)
        case giveUp
    }

    public init(maxBackoffSeconds: Int, retryForSeconds: Int) {
        maxBackoffMs = Int64(maxBackoffSeconds) * 1_000
        retryForMs = Int64(retryForSeconds) * 1_000
    }

    /// The backoff after failed attempt `attempt` (1-based), `jitter` in 0..<1 (0.5: none).
    public func backoffMs(attempt: Int, jitter: Double) -> Int64 {
        let doublings = min(max(attempt - 1, 0), 40)
        let base = min(maxBackoffMs, Self.firstBackoffMs << Int64(doublings))
        let factor = 1 - Self.jitter + 2 * Self.jitter * min(max(jitter, 0), 1)
        return min(maxBackoffMs, max(1, Int64((Double(base) * factor).rounded())))
    }

    /// After attempt `attempt` of an event written at `eventAtMs` failed at `nowMs`.
    public func afterFailure(attempt: Int, eventAtMs: Int64, nowMs: Int64, jitter: Double) -> Next {
        let deadline = eventAtMs + retryForMs
        guard nowMs < deadline else { return .giveUp }
        return .retry(atMs: min(deadline, nowMs + backoffMs(attempt: attempt, jitter: jitter)))
    }
}
