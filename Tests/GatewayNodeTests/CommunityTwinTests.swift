import CommunityCore
import GatewayCore
@testable import GatewayNode
import GatewayProtocol
import XCTest

/// Node logic against the in-memory stores: the price-drop alert decisions (`PriceDrop`)
/// over a store's pages, merchant checks, and the outbox path of a cluster.
final class CommunityTwinTests: XCTestCase {
    private var clock: Int64 = 1_000_000
    private var channels: MemoryChannelStore!
    private var community: MemoryCommunityStore!

    override func setUp() {
        var settings = StoreSettings()
        settings.newEpoch = { "e" }
        channels = MemoryChannelStore(settings: settings) { [unowned self] in self.clock }
        community = MemoryCommunityStore(channels: channels)
    }

    private func value<T>(_ call: (@escaping (StoreResult<T>) -> Void) -> Void) throws -> T {
        var out: StoreResult<T>?
        call { out = $0 }
        return try XCTUnwrap(out).get()
    }

    private func create(_ id: String = "p", price: Int64 = 100) throws {
        XCTAssertTrue(try value { community.createProduct(ProductRecord(id: id, merchant: "m1", title: "Card", price: price,
                                                                        currency: "CNY", createdAt: clock), $0) })
    }

    /// The walk the node runs on a price drop: page after page, alerts the rule picks.
    private func dropPrice(to price: Int64, page: Int = 2) throws -> Int {
        guard case .updated(let previous, let now, let title, let currency) = try value({
            community.updateProduct("p", price: price, title: nil, merchant: nil, $0)
        }) else { XCTFail("update"); return 0 }
        let drop = PriceDrop(product: "p", title: title, currency: currency, previous: previous, price: now, cooldownMs: 60_000)
        var sent = 0, start = 0
        while true {
            let batch = try value { community.watchersBelow(product: "p", price: now, start: start, count: page, $0) }
            sent += try value { community.sendAlerts(product: "p", drop.alerts(batch.watches, now: clock), $0) }
            if batch.scanned < page { return sent }
            start += page
        }
    }

    private func alerts(_ user: String) -> [String] {
        channels.announced.filter { $0.channel == .user(user) }.map(\.push)
    }

    func testAPriceDropAlertsEachWatcherAboveTheNewPriceOnce() throws {
        try create()
        for (user, below) in [("a", 90 as Int64?), ("b", nil), ("c", 50), ("d", 95), ("e", 99)] {
            _ = try value { community.watch(product: "p", user: user, below: below, nowMs: clock, ttlMs: 3_600_000, $0) }
        }
        XCTAssertEqual(try dropPrice(to: 80), 4, "a, b, d, e: thresholds above 80, over three pages")
        XCTAssertEqual(alerts("c"), [])
        XCTAssertEqual(alerts("a").count, 1)
        XCTAssertTrue(alerts("a")[0].contains(#""push":"price.drop""#))
        clock += 1_000
        XCTAssertEqual(try dropPrice(to: 85), 0, "a rise over the last alert is no new low")
        XCTAssertEqual(try dropPrice(to: 70), 4, "a new low passes the cooldown")
        XCTAssertEqual(channels.announced.filter { $0.channel == .product("p") }.count, 3, "each change announced on product:")
    }

    func testAnAlertForAWatchChangedMeanwhileIsSkipped() throws {
        try create()
        _ = try value { community.watch(product: "p", user: "a", below: nil, nowMs: clock, ttlMs: 3_600_000, $0) }
        let page = try value { community.watchersBelow(product: "p", price: 80, start: 0, count: 10, $0) }
        let drop = PriceDrop(product: "p", title: "Card", currency: "CNY", previous: 100, price: 80, cooldownMs: 0)
        _ = try value { community.watch(product: "p", user: "a", below: 60, nowMs: clock, ttlMs: 3_600_000, $0) }
        XCTAssertEqual(try value { community.sendAlerts(product: "p", drop.alerts(page.watches, now: clock), $0) }, 0)
    }

    func testOnAClusterAlertsGoThroughTheOutboxAndARepeatedRelayPublishesNothing() throws {
        community.isCluster = true
        try create()
        _ = try value { community.watch(product: "p", user: "a", below: nil, nowMs: clock, ttlMs: 3_600_000, $0) }
        let page = try value { community.watchersBelow(product: "p", price: 80, start: 0, count: 10, $0) }
        let drop = PriceDrop(product: "p", title: "Card", currency: "CNY", previous: 100, price: 80, cooldownMs: 0)
        // Written to the outbox and relayed, but (as after a crash) not deleted: relayed again.
        community.isCluster = true
        XCTAssertEqual(try value { community.sendAlerts(product: "p", drop.alerts(page.watches, now: clock), $0) }, 1)
        XCTAssertEqual(alerts("a").count, 1)
        XCTAssertEqual(community.relayOutbox("p"), 0)
        XCTAssertEqual(alerts("a").count, 1)
    }

    /// The restock line as watch.lua keeps it: watch order, a place kept on watching again,
    /// left by a plain watch or an unwatch; paged live entries; pushes only to those in line.
    func testTheRestockLineKeepsWatchOrder() throws {
        try create()
        for user in ["a", "b", "c", "a"] {
            _ = try value { community.watch(product: "p", user: user, below: nil, restock: true, nowMs: clock, ttlMs: 3_600_000, $0) }
        }
        _ = try value { community.watch(product: "p", user: "b", below: nil, nowMs: clock, ttlMs: 3_600_000, $0) }
        _ = try value { community.watch(product: "p", user: "d", below: nil, restock: true, nowMs: clock, ttlMs: 3_600_000, $0) }
        try value { community.unwatch(product: "p", user: "c", $0) }
        let first = try value { community.restockLine(product: "p", after: nil, count: 1, nowMs: clock, $0) }
        XCTAssertEqual(first.users, ["a"])
        let rest = try value { community.restockLine(product: "p", after: first.last, count: 10, nowMs: clock, $0) }
        XCTAssertEqual(rest.users, ["d"])
        XCTAssertEqual(try value { community.watches(user: "a", nowMs: clock, $0) }.first?.restock, true)
        XCTAssertEqual(try value { community.watches(user: "b", nowMs: clock, $0) }.first?.restock, false)
        XCTAssertEqual(try value { community.restockNotify(product: "p", users: ["a", "b"], data: "{}", onlyInLine: true, $0) }, 1)
        XCTAssertEqual(alerts("a").count, 1)
        XCTAssertEqual(alerts("b"), [])
    }

    func testMerchantsTouchOnlyTheirOwnProducts() throws {
        try create()
        XCTAssertEqual(try value { community.updateProduct("p", price: 1, title: nil, merchant: "m2", $0) }, .notYours)
        XCTAssertEqual(try value { community.updateProduct("nope", price: 1, title: nil, merchant: "m1", $0) }, .noProduct)
        XCTAssertEqual(try value { channels.publish(.group("p"), type: "x", data: "{}", merchant: "m2", $0) }, .notYours)
        XCTAssertEqual(try value { channels.publish(.group("p"), type: "x", data: "{}", merchant: "m1", $0) }, .published(offset: 1))
        XCTAssertEqual(try value { channels.publish(.user("u"), type: "x", data: "{}", merchant: "m1", $0) }, .notYours)
    }

    func testHistoryAndRecoveryFollowTheCaps() throws {
        channels.settings.maxRecover = 2
        for n in 1...4 { _ = try value { channels.publish(.user("u"), type: "t", data: "{\"n\":\(n)}", merchant: nil, $0) } }
        let recover = try value { channels.read(.user("u"), since: StreamPosition(offset: 1, epoch: "e"), purpose: .subscriber(1, request: 1), $0) }
        XCTAssertFalse(recover.recovered)
        XCTAssertEqual(recover.publications.map(\.offset), [3, 4])
        let page = try value { channels.history(.user("u"), since: nil, limit: 3, $0) }
        XCTAssertTrue(page.truncated)
        XCTAssertEqual(page.publications.count, 2)
    }

    func testAStoreFailureIsTheClientsError() throws {
        community.failure = .redisUnavailable
        XCTAssertThrowsError(try value { community.presence(.group("p"), $0) })
    }
}
