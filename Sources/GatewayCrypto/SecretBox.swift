import COpenSSL

/// AES-256-GCM for card keys at rest: each value is sealed with a fresh 12-byte nonce
/// and bound to a context string (the product id) so a blob copied to another product
/// does not open.
public struct SecretBox: Sendable {
    private let key: [UInt8]

    /// `key` must be 32 bytes.
    public init?(key: [UInt8]) {
        guard key.count == 32 else { return nil }
        self.key = key
    }

    /// nonce (12) | ciphertext | tag (16)
    public func seal(_ plaintext: [UInt8], context: [UInt8] = []) -> [UInt8] {
        seal(plaintext, nonce: Crypto.randomBytes(12), context: context)
    }

    /// With a nonce the caller chose (12 bytes, never twice under one key): a payment
    /// provider fixes its own nonce, so test vectors must too.
    public func seal(_ plaintext: [UInt8], nonce: [UInt8], context: [UInt8] = []) -> [UInt8] {
        precondition(nonce.count == 12, "AES-GCM nonce must be 12 bytes")
        var out = [UInt8](repeating: 0, count: 12 + plaintext.count + 16)
        guard let ctx = EVP_CIPHER_CTX_new() else { fatalError("EVP_CIPHER_CTX_new failed") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        var len: Int32 = 0
        var ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, nil, nil) == 1
        ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, nil) == 1
        ok = ok && key.withUnsafeBufferPointer { k in nonce.withUnsafeBufferPointer { n in
            EVP_EncryptInit_ex(ctx, nil, nil, k.baseAddress, n.baseAddress) == 1 } }
        if !context.isEmpty {
            ok = ok && context.withUnsafeBufferPointer { EVP_EncryptUpdate(ctx, nil, &len, $0.baseAddress, Int32($0.count)) == 1 }
        }
        out.withUnsafeMutableBufferPointer { o in
            for i in 0..<12 { o[i] = nonce[i] }
            let body = o.baseAddress! + 12
            if !plaintext.isEmpty {
                ok = ok && plaintext.withUnsafeBufferPointer { EVP_EncryptUpdate(ctx, body, &len, $0.baseAddress, Int32($0.count)) == 1 }
            }
            ok = ok && EVP_EncryptFinal_ex(ctx, body + plaintext.count, &len) == 1
            ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, body + plaintext.count) == 1
        }
        guard ok else { fatalError("AES-GCM seal failed") }
        return out
    }

    /// nil when the blob was tampered with, sealed under another key or context.
    public func open(_ sealed: [UInt8], context: [UInt8] = []) -> [UInt8]? {
        guard sealed.count >= 28 else { return nil }
        let bodyCount = sealed.count - 28
        guard let ctx = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(ctx) }
        var out = [UInt8](repeating: 0, count: max(bodyCount, 1))
        var len: Int32 = 0
        var ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, nil, nil) == 1
        ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, nil) == 1
        ok = ok && sealed.withUnsafeBufferPointer { s in key.withUnsafeBufferPointer { k in
            EVP_DecryptInit_ex(ctx, nil, nil, k.baseAddress, s.baseAddress) == 1 } }
        if !context.isEmpty {
            ok = ok && context.withUnsafeBufferPointer { EVP_DecryptUpdate(ctx, nil, &len, $0.baseAddress, Int32($0.count)) == 1 }
        }
        var tag = Array(sealed[(12 + bodyCount)...])
        ok = ok && sealed.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { o in
            bodyCount == 0 || EVP_DecryptUpdate(ctx, o.baseAddress, &len, s.baseAddress! + 12, Int32(bodyCount)) == 1 } }
        ok = ok && tag.withUnsafeMutableBufferPointer { EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, $0.baseAddress) == 1 }
        ok = ok && out.withUnsafeMutableBufferPointer { EVP_DecryptFinal_ex(ctx, $0.baseAddress! + bodyCount, &len) == 1 }
        guard ok else { return nil }
        return Array(out.prefix(bodyCount))
    }
}

extension Crypto {
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        bytes.withUnsafeBufferPointer { b in out.withUnsafeMutableBufferPointer { o in _ = SHA256(b.baseAddress, b.count, o.baseAddress) } }
        return out
    }
}
