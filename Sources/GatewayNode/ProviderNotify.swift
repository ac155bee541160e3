import Foundation
import GatewayCrypto
import GatewayIO
import GatewayPayments
import OrderCore

/// `payments.alipay_public_key` ... `payments.epay_key` as given: PEM paths and secrets.
public struct ProviderSettings: Sendable, Equatable {
    public var alipayPublicKey: String?
    public var wechatpayPlatformPublicKey: String?
    public var wechatpayAPIv3Key: String
    public var epayKey: String

    public init(alipayPublicKey: String? = nil, wechatpayPlatformPublicKey: String? = nil,
                wechatpayAPIv3Key: String = "", epayKey: String = "") {
        self.alipayPublicKey = alipayPublicKey
        self.wechatpayPlatformPublicKey = wechatpayPlatformPublicKey
        self.wechatpayAPIv3Key = wechatpayAPIv3Key
        self.epayKey = epayKey
    }
}

/// The adapter of each configured provider; a provider left unset answers its `fail`.
struct ProviderAdapters {
    let alipay: AlipayNotify?
    let wechatpay: WeChatPayNotify?
    let epay: EpayNotify?

    /// Reads the PEM files: a missing file or one without an RSA public key stops the start,
    /// naming the setting, rather than refusing every notify later.
    init(_ settings: ProviderSettings) throws {
        alipay = try settings.alipayPublicKey.map { AlipayNotify(publicKey: try Self.publicKey($0, setting: "payments.alipay_public_key")) }
        if let path = settings.wechatpayPlatformPublicKey {
            let key = try Self.publicKey(path, setting: "payments.wechatpay_platform_public_key")
            guard let adapter = WeChatPayNotify(platformKey: key, apiV3Key: settings.wechatpayAPIv3Key) else {
                throw NodeStartError(description: "payments.wechatpay_api_v3_key must be the 32-character API v3 key WeChat Pay issues")
            }
            wechatpay = adapter
        } else {
            wechatpay = nil
        }
        epay = settings.epayKey.isEmpty ? nil : EpayNotify(merchantKey: settings.epayKey)
    }

    private static func publicKey(_ path: String, setting: String) throws -> RSAPublicKey {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw NodeStartError(description: "\(setting): cannot read \(path) (missing, or not readable by this user)")
        }
        guard let key = RSAPublicKey(pem: String(decoding: data, as: UTF8.self)) else {
            throw NodeStartError(description: "\(setting): \(path) holds no RSA public key (expected a \"-----BEGIN PUBLIC KEY-----\" block)")
        }
        return key
    }
}

extension Node {
    /// `/api/v1/payments/notify/{alipay,wechatpay,epay}`: verified by the provider's adapter,
    /// then the same notify path as `/api/v1/payments/notify`. Answered in the provider's own
    /// terms, so it stops retrying only when the notify was taken.
    func providerNotify(_ request: HTTPRequest, _ provider: PaymentProvider) {
        let verified: Result<ProviderNotice, ProviderRefusal>
        switch provider {
        case .alipay:
            verified = providers.alipay.map { $0.verify(body: request.body) } ?? .failure(.notConfigured)
        case .wechatpay:
            verified = providers.wechatpay.map {
                $0.verify(body: request.body, timestamp: request.headers["wechatpay-timestamp"],
                          nonce: request.headers["wechatpay-nonce"], signature: request.headers["wechatpay-signature"],
                          now: Int64(Date().timeIntervalSince1970))
            } ?? .failure(.notConfigured)
        case .epay:
            let form = request.method == .GET ? Array(request.query.utf8) : request.body
            verified = providers.epay.map { $0.verify(body: form) } ?? .failure(.notConfigured)
        }
        let notice: ProviderNotice
        switch verified {
        case .failure(let refusal): return answer(request, provider.refused(refusal))
        case .success(let n): notice = n
        }
        guard notice.result != .ignored else { return answer(request, provider.accepted) }
        applyNotify(payment: notice.paymentID, { payment in
            // The provider names only the payment; Alipay and 易支付 settle in yuan.
            PaymentNotify(payment: notice.paymentID, order: payment?.order ?? "", amount: notice.amountFen,
                          currency: notice.currency ?? "CNY", outcome: notice.result == .failed ? .failed : .success,
                          tradeNo: notice.tradeNo, provider: provider.rawValue)
        }) { result in
            switch result {
            case .success: self.answer(request, provider.accepted)
            case .failure(let e): self.answer(request, provider.refused(message: e.message))
            }
        }
    }

    private func answer(_ request: HTTPRequest, _ reply: ProviderReply) {
        request.respond(status: reply.status, body: reply.body, contentType: reply.contentType)
    }
}
