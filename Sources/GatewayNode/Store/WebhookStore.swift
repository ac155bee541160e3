import GatewayProtocol
import GatewayRedis

/// A key's head event, leased to this node for one delivery attempt (webhook_settle.lua).
struct WebhookClaim: RedisReplyDecodable, Equatable {
    /// The ordering key (an order id, ...).
    var key: String
    var token: String
    /// 1 for the first attempt.
    var attempt: Int
    var event: LoggedEvent
    /// Why the leased log entry could not be read (its field names); such a claim is given
    /// up at once rather than sent, and the rest of the batch is not held up by it.
    var unreadable: String?

    init(redisReply: RedisReply) throws(RedisDecodingError) {
        var reader = try RedisArrayReader(redisReply)
        key = try reader.next()
        let id: String = try reader.next()
        token = try reader.next()
        attempt = try reader.next()
        do {
            event = try LoggedEvent(id: id, OutboxRelay.OutboxFields(try reader.next()))
        } catch {
            event = LoggedEvent(id: id, type: "", key: key, createdAt: 0, data: "null")
            unreadable = error.description
        }
    }
}

/// One finished attempt for webhook_settle.lua.
struct WebhookSettlement: Equatable {
    var claim: WebhookClaim
    var outcome: WebhookOutcome
}

/// What one settle call did: per settlement whether it was taken (false: its lease had
/// lapsed), what it leased next, and the heads it found gone from the log (trimmed, or
/// lost with a Redis that restarted without its data), given up there, for the node to tell.
struct WebhookStep: RedisReplyDecodable, Equatable {
    struct Missing: RedisReplyDecodable, Equatable {
        var key: String
        var id: String
        init(redisReply: RedisReply) throws(RedisDecodingError) {
            var reader = try RedisArrayReader(redisReply)
            (key, id) = (try reader.next(), try reader.next())
        }
    }

    var taken: [Bool]
    var leased: [WebhookClaim]
    var missing: [Missing]

    init(redisReply: RedisReply) throws(RedisDecodingError) {
        var reader = try RedisArrayReader(redisReply)
        taken = try reader.next([Int64].self).map { $0 == 1 }
        (leased, missing) = (try reader.next(), try reader.next())
    }
}

/// How one attempt ended (webhook_settle.lua).
enum WebhookOutcome: Equatable {
    case delivered
    /// Due again this long from now (Redis' clock).
    case retry(afterMs: Int64)
    case giveUp(reason: String)

    /// The `outcome` label of `gateway_webhook_attempts_total`.
    var name: String {
        switch self {
        case .delivered: "delivered"
        case .retry: "retry"
        case .giveUp: "give_up"
        }
    }
}

/// Undelivered events and the time of the oldest (ms, 0: none), for the gauges.
struct WebhookBacklog: RedisReplyDecodable, Equatable {
    var count: Int
    var oldestMs: Int64

    init(count: Int, oldestMs: Int64) {
        (self.count, self.oldestMs) = (count, oldestMs)
    }

    /// Age of the oldest undelivered event at `nowMs` (0 with none; never negative, the
    /// event's time being Redis' clock and `nowMs` the node's).
    func oldestSeconds(nowMs: Int64) -> Double {
        guard count > 0, oldestMs > 0 else { return 0 }
        return Double(max(0, nowMs - oldestMs)) / 1_000
    }

    init(redisReply: RedisReply) throws(RedisDecodingError) {
        var reader = try RedisArrayReader(redisReply)
        count = try reader.next()
        oldestMs = try reader.next()
    }
}

/// The webhook sender's state, all in the `{events}` slot (Store/README.md "Webhooks"): queues
/// per ordering key fed from the event log, leases, attempts, dead letters.
protocol WebhookStore: AnyObject {
    /// Queues up to `limit` new log events; answers how many log entries it handled.
    func dispatch(limit: Int, _ done: @escaping (StoreResult<Int>) -> Void)
    /// Ends the finished attempts, then leases up to `count` due keys' head events to `node`
    /// for `leaseMs`, in one atomic step (no settlements: just a claim).
    func settle(_ settlements: [WebhookSettlement], thenClaim count: Int, leaseMs: Int64, node: String,
                _ done: @escaping (StoreResult<WebhookStep>) -> Void)
    func backlog(_ done: @escaping (StoreResult<WebhookBacklog>) -> Void)
}

final class RedisWebhookStore: WebhookStore {
    let calls: RedisCalls

    init(redis: any RedisLink, log: @escaping (String) -> Void) {
        calls = RedisCalls(redis: redis, log: log)
    }

    func dispatch(limit: Int, _ done: @escaping (StoreResult<Int>) -> Void) {
        calls.run(WebhookScripts.dispatch, keys: WebhookScripts.dispatchKeys, args: [limit, WebhookScripts.deadCap], done)
    }

    func settle(_ settlements: [WebhookSettlement], thenClaim count: Int, leaseMs: Int64, node: String,
                _ done: @escaping (StoreResult<WebhookStep>) -> Void) {
        var args: [RedisArgument] = [count, leaseMs, node, WebhookScripts.deadCap]
        for s in settlements {
            let (name, retryIn, reason): (String, Int64, String) = switch s.outcome {
            case .delivered: ("delivered", 0, "")
            case .retry(let after): ("retry", after, "")
            case .giveUp(let why): ("give_up", 0, why)
            }
            args += [s.claim.key, s.claim.event.id, s.claim.token, name, retryIn, reason, s.claim.event.type]
        }
        calls.run(WebhookScripts.settle, keys: WebhookScripts.settleKeys, args: args, done)
    }

    func backlog(_ done: @escaping (StoreResult<WebhookBacklog>) -> Void) {
        calls.run(WebhookScripts.stats, keys: WebhookScripts.statsKeys, args: [], done)
    }
}

/// A key whose head event has been tried more than once (webhook_retrying.lua): what the
/// operator looks at when a receiver refuses or is down.
struct RetryingWebhook: RedisReplyDecodable, Equatable {
    /// The ordering key (an order id, ...).
    var key: String
    var eventID: String
    /// Empty when the event has left the log (it is given up at its next claim).
    var type: String
    var attempts: Int
    /// The next attempt (Redis' clock, ms), or the lease's end while `inFlight`.
    var dueMs: Int64
    var inFlight: Bool

    init(key: String, eventID: String, type: String, attempts: Int, dueMs: Int64, inFlight: Bool) {
        (self.key, self.eventID, self.type, self.attempts, self.dueMs, self.inFlight) = (key, eventID, type, attempts, dueMs, inFlight)
    }

    init(redisReply: RedisReply) throws(RedisDecodingError) {
        var reader = try RedisArrayReader(redisReply)
        self.init(key: try reader.next(), eventID: try reader.next(), type: try reader.next(), attempts: try reader.next(),
                  dueMs: try reader.next(), inFlight: try reader.next())
    }
}

/// Deliveries in trouble, for the admin page: events given up so far and the keys being retried.
struct WebhookTrouble: RedisReplyDecodable, Equatable {
    /// Events given up (dead-lettered) since the log began.
    var dead: Int
    /// Oldest first.
    var retrying: [RetryingWebhook]

    init(dead: Int, retrying: [RetryingWebhook]) {
        (self.dead, self.retrying) = (dead, retrying)
    }

    init(redisReply: RedisReply) throws(RedisDecodingError) {
        var reader = try RedisArrayReader(redisReply)
        self.init(dead: try reader.next(), retrying: try reader.next())
    }
}

extension RedisWebhookStore {
    /// The given-up count and up to `limit` keys being retried, oldest first (among the
    /// `WebhookScripts.retryingScan` oldest keys).
    func trouble(limit: Int, _ done: @escaping (StoreResult<WebhookTrouble>) -> Void) {
        calls.run(WebhookScripts.retrying, keys: WebhookScripts.retryingKeys, args: [limit, WebhookScripts.retryingScan], done)
    }
}
