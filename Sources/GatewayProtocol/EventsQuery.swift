/// `GET /api/v1/events?after=<id>&limit=N` (contract 4.4): where to start and how many.
public struct EventsQuery: Equatable, Sendable {
    /// The last event id the caller has; nil reads from the oldest event kept.
    public var after: String?
    public var limit: Int

    public static let defaultLimit = 100
    public static let limits = 1...1000

    public init(after: String? = nil, limit: Int = EventsQuery.defaultLimit) {
        self.after = after
        self.limit = limit
    }

    /// An event id is a log stream id, `<ms>-<seq>`: two unsigned 64-bit numbers, and not
    /// the very last id (Redis refuses an exclusive range after it).
    public static func isEventID(_ s: Substring) -> Bool {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCIIDigit) }),
              let ms = UInt64(parts[0]), let seq = UInt64(parts[1]) else { return false }
        return !(ms == .max && seq == .max)
    }

    /// Parameters other than `after` and `limit` are ignored; either given twice, empty or
    /// malformed is `bad_request`.
    public static func decode(_ query: String) -> Result<EventsQuery, GatewayError> {
        var q = EventsQuery()
        var seen: Set<Substring> = []
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let nameValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = nameValue[0], value = nameValue.count > 1 ? nameValue[1] : ""
            guard name == "after" || name == "limit" else { continue }
            guard seen.insert(name).inserted else { return .failure(.badRequest("\(name) given twice")) }
            if name == "after" {
                guard isEventID(value) else { return .failure(.badRequest("after must be an event id")) }
                q.after = String(value)
            } else {
                guard value.count <= 4, value.allSatisfy(\.isASCIIDigit), let n = Int(value), limits.contains(n) else {
                    return .failure(.badRequest("limit must be \(limits.lowerBound) to \(limits.upperBound)"))
                }
                q.limit = n
            }
        }
        return .success(q)
    }
}

private extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
