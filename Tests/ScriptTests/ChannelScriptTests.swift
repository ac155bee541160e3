import GatewayCore
@testable import GatewayNode
import GatewayProtocol
import XCTest

/// publish.lua, read.lua, history.lua (with lib_pages) through RedisChannelStore.
final class ChannelScriptTests: XCTestCase {
    func testPublishNumbersOffsetsAndKeepsTheFirstEpoch() throws {
        let f = try StoreFixture()
        let one = try f.value { f.channels.publish(.user("u1"), type: "note", data: "{\"n\":1}", merchant: nil, $0) }
        let two = try f.value { f.channels.publish(.user("u1"), type: "note", data: "{\"n\":2}", merchant: nil, $0) }
        XCTAssertEqual([one, two], [.published(offset: 1), .published(offset: 2)])
        let pushes = f.pushes("user:u1")
        XCTAssertEqual(pushes.count, 2)
        XCTAssertTrue(pushes[1].hasPrefix(#"{"push":"note","channel":"user:u1","offset":2,"epoch":"e1","ts":"#), pushes[1])
        XCTAssertTrue(pushes[1].hasSuffix(#","data":{"n":2}}"#))
    }

    func testAMerchantPublishesOnlyToItsOwnProductsChannels() throws {
        let f = try StoreFixture()
        f.redis.call(["HSET", StoreKeys.productInfo("p1"), "merchant", "m1", "price", "100"])
        for channel in [Channel.product("p1"), .group("p1")] {
            XCTAssertEqual(try f.value { f.channels.publish(channel, type: "x", data: "{}", merchant: "m1", $0) }, .published(offset: 1))
            XCTAssertEqual(try f.value { f.channels.publish(channel, type: "x", data: "{}", merchant: "m2", $0) }, .notYours)
        }
        XCTAssertEqual(try f.value { f.channels.publish(.product("nope"), type: "x", data: "{}", merchant: "m1", $0) }, .noProduct)
        XCTAssertEqual(try f.value { f.channels.publish(.group("nope"), type: "x", data: "{}", merchant: "m1", $0) }, .noProduct)
        XCTAssertEqual(try f.value { f.channels.publish(.user("u1"), type: "x", data: "{}", merchant: "m1", $0) }, .notYours)
        XCTAssertEqual(f.pushes("product:p1").count, 1, "refused pushes leave nothing")
    }

    func testReadRecoversWhatFitsAndPagesAGapOldestFirst() throws {
        var settings = StoreFixture.settings
        settings.maxRecover = 3
        let f = try StoreFixture(settings: settings)
        for n in 1...5 { _ = try f.value { f.channels.publish(.group("g"), type: "t", data: "{\"n\":\(n)}", merchant: nil, $0) } }
        let fresh = try f.value { f.channels.read(.group("g"), since: nil, purpose: .gapFill, $0) }
        XCTAssertEqual(fresh.offset, 5)
        XCTAssertEqual(fresh.publications.count, 0)

        let all = try f.value { f.channels.read(.group("g"), since: StreamPosition(offset: 3, epoch: "e1"), purpose: .gapFill, $0) }
        XCTAssertTrue(all.recovered)
        XCTAssertEqual(all.publications.map(\.offset), [4, 5])

        let tooMany = try f.value {
            f.channels.read(.group("g"), since: StreamPosition(offset: 0, epoch: "e1"), purpose: .subscriber(1, request: 1), $0)
        }
        XCTAssertFalse(tooMany.recovered, "more than max_recover after since")
        XCTAssertEqual(tooMany.publications.map(\.offset), [3, 4, 5], "the newest that fit")

        let page = try f.value { f.channels.read(.group("g"), since: StreamPosition(offset: 0, epoch: "e1"), purpose: .gapFill, $0) }
        XCTAssertTrue(page.recovered)
        XCTAssertEqual(page.publications.map(\.offset), [1, 2, 3], "a gap fill pages from the oldest")

        let otherEpoch = try f.value { f.channels.read(.group("g"), since: StreamPosition(offset: 2, epoch: "zz"), purpose: .gapFill, $0) }
        XCTAssertFalse(otherEpoch.recovered)
    }

    func testHistoryPagesByLimitAndMarksCapsAsTruncated() throws {
        var settings = StoreFixture.settings
        settings.replyPublicationBytes = 300
        let f = try StoreFixture(settings: settings)
        for n in 1...6 { _ = try f.value { f.channels.publish(.product("p"), type: "t", data: "{\"n\":\(n)}", merchant: nil, $0) } }
        let latest = try f.value { f.channels.history(.product("p"), since: nil, limit: 2, $0) }
        XCTAssertEqual(latest.offset, 6)
        XCTAssertFalse(latest.truncated)
        XCTAssertEqual(latest.publications.count, 2)
        XCTAssertTrue(String(decoding: latest.publications[0], as: UTF8.self).contains(#""offset":5"#))

        let after = try f.value { f.channels.history(.product("p"), since: StreamPosition(offset: 1, epoch: "e1"), limit: 2, $0) }
        XCTAssertEqual(after.publications.map { String(decoding: $0, as: UTF8.self).contains(#""offset":2"#) }, [true, false])

        let capped = try f.value { f.channels.history(.product("p"), since: nil, limit: 6, $0) }
        XCTAssertTrue(capped.truncated, "300 bytes hold fewer than 6 pushes")
        XCTAssertLessThan(capped.publications.count, 6)
        XCTAssertLessThanOrEqual(capped.publications.reduce(0) { $0 + $1.count + 1 }, 300)
    }
}
