@testable import GatewayNode
import GatewayProtocol
import GatewayRedis
import OrderCore
import XCTest

/// lib_points.lua (member points and the `member.level` push), through a wrapper script, on
/// a real redis-server.
final class PointsScriptTests: XCTestCase {
    static let ladder = try! MemberLevels(validating: [
        MemberLevel(name: "silver", minPoints: 10_000, discountPercent: 5),
        MemberLevel(name: "金牌 \"gold\"", minPoints: 50_000, discountPercent: 12),
    ])
    static let moveScript = LuaScript.embedded("points_test", Array("""
        local amount = ARGV[2]
        if amount == '' then amount = false end
        return movePoints(KEYS[1], ARGV[1], amount, cjson.decode(ARGV[3]), KEYS[2], KEYS[3], ARGV[4], 100, 60, 'e1')
        """.utf8), libraries: [PackageResources.lib_publish_lua, PackageResources.lib_points_lua])
    static let levelScript = LuaScript.embedded("points_level_test", Array("""
        return levelAt(cjson.decode(ARGV[1]), tonumber(ARGV[2])) or ''
        """.utf8), libraries: [PackageResources.lib_publish_lua, PackageResources.lib_points_lua])

    let keys = [StoreKeys.memberPoints("u1"), StoreKeys.meta(.user("u1")), StoreKeys.log(.user("u1"))]

    @discardableResult
    func move(_ redis: ScriptRedis, order: String, amount: Int64?, ladder: MemberLevels = ladder,
              file: StaticString = #filePath, line: UInt = #line) -> Int64? {
        let reply = redis.run(Self.moveScript, keys: keys, args: [order, amount.map { String($0) } ?? "", ladder.scriptArgument, "user:u1"])
        XCTAssertNotNil(reply.int, "\(reply)", file: file, line: line)
        return reply.int
    }

    func pushes(_ redis: ScriptRedis) throws -> [JSON] {
        try (redis.call(["XRANGE", keys[2], "-", "+"]).array ?? []).map { entry in
            let push = try JSON.parse(try XCTUnwrap(entry.array?.last?.array?.last?.text))
            XCTAssertEqual(push["push"], .string("member.level"))
            XCTAssertEqual(push["channel"], .string("user:u1"))
            return try XCTUnwrap(push["data"])
        }
    }

    func testAnAwardCountsOnceAndARevokeTakesBackWhatWasCounted() throws {
        let redis = try ScriptRedis()
        XCTAssertEqual(move(redis, order: "o-1", amount: 1_999), 1_999)
        XCTAssertEqual(move(redis, order: "o-1", amount: 1_999), 1_999, "a repeat counts once")
        XCTAssertEqual(move(redis, order: "o-1", amount: 5_000), 1_999, "whatever amount the repeat says")
        XCTAssertEqual(move(redis, order: "o-2", amount: 3_000), 4_999)
        XCTAssertEqual(move(redis, order: "o-1", amount: nil), 3_000, "the revoke takes back the 1999 counted")
        XCTAssertEqual(move(redis, order: "o-1", amount: nil), 3_000, "a repeated revoke changes nothing")
        XCTAssertEqual(move(redis, order: "o-9", amount: nil), 3_000, "an order never counted takes nothing")
        XCTAssertEqual(redis.call(["HGET", keys[0], "o:o-2"]).text, "3000")
        XCTAssertNil(redis.call(["HGET", keys[0], "o:o-1"]).text)
        XCTAssertEqual(try pushes(redis), [], "no level reached: no push")
    }

    func testALevelChangePushesMemberLevelInTheSameStep() throws {
        let redis = try ScriptRedis()
        move(redis, order: "o-1", amount: 9_999)
        XCTAssertEqual(try pushes(redis), [])
        move(redis, order: "o-2", amount: 1)
        move(redis, order: "o-3", amount: 100)
        move(redis, order: "o-4", amount: 60_000)
        move(redis, order: "o-4", amount: nil)
        move(redis, order: "o-2", amount: nil)
        XCTAssertEqual(try pushes(redis), [
            try JSON.parse(#"{"level":"silver","previous":null,"points":10000}"#),
            try JSON.parse(#"{"level":"金牌 \"gold\"","previous":"silver","points":70100}"#),
            try JSON.parse(#"{"level":"silver","previous":"金牌 \"gold\"","points":10100}"#),
        ], "up, up two rungs' worth into gold, back down; a move within a level pushes nothing")
        XCTAssertEqual(redis.call(["HGET", keys[1], "offset"]).int, 3)
    }

    func testNoLadderNoPush() throws {
        let redis = try ScriptRedis()
        XCTAssertEqual(move(redis, order: "o-1", amount: 1_000_000, ladder: .none), 1_000_000)
        XCTAssertEqual(try pushes(redis), [])
    }

    /// Amounts up to Ranges.amount (10^13) and totals past 10^14: a Lua number written with
    /// `..` has 14 significant digits ("1.1e+14"), which HINCRBY refuses and JSON misreads.
    func testLargeAmountsStayExact() throws {
        let redis = try ScriptRedis()
        let whale: Int64 = 100_000_000_000_000
        let ladder = try MemberLevels(validating: [MemberLevel(name: "whale", minPoints: whale, discountPercent: 1)])
        let big = Ranges.amount.upperBound
        for n in 1...11 { XCTAssertEqual(move(redis, order: "o-\(n)", amount: big, ladder: ladder), big * Int64(n)) }
        XCTAssertEqual(move(redis, order: "o-12", amount: big - 1, ladder: ladder), 12 * big - 1)
        XCTAssertEqual(move(redis, order: "o-1", amount: nil, ladder: ladder), 11 * big - 1)
        XCTAssertEqual(redis.call(["HGET", keys[0], "total"]).text, String(11 * big - 1))
        XCTAssertEqual(try pushes(redis).map { $0["points"] }, [.int(10 * big)], "into whale at exactly 10^14, once, with the exact total")
    }

    /// The Lua ladder and the order core's agree on every rung's edges.
    func testLevelAtAgreesWithTheOrderCore() throws {
        let redis = try ScriptRedis()
        let ladder = try MemberLevels(validating: [
            MemberLevel(name: "bronze", minPoints: 0, discountPercent: 0),
            MemberLevel(name: "silver", minPoints: 10_000, discountPercent: 5),
            MemberLevel(name: "top", minPoints: MemberLevels.maxPoints, discountPercent: 50),
        ])
        for points: Int64 in [0, 1, 9_999, 10_000, 10_001, MemberLevels.maxPoints - 1, MemberLevels.maxPoints] {
            let lua = redis.run(Self.levelScript, keys: [], args: [ladder.scriptArgument, String(points)]).text
            XCTAssertEqual(lua, ladder.level(at: points)?.name ?? "", "at \(points)")
        }
        let above = try MemberLevels(validating: [MemberLevel(name: "silver", minPoints: 10_000, discountPercent: 5)])
        XCTAssertEqual(redis.run(Self.levelScript, keys: [], args: [above.scriptArgument, "9999"]).text, "", "below the first: none")
        XCTAssertEqual(MemberLevels.none.scriptArgument, "[]")
    }
}
