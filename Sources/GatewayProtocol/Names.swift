/// Identifier and channel rules of the contract (PROTOCOL.md section 1), checked
/// byte by byte because they run on every command.
public enum Names {
    /// `^[A-Za-z0-9_.:-]{1,64}$`: user, product and merchant ids.
    public static func isValidID<S: StringProtocol>(_ s: S) -> Bool {
        var count = 0
        for b in s.utf8 {
            count += 1
            if count > 64 { return false }
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "-"):
                continue
            default:
                return false
            }
        }
        return count > 0
    }
}

/// A channel name parsed into its namespace and id (`user:u1`, `group:p1`, `product:p1`).
public struct Channel: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        case user, group, product, sale
    }

    public let kind: Kind
    public let id: String

    public init(kind: Kind, id: String) {
        self.kind = kind
        self.id = id
    }

    /// Parses `kind:id`; nil when the namespace is unknown or the id breaks the id rule.
    public init?(_ name: String) {
        guard let colon = name.utf8.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        guard let kind = Kind(rawValue: String(name[..<colon])) else { return nil }
        let id = name[name.index(after: colon)...]
        guard Names.isValidID(id) else { return nil }
        self.kind = kind
        self.id = String(id)
    }

    public var description: String { "\(kind.rawValue):\(id)" }

    public static func user(_ id: String) -> Channel { Channel(kind: .user, id: id) }
    public static func group(_ id: String) -> Channel { Channel(kind: .group, id: id) }
    public static func product(_ id: String) -> Channel { Channel(kind: .product, id: id) }
    public static func sale(_ id: String) -> Channel { Channel(kind: .sale, id: id) }
}
