import GatewayCrypto
import GatewayProtocol
import GatewayTestSupport
import XCTest
@testable import GatewayPayments

/// The provider side is `ProviderRequests` (GatewayTestSupport): requests built and signed
/// as each provider documents, with keys generated here.
private let providerKey = ProviderTestKey()
private let otherKey = ProviderTestKey()

final class AlipayNotifyTests: XCTestCase {
    let adapter = AlipayNotify(publicKey: RSAPublicKey(pem: providerKey.publicKeyPEM)!)

    static let fields: [(String, String)] = [
        ("gmt_create", "2026-12-01 14:00:00"), ("charset", "utf-8"), ("seller_email", "shop@example.com"),
        ("subject", "卡密 & 礼品=1+1"), ("buyer_id", "2088102122524333"), ("invoice_amount", "29.00"),
        ("notify_id", "2026120100222140000041111111111111"), ("fund_bill_list", "[{\"amount\":\"29.00\",\"fundChannel\":\"ALIPAYACCOUNT\"}]"),
        ("notify_type", "trade_status_sync"), ("trade_status", "TRADE_SUCCESS"), ("receipt_amount", "29.00"),
        ("app_id", "2014072300007148"), ("buyer_pay_amount", "29.00"), ("notify_time", "2026-12-01 14:00:01"),
        ("point_amount", ""), ("total_amount", "29.00"), ("trade_no", "2026120122001400000000000001"),
        ("auth_app_id", "2014072300007148"), ("version", "1.0"), ("out_trade_no", "pay-a1-xyz"),
    ]

    func verify(_ fields: [(String, String)]) -> Result<ProviderNotice, ProviderRefusal> {
        adapter.verify(body: Array(ProviderRequests.alipay(fields, key: providerKey).body.utf8))
    }

    func testSignedSuccessIsAPaidNotice() throws {
        let notice = try verify(Self.fields).get()
        XCTAssertEqual(notice, ProviderNotice(provider: .alipay, paymentID: "pay-a1-xyz", tradeNo: "2026120122001400000000000001",
                                              amountFen: 2900, currency: nil, result: .succeeded))
    }

    func testTradeStatuses() throws {
        for (status, result) in [("TRADE_FINISHED", ProviderNotice.Result.succeeded), ("TRADE_CLOSED", .failed), ("WAIT_BUYER_PAY", .ignored)] {
            XCTAssertEqual(try verify(replacing("trade_status", with: status)).get().result, result)
        }
        XCTAssertEqual(verify(replacing("trade_status", with: "SOMETHING")), .failure(.badField("unknown trade_status")))
    }

    func testEveryTamperedFieldIsRefused() {
        let signed = ProviderRequests.alipay(Self.fields, key: providerKey).fields
        for (name, value) in signed where name != "sign" && name != "sign_type" {
            var tampered = signed
            let i = tampered.firstIndex { $0.0 == name }!
            tampered[i].1 = value.isEmpty ? "1" : value + "0"
            let result = adapter.verify(body: Array(ProviderRequests.formEncode(tampered).utf8))
            XCTAssertEqual(result, .failure(.badSignature), "tampered \(name)")
        }
        // An added field is covered too.
        let added = adapter.verify(body: Array(ProviderRequests.formEncode(signed + [("extra", "1")]).utf8))
        XCTAssertEqual(added, .failure(.badSignature))
    }

    func testWrongKeyAndBadSignatureAreRefused() {
        let forged = ProviderRequests.alipay(Self.fields, key: otherKey).body
        XCTAssertEqual(adapter.verify(body: Array(forged.utf8)), .failure(.badSignature))
        var signed = ProviderRequests.alipay(Self.fields, key: providerKey).fields
        signed[signed.count - 1].1 = "not base64!"
        guard case .failure(.malformed) = adapter.verify(body: Array(ProviderRequests.formEncode(signed).utf8)) else {
            return XCTFail("accepted a sign that is not base64")
        }
    }

    func testBadAmountsAreRefusedEvenWhenSigned() {
        for bad in ["29.001", "-1", "1e3", "29.0.0"] {
            XCTAssertEqual(verify(replacing("total_amount", with: bad)),
                           .failure(.badField("total_amount must be yuan with at most two decimals")), bad)
        }
    }

    func testMalformedBodyAndOtherSignTypeAreRefused() {
        guard case .failure(.malformed) = adapter.verify(body: Array("{\"json\":true}".utf8)) else { return XCTFail() }
        guard case .failure(.malformed) = adapter.verify(body: []) else { return XCTFail() }
        var fields = ProviderRequests.alipay(Self.fields, key: providerKey).fields
        fields[fields.firstIndex { $0.0 == "sign_type" }!].1 = "RSA"
        XCTAssertEqual(adapter.verify(body: Array(ProviderRequests.formEncode(fields).utf8)), .failure(.badField("sign_type must be RSA2")))
    }

    func testBareBase64KeyAsAlipayShowsItLoads() {
        let bare = providerKey.publicKeyPEM.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        let key = RSAPublicKey(pem: bare)
        XCTAssertNotNil(key)
        XCTAssertNil(RSAPublicKey(pem: "not a key"))
    }

    private func replacing(_ name: String, with value: String) -> [(String, String)] {
        Self.fields.map { $0.0 == name ? ($0.0, value) : $0 }
    }
}

final class EpayNotifyTests: XCTestCase {
    let adapter = EpayNotify(merchantKey: "k3yOfTheMerchant")

    static let fields: [(String, String)] = [
        ("pid", "1001"), ("trade_no", "20261201140000123"), ("out_trade_no", "pay-e1-xyz"), ("type", "alipay"),
        ("name", "月卡 VIP+1"), ("money", "29.00"), ("trade_status", "TRADE_SUCCESS"), ("param", ""),
    ]

    func testSignedSuccessIsAPaidNotice() throws {
        let body = ProviderRequests.epay(Self.fields, merchantKey: "k3yOfTheMerchant").body
        XCTAssertEqual(try adapter.verify(body: Array(body.utf8)).get(),
                       ProviderNotice(provider: .epay, paymentID: "pay-e1-xyz", tradeNo: "20261201140000123", amountFen: 2900,
                                      currency: nil, result: .succeeded))
    }

    func testMD5IsOverSortedFieldsThenKey() {
        // By hand: name sorted, param (empty), sign and sign_type left out, key appended directly.
        let content = "money=29.00&name=月卡 VIP+1&out_trade_no=pay-e1-xyz&pid=1001&trade_no=20261201140000123&trade_status=TRADE_SUCCESS&type=alipay"
        let sign = Crypto.md5Hex(Array((content + "k3yOfTheMerchant").utf8))
        XCTAssertEqual(ProviderRequests.epay(Self.fields, merchantKey: "k3yOfTheMerchant").fields.first { $0.0 == "sign" }?.1, sign)
        XCTAssertEqual(Crypto.md5Hex(Array("abc".utf8)), "900150983cd24fb0d6963f7d28e17f72")
    }

    func testEveryTamperedFieldAndWrongKeyAreRefused() {
        let signed = ProviderRequests.epay(Self.fields, merchantKey: "k3yOfTheMerchant").fields
        for (name, value) in signed where name != "sign" && name != "sign_type" {
            var tampered = signed
            tampered[tampered.firstIndex { $0.0 == name }!].1 = value + "1"
            XCTAssertEqual(adapter.verify(body: Array(ProviderRequests.formEncode(tampered).utf8)), .failure(.badSignature), name)
        }
        let other = ProviderRequests.epay(Self.fields, merchantKey: "another key").body
        XCTAssertEqual(adapter.verify(body: Array(other.utf8)), .failure(.badSignature))
    }

    func testOtherStatusIsIgnoredAndBadAmountRefused() throws {
        let pending = Self.fields.map { $0.0 == "trade_status" ? ($0.0, "WAIT") : $0 }
        XCTAssertEqual(try adapter.verify(body: Array(ProviderRequests.epay(pending, merchantKey: "k3yOfTheMerchant").body.utf8)).get().result, .ignored)
        for bad in ["29.001", "-1", "1e3", "29.0.0"] {
            let fields = Self.fields.map { $0.0 == "money" ? ($0.0, bad) : $0 }
            let body = ProviderRequests.epay(fields, merchantKey: "k3yOfTheMerchant").body
            XCTAssertEqual(adapter.verify(body: Array(body.utf8)), .failure(.badField("money must be yuan with at most two decimals")), bad)
        }
        guard case .failure(.malformed) = adapter.verify(body: Array("pid=1&pid=2".utf8)) else { return XCTFail() }
    }
}

final class WeChatPayNotifyTests: XCTestCase {
    static let apiV3Key = "0123456789abcdefghijABCDEFGHIJ01"
    static let now: Int64 = 1_796_000_000
    let adapter = WeChatPayNotify(platformKey: RSAPublicKey(pem: providerKey.publicKeyPEM)!, apiV3Key: apiV3Key)!

    static func transaction(state: String = "SUCCESS", total: String = "2900", id: String = "pay-w1-xyz") -> String {
        """
        {"mchid":"1230000109","appid":"wxd678efh567hg6787","out_trade_no":"\(id)","transaction_id":"4200000000202612010000000001",\
        "trade_type":"NATIVE","trade_state":"\(state)","trade_state_desc":"支付成功","bank_type":"OTHERS",\
        "success_time":"2026-12-01T14:00:00+08:00","payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},\
        "amount":{"total":\(total),"payer_total":\(total),"currency":"CNY","payer_currency":"CNY"}}
        """
    }

    func verify(_ n: ProviderRequests.WeChatPayNotify, now: Int64 = now) -> Result<ProviderNotice, ProviderRefusal> {
        adapter.verify(body: Array(n.body.utf8), timestamp: n.timestamp, nonce: n.nonce, signature: n.signature, now: now)
    }

    func signed(_ transaction: String = transaction(), key: ProviderTestKey = providerKey, apiV3Key: String = apiV3Key,
                at stamp: Int64 = now) -> ProviderRequests.WeChatPayNotify {
        ProviderRequests.wechatpay(transaction: transaction, apiV3Key: apiV3Key, key: key, timestamp: stamp)
    }

    func testSignedSuccessIsAPaidNotice() throws {
        XCTAssertEqual(try verify(signed()).get(),
                       ProviderNotice(provider: .wechatpay, paymentID: "pay-w1-xyz", tradeNo: "4200000000202612010000000001",
                                      amountFen: 2900, currency: "CNY", result: .succeeded))
        for (state, result) in [("CLOSED", ProviderNotice.Result.failed), ("PAYERROR", .failed), ("NOTPAY", .ignored)] {
            XCTAssertEqual(try verify(signed(Self.transaction(state: state))).get().result, result)
        }
    }

    func testTimestampWithinFiveMinutesEitherWay() {
        XCTAssertNoThrow(try verify(signed(at: Self.now - 300)).get())
        XCTAssertNoThrow(try verify(signed(at: Self.now + 300)).get())
        XCTAssertEqual(verify(signed(at: Self.now - 301)), .failure(.staleTimestamp))
        XCTAssertEqual(verify(signed(at: Self.now + 301)), .failure(.staleTimestamp))
    }

    func testTamperedHeadersBodyAndWrongKeysAreRefused() {
        let good = signed()
        var n = good
        n.timestamp = String(Self.now - 1)
        XCTAssertEqual(verify(n), .failure(.badSignature), "timestamp")
        n = good
        n.nonce += "x"
        XCTAssertEqual(verify(n), .failure(.badSignature), "nonce")
        n = good
        n.body = n.body.replacingOccurrences(of: "TRANSACTION.SUCCESS", with: "TRANSACTION.SUCCESs")
        XCTAssertEqual(verify(n), .failure(.badSignature), "body")
        XCTAssertEqual(verify(signed(key: otherKey)), .failure(.badSignature), "platform key")
        // Signed by the platform, but sealed under another merchant's API v3 key: GCM refuses.
        XCTAssertEqual(verify(signed(apiV3Key: "ABCDEFGHIJ0123456789abcdefghij01")), .failure(.badSignature), "api v3 key")
        var missing = good
        missing.signature = ""
        guard case .failure = verify(missing) else { return XCTFail("no signature accepted") }
        XCTAssertEqual(adapter.verify(body: Array(good.body.utf8), timestamp: nil, nonce: good.nonce, signature: good.signature, now: Self.now),
                       .failure(.malformed("Wechatpay-Timestamp, Wechatpay-Nonce and Wechatpay-Signature are required")))
    }

    func testAssociatedDataIsBound() {
        // The resource says "transaction" but was sealed with other associated data.
        let n = ProviderRequests.wechatpay(transaction: Self.transaction(), apiV3Key: Self.apiV3Key, key: providerKey,
                                           timestamp: Self.now, associatedData: "certificate")
        let lying = n.body.replacingOccurrences(of: "\"associated_data\":\"certificate\"", with: "\"associated_data\":\"transaction\"")
        let resigned = ProviderRequests.WeChatPayNotify(
            body: lying, timestamp: n.timestamp, nonce: n.nonce,
            signature: providerKey.signSHA256(Array("\(n.timestamp)\n\(n.nonce)\n\(lying)\n".utf8)), serial: n.serial)
        XCTAssertEqual(verify(resigned), .failure(.badSignature))
        XCTAssertNoThrow(try verify(n).get())
    }

    func testBadAmountsAndFieldsInsideTheResourceAreRefused() {
        for bad in ["29.00", "-1", "1e3", "\"2900\"", "100000000000001"] {
            XCTAssertEqual(verify(signed(Self.transaction(total: bad))), .failure(.badField("amount.total must be a whole number of fen")), bad)
        }
        guard case .failure(.malformed) = verify(signed("not json")) else { return XCTFail() }
        XCTAssertEqual(verify(signed(Self.transaction(id: ""))), .failure(.badField("out_trade_no is required")))
    }

    func testAPIv3KeyMustBe32Bytes() {
        let key = RSAPublicKey(pem: providerKey.publicKeyPEM)!
        XCTAssertNil(WeChatPayNotify(platformKey: key, apiV3Key: "short"))
    }
}

final class ProviderReplyTests: XCTestCase {
    func testRepliesAreWhatEachProviderRetriesOn() throws {
        XCTAssertEqual(PaymentProvider.alipay.accepted.body, Array("success".utf8))
        XCTAssertEqual(PaymentProvider.alipay.refused(.badSignature), ProviderReply(status: 400, body: Array("fail".utf8), contentType: "text/plain"))
        XCTAssertEqual(PaymentProvider.epay.refused(.notConfigured).body, Array("fail".utf8))
        XCTAssertEqual(PaymentProvider.wechatpay.accepted.status, 204)
        let refused = PaymentProvider.wechatpay.refused(.badSignature)
        XCTAssertEqual(refused.status, 401)
        XCTAssertEqual(try JSON.parse(refused.body)["code"]?.stringValue, "FAIL")
        XCTAssertEqual(PaymentProvider.wechatpay.refused(.malformed("x")).status, 400)
    }

    func testStandardBase64IsStrict() {
        XCTAssertEqual(Base64.encode(Array("ab?>".utf8)), "YWI/Pg==")
        XCTAssertEqual(Base64.decode("YWI/Pg=="), Array("ab?>".utf8))
        for bad in ["YWI/Pg", "YWI/Pg=", "YWI_Pg==", "YWI/Ph==", "Y===", "YWI/Pg==="] {
            XCTAssertNil(Base64.decode(bad), bad)
        }
    }
}
