/// What to do with the reply to one command sent to a cluster master. Pure: the cluster
/// client keeps one per command in flight and carries out the decision.
///
/// Only replies that prove the command did not run are retried (a redirect, TRYAGAIN,
/// CLUSTERDOWN): a lost connection leaves its outcome unknown, so it is answered
/// `.disconnected` and the caller decides (503 `unavailable`), never resent behind its back.
public struct ClusterCommandRetry: Sendable {
    public enum Decision: Sendable, Equatable {
        /// The reply is the answer.
        case deliver
        /// The slot lives on `to` now: refresh the topology, resend there.
        case moved(slot: Int, to: RedisEndpoint)
        /// The slot is being migrated to `to`: send ASKING then the command there (once).
        case ask(slot: Int, to: RedisEndpoint)
        /// The cluster is between states (TRYAGAIN, CLUSTERDOWN): resend after `afterMs`.
        case retry(afterMs: Int)
        /// Give up: answer `.disconnected` (the caller answers 503 `unavailable`).
        case unavailable
    }

    /// Redirects followed so far; a loop of them (a topology in flux) ends as an error.
    public private(set) var redirects = 0
    public private(set) var retries = 0
    /// Monotonic ms after which TRYAGAIN/CLUSTERDOWN are no longer retried (`redis.timeout_s`).
    public let deadlineMs: UInt64
    public static let maxRedirects = 5

    public init(nowMs: UInt64, timeoutMs: Int) {
        deadlineMs = nowMs + UInt64(max(timeoutMs, 0))
    }

    public mutating func decide(_ reply: RedisReply, answeredBy: RedisEndpoint, nowMs: UInt64) -> Decision {
        guard case .error(let message) = reply else { return .deliver }
        if let redirect = ClusterRedirect(error: message, answeredBy: answeredBy) {
            guard redirects < Self.maxRedirects else { return .deliver }
            redirects += 1
            switch redirect {
            case .moved(let slot, let to): return .moved(slot: slot, to: to)
            case .ask(let slot, let to): return .ask(slot: slot, to: to)
            }
        }
        guard message.hasPrefix("TRYAGAIN") || message.hasPrefix("CLUSTERDOWN") else { return .deliver }
        // 50, 100, 200, 400, 400 ... ms: a migration's TRYAGAIN clears fast, a failover takes
        // about the node timeout.
        let delay = min(400, 50 << min(retries, 3))
        guard nowMs + UInt64(delay) <= deadlineMs else { return .unavailable }
        retries += 1
        return .retry(afterMs: delay)
    }
}
