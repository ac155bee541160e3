@testable import GatewayNode
import GatewayProtocol
import OrderCore
import XCTest

/// The node's cache of sales: bounded (least recently used out first), one lookup per sale in
/// flight, and a stale entry dropped only while it is still the stale sale.
final class SaleDirectoryTests: XCTestCase {
    private func sale(_ id: String, nonce: String = "n1") -> Sale {
        Sale(spec: SaleSpec(id: id, product: "p1", price: 1, quantity: 1, startsAt: 0, endsAt: 1), title: "t", currency: "CNY",
             merchant: "m1", nonce: nonce, remaining: 1, sold: 0, closed: false)
    }

    func testBoundedDroppingTheLeastRecentlyUsed() {
        let d = SaleDirectory()
        for i in 0..<SaleDirectory.capacity { d.remember(sale("s\(i)")) }
        XCTAssertNotNil(d.cached("s0"), "s0 is used again: the newest use")
        d.remember(sale("extra"))
        XCTAssertEqual(d.count, SaleDirectory.capacity + 1 - SaleDirectory.capacity / 10)
        XCTAssertNotNil(d.cached("s0"))
        XCTAssertNotNil(d.cached("extra"))
        XCTAssertNil(d.cached("s1"), "the least recently used went")
        XCTAssertNotNil(d.cached("s\(SaleDirectory.capacity - 1)"))
    }

    func testOneLookupPerSaleInFlight() {
        let d = SaleDirectory()
        var answered = 0
        XCTAssertTrue(d.wait("s1") { _ in answered += 1 }, "the first caller looks up")
        XCTAssertFalse(d.wait("s1") { _ in answered += 1 })
        XCTAssertTrue(d.wait("s2") { _ in answered += 1 }, "another sale has its own lookup")
        for waiter in d.takeWaiters("s1") { waiter(.success(nil)) }
        XCTAssertEqual(answered, 2)
        XCTAssertTrue(d.wait("s1") { _ in }, "answered: the next caller looks up again")
    }

    func testForgetOnlyTheStaleSale() {
        let d = SaleDirectory()
        d.remember(sale("s1", nonce: "new"))
        d.forget("s1", nonce: "old")
        XCTAssertEqual(d.cached("s1")?.nonce, "new", "a newer lookup already replaced it")
        d.forget("s1", nonce: "new")
        XCTAssertNil(d.cached("s1"))
    }
}
