import Foundation
import GatewayClient
import GatewayProtocol
import XCTest

/// `presence` (PROTOCOL 4.1): the same cost with 10 or 100,000 users online, distinct
/// users across nodes, at most 100 ids, and a dead node's users gone after the ttl.
final class PresenceTests: IntegrationCase {
    private func presence(_ s: GatewaySession, _ channel: String = "product:p1") throws -> JSON {
        let reply = try s.command("presence", [("channel", .string(channel))])
        return try XCTUnwrap(reply["ok"], "\(reply)")
    }

    private func subscribed(_ node: GatewayNodeProcess, _ user: String) throws -> GatewaySession {
        let (s, reply) = try open(node, user)
        XCTAssertNotNil(reply["ok"], "\(reply)")
        XCTAssertNotNil(try s.command("subscribe", [("channel", .string("product:p1"))])["ok"])
        return s
    }

    func testManyUsersOnTwoNodesAndADeadNodesUsersDropOut() throws {
        let a = try startNode("n1", env: ["GATEWAY_GROUPS_PRESENCE_TTL_S": "3"])
        let b = try startNode("n2", env: ["GATEWAY_GROUPS_PRESENCE_TTL_S": "3"])
        try createProduct(a, "p1")
        var sessions: [GatewaySession] = []
        let onA = (0..<60).map { "a\($0)" }
        let onB = (0..<120).map { "b\($0)" } + onA.prefix(10) // ten users have a tab on each node
        for user in onA { sessions.append(try subscribed(a, user)) }
        for user in onB { sessions.append(try subscribed(b, user)) }
        // A second tab on the same node counts once too.
        sessions.append(try subscribed(b, "b0"))

        let everyone = Set(onA + onB)
        let p = try presence(sessions[0])
        XCTAssertEqual(p["online"]?.intValue, 180, "distinct users on any node")
        XCTAssertEqual(p["buyers"]?.intValue, 0)
        let users = p["users"]?.arrayValue?.compactMap(\.stringValue) ?? []
        XCTAssertEqual(users.count, 100, "at most 100 ids")
        XCTAssertEqual(Set(users).count, 100, "no id twice")
        XCTAssertTrue(Set(users).isSubset(of: everyone))

        // Leaving counts: a user with two tabs stays until the last one goes. The second
        // tab of b0 closes first, then b119's only one: once b119 is gone, so is that tab.
        sessions.removeLast().close()
        let b119 = sessions.remove(at: onA.count + 119)
        b119.close()
        try waitUntil(timeout: 5, "b119 to go") { (try? presence(sessions[0]))?["online"]?.intValue == 179 }
        XCTAssertEqual(try presence(sessions[0])["online"]?.intValue, 179, "b0 still has a tab")

        b.signal(SIGKILL)
        _ = b.waitExit()
        try waitUntil(timeout: 15, "n2's users to drop out after presence_ttl_s") {
            (try? presence(sessions[0]))?["online"]?.intValue == 60
        }
        let after = try presence(sessions[0])["users"]?.arrayValue?.compactMap(\.stringValue) ?? []
        XCTAssertEqual(Set(after), Set(onA), "only n1's users are left, all of them")
        withExtendedLifetime(sessions) {}
    }

    /// 100,000 users online (written straight into Redis as a live node would hold them):
    /// each `presence` call stays as cheap as with a handful, measured inside Redis. The
    /// bound is ~100x the real cost; walking 100,000 entries takes far longer.
    func testPresenceCostDoesNotGrowWithTheCrowd() throws {
        try requireSingleRedis("seeds presence keys and reads INFO commandstats on the server port")
        let node = try startNode()
        try createProduct(node, "p1")
        let me = try subscribed(node, "me")
        let crowd = 100_000
        // A live node instance "crowd.x" holding the crowd, heartbeat an hour ahead. The
        // earlier layout (one zset entry per node|user) is filled too, so this test also
        // shows the old walk over every entry failing the bound.
        let seed = """
        local expiry = ARGV[1]
        for i = 1, tonumber(ARGV[2]), 1000 do
          local hash, set, zset = {}, {}, {}
          for j = i, math.min(i + 999, tonumber(ARGV[2])) do
            hash[#hash + 1] = 'crowd' .. j; hash[#hash + 1] = 1
            set[#set + 1] = 'crowd' .. j
            zset[#zset + 1] = expiry; zset[#zset + 1] = 'crowd.x|crowd' .. j
          end
          redis.call('HSET', KEYS[1], unpack(hash))
          redis.call('SADD', KEYS[3], unpack(set))
          redis.call('ZADD', KEYS[4], unpack(zset))
        end
        redis.call('ZADD', KEYS[2], expiry, 'crowd.x')
        return 1
        """
        let untilMs = String(Int64(Date().timeIntervalSince1970 * 1000) + 3_600_000)
        let seeded = try redisCall(["EVAL", seed, "4", "gw:{product:p1}:online", "gw:{product:p1}:onodes",
                                    "gw:{product:p1}:on:crowd.x", "gw:{product:p1}:presence", untilMs, String(crowd)])
        XCTAssertTrue(seeded.hasPrefix(":1"), seeded)

        let first = try presence(me)
        XCTAssertEqual(first["online"]?.intValue, Int64(crowd + 1))
        XCTAssertEqual(first["users"]?.arrayValue?.count, 100)

        let before = try evalStats()
        let calls = 20
        let counts = try (0..<calls).map { _ in try presence(me)["online"]?.intValue }
        XCTAssertEqual(Set(counts), [Int64(crowd + 1)])
        let after = try evalStats()
        let perCall = Double(after.usec - before.usec) / Double(max(after.calls - before.calls, 1))
        XCTAssertGreaterThanOrEqual(after.calls - before.calls, calls)
        XCTAssertLessThan(perCall, 5_000, "µs of Redis time per presence call with \(crowd) online")
    }

    /// A dead node instance with 2,500 users: each presence call takes out at most 1,000
    /// of them (bounded work), and they are all gone after three calls. (The live node's
    /// own renewal, which reaps too, first runs presence_ttl_s/3 = 10 s after it starts.)
    func testADeadNodesCrowdIsReapedInBoundedSlices() throws {
        try requireSingleRedis("seeds a dead node's presence keys with EVAL on the server port")
        let node = try startNode()
        try createProduct(node, "p1")
        let me = try subscribed(node, "me")
        let seed = """
        for i = 1, 2500 do
          redis.call('HINCRBY', KEYS[1], 'ghost' .. i, 1)
          redis.call('SADD', KEYS[3], 'ghost' .. i)
        end
        redis.call('ZADD', KEYS[2], ARGV[1], 'dead.x')
        return 1
        """
        let expired = String(Int64(Date().timeIntervalSince1970 * 1000) - 60_000)
        _ = try redisCall(["EVAL", seed, "3", "gw:{product:p1}:online", "gw:{product:p1}:onodes",
                           "gw:{product:p1}:on:dead.x", expired])
        let counts = try (0..<4).map { _ in try presence(me)["online"]?.intValue }
        XCTAssertEqual(counts, [1_501, 501, 1, 1], "2,500 ghosts and me")
        XCTAssertEqual(try presence(me)["users"]?.arrayValue?.compactMap(\.stringValue), ["me"])
    }

    /// A node taken for dead (its heartbeat expired, e.g. a long stall) while it still
    /// serves its users: they are reaped, and its next renewal puts them all back.
    func testANodeTakenForDeadPutsItsUsersBack() throws {
        try requireSingleRedis("expires a node's presence entry with EVAL on the server port")
        let node = try startNode(env: ["GATEWAY_GROUPS_PRESENCE_TTL_S": "3"])
        try createProduct(node, "p1")
        let sessions = try (0..<5).map { try subscribed(node, "u\($0)") }
        XCTAssertEqual(try presence(sessions[0])["online"]?.intValue, 5)
        // Age the node's heartbeat as if it had stopped renewing; the next presence call reaps.
        let expire = "for _, n in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do redis.call('ZADD', KEYS[1], 1, n) end return 1"
        _ = try redisCall(["EVAL", expire, "1", "gw:{product:p1}:onodes"])
        XCTAssertEqual(try presence(sessions[0])["online"]?.intValue, 0)
        try waitUntil(timeout: 10, "the renewal to put the users back") {
            (try? presence(sessions[0]))?["online"]?.intValue == 5
        }
    }

    /// One command to the test's Redis; the raw RESP answer.
    private func redisCall(_ args: [String]) throws -> String {
        var out = "*\(args.count)\r\n"
        for a in args { out += "$\(a.utf8.count)\r\n\(a)\r\n" }
        return String(decoding: try rawExchange(port: redis.port, Array(out.utf8), readUntilClose: false, timeout: 30), as: UTF8.self)
    }

    /// Calls and microseconds of EVALSHA so far (INFO commandstats).
    private func evalStats() throws -> (calls: Int, usec: Int) {
        let text = try redisCall(["INFO", "commandstats"])
        guard let line = text.split(separator: "\r\n").first(where: { $0.hasPrefix("cmdstat_evalsha:") }) else { return (0, 0) }
        var calls = 0, usec = 0
        for part in line.dropFirst("cmdstat_evalsha:".count).split(separator: ",") {
            let kv = part.split(separator: "=")
            guard kv.count == 2 else { continue }
            if kv[0] == "calls" { calls = Int(kv[1]) ?? 0 }
            if kv[0] == "usec" { usec = Int(kv[1]) ?? 0 }
        }
        return (calls, usec)
    }
}
