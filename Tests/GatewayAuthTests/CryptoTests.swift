import XCTest
@testable import GatewayCrypto

final class CryptoTests: XCTestCase {
    // MARK: HMAC-SHA256, RFC 4231

    func testRFC4231Case1() {
        let key = [UInt8](repeating: 0x0B, count: 20)
        let mac = Crypto.hmacSHA256(key: key, message: Array("Hi There".utf8))
        XCTAssertEqual(Crypto.hex(mac), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    }

    func testRFC4231Case2() {
        let mac = Crypto.hmacSHA256(key: Array("Jefe".utf8), message: "what do ya want for nothing?".utf8)
        XCTAssertEqual(Crypto.hex(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    func testRFC4231Case6LongKey() {
        let key = [UInt8](repeating: 0xAA, count: 131)
        let message = Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)
        let mac = message.withUnsafeBytes { Crypto.hmacSHA256(key: key, message: $0) }
        XCTAssertEqual(Crypto.hex(mac), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    func testHMACEmptyInputsAndOverloadsAgree() {
        let empty = Crypto.hmacSHA256(key: [UInt8](), message: [UInt8]())
        XCTAssertEqual(Crypto.hex(empty), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
        let raw = Crypto.hmacSHA256(key: [UInt8](), message: UnsafeRawBufferPointer(start: nil, count: 0))
        XCTAssertEqual(raw, empty)

        // Non-contiguous collections take the copying path and must give the same answer.
        let key = Array("Jefe".utf8)
        let viaArray = Crypto.hmacSHA256(key: key, message: Array("abc".utf8))
        let viaSlice = Crypto.hmacSHA256(key: key[...], message: "xabcx".utf8.dropFirst().dropLast())
        let viaLazy = Crypto.hmacSHA256(key: key.lazy.map { $0 }, message: "abc".utf8.lazy.map { $0 })
        XCTAssertEqual(viaArray.count, 32)
        XCTAssertEqual(viaSlice, viaArray)
        XCTAssertEqual(viaLazy, viaArray)
        XCTAssertNotEqual(Crypto.hmacSHA256(key: Array("Jeff".utf8), message: Array("abc".utf8)), viaArray)
    }

    // MARK: comparison and randomness

    func testConstantTimeEquals() {
        XCTAssertTrue(Crypto.constantTimeEquals([], []))
        XCTAssertTrue(Crypto.constantTimeEquals([1, 2, 3], [1, 2, 3]))
        XCTAssertFalse(Crypto.constantTimeEquals([1, 2, 3], [1, 2, 4]))
        XCTAssertFalse(Crypto.constantTimeEquals([1, 2, 3], [1, 2]))
        XCTAssertFalse(Crypto.constantTimeEquals([], [0]))
    }

    func testRandom() {
        XCTAssertEqual(Crypto.randomBytes(0), [])
        let a = Crypto.randomBytes(32)
        let b = Crypto.randomBytes(32)
        XCTAssertEqual(a.count, 32)
        XCTAssertNotEqual(a, b)
        let token = Crypto.randomToken()
        XCTAssertEqual(token.count, 32)
        XCTAssertNotNil(Crypto.fromHex(token))
        XCTAssertEqual(Crypto.randomToken(4).count, 8)
        XCTAssertNotEqual(Crypto.randomToken(), Crypto.randomToken())
    }

    // MARK: hex

    func testHex() {
        XCTAssertEqual(Crypto.hex([]), "")
        XCTAssertEqual(Crypto.hex([0x00, 0x0F, 0xA5, 0xFF]), "000fa5ff")
        XCTAssertEqual(Crypto.fromHex("000fa5ff"), [0x00, 0x0F, 0xA5, 0xFF])
        XCTAssertEqual(Crypto.fromHex("DEADbeef"), [0xDE, 0xAD, 0xBE, 0xEF])
        XCTAssertEqual(Crypto.fromHex(""), [])
        XCTAssertEqual(Crypto.fromHex("xx0a"[...].dropFirst(2)), [0x0A])
        XCTAssertNil(Crypto.fromHex("abc"))
        XCTAssertNil(Crypto.fromHex("0g"))
        XCTAssertNil(Crypto.fromHex("0x12"))
        XCTAssertNil(Crypto.fromHex(" 12 "))
        XCTAssertNil(Crypto.fromHex("éé"))
        let all = (0...255).map { UInt8($0) }
        XCTAssertEqual(Crypto.fromHex(Crypto.hex(all)), all)
    }

    // MARK: base64url

    func testBase64URLKnownValues() {
        // RFC 4648 section 10 vectors, padding stripped.
        let vectors: [(String, String)] = [
            ("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"), ("foobar", "Zm9vYmFy"),
        ]
        for (plain, encoded) in vectors {
            XCTAssertEqual(Base64URL.encode(Array(plain.utf8)), encoded)
            XCTAssertEqual(Base64URL.decode(encoded), Array(plain.utf8))
        }
        // The url alphabet: '-' and '_' instead of '+' and '/'.
        XCTAssertEqual(Base64URL.encode([0xFB, 0xFF, 0xBF]), "-_-_")
        XCTAssertEqual(Base64URL.decode("-_-_"), [0xFB, 0xFF, 0xBF])
        XCTAssertEqual(Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8)),
                       "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9")
    }

    func testBase64URLRoundTrips() {
        for length in 0..<70 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            let encoded = Base64URL.encode(bytes)
            XCTAssertFalse(encoded.contains("="))
            XCTAssertEqual(encoded.count, (length * 4 + 2) / 3)
            XCTAssertEqual(Base64URL.decode(encoded), bytes, "length \(length)")
        }
        let random = Crypto.randomBytes(1000)
        XCTAssertEqual(Base64URL.decode(Base64URL.encode(random)), random)
        XCTAssertEqual(Base64URL.decode(Base64URL.encode(random)[...]), random)
    }

    func testBase64URLRejections() {
        for bad in ["Zg==", "Zm8=", "Zm9v=", "Z", "Zm9vY", "Zm9v+", "Zm9v/w", "Zm 9v", "Zm9v\n", "Zm.9", "é",
                    "Zh", "Zm9", "AB"] {
            XCTAssertNil(Base64URL.decode(bad), bad.debugDescription)
        }
        // Non-zero leftover bits would give one byte string two encodings.
        XCTAssertEqual(Base64URL.decode("Zg"), [0x66])
        XCTAssertNil(Base64URL.decode("Zh"))
        XCTAssertEqual(Base64URL.decode("Zm8"), [0x66, 0x6F])
        XCTAssertNil(Base64URL.decode("Zm9"))
    }
}
