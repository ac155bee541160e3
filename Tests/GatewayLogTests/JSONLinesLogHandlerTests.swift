@testable import GatewayLog
import GatewayProtocol
import Logging
import Synchronization
import XCTest

final class JSONLinesLogHandlerTests: XCTestCase {
    final class Lines: Sendable {
        let all = Mutex<[String]>([])
        var sink: LineSink { LineSink { line in self.all.withLock { $0.append(line) } } }
    }

    func testALineIsOneJSONObjectWithTheFieldsAndIds() throws {
        let lines = Lines()
        let logger = Logger(label: "t") { _ in JSONLinesLogHandler(node: "n1", level: .info, sink: lines.sink) }
        logger.warning("order \"o1\" paid\nnext", metadata: ["order": "o1", "user": "u1"])
        let written = lines.all.withLock { $0 }
        XCTAssertEqual(written.count, 1)
        XCTAssertTrue(written[0].hasSuffix("}\n"))
        XCTAssertEqual(written[0].filter { $0 == "\n" }.count, 1, "one line, whatever the message holds")
        let json = try JSON.parse(Array(written[0].utf8))
        XCTAssertEqual(json["level"]?.stringValue, "warning")
        XCTAssertEqual(json["node"]?.stringValue, "n1")
        XCTAssertEqual(json["msg"]?.stringValue, "order \"o1\" paid\nnext")
        XCTAssertEqual(json["order"]?.stringValue, "o1")
        XCTAssertEqual(json["user"]?.stringValue, "u1")
        let ts = try XCTUnwrap(json["ts"]?.stringValue)
        XCTAssertNotNil(try Regex(#"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"#).wholeMatch(in: ts), ts)
        XCTAssertTrue(written[0].hasPrefix(#"{"ts":"#), "ts, level, node, msg first")
    }

    func testBelowTheLevelNothingIsWritten() {
        let lines = Lines()
        let logger = Logger(label: "t") { _ in JSONLinesLogHandler(node: "n1", level: .notice, sink: lines.sink) }
        logger.info("quiet")
        logger.debug("quiet")
        logger.notice("loud")
        XCTAssertEqual(lines.all.withLock { $0.count }, 1)
    }

    func testLogIDsNameTheirFields() {
        XCTAssertEqual(LogID.payment("pay-1").field.name, "payment")
        XCTAssertEqual(LogID.channel("group:p1").field.value, "group:p1")
    }

    func testTimestampIsUTCWithMilliseconds() {
        let date = Date(timeIntervalSince1970: 1_763_900_000.5)
        XCTAssertEqual(JSONLinesLogHandler.timestamp(date), "2025-11-23T12:13:20.500Z")
    }
}
