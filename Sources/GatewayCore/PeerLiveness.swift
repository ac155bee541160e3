/// Whether a WebSocket peer is still there, pure: a peer quiet for `pingSeconds` is pinged,
/// and dropped only when that ping stays unanswered `pongGraceSeconds` (anything it sends
/// answers it), never for being quiet. The loop's sweep visits each connection a few times
/// per ping interval and carries out the returned action.
public struct PeerLiveness: Sendable {
    public enum Action: Sendable, Equatable {
        case none
        /// Ask the socket for a write turn and send a ping then (`takeOwedPing`).
        case sendPing
        /// The peer stopped answering: cut the socket. No close frame, since nobody reads it
        /// (the peer sees the connection end without one: 1006 in a browser).
        case drop
    }

    public let pingSeconds: Double
    /// How long an unanswered ping is given before the peer counts as dead.
    public let pongGraceSeconds: Double
    /// Last time anything (data or pong) came from the peer.
    public private(set) var lastHeard: Double
    /// When the unanswered ping was asked for.
    public private(set) var pingSentAt: Double?
    /// A ping was asked for and has not been written yet.
    public private(set) var pingOwed = false

    public init(pingSeconds: Int, now: Double) {
        self.pingSeconds = Double(max(pingSeconds, 1))
        pongGraceSeconds = Double(max(pingSeconds, 1) + 5)
        lastHeard = now
    }

    /// Anything from the peer: it is alive, and a ping already written is answered. A ping
    /// still waiting for its write turn is not: a peer that sends but never lets us write
    /// (its receive window full) must still reach the drop.
    public mutating func heard(at now: Double) {
        lastHeard = now
        if !pingOwed { pingSentAt = nil }
    }

    /// One visit of the sweep. A closing connection is not pinged (its close has its own
    /// deadline), but a ping it was already sent still counts.
    public mutating func check(at now: Double, closing: Bool) -> Action {
        if let sent = pingSentAt { return now - sent >= pongGraceSeconds ? .drop : .none }
        guard now - lastHeard >= pingSeconds, !pingOwed, !closing else { return .none }
        pingOwed = true
        pingSentAt = now
        return .sendPing
    }

    /// At the socket's write turn: whether a ping goes out first.
    public mutating func takeOwedPing() -> Bool {
        defer { pingOwed = false }
        return pingOwed
    }
}
