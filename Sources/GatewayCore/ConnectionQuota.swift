/// Live connections per key (a source address, or a user) on one node, against a cap
/// (`limits.conns_per_ip`, `limits.conns_per_user`; 0 = no limit). Counted per node:
/// a user on three nodes may hold three times the cap.
///
/// Pure: the node reports opens and closes; the quota only counts and decides.
public struct ConnectionQuota: Sendable {
    public let limit: Int
    private var counts: [String: Int] = [:]

    public init(limit: Int) { self.limit = max(0, limit) }

    /// Live connections counted for `key`.
    public func count(_ key: String) -> Int { counts[key] ?? 0 }

    /// Whether one more connection for `key` fits.
    public func allows(_ key: String) -> Bool { limit == 0 || count(key) < limit }

    /// Counts a connection for `key` if it fits; false (and nothing counted) if not.
    public mutating func tryAdd(_ key: String) -> Bool {
        guard allows(key) else { return false }
        if limit > 0 { counts[key, default: 0] += 1 }
        return true
    }

    /// A connection counted by `tryAdd` ended.
    public mutating func remove(_ key: String) {
        guard limit > 0, let n = counts[key] else { return }
        counts[key] = n > 1 ? n - 1 : nil
    }

    /// Keys with at least one connection (memory is bounded by live connections).
    public var keyCount: Int { counts.count }
}
