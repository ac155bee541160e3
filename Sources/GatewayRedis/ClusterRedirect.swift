/// A Redis Cluster error reply that says where a command must go instead.
///
///     MOVED 3999 127.0.0.1:6381   the slot now lives there for good: refresh the topology
///     ASK 3999 127.0.0.1:6381     the slot is being migrated: send ASKING then the command there, once
///
/// An empty host (`MOVED 3999 :6381`) means the host of the server that answered.
public enum ClusterRedirect: Sendable, Equatable {
    case moved(slot: Int, to: RedisEndpoint)
    case ask(slot: Int, to: RedisEndpoint)

    /// nil when `error` is not a redirect (any other error, or a malformed one).
    public init?(error: String, answeredBy: RedisEndpoint) {
        let parts = error.split(separator: " ")
        guard parts.count == 3, let slot = Int(parts[1]), (0..<HashSlot.count).contains(slot),
              let colon = parts[2].lastIndex(of: ":"), let port = Int(parts[2][parts[2].index(after: colon)...]),
              (1...65_535).contains(port) else { return nil }
        var host = String(parts[2][..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty {
            guard case .tcp(let asked, _) = answeredBy else { return nil }
            host = asked
        }
        let to = RedisEndpoint.tcp(host: host, port: port)
        switch parts[0] {
        case "MOVED": self = .moved(slot: slot, to: to)
        case "ASK": self = .ask(slot: slot, to: to)
        default: return nil
        }
    }

    public var target: RedisEndpoint {
        switch self {
        case .moved(_, let to), .ask(_, let to): to
        }
    }
}
