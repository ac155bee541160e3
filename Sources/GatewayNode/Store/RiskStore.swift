import GatewayProtocol
import GatewayRedis
import OrderCore

/// The buyers' risk limits in Redis (contract 4.6): one atomic reserve in the buyer's slot
/// before an order is created, releases after. Orders live in their products' slots, so
/// the count cannot be kept in the commerce step itself on a cluster; a place whose
/// release was lost lapses at the order's pay deadline instead of being held for ever.
protocol RiskStore: AnyObject {
    /// Takes `reservation`'s place, or the refusal of the limit that is full.
    func reserve(_ reservation: RiskReservation, _ done: @escaping (StoreResult<RiskRefusal?>) -> Void)
    /// The order is no longer unpaid (best effort: a lost release lapses).
    func releasePending(order: String, buyer: String)
    /// The order was never created: it counts nowhere (best effort).
    func cancel(_ reservation: RiskReservation)
}

/// risk_reserve.lua: `{0, 0}` taken, `{1, ms}` unpaid orders full, `{2, ms}` the hour full.
struct RiskReserveReply: RedisReplyDecodable {
    enum Full { case pendingOrders, requestsPerHour }
    /// nil: the place was taken.
    var full: Full?
    var retryAfterMs: Int64

    init(redisReply: RedisReply) throws(RedisDecodingError) {
        var reader = try RedisArrayReader(redisReply)
        let code: Int64 = try reader.next()
        retryAfterMs = try reader.next()
        switch code {
        case 0: full = nil
        case 1: full = .pendingOrders
        case 2: full = .requestsPerHour
        default: throw .unexpected(expected: "0, 1 or 2", got: String(code))
        }
    }
}

final class RedisRiskStore: RiskStore {
    let calls: RedisCalls

    init(redis: any RedisLink, log: @escaping (String) -> Void) {
        calls = RedisCalls(redis: redis, log: log)
    }

    func reserve(_ r: RiskReservation, _ done: @escaping (StoreResult<RiskRefusal?>) -> Void) {
        calls.run(RiskScripts.reserve, keys: [StoreKeys.riskPending(r.buyer), StoreKeys.riskRequests(r.buyer)],
                  args: [r.order, r.maxPending, r.payWindowMs, r.maxRequests, r.windowMs], as: RiskReserveReply.self) { result in
            done(result.map { reply in
                switch reply.full {
                case nil: nil
                case .pendingOrders?: .pendingOrders(limit: r.maxPending, retryAfterMs: reply.retryAfterMs)
                case .requestsPerHour?: .requestsPerHour(limit: r.maxRequests, retryAfterMs: reply.retryAfterMs)
                }
            })
        }
    }

    func releasePending(order: String, buyer: String) {
        let key = StoreKeys.riskPending(buyer)
        calls.redis.send(["ZREM", key, order], key: key) { _ in }
    }

    func cancel(_ r: RiskReservation) {
        if r.maxPending > 0 { releasePending(order: r.order, buyer: r.buyer) }
        if r.maxRequests > 0 {
            let key = StoreKeys.riskRequests(r.buyer)
            calls.redis.send(["ZREM", key, r.order], key: key) { _ in }
        }
    }
}

/// Lua of the risk limits (Lua/risk_*.lua).
enum RiskScripts {
    static let reserve = LuaScript.embedded("risk_reserve", PackageResources.risk_reserve_lua,
                                            libraries: [PackageResources.lib_publish_lua])
    static let all: [LuaScript] = [reserve]
}
