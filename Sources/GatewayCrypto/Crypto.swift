import COpenSSL

/// Thin wrappers over libcrypto: the only primitives the gateway needs.
public enum Crypto {
    public static func hmacSHA256(key: some Collection<UInt8>, message: UnsafeRawBufferPointer) -> [UInt8] {
        withContiguousBytes(key) { keyBuf in
            hmac(key: keyBuf, message: message)
        }
    }

    public static func hmacSHA256(key: some Collection<UInt8>, message: some Collection<UInt8>) -> [UInt8] {
        withContiguousBytes(key) { keyBuf in
            withContiguousBytes(message) { msgBuf in
                hmac(key: keyBuf, message: msgBuf)
            }
        }
    }

    /// Timing does not depend on where the first difference is; lengths are not secret.
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in
                CRYPTO_memcmp(pa.baseAddress!, pb.baseAddress!, a.count) == 0
            }
        }
    }

    public static func randomBytes(_ count: Int) -> [UInt8] {
        precondition(count >= 0, "negative byte count")
        guard count > 0 else { return [] }
        precondition(count <= Int(Int32.max), "byte count too large")
        var out = [UInt8](repeating: 0, count: count)
        let rc = out.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress!, Int32(count)) }
        // Without entropy no token or secret is safe to hand out.
        guard rc == 1 else { fatalError("RAND_bytes failed") }
        return out
    }

    /// SHA-1 as lowercase hex: the name Redis gives a Lua script (EVALSHA), known without asking.
    public static func sha1Hex(_ text: String) -> String {
        var digest = [UInt8](repeating: 0, count: Int(SHA_DIGEST_LENGTH))
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBufferPointer { SHA1($0.baseAddress, $0.count, &digest) }
        return hex(digest)
    }

    public static func hex(_ bytes: some Collection<UInt8>) -> String {
        withContiguousBytes(bytes) { buf in
            var out: [UInt8] = []
            out.reserveCapacity(buf.count * 2)
            for b in buf {
                out.append(hexDigits[Int(b >> 4)])
                out.append(hexDigits[Int(b & 0x0F)])
            }
            return String(decoding: out, as: UTF8.self)
        }
    }

    public static func fromHex(_ s: some StringProtocol) -> [UInt8]? {
        withContiguousBytes(s.utf8) { buf -> [UInt8]? in
            guard buf.count % 2 == 0 else { return nil }
            var out: [UInt8] = []
            out.reserveCapacity(buf.count / 2)
            var i = 0
            while i < buf.count {
                guard let high = hexValue(buf[i]), let low = hexValue(buf[i + 1]) else { return nil }
                out.append(high << 4 | low)
                i += 2
            }
            return out
        }
    }

    public static func randomToken(_ byteCount: Int = 16) -> String {
        hex(randomBytes(byteCount))
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    private static func hmac(key: UnsafeRawBufferPointer, message: UnsafeRawBufferPointer) -> [UInt8] {
        // Empty inputs still get a real pointer: OpenSSL gives a NULL key a meaning of its own.
        var dummy: UInt8 = 0
        return withUnsafeMutablePointer(to: &dummy) { dummyPtr in
            let keyPtr = key.baseAddress ?? UnsafeRawPointer(dummyPtr)
            let msgPtr = message.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(dummyPtr)
            var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
            var outLen: UInt32 = 0
            let result = out.withUnsafeMutableBufferPointer { outBuf in
                HMAC(EVP_sha256(), keyPtr, Int32(key.count), msgPtr, message.count,
                     outBuf.baseAddress, &outLen)
            }
            guard result != nil else { fatalError("HMAC-SHA256 failed") }
            out.removeLast(out.count - Int(outLen))
            return out
        }
    }
}

/// Public entry points are generic and not inlinable, so they would run unspecialized
/// byte by byte; handing the loops a plain buffer keeps them fast.
fileprivate func withContiguousBytes<C: Collection<UInt8>, R>(_ bytes: C, _ body: (UnsafeRawBufferPointer) -> R) -> R {
    if let r = bytes.withContiguousStorageIfAvailable({ body(UnsafeRawBufferPointer($0)) }) {
        return r
    }
    return Array(bytes).withUnsafeBytes(body)
}

/// Base64url without padding (RFC 4648 section 5), as JWTs use it.
public enum Base64URL {
    private static let alphabet: [UInt8] =
        Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    private static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = UInt8(i) }
        return table
    }()

    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        withContiguousBytes(bytes) { encode(buffer: $0) }
    }

    private static func encode(buffer: UnsafeRawBufferPointer) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((buffer.count * 4 + 2) / 3)
        alphabet.withUnsafeBufferPointer { alphabet in
            var i = 0
            let whole = buffer.count - buffer.count % 3
            while i < whole {
                let acc = UInt32(buffer[i]) << 16 | UInt32(buffer[i + 1]) << 8 | UInt32(buffer[i + 2])
                out.append(alphabet[Int(acc >> 18 & 0x3F)])
                out.append(alphabet[Int(acc >> 12 & 0x3F)])
                out.append(alphabet[Int(acc >> 6 & 0x3F)])
                out.append(alphabet[Int(acc & 0x3F)])
                i += 3
            }
            switch buffer.count - whole {
            case 1:
                let acc = UInt32(buffer[i])
                out.append(alphabet[Int(acc >> 2 & 0x3F)])
                out.append(alphabet[Int(acc << 4 & 0x3F)])
            case 2:
                let acc = UInt32(buffer[i]) << 8 | UInt32(buffer[i + 1])
                out.append(alphabet[Int(acc >> 10 & 0x3F)])
                out.append(alphabet[Int(acc >> 4 & 0x3F)])
                out.append(alphabet[Int(acc << 2 & 0x3F)])
            default:
                break
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Strict: unused trailing bits must be zero, so each byte string has one encoding.
    public static func decode(_ s: some StringProtocol) -> [UInt8]? {
        withContiguousBytes(s.utf8) { decode(buffer: $0) }
    }

    private static func decode(buffer: UnsafeRawBufferPointer) -> [UInt8]? {
        let count = buffer.count
        if count % 4 == 1 { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(count * 3 / 4)
        let ok = decodeTable.withUnsafeBufferPointer { table -> Bool in
            var acc: UInt32 = 0
            var n = 0
            for c in buffer {
                let v = table[Int(c)]
                if v == 0xFF { return false }
                acc = acc << 6 | UInt32(v)
                n += 1
                if n == 4 {
                    out.append(UInt8(acc >> 16 & 0xFF))
                    out.append(UInt8(acc >> 8 & 0xFF))
                    out.append(UInt8(acc & 0xFF))
                    acc = 0
                    n = 0
                }
            }
            if n == 2 {
                if acc & 0x0F != 0 { return false }
                out.append(UInt8(acc >> 4 & 0xFF))
            } else if n == 3 {
                if acc & 0x03 != 0 { return false }
                out.append(UInt8(acc >> 10 & 0xFF))
                out.append(UInt8(acc >> 2 & 0xFF))
            }
            return true
        }
        return ok ? out : nil
    }
}
