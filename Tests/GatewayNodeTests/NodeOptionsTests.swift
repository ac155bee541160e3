import GatewayConfig
@testable import GatewayNode
import XCTest

/// Options are what the settings say, derived in one place; a node refuses keys it must not seal with.
final class NodeOptionsTests: XCTestCase {
    private func options(_ settings: Settings = .defaults) -> NodeOptions {
        NodeOptions(settings: settings, nodeName: "n1", redis: RedisURL(endpoints: [.tcp(host: "127.0.0.1", port: 6390)]), dev: false)
    }

    func testOptionsFollowTheSettings() {
        var settings = Settings.defaults
        settings.limits.maxBody = 12_345
        settings.groups.rate = 7
        settings.orders.ttlSeconds = 60
        settings.limits.connsPerIP = 3
        let o = options(settings)
        XCTAssertEqual(o.maxBody, 12_345)
        XCTAssertEqual(o.groupRate, 7)
        XCTAssertEqual(o.commerce.orderTTL, 60_000)
        XCTAssertEqual(o.connsPerIP, 3)
        XCTAssertEqual(o.redisHost, "127.0.0.1")
        XCTAssertEqual(o.redisPort, 6390)
        XCTAssertEqual(o.pingSeconds, Settings.defaults.server.pingSeconds)
        XCTAssertEqual(o.historyMaxRecover, Settings.defaults.history.maxRecover)
    }

    func testAllZeroCardKeySecretIsRefused() {
        var o = options()
        o.keysSecret = [UInt8](repeating: 0, count: 32)
        XCTAssertThrowsError(try Node(options: o)) { error in
            XCTAssertTrue("\(error)".contains("all zeros"), "\(error)")
        }
        o.keysSecret = [UInt8](repeating: 7, count: 31)
        XCTAssertThrowsError(try Node(options: o)) { error in
            XCTAssertTrue("\(error)".contains("32 bytes"), "\(error)")
        }
    }
}
