/// Which master owns each hash slot, as `CLUSTER SLOTS` describes it. Replicas are not kept:
/// the gateway reads and writes on masters only (no READONLY).
public struct ClusterTopology: Sendable, Equatable {
    public struct SlotRange: Sendable, Equatable {
        public let slots: ClosedRange<Int>
        public let master: RedisEndpoint
        public init(slots: ClosedRange<Int>, master: RedisEndpoint) {
            self.slots = slots
            self.master = master
        }
    }

    /// Sorted by first slot.
    public let ranges: [SlotRange]
    /// Every master that owns at least one slot, in order of first appearance.
    public let masters: [RedisEndpoint]
    /// Index into `masters` per slot; -1 for a slot nobody serves.
    private let owner: [Int16]

    public init(ranges: [SlotRange]) {
        self.ranges = ranges.sorted { $0.slots.lowerBound < $1.slots.lowerBound }
        var masters: [RedisEndpoint] = []
        var owner = [Int16](repeating: -1, count: HashSlot.count)
        for range in self.ranges {
            let index: Int
            if let known = masters.firstIndex(of: range.master) { index = known } else {
                index = masters.count
                masters.append(range.master)
            }
            for slot in range.slots where (0..<HashSlot.count).contains(slot) { owner[slot] = Int16(index) }
        }
        self.masters = masters
        self.owner = owner
    }

    /// Decodes a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, ...], replica...], ...]`.
    /// A master given with an empty host (or `?`, the unknown endpoint) is on the host of the
    /// server that answered (`answeredBy`).
    public init(clusterSlots reply: RedisReply, answeredBy: RedisEndpoint) throws(RedisDecodingError) {
        guard case .array(let entries) = reply else { throw RedisDecodingError.check(reply, "a CLUSTER SLOTS array") }
        var ranges: [SlotRange] = []
        for entry in entries {
            guard case .array(let fields) = entry, fields.count >= 3,
                  let start = fields[0].int, let end = fields[1].int, start <= end,
                  start >= 0, end < HashSlot.count,
                  case .array(let node) = fields[2], node.count >= 2,
                  var host = node[0].text, let port = node[1].int, (1...65_535).contains(port) else {
                throw .unexpected(expected: "a CLUSTER SLOTS entry [start, end, [host, port, ...], ...]",
                                  got: String(entry.description.prefix(200)))
            }
            if host.isEmpty || host == "?" {
                guard case .tcp(let asked, _) = answeredBy else {
                    throw .unexpected(expected: "a master host", got: "an empty host from \(answeredBy)")
                }
                host = asked
            }
            ranges.append(SlotRange(slots: Int(start)...Int(end), master: .tcp(host: host, port: Int(port))))
        }
        self.init(ranges: ranges)
    }

    /// The master serving `slot`, nil when no master does (a failover in progress, a cluster
    /// still being set up).
    public func master(forSlot slot: Int) -> RedisEndpoint? {
        guard (0..<HashSlot.count).contains(slot) else { return nil }
        let index = owner[slot]
        return index < 0 ? nil : masters[Int(index)]
    }

    public func master(forKey key: String) -> RedisEndpoint? { master(forSlot: HashSlot.of(key)) }

    /// Every slot has a master.
    public var coversAllSlots: Bool { !owner.contains(-1) }
}
