import XCTest
@testable import GatewayProtocol

/// `also_bought` (WS) and `?limit=` of `GET /api/v1/products/{id}/also-bought`: 5 by default, 1 to 50.
final class AlsoBoughtQueryTests: XCTestCase {
    private func decoded(_ text: String) -> DecodedLine? { CommandDecoder.decodeFrame(text).first }

    func testTheWSOpTakesAProductAndAnOptionalLimit() {
        XCTAssertEqual(decoded(#"{"id":1,"op":"also_bought","product":"p1"}"#),
                       .command(id: 1, .community(.alsoBought(product: "p1", limit: 5))))
        XCTAssertEqual(decoded(#"{"id":2,"op":"also_bought","product":"p1","limit":50}"#),
                       .command(id: 2, .community(.alsoBought(product: "p1", limit: 50))))
        for bad in [#""limit":0"#, #""limit":51"#, #""limit":"5""#, #""limit":1.5"#, #""product":"a b""#, #""product":7"#] {
            let text = bad.hasPrefix(#""product""#) ? #"{"id":3,"op":"also_bought",\#(bad)}"#
                                                    : #"{"id":3,"op":"also_bought","product":"p1",\#(bad)}"#
            guard case .invalid(3, let error)? = decoded(text) else { return XCTFail(text) }
            XCTAssertEqual(error.code, .badRequest, text)
        }
        guard case .invalid(4, let missing)? = decoded(#"{"id":4,"op":"also_bought"}"#) else { return XCTFail("no product") }
        XCTAssertEqual(missing.code, .badRequest)
        XCTAssertEqual(Command.community(.alsoBought(product: "p1", limit: 5)).op, "also_bought")
    }

    func testTheHTTPLimit() {
        XCTAssertEqual(try AlsoBoughtQuery.limit("").get(), 5)
        XCTAssertEqual(try AlsoBoughtQuery.limit("limit=1").get(), 1)
        XCTAssertEqual(try AlsoBoughtQuery.limit("other=x&limit=50").get(), 50)
        for bad in ["limit=0", "limit=51", "limit=", "limit", "limit=-1", "limit=1.5", "limit=abc", "limit=005", "limit=1&limit=2"] {
            guard case .failure(let error) = AlsoBoughtQuery.limit(bad) else { return XCTFail(bad) }
            XCTAssertEqual(error.code, .badRequest, bad)
        }
    }
}
