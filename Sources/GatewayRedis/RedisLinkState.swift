/// The phases of the node's link to one Redis server, pure: two connections (commands and
/// pub/sub) that count as up together once both finished their handshake, and go down
/// together, then come back after a jittered exponential backoff. Each event returns the
/// actions the glue (`RedisClient`) carries out, as `ClusterLinkState` does for a cluster.
public struct RedisLinkState: Sendable {
    /// The link's two connections.
    public enum Connection: Sendable, Hashable { case commands, subscriber }

    public enum Phase: Sendable, Equatable {
        case idle
        /// Both connections opened; these have finished their handshake.
        case connecting(handshaken: Set<Connection>)
        case ready
        /// Down, a reconnect scheduled.
        case backingOff
        case stopped
    }

    public enum Action: Sendable, Equatable {
        /// Open both connections afresh and start their handshakes.
        case open
        /// Detach both connections and close them: every pending reply fails once, now.
        case closeConnections
        /// Open again after a delay drawn from this range of milliseconds (full jitter over
        /// the upper half, so nodes that lost Redis together do not come back in step).
        case reconnect(afterMs: ClosedRange<Int>)
        /// Forget the scheduled reconnect.
        case cancelReconnect
        /// Both connections are up (again).
        case ready
        /// The link was ready and went down; commands in flight have failed.
        case lost(String)
        /// Not usable while not ready; said once per distinct reason.
        case problem(String)
        /// Redis must not be used (its eviction policy at first start): stop the node.
        case fatal(String)
    }

    public private(set) var phase = Phase.idle
    /// Both connections were up once: from then on a bad eviction policy is retried, not
    /// fatal. Set from outside for a cluster master linked after the cluster was ready.
    public var hasBeenReady = false
    /// Reconnects scheduled since the link was last ready: the backoff's exponent.
    public private(set) var attempt = 0
    /// Reconnects carried out (metrics).
    public private(set) var reconnects = 0
    private var lastProblem = ""

    public init() {}

    public var isReady: Bool { phase == .ready }

    /// The delay range before reconnect number `attempt` (1-based): 100 ms doubling to a 5 s
    /// cap, the lower half of the range cut off.
    public static func backoff(attempt: Int) -> ClosedRange<Int> {
        let cap = min(5_000, 100 * (1 << min(max(attempt, 0), 6)))
        return cap / 2...cap
    }

    // MARK: Events

    public mutating func start() -> [Action] {
        guard phase == .idle else { return [] }
        phase = .connecting(handshaken: [])
        return [.open]
    }

    /// `connection` finished AUTH, SELECT (and for commands the scripts and the policy check).
    public mutating func handshakeCompleted(_ connection: Connection) -> [Action] {
        guard case .connecting(var handshaken) = phase else { return [] }
        handshaken.insert(connection)
        guard handshaken.count == 2 else {
            phase = .connecting(handshaken: handshaken)
            return []
        }
        phase = .ready
        hasBeenReady = true
        attempt = 0
        lastProblem = ""
        return [.ready]
    }

    /// Either connection dropped, failed its handshake, or stalled: both go, and come back
    /// after the backoff.
    public mutating func connectionDown(_ reason: String, endpoint: String) -> [Action] {
        let wasReady: Bool
        switch phase {
        case .ready: wasReady = true
        case .connecting: wasReady = false
        case .idle, .backingOff, .stopped: return []
        }
        var actions: [Action] = []
        if !wasReady, let said = report("redis at \(endpoint) not usable: \(reason); retrying") { actions.append(said) }
        actions.append(.closeConnections)
        if wasReady { actions.append(.lost(reason)) }
        attempt += 1
        phase = .backingOff
        actions.append(.reconnect(afterMs: Self.backoff(attempt: attempt)))
        return actions
    }

    /// The command connection found an eviction policy other than `noeviction`: fatal before
    /// the link was ever ready, afterwards (a failover to a misconfigured server) not ready
    /// and retried until it is fixed.
    public mutating func evictionPolicyRefused(_ what: String, endpoint: String) -> [Action] {
        guard case .connecting = phase else { return [] }
        if !hasBeenReady { return [.fatal(what + " and start again")] }
        return connectionDown(what + "; not ready until then", endpoint: endpoint)
    }

    /// The backoff passed.
    public mutating func reconnectDue() -> [Action] {
        guard phase == .backingOff else { return [] }
        reconnects += 1
        phase = .connecting(handshaken: [])
        return [.open]
    }

    public mutating func stop() -> [Action] {
        let backingOff = phase == .backingOff
        guard phase != .stopped else { return [] }
        phase = .stopped
        return (backingOff ? [.cancelReconnect] : []) + [.closeConnections]
    }

    /// A problem worth saying, unless it was the last one said.
    public mutating func report(_ problem: String) -> Action? {
        guard problem != lastProblem else { return nil }
        lastProblem = problem
        return .problem(problem)
    }
}
