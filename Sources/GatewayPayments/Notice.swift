import GatewayProtocol

public enum PaymentProvider: String, Sendable, CaseIterable {
    case alipay, wechatpay, epay
}

/// A provider's notify, verified: what the one notify path of the order rules needs.
public struct ProviderNotice: Equatable, Sendable {
    public enum Result: String, Sendable {
        case succeeded, failed
        /// Not a final state (WAIT_BUYER_PAY, NOTPAY, ...): acknowledged, nothing changes.
        case ignored
    }

    public var provider: PaymentProvider
    /// The provider's `out_trade_no`: our payment id.
    public var paymentID: String
    /// The provider's own transaction number.
    public var tradeNo: String
    public var amountFen: Int64
    /// Only WeChat Pay names one; Alipay and 易支付 are in yuan.
    public var currency: String?
    public var result: Result

    public init(provider: PaymentProvider, paymentID: String, tradeNo: String, amountFen: Int64,
                currency: String?, result: Result) {
        self.provider = provider
        self.paymentID = paymentID
        self.tradeNo = tradeNo
        self.amountFen = amountFen
        self.currency = currency
        self.result = result
    }
}

/// Why a notify was refused. Each is answered with the provider's own failure reply, so
/// it retries; none of them touches a payment.
public enum ProviderRefusal: Error, Equatable, Sendable {
    /// The route exists but its settings are empty.
    case notConfigured
    /// Not a well-formed body, form or header.
    case malformed(String)
    case badSignature
    /// WeChat Pay's `Wechatpay-Timestamp` is more than `WeChatPayNotify.maxSkewSeconds` off.
    case staleTimestamp
    /// A field is missing or its value is not acceptable (an amount, a status, an algorithm).
    case badField(String)

    public var message: String {
        switch self {
        case .notConfigured: "this payment provider is not configured"
        case .malformed(let why): "malformed notify: \(why)"
        case .badSignature: "signature does not verify"
        case .staleTimestamp: "timestamp too far from now"
        case .badField(let why): why
        }
    }
}

/// The HTTP answer a provider's retry logic expects.
public struct ProviderReply: Equatable, Sendable {
    public var status: Int
    public var body: [UInt8]
    public var contentType: String
}

extension PaymentProvider {
    /// The notify was taken (applied, a duplicate, or a state we ignore): stop retrying.
    public var accepted: ProviderReply {
        switch self {
        case .alipay, .epay: ProviderReply(status: 200, body: Array("success".utf8), contentType: "text/plain")
        case .wechatpay: ProviderReply(status: 204, body: [], contentType: "application/json")
        }
    }

    /// Refused, with `message` for WeChat Pay (Alipay and 易支付 read only `fail`): retry later.
    public func refused(_ refusal: ProviderRefusal) -> ProviderReply {
        refused(message: refusal.message, unauthorized: refusal == .badSignature || refusal == .staleTimestamp)
    }

    /// Refused by the order rules (unknown payment, amount not the payment's, ...).
    public func refused(message: String, unauthorized: Bool = false) -> ProviderReply {
        switch self {
        case .alipay, .epay:
            return ProviderReply(status: 400, body: Array("fail".utf8), contentType: "text/plain")
        case .wechatpay:
            let body = JSON.object([("code", .string("FAIL")), ("message", .string(message))]).serialized()
            return ProviderReply(status: unauthorized ? 401 : 400, body: Array(body.utf8), contentType: "application/json")
        }
    }
}

/// Yuan as the providers write them (`"29.00"`), to fen, exactly: no floating point.
public enum YuanAmount {
    /// nil for anything but digits with at most two decimals: no sign, exponent, spaces,
    /// empty parts, or more than `Ranges.amount`.
    public static func fen(_ text: String) -> Int64? {
        let bytes = Array(text.utf8)
        let dot = bytes.firstIndex(of: UInt8(ascii: "."))
        let whole = bytes[..<(dot ?? bytes.endIndex)]
        let fraction = dot.map { bytes[($0 + 1)...] } ?? []
        guard !whole.isEmpty, whole.count <= 14, fraction.count <= 2, dot == nil || !fraction.isEmpty else { return nil }
        guard whole.allSatisfy(isDigit), fraction.allSatisfy(isDigit) else { return nil }
        var fen: Int64 = 0
        for d in whole { fen = fen * 10 + Int64(d - UInt8(ascii: "0")) }
        var cents: Int64 = 0
        for (i, d) in fraction.enumerated() { cents += Int64(d - UInt8(ascii: "0")) * (i == 0 ? 10 : 1) }
        fen = fen * 100 + cents
        return Ranges.amount.contains(fen) ? fen : nil
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
}
