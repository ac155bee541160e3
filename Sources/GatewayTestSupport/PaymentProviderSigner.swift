import COpenSSL
import GatewayCrypto

/// A payment provider's side of a notify, for tests: its own RSA key, and requests built and
/// signed the way each provider documents them, independently of the gateway's adapters.
public final class ProviderTestKey: @unchecked Sendable {
    // Never mutated after init.
    private let pkey: OpaquePointer

    /// A fresh 2048-bit RSA key.
    public init() {
        guard let ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, nil) else { fatalError("EVP_PKEY_CTX_new_id failed") }
        defer { EVP_PKEY_CTX_free(ctx) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(ctx) == 1, EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048) == 1,
              EVP_PKEY_keygen(ctx, &key) == 1, let key else { fatalError("RSA key generation failed") }
        pkey = key
    }

    deinit { EVP_PKEY_free(pkey) }

    /// `-----BEGIN PUBLIC KEY-----` PEM, as the provider hands it to the merchant.
    public var publicKeyPEM: String {
        guard let bio = BIO_new(BIO_s_mem()) else { fatalError("BIO_new failed") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PUBKEY(bio, pkey) == 1 else { fatalError("PEM_write_bio_PUBKEY failed") }
        var out = [UInt8](repeating: 0, count: Int(BIO_ctrl_pending(bio)))
        let n = out.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32($0.count)) }
        return String(decoding: out.prefix(Int(max(n, 0))), as: UTF8.self)
    }

    /// SHA256withRSA (PKCS#1 v1.5), base64.
    public func signSHA256(_ message: [UInt8]) -> String {
        guard let ctx = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed") }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestSignInit(ctx, nil, EVP_sha256(), nil, pkey) == 1 else { fatalError("EVP_DigestSignInit failed") }
        var length = 0
        let stored = message.isEmpty ? [0] : message
        var signature = [UInt8](repeating: 0, count: 512)
        length = signature.count
        let ok = stored.withUnsafeBufferPointer { m in
            signature.withUnsafeMutableBufferPointer { s in
                EVP_DigestSign(ctx, s.baseAddress, &length, m.baseAddress, message.count) == 1
            }
        }
        guard ok else { fatalError("EVP_DigestSign failed") }
        return Base64.encode(signature.prefix(length))
    }
}

/// Requests as Alipay, WeChat Pay v3 and 易支付 send them to a notify URL.
public enum ProviderRequests {
    /// `application/x-www-form-urlencoded` as browsers and the providers' SDKs write it:
    /// unreserved bytes as they are, space as `+`, everything else `%XX`.
    public static func formEncode(_ fields: [(String, String)]) -> String {
        fields.map { escape($0.0) + "=" + escape($0.1) }.joined(separator: "&")
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "*"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: " "):
                out += "+"
            default:
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }

    /// What Alipay and 易支付 sign: fields sorted by name (byte order), empty values and
    /// `sign`/`sign_type` left out, `name=value` joined by `&`, values as they are (not encoded).
    public static func signingContent(_ fields: [(String, String)]) -> String {
        fields.filter { !$0.1.isEmpty && $0.0 != "sign" && $0.0 != "sign_type" }
            .sorted { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// Alipay's asynchronous notify: the fields plus `sign_type=RSA2` and `sign`, form-encoded.
    public static func alipay(_ fields: [(String, String)], key: ProviderTestKey) -> (fields: [(String, String)], body: String) {
        let sign = key.signSHA256(Array(signingContent(fields).utf8))
        let all = fields + [("sign_type", "RSA2"), ("sign", sign)]
        return (all, formEncode(all))
    }

    /// 易支付: `sign` = lowercase hex MD5 of the signing content followed directly by the key.
    public static func epay(_ fields: [(String, String)], merchantKey: String) -> (fields: [(String, String)], body: String) {
        let sign = Crypto.md5Hex(Array((signingContent(fields) + merchantKey).utf8))
        let all = fields + [("sign", sign), ("sign_type", "MD5")]
        return (all, formEncode(all))
    }

    /// A WeChat Pay v3 notify: `transaction` (the decrypted resource JSON) sealed with
    /// AEAD_AES_256_GCM under the API v3 key, the body, and the `Wechatpay-*` headers signed
    /// over `"<timestamp>\n<nonce>\n<body>\n"` with the platform key.
    public struct WeChatPayNotify: Sendable {
        public var body: String
        public var timestamp: String
        public var nonce: String
        public var signature: String
        public var serial: String

        public init(body: String, timestamp: String, nonce: String, signature: String, serial: String) {
            self.body = body
            self.timestamp = timestamp
            self.nonce = nonce
            self.signature = signature
            self.serial = serial
        }

        public var headers: [(String, String)] {
            [("Wechatpay-Timestamp", timestamp), ("Wechatpay-Nonce", nonce),
             ("Wechatpay-Signature", signature), ("Wechatpay-Serial", serial)]
        }
    }

    public static func wechatpay(transaction: String, apiV3Key: String, key: ProviderTestKey, timestamp: Int64,
                                 resourceNonce: String = "fDqa5bkVGWYD", associatedData: String = "transaction",
                                 headerNonce: String = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS") -> WeChatPayNotify {
        guard let box = SecretBox(key: Array(apiV3Key.utf8)) else { fatalError("the API v3 key must be 32 bytes") }
        let sealed = box.seal(Array(transaction.utf8), nonce: Array(resourceNonce.utf8), context: Array(associatedData.utf8))
        // SecretBox writes nonce | ciphertext | tag; WeChat sends ciphertext | tag and the nonce apart.
        let ciphertext = Base64.encode(sealed.dropFirst(12))
        let body = """
            {"id":"EV-2018022511223320873","create_time":"2015-05-20T13:29:35+08:00","resource_type":"encrypt-resource",\
            "event_type":"TRANSACTION.SUCCESS","summary":"支付成功","resource":{"original_type":"transaction",\
            "algorithm":"AEAD_AES_256_GCM","ciphertext":"\(ciphertext)","associated_data":"\(associatedData)",\
            "nonce":"\(resourceNonce)"}}
            """
        let stamp = String(timestamp)
        let signature = key.signSHA256(Array("\(stamp)\n\(headerNonce)\n\(body)\n".utf8))
        return WeChatPayNotify(body: body, timestamp: stamp, nonce: headerNonce, signature: signature,
                               serial: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1")
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}
