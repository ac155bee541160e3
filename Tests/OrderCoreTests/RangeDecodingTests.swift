import XCTest
import GatewayProtocol
@testable import OrderCore

/// Integers of HTTP bodies (PROTOCOL.md 4.1): outside the documented range is `bad_request`,
/// and hostile numbers (huge, fractional, exponent, negative zero) never trap.
final class RangeDecodingTests: XCTestCase {
    let hostile = [
        "9223372036854775807", "-9223372036854775808", "9223372036854775808", "18446744073709551615",
        "1e300", "-1e300", "1.5", "-0.0", "1E1", String(repeating: "9", count: 300),
    ]

    func testQuantityHostileNumbers() throws {
        for q in hostile + ["0", "11", "-1"] {
            assertFailure(OrderRequest.decode(try parse(#"{"buyer":"u1","product":"p1","quantity":\#(q)}"#)), .badRequest, q)
        }
        // -0 is the integer 0: below the range, not a trap.
        assertFailure(OrderRequest.decode(try parse(#"{"buyer":"u1","product":"p1","quantity":-0}"#)), .badRequest)
    }

    /// A notify amount is an order amount: at most ten times the highest price.
    func testNotifyAmountRange() throws {
        func body(_ amount: String) -> String {
            #"{"payment":"pay-1","order":"o-1","amount":\#(amount),"currency":"CNY","status":"success"}"#
        }
        XCTAssertEqual(Ranges.amount, 0...10_000_000_000_000)
        for a in hostile + ["10000000000001", "-1"] {
            assertFailure(PaymentNotify.decode(try parse(body(a))), .badRequest, a)
        }
        XCTAssertEqual(try success(PaymentNotify.decode(try parse(body("10000000000000")))).amount, 10_000_000_000_000)
        XCTAssertEqual(try success(PaymentNotify.decode(try parse(body("-0")))).amount, 0)
    }

    /// `price` of a product (create and PATCH): 0 to 10^12 minor units.
    func testPriceRange() throws {
        XCTAssertEqual(try success(ProductPrice.decode(.int(0))), 0)
        XCTAssertEqual(try success(ProductPrice.decode(.int(1_000_000_000_000))), 1_000_000_000_000)
        XCTAssertNil(try success(ProductPrice.decode(nil)))
        XCTAssertNil(try success(ProductPrice.decode(.null)))
        for p in hostile + ["1000000000001", "-1", "\"100\"", "true"] {
            let json = try parse(#"{"price":\#(p)}"#)
            assertFailure(ProductPrice.decode(json["price"]), .badRequest, p)
        }
        // The highest price times the highest quantity is still a valid amount.
        let (most, overflow) = Ranges.price.upperBound.multipliedReportingOverflow(by: Int64(OrderRequest.maxQuantity))
        XCTAssertFalse(overflow)
        XCTAssertTrue(Ranges.amount.contains(most))
    }

    /// An order whose amount a notify could not carry is refused when it is created, without
    /// overflow, whatever price the product has in the store.
    func testOrderAmountStaysInRange() throws {
        let rules = Fx.rules
        var product = Fx.product
        product.price = 1_000_000_000_001
        assertFailure(rules.create(Fx.request(quantity: 10), product: product, now: Fx.t0, fresh: Fx.fresh), .badRequest)
        product.price = Ranges.price.upperBound
        let order = try XCTUnwrap(try success(rules.create(Fx.request(quantity: 10), product: product, now: Fx.t0,
                                                           fresh: Fx.fresh)).savedOrder)
        XCTAssertEqual(order.amount, Ranges.amount.upperBound)
        product.price = .max
        assertFailure(rules.create(Fx.request(quantity: 10), product: product, now: Fx.t0, fresh: Fx.fresh), .badRequest)
    }
}
