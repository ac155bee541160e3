import XCTest
@testable import GatewayProtocol

/// Every integer a client sends has a documented range (PROTOCOL.md 4.1, and the
/// project's PROTOCOL.md "Integer ranges"); outside it the decoder answers `bad_request`,
/// so nothing downstream ever does arithmetic on an unchecked client number.
final class RangeTests: XCTestCase {
    private func decoded(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> DecodedLine? {
        let lines = CommandDecoder.decodeFrame(text)
        XCTAssertEqual(lines.count, 1, text, file: file, line: line)
        return lines.first
    }

    private func assertBadRequest(_ text: String, containing fragment: String,
                                  file: StaticString = #filePath, line: UInt = #line) {
        guard case .invalid(let id, let error) = decoded(text, file: file, line: line) else {
            return XCTFail("not .invalid: \(text.prefix(200)) -> \(String(describing: decoded(text)))", file: file, line: line)
        }
        XCTAssertEqual(id, 1, file: file, line: line)
        XCTAssertEqual(error.code, .badRequest, file: file, line: line)
        XCTAssertTrue(error.message.contains(fragment), "\(text.prefix(200)): \(error.message)", file: file, line: line)
    }

    private func assertCommand(_ text: String, _ expected: Command, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(decoded(text, file: file, line: line), .command(id: 1, expected), text, file: file, line: line)
    }

    /// Numbers a hostile client tries on every integer field: none may trap or slip through.
    private let hostileNumbers = [
        "9223372036854775807", "-9223372036854775808", "9223372036854775808", "-9223372036854775809",
        "18446744073709551615", "1e300", "-1e300", "1e308", "1.5", "-0.0", "1E2", "0.0000001",
        String(repeating: "9", count: 300), "-" + String(repeating: "9", count: 300),
    ]

    /// Numbers beyond a double are not JSON the gateway takes: the line is malformed.
    func testNumbersBeyondDoubleAreMalformed() {
        for n in ["1e400", "-1e400", String(repeating: "9", count: 5000)] {
            let line = decoded(#"{"id":1,"op":"moderate","channel":"group:p1","action":"delete","offset":1,"seconds":\#(n)}"#)
            guard case .malformed? = line else { return XCTFail("\(n.prefix(20)): \(String(describing: line))") }
        }
    }

    // MARK: moderate.seconds (the overflow that crashed a node)

    func testModerateSecondsOverflowIsBadRequest() {
        // The command of the crash report: `delete` ignores seconds, yet the node multiplied it.
        assertBadRequest(#"{"id":1,"op":"moderate","channel":"group:p1","action":"delete","offset":1,"seconds":9223372036854775807}"#,
                         containing: "seconds")
        for action in [#""action":"mute","user":"u2""#, #""action":"unmute","user":"u2""#, #""action":"delete","offset":1"#] {
            for n in hostileNumbers + ["0", "-1", "31536001", "9223372036854775", "-9223372036854775807"] {
                assertBadRequest(#"{"id":1,"op":"moderate","channel":"group:p1",\#(action),"seconds":\#(n)}"#, containing: "seconds")
            }
        }
    }

    func testModerateSecondsRange() {
        XCTAssertEqual(Ranges.moderateSeconds, 1...31_536_000)
        for s: Int64 in [1, 3600, 31_536_000] {
            assertCommand(#"{"id":1,"op":"moderate","channel":"group:p1","action":"mute","user":"u2","seconds":\#(s)}"#,
                          .community(.moderate(.group("p1"), action: .mute, user: "u2", offset: nil, seconds: s)))
        }
    }

    // MARK: offsets

    func testOffsetsHaveAnUpperBound() {
        let max = Ranges.offset.upperBound
        XCTAssertEqual(max, 9_999_999_999_999)
        let over = String(max + 1)
        for n in [over, "9223372036854775807"] + hostileNumbers {
            assertBadRequest(#"{"id":1,"op":"subscribe","channel":"group:p1","since":{"offset":\#(n),"epoch":"e1"}}"#,
                             containing: "offset")
            assertBadRequest(#"{"id":1,"op":"connect","token":"t","since":{"offset":\#(n),"epoch":"e1"}}"#, containing: "offset")
            assertBadRequest(#"{"id":1,"op":"history","channel":"group:p1","since":{"offset":\#(n),"epoch":"e1"}}"#,
                             containing: "offset")
            assertBadRequest(#"{"id":1,"op":"publish","channel":"group:p1","data":{"text":"x","reply_to":\#(n)}}"#,
                             containing: "reply_to")
            assertBadRequest(#"{"id":1,"op":"moderate","channel":"group:p1","action":"delete","offset":\#(n)}"#,
                             containing: "offset")
        }
        assertCommand(#"{"id":1,"op":"subscribe","channel":"group:p1","since":{"offset":\#(max),"epoch":"e1"}}"#,
                      .channel(.subscribe(.group("p1"), since: StreamPosition(offset: UInt64(max), epoch: "e1"))))
        assertCommand(#"{"id":1,"op":"publish","channel":"group:p1","data":{"text":"x","reply_to":\#(max)}}"#,
                      .community(.publish(.group("p1"), text: "x", replyTo: UInt64(max))))
        assertCommand(#"{"id":1,"op":"moderate","channel":"group:p1","action":"delete","offset":\#(max)}"#,
                      .community(.moderate(.group("p1"), action: .delete, user: nil, offset: UInt64(max), seconds: nil)))
    }

    /// Offsets start at 1: `since.offset` 0 means "before the first", but a message at 0 does not exist.
    func testOffsetZero() {
        assertCommand(#"{"id":1,"op":"subscribe","channel":"group:p1","since":{"offset":0,"epoch":"e1"}}"#,
                      .channel(.subscribe(.group("p1"), since: StreamPosition(offset: 0, epoch: "e1"))))
        assertBadRequest(#"{"id":1,"op":"publish","channel":"group:p1","data":{"text":"x","reply_to":0}}"#, containing: "reply_to")
        assertBadRequest(#"{"id":1,"op":"moderate","channel":"group:p1","action":"delete","offset":0}"#, containing: "offset")
    }

    // MARK: watch.below, history.limit, id

    func testWatchBelowRange() {
        XCTAssertEqual(Ranges.price, 0...1_000_000_000_000)
        for n in hostileNumbers + ["0", "-1", "1000000000001"] {
            assertBadRequest(#"{"id":1,"op":"watch","product":"p1","below":\#(n)}"#, containing: "below")
        }
        assertCommand(#"{"id":1,"op":"watch","product":"p1","below":1000000000000}"#, .community(.watch(product: "p1", below: 1_000_000_000_000)))
        assertCommand(#"{"id":1,"op":"watch","product":"p1","below":1}"#, .community(.watch(product: "p1", below: 1)))
    }

    func testHistoryLimitHostileNumbers() {
        for n in hostileNumbers {
            assertBadRequest(#"{"id":1,"op":"history","channel":"group:p1","limit":\#(n)}"#, containing: "limit")
        }
    }

    /// Ids are 1 to 2^63-1 (only echoed, never computed with); anything else cannot be
    /// echoed, so the reply carries no id.
    func testHostileIDs() {
        for n in hostileNumbers.filter({ $0 != "9223372036854775807" }) + ["0", "-1"] {
            let line = decoded(#"{"id":\#(n),"op":"ping"}"#)
            guard case .missingID? = line else { return XCTFail("\(n.prefix(40)): \(String(describing: line))") }
        }
    }
}
