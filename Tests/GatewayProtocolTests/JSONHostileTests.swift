import XCTest
@testable import GatewayProtocol

/// Input built to hurt the parser (PROTOCOL.md 4.1): it is refused or parsed, never a
/// crash, and the cost stays linear in the input.
final class JSONHostileTests: XCTestCase {
    /// The depth limit is the parser's stack guard, so no caller may lift it past a ceiling
    /// the stack can take, whatever `maxDepth` it asks for.
    func testDepthHasAHardCeiling() {
        XCTAssertEqual(JSON.maxDepthCeiling, 128)
        let deep = String(repeating: "[", count: 1_000_000)
        XCTAssertThrowsError(try JSON.parse(deep, maxDepth: .max)) { error in
            XCTAssertEqual((error as? JSONError)?.message, "nesting too deep")
        }
        let objects = String(repeating: #"{"a":"#, count: 300_000)
        XCTAssertThrowsError(try JSON.parse(objects, maxDepth: .max))
        let ok = String(repeating: "[", count: 128) + String(repeating: "]", count: 128)
        XCTAssertNoThrow(try JSON.parse(ok, maxDepth: .max))
        XCTAssertThrowsError(try JSON.parse("[" + ok + "]", maxDepth: .max))
        // A negative limit is no limit lifted either: nothing nests.
        XCTAssertThrowsError(try JSON.parse("[]", maxDepth: -5))
        XCTAssertEqual(try JSON.parse("1", maxDepth: -5), .int(1))
    }

    func testHostileNumbers() throws {
        XCTAssertEqual(try JSON.parse("-0"), .int(0))
        XCTAssertEqual(try JSON.parse("-0").intValue, 0)
        XCTAssertEqual(try JSON.parse("-0.0").intValue, 0)
        XCTAssertEqual(try JSON.parse("1e300"), .double(1e300))
        XCTAssertNil(try JSON.parse("1e300").intValue)
        XCTAssertNil(try JSON.parse("1.5").intValue)
        XCTAssertEqual(try JSON.parse("9223372036854775807"), .int(.max))
        XCTAssertEqual(try JSON.parse("-9223372036854775808"), .int(.min))
        XCTAssertEqual(try JSON.parse("9223372036854775808"), .double(9223372036854775808))
        XCTAssertNil(try JSON.parse("9223372036854775808").intValue)
        XCTAssertNil(try JSON.parse("1e19").intValue)
        XCTAssertNil(try JSON.parse("-1e19").intValue)
        for text in ["1e400", "-1e400", "1e99999999999999999999", String(repeating: "9", count: 400)] {
            XCTAssertThrowsError(try JSON.parse(text), text.prefix(30).description)
        }
        // Long mantissas parse in time linear in their length (a frame is at most 64 KiB).
        let long = "0." + String(repeating: "1", count: 60_000)
        XCTAssertEqual(try JSON.parse(long).intValue, nil)
        let longInt = "1" + String(repeating: "0", count: 200) + "e-200"
        XCTAssertEqual(try JSON.parse(longInt), .double(1))
        XCTAssertEqual(try JSON.parse("0e99999999999999999999999"), .double(0))
    }

    func testLoneSurrogateEscapes() {
        for text in [#""\ud800""#, #""\udc00""#, #""\ud800\u0041""#, #""\ud800\ud800""#, #""\udbff\n""#,
                     #""\ud800\""#, #""\ud800\u""#, #""\ud800\udc0""#, #""\uDFFF\uD800""#, #""x\ud83d""#] {
            XCTAssertThrowsError(try JSON.parse(text), text)
        }
        XCTAssertEqual(try JSON.parse(#""\ud83d\ude00""#), .string("😀"))
    }

    func testHugeStringsAndContainers() throws {
        let big = String(repeating: "a", count: 1 << 20)
        XCTAssertEqual(try JSON.parse("\"" + big + "\"").stringValue?.utf8.count, 1 << 20)
        let escaped = String(repeating: #"\u00e9"#, count: 100_000)
        XCTAssertEqual(try JSON.parse("\"" + escaped + "\"").stringValue?.count, 100_000)
        let wide = "[" + Array(repeating: "0", count: 100_000).joined(separator: ",") + "]"
        XCTAssertEqual(try JSON.parse(wide).arrayValue?.count, 100_000)
        let members = "{" + (0..<50_000).map { #""k\#($0)":\#($0)"# }.joined(separator: ",") + "}"
        XCTAssertEqual(try JSON.parse(members)["k49999"], .int(49_999))
        // Unterminated, in every kind of container.
        for text in ["\"" + big, "[" + String(repeating: "1,", count: 1000), "{\"a\":" + String(repeating: " ", count: 10_000)] {
            XCTAssertThrowsError(try JSON.parse(text))
        }
    }
}
