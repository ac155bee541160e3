import GatewayRedis
import XCTest

final class ReplyDecodingTests: XCTestCase {
    func testScalars() throws {
        XCTAssertEqual(try RedisReply.integer(7).decode(as: Int.self), 7)
        XCTAssertEqual(try RedisReply.string(Array("12".utf8)).decode(as: Int64.self), 12)
        XCTAssertEqual(try RedisReply.string(Array("x".utf8)).decode(as: String.self), "x")
        XCTAssertEqual(try RedisReply.null.decode(as: String?.self), nil)
        XCTAssertEqual(try RedisReply.null.decode(as: Bool.self), false)
        XCTAssertEqual(try RedisReply.integer(1).decode(as: Bool.self), true)
    }

    func testHashAndArrays() throws {
        let flat = RedisReply.array([.string(Array("a".utf8)), .string(Array("1".utf8)), .string(Array("b".utf8)), .string(Array("2".utf8))])
        XCTAssertEqual(try flat.decode(as: RedisHash.self).fields, ["a": "1", "b": "2"])
        XCTAssertEqual(try RedisReply.null.decode(as: [String].self), [])
        var reader = try RedisArrayReader(.array([.integer(3), .string(Array("e".utf8))]))
        XCTAssertEqual(try reader.next(Int.self), 3)
        XCTAssertEqual(try reader.next(String.self), "e")
        XCTAssertTrue(reader.isAtEnd)
        XCTAssertThrowsError(try reader.next(Int.self))
    }

    /// A reply of the wrong shape is logged by the stores: the error names its types and
    /// sizes, never its content (order records hold gift and pay codes).
    func testAWrongShapeErrorNeverCarriesTheReplysContent() {
        let record = RedisReply.array([.string(Array("gift_code".utf8)), .string(Array("g-1a-secretcode0123456789".utf8))])
        XCTAssertThrowsError(try record.decode(as: Int.self)) { error in
            let text = "\(error)"
            XCTAssertFalse(text.contains("secretcode"), text)
            XCTAssertEqual(error as? RedisDecodingError, .unexpected(expected: "an integer", got: "array[string(9 bytes), string(25 bytes)]"))
        }
    }

    func testFailuresAreErrorsNotDefaults() {
        XCTAssertThrowsError(try RedisReply.error("ERR boom").decode(as: Int.self)) { error in
            XCTAssertEqual(error as? RedisDecodingError, .server("ERR boom"))
        }
        XCTAssertThrowsError(try RedisReply.disconnected.decode(as: [String].self)) { error in
            XCTAssertEqual(error as? RedisDecodingError, .disconnected)
        }
        XCTAssertThrowsError(try RedisReply.array([.integer(1)]).decode(as: RedisHash.self))
        XCTAssertThrowsError(try RedisReply.string(Array("x".utf8)).decode(as: Int.self))
    }
}
