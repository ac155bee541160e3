import GatewayRedis

/// The operators' view in Redis: every node's stats, written every few seconds, and the
/// groups with mutes. Read only by the admin API; nothing else depends on it.
protocol AdminStore: AnyObject {
    /// Writes `node`'s stats (a `NodeStats` JSON); nodes silent for `keepMs` are dropped meanwhile.
    func writeStats(node: String, stats: String, keepMs: Int64, _ done: @escaping (StoreResult<Void>) -> Void)
    /// Every node's stats written within `keepMs`, and up to `groups` groups with a mute ending after `nowMs`.
    func board(keepMs: Int64, nowMs: Int64, groups: Int, _ done: @escaping (StoreResult<AdminBoard>) -> Void)
    /// Each group's live mutes (at most `limit` each), in the order of `groups`: one call per group, pipelined.
    func mutes(groups: [String], nowMs: Int64, limit: Int, _ done: @escaping (StoreResult<[[GroupMute]]>) -> Void)
    /// Lists `payment` as owed since `sinceMs`, or (nil) no longer.
    func noteRefund(payment: String, sinceMs: Int64?)
    /// Up to `limit` payment ids listed as owed, the longest owed first.
    func owedRefunds(limit: Int, _ done: @escaping (StoreResult<[String]>) -> Void)
}

/// One node's stats as stored: the JSON it wrote and when (Redis clock).
struct StoredStats: Equatable {
    var node: String
    var seenMs: Int64
    var stats: String
}

/// admin_board.lua: `{now, {node, seen, stats, ...}, {group, ...}}`.
struct AdminBoard: RedisReplyDecodable, Equatable {
    /// The Redis clock when read, which `seenMs` is on.
    var nowMs: Int64
    var nodes: [StoredStats]
    var mutedGroups: [String]

    init(nowMs: Int64, nodes: [StoredStats], mutedGroups: [String]) {
        self.nowMs = nowMs
        self.nodes = nodes
        self.mutedGroups = mutedGroups
    }

    init(redisReply: RedisReply) throws(RedisDecodingError) {
        var reader = try RedisArrayReader(redisReply)
        nowMs = try reader.next()
        var flat = try RedisArrayReader(try reader.next(RedisReply.self))
        nodes = []
        while !flat.isAtEnd {
            nodes.append(StoredStats(node: try flat.next(), seenMs: try flat.next(), stats: try flat.next()))
        }
        mutedGroups = try reader.next()
    }
}

struct GroupMute: Equatable {
    var user: String
    var untilMs: Int64
}

/// admin_group_mutes.lua: `{user, until, ...}`.
struct GroupMutes: RedisReplyDecodable {
    var mutes: [GroupMute] = []

    init(redisReply: RedisReply) throws(RedisDecodingError) {
        var reader = try RedisArrayReader(redisReply)
        while !reader.isAtEnd {
            mutes.append(GroupMute(user: try reader.next(), untilMs: try reader.next()))
        }
    }
}

final class RedisAdminStore: AdminStore {
    let calls: RedisCalls

    init(redis: any RedisLink, log: @escaping (String) -> Void) {
        calls = RedisCalls(redis: redis, log: log)
    }

    func writeStats(node: String, stats: String, keepMs: Int64, _ done: @escaping (StoreResult<Void>) -> Void) {
        calls.run(AdminScripts.statsWrite, keys: [StoreKeys.adminStats, StoreKeys.adminSeen], args: [node, stats, keepMs],
                  as: Int64.self) { done($0.map { _ in }) }
    }

    func board(keepMs: Int64, nowMs: Int64, groups: Int, _ done: @escaping (StoreResult<AdminBoard>) -> Void) {
        calls.run(AdminScripts.board, keys: [StoreKeys.adminStats, StoreKeys.adminSeen, StoreKeys.mutedGroups],
                  args: [keepMs, nowMs, groups], as: AdminBoard.self, done)
    }

    func noteRefund(payment: String, sinceMs: Int64?) {
        let key = StoreKeys.refundsOwed
        // NX: a repeat keeps the first time, so the list stays oldest first.
        let args: [RedisArgument] = sinceMs.map { ["ZADD", key, "NX", $0, payment] } ?? ["ZREM", key, payment]
        calls.send(args, key: key, as: Int64.self) { _ in }
    }

    func owedRefunds(limit: Int, _ done: @escaping (StoreResult<[String]>) -> Void) {
        calls.send(["ZRANGE", StoreKeys.refundsOwed, 0, limit - 1], key: StoreKeys.refundsOwed, as: [String].self, done)
    }

    func mutes(groups: [String], nowMs: Int64, limit: Int, _ done: @escaping (StoreResult<[[GroupMute]]>) -> Void) {
        let gather = Gather<[GroupMute]>(groups.count, done)
        for (i, group) in groups.enumerated() {
            calls.run(AdminScripts.groupMutes, keys: [StoreKeys.groupMutes(group)], args: [nowMs, limit], as: GroupMutes.self) {
                gather.report(i, $0.map(\.mutes))
            }
        }
    }
}
