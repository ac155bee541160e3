import XCTest
@testable import GatewayPayments

final class YuanAmountTests: XCTestCase {
    func testYuanToFenExactly() {
        XCTAssertEqual(YuanAmount.fen("29.00"), 2900)
        XCTAssertEqual(YuanAmount.fen("29.0"), 2900)
        XCTAssertEqual(YuanAmount.fen("29"), 2900)
        XCTAssertEqual(YuanAmount.fen("0.01"), 1)
        XCTAssertEqual(YuanAmount.fen("0.10"), 10)
        // 0.1 + 0.2 style binary fractions would be off by one fen with Double.
        XCTAssertEqual(YuanAmount.fen("1234567.89"), 123_456_789)
        XCTAssertEqual(YuanAmount.fen("100000000000.00"), 10_000_000_000_000)
    }

    func testRefusesAnythingButPlainYuan() {
        for bad in ["29.001", "-1", "1e3", "29.0.0", "+29.00", " 29.00", "29.00 ", "", ".", "29.", ".50",
                    "29,00", "0x10", "100000000000.01", "99999999999999.00", "２９.00", "NaN"] {
            XCTAssertNil(YuanAmount.fen(bad), bad)
        }
    }
}

final class FormFieldsTests: XCTestCase {
    func testDecodesPercentPlusAndUTF8() throws {
        let fields = try FormFields.parse(Array("subject=%E5%8D%A1%E5%AF%86+x&a=1%2B1%3D2&empty=".utf8)).get()
        XCTAssertEqual(fields, ["subject": "卡密 x", "a": "1+1=2", "empty": ""])
    }

    func testRefusesMalformedForms() {
        for bad in ["", "a=1&a=2", "a=1&&b=2", "novalue", "=1", "a=%2", "a=%zz", "a=%FF", "a=1&"] {
            guard case .failure(.malformed) = FormFields.parse(Array(bad.utf8)) else { return XCTFail("accepted \(bad)") }
        }
    }

    func testSigningContentSortsByByteOrderAndSkipsSignAndEmpty() {
        let content = FormFields.signingContent(["b": "2", "a": "x y", "sign": "s", "sign_type": "RSA2", "empty": "",
                                                 "B": "upper", "a_b": "3"])
        XCTAssertEqual(content, "B=upper&a=x y&a_b=3&b=2")
    }
}
