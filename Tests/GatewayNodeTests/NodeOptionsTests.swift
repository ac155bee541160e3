import Foundation
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
        settings.sales.paySeconds = 2
        settings.sales.buysInFlight = 9
        let o = options(settings)
        XCTAssertEqual(o.commerce.saleTTL, 2_000)
        XCTAssertEqual(o.saleBuysInFlight, 9)
        XCTAssertEqual(o.maxBody, 12_345)
        XCTAssertEqual(o.groupRate, 7)
        XCTAssertEqual(o.commerce.orderTTL, 60_000)
        XCTAssertEqual(o.connsPerIP, 3)
        XCTAssertEqual(o.redisHost, "127.0.0.1")
        XCTAssertEqual(o.redisPort, 6390)
        XCTAssertEqual(o.pingSeconds, Settings.defaults.server.pingSeconds)
        XCTAssertEqual(o.historyMaxRecover, Settings.defaults.history.maxRecover)
    }

    func testWebhooksRetryTimeIsTheEventLogsRetention() {
        var settings = Settings.defaults
        XCTAssertEqual(Node.storeSettings(options(settings)).eventRetentionMs, 259_200_000 + 3_600_000,
                       "3 days by default (contract 4.4), and an hour for the last retry")
        settings.webhooks.retryForSeconds = 3_600
        XCTAssertEqual(Node.storeSettings(options(settings)).eventRetentionMs, 7_200_000)
    }

    func testProviderSettingsReachTheNodeAndBadKeyFilesStopIt() throws {
        var settings = Settings.defaults
        settings.payments.epayKey = "epay-key"
        settings.payments.alipayPublicKey = "/nonexistent/alipay.pem"
        let o = options(settings)
        XCTAssertEqual(o.providerSettings, ProviderSettings(alipayPublicKey: "/nonexistent/alipay.pem", epayKey: "epay-key"))
        XCTAssertThrowsError(try ProviderAdapters(o.providerSettings)) { error in
            XCTAssertTrue("\(error)".hasPrefix("payments.alipay_public_key: cannot read /nonexistent/alipay.pem"), "\(error)")
        }
        let notAKey = FileManager.default.temporaryDirectory.appendingPathComponent("gw-not-a-key-\(UUID().uuidString).pem")
        try "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".write(to: notAKey, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: notAKey) }
        XCTAssertThrowsError(try ProviderAdapters(ProviderSettings(wechatpayPlatformPublicKey: notAKey.path,
                                                                   wechatpayAPIv3Key: String(repeating: "k", count: 32)))) { error in
            XCTAssertTrue("\(error)".contains("holds no RSA public key"), "\(error)")
        }
        let empty = try ProviderAdapters(ProviderSettings())
        XCTAssertNil(empty.alipay)
        XCTAssertNil(empty.wechatpay)
        XCTAssertNil(empty.epay)
        XCTAssertNotNil(try ProviderAdapters(ProviderSettings(epayKey: "k")).epay)
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
