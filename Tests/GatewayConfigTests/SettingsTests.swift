import Foundation
import OrderCore
import XCTest

@testable import GatewayConfig

final class SettingsTests: XCTestCase {
    /// The real default file, so the shipped file and `Settings.defaults` cannot drift apart.
    static let shippedFile = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Config/gateway.json").path

    static let hexKey = String(repeating: "0123456789abcdef", count: 4)

    var temporaryFiles: [String] = []

    override func tearDown() {
        for path in temporaryFiles { try? FileManager.default.removeItem(atPath: path) }
        temporaryFiles = []
        super.tearDown()
    }

    func writeFile(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("gateway-settings-\(UUID().uuidString).json").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        temporaryFiles.append(path)
        return path
    }

    func load(file: String? = nil, env: [String: String] = [:], overrides: [String: String] = [:])
        async throws -> Settings
    {
        try await Settings.load(file: file, environment: env, overrides: overrides)
    }

    /// The message of the start-up error, or a failure when loading succeeds.
    func loadError(file: String? = nil, env: [String: String] = [:], overrides: [String: String] = [:],
                   line: UInt = #line) async -> String {
        do {
            let settings = try await Settings.load(file: file, environment: env, overrides: overrides)
            XCTFail("expected a configuration error, loaded \(settings)", line: line)
            return ""
        } catch {
            return error.message
        }
    }

    // MARK: Defaults

    func testDefaultsMatchShippedFile() async throws {
        let settings = try await load(file: Self.shippedFile)
        XCTAssertEqual(settings, Settings.defaults)
        XCTAssertNil(settings.redis.url)
        XCTAssertNil(settings.server.node)
        XCTAssertEqual(settings.limits.maxFrame, 65_536)
        XCTAssertEqual(settings.limits.connectTimeoutSeconds, 10)
        XCTAssertEqual(settings.server.pingSeconds, 25)
        XCTAssertEqual(settings.api.merchantKeys, [:])
        XCTAssertFalse(settings.groups.allowLinks)
    }

    func testShippedFileListsEverySetting() throws {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: Self.shippedFile))
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        var keys: Set<String> = []
        for (section, value) in root {
            for name in try XCTUnwrap(value as? [String: Any]).keys { keys.insert(section + "." + name) }
        }
        XCTAssertEqual(keys, Set(Settings.settingKeys))
        XCTAssertEqual(Settings.settingKeys.count, 63)
    }

    func testNoFileGivesDefaults() async throws {
        let settings = try await load()
        XCTAssertEqual(settings, Settings.defaults)
    }

    // MARK: Environment

    func testEnvironmentOverridesEachType() async throws {
        let settings = try await load(file: Self.shippedFile, env: [
            "GATEWAY_AUTH_SECRET": "jwt-secret",
            "GATEWAY_API_SHOP_KEY": "shop",
            "GATEWAY_API_MERCHANT_KEYS": "m1:key1, m2:key2,",
            "GATEWAY_LIMITS_CONNECT_TIMEOUT": "3",
            "GATEWAY_LIMITS_MAX_FRAME": "4096",
            "GATEWAY_GROUPS_ALLOW_LINKS": "yes",
            "GATEWAY_SERVER_HOST": "0.0.0.0",
            "GATEWAY_SERVER_NODE": "n1",
            "GATEWAY_REDIS_URL": "redis://127.0.0.1:6390",
            "GATEWAY_KEYS_SECRET": Self.hexKey,
            "GATEWAY_CONFIG": "not a setting, left to the CLI",
            "PATH": "/usr/bin",
        ])
        XCTAssertEqual(settings.auth.secret, "jwt-secret")
        XCTAssertEqual(settings.api.shopKey, "shop")
        XCTAssertEqual(settings.api.merchantKeys, ["m1": "key1", "m2": "key2"])
        XCTAssertEqual(settings.limits.connectTimeoutSeconds, 3)
        XCTAssertEqual(settings.limits.maxFrame, 4096)
        XCTAssertTrue(settings.groups.allowLinks)
        XCTAssertEqual(settings.server.host, "0.0.0.0")
        XCTAssertEqual(settings.server.node, "n1")
        XCTAssertEqual(settings.nodeName(), "n1")
        XCTAssertEqual(settings.redis.url, "redis://127.0.0.1:6390")
        XCTAssertEqual(settings.keys.secretBytes?.count, 32)
        XCTAssertEqual(settings.keys.secretBytes?.prefix(2), [0x01, 0x23])
        // Untouched settings keep the file's values.
        XCTAssertEqual(settings.history, Settings.defaults.history)
        XCTAssertEqual(settings.limits.maxQueue, 1_048_576)
    }

    func testBooleanSpellings() async throws {
        for (text, expected) in [("true", true), ("FALSE", false), ("1", true), ("no", false)] {
            let fromEnv = try await load(env: ["GATEWAY_GROUPS_ALLOW_LINKS": text])
            XCTAssertEqual(fromEnv.groups.allowLinks, expected, text)
            let fromFlag = try await load(overrides: ["groups.allow_links": text])
            XCTAssertEqual(fromFlag.groups.allowLinks, expected, text)
        }
    }

    func testEmptyOptionalStringsMeanNil() async throws {
        let settings = try await load(env: ["GATEWAY_REDIS_URL": "redis://h:1"],
                                      overrides: ["redis.url": "", "server.node": ""])
        XCTAssertNil(settings.redis.url)
        XCTAssertNil(settings.server.node)
        XCTAssertTrue(settings.nodeName().hasSuffix("-\(getpid())"), settings.nodeName())
    }

    // MARK: Precedence

    func testOverrideBeatsEnvironmentBeatsFileBeatsDefault() async throws {
        let file = try writeFile(#"{"server": {"port": 9000, "ping_s": 30}, "history": {"ttl_s": 100}}"#)
        let env = ["GATEWAY_SERVER_PORT": "9001", "GATEWAY_SERVER_PING_S": "31"]

        let all = try await load(file: file, env: env, overrides: ["server.port": "9002"])
        XCTAssertEqual(all.server.port, 9002)
        XCTAssertEqual(all.server.pingSeconds, 31)
        XCTAssertEqual(all.history.ttlSeconds, 100)
        XCTAssertEqual(all.history.userSize, 1000)

        let noFlags = try await load(file: file, env: env)
        XCTAssertEqual(noFlags.server.port, 9001)

        let fileOnly = try await load(file: file)
        XCTAssertEqual(fileOnly.server.port, 9000)
        XCTAssertEqual(fileOnly.server.pingSeconds, 30)

        let flagsOnly = try await load(overrides: ["server.port": "0"])
        XCTAssertEqual(flagsOnly.server.port, 0)
    }

    func testMerchantKeysFromFileAreReplacedWholeByHigherLayers() async throws {
        let file = try writeFile(#"{"api": {"merchant_keys": {"m1": "k1", "shop.a:b": "k2"}}}"#)
        let fromFile = try await load(file: file)
        XCTAssertEqual(fromFile.api.merchantKeys, ["m1": "k1", "shop.a:b": "k2"])

        let fromEnv = try await load(file: file, env: ["GATEWAY_API_MERCHANT_KEYS": "m9:k9"])
        XCTAssertEqual(fromEnv.api.merchantKeys, ["m9": "k9"])

        let cleared = try await load(file: file, env: ["GATEWAY_API_MERCHANT_KEYS": "m9:k9"],
                                     overrides: ["api.merchant_keys": ""])
        XCTAssertEqual(cleared.api.merchantKeys, [:])

        let keyWithColon = try await load(overrides: ["api.merchant_keys": "m1:a:b"])
        XCTAssertEqual(keyWithColon.api.merchantKeys, ["m1": "a:b"])
    }

    // MARK: Errors

    func testBadIntegerNamesVariable() async {
        let message = await loadError(env: ["GATEWAY_LIMITS_MAX_FRAME": "abc"])
        XCTAssertEqual(message, #"GATEWAY_LIMITS_MAX_FRAME: expected a whole number, got "abc""#)
    }

    func testBadBooleanNamesVariable() async {
        let message = await loadError(env: ["GATEWAY_GROUPS_ALLOW_LINKS": "maybe"])
        XCTAssertEqual(message, #"GATEWAY_GROUPS_ALLOW_LINKS: expected true or false (or yes/no, 1/0), got "maybe""#)
        let flag = await loadError(overrides: ["groups.allow_links": "maybe"])
        XCTAssertEqual(flag, #"command line groups.allow_links: expected true or false, got "maybe""#)
    }

    func testOutOfRangeValues() async {
        let port = await loadError(env: ["GATEWAY_SERVER_PORT": "70000"])
        XCTAssertEqual(port, "GATEWAY_SERVER_PORT: must be between 0 and 65535, got 70000")
        let negative = await loadError(overrides: ["server.port": "-1"])
        XCTAssertEqual(negative, "command line server.port: must be between 0 and 65535, got -1")
        let frame = await loadError(env: ["GATEWAY_LIMITS_MAX_FRAME": "127"])
        XCTAssertEqual(frame, "GATEWAY_LIMITS_MAX_FRAME: must be between 128 and 16777216, got 127")
        let ping = await loadError(env: ["GATEWAY_SERVER_PING_S": "0"])
        XCTAssertTrue(ping.hasPrefix("GATEWAY_SERVER_PING_S: must be between 1 and 3600"), ping)
        let queue = await loadError(env: ["GATEWAY_LIMITS_MAX_QUEUE": "0"])
        XCTAssertTrue(queue.hasPrefix("GATEWAY_LIMITS_MAX_QUEUE: must be between 1 and"), queue)
        let stall = await loadError(env: ["GATEWAY_REDIS_TIMEOUT_S": "0"])
        XCTAssertEqual(stall, "GATEWAY_REDIS_TIMEOUT_S: must be between 1 and 3600, got 0")
    }

    /// `risk.*`: 0 turns a limit off; a negative one is refused, naming the setting.
    func testRiskLimits() async throws {
        let settings = try await load(env: ["GATEWAY_RISK_MAX_PENDING_ORDERS": "0"], overrides: ["risk.max_requests_per_hour": "3"])
        XCTAssertEqual(settings.risk, Settings.Risk(maxPendingOrders: 0, maxRequestsPerHour: 3))
        XCTAssertEqual(Settings.defaults.risk, Settings.Risk(maxPendingOrders: 5, maxRequestsPerHour: 20))
        let negative = await loadError(env: ["GATEWAY_RISK_MAX_REQUESTS_PER_HOUR": "-1"])
        XCTAssertEqual(negative, "GATEWAY_RISK_MAX_REQUESTS_PER_HOUR: must be between 0 and 1000000, got -1")
    }

    /// `recall.dormant_s`: 30 days by default; a minute at least.
    func testRecallDormantSeconds() async throws {
        XCTAssertEqual(Settings.defaults.recall.dormantSeconds, 2_592_000)
        let settings = try await load(env: ["GATEWAY_RECALL_DORMANT_S": "60"])
        XCTAssertEqual(settings.recall.dormantSeconds, 60)
        let tooShort = await loadError(env: ["GATEWAY_RECALL_DORMANT_S": "59"])
        XCTAssertEqual(tooShort, "GATEWAY_RECALL_DORMANT_S: must be between 60 and 31536000, got 59")
    }

    func testTLSNeedsBothCertificateAndKey() async throws {
        let settings = try await load(env: ["GATEWAY_SERVER_TLS_CERT": "/etc/gw/cert.pem", "GATEWAY_SERVER_TLS_KEY": "/etc/gw/key.pem"])
        XCTAssertEqual(settings.server.tlsCert, "/etc/gw/cert.pem")
        XCTAssertEqual(settings.server.tlsKey, "/etc/gw/key.pem")
        XCTAssertNil(Settings.defaults.server.tlsCert)
        let certOnly = await loadError(overrides: ["server.tls_cert": "/etc/gw/cert.pem"])
        XCTAssertTrue(certOnly.hasPrefix("server.tls_cert is set but server.tls_key is not"), certOnly)
        let keyOnly = await loadError(env: ["GATEWAY_SERVER_TLS_KEY": "/etc/gw/key.pem"])
        XCTAssertTrue(keyOnly.hasPrefix("server.tls_key is set but server.tls_cert is not"), keyOnly)
    }

    func testWebhookSettings() async throws {
        let settings = try await load(env: ["GATEWAY_WEBHOOKS_URL": "https://shop.example/hooks", "GATEWAY_WEBHOOKS_SECRET": "whsec-1",
                                            "GATEWAY_WEBHOOKS_MAX_BACKOFF_S": "60", "GATEWAY_WEBHOOKS_RETRY_FOR_S": "3600",
                                            "GATEWAY_WEBHOOKS_CONCURRENCY": "4"])
        XCTAssertEqual(settings.webhooks, Settings.Webhooks(url: "https://shop.example/hooks", secret: "whsec-1",
                                                            maxBackoffSeconds: 60, retryForSeconds: 3600, concurrency: 4))
        XCTAssertFalse(settings.description.contains("whsec-1"), "the secret is never printed")
        XCTAssertFalse(settings.description.contains("shop.example"), "nor the URL, which may carry a token")
        let noSecret = await loadError(overrides: ["webhooks.url": "http://127.0.0.1:9000/hooks"])
        XCTAssertTrue(noSecret.hasPrefix("webhooks.url is set but webhooks.secret is not"), noSecret)
        let notHTTP = await loadError(overrides: ["webhooks.url": "ftp://shop.example/hooks", "webhooks.secret": "s"])
        XCTAssertTrue(notHTTP.hasPrefix("command line webhooks.url: expected an http:// or https:// URL"), notHTTP)
        let short = await loadError(overrides: ["webhooks.retry_for_s": "59"])
        XCTAssertTrue(short.contains("webhooks.retry_for_s"), short)
        let tooMany = await loadError(overrides: ["webhooks.concurrency": "257"])
        XCTAssertTrue(tooMany.contains("webhooks.concurrency"), tooMany)
    }

    func testPaymentProviderSettings() async throws {
        let settings = try await load(env: ["GATEWAY_PAYMENTS_ALIPAY_PUBLIC_KEY": "/etc/gw/alipay.pem",
                                            "GATEWAY_PAYMENTS_WECHATPAY_PLATFORM_PUBLIC_KEY": "/etc/gw/wechatpay.pem",
                                            "GATEWAY_PAYMENTS_WECHATPAY_API_V3_KEY": String(repeating: "k", count: 32),
                                            "GATEWAY_PAYMENTS_EPAY_KEY": "epay-merchant-key"])
        XCTAssertEqual(settings.payments.alipayPublicKey, "/etc/gw/alipay.pem")
        XCTAssertEqual(settings.payments.wechatpayPlatformPublicKey, "/etc/gw/wechatpay.pem")
        XCTAssertEqual(settings.payments.epayKey, "epay-merchant-key")
        XCTAssertFalse(settings.description.contains("epay-merchant-key"), "a provider key must never be printed")
        XCTAssertFalse(settings.description.contains(String(repeating: "k", count: 32)))
        XCTAssertNil(Settings.defaults.payments.alipayPublicKey)
        let short = await loadError(overrides: ["payments.wechatpay_api_v3_key": "short"])
        XCTAssertTrue(short.contains("32-character API v3 key"), short)
        let half = await loadError(overrides: ["payments.wechatpay_platform_public_key": "/etc/gw/wechatpay.pem"])
        XCTAssertTrue(half.hasPrefix("payments.wechatpay_platform_public_key and payments.wechatpay_api_v3_key go together"), half)
    }

    func testRedisTimeoutFromEnvironment() async throws {
        let settings = try await load(env: ["GATEWAY_REDIS_TIMEOUT_S": "3"])
        XCTAssertEqual(settings.redis.timeoutSeconds, 3)
        XCTAssertEqual(Settings.defaults.redis.timeoutSeconds, 10)
    }

    func testBadFlagInteger() async {
        let message = await loadError(overrides: ["server.port": "eighty"])
        XCTAssertEqual(message, #"command line server.port: expected a whole number, got "eighty""#)
    }

    func testFileValuesAreTypeCheckedStrictly() async throws {
        let file = try writeFile("""
            {"limits": {"max_frame": "big", "max_queue": 1.5, "connect_timeout": true},
             "groups": {"allow_links": 1}, "server": {"host": 5}}
            """)
        let message = await loadError(file: file)
        XCTAssertTrue(message.hasPrefix("5 configuration problems:"), message)
        XCTAssertTrue(message.contains(#"\#(file): limits.max_frame: expected a whole number, got "big""#), message)
        XCTAssertTrue(message.contains("\(file): limits.max_queue: expected a whole number, got 1.5"), message)
        XCTAssertTrue(message.contains("\(file): limits.connect_timeout: expected a whole number, got true"), message)
        XCTAssertTrue(message.contains("\(file): groups.allow_links: expected true or false, got 1"), message)
        XCTAssertTrue(message.contains("\(file): server.host: expected a string, got 5"), message)
    }

    func testFileRangeErrorNamesFileAndKey() async throws {
        let file = try writeFile(#"{"server": {"port": 65536}}"#)
        let message = await loadError(file: file)
        XCTAssertEqual(message, "\(file): server.port: must be between 0 and 65535, got 65536")
        // A valid higher layer hides the file's bad value, as layering promises.
        let fixed = try await load(file: file, env: ["GATEWAY_SERVER_PORT": "8081"])
        XCTAssertEqual(fixed.server.port, 8081)
    }

    func testUnknownKeysInFile() async throws {
        let file = try writeFile(#"{"limits": {"max_frames": 10}, "sever": {"port": 1}, "auth": {"secret": "s"}}"#)
        let message = await loadError(file: file)
        XCTAssertEqual(message, "\(file): unknown settings: limits.max_frames (did you mean limits.max_frame?), sever")
    }

    func testUnknownFlagAndVariable() async {
        let flag = await loadError(overrides: ["server.prot": "1"])
        XCTAssertEqual(flag, #"command line: unknown setting "server.prot" (did you mean server.port?)"#)
        let variable = await loadError(env: ["GATEWAY_LIMITS_MAX_FRAMES": "1"])
        XCTAssertEqual(variable, "GATEWAY_LIMITS_MAX_FRAMES: unknown setting (did you mean GATEWAY_LIMITS_MAX_FRAME?)")
    }

    func testMissingFile() async {
        let message = await loadError(file: "/nonexistent/gateway.json")
        XCTAssertEqual(message, #"config file "/nonexistent/gateway.json" not found"#)
    }

    func testInvalidJSON() async throws {
        let file = try writeFile("{\n  \"server\": {\"port\": 80}\n  \"redis\": {}\n}")
        let message = await loadError(file: file)
        XCTAssertTrue(message.hasPrefix("config file \"\(file)\" is not valid JSON: "), message)
        XCTAssertTrue(message.hasSuffix("(line 3, column 3)"), message)
        let huge = try writeFile(#"{"server": {"port": 12345678901234567890}}"#)
        let tooBig = await loadError(file: huge)
        XCTAssertTrue(tooBig.hasPrefix("\(huge): server.port: expected a whole number, got "), tooBig)
        let array = try writeFile("[1]")
        let top = await loadError(file: array)
        XCTAssertEqual(top, "config file \"\(array)\": expected a JSON object at the top, got an array")
    }

    func testSectionMustBeObject() async throws {
        let file = try writeFile(#"{"server": 8080}"#)
        let message = await loadError(file: file)
        XCTAssertEqual(message, "\(file): server: expected an object of settings, got 8080")
    }

    func testBadMerchantKeys() async throws {
        let badID = await loadError(env: ["GATEWAY_API_MERCHANT_KEYS": "bad id:k1"])
        XCTAssertEqual(badID, #"GATEWAY_API_MERCHANT_KEYS: merchant id "bad id" must be 1 to 64 of A-Z a-z 0-9 _ . : -"#)
        let noColon = await loadError(env: ["GATEWAY_API_MERCHANT_KEYS": "secretvalue"])
        XCTAssertTrue(noColon.hasPrefix("GATEWAY_API_MERCHANT_KEYS: expected merchant:key pairs"), noColon)
        XCTAssertFalse(noColon.contains("secretvalue"), "a bare key must not be echoed")
        let twice = await loadError(env: ["GATEWAY_API_MERCHANT_KEYS": "m1:a,m1:b"])
        XCTAssertEqual(twice, #"GATEWAY_API_MERCHANT_KEYS: merchant "m1" is listed twice"#)
        let shared = await loadError(env: ["GATEWAY_API_MERCHANT_KEYS": "m1:same,m2:same"])
        XCTAssertEqual(shared, #"api.merchant_keys: merchants "m1" and "m2" share one key"#)
        let shopKey = await loadError(env: ["GATEWAY_API_MERCHANT_KEYS": "m1:shop", "GATEWAY_API_SHOP_KEY": "shop"])
        XCTAssertEqual(shopKey, #"api.merchant_keys: merchant "m1"'s key equals api.shop_key"#)

        let file = try writeFile(#"{"api": {"merchant_keys": {"m1": 5}}}"#)
        let typed = await loadError(file: file)
        XCTAssertEqual(typed, "\(file): api.merchant_keys: expected an object of merchant id to key (strings)")
        let emptyKey = try writeFile(#"{"api": {"merchant_keys": {"m1": ""}}}"#)
        let empty = await loadError(file: emptyKey)
        XCTAssertEqual(empty, #"\#(emptyKey): api.merchant_keys: merchant "m1" has an empty key"#)
    }

    func testKeysSecretMustBe32HexBytesAndIsNotEchoed() async {
        let message = await loadError(env: ["GATEWAY_KEYS_SECRET": "abcdef"])
        XCTAssertEqual(message, "GATEWAY_KEYS_SECRET: expected 64 hex characters (32 bytes), got 6 characters")
        let notHex = await loadError(overrides: ["keys.secret": String(repeating: "zz", count: 32)])
        XCTAssertFalse(notHex.contains("zzzz"), notHex)
    }

    func testOtherStringChecks() async {
        let url = await loadError(env: ["GATEWAY_REDIS_URL": "localhost:6379"])
        XCTAssertEqual(url, #"GATEWAY_REDIS_URL: expected redis://, rediss://, unix:// or redis+cluster://, got a URL starting "localhost:63""#)
        let node = await loadError(overrides: ["server.node": "node one"])
        XCTAssertTrue(node.hasPrefix("command line server.node: expected 1 to 64 of"), node)
        let host = await loadError(env: ["GATEWAY_SERVER_HOST": ""])
        XCTAssertTrue(host.hasPrefix("GATEWAY_SERVER_HOST: expected a host name"), host)
        let dataDir = await loadError(overrides: ["redis.data_dir": ""])
        XCTAssertEqual(dataDir, #"command line redis.data_dir: expected a folder path, got """#)
        let level = await loadError(env: ["GATEWAY_LOGGING_LEVEL": "verbose"])
        XCTAssertEqual(level, #"GATEWAY_LOGGING_LEVEL: expected one of trace, debug, info, notice, warning, error, critical, got "verbose""#)
    }

    func testLoggingLevel() async throws {
        XCTAssertEqual(Settings.defaults.logging.level, "info")
        let debug = try await load(env: ["GATEWAY_LOGGING_LEVEL": "debug"])
        XCTAssertEqual(debug.logging.level, "debug")
    }

    func testAllProblemsReportedTogether() async {
        let message = await loadError(env: ["GATEWAY_SERVER_PORT": "x", "GATEWAY_SERVER_PING_S": "0"],
                                      overrides: ["nope.key": "1"])
        XCTAssertTrue(message.hasPrefix("3 configuration problems:\n"), message)
        XCTAssertTrue(message.contains("GATEWAY_SERVER_PORT: expected a whole number"), message)
        XCTAssertTrue(message.contains("GATEWAY_SERVER_PING_S: must be between"), message)
        XCTAssertTrue(message.contains(#"command line: unknown setting "nope.key""#), message)
    }

    // MARK: Secrets

    func testMissingSecrets() async throws {
        XCTAssertEqual(Settings.defaults.missingSecrets(), [
            "auth.secret (GATEWAY_AUTH_SECRET)",
            "api.shop_key (GATEWAY_API_SHOP_KEY)",
            "payments.secret (GATEWAY_PAYMENTS_SECRET)",
            "keys.secret (GATEWAY_KEYS_SECRET)",
        ])
        let some = try await load(env: ["GATEWAY_AUTH_SECRET": "a", "GATEWAY_KEYS_SECRET": Self.hexKey])
        XCTAssertEqual(some.missingSecrets(), [
            "api.shop_key (GATEWAY_API_SHOP_KEY)",
            "payments.secret (GATEWAY_PAYMENTS_SECRET)",
        ])
    }

    func testFillDevSecretsFillsOnlyEmptyOnesWithRandomHex() async throws {
        var settings = try await load(env: ["GATEWAY_AUTH_SECRET": "mine"])
        settings.fillDevSecrets()
        XCTAssertEqual(settings.missingSecrets(), [])
        XCTAssertEqual(settings.auth.secret, "mine")
        XCTAssertEqual(settings.keys.secretBytes?.count, 32, "a dev card-key secret must be a usable AES-256 key")
        for secret in [settings.api.shopKey, settings.payments.secret, settings.keys.secret] {
            XCTAssertEqual(secret.count, 64)
            XCTAssertTrue(secret.allSatisfy(\.isHexDigit), secret)
        }
        var other = Settings.defaults
        other.fillDevSecrets()
        XCTAssertNotEqual(other.api.shopKey, settings.api.shopKey)
        XCTAssertNotEqual(other.payments.secret, other.api.shopKey)
    }

    func testDescriptionHidesSecrets() async throws {
        let settings = try await load(env: ["GATEWAY_AUTH_SECRET": "hunter2", "GATEWAY_API_MERCHANT_KEYS": "m1:topsecret"])
        let text = settings.description
        XCTAssertFalse(text.contains("hunter2"), text)
        XCTAssertFalse(text.contains("topsecret"), text)
        XCTAssertTrue(text.contains("auth.secret = <set>"), text)
        XCTAssertTrue(text.contains("api.shop_key = <empty>"), text)
        XCTAssertTrue(text.contains("api.merchant_keys = {m1: <set>}"), text)
        XCTAssertTrue(text.contains("server.port = 8080"), text)
    }

    func testEnvironmentNames() {
        XCTAssertEqual(Settings.environmentName(for: "limits.connect_timeout"), "GATEWAY_LIMITS_CONNECT_TIMEOUT")
        XCTAssertEqual(Settings.environmentName(for: "api.merchant_keys"), "GATEWAY_API_MERCHANT_KEYS")
    }

    // MARK: Member levels

    static let ladderJSON = #"[{"name": "silver", "min_points": 10000, "discount_percent": 5}, {"name": "金牌", "min_points": 50000, "discount_percent": 12}]"#
    static let ladder = [MemberLevel(name: "silver", minPoints: 10_000, discountPercent: 5),
                         MemberLevel(name: "金牌", minPoints: 50_000, discountPercent: 12)]

    func testMemberLevelsDefaultToNone() async throws {
        XCTAssertEqual(Settings.defaults.members.levels, .none)
        XCTAssertTrue(Settings.defaults.description.contains("members.levels = []"), Settings.defaults.description)
    }

    /// The file gives the contract's array of objects (the library alone would refuse it).
    func testMemberLevelsFromFile() async throws {
        let file = try writeFile(#"{"members": {"levels": \#(Self.ladderJSON)}, "server": {"port": 8081}}"#)
        let settings = try await load(file: file)
        XCTAssertEqual(settings.members.levels.levels, Self.ladder)
        XCTAssertEqual(settings.server.port, 8081, "the file's other settings still load")
        XCTAssertTrue(settings.description.contains(
            #"members.levels = [{name: "silver", min_points: 10000, discount_percent: 5}, {name: "金牌", min_points: 50000, discount_percent: 12}]"#),
            settings.description)
    }

    /// A variable or flag carries the same array as JSON text and replaces the file's whole; empty clears it.
    func testMemberLevelsFromEnvironmentAndFlagReplaceTheFile() async throws {
        let file = try writeFile(#"{"members": {"levels": [{"name": "bronze", "min_points": 0, "discount_percent": 0}]}}"#)
        let fromEnv = try await load(file: file, env: ["GATEWAY_MEMBERS_LEVELS": Self.ladderJSON])
        XCTAssertEqual(fromEnv.members.levels.levels, Self.ladder)
        let fromFlag = try await load(file: file, env: ["GATEWAY_MEMBERS_LEVELS": "[]"],
                                      overrides: ["members.levels": Self.ladderJSON])
        XCTAssertEqual(fromFlag.members.levels.levels, Self.ladder)
        let cleared = try await load(file: file, overrides: ["members.levels": ""])
        XCTAssertEqual(cleared.members.levels, .none)
    }

    func testMemberLevelsOutOfOrderOrOverlappingAreRefused() async throws {
        let file = try writeFile(#"""
            {"members": {"levels": [{"name": "gold", "min_points": 50000, "discount_percent": 12},
                                    {"name": "silver", "min_points": 10000, "discount_percent": 12},
                                    {"name": "silver", "min_points": 10000, "discount_percent": 12}]}}
            """#)
        let message = await loadError(file: file)
        XCTAssertEqual(message, """
            3 configuration problems:
              \(file): members.levels: level 2: min_points must be above level 1's 50000 (levels go from fewest points up, none at the same points), got 10000
              \(file): members.levels: level 3: name "silver" is used twice
              \(file): members.levels: level 3: min_points must be above level 2's 10000 (levels go from fewest points up, none at the same points), got 10000
            """)
    }

    func testMemberLevelsShapeErrors() async throws {
        let notArray = try writeFile(#"{"members": {"levels": {"name": "gold"}}}"#)
        let object = await loadError(file: notArray)
        XCTAssertEqual(object, "\(notArray): members.levels: expected an array of {name, min_points, discount_percent}, got an object")
        let badFields = try writeFile(#"""
            {"members": {"levels": [{"name": "a", "min_points": "10", "discount_percent": 1},
                                    {"name": 5, "min_points": 10, "discount_percent": 1},
                                    {"name": "b", "min_points": 20, "discount": 1},
                                    7]}}
            """#)
        let fields = await loadError(file: badFields)
        XCTAssertTrue(fields.hasPrefix("5 configuration problems:"), fields)
        XCTAssertTrue(fields.contains(#"members.levels: level 1: min_points must be a whole number, got "10""#), fields)
        XCTAssertTrue(fields.contains("members.levels: level 2: name must be a string, got 5"), fields)
        XCTAssertTrue(fields.contains(#"members.levels: level 3: unknown field "discount""#), fields)
        XCTAssertTrue(fields.contains("members.levels: level 3: discount_percent must be a whole number, got null"), fields)
        XCTAssertTrue(fields.contains("members.levels: level 4: expected an object {name, min_points, discount_percent}, got 7"), fields)
        let notJSON = await loadError(env: ["GATEWAY_MEMBERS_LEVELS": "silver:10000:5"])
        XCTAssertEqual(notJSON, #"GATEWAY_MEMBERS_LEVELS: expected a JSON array of {name, min_points, discount_percent}, got "silver:10000:5""#)
        let range = await loadError(overrides: ["members.levels": #"[{"name": "x", "min_points": -1, "discount_percent": 101}]"#])
        XCTAssertEqual(range, """
            2 configuration problems:
              command line members.levels: level 1: min_points must be between 0 and 9007199254740991, got -1
              command line members.levels: level 1: discount_percent must be between 0 and 100, got 101
            """)
    }
}

/// `reminders.before_s` (issue 14, memberships).
extension SettingsTests {
    func testRemindersBeforeDefaultFileAndEnvironment() async throws {
        XCTAssertEqual(Settings.defaults.reminders.beforeSeconds, [259_200, 86_400])
        XCTAssertTrue(Settings.defaults.description.contains("reminders.before_s = [259200, 86400]"), Settings.defaults.description)
        let file = try writeFile(#"{"reminders": {"before_s": [3600, 604800]}}"#)
        let fromFile = try await load(file: file)
        XCTAssertEqual(fromFile.reminders.beforeSeconds, [604_800, 3_600], "stored descending")
        let fromEnv = try await load(file: file, env: ["GATEWAY_REMINDERS_BEFORE_S": "86400, 7200"])
        XCTAssertEqual(fromEnv.reminders.beforeSeconds, [86_400, 7_200])
        let none = try await load(overrides: ["reminders.before_s": ""])
        XCTAssertEqual(none.reminders.beforeSeconds, [])
    }

    func testRemindersBeforeRefusesBadLists() async throws {
        let zero = await loadError(env: ["GATEWAY_REMINDERS_BEFORE_S": "0"])
        XCTAssertEqual(zero, "GATEWAY_REMINDERS_BEFORE_S: each entry must be between 1 and 31536000, got 0")
        let text = await loadError(env: ["GATEWAY_REMINDERS_BEFORE_S": "3d"])
        XCTAssertTrue(text.contains("expected whole numbers of seconds separated by commas"), text)
        let twice = await loadError(overrides: ["reminders.before_s": "60,60"])
        XCTAssertTrue(twice.contains("entries must be distinct"), twice)
        let many = await loadError(overrides: ["reminders.before_s": (1...11).map(String.init).joined(separator: ",")])
        XCTAssertTrue(many.contains("at most 10 entries, got 11"), many)
        let object = try writeFile(#"{"reminders": {"before_s": {"a": 1}}}"#)
        let shape = await loadError(file: object)
        XCTAssertTrue(shape.contains("reminders.before_s: expected an array of whole numbers of seconds"), shape)
    }
}
