/// Deadlines of many connections at one-second grain, swept by one timer per node: a loop
/// timer per connection would go into lws's sorted list, whose insert walks the list (tokens
/// minted together end together, so every insert walks to the end: quadratic at 100k).
/// Setting or removing is O(1); a sweep costs the entries due plus one step per second passed.
public struct SecondBuckets<ID: Hashable & Sendable>: Sendable {
    private var buckets: [Int64: [ID]] = [:]
    /// Each live entry's second; bucket entries that disagree are stale (moved or removed).
    private var seconds: [ID: Int64] = [:]
    /// Every second up to this one was swept.
    public private(set) var swept: Int64

    public init(nowSecond: Int64) { swept = nowSecond }

    public var count: Int { seconds.count }

    /// Due at `second`; one already swept is due at the next sweep. Replaces `id`'s deadline.
    public mutating func set(_ id: ID, at second: Int64) {
        let second = max(second, swept + 1)
        seconds[id] = second
        buckets[second, default: []].append(id)
    }

    public mutating func remove(_ id: ID) { seconds[id] = nil }

    /// The entries due up to `now` (each once, then forgotten), oldest second first.
    public mutating func take(upTo now: Int64) -> [ID] {
        guard now > swept else { return [] }
        var due: [ID] = []
        // After a long stall (or a clock jump) walk only the seconds that hold entries.
        if now - swept > Int64(buckets.count) {
            for second in buckets.keys.filter({ $0 <= now }).sorted() { collect(second, into: &due) }
        } else {
            for second in (swept + 1)...now { collect(second, into: &due) }
        }
        swept = now
        return due
    }

    private mutating func collect(_ second: Int64, into due: inout [ID]) {
        guard let ids = buckets.removeValue(forKey: second) else { return }
        for id in ids where seconds[id] == second {
            seconds[id] = nil
            due.append(id)
        }
    }
}
