import GatewayProtocol

/// One rung of the shop's member ladder (`members.levels`, contract 4.6).
public struct MemberLevel: Equatable, Sendable {
    public var name: String
    /// Points (minor units of delivered, not refunded orders) from which a user holds this level.
    public var minPoints: Int64
    /// Taken off an order's amount at creation, 0 to 100.
    public var discountPercent: Int

    public init(name: String, minPoints: Int64, discountPercent: Int) {
        self.name = name
        self.minPoints = minPoints
        self.discountPercent = discountPercent
    }

    /// `floor(gross * (100 - discount_percent) / 100)`, exact for any non-negative `gross`:
    /// split as `100 * whole + rest`, no intermediate product exceeds `gross`, so an amount
    /// near `Int64.max` cannot overflow where the plain formula would.
    public func discounted(_ gross: Int64) -> Int64 {
        precondition(gross >= 0, "amounts are never negative")
        let kept = Int64(100 - discountPercent)
        let (whole, rest) = gross.quotientAndRemainder(dividingBy: 100)
        return whole * kept + rest * kept / 100
    }
}

/// The validated ladder: levels by strictly increasing `minPoints`. Empty means the shop has
/// no levels: nobody has a level and no order is discounted.
public struct MemberLevels: Equatable, Sendable {
    public let levels: [MemberLevel]

    public static let none = MemberLevels(checked: [])

    /// Largest `min_points`: 2^53 - 1, so a browser reads it (and points below it) exactly.
    public static let maxPoints: Int64 = 9_007_199_254_740_991
    public static let maxLevels = 100
    public static let maxNameCharacters = 32

    /// Every problem of a ladder at once, so a bad setting is fixed in one go.
    public struct Invalid: Error, Equatable, Sendable {
        public let problems: [String]
    }

    /// Refuses rather than sorts: levels out of order or at the same `min_points` are most
    /// likely a typo, and a silently reordered ladder would price orders wrongly.
    /// A higher level may not give a smaller discount, for the same reason.
    public init(validating levels: [MemberLevel]) throws(Invalid) {
        var problems: [String] = []
        if levels.count > Self.maxLevels {
            problems.append("at most \(Self.maxLevels) levels, got \(levels.count)")
        }
        var seen: Set<String> = []
        for (index, level) in levels.enumerated() {
            let at = "level \(index + 1)"
            if let problem = Self.nameProblem(level.name) { problems.append("\(at): \(problem)") }
            else if !seen.insert(level.name).inserted { problems.append("\(at): name \"\(level.name)\" is used twice") }
            if !(0...Self.maxPoints).contains(level.minPoints) {
                problems.append("\(at): min_points must be between 0 and \(Self.maxPoints), got \(level.minPoints)")
            }
            if !(0...100).contains(level.discountPercent) {
                problems.append("\(at): discount_percent must be between 0 and 100, got \(level.discountPercent)")
            }
            guard index > 0 else { continue }
            let below = levels[index - 1]
            if level.minPoints <= below.minPoints {
                problems.append("\(at): min_points must be above level \(index)'s \(below.minPoints) (levels go from fewest points up, none at the same points), got \(level.minPoints)")
            }
            if level.discountPercent < below.discountPercent {
                problems.append("\(at): discount_percent must not be below level \(index)'s \(below.discountPercent), got \(level.discountPercent)")
            }
        }
        guard problems.isEmpty else { throw Invalid(problems: problems) }
        self.levels = levels
    }

    private init(checked levels: [MemberLevel]) { self.levels = levels }

    /// The highest level whose `minPoints` the points reach; nil below the first (or with no ladder).
    public func level(at points: Int64) -> MemberLevel? {
        levels.last { $0.minPoints <= points }
    }

    /// The level the points reach next (`next_level` of `GET /api/v1/users/{id}`); nil at the top.
    public func nextLevel(after points: Int64) -> MemberLevel? {
        levels.first { $0.minPoints > points }
    }

    /// `GET /api/v1/users/{id}`: `{id, points, level, next_level?, last_seen, orders}`.
    /// `level` is the level's name (null below the first); `next_level` `{name, min_points}`
    /// is left out at the top or without a ladder; `last_seen` is null until known.
    public func userJSON(id: String, points: Int64, lastSeen: Int64?, orders: Int) -> JSON {
        var f: [(String, JSON)] = [
            ("id", .string(id)), ("points", .int(points)), ("level", level(at: points).map { .string($0.name) } ?? .null),
        ]
        if let next = nextLevel(after: points) {
            f.append(("next_level", .object([("name", .string(next.name)), ("min_points", .int(next.minPoints))])))
        }
        f.append(("last_seen", lastSeen.map(JSON.int) ?? .null))
        f.append(("orders", .int(Int64(orders))))
        return .object(f)
    }

    /// The `member.level` push when points moving from `before` to `after` change the level:
    /// `{level, previous, points}` (names, null for no level); nil when the level stays.
    public func levelPush(from before: Int64, to after: Int64) -> JSON? {
        let previous = level(at: before), now = level(at: after)
        guard previous != now else { return nil }
        return .object([("level", now.map { .string($0.name) } ?? .null),
                        ("previous", previous.map { .string($0.name) } ?? .null), ("points", .int(after))])
    }

    private static func nameProblem(_ name: String) -> String? {
        if name.allSatisfy(\.isWhitespace) { return "name must not be empty" }
        if name.count > maxNameCharacters { return "name must be at most \(maxNameCharacters) characters, got \(name.count)" }
        if name.first!.isWhitespace || name.last!.isWhitespace || name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            return "name \"\(name)\" must not start or end with spaces or hold control characters"
        }
        return nil
    }
}
