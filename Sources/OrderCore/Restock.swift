/// A key set aside for one restock watcher until `until` (ms): only that user's orders take
/// it (contract 4.6). Held keys are out of the stock list, so no other order can take them.
public struct RestockHold: Equatable, Sendable {
    public var user: String
    public var keyID: String
    public var until: Int64

    public init(user: String, keyID: String, until: Int64) {
        self.user = user
        self.keyID = keyID
        self.until = until
    }

    /// `<key id>|<until ms>`, the value in the product's holds hash (this type owns the format).
    public init?(user: String, record: String) {
        let parts = record.split(separator: "|", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, let until = Int64(parts[1]) else { return nil }
        self.init(user: user, keyID: String(parts[0]), until: until)
    }

    public var record: String { "\(keyID)|\(until)" }

    public func isLive(at now: Int64) -> Bool { now < until }
}
