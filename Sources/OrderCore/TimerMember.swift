/// A member of the shared timer set `gw:timers`: what is due, named once so the writers
/// (the commerce program, uploads, connects) and the sweeper agree on one format.
/// Ids follow the id rule (no `/`), so `/` separates the two ids of a pair.
public enum TimerMember: Equatable, Sendable {
    /// An order's payment or gift expiry: `pay:<order>`, `gift:<order>`.
    case order(TimerKind, String)
    /// The restock holds given by one upload end: `hold:<product>/<upload>`.
    case holds(product: String, upload: String)
    /// A validity membership's next reminder (4.6): `mem:<product>/<user>`.
    case membership(product: String, user: String)
    /// A buyer's dormancy check (4.6): `dorm:<user>`.
    case dormant(user: String)
    /// A flash sale's next timed push or end (4.8): `sale:<product>/<sale>`.
    case sale(product: String, sale: String)

    /// Nil for a member this version does not know (the sweeper removes it).
    public init?(_ member: String) {
        guard let colon = member.firstIndex(of: ":") else { return nil }
        let rest = String(member[member.index(after: colon)...])
        guard !rest.isEmpty else { return nil }
        switch member[..<colon] {
        case "dorm": self = .dormant(user: rest)
        case let kind where kind == "hold" || kind == "mem" || kind == "sale":
            let pair = rest.split(separator: "/", omittingEmptySubsequences: false)
            guard pair.count == 2, !pair[0].isEmpty, !pair[1].isEmpty else { return nil }
            let (a, b) = (String(pair[0]), String(pair[1]))
            switch kind {
            case "hold": self = .holds(product: a, upload: b)
            case "mem": self = .membership(product: a, user: b)
            default: self = .sale(product: a, sale: b)
            }
        case let kind:
            guard let kind = TimerKind(rawValue: String(kind)) else { return nil }
            self = .order(kind, rest)
        }
    }

    public var member: String {
        switch self {
        case .order(let kind, let id): "\(kind.rawValue):\(id)"
        case .holds(let product, let upload): "hold:\(product)/\(upload)"
        case .membership(let product, let user): "mem:\(product)/\(user)"
        case .dormant(let user): "dorm:\(user)"
        case .sale(let product, let sale): "sale:\(product)/\(sale)"
        }
    }
}
