import GatewayCrypto
import GatewayProtocol

/// Alipay's asynchronous notify (异步通知): a form body signed with RSA2.
public struct AlipayNotify: Sendable {
    public let publicKey: RSAPublicKey

    public init(publicKey: RSAPublicKey) { self.publicKey = publicKey }

    public func verify(body: [UInt8]) -> Result<ProviderNotice, ProviderRefusal> {
        let fields: [String: String]
        switch FormFields.parse(body) {
        case .failure(let e): return .failure(e)
        case .success(let f): fields = f
        }
        guard let signText = fields["sign"], let signature = Base64.decode(signText) else {
            return .failure(.malformed("sign must be base64"))
        }
        if let type = fields["sign_type"], type != "RSA2" { return .failure(.badField("sign_type must be RSA2")) }
        guard publicKey.verifySHA256(signature: signature, message: Array(FormFields.signingContent(fields).utf8)) else {
            return .failure(.badSignature)
        }
        let result: ProviderNotice.Result
        switch fields["trade_status"] {
        case "TRADE_SUCCESS", "TRADE_FINISHED": result = .succeeded
        case "TRADE_CLOSED": result = .failed
        case "WAIT_BUYER_PAY": result = .ignored
        default: return .failure(.badField("unknown trade_status"))
        }
        return notice(.alipay, fields, amount: "total_amount", result: result)
    }
}

/// 易支付 (epay aggregators): a form body or query string signed with MD5 and the merchant key.
public struct EpayNotify: Sendable {
    private let merchantKey: [UInt8]

    public init(merchantKey: String) { self.merchantKey = Array(merchantKey.utf8) }

    /// `fields`: the parsed POST body or GET query string.
    public func verify(fields: [String: String]) -> Result<ProviderNotice, ProviderRefusal> {
        guard let signText = fields["sign"], signText.utf8.count == 32, let signature = Crypto.fromHex(signText) else {
            return .failure(.malformed("sign must be 32 hex digits"))
        }
        if let type = fields["sign_type"], type != "MD5" { return .failure(.badField("sign_type must be MD5")) }
        let expected = Crypto.md5Hex(Array(FormFields.signingContent(fields).utf8) + merchantKey)
        guard Crypto.constantTimeEquals(signature, Crypto.fromHex(expected)!) else { return .failure(.badSignature) }
        let result: ProviderNotice.Result = fields["trade_status"] == "TRADE_SUCCESS" ? .succeeded : .ignored
        return notice(.epay, fields, amount: "money", result: result)
    }

    public func verify(body: [UInt8]) -> Result<ProviderNotice, ProviderRefusal> {
        FormFields.parse(body).flatMap { verify(fields: $0) }
    }
}

/// The fields Alipay and 易支付 share: `out_trade_no`, `trade_no` and a yuan amount.
private func notice(_ provider: PaymentProvider, _ fields: [String: String], amount: String,
                    result: ProviderNotice.Result) -> Result<ProviderNotice, ProviderRefusal> {
    guard let payment = fields["out_trade_no"], !payment.isEmpty, payment.utf8.count <= 128 else {
        return .failure(.badField("out_trade_no is required"))
    }
    let tradeNo = fields["trade_no"] ?? ""
    guard tradeNo.utf8.count <= 128 else { return .failure(.badField("trade_no is too long")) }
    guard let text = fields[amount], let fen = YuanAmount.fen(text) else {
        return .failure(.badField("\(amount) must be yuan with at most two decimals"))
    }
    return .success(ProviderNotice(provider: provider, paymentID: payment, tradeNo: tradeNo, amountFen: fen,
                                   currency: nil, result: result))
}

/// WeChat Pay API v3 (回调通知): a JSON body signed with the platform key, its `resource`
/// sealed with AEAD_AES_256_GCM under the API v3 key.
public struct WeChatPayNotify: Sendable {
    /// How far `Wechatpay-Timestamp` may be from now, either way.
    public static let maxSkewSeconds: Int64 = 300

    public let platformKey: RSAPublicKey
    private let box: SecretBox

    /// nil unless `apiV3Key` is 32 bytes, as WeChat issues it.
    public init?(platformKey: RSAPublicKey, apiV3Key: String) {
        guard let box = SecretBox(key: Array(apiV3Key.utf8)) else { return nil }
        self.platformKey = platformKey
        self.box = box
    }

    /// `timestamp`, `nonce`, `signature`: the `Wechatpay-Timestamp`, `-Nonce` and
    /// `-Signature` headers. `now` in Unix seconds.
    public func verify(body: [UInt8], timestamp: String?, nonce: String?, signature: String?,
                       now: Int64) -> Result<ProviderNotice, ProviderRefusal> {
        guard let timestamp, let nonce, let signature else {
            return .failure(.malformed("Wechatpay-Timestamp, Wechatpay-Nonce and Wechatpay-Signature are required"))
        }
        guard timestamp.utf8.count <= 12, !timestamp.isEmpty, timestamp.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              let stamp = Int64(timestamp) else {
            return .failure(.malformed("Wechatpay-Timestamp must be Unix seconds"))
        }
        guard let signatureBytes = Base64.decode(signature) else { return .failure(.malformed("Wechatpay-Signature must be base64")) }
        let message = Array("\(timestamp)\n\(nonce)\n".utf8) + body + [UInt8(ascii: "\n")]
        guard platformKey.verifySHA256(signature: signatureBytes, message: message) else { return .failure(.badSignature) }
        // Checked after the signature, so a forged stamp is a bad signature, not a stale one.
        guard abs(now - stamp) <= Self.maxSkewSeconds else { return .failure(.staleTimestamp) }
        guard let json = try? JSON.parse(body), let resource = json["resource"], resource.objectValue != nil else {
            return .failure(.malformed("the body must be a JSON object with a resource"))
        }
        guard resource["algorithm"]?.stringValue == "AEAD_AES_256_GCM" else {
            return .failure(.badField("resource.algorithm must be AEAD_AES_256_GCM"))
        }
        guard let resourceNonce = resource["nonce"]?.stringValue, resourceNonce.utf8.count == 12,
              let ciphertext = resource["ciphertext"]?.stringValue.flatMap({ Base64.decode($0) }) else {
            return .failure(.malformed("resource needs a 12-byte nonce and base64 ciphertext"))
        }
        let associated = resource["associated_data"]?.stringValue ?? ""
        guard let plain = box.open(Array(resourceNonce.utf8) + ciphertext, context: Array(associated.utf8)) else {
            return .failure(.badSignature)
        }
        guard let transaction = try? JSON.parse(plain), transaction.objectValue != nil else {
            return .failure(.malformed("the decrypted resource is not a JSON object"))
        }
        return Self.notice(transaction)
    }

    private static func notice(_ t: JSON) -> Result<ProviderNotice, ProviderRefusal> {
        guard let payment = t["out_trade_no"]?.stringValue, !payment.isEmpty, payment.utf8.count <= 128 else {
            return .failure(.badField("out_trade_no is required"))
        }
        let tradeNo = t["transaction_id"]?.stringValue ?? ""
        guard tradeNo.utf8.count <= 128 else { return .failure(.badField("transaction_id is too long")) }
        guard case .int(let total)? = t["amount"]?["total"], Ranges.amount.contains(total) else {
            return .failure(.badField("amount.total must be a whole number of fen"))
        }
        guard let currency = t["amount"]?["currency"]?.stringValue, !currency.isEmpty else {
            return .failure(.badField("amount.currency is required"))
        }
        let result: ProviderNotice.Result
        switch t["trade_state"]?.stringValue {
        case "SUCCESS": result = .succeeded
        case "CLOSED", "PAYERROR": result = .failed
        case .some: result = .ignored
        case nil: return .failure(.badField("trade_state is required"))
        }
        return .success(ProviderNotice(provider: .wechatpay, paymentID: payment, tradeNo: tradeNo, amountFen: total,
                                       currency: currency, result: result))
    }
}
