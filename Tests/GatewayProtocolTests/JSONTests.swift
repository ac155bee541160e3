import XCTest
@testable import GatewayProtocol

final class JSONTests: XCTestCase {
    private func parse(_ text: String, maxDepth: Int = 32) throws -> JSON {
        try JSON.parse(text, maxDepth: maxDepth)
    }

    private func assertRejects(_ text: String, maxDepth: Int = 32, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try JSON.parse(text, maxDepth: maxDepth), "accepted \(text.debugDescription)",
                             file: file, line: line)
    }

    private func assertRejects(bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try JSON.parse(bytes), "accepted \(bytes)", file: file, line: line)
    }

    // MARK: scalars

    func testScalars() throws {
        XCTAssertEqual(try parse("null"), .null)
        XCTAssertEqual(try parse("true"), .bool(true))
        XCTAssertEqual(try parse("false"), .bool(false))
        XCTAssertEqual(try parse("0"), .int(0))
        XCTAssertEqual(try parse("-0"), .int(0))
        XCTAssertEqual(try parse("42"), .int(42))
        XCTAssertEqual(try parse("-17"), .int(-17))
        XCTAssertEqual(try parse("\"hi\""), .string("hi"))
        XCTAssertEqual(try parse(" \t\r\n 7 \n"), .int(7))
    }

    func testIntegerLimits() throws {
        XCTAssertEqual(try parse("9223372036854775807"), .int(.max))
        XCTAssertEqual(try parse("-9223372036854775808"), .int(.min))
        XCTAssertEqual(try parse("9223372036854775808"), .double(9223372036854775808.0))
        XCTAssertEqual(try parse("-9223372036854775809"), .double(-9223372036854775809.0))
        XCTAssertEqual(try parse("123456789012345678901234"), .double(123456789012345678901234.0))
    }

    func testDoubles() throws {
        XCTAssertEqual(try parse("1.5"), .double(1.5))
        XCTAssertEqual(try parse("-0.25"), .double(-0.25))
        XCTAssertEqual(try parse("1e3"), .double(1000))
        XCTAssertEqual(try parse("1E+3"), .double(1000))
        XCTAssertEqual(try parse("2.5e-3"), .double(0.0025))
        XCTAssertEqual(try parse("1.0"), .double(1.0))
        XCTAssertNotEqual(try parse("1.0"), .int(1))
        XCTAssertEqual(try parse("0e0"), .double(0))
    }

    func testBadNumbers() {
        for text in ["01", "-01", "00", "1.", ".5", "-", "+1", "1e", "1e+", "1.e3", "--1", "0x10", "1.5.5",
                     "Infinity", "NaN", "-Infinity", "1e400", "-1e400"] {
            assertRejects(text)
        }
    }

    // MARK: containers

    func testArraysAndObjects() throws {
        XCTAssertEqual(try parse("[]"), .array([]))
        XCTAssertEqual(try parse("{}"), .object([]))
        XCTAssertEqual(try parse(" [ 1 , \"a\" , null , [ ] ] "),
                       .array([.int(1), .string("a"), .null, .array([])]))
        let obj = try parse(#"{"b":1,"a":{"x":[true,false]},"c":"s"}"#)
        XCTAssertEqual(obj, .object([("b", .int(1)),
                                     ("a", .object([("x", .array([.bool(true), .bool(false)]))])),
                                     ("c", .string("s"))]))
        XCTAssertEqual(obj.objectValue?.map(\.0), ["b", "a", "c"])
    }

    func testObjectEqualityIsOrdered() {
        let ab = JSON.object([("a", .int(1)), ("b", .int(2))])
        let ba = JSON.object([("b", .int(2)), ("a", .int(1))])
        XCTAssertNotEqual(ab, ba)
        XCTAssertEqual(ab, .object([("a", .int(1)), ("b", .int(2))]))
        XCTAssertNotEqual(ab, .object([("a", .int(1)), ("b", .int(3))]))
        XCTAssertNotEqual(ab, .object([("a", .int(1))]))
        XCTAssertNotEqual(JSON.array([.int(1)]), .array([.int(1), .int(1)]))
    }

    func testDuplicateKeysLastWins() throws {
        let obj = try parse(#"{"k":1,"other":true,"k":2}"#)
        XCTAssertEqual(obj["k"], .int(2))
        XCTAssertEqual(obj.objectValue?.count, 3)
    }

    func testBadStructure() {
        for text in ["", " ", "[", "]", "{", "}", "[1,]", "[,1]", "[1 2]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}",
                     "{\"a\":}", "{,}", "{\"a\":1 \"b\":2}", "{1:2}", "[1]]", "{}{}", "nul", "tru", "falsey",
                     "null x", "[1] x", "'a'", "[\"a\",]"] {
            assertRejects(text)
        }
    }

    func testTrailingWhitespaceAllowedButNotOtherBytes() throws {
        XCTAssertEqual(try parse("{} \n\t\r"), .object([]))
        assertRejects("{}\u{0B}")
        assertRejects("{}\u{00A0}")
        assertRejects(bytes: Array("{}".utf8) + [0])
    }

    // MARK: depth

    func testDepthLimit() throws {
        let ok = String(repeating: "[", count: 32) + String(repeating: "]", count: 32)
        XCTAssertNoThrow(try parse(ok))
        let tooDeep = String(repeating: "[", count: 33) + String(repeating: "]", count: 33)
        XCTAssertThrowsError(try parse(tooDeep)) { error in
            XCTAssertEqual((error as? JSONError)?.message, "nesting too deep")
            XCTAssertEqual((error as? JSONError)?.offset, 32)
        }
        XCTAssertNoThrow(try parse(#"{"a":{"b":1}}"#, maxDepth: 2))
        assertRejects(#"{"a":{"b":[1]}}"#, maxDepth: 2)
        XCTAssertEqual(try parse("5", maxDepth: 0), .int(5))
        assertRejects("[]", maxDepth: 0)
        // Deep input must fail cleanly rather than exhaust the stack.
        assertRejects(String(repeating: "[", count: 100_000))
    }

    // MARK: strings

    func testEscapes() throws {
        XCTAssertEqual(try parse(#""a\"b\\c\/d\be\ff\ng\rh\ti""#), .string("a\"b\\c/d\u{08}e\u{0C}f\ng\rh\ti"))
        XCTAssertEqual(try parse(#""\u0041\u00e9\u20AC""#), .string("Aé€"))
        XCTAssertEqual(try parse(#""\u0000""#), .string("\u{0}"))
        XCTAssertEqual(try parse(#""\ud83d\ude00""#), .string("😀"))
        XCTAssertEqual(try parse(#""x\uD834\uDD1Ey""#), .string("x𝄞y"))
        XCTAssertEqual(try parse(#"{"k\n":"v"}"#)["k\n"], .string("v"))
    }

    func testBadEscapes() {
        for text in [#""\x""#, #""\u12""#, #""\u12G4""#, #""\U0041""#, #""\'""#, #""\"#, #""abc"#,
                     #""\ud83d""#, #""\ud83dx""#, #""\ud83d\u0041""#, #""\ude00""#, #""\ude00\ud83d""#,
                     #""\ud83d\ud83d""#] {
            assertRejects(text)
        }
    }

    func testControlCharactersRejected() {
        for b: UInt8 in [0x00, 0x01, 0x09, 0x0A, 0x0D, 0x1F] {
            assertRejects(bytes: [0x22, 0x61, b, 0x62, 0x22])
        }
        // Also after an escape, on the slow path.
        assertRejects(bytes: Array(#""\n"#.utf8) + [0x0A, 0x22])
        XCTAssertEqual(try JSON.parse([0x22, 0x7F, 0x22]), .string("\u{7F}"))
    }

    func testUTF8() throws {
        XCTAssertEqual(try parse("\"Zoë ✓ 😀 日本\""), .string("Zoë ✓ 😀 日本"))
        XCTAssertEqual(try parse("\"é\\n😀\""), .string("é\n😀"))
        let invalid: [[UInt8]] = [
            [0x22, 0x80, 0x22],                   // lone continuation
            [0x22, 0xC3, 0x22],                   // truncated
            [0x22, 0xC0, 0xAF, 0x22],             // overlong "/"
            [0x22, 0xC1, 0xBF, 0x22],             // overlong
            [0x22, 0xE0, 0x80, 0xAF, 0x22],       // overlong 3-byte
            [0x22, 0xED, 0xA0, 0x80, 0x22],       // encoded surrogate D800
            [0x22, 0xF0, 0x80, 0x80, 0xAF, 0x22], // overlong 4-byte
            [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], // above U+10FFFF
            [0x22, 0xF5, 0x80, 0x80, 0x80, 0x22],
            [0x22, 0xFF, 0x22],
            [0x22, 0xE2, 0x9C, 0x22],             // truncated 3-byte
            [0x22, 0xE2, 0x28, 0x93, 0x22],       // bad continuation
            [0x22, 0x5C, 0x6E, 0xC3, 0x28, 0x22], // bad, after an escape
            [0x22, 0xF0, 0x9F, 0x98],             // truncated at end of input
        ]
        for bytes in invalid {
            assertRejects(bytes: bytes)
        }
        XCTAssertEqual(try JSON.parse([0x22, 0xF4, 0x8F, 0xBF, 0xBF, 0x22]), .string("\u{10FFFF}"))
        XCTAssertEqual(try JSON.parse([0x22, 0xEF, 0xBF, 0xBF, 0x22]), .string("\u{FFFF}"))
    }

    func testErrorOffsets() {
        XCTAssertThrowsError(try parse("[1, 2, x]")) { error in
            XCTAssertEqual(error as? JSONError, JSONError(message: "unexpected character", offset: 7))
        }
        XCTAssertThrowsError(try parse("012")) { error in
            XCTAssertEqual((error as? JSONError)?.offset, 0)
        }
        XCTAssertThrowsError(try parse("{} 1")) { error in
            XCTAssertEqual((error as? JSONError)?.offset, 3)
            XCTAssertEqual((error as? JSONError)?.description, "unexpected trailing characters at offset 3")
        }
    }

    func testParseEntryPointsAgree() throws {
        let text = #"{"id":1,"op":"connect","since":{"offset":41,"epoch":"e1"}}"#
        let fromString = try JSON.parse(text)
        let bytes = Array(text.utf8)
        XCTAssertEqual(try JSON.parse(bytes), fromString)
        let fromRaw = try bytes.withUnsafeBytes { try JSON.parse($0) }
        XCTAssertEqual(fromRaw, fromString)
        XCTAssertEqual(fromString["since"]?["offset"]?.intValue, 41)
        // A substring-backed buffer slice parses on its own.
        let padded = Array("xx[1]yy".utf8)
        let sliced = try padded.withUnsafeBytes { try JSON.parse(UnsafeRawBufferPointer(rebasing: $0[2..<5])) }
        XCTAssertEqual(sliced, .array([.int(1)]))
        XCTAssertThrowsError(try JSON.parse(UnsafeRawBufferPointer(start: nil, count: 0)))
    }

    // MARK: accessors

    func testAccessors() throws {
        let v = try parse(#"{"s":"x","i":3,"d":4.0,"f":4.5,"big":1e30,"b":true,"n":null,"a":[1],"o":{}}"#)
        XCTAssertEqual(v["s"]?.stringValue, "x")
        XCTAssertNil(v["i"]?.stringValue)
        XCTAssertEqual(v["i"]?.intValue, 3)
        XCTAssertEqual(v["d"]?.intValue, 4)
        XCTAssertNil(v["f"]?.intValue)
        XCTAssertNil(v["big"]?.intValue)
        XCTAssertNil(v["s"]?.intValue)
        XCTAssertEqual(v["b"]?.boolValue, true)
        XCTAssertNil(v["i"]?.boolValue)
        XCTAssertEqual(v["n"]?.isNull, true)
        XCTAssertEqual(v["s"]?.isNull, false)
        XCTAssertEqual(v["a"]?.arrayValue, [.int(1)])
        XCTAssertNil(v["o"]?.arrayValue)
        XCTAssertEqual(v["o"]?.objectValue?.count, 0)
        XCTAssertNil(v["missing"])
        XCTAssertNil(JSON.array([])["s"])
        XCTAssertNil(JSON.string("s")["s"])
        XCTAssertNil(JSON.double(9.3e18).intValue)
        XCTAssertEqual(JSON.double(-9.223372036854775808e18).intValue, .min)
    }

    // MARK: serialization

    func testSerializeCompact() {
        let v = JSON.object([
            ("id", .int(1)), ("ok", .bool(true)), ("n", .null),
            ("list", .array([.int(-5), .double(2.5), .string("a")])),
            ("o", .object([])),
        ])
        XCTAssertEqual(v.serialized(), #"{"id":1,"ok":true,"n":null,"list":[-5,2.5,"a"],"o":{}}"#)
        XCTAssertEqual(JSON.array([]).serialized(), "[]")
        XCTAssertEqual(JSON.int(.min).serialized(), "-9223372036854775808")
        var buffer = Array("prefix:".utf8)
        v.write(into: &buffer)
        XCTAssertEqual(String(decoding: buffer, as: UTF8.self), "prefix:" + v.serialized())
    }

    func testSerializeDoubles() throws {
        XCTAssertEqual(JSON.double(1.0).serialized(), "1.0")
        XCTAssertEqual(JSON.double(-3.0).serialized(), "-3.0")
        XCTAssertEqual(JSON.double(0.1).serialized(), "0.1")
        XCTAssertEqual(JSON.double(.infinity).serialized(), "null")
        XCTAssertEqual(JSON.double(-.infinity).serialized(), "null")
        XCTAssertEqual(JSON.double(.nan).serialized(), "null")
        for d in [1.0, -0.0, 0.1, 1e-7, 1.5e300, .leastNonzeroMagnitude, 123456789.125, 1e16, 9007199254740993.0, .pi,
                  -2.2250738585072014e-308] {
            let text = JSON.double(d).serialized()
            let back = try parse(text)
            XCTAssertEqual(back, .double(d), "\(d) -> \(text)")
            XCTAssertEqual(back.serialized(), text)
        }
    }

    func testSerializeStrings() {
        XCTAssertEqual(JSON.string("a\"b\\c").serialized(), #""a\"b\\c""#)
        XCTAssertEqual(JSON.string("\n\r\t\u{08}\u{0C}").serialized(), #""\n\r\t\b\f""#)
        XCTAssertEqual(JSON.string("\u{0}\u{1}\u{1F}").serialized(), #""\u0000\u0001\u001f""#)
        XCTAssertEqual(JSON.string("é😀/\u{7F}").serialized(), "\"é😀/\u{7F}\"")
        var buffer: [UInt8] = []
        appendJSONString("x\ty"[...], into: &buffer)
        XCTAssertEqual(String(decoding: buffer, as: UTF8.self), #""x\ty""#)
        buffer.removeAll()
        appendJSONString("", into: &buffer)
        XCTAssertEqual(buffer, Array(#""""#.utf8))
    }

    func testRoundTrip() throws {
        let inputs = [
            #"{"id":1,"ok":{"client":"c-8f2a","user":"u1","recovered":true,"publications":[]}}"#,
            #"[null,true,false,0,-1,1.25,"\u0001\"\\",{"":[]},[[[]]]]"#,
            #"{"emoji":"😀","text":"line\nbreak","k":"v","k":"w"}"#,
        ]
        for text in inputs {
            let value = try parse(text)
            let again = try parse(value.serialized())
            XCTAssertEqual(again, value)
            XCTAssertEqual(again.serialized(), value.serialized())
        }
        XCTAssertEqual(try parse(inputs[0]).serialized(), inputs[0])
    }
}
