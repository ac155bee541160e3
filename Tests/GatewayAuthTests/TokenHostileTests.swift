import XCTest
@testable import GatewayAuth
import GatewayCrypto

/// Tokens built to hurt the verifier (PROTOCOL.md 2.1, 4.1): every one is refused with an
/// error, none crashes, and a `name` is at most 32 characters and 128 bytes.
final class TokenHostileTests: XCTestCase {
    let secret = "cardshop-test-secret"
    let now: Int64 = 1_800_000_000
    var verifier: TokenVerifier { TokenVerifier(secret: secret) }

    private func sign(header: String = #"{"alg":"HS256","typ":"JWT"}"#, payload: String) -> String {
        let input = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(payload.utf8))
        return input + "." + Base64URL.encode(Crypto.hmacSHA256(key: Array(secret.utf8), message: Array(input.utf8)))
    }

    private func refused(_ token: String, file: StaticString = #filePath, line: UInt = #line) -> TokenError? {
        switch verifier.verify(token, nowSeconds: now) {
        case .success(let claims):
            XCTFail("accepted: \(claims)", file: file, line: line)
            return nil
        case .failure(let error):
            return error
        }
    }

    // MARK: name

    /// 32 characters but far more bytes: one letter and 100 combining marks is one character.
    func testNameOverBytesRefused() {
        let heavy = "a" + String(repeating: "\u{301}", count: 100)  // 1 character, 201 bytes
        XCTAssertEqual(heavy.count, 1)
        guard case .invalidClaim(let detail)? = refused(sign(payload: #"{"sub":"u1","exp":1900000000,"name":"\#(heavy)"}"#)) else {
            return XCTFail("expected invalidClaim")
        }
        XCTAssertTrue(detail.contains("128 bytes"), detail)
        let family32 = String(repeating: "👨‍👩‍👧", count: 32)  // 32 characters, 576 bytes
        guard case .invalidClaim? = refused(sign(payload: #"{"sub":"u1","exp":1900000000,"name":"\#(family32)"}"#)) else {
            return XCTFail("expected invalidClaim")
        }
    }

    func testNameAtBothLimits() throws {
        let cjk32 = String(repeating: "\u{4F60}", count: 32)  // 32 characters, 96 bytes
        XCTAssertEqual(try verifier.verify(sign(payload: #"{"sub":"u1","exp":1900000000,"name":"\#(cjk32)"}"#),
                                           nowSeconds: now).get().name, cjk32)
        let exactly128 = String(repeating: "😀", count: 32)  // 32 characters, 128 bytes
        XCTAssertEqual(exactly128.utf8.count, 128)
        XCTAssertEqual(try verifier.verify(sign(payload: #"{"sub":"u1","exp":1900000000,"name":"\#(exactly128)"}"#),
                                           nowSeconds: now).get().name, exactly128)
        let over = String(repeating: "😀", count: 31) + "a\u{301}\u{301}"  // 32 characters, 129 bytes
        XCTAssertEqual(over.count, 32)
        guard case .invalidClaim? = refused(sign(payload: #"{"sub":"u1","exp":1900000000,"name":"\#(over)"}"#)) else {
            return XCTFail("129-byte name accepted")
        }
    }

    // MARK: duplicate keys

    /// A second `alg` or `sub` could be read differently by another JWT library; refuse both.
    func testDuplicateKeysRefused() {
        let payload = #"{"sub":"u1","exp":1900000000}"#
        for header in [#"{"alg":"none","alg":"HS256"}"#, #"{"alg":"HS256","typ":"JWT","typ":"JWT"}"#] {
            guard case .malformed? = refused(sign(header: header, payload: payload)) else { return XCTFail(header) }
        }
        for p in [#"{"sub":"admin","sub":"u1","exp":1900000000}"#, #"{"sub":"u1","exp":1,"exp":1900000000}"#,
                  #"{"sub":"u1","exp":1900000000,"role":"merchant","role":"buyer"}"#] {
            guard case .malformed? = refused(sign(payload: p)) else { return XCTFail(p) }
        }
    }

    // MARK: shapes that must be refused, not crash

    func testHostilePayloads() {
        let deep = String(repeating: "[", count: 9) + String(repeating: "]", count: 9)
        let hostile = [
            #"{"sub":"u1","exp":1900000000,"x":\#(deep)}"#,
            String(repeating: "[", count: 5000),
            #"{"sub":"u1","exp":1e400}"#,
            #"{"sub":"u1","exp":"1900000000"}"#,
            #"{"sub":["u1"],"exp":1900000000}"#,
            #"{"sub":"u1","exp":1900000000,"role":{"r":"bot"}}"#,
            #"{"sub":"u1","exp":1900000000,"products":"p1"}"#,
            #"{"sub":"u1","exp":1900000000,"products":[1]}"#,
            #"{"sub":"u1","exp":1900000000,"moderator":"true"}"#,
            #"{"sub":"u1","exp":1900000000,"name":null}"#,
            #"{"sub":"u1","exp":\#(String(repeating: "9", count: 400))}"#,
            #"{"sub":"u1","exp":-9223372036854775808}"#,
            #"{"sub":"u1","exp":-1e18}"#,
            #"{"sub":"u1\ud800","exp":1900000000}"#,
            "{\"sub\":\"u1\",\"exp\":1900000000,\"name\":\"\u{0}\"}x",
        ]
        for p in hostile {
            XCTAssertNotNil(refused(sign(payload: p)), p)
        }
    }

    func testHostileTokens() {
        let good = TokenMinter(secret: secret).mint(Claims(sub: "u1", exp: now + 60))
        let parts = good.split(separator: ".").map(String.init)
        let hostile = [
            "", ".", "..", "...", parts[0] + "..", ".." + parts[2],
            parts[0] + "." + parts[1] + "." + parts[2] + ".",
            String(repeating: "A", count: 8191) + "..",
            String(repeating: ".", count: 8000),
            String(repeating: "\u{FF}", count: 3000),
            parts[0] + "." + parts[1] + "." + String(repeating: "_", count: 5000),
            parts[0] + "=" + "." + parts[1] + "." + parts[2],
            // `alg` none with an empty signature, and with no signature part at all.
            Base64URL.encode(Array(#"{"alg":"none"}"#.utf8)) + "." + parts[1] + ".",
            Base64URL.encode(Array(#"{"alg":"none"}"#.utf8)) + "." + parts[1],
            Base64URL.encode(Array(#"{"alg":null}"#.utf8)) + "." + parts[1] + "." + parts[2],
            Base64URL.encode(Array(#"{"alg":["HS256"]}"#.utf8)) + "." + parts[1] + "." + parts[2],
            Base64URL.encode([0xFF, 0xFE, 0x00]) + "." + parts[1] + "." + parts[2],
        ]
        for t in hostile {
            XCTAssertNotNil(refused(t), String(t.prefix(60)))
        }
    }
}
