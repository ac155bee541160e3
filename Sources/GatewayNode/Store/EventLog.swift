import GatewayProtocol
import GatewayRedis

/// An event as the log `gw:{events}:log` holds it (lib_event.lua): `type key at data`, its
/// stream id being the event's id.
struct LoggedEvent: RedisReplyDecodable, Equatable {
    var id: String
    var type: String
    /// What webhooks are ordered by (the order id for order events).
    var key: String
    var createdAt: Int64
    /// The JSON the decision wrote.
    var data: String

    init(id: String, type: String, key: String, createdAt: Int64, data: String) {
        (self.id, self.type, self.key, self.createdAt, self.data) = (id, type, key, createdAt, data)
    }

    /// Errors name fields only: the data is the shop's business.
    init(redisReply: RedisReply) throws(RedisDecodingError) {
        let (id, fields) = try OutboxRelay.fields(of: redisReply)
        try self.init(id: id, fields)
    }

    init(id: String, _ fields: OutboxRelay.OutboxFields) throws(RedisDecodingError) {
        guard let type = fields.map["type"], let key = fields.map["key"], let at = fields.map["at"].flatMap({ Int64($0) }),
              let data = fields.map["data"] else {
            throw .unexpected(expected: "an event (type key at data)", got: "fields " + fields.names)
        }
        self.init(id: id, type: type, key: key, createdAt: at, data: data)
    }

    /// The contract's event object `{id, type, created_at, data}`.
    var json: JSON {
        .object([("id", .string(id)), ("type", .string(type)), ("created_at", .int(createdAt)),
                 ("data", (try? JSON.parse(data)) ?? .null)])
    }
}

extension OutboxRelay {
    /// The events after `after` (exclusive; nil: from the oldest kept), oldest first: one
    /// XRANGE on the `{events}` master, on one server and on a cluster alike.
    func events(after: String?, limit: Int, _ done: @escaping (StoreResult<[LoggedEvent]>) -> Void) {
        let start = after.map { "(\($0)" } ?? "-"
        calls.send(["XRANGE", StoreKeys.eventsLog, start, "+", "COUNT", limit], key: StoreKeys.eventsLog, as: [LoggedEvent].self, done)
    }
}
