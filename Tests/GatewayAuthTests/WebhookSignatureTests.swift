import GatewayCrypto
import XCTest

final class WebhookSignatureTests: XCTestCase {
    let body = Array(#"{"id":"1764600000000-0","type":"order.paid"}"#.utf8)

    /// Pinned with `printf '%s' '1764600000.<body>' | openssl dgst -sha256 -hmac whsec-test`.
    func testHeaderMatchesOpenSSL() {
        XCTAssertEqual(WebhookSignature.header(secret: "whsec-test", timestamp: 1_764_600_000, body: body),
                       "t=1764600000,v1=bec3878682fb1adffc001448dcf86a86a7b33564c25bf28653c308fb0dddf924")
    }

    func testVerifyChecksSignatureBodyAndAge() {
        let header = WebhookSignature.header(secret: "whsec-test", timestamp: 1_764_600_000, body: body)
        XCTAssertTrue(WebhookSignature.verify(header: header, secret: "whsec-test", body: body, now: 1_764_600_100))
        XCTAssertFalse(WebhookSignature.verify(header: header, secret: "other", body: body, now: 1_764_600_100))
        XCTAssertFalse(WebhookSignature.verify(header: header, secret: "whsec-test", body: body + [32], now: 1_764_600_100))
        XCTAssertFalse(WebhookSignature.verify(header: header, secret: "whsec-test", body: body, now: 1_764_600_301), "too old")
        XCTAssertFalse(WebhookSignature.verify(header: "t=1764600000", secret: "whsec-test", body: body, now: 1_764_600_000))
        let rotated = "t=1764600000,v1=00,v1=" + header.split(separator: "=").last!
        XCTAssertTrue(WebhookSignature.verify(header: rotated, secret: "whsec-test", body: body, now: 1_764_600_000))
    }
}
