import XCTest
import GatewayProtocol
@testable import OrderCore

/// `POST /api/v1/orders` and `POST /api/v1/payments/notify` bodies (PROTOCOL.md 3).
final class OrderRequestDecodingTests: XCTestCase {
    func decode(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> Result<OrderRequest, GatewayError> {
        OrderRequest.decode(try parse(text, file: file, line: line))
    }

    func decoded(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> OrderRequest {
        try success(try decode(text, file: file, line: line), file: file, line: line)
    }

    func refused(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws {
        assertFailure(try decode(text, file: file, line: line), .badRequest, text, file: file, line: line)
    }

    // MARK: Minimal body and defaults

    func testMinimalBodyDefaultsToOneNormalOrder() throws {
        let r = try decoded(#"{"buyer":"u1","product":"p1"}"#)
        XCTAssertEqual(r, OrderRequest(buyer: "u1", product: "p1", quantity: 1, kind: .normal))
        XCTAssertNil(r.giftTo)
        XCTAssertNil(r.giftMessage)
        XCTAssertNil(r.friend)
        XCTAssertNil(r.idempotencyKey)
    }

    func testNullOptionalsAreAbsent() throws {
        let r = try decoded(#"{"buyer":"u1","product":"p1","quantity":null,"kind":null,"gift":null,"friendpay":null,"idempotency_key":null}"#)
        XCTAssertEqual(r, OrderRequest(buyer: "u1", product: "p1", quantity: 1, kind: .normal))
    }

    func testIDsWithEveryAllowedCharacter() throws {
        let id = "aZ09_.:-"
        let r = try decoded(#"{"buyer":"\#(id)","product":"\#(id)x"}"#)
        XCTAssertEqual(r.buyer, id)
        XCTAssertEqual(r.product, id + "x")
        let long = String(repeating: "b", count: 64)
        XCTAssertEqual(try decoded(#"{"buyer":"\#(long)","product":"p1"}"#).buyer, long)
    }

    // MARK: Quantity

    func testQuantityBounds() throws {
        XCTAssertEqual(try decoded(#"{"buyer":"u1","product":"p1","quantity":1}"#).quantity, 1)
        XCTAssertEqual(try decoded(#"{"buyer":"u1","product":"p1","quantity":7}"#).quantity, 7)
        XCTAssertEqual(try decoded(#"{"buyer":"u1","product":"p1","quantity":10}"#).quantity, 10)
        XCTAssertEqual(OrderRequest.maxQuantity, 10)
        for q in ["0", "11", "-1", "100", "9223372036854775807", "-9223372036854775808"] {
            try refused(#"{"buyer":"u1","product":"p1","quantity":\#(q)}"#)
        }
    }

    func testQuantityMustBeAWholeNumber() throws {
        for q in ["2.5", "2.0", "1e1", "\"2\"", "true", "[1]", "{}"] {
            try refused(#"{"buyer":"u1","product":"p1","quantity":\#(q)}"#)
        }
        let asDouble = JSON.object([("buyer", .string("u1")), ("product", .string("p1")), ("quantity", .double(3))])
        assertFailure(OrderRequest.decode(asDouble), .badRequest)
    }

    // MARK: Kind

    func testKinds() throws {
        XCTAssertEqual(try decoded(#"{"buyer":"u1","product":"p1","kind":"normal"}"#).kind, .normal)
        XCTAssertEqual(try decoded(#"{"buyer":"u1","product":"p1","kind":"gift"}"#).kind, .gift)
        XCTAssertEqual(try decoded(#"{"buyer":"u1","product":"p1","kind":"friendpay"}"#).kind, .friendpay)
        for k in ["\"loan\"", "\"Gift\"", "\"\"", "1", "true", "[\"gift\"]", "{}"] {
            try refused(#"{"buyer":"u1","product":"p1","kind":\#(k)}"#)
        }
    }

    // MARK: Gift object

    func testGiftWithRecipientAndMessage() throws {
        let r = try decoded(#"{"buyer":"u1","product":"p1","quantity":2,"kind":"gift","gift":{"to":"u3","message":"Happy birthday"}}"#)
        XCTAssertEqual(r.kind, .gift)
        XCTAssertEqual(r.quantity, 2)
        XCTAssertEqual(r.giftTo, "u3")
        XCTAssertEqual(r.giftMessage, "Happy birthday")
        XCTAssertNil(r.friend)
    }

    func testGiftWithoutObjectOrRecipient() throws {
        let bare = try decoded(#"{"buyer":"u1","product":"p1","kind":"gift"}"#)
        XCTAssertEqual(bare.kind, .gift)
        XCTAssertNil(bare.giftTo)
        let open = try decoded(#"{"buyer":"u1","product":"p1","kind":"gift","gift":{}}"#)
        XCTAssertNil(open.giftTo)
        XCTAssertNil(open.giftMessage)
        let nulls = try decoded(#"{"buyer":"u1","product":"p1","kind":"gift","gift":{"to":null,"message":null}}"#)
        XCTAssertNil(nulls.giftTo)
        XCTAssertNil(nulls.giftMessage)
    }

    func testGiftObjectOnlyWithKindGift() throws {
        try refused(#"{"buyer":"u1","product":"p1","gift":{"to":"u3"}}"#)
        try refused(#"{"buyer":"u1","product":"p1","kind":"normal","gift":{}}"#)
        try refused(#"{"buyer":"u1","product":"p1","kind":"friendpay","gift":{"to":"u3"}}"#)
    }

    func testGiftMustBeAnObject() throws {
        for g in ["\"u3\"", "[]", "1", "true"] {
            try refused(#"{"buyer":"u1","product":"p1","kind":"gift","gift":\#(g)}"#)
        }
    }

    func testGiftToSelfIsRefused() throws {
        try refused(#"{"buyer":"u1","product":"p1","kind":"gift","gift":{"to":"u1"}}"#)
    }

    func testGiftRecipientMustBeAValidID() throws {
        for to in ["\"\"", "\"u 3\"", "\"u/3\"", "\"\(String(repeating: "x", count: 65))\"", "3", "{}", "[\"u3\"]"] {
            try refused(#"{"buyer":"u1","product":"p1","kind":"gift","gift":{"to":\#(to)}}"#)
        }
    }

    func testGiftMessageLength() throws {
        XCTAssertEqual(OrderRequest.maxGiftMessage, 200)
        let ok = String(repeating: "a", count: 200)
        XCTAssertEqual(try decoded(#"{"buyer":"u1","product":"p1","kind":"gift","gift":{"message":"\#(ok)"}}"#).giftMessage, ok)
        try refused(#"{"buyer":"u1","product":"p1","kind":"gift","gift":{"message":"\#(ok)a"}}"#)
        // Characters, not bytes: 200 two-byte and 200 four-byte characters fit.
        let accented = String(repeating: "é", count: 200)
        XCTAssertEqual(try decoded(#"{"buyer":"u1","product":"p1","kind":"gift","gift":{"message":"\#(accented)"}}"#).giftMessage, accented)
        let emoji = String(repeating: "🎁", count: 200)
        XCTAssertEqual(try decoded(#"{"buyer":"u1","product":"p1","kind":"gift","gift":{"message":"\#(emoji)"}}"#).giftMessage, emoji)
        try refused(#"{"buyer":"u1","product":"p1","kind":"gift","gift":{"message":"\#(emoji)🎁"}}"#)
    }

    func testGiftMessageMustBeText() throws {
        for m in ["1", "true", "[\"hi\"]", "{}"] {
            try refused(#"{"buyer":"u1","product":"p1","kind":"gift","gift":{"message":\#(m)}}"#)
        }
    }

    /// An empty message is no message: the record layout cannot tell "" from absent, so
    /// the order answered at creation and the order read back later must agree.
    func testEmptyGiftMessageIsNoMessage() throws {
        XCTAssertNil(try decoded(#"{"buyer":"u1","product":"p1","kind":"gift","gift":{"message":""}}"#).giftMessage)
    }

    // MARK: Friend-pay object

    func testFriendpayWithFriend() throws {
        let r = try decoded(#"{"buyer":"u1","product":"p1","kind":"friendpay","friendpay":{"to":"u2"}}"#)
        XCTAssertEqual(r.kind, .friendpay)
        XCTAssertEqual(r.friend, "u2")
        XCTAssertNil(r.giftTo)
    }

    func testFriendpayWithoutFriend() throws {
        XCTAssertNil(try decoded(#"{"buyer":"u1","product":"p1","kind":"friendpay"}"#).friend)
        XCTAssertNil(try decoded(#"{"buyer":"u1","product":"p1","kind":"friendpay","friendpay":{}}"#).friend)
        XCTAssertNil(try decoded(#"{"buyer":"u1","product":"p1","kind":"friendpay","friendpay":{"to":null}}"#).friend)
    }

    func testFriendpayObjectOnlyWithKindFriendpay() throws {
        try refused(#"{"buyer":"u1","product":"p1","friendpay":{"to":"u2"}}"#)
        try refused(#"{"buyer":"u1","product":"p1","kind":"gift","friendpay":{"to":"u2"}}"#)
        try refused(#"{"buyer":"u1","product":"p1","kind":"friendpay","gift":{"to":"u2"}}"#)
        for f in ["\"u2\"", "[]", "1"] {
            try refused(#"{"buyer":"u1","product":"p1","kind":"friendpay","friendpay":\#(f)}"#)
        }
    }

    func testFriendpayToSelfIsRefused() throws {
        try refused(#"{"buyer":"u1","product":"p1","kind":"friendpay","friendpay":{"to":"u1"}}"#)
    }

    func testFriendMustBeAValidID() throws {
        for to in ["\"\"", "\"u 2\"", "\"\(String(repeating: "x", count: 65))\"", "2", "true"] {
            try refused(#"{"buyer":"u1","product":"p1","kind":"friendpay","friendpay":{"to":\#(to)}}"#)
        }
    }

    // MARK: Idempotency key

    func testIdempotencyKeyAccepted() throws {
        XCTAssertEqual(try decoded(#"{"buyer":"u1","product":"p1","idempotency_key":"k"}"#).idempotencyKey, "k")
        let printable = "!~aZ09-_{}[]#$%"
        XCTAssertEqual(try decoded(#"{"buyer":"u1","product":"p1","idempotency_key":"\#(printable)"}"#).idempotencyKey, printable)
        let max = String(repeating: "x", count: 128)
        XCTAssertEqual(try decoded(#"{"buyer":"u1","product":"p1","idempotency_key":"\#(max)"}"#).idempotencyKey, max)
    }

    func testIdempotencyKeyRefused() throws {
        let tooLong = String(repeating: "x", count: 129)
        for k in ["\"\"", "\"\(tooLong)\"", "\"a b\"", "\"a\\tb\"", "\"a\\u007fb\"", "\"ключ\"", "\"é\"", "12", "true", "{}"] {
            try refused(#"{"buyer":"u1","product":"p1","idempotency_key":\#(k)}"#)
        }
    }

    // MARK: Ids

    func testBuyerAndProductMustBeValidIDs() throws {
        try refused(#"{"product":"p1"}"#)
        try refused(#"{"buyer":"u1"}"#)
        try refused(#"{}"#)
        try refused(#"[]"#)
        for bad in ["\"\"", "\"u 1\"", "\"u#1\"", "\"ü\"", "\"\(String(repeating: "x", count: 65))\"", "1", "null", "[\"u1\"]"] {
            try refused(#"{"buyer":\#(bad),"product":"p1"}"#)
            try refused(#"{"buyer":"u1","product":\#(bad)}"#)
        }
    }

    func testEveryRefusalIsBadRequestWithAMessage() throws {
        let r = try decode(#"{"buyer":"u1","product":"p1","quantity":11}"#)
        guard case .failure(let e) = r else { return XCTFail("expected failure") }
        XCTAssertEqual(e.code, .badRequest)
        XCTAssertFalse(e.message.isEmpty)
        XCTAssertFalse(e.temporary)
    }
}

final class PaymentNotifyDecodingTests: XCTestCase {
    func decode(_ text: String) throws -> Result<PaymentNotify, GatewayError> { PaymentNotify.decode(try parse(text)) }

    func testValidNotify() throws {
        let n = try success(try decode(#"{"payment":"pay-1","order":"o-1","amount":1999,"currency":"CNY","status":"success","trade_no":"T-9"}"#))
        XCTAssertEqual(n, PaymentNotify(payment: "pay-1", order: "o-1", amount: 1999, currency: "CNY", outcome: .success, tradeNo: "T-9"))
        let failed = try success(try decode(#"{"payment":"pay-1","order":"o-1","amount":0,"currency":"CNY","status":"failed"}"#))
        XCTAssertEqual(failed.outcome, .failed)
        XCTAssertEqual(failed.amount, 0)
        XCTAssertEqual(failed.tradeNo, "")
    }

    func testRefusals() throws {
        let long = String(repeating: "x", count: 129)
        for body in [
            #"{"order":"o-1","amount":1,"currency":"CNY","status":"success"}"#,
            #"{"payment":"","order":"o-1","amount":1,"currency":"CNY","status":"success"}"#,
            #"{"payment":"\#(long)","order":"o-1","amount":1,"currency":"CNY","status":"success"}"#,
            #"{"payment":"pay-1","amount":1,"currency":"CNY","status":"success"}"#,
            #"{"payment":"pay-1","order":"","amount":1,"currency":"CNY","status":"success"}"#,
            #"{"payment":"pay-1","order":"\#(long)","amount":1,"currency":"CNY","status":"success"}"#,
            #"{"payment":"pay-1","order":"o-1","currency":"CNY","status":"success"}"#,
            #"{"payment":"pay-1","order":"o-1","amount":-1,"currency":"CNY","status":"success"}"#,
            #"{"payment":"pay-1","order":"o-1","amount":19.99,"currency":"CNY","status":"success"}"#,
            #"{"payment":"pay-1","order":"o-1","amount":"1999","currency":"CNY","status":"success"}"#,
            #"{"payment":"pay-1","order":"o-1","amount":1,"status":"success"}"#,
            #"{"payment":"pay-1","order":"o-1","amount":1,"currency":"CNY"}"#,
            #"{"payment":"pay-1","order":"o-1","amount":1,"currency":"CNY","status":"pending"}"#,
            #"{"payment":"pay-1","order":"o-1","amount":1,"currency":"CNY","status":"success","trade_no":"\#(long)"}"#,
            #"{"payment":1,"order":"o-1","amount":1,"currency":"CNY","status":"success"}"#,
        ] {
            assertFailure(try decode(body), .badRequest, body)
        }
    }
}
