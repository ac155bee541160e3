import GatewayProtocol
import XCTest

final class HTTPBodyTests: XCTestCase {
    func framing(_ cl: String?, _ te: String? = nil) -> HTTPFraming? {
        try? HTTPFraming.of(contentLength: cl, transferEncoding: te).get()
    }

    func testFramingFromHeaders() {
        XCTAssertEqual(framing(nil), HTTPFraming.none)
        XCTAssertEqual(framing("0"), HTTPFraming.none)
        XCTAssertEqual(framing(" 42 "), .length(42))
        XCTAssertEqual(framing("99999999999999999999999"), .length(Int.max))
        for bad in ["", "-1", "+5", "abc", "12abc", "1 2", "0x10", "5, 5", "4.0"] {
            XCTAssertNil(framing(bad), bad)
        }
        XCTAssertEqual(framing(nil, "chunked"), .chunked)
        XCTAssertEqual(framing(nil, " Chunked"), .chunked)
        XCTAssertNil(framing("10", "chunked"), "both headers")
        XCTAssertNil(framing(nil, "gzip, chunked"))
    }

    func testLengthBodyStopsAtTheLimit() {
        XCTAssertEqual(HTTPBodyIntake(framing: .length(11), limit: 10).start, .tooLarge)
        XCTAssertEqual(HTTPBodyIntake(framing: .none, limit: 10).start, .complete)
        var intake = HTTPBodyIntake(framing: .length(10), limit: 10)
        XCTAssertEqual(intake.start, .more)
        XCTAssertEqual(intake.feed(Array("12345".utf8)), .more)
        XCTAssertEqual(intake.feed(Array("67890".utf8)), .complete)
        XCTAssertEqual(intake.body, Array("1234567890".utf8))
        var lying = HTTPBodyIntake(framing: .length(4), limit: 10)
        XCTAssertEqual(lying.feed(Array("123456".utf8)), .tooLarge, "never more than declared")
        XCTAssertTrue(lying.body.isEmpty)
    }

    func testChunkedDecodesInAnyPieces() {
        let wire = Array("4;name=v\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n".utf8)
        for split in 1...wire.count {
            var intake = HTTPBodyIntake(framing: .chunked, limit: 100)
            var last = HTTPBodyIntake.Step.more
            var i = 0
            while i < wire.count {
                last = intake.feed(Array(wire[i..<min(i + split, wire.count)]))
                i += split
                if last != .more { break }
            }
            XCTAssertEqual(last, .complete, "pieces of \(split)")
            XCTAssertEqual(String(decoding: intake.body, as: UTF8.self), "Wikipedia in\r\n\r\nchunks.")
        }
    }

    func testChunkedRefusedAsSoonAsItPassesTheLimit() {
        var intake = HTTPBodyIntake(framing: .chunked, limit: 10)
        XCTAssertEqual(intake.feed(Array("6\r\nabcdef\r\n".utf8)), .more)
        XCTAssertEqual(intake.feed(Array("5\r\n".utf8)), .tooLarge, "refused on the size line, before the data")
        var many = HTTPBodyIntake(framing: .chunked, limit: 1 << 20)
        XCTAssertEqual(many.feed(Array("FFFFFFFFFFFFFFFFFFFF\r\n".utf8)), .tooLarge)
    }

    func testChunkedFramingErrors() {
        for bad in ["zz\r\n", "\r\n", "4\nWiki\r\n", "4\r\nWikiX", "0\r\nX\r\r", "0\r\n\rX"] {
            var intake = HTTPBodyIntake(framing: .chunked, limit: 100)
            guard case .malformed = intake.feed(Array(bad.utf8)) else { return XCTFail(bad) }
        }
        var longLine = HTTPBodyIntake(framing: .chunked, limit: 100)
        guard case .malformed = longLine.feed(Array(("1;" + String(repeating: "e", count: 2000)).utf8)) else { return XCTFail() }
        var trailers = HTTPBodyIntake(framing: .chunked, limit: 100)
        XCTAssertEqual(trailers.feed(Array("0\r\n".utf8)), .more)
        var step = HTTPBodyIntake.Step.more
        for _ in 0..<1000 where step == .more { step = trailers.feed(Array("X-Pad: 0123456789\r\n".utf8)) }
        guard case .malformed = step else { return XCTFail("endless trailers") }
    }
}
