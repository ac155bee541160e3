import GatewayCrypto
import XCTest

final class SecretBoxTests: XCTestCase {
    let box = SecretBox(key: Array(repeating: 7, count: 32))!

    func testRoundTripWithContext() {
        let secret = Array("STEAM-ABCD-1234".utf8)
        let sealed = box.seal(secret, context: Array("p1".utf8))
        XCTAssertEqual(sealed.count, secret.count + 28)
        XCTAssertNil(sealed.firstRange(of: secret), "plaintext must not appear in the blob")
        XCTAssertEqual(box.open(sealed, context: Array("p1".utf8)), secret)
        XCTAssertNotEqual(box.seal(secret), box.seal(secret), "fresh nonce each time")
    }

    func testTamperWrongKeyOrContextFail() {
        let sealed = box.seal(Array("key".utf8), context: Array("p1".utf8))
        XCTAssertNil(box.open(sealed, context: Array("p2".utf8)))
        XCTAssertNil(SecretBox(key: Array(repeating: 8, count: 32))!.open(sealed, context: Array("p1".utf8)))
        var flipped = sealed
        flipped[14] ^= 1
        XCTAssertNil(box.open(flipped, context: Array("p1".utf8)))
        XCTAssertNil(box.open(Array(sealed.prefix(20))))
        XCTAssertNil(SecretBox(key: [1, 2, 3]))
    }

    func testSHA256KnownVector() {
        XCTAssertEqual(Crypto.hex(Crypto.sha256(Array("abc".utf8))),
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
