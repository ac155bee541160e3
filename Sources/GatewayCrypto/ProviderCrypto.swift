import COpenSSL

/// An RSA public key a payment provider signs its notifies with (Alipay, WeChat Pay),
/// loaded once at start-up.
public final class RSAPublicKey: @unchecked Sendable {
    // Never mutated after init; OpenSSL allows concurrent verifies with one EVP_PKEY.
    private let pkey: OpaquePointer

    /// A `-----BEGIN PUBLIC KEY-----` PEM, or its bare base64 body (Alipay's console shows
    /// the key that way). nil when it is not an RSA public key.
    public init?(pem: String) {
        var text = pem.trimmingWhitespace
        if !text.hasPrefix("-----BEGIN") {
            text = "-----BEGIN PUBLIC KEY-----\n" + text + "\n-----END PUBLIC KEY-----\n"
        }
        let bytes = Array(text.utf8)
        let loaded: OpaquePointer? = bytes.withUnsafeBytes { buf in
            guard let bio = BIO_new_mem_buf(buf.baseAddress, Int32(buf.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PUBKEY(bio, nil, nil, nil)
        }
        guard let loaded else { return nil }
        guard EVP_PKEY_get_base_id(loaded) == EVP_PKEY_RSA else {
            EVP_PKEY_free(loaded)
            return nil
        }
        pkey = loaded
    }

    deinit { EVP_PKEY_free(pkey) }

    /// SHA256withRSA (PKCS#1 v1.5), what Alipay calls RSA2 and WeChat Pay v3 uses.
    public func verifySHA256(signature: [UInt8], message: [UInt8]) -> Bool {
        guard !signature.isEmpty, let ctx = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestVerifyInit(ctx, nil, EVP_sha256(), nil, pkey) == 1 else { return false }
        // An empty message still gets a real pointer.
        let stored = message.isEmpty ? [0] : message
        return signature.withUnsafeBufferPointer { sig in
            stored.withUnsafeBufferPointer { msg in
                EVP_DigestVerify(ctx, sig.baseAddress, sig.count, msg.baseAddress, message.count) == 1
            }
        }
    }
}

extension Crypto {
    /// MD5 as lowercase hex: 易支付 signs with it. Not for anything of our own.
    public static func md5Hex(_ bytes: [UInt8]) -> String {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        let stored = bytes.isEmpty ? [0] : bytes
        let ok = stored.withUnsafeBytes { b in
            out.withUnsafeMutableBufferPointer { o in
                EVP_Digest(b.baseAddress, bytes.count, o.baseAddress, &len, EVP_md5(), nil) == 1
            }
        }
        guard ok else { fatalError("MD5 failed") }
        return hex(out.prefix(Int(len)))
    }
}

/// Standard base64 with padding (RFC 4648 section 4), as payment providers send signatures
/// and ciphertexts. Strict like `Base64URL`: one encoding per byte string.
public enum Base64 {
    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        var text = String(Base64URL.encode(bytes).map { c -> Character in
            switch c {
            case "-": "+"
            case "_": "/"
            default: c
            }
        })
        while text.utf8.count % 4 != 0 { text += "=" }
        return text
    }

    public static func decode(_ s: some StringProtocol) -> [UInt8]? {
        let utf8 = Array(s.utf8)
        guard utf8.count % 4 == 0 else { return nil }
        var body = utf8
        var padding = 0
        while body.last == UInt8(ascii: "="), padding < 2 {
            body.removeLast()
            padding += 1
        }
        var mapped: [UInt8] = []
        mapped.reserveCapacity(body.count)
        for c in body {
            switch c {
            case UInt8(ascii: "+"): mapped.append(UInt8(ascii: "-"))
            case UInt8(ascii: "/"): mapped.append(UInt8(ascii: "_"))
            // The URL alphabet's own characters and stray padding are not standard base64.
            case UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "="): return nil
            default: mapped.append(c)
            }
        }
        return Base64URL.decode(String(decoding: mapped, as: UTF8.self))
    }
}

extension String {
    fileprivate var trimmingWhitespace: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
              let last = scalars.lastIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        return String(scalars[first...last])
    }
}
