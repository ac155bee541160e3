import Foundation
import GatewayClient
import GatewayCrypto
import GatewayProtocol
import GatewayTestSupport
import XCTest

/// Alipay, WeChat Pay and 易支付 notifies against a real node and Redis: each signed as its
/// provider documents (`ProviderRequests`), with provider keys made for the test.
final class ProviderNotifyTests: IntegrationCase {
    static let alipayKey = ProviderTestKey()
    static let wechatpayKey = ProviderTestKey()
    static let strangerKey = ProviderTestKey()
    static let apiV3Key = "0123456789abcdefghijABCDEFGHIJ01"
    static let epayKey = "epay-merchant-key-1"

    private var keyDir: URL!

    override func setUpWithError() throws {
        try super.setUpWithError()
        keyDir = FileManager.default.temporaryDirectory.appendingPathComponent("gw-provider-keys-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: keyDir, withIntermediateDirectories: true)
        try Self.alipayKey.publicKeyPEM.write(to: keyDir.appendingPathComponent("alipay.pem"), atomically: true, encoding: .utf8)
        try Self.wechatpayKey.publicKeyPEM.write(to: keyDir.appendingPathComponent("wechatpay.pem"), atomically: true, encoding: .utf8)
    }

    override func tearDown() {
        super.tearDown()
        if let keyDir { try? FileManager.default.removeItem(at: keyDir) }
    }

    var providerEnv: [String: String] {
        ["GATEWAY_PAYMENTS_ALIPAY_PUBLIC_KEY": keyDir.appendingPathComponent("alipay.pem").path,
         "GATEWAY_PAYMENTS_WECHATPAY_PLATFORM_PUBLIC_KEY": keyDir.appendingPathComponent("wechatpay.pem").path,
         "GATEWAY_PAYMENTS_WECHATPAY_API_V3_KEY": Self.apiV3Key,
         "GATEWAY_PAYMENTS_EPAY_KEY": Self.epayKey]
    }

    /// An order of p1 (29.00 yuan) for u1, with its payment created; the buyer's session
    /// has seen `pending_payment`.
    func pendingPayment(_ node: GatewayNodeProcess, _ buyer: GatewaySession) throws -> (order: String, payment: String) {
        let created = try order(node, #"{"buyer":"u1","product":"p1"}"#)
        let orderID = try XCTUnwrap(created["id"]?.stringValue)
        XCTAssertEqual(push(buyer, "order.status")?["data"]?["status"]?.stringValue, "pending_payment")
        let payment = try pay(node, orderID, payer: "u1")
        XCTAssertEqual(payment["amount"]?.intValue, 2900)
        return (orderID, try XCTUnwrap(payment["id"]?.stringValue))
    }

    func shop(_ node: GatewayNodeProcess) throws -> GatewaySession {
        try createProduct(node, "p1", price: 2900)
        _ = try uploadKeys(node, "p1", (1...6).map { "K-\($0)" })
        return try open(node, "u1").0
    }

    /// Delivered, and the ledger names the route the paying notify came by and its trade number.
    func expectDelivered(_ node: GatewayNodeProcess, _ buyer: GatewaySession, _ orderID: String, payment: String,
                         provider: String, tradeNo: String, line: UInt = #line) throws {
        let delivered = push(buyer, "order.status")
        XCTAssertEqual(delivered?["data"]?["order"]?.stringValue, orderID, line: line)
        XCTAssertEqual(delivered?["data"]?["status"]?.stringValue, "delivered", line: line)
        XCTAssertEqual(try getOrder(node, orderID)["status"]?.stringValue, "delivered", line: line)
        let entry = try node.http("GET", "/api/v1/payments/\(payment)").json
        XCTAssertEqual(entry?["status"]?.stringValue, "succeeded", line: line)
        XCTAssertEqual(entry?["provider"]?.stringValue, provider, line: line)
        XCTAssertEqual(entry?["trade_no"]?.stringValue, tradeNo, line: line)
        XCTAssertEqual(entry?["amount"]?.intValue, 2900, line: line)
    }

    func expectStillUnpaid(_ node: GatewayNodeProcess, _ orderID: String, line: UInt = #line) throws {
        XCTAssertEqual(try getOrder(node, orderID)["status"]?.stringValue, "pending_payment", line: line)
    }

    // MARK: Alipay

    func alipayFields(_ payment: String, amount: String = "29.00", status: String = "TRADE_SUCCESS") -> [(String, String)] {
        [("notify_time", "2026-12-01 14:00:01"), ("notify_type", "trade_status_sync"), ("notify_id", "ac05099524730693a8b330c5ecf72da9786"),
         ("app_id", "2014072300007148"), ("charset", "utf-8"), ("version", "1.0"), ("trade_no", "2026120122001400000000000001"),
         ("out_trade_no", payment), ("trade_status", status), ("total_amount", amount), ("subject", "卡密 & 月卡=1+1"),
         ("gmt_payment", "2026-12-01 14:00:00"), ("point_amount", "")]
    }

    func alipay(_ node: GatewayNodeProcess, _ fields: [(String, String)], key: ProviderTestKey = alipayKey) throws -> HTTPResponse {
        let body = ProviderRequests.alipay(fields, key: key).body
        return try node.http("POST", "/api/v1/payments/notify/alipay", body: body, key: nil)
    }

    func testAlipayNotifyPaysTheOrderOnceAndRefusesForgeries() throws {
        let node = try startNode(env: providerEnv)
        let buyer = try shop(node)
        let (orderID, payment) = try pendingPayment(node, buyer)

        let forged = try alipay(node, alipayFields(payment), key: Self.strangerKey)
        XCTAssertEqual(forged.status, 400)
        XCTAssertEqual(forged.text, "fail")
        let wrongAmount = try alipay(node, alipayFields(payment, amount: "28.99"))
        XCTAssertEqual(wrongAmount.status, 400, "signed, but not the payment's amount")
        XCTAssertEqual(wrongAmount.text, "fail")
        XCTAssertEqual(try alipay(node, alipayFields(payment, amount: "29.001")).status, 400)
        XCTAssertEqual(try alipay(node, alipayFields("pay-unknown")).status, 400, "no such payment")
        let waiting = try alipay(node, alipayFields(payment, status: "WAIT_BUYER_PAY"))
        XCTAssertEqual(waiting.text, "success", "a non-final state is acknowledged")
        let malformed = try node.http("POST", "/api/v1/payments/notify/alipay", body: "a=%zz", key: nil)
        XCTAssertEqual(malformed.status, 400)
        try expectStillUnpaid(node, orderID)

        let paid = try alipay(node, alipayFields(payment))
        XCTAssertEqual(paid.status, 200)
        XCTAssertEqual(paid.text, "success")
        try expectDelivered(node, buyer, orderID, payment: payment, provider: "alipay", tradeNo: "2026120122001400000000000001")

        // Alipay repeats a notify until it reads success: the repeat changes nothing.
        XCTAssertEqual(try alipay(node, alipayFields(payment)).text, "success")
        XCTAssertEqual(try product(node, "p1")["stock"]?.intValue, 5)
        XCTAssertNil(push(buyer, "order.status", timeout: 0.5), "no second delivery")
    }

    // MARK: WeChat Pay

    func transaction(_ payment: String, total: Int = 2900, state: String = "SUCCESS") -> String {
        """
        {"mchid":"1230000109","appid":"wxd678efh567hg6787","out_trade_no":"\(payment)",\
        "transaction_id":"4200000000202612010000000001","trade_type":"NATIVE","trade_state":"\(state)",\
        "payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},"amount":{"total":\(total),"payer_total":\(total),"currency":"CNY","payer_currency":"CNY"}}
        """
    }

    func wechatpay(_ node: GatewayNodeProcess, _ transaction: String, key: ProviderTestKey = wechatpayKey,
                   timestamp: Int64 = Int64(Date().timeIntervalSince1970)) throws -> HTTPResponse {
        let n = ProviderRequests.wechatpay(transaction: transaction, apiV3Key: Self.apiV3Key, key: key, timestamp: timestamp)
        return try node.http("POST", "/api/v1/payments/notify/wechatpay", body: n.body, key: nil,
                             headers: Dictionary(uniqueKeysWithValues: n.headers))
    }

    func testWeChatPayNotifyPaysTheOrderOnceAndRefusesForgeries() throws {
        let node = try startNode(env: providerEnv)
        let buyer = try shop(node)
        let (orderID, payment) = try pendingPayment(node, buyer)

        let forged = try wechatpay(node, transaction(payment), key: Self.strangerKey)
        XCTAssertEqual(forged.status, 401)
        XCTAssertEqual(forged.json?["code"]?.stringValue, "FAIL")
        let stale = try wechatpay(node, transaction(payment), timestamp: Int64(Date().timeIntervalSince1970) - 3600)
        XCTAssertEqual(stale.status, 401)
        XCTAssertEqual(stale.json?["message"]?.stringValue, "timestamp too far from now")
        XCTAssertEqual(try wechatpay(node, transaction(payment, total: 2800)).status, 400, "not the payment's amount")
        let unsigned = try node.http("POST", "/api/v1/payments/notify/wechatpay", body: "{}", key: nil)
        XCTAssertEqual(unsigned.status, 400)
        XCTAssertEqual(unsigned.json?["code"]?.stringValue, "FAIL")
        XCTAssertEqual(try wechatpay(node, transaction(payment, state: "NOTPAY")).status, 204)
        try expectStillUnpaid(node, orderID)

        let paid = try wechatpay(node, transaction(payment))
        XCTAssertEqual(paid.status, 204, paid.text)
        try expectDelivered(node, buyer, orderID, payment: payment, provider: "wechatpay", tradeNo: "4200000000202612010000000001")
        XCTAssertEqual(try wechatpay(node, transaction(payment)).status, 204, "a repeat is acknowledged")
        XCTAssertEqual(try product(node, "p1")["stock"]?.intValue, 5)
    }

    // MARK: 易支付

    func epayFields(_ payment: String, money: String = "29.00") -> [(String, String)] {
        [("pid", "1001"), ("trade_no", "2026120114000012345"), ("out_trade_no", payment), ("type", "alipay"),
         ("name", "月卡 VIP & more=1+1"), ("money", money), ("trade_status", "TRADE_SUCCESS")]
    }

    func testEpayNotifyByPostAndByGet() throws {
        let node = try startNode(env: providerEnv)
        let buyer = try shop(node)

        let (first, firstPayment) = try pendingPayment(node, buyer)
        let wrongKey = ProviderRequests.epay(epayFields(firstPayment), merchantKey: "not the key").body
        let forged = try node.http("POST", "/api/v1/payments/notify/epay", body: wrongKey, key: nil)
        XCTAssertEqual(forged.status, 400)
        XCTAssertEqual(forged.text, "fail")
        try expectStillUnpaid(node, first)
        let posted = try node.http("POST", "/api/v1/payments/notify/epay",
                                   body: ProviderRequests.epay(epayFields(firstPayment), merchantKey: Self.epayKey).body, key: nil)
        XCTAssertEqual(posted.text, "success")
        try expectDelivered(node, buyer, first, payment: firstPayment, provider: "epay", tradeNo: "2026120114000012345")

        let (second, secondPayment) = try pendingPayment(node, buyer)
        let query = ProviderRequests.epay(epayFields(secondPayment), merchantKey: Self.epayKey).body
        let forgedQuery = ProviderRequests.epay(epayFields(secondPayment, money: "0.01"), merchantKey: "not the key").body
        XCTAssertEqual(try node.http("GET", "/api/v1/payments/notify/epay?" + forgedQuery, key: nil).status, 400)
        try expectStillUnpaid(node, second)
        let got = try node.http("GET", "/api/v1/payments/notify/epay?" + query, key: nil)
        XCTAssertEqual(got.text, "success", "GET with the signed fields in the query string")
        try expectDelivered(node, buyer, second, payment: secondPayment, provider: "epay", tradeNo: "2026120114000012345")
    }

    // MARK: Not configured

    func testUnconfiguredProvidersAnswerTheirFail() throws {
        let node = try startNode()
        let buyer = try shop(node)
        let (orderID, payment) = try pendingPayment(node, buyer)
        let alipay = try alipay(node, alipayFields(payment))
        XCTAssertEqual(alipay.status, 400)
        XCTAssertEqual(alipay.text, "fail")
        let wechat = try wechatpay(node, transaction(payment))
        XCTAssertEqual(wechat.status, 400)
        XCTAssertEqual(wechat.json?["message"]?.stringValue, "this payment provider is not configured")
        let epay = try node.http("POST", "/api/v1/payments/notify/epay",
                                 body: ProviderRequests.epay(epayFields(payment), merchantKey: Self.epayKey).body, key: nil)
        XCTAssertEqual(epay.text, "fail")
        try expectStillUnpaid(node, orderID)
    }

    func testUnreadableKeyFileStopsTheStart() throws {
        var env = providerEnv
        env["GATEWAY_PAYMENTS_ALIPAY_PUBLIC_KEY"] = keyDir.appendingPathComponent("missing.pem").path
        XCTAssertThrowsError(try startNode(env: env)) { error in
            XCTAssertTrue("\(error)".contains("payments.alipay_public_key: cannot read"), "\(error)")
        }
    }
}
