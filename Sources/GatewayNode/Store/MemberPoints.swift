import GatewayProtocol
import OrderCore

extension StoreKeys {
    /// Hash: `total` and `o:<order id>` -> the amount that order counts (lib_points.lua), in
    /// the user's slot: the `member.level` push goes to the user's channel in the same step.
    static func memberPoints(_ user: String) -> String { "gw:\(tag(.user(user))):points" }
}

/// A user's points as stored: the total and the number of orders counted in it.
struct MemberPoints: Equatable {
    var points: Int64
    var orders: Int
}

extension MemberLevels {
    /// lib_points.lua's ladder: `[[min_points, name], ...]` from fewest points up. Points stay
    /// below 2^53 (`maxPoints`), so Lua's doubles compare them exactly.
    var scriptArgument: String {
        JSON.array(levels.map { .array([.int($0.minPoints), .string($0.name)]) }).serialized()
    }
}
