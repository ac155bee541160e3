import XCTest
@testable import GatewayProtocol

final class CommandDecoderTests: XCTestCase {
    // MARK: helpers

    /// Decodes a one-line frame and expects exactly one line back.
    private func line(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> DecodedLine? {
        let lines = CommandDecoder.decodeFrame(text)
        XCTAssertEqual(lines.count, 1, "\(text): \(lines)", file: file, line: line)
        return lines.first
    }

    private func assertCommand(_ text: String, id: Int64 = 1, _ expected: Command,
                               file: StaticString = #filePath, line l: UInt = #line) {
        XCTAssertEqual(line(text, file: file, line: l), .command(id: id, expected), text, file: file, line: l)
    }

    /// Expects `.invalid` with `bad_request` for the id of the line.
    private func assertBadRequest(_ text: String, id: Int64 = 1, containing fragment: String? = nil,
                                  file: StaticString = #filePath, line l: UInt = #line) {
        guard case .invalid(let gotID, let error) = line(text, file: file, line: l) else {
            return XCTFail("not .invalid: \(text) -> \(String(describing: line(text)))", file: file, line: l)
        }
        XCTAssertEqual(gotID, id, text, file: file, line: l)
        XCTAssertEqual(error.code, .badRequest, text, file: file, line: l)
        XCTAssertFalse(error.temporary, text, file: file, line: l)
        XCTAssertFalse(error.message.isEmpty, text, file: file, line: l)
        if let fragment {
            XCTAssertTrue(error.message.contains(fragment), "\(text): \(error.message)", file: file, line: l)
        }
    }

    private func assertMissingID(_ text: String, file: StaticString = #filePath, line l: UInt = #line) {
        guard case .missingID(let message) = line(text, file: file, line: l) else {
            return XCTFail("not .missingID: \(text) -> \(String(describing: line(text)))", file: file, line: l)
        }
        XCTAssertFalse(message.isEmpty, file: file, line: l)
    }

    private func assertMalformed(_ text: String, file: StaticString = #filePath, line l: UInt = #line) {
        let lines = CommandDecoder.decodeFrame(text)
        XCTAssertEqual(lines.count, 1, "\(text.debugDescription): \(lines)", file: file, line: l)
        guard case .malformed(let message)? = lines.first else {
            return XCTFail("not .malformed: \(text.debugDescription) -> \(lines)", file: file, line: l)
        }
        XCTAssertFalse(message.isEmpty, file: file, line: l)
    }

    private func parse(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> JSON? {
        do { return try JSON.parse(bytes) } catch {
            XCTFail("reply is not JSON: \(error): \(String(decoding: bytes, as: UTF8.self))", file: file, line: line)
            return nil
        }
    }

    private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    // MARK: every op decodes

    func testConnect() {
        assertCommand(#"{"id":1,"op":"connect","token":"a.b.c"}"#, .session(.connect(token: "a.b.c", since: nil)))
        assertCommand(#"{"id":1,"op":"refresh","token":"a.b.c"}"#, .session(.refresh(token: "a.b.c")))
        assertCommand(#"{"id":1,"op":"connect","token":"a.b.c","since":{"offset":41,"epoch":"e1"}}"#,
                      .session(.connect(token: "a.b.c", since: StreamPosition(offset: 41, epoch: "e1"))))
        assertCommand(#"{"id":1,"op":"connect","token":"t","since":null}"#, .session(.connect(token: "t", since: nil)))
        assertCommand(#"{"id":1,"op":"connect","token":"t","since":{"offset":0,"epoch":""}}"#,
                      .session(.connect(token: "t", since: StreamPosition(offset: 0, epoch: ""))))
    }

    func testSubscribe() {
        assertCommand(#"{"id":2,"op":"subscribe","channel":"group:p1"}"#, id: 2, .channel(.subscribe(.group("p1"), since: nil)))
        assertCommand(#"{"id":2,"op":"subscribe","channel":"product:p-1.x","since":{"offset":7,"epoch":"ab12"}}"#, id: 2,
                      .channel(.subscribe(.product("p-1.x"), since: StreamPosition(offset: 7, epoch: "ab12"))))
        assertCommand(#"{"id":2,"op":"subscribe","channel":"user:u1"}"#, id: 2, .channel(.subscribe(.user("u1"), since: nil)))
        // Key order and unknown fields do not matter.
        assertCommand(#"{"channel":"group:p1","extra":[1,{"x":null}],"op":"subscribe","id":3}"#, id: 3,
                      .channel(.subscribe(.group("p1"), since: nil)))
    }

    func testUnsubscribe() {
        assertCommand(#"{"id":3,"op":"unsubscribe","channel":"group:p1"}"#, id: 3, .channel(.unsubscribe(.group("p1"))))
        assertCommand(#"{"id":3,"op":"unsubscribe","channel":"product:p1"}"#, id: 3, .channel(.unsubscribe(.product("p1"))))
    }

    func testPublish() {
        assertCommand(#"{"id":4,"op":"publish","channel":"group:p1","data":{"text":"hello"}}"#, id: 4,
                      .community(.publish(.group("p1"), text: "hello", replyTo: nil)))
        assertCommand(#"{"id":4,"op":"publish","channel":"group:p1","data":{"text":"re: hi \"you\"\n","reply_to":12}}"#, id: 4,
                      .community(.publish(.group("p1"), text: "re: hi \"you\"", replyTo: 12)))
        assertCommand(#"{"id":4,"op":"publish","channel":"group:p1","data":{"text":"你好","reply_to":null}}"#, id: 4,
                      .community(.publish(.group("p1"), text: "你好", replyTo: nil)))
    }

    func testPublishTextLength() {
        let max = String(repeating: "a", count: 1000)
        assertCommand(#"{"id":1,"op":"publish","channel":"group:p1","data":{"text":"\#(max)"}}"#,
                      .community(.publish(.group("p1"), text: max, replyTo: nil)))
        // Characters, not bytes.
        let wide = String(repeating: "好", count: 1000)
        assertCommand(#"{"id":1,"op":"publish","channel":"group:p1","data":{"text":"\#(wide)"}}"#,
                      .community(.publish(.group("p1"), text: wide, replyTo: nil)))
        // Counted after trimming.
        assertCommand(#"{"id":1,"op":"publish","channel":"group:p1","data":{"text":"  \#(max)\n\t "}}"#,
                      .community(.publish(.group("p1"), text: max, replyTo: nil)))
        assertBadRequest(#"{"id":1,"op":"publish","channel":"group:p1","data":{"text":"\#(max)b"}}"#, containing: "text")
        assertBadRequest(#"{"id":1,"op":"publish","channel":"group:p1","data":{"text":""}}"#, containing: "text")
        assertBadRequest(#"{"id":1,"op":"publish","channel":"group:p1","data":{"text":" \n\t "}}"#, containing: "text")
    }

    func testHistory() {
        assertCommand(#"{"id":5,"op":"history","channel":"group:p1"}"#, id: 5,
                      .channel(.history(.group("p1"), since: nil, limit: 50)))
        XCTAssertEqual(CommandDecoder.defaultHistoryLimit, 50)
        assertCommand(#"{"id":5,"op":"history","channel":"user:u1","since":{"offset":3,"epoch":"e"},"limit":500}"#, id: 5,
                      .channel(.history(.user("u1"), since: StreamPosition(offset: 3, epoch: "e"), limit: 500)))
        assertCommand(#"{"id":5,"op":"history","channel":"product:p1","limit":1}"#, id: 5,
                      .channel(.history(.product("p1"), since: nil, limit: 1)))
        assertCommand(#"{"id":5,"op":"history","channel":"product:p1","limit":null}"#, id: 5,
                      .channel(.history(.product("p1"), since: nil, limit: 50)))
    }

    func testPresence() {
        assertCommand(#"{"id":6,"op":"presence","channel":"group:p1"}"#, id: 6, .community(.presence(.group("p1"))))
        assertCommand(#"{"id":6,"op":"presence","channel":"product:p1"}"#, id: 6, .community(.presence(.product("p1"))))
        assertBadRequest(#"{"id":6,"op":"presence","channel":"sale:s1"}"#, id: 6, containing: "presence")
        assertCommand(#"{"id":6,"op":"subscribe","channel":"sale:s1"}"#, id: 6, .channel(.subscribe(.sale("s1"), since: nil)))
    }

    func testWatchUnwatchWatches() {
        assertCommand(#"{"id":7,"op":"watch","product":"p1"}"#, id: 7, .community(.watch(product: "p1", below: nil)))
        assertCommand(#"{"id":7,"op":"watch","product":"p1","below":1500}"#, id: 7, .community(.watch(product: "p1", below: 1500)))
        assertCommand(#"{"id":7,"op":"watch","product":"p1","below":null}"#, id: 7, .community(.watch(product: "p1", below: nil)))
        assertCommand(#"{"id":7,"op":"watch","product":"p1","restock":true}"#, id: 7, .community(.watch(product: "p1", below: nil, restock: true)))
        assertCommand(#"{"id":7,"op":"watch","product":"p1","restock":false}"#, id: 7, .community(.watch(product: "p1", below: nil)))
        assertBadRequest(#"{"id":7,"op":"watch","product":"p1","restock":"yes"}"#, id: 7, containing: "restock")
        assertBadRequest(#"{"id":7,"op":"watch","product":"p1","restock":1}"#, id: 7, containing: "restock")
        assertCommand(#"{"id":8,"op":"unwatch","product":"p_2"}"#, id: 8, .community(.unwatch(product: "p_2")))
        assertCommand(#"{"id":9,"op":"watches"}"#, id: 9, .community(.watches))
    }

    func testOrderAndGiftAndFriendpay() {
        assertCommand(#"{"id":10,"op":"order.get","order":"o-8f2a"}"#, id: 10, .order(.get(order: "o-8f2a")))
        assertCommand(#"{"id":11,"op":"gift.claim","code":"G7x9Qk"}"#, id: 11, .order(.giftClaim(code: "G7x9Qk")))
        assertCommand(#"{"id":12,"op":"gift.decline","code":"G7x9Qk"}"#, id: 12, .order(.giftDecline(code: "G7x9Qk")))
        assertCommand(#"{"id":13,"op":"friendpay.view","code":"F-1"}"#, id: 13, .order(.friendpayView(code: "F-1")))
        let longest = String(repeating: "c", count: 128)
        assertCommand(#"{"id":13,"op":"gift.claim","code":"\#(longest)"}"#, id: 13, .order(.giftClaim(code: longest)))
    }

    func testSaleBuy() {
        assertCommand(#"{"id":16,"op":"sale.buy","sale":"s1"}"#, id: 16, .sale(.buy(sale: "s1", quantity: 1, product: nil)))
        assertCommand(#"{"id":16,"op":"sale.buy","sale":"s1","quantity":3,"product":"p1"}"#, id: 16,
                      .sale(.buy(sale: "s1", quantity: 3, product: "p1")))
        assertCommand(#"{"id":16,"op":"sale.buy","sale":"s1","quantity":null}"#, id: 16, .sale(.buy(sale: "s1", quantity: 1, product: nil)))
        assertCommand(#"{"id":16,"op":"sale.buy","sale":"s1","quantity":100000}"#, id: 16, .sale(.buy(sale: "s1", quantity: 100_000, product: nil)))
        for bad in ["0", "-1", "1.5", "2e0", "\"2\"", "100001", "1e30", "9223372036854775808", "true"] {
            assertBadRequest(#"{"id":16,"op":"sale.buy","sale":"s1","quantity":\#(bad)}"#, id: 16, containing: "quantity")
        }
        assertBadRequest(#"{"id":16,"op":"sale.buy"}"#, id: 16, containing: "sale")
        assertBadRequest(#"{"id":16,"op":"sale.buy","sale":"s 1"}"#, id: 16, containing: "sale")
        assertBadRequest(#"{"id":16,"op":"sale.buy","sale":"s1","product":7}"#, id: 16, containing: "product")
    }

    func testModerate() {
        assertCommand(#"{"id":14,"op":"moderate","channel":"group:p1","action":"mute","user":"u2"}"#, id: 14,
                      .community(.moderate(.group("p1"), action: .mute, user: "u2", offset: nil, seconds: nil)))
        assertCommand(#"{"id":14,"op":"moderate","channel":"group:p1","action":"mute","user":"u2","seconds":600}"#, id: 14,
                      .community(.moderate(.group("p1"), action: .mute, user: "u2", offset: nil, seconds: 600)))
        assertCommand(#"{"id":14,"op":"moderate","channel":"group:p1","action":"unmute","user":"u2"}"#, id: 14,
                      .community(.moderate(.group("p1"), action: .unmute, user: "u2", offset: nil, seconds: nil)))
        assertCommand(#"{"id":14,"op":"moderate","channel":"group:p1","action":"delete","offset":33}"#, id: 14,
                      .community(.moderate(.group("p1"), action: .delete, user: nil, offset: 33, seconds: nil)))
        assertCommand(#"{"id":14,"op":"moderate","channel":"group:p1","action":"delete","offset":33,"user":"u2"}"#, id: 14,
                      .community(.moderate(.group("p1"), action: .delete, user: "u2", offset: 33, seconds: nil)))
    }

    func testPing() {
        assertCommand(#"{"id":15,"op":"ping"}"#, id: 15, .session(.ping))
        assertCommand(#"  {"op":"ping","id":9007199254740993}  "#, id: 9007199254740993, .session(.ping))
        assertCommand(#"{"id":9223372036854775807,"op":"ping"}"#, id: .max, .session(.ping))
    }

    func testOpNames() {
        let cases: [(Command, String)] = [
            (.session(.connect(token: "t", since: nil)), "connect"), (.channel(.subscribe(.group("p"), since: nil)), "subscribe"),
            (.channel(.unsubscribe(.group("p"))), "unsubscribe"), (.community(.publish(.group("p"), text: "x", replyTo: nil)), "publish"),
            (.channel(.history(.group("p"), since: nil, limit: 1)), "history"), (.community(.presence(.group("p"))), "presence"),
            (.community(.watch(product: "p", below: nil)), "watch"), (.community(.unwatch(product: "p")), "unwatch"), (.community(.watches), "watches"),
            (.order(.get(order: "o")), "order.get"), (.order(.giftClaim(code: "c")), "gift.claim"),
            (.order(.giftDecline(code: "c")), "gift.decline"), (.order(.friendpayView(code: "c")), "friendpay.view"),
            (.community(.moderate(.group("p"), action: .delete, user: nil, offset: 1, seconds: nil)), "moderate"), (.session(.ping), "ping"),
            (.session(.refresh(token: "t")), "refresh"), (.sale(.buy(sale: "s", quantity: 1, product: nil)), "sale.buy"),
        ]
        for (command, op) in cases {
            XCTAssertEqual(command.op, op)
        }
    }

    // MARK: invalid fields

    func testBadChannelNames() {
        for channel in [#""users:u1""#, #""group:""#, #"":p1""#, #""group""#, #""group:a b""#, #""""#,
                        #""merchant:m1""#, #""Group:p1""#, #""product:é""#,
                        "\"group:\(String(repeating: "g", count: 65))\"", "17", "null", #"["group:p1"]"#] {
            for op in ["subscribe", "unsubscribe", "history", "presence"] {
                assertBadRequest(#"{"id":21,"op":"\#(op)","channel":\#(channel)}"#, id: 21, containing: "channel")
            }
            assertBadRequest(#"{"id":21,"op":"publish","channel":\#(channel),"data":{"text":"x"}}"#, id: 21)
            assertBadRequest(#"{"id":21,"op":"moderate","channel":\#(channel),"action":"delete","offset":1}"#, id: 21)
        }
        for op in ["subscribe", "unsubscribe", "history", "presence", "publish", "moderate"] {
            assertBadRequest(#"{"id":21,"op":"\#(op)"}"#, id: 21)
        }
    }

    func testHistoryLimitBounds() {
        for limit in ["0", "501", "-1", "1000000", "\"10\"", "1.5", "true", "99999999999999999999"] {
            assertBadRequest(#"{"id":1,"op":"history","channel":"group:p1","limit":\#(limit)}"#, containing: "limit")
        }
        XCTAssertEqual(CommandDecoder.maxHistoryLimit, 500)
    }

    func testNegativeOffsets() {
        assertBadRequest(#"{"id":1,"op":"subscribe","channel":"group:p1","since":{"offset":-1,"epoch":"e1"}}"#,
                         containing: "offset")
        assertBadRequest(#"{"id":1,"op":"connect","token":"t","since":{"offset":-5,"epoch":"e1"}}"#, containing: "offset")
        assertBadRequest(#"{"id":1,"op":"history","channel":"group:p1","since":{"offset":-1,"epoch":"e1"}}"#,
                         containing: "offset")
        assertBadRequest(#"{"id":1,"op":"publish","channel":"group:p1","data":{"text":"x","reply_to":-1}}"#,
                         containing: "reply_to")
        assertBadRequest(#"{"id":1,"op":"moderate","channel":"group:p1","action":"delete","offset":-3}"#,
                         containing: "offset")
        // Offsets are integers, not strings or fractions.
        assertBadRequest(#"{"id":1,"op":"subscribe","channel":"group:p1","since":{"offset":"4","epoch":"e1"}}"#)
        assertBadRequest(#"{"id":1,"op":"subscribe","channel":"group:p1","since":{"offset":4.5,"epoch":"e1"}}"#)
    }

    func testBadSince() {
        assertBadRequest(#"{"id":1,"op":"subscribe","channel":"group:p1","since":{"offset":4}}"#, containing: "epoch")
        assertBadRequest(#"{"id":1,"op":"connect","token":"t","since":{"offset":4}}"#, containing: "epoch")
        assertBadRequest(#"{"id":1,"op":"history","channel":"group:p1","since":{"offset":4}}"#, containing: "epoch")
        assertBadRequest(#"{"id":1,"op":"subscribe","channel":"group:p1","since":{"offset":4,"epoch":7}}"#, containing: "epoch")
        assertBadRequest(#"{"id":1,"op":"subscribe","channel":"group:p1","since":{"epoch":"e1"}}"#, containing: "offset")
        assertBadRequest(#"{"id":1,"op":"subscribe","channel":"group:p1","since":41}"#, containing: "since")
        assertBadRequest(#"{"id":1,"op":"subscribe","channel":"group:p1","since":"41"}"#, containing: "since")
        let longEpoch = String(repeating: "e", count: 65)
        assertBadRequest(#"{"id":1,"op":"subscribe","channel":"group:p1","since":{"offset":4,"epoch":"\#(longEpoch)"}}"#,
                         containing: "epoch")
        let okEpoch = String(repeating: "e", count: 64)
        assertCommand(#"{"id":1,"op":"subscribe","channel":"group:p1","since":{"offset":4,"epoch":"\#(okEpoch)"}}"#,
                      .channel(.subscribe(.group("p1"), since: StreamPosition(offset: 4, epoch: okEpoch))))
    }

    func testPublishRules() {
        assertBadRequest(#"{"id":1,"op":"publish","channel":"user:u1","data":{"text":"x"}}"#, containing: "group")
        assertBadRequest(#"{"id":1,"op":"publish","channel":"product:p1","data":{"text":"x"}}"#, containing: "group")
        assertBadRequest(#"{"id":1,"op":"publish","channel":"group:p1"}"#, containing: "data")
        assertBadRequest(#"{"id":1,"op":"publish","channel":"group:p1","data":"hello"}"#, containing: "data")
        assertBadRequest(#"{"id":1,"op":"publish","channel":"group:p1","data":null}"#, containing: "data")
        assertBadRequest(#"{"id":1,"op":"publish","channel":"group:p1","data":{}}"#, containing: "text")
        assertBadRequest(#"{"id":1,"op":"publish","channel":"group:p1","data":{"text":5}}"#, containing: "text")
        assertBadRequest(#"{"id":1,"op":"publish","channel":"group:p1","data":{"text":"x","reply_to":"3"}}"#,
                         containing: "reply_to")
    }

    func testModerateRules() {
        assertBadRequest(#"{"id":1,"op":"moderate","channel":"group:p1","action":"mute"}"#, containing: "user")
        assertBadRequest(#"{"id":1,"op":"moderate","channel":"group:p1","action":"unmute"}"#, containing: "user")
        assertBadRequest(#"{"id":1,"op":"moderate","channel":"group:p1","action":"mute","user":null}"#, containing: "user")
        assertBadRequest(#"{"id":1,"op":"moderate","channel":"group:p1","action":"delete"}"#, containing: "offset")
        assertBadRequest(#"{"id":1,"op":"moderate","channel":"group:p1","action":"delete","user":"u2"}"#, containing: "offset")
        assertBadRequest(#"{"id":1,"op":"moderate","channel":"group:p1","action":"mute","user":"bad user"}"#, containing: "user")
        assertBadRequest(#"{"id":1,"op":"moderate","channel":"group:p1","action":"mute","user":"u2","seconds":0}"#,
                         containing: "seconds")
        assertBadRequest(#"{"id":1,"op":"moderate","channel":"group:p1","action":"mute","user":"u2","seconds":-60}"#,
                         containing: "seconds")
        assertBadRequest(#"{"id":1,"op":"moderate","channel":"group:p1","action":"mute","user":"u2","seconds":"60"}"#,
                         containing: "seconds")
        assertBadRequest(#"{"id":1,"op":"moderate","channel":"group:p1","action":"ban","user":"u2"}"#, containing: "action")
        assertBadRequest(#"{"id":1,"op":"moderate","channel":"group:p1","action":"Mute","user":"u2"}"#, containing: "action")
        assertBadRequest(#"{"id":1,"op":"moderate","channel":"group:p1","user":"u2"}"#, containing: "action")
        assertBadRequest(#"{"id":1,"op":"moderate","channel":"user:u1","action":"mute","user":"u2"}"#, containing: "group")
        assertBadRequest(#"{"id":1,"op":"moderate","channel":"product:p1","action":"delete","offset":1}"#, containing: "group")
    }

    func testOtherInvalidFields() {
        assertBadRequest(#"{"id":1,"op":"presence","channel":"user:u1"}"#)
        assertBadRequest(#"{"id":1,"op":"connect"}"#, containing: "token")
        assertBadRequest(#"{"id":1,"op":"refresh"}"#, containing: "token")
        assertBadRequest(#"{"id":1,"op":"refresh","token":5}"#, containing: "token")
        assertBadRequest(#"{"id":1,"op":"connect","token":42}"#, containing: "token")
        assertBadRequest(#"{"id":1,"op":"watch"}"#, containing: "product")
        assertBadRequest(#"{"id":1,"op":"watch","product":"p 1"}"#, containing: "product")
        assertBadRequest(#"{"id":1,"op":"watch","product":"\#(String(repeating: "p", count: 65))"}"#, containing: "product")
        assertBadRequest(#"{"id":1,"op":"watch","product":"p1","below":0}"#, containing: "below")
        assertBadRequest(#"{"id":1,"op":"watch","product":"p1","below":-100}"#, containing: "below")
        assertBadRequest(#"{"id":1,"op":"watch","product":"p1","below":19.99}"#, containing: "below")
        assertBadRequest(#"{"id":1,"op":"unwatch","product":""}"#, containing: "product")
        assertBadRequest(#"{"id":1,"op":"unwatch"}"#, containing: "product")
        for op in ["order.get": "order", "gift.claim": "code", "gift.decline": "code", "friendpay.view": "code"] {
            assertBadRequest(#"{"id":1,"op":"\#(op.key)"}"#, containing: op.value)
            assertBadRequest(#"{"id":1,"op":"\#(op.key)","\#(op.value)":""}"#, containing: op.value)
            assertBadRequest(#"{"id":1,"op":"\#(op.key)","\#(op.value)":"a b"}"#, containing: op.value)
            assertBadRequest(#"{"id":1,"op":"\#(op.key)","\#(op.value)":"é"}"#, containing: op.value)
            assertBadRequest(#"{"id":1,"op":"\#(op.key)","\#(op.value)":"\#(String(repeating: "c", count: 129))"}"#,
                             containing: op.value)
            assertBadRequest(#"{"id":1,"op":"\#(op.key)","\#(op.value)":7}"#, containing: op.value)
        }
    }

    func testUnknownOrMissingOp() {
        assertBadRequest(#"{"id":31,"op":"dance"}"#, id: 31, containing: "dance")
        assertBadRequest(#"{"id":31,"op":"Ping"}"#, id: 31)
        assertBadRequest(#"{"id":31,"op":""}"#, id: 31)
        assertBadRequest(#"{"id":31}"#, id: 31, containing: "op")
        assertBadRequest(#"{"id":31,"op":1}"#, id: 31, containing: "op")
        assertBadRequest(#"{"id":31,"op":null}"#, id: 31, containing: "op")
    }

    // MARK: ids

    func testMissingOrBadID() {
        assertMissingID(#"{"op":"ping"}"#)
        assertMissingID(#"{"id":0,"op":"ping"}"#)
        assertMissingID(#"{"id":-1,"op":"ping"}"#)
        assertMissingID(#"{"id":"1","op":"ping"}"#)
        assertMissingID(#"{"id":"abc","op":"ping"}"#)
        assertMissingID(#"{"id":1.5,"op":"ping"}"#)
        assertMissingID(#"{"id":1.0,"op":"ping"}"#)
        assertMissingID(#"{"id":1e2,"op":"ping"}"#)
        assertMissingID(#"{"id":null,"op":"ping"}"#)
        assertMissingID(#"{"id":true,"op":"ping"}"#)
        assertMissingID(#"{"id":[1],"op":"ping"}"#)
        assertMissingID(#"{"id":99999999999999999999,"op":"ping"}"#)
        // The id is checked before the command: a bad command without an id is still missingID.
        assertMissingID(#"{"op":"dance"}"#)
        assertMissingID(#"{}"#)
    }

    // MARK: malformed

    func testMalformed() {
        assertMalformed("not json")
        assertMalformed(#"{"id":1,"op":"ping""#)
        assertMalformed(#"{"id":1,"op":"ping"}}"#)
        assertMalformed(#"{"id":1,"op":"ping"} x"#)
        assertMalformed(#"{'id':1}"#)
        assertMalformed(#"[{"id":1,"op":"ping"}]"#)
        assertMalformed(#""ping""#)
        assertMalformed("42")
        assertMalformed("null")
        assertMalformed("")
        assertMalformed(" \r\n\t\n")
        // Invalid UTF-8 inside a string.
        let bad: [UInt8] = Array(#"{"id":1,"op":""#.utf8) + [0xFF] + Array(#""}"#.utf8)
        let lines = bad.withUnsafeBytes { CommandDecoder.decodeFrame($0) }
        XCTAssertEqual(lines.count, 1)
        guard case .malformed? = lines.first else { return XCTFail("\(lines)") }
    }

    // MARK: frames with several lines

    func testSeveralCommandsInOneFrame() {
        let frame = #"{"id":1,"op":"ping"}"# + "\n" + #"{"id":2,"op":"subscribe","channel":"group:p1"}"# + "\n\n" +
            "   \n" + #"{"id":3,"op":"watches"}"# + "\n"
        XCTAssertEqual(CommandDecoder.decodeFrame(frame), [
            .command(id: 1, .session(.ping)),
            .command(id: 2, .channel(.subscribe(.group("p1"), since: nil))),
            .command(id: 3, .community(.watches)),
        ])
    }

    func testFrameWithCRLFAndLeadingBlankLines() {
        let frame = "\n\r\n" + #"{"id":1,"op":"ping"}"# + "\r\n" + #"{"id":2,"op":"watches"}"# + "\r\n"
        XCTAssertEqual(CommandDecoder.decodeFrame(frame), [.command(id: 1, .session(.ping)), .command(id: 2, .community(.watches))])
    }

    func testFrameMixesGoodAndBadLinesInOrder() {
        let frame = [
            #"{"id":1,"op":"ping"}"#,
            "garbage",
            #"{"op":"ping"}"#,
            #"{"id":4,"op":"history","channel":"group:p1","limit":0}"#,
            #"{"id":5,"op":"unwatch","product":"p1"}"#,
        ].joined(separator: "\n")
        let lines = CommandDecoder.decodeFrame(frame)
        XCTAssertEqual(lines.count, 5, "\(lines)")
        guard lines.count == 5 else { return }
        XCTAssertEqual(lines[0], .command(id: 1, .session(.ping)))
        guard case .malformed = lines[1] else { return XCTFail("\(lines[1])") }
        guard case .missingID = lines[2] else { return XCTFail("\(lines[2])") }
        guard case .invalid(4, let error) = lines[3] else { return XCTFail("\(lines[3])") }
        XCTAssertEqual(error.code, .badRequest)
        XCTAssertEqual(lines[4], .command(id: 5, .community(.unwatch(product: "p1"))))
    }

    func testNewlineInsideJSONStringIsEscapedSoItDoesNotSplit() {
        // A raw newline may only appear between lines; inside strings it is escaped.
        let frame = #"{"id":1,"op":"publish","channel":"group:p1","data":{"text":"a\nb"}}"#
        XCTAssertEqual(CommandDecoder.decodeFrame(frame), [.command(id: 1, .community(.publish(.group("p1"), text: "a\nb", replyTo: nil)))])
    }

    func testRawBufferEntryPoint() {
        let bytes = Array((#"{"id":1,"op":"ping"}"# + "\n" + #"{"id":2,"op":"unsubscribe","channel":"user:u1"}"#).utf8)
        let lines = bytes.withUnsafeBytes { CommandDecoder.decodeFrame($0) }
        XCTAssertEqual(lines, [.command(id: 1, .session(.ping)), .command(id: 2, .channel(.unsubscribe(.user("u1"))))])
        // A slice of a larger buffer decodes only its own bytes.
        let padded = Array("xx".utf8) + Array(#"{"id":9,"op":"ping"}"#.utf8) + Array("yy".utf8)
        let sliced = padded.withUnsafeBytes { raw in
            CommandDecoder.decodeFrame(UnsafeRawBufferPointer(rebasing: raw[2..<(padded.count - 2)]))
        }
        XCTAssertEqual(sliced, [.command(id: 9, .session(.ping))])
    }

    // MARK: replies

    func testOkReply() {
        let bytes = ReplyEncoder.ok(id: 7, .object([]))
        XCTAssertEqual(text(bytes), #"{"id":7,"ok":{}}"#)
        let result = JSON.object([("offset", .int(58)), ("tags", .array([.string("a\"b"), .null, .bool(true)]))])
        let reply = ReplyEncoder.ok(id: 9_007_199_254_740_993, result)
        XCTAssertEqual(text(reply), #"{"id":9007199254740993,"ok":{"offset":58,"tags":["a\"b",null,true]}}"#)
        XCTAssertEqual(parse(reply), .object([("id", .int(9_007_199_254_740_993)), ("ok", result)]))
    }

    func testErrorReplyWithID() {
        let reply = ReplyEncoder.error(id: 7, .forbidden("not a buyer of p1"))
        XCTAssertEqual(text(reply), #"{"id":7,"error":{"code":"forbidden","message":"not a buyer of p1","temporary":false}}"#)
        XCTAssertEqual(parse(reply), .object([
            ("id", .int(7)),
            ("error", .object([("code", .string("forbidden")), ("message", .string("not a buyer of p1")),
                               ("temporary", .bool(false))])),
        ]))
    }

    func testErrorReplyWithoutID() {
        let reply = ReplyEncoder.error(id: nil, .badRequest("invalid JSON: \"x\"\n"))
        XCTAssertEqual(parse(reply), .object([
            ("error", .object([("code", .string("bad_request")), ("message", .string("invalid JSON: \"x\"\n")),
                               ("temporary", .bool(false))])),
        ]))
        XCTAssertNil(parse(reply)?["id"])
        XCTAssertFalse(text(reply).contains("\n"), "a reply must stay on one line")
    }

    func testErrorReplyVariants() {
        let limited = ReplyEncoder.error(id: 3, GatewayError(.rateLimited, "slow down", retryAfterMs: 1500))
        XCTAssertEqual(text(limited),
                       #"{"id":3,"error":{"code":"rate_limited","message":"slow down","temporary":false,"retry_after_ms":1500}}"#)
        let unavailable = ReplyEncoder.error(id: 4, .redisUnavailable)
        XCTAssertEqual(parse(unavailable)?["error"]?["code"], .string("unavailable"))
        XCTAssertEqual(parse(unavailable)?["error"]?["temporary"], .bool(true))
        XCTAssertNil(parse(unavailable)?["error"]?["retry_after_ms"])
        let notFound = ReplyEncoder.error(id: 5, .notFound("no such product"))
        XCTAssertEqual(parse(notFound)?["error"]?["code"], .string("not_found"))
        let forcedTemporary = GatewayError(.internal, "x", temporary: true)
        XCTAssertEqual(parse(ReplyEncoder.error(id: 6, forcedTemporary))?["error"]?["temporary"], .bool(true))
    }

    /// HTTP errors: the WebSocket error object under `error`, and `Retry-After` in seconds.
    func testHTTPErrorBodyMatchesTheWebSocketError() {
        let limited = GatewayError(.rateLimited, "slow down", temporary: true, retryAfterMs: 1500)
        XCTAssertEqual(String(decoding: limited.httpBody, as: UTF8.self),
                       #"{"error":{"code":"rate_limited","message":"slow down","temporary":true,"retry_after_ms":1500}}"#)
        XCTAssertEqual(limited.httpHeaders.map { "\($0.0): \($0.1)" }, ["Retry-After: 2"])
        XCTAssertEqual(GatewayError(.rateLimited, "x", retryAfterMs: 1).httpHeaders.first?.1, "1")
        XCTAssertEqual(String(decoding: GatewayError.redisUnavailable.httpBody, as: UTF8.self),
                       #"{"error":{"code":"unavailable","message":"storage is unavailable, retry shortly","temporary":true}}"#)
        XCTAssertTrue(GatewayError.redisUnavailable.httpHeaders.isEmpty)
        XCTAssertEqual(GatewayError(wireCode: "too_large", "big").code, .tooLarge)
        XCTAssertEqual(GatewayError(wireCode: "no-such-code", "?").code, .internal)
    }

    func testOkWithPublicationsSplicesRawBytes() {
        let p1 = #"{"push":"order.status","channel":"user:u1","offset":58,"epoch":"e1","ts":1763900000000,"data":{"order":"o-1"}}"#
        let p2 = #"{"push":"gift.created","channel":"user:u1","offset":59,"epoch":"e1","ts":1763900000001,"data":{"code":"G\"1"}}"#
        let fields: [(String, JSON)] = [("channel", .string("user:u1")), ("offset", .int(59)), ("epoch", .string("e1")),
                                        ("recovered", .bool(true))]
        let reply = ReplyEncoder.okWithPublications(id: 2, fields: fields, publications: [Array(p1.utf8), Array(p2.utf8)])
        XCTAssertEqual(text(reply),
                       #"{"id":2,"ok":{"channel":"user:u1","offset":59,"epoch":"e1","recovered":true,"publications":["#
                           + p1 + "," + p2 + "]}}")
        let pubs = [try! JSON.parse(p1), try! JSON.parse(p2)]
        XCTAssertEqual(parse(reply), .object([
            ("id", .int(2)),
            ("ok", .object(fields + [("publications", .array(pubs))])),
        ]))
    }

    func testOkWithPublicationsEdgeCases() {
        XCTAssertEqual(text(ReplyEncoder.okWithPublications(id: 1, fields: [], publications: [])),
                       #"{"id":1,"ok":{"publications":[]}}"#)
        let reply = ReplyEncoder.okWithPublications(id: 8, fields: [("offset", .int(0)), ("k\"ey", .string("v"))],
                                                    publications: [Array(#"{"a":1}"#.utf8)])
        XCTAssertEqual(parse(reply), .object([
            ("id", .int(8)),
            ("ok", .object([("offset", .int(0)), ("k\"ey", .string("v")), ("publications", .array([.object([("a", .int(1))])]))])),
        ]))
    }

    // MARK: error codes and close codes (PROTOCOL.md 2.2, 2.6)

    func testErrorCodesOnTheWire() {
        XCTAssertEqual(ErrorCode.allCases.map(\.rawValue), [
            "bad_request", "unauthorized", "forbidden", "not_found", "conflict", "gone", "rate_limited", "too_large",
            "unavailable", "internal",
        ])
        XCTAssertEqual(ErrorCode.allCases.map(\.httpStatus), [400, 401, 403, 404, 409, 410, 429, 413, 503, 500])
        for code in ErrorCode.allCases {
            XCTAssertEqual(GatewayError(code, "m").temporary, code == .unavailable, code.rawValue)
        }
    }

    func testCloseCodes() {
        XCTAssertEqual(CloseCode.goingAway.rawValue, 1001)
        XCTAssertEqual(CloseCode.tooLarge.rawValue, 1009)
        XCTAssertEqual(CloseCode.connectTimeout.rawValue, 4001)
        XCTAssertEqual(CloseCode.badToken.rawValue, 4002)
        XCTAssertEqual(CloseCode.tokenExpired.rawValue, 4003)
        XCTAssertEqual(CloseCode.slowConsumer.rawValue, 4008)
        XCTAssertEqual(CloseCode.removed.rawValue, 4010)
        XCTAssertEqual(CloseCode.protocolViolations.rawValue, 4011)
    }
}
