import XCTest
@testable import GatewayAuth
import GatewayCrypto

final class TokenTests: XCTestCase {
    let secret = "cardshop-test-secret"
    let now: Int64 = 1_800_000_000
    var verifier: TokenVerifier { TokenVerifier(secret: secret) }

    /// Signs arbitrary header and payload text, so tests can build tokens the minter never would.
    private func sign(header: String, payload: String, secret: String? = nil) -> String {
        let input = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(payload.utf8))
        let mac = Crypto.hmacSHA256(key: Array((secret ?? self.secret).utf8), message: Array(input.utf8))
        return input + "." + Base64URL.encode(mac)
    }

    private func sign(payload: String) -> String {
        sign(header: #"{"alg":"HS256","typ":"JWT"}"#, payload: payload)
    }

    private func assertFails(_ token: String, with expected: TokenError,
                             file: StaticString = #filePath, line: UInt = #line) {
        switch verifier.verify(token, nowSeconds: now) {
        case let .success(claims):
            XCTFail("accepted: \(claims)", file: file, line: line)
        case let .failure(error):
            XCTAssertEqual(error, expected, file: file, line: line)
        }
    }

    private func assertInvalidClaim(_ payload: String, file: StaticString = #filePath, line: UInt = #line) {
        let result = verifier.verify(sign(payload: payload), nowSeconds: now)
        guard case let .failure(.invalidClaim(detail)) = result else {
            return XCTFail("expected invalidClaim for \(payload), got \(result)", file: file, line: line)
        }
        XCTAssertFalse(detail.isEmpty, file: file, line: line)
    }

    private func assertMalformed(_ token: String, file: StaticString = #filePath, line: UInt = #line) {
        let result = verifier.verify(token, nowSeconds: now)
        guard case .failure(.malformed) = result else {
            return XCTFail("expected malformed, got \(result)", file: file, line: line)
        }
    }

    // MARK: round trips

    func testMintVerifyRoundTripMinimal() throws {
        let claims = Claims(sub: "u1", exp: now + 60)
        let token = TokenMinter(secret: secret).mint(claims)
        XCTAssertEqual(try verifier.verify(token, nowSeconds: now).get(), claims)

        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        XCTAssertEqual(parts.count, 3)
        XCTAssertEqual(parts[0], "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9")
        let payload = try XCTUnwrap(Base64URL.decode(parts[1]))
        XCTAssertEqual(String(decoding: payload, as: UTF8.self), #"{"sub":"u1","exp":1800000060}"#)
    }

    func testMintVerifyRoundTripFull() throws {
        let claims = Claims(sub: "bot-7", exp: now + 1, role: .bot, products: ["p1", "p:2"], moderator: true,
                            name: "Zoë \"the\" bot ✓")
        let token = TokenMinter(secret: Array(secret.utf8)).mint(claims)
        XCTAssertEqual(try TokenVerifier(secret: Array(secret.utf8)).verify(token, nowSeconds: now).get(), claims)

        let merchant = Claims(sub: "m1", exp: now + 3600, role: .merchant, products: ["p1"])
        XCTAssertEqual(try verifier.verify(TokenMinter(secret: secret).mint(merchant), nowSeconds: now).get(), merchant)
    }

    func testWrongSecretIsBadSignature() {
        let token = TokenMinter(secret: "other-secret").mint(Claims(sub: "u1", exp: now + 60))
        assertFails(token, with: .badSignature)
    }

    // MARK: tokens minted elsewhere

    /// Made with Python's hmac, hashlib and json for secret "cardshop-test-secret".
    let pythonToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
        + "eyJzdWIiOiJib3QtNyIsImV4cCI6MjAwMDAwMDAwMCwicm9sZSI6ImJvdCIsInByb2R1Y3RzIjpbInAxIiwicDIiXSwibW9kZXJhdG9yIjp0cnVlLCJuYW1lIjoiQm90IFNldmVuIn0."
        + "H71eseSw7KDIkjEsNOJ7Ub0_nMf5iULpilb3MH9cUno"

    func testKnownPythonToken() throws {
        let expected = Claims(sub: "bot-7", exp: 2_000_000_000, role: .bot, products: ["p1", "p2"],
                              moderator: true, name: "Bot Seven")
        XCTAssertEqual(try verifier.verify(pythonToken, nowSeconds: now).get(), expected)
        // Our minter writes the same bytes for the same claims.
        XCTAssertEqual(TokenMinter(secret: secret).mint(expected), pythonToken)
    }

    func testKnownPythonTokenWithSpacesAndUnicode() throws {
        // json.dumps defaults (", " and ": ") and a non-ASCII name.
        let token = "eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9."
            + "eyJzdWIiOiAidTEiLCAiZXhwIjogMjAwMDAwMDAwMCwgIm5hbWUiOiAiWm_DqyDinJMifQ."
            + "mGONofG3RKoLIVg2cy6KXLNeD80AwsbFRxARS31nlm4"
        XCTAssertEqual(try verifier.verify(token, nowSeconds: now).get(),
                       Claims(sub: "u1", exp: 2_000_000_000, name: "Zoë ✓"))
    }

    func testHeaderMemberOrderDoesNotMatter() throws {
        // {"typ":"JWT","alg":"HS256"} / {"sub":"u1","exp":1700000000}, from Python.
        let token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSIsImV4cCI6MTcwMDAwMDAwMH0."
            + "lqKfPGxyxnyc_OnuRPR-zQbLndkHaQ3lBYwZnRcuddw"
        XCTAssertEqual(try verifier.verify(token, nowSeconds: 1_600_000_000).get(),
                       Claims(sub: "u1", exp: 1_700_000_000))
        assertFails(token, with: .expired)
    }

    // MARK: algorithm and header

    func testAlgNoneRejected() {
        let header = Base64URL.encode(Array(#"{"alg":"none","typ":"JWT"}"#.utf8))
        let payload = Base64URL.encode(Array(#"{"sub":"u1","exp":1900000000}"#.utf8))
        assertFails(header + "." + payload + ".", with: .unsupportedAlgorithm("none"))
        // Even with a valid-looking HS256 signature attached.
        assertFails(sign(header: #"{"alg":"none"}"#, payload: #"{"sub":"u1","exp":1900000000}"#),
                    with: .unsupportedAlgorithm("none"))
    }

    func testOtherAlgorithmsRejected() {
        let payload = #"{"sub":"u1","exp":1900000000}"#
        assertFails(sign(header: #"{"alg":"HS512","typ":"JWT"}"#, payload: payload), with: .unsupportedAlgorithm("HS512"))
        assertFails(sign(header: #"{"alg":"RS256"}"#, payload: payload), with: .unsupportedAlgorithm("RS256"))
        assertFails(sign(header: #"{"alg":"hs256"}"#, payload: payload), with: .unsupportedAlgorithm("hs256"))
        // Duplicate keys are refused outright (TokenHostileTests), whichever comes last.
        assertMalformed(sign(header: #"{"alg":"HS256","alg":"none"}"#, payload: payload))
    }

    func testTypMustBeJWTWhenPresent() throws {
        let payload = #"{"sub":"u1","exp":1900000000}"#
        XCTAssertEqual(try verifier.verify(sign(header: #"{"alg":"HS256"}"#, payload: payload), nowSeconds: now).get().sub, "u1")
        let result = verifier.verify(sign(header: #"{"alg":"HS256","typ":"JWE"}"#, payload: payload), nowSeconds: now)
        guard case .failure(.unsupportedAlgorithm) = result else { return XCTFail("got \(result)") }
        let numeric = verifier.verify(sign(header: #"{"alg":"HS256","typ":1}"#, payload: payload), nowSeconds: now)
        guard case .failure(.unsupportedAlgorithm) = numeric else { return XCTFail("got \(numeric)") }
    }

    func testBadHeaders() {
        let payload = #"{"sub":"u1","exp":1900000000}"#
        assertMalformed(sign(header: #"{"typ":"JWT"}"#, payload: payload))
        assertMalformed(sign(header: #"{"alg":256}"#, payload: payload))
        assertMalformed(sign(header: #"["HS256"]"#, payload: payload))
        assertMalformed(sign(header: #"{"alg":"HS256""#, payload: payload))
        assertMalformed(sign(header: #"{"alg":"HS256","crit":["exp"]}"#, payload: payload))
    }

    // MARK: tampering

    func testTamperedPayload() {
        let token = TokenMinter(secret: secret).mint(Claims(sub: "u1", exp: now + 60))
        let parts = token.split(separator: ".").map(String.init)
        let forged = Base64URL.encode(Array(#"{"sub":"admin","exp":1800000060}"#.utf8))
        assertFails(parts[0] + "." + forged + "." + parts[2], with: .badSignature)
        // Role escalation with the original signature.
        let escalated = Base64URL.encode(Array(#"{"sub":"u1","exp":1800000060,"role":"bot","moderator":true}"#.utf8))
        assertFails(parts[0] + "." + escalated + "." + parts[2], with: .badSignature)
    }

    func testTamperedSignature() throws {
        let token = TokenMinter(secret: secret).mint(Claims(sub: "u1", exp: now + 60))
        let parts = token.split(separator: ".").map(String.init)
        var sig = try XCTUnwrap(Base64URL.decode(parts[2]))
        XCTAssertEqual(sig.count, 32)
        sig[5] ^= 0x01
        assertFails(parts[0] + "." + parts[1] + "." + Base64URL.encode(sig), with: .badSignature)
        // Truncated and empty signatures.
        assertFails(parts[0] + "." + parts[1] + "." + Base64URL.encode(sig.dropLast()), with: .badSignature)
        assertFails(parts[0] + "." + parts[1] + ".", with: .badSignature)
    }

    func testBadSignatureWinsOverBadClaims() {
        // An unsigned payload must not get as far as claim checks.
        let token = sign(header: #"{"alg":"HS256"}"#, payload: #"{"sub":"bad sub","exp":"x"}"#, secret: "wrong")
        assertFails(token, with: .badSignature)
        let garbage = sign(header: #"{"alg":"HS256"}"#, payload: "not json", secret: "wrong")
        assertFails(garbage, with: .badSignature)
    }

    // MARK: expiry

    func testExpired() throws {
        let minter = TokenMinter(secret: secret)
        let atNow = verifier.verify(minter.mint(Claims(sub: "u1", exp: now)), nowSeconds: now)
        XCTAssertEqual(atNow, .failure(.expired))
        XCTAssertEqual(TokenError.expired.closeCode, 4003)
        let past = verifier.verify(minter.mint(Claims(sub: "u1", exp: now - 3600)), nowSeconds: now)
        guard case let .failure(error) = past else { return XCTFail("accepted expired token") }
        XCTAssertEqual(error.closeCode, 4003)
        XCTAssertEqual(error.message, "token expired")
        XCTAssertEqual(try verifier.verify(minter.mint(Claims(sub: "u1", exp: now + 1)), nowSeconds: now).get().exp, now + 1)
    }

    func testFractionalExp() throws {
        XCTAssertEqual(try verifier.verify(sign(payload: #"{"sub":"u1","exp":1800000001.5}"#), nowSeconds: now).get().exp,
                       1_800_000_001)
        assertFails(sign(payload: #"{"sub":"u1","exp":1800000000.9}"#), with: .expired)
        assertInvalidClaim(#"{"sub":"u1","exp":1e300}"#)
    }

    // MARK: claims

    func testBadSub() {
        assertInvalidClaim(#"{"sub":"a b","exp":1900000000}"#)
        assertInvalidClaim(#"{"sub":"","exp":1900000000}"#)
        assertInvalidClaim(#"{"sub":"é","exp":1900000000}"#)
        assertInvalidClaim(#"{"sub":7,"exp":1900000000}"#)
        assertInvalidClaim(#"{"exp":1900000000}"#)
        assertInvalidClaim(#"{"sub":"\#(String(repeating: "a", count: 65))","exp":1900000000}"#)
        XCTAssertNoThrow(try verifier.verify(sign(payload: #"{"sub":"\#(String(repeating: "a", count: 64))","exp":1900000000}"#),
                                             nowSeconds: now).get())
    }

    func testMissingOrIllTypedExp() {
        assertInvalidClaim(#"{"sub":"u1"}"#)
        assertInvalidClaim(#"{"sub":"u1","exp":"1900000000"}"#)
        assertInvalidClaim(#"{"sub":"u1","exp":null}"#)
        assertInvalidClaim(#"{"sub":"u1","exp":true}"#)
    }

    func testNameLength() throws {
        let name32 = String(repeating: "é", count: 32)
        XCTAssertEqual(try verifier.verify(sign(payload: #"{"sub":"u1","exp":1900000000,"name":"\#(name32)"}"#),
                                           nowSeconds: now).get().name, name32)
        // Characters, and (v2) at most 128 bytes: 7 family emoji are 126 bytes.
        let emoji7 = String(repeating: "👨‍👩‍👧", count: 7)
        XCTAssertEqual(try verifier.verify(sign(payload: #"{"sub":"u1","exp":1900000000,"name":"\#(emoji7)"}"#),
                                           nowSeconds: now).get().name, emoji7)
        assertInvalidClaim(#"{"sub":"u1","exp":1900000000,"name":"\#(String(repeating: "a", count: 33))"}"#)
        assertInvalidClaim(#"{"sub":"u1","exp":1900000000,"name":42}"#)
        let minted = TokenMinter(secret: secret).mint(Claims(sub: "u1", exp: now + 60, name: String(repeating: "n", count: 33)))
        guard case .failure(.invalidClaim) = verifier.verify(minted, nowSeconds: now) else {
            return XCTFail("33-character name accepted")
        }
    }

    func testRoles() throws {
        XCTAssertEqual(try verifier.verify(sign(payload: #"{"sub":"u1","exp":1900000000}"#), nowSeconds: now).get().role, .buyer)
        XCTAssertEqual(try verifier.verify(sign(payload: #"{"sub":"u1","exp":1900000000,"role":"merchant"}"#),
                                           nowSeconds: now).get().role, .merchant)
        assertInvalidClaim(#"{"sub":"u1","exp":1900000000,"role":"admin"}"#)
        assertInvalidClaim(#"{"sub":"u1","exp":1900000000,"role":"Bot"}"#)
        assertInvalidClaim(#"{"sub":"u1","exp":1900000000,"role":1}"#)
    }

    func testProducts() throws {
        XCTAssertEqual(try verifier.verify(sign(payload: #"{"sub":"b","exp":1900000000,"role":"bot","products":[]}"#),
                                           nowSeconds: now).get().products, [])
        assertInvalidClaim(#"{"sub":"b","exp":1900000000,"role":"bot","products":["p1","bad id"]}"#)
        assertInvalidClaim(#"{"sub":"b","exp":1900000000,"role":"bot","products":"p1"}"#)
        assertInvalidClaim(#"{"sub":"b","exp":1900000000,"role":"bot","products":[1]}"#)
    }

    func testModerator() throws {
        XCTAssertTrue(try verifier.verify(sign(payload: #"{"sub":"b","exp":1900000000,"role":"bot","moderator":true}"#),
                                          nowSeconds: now).get().moderator)
        XCTAssertFalse(try verifier.verify(sign(payload: #"{"sub":"u","exp":1900000000,"moderator":false}"#),
                                           nowSeconds: now).get().moderator)
        assertInvalidClaim(#"{"sub":"u","exp":1900000000,"moderator":true}"#)
        assertInvalidClaim(#"{"sub":"m","exp":1900000000,"role":"merchant","moderator":true}"#)
        assertInvalidClaim(#"{"sub":"b","exp":1900000000,"role":"bot","moderator":"yes"}"#)
        assertInvalidClaim(#"{"sub":"b","exp":1900000000,"role":"bot","moderator":1}"#)
    }

    func testUnknownClaimsIgnored() throws {
        let claims = try verifier.verify(sign(payload: #"{"sub":"u1","exp":1900000000,"iat":1,"extra":{"a":[1]}}"#),
                                         nowSeconds: now).get()
        XCTAssertEqual(claims, Claims(sub: "u1", exp: 1_900_000_000))
    }

    // MARK: malformed

    func testWrongNumberOfParts() {
        let token = TokenMinter(secret: secret).mint(Claims(sub: "u1", exp: now + 60))
        let parts = token.split(separator: ".").map(String.init)
        assertMalformed(parts[0] + "." + parts[1])
        assertMalformed(token + ".")
        assertMalformed(token + "." + parts[2])
        assertMalformed(parts[0])
        assertMalformed("")
        assertMalformed("..")
    }

    func testGarbageBase64() {
        let token = TokenMinter(secret: secret).mint(Claims(sub: "u1", exp: now + 60))
        let parts = token.split(separator: ".").map(String.init)
        assertMalformed("!!!." + parts[1] + "." + parts[2])
        assertMalformed(parts[0] + ".@@@@." + parts[2])
        assertMalformed(parts[0] + "." + parts[1] + ".not base64")
        assertMalformed(parts[0] + "." + parts[1] + "=." + parts[2])
        assertMalformed("a.b.c")
        assertMalformed("hello world")
    }

    func testPayloadNotObjectOrNotJSON() {
        assertMalformed(sign(payload: "[1,2]"))
        assertMalformed(sign(payload: "not json"))
        assertMalformed(sign(payload: #"{"sub":"u1","exp":1900000000} trailing"#))
    }

    func testOversizedTokenRejected() {
        let big = String(repeating: "a", count: 9000)
        let token = sign(payload: #"{"sub":"u1","exp":1900000000,"pad":"\#(big)"}"#)
        XCTAssertGreaterThan(token.utf8.count, 8192)
        assertFails(token, with: .malformed("token too long"))
    }

    // MARK: error surface

    func testCloseCodesAndMessages() {
        XCTAssertEqual(TokenError.malformed("x").closeCode, 4002)
        XCTAssertEqual(TokenError.unsupportedAlgorithm("none").closeCode, 4002)
        XCTAssertEqual(TokenError.badSignature.closeCode, 4002)
        XCTAssertEqual(TokenError.invalidClaim("sub").closeCode, 4002)
        XCTAssertEqual(TokenError.expired.closeCode, 4003)
        XCTAssertTrue(TokenError.unsupportedAlgorithm("HS512").message.contains("HS512"))
        XCTAssertTrue(TokenError.invalidClaim("unknown role").message.contains("unknown role"))
        XCTAssertEqual(TokenError.badSignature.message, "bad token signature")
    }
}
