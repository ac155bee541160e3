@testable import GatewayNode
import GatewayIO
import XCTest

/// The shared publish library, through a one-line wrapper script.
final class PublishScriptTests: XCTestCase {
    func testPublishAppendsToTheLogAndCountsTheOffset() throws {
        let redis = try ScriptRedis()
        let wrapper = LuaScript.embedded("publish_test", Array("""
        local META, LOG = KEYS[1], KEYS[2]
        return publish(META, LOG, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
        """.utf8), libraries: [PackageResources.lib_publish_lua])
        let keys = ["gw:{user:u1}:meta", "gw:{user:u1}:log"]
        XCTAssertEqual(redis.run(wrapper, keys: keys, args: ["user:u1", "t", "{}", 10, 60, "e1"]).int, 1)
        XCTAssertEqual(redis.run(wrapper, keys: keys, args: ["user:u1", "t", "{\"a\":1}", 10, 60, "e2"]).int, 2)
        XCTAssertEqual(redis.call(["HGET", keys[0], "epoch"]).text, "e1", "the first epoch stays")
        let entries = redis.call(["XRANGE", keys[1], "-", "+"]).array ?? []
        XCTAssertEqual(entries.count, 2)
        XCTAssertEqual(entries.last?.array?.first?.text, "0-2")
    }
}
