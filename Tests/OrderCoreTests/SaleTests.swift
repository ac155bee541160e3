import XCTest
import GatewayProtocol
@testable import OrderCore

/// Flash sales' pure rules (contract 4.8): the POST body, a sale's state and object, the
/// buy refusals' errors, the sale order's decision and how its units come back.
final class SaleTests: XCTestCase {
    let now = Fx.t0

    private func body(_ changes: [(String, JSON?)] = []) -> JSON {
        var fields: [(String, JSON)] = [("id", .string("s1")), ("product", .string("p1")), ("price", .int(100)),
                                        ("quantity", .int(10)), ("starts_at", .int(now + 60_000)), ("ends_at", .int(now + 120_000))]
        for (name, value) in changes {
            fields.removeAll { $0.0 == name }
            if let value { fields.append((name, value)) }
        }
        return .object(fields)
    }

    private func refused(_ changes: [(String, JSON?)], naming field: String, file: StaticString = #filePath, line: UInt = #line) {
        guard case .failure(let e) = SaleSpec.decode(body(changes), now: now) else {
            return XCTFail("accepted \(changes)", file: file, line: line)
        }
        XCTAssertEqual(e.code, .badRequest, file: file, line: line)
        XCTAssertTrue(e.message.contains("\"\(field)\""), "\(e.message) names \(field)", file: file, line: line)
    }

    func testAValidBodyAndItsDefaults() throws {
        let spec = try SaleSpec.decode(body(), now: now).get()
        XCTAssertEqual(spec, SaleSpec(id: "s1", product: "p1", price: 100, quantity: 10, startsAt: now + 60_000, endsAt: now + 120_000,
                                      perUser: 1))
        XCTAssertEqual(try SaleSpec.decode(body([("per_user", .int(10)), ("price", .int(0))]), now: now).get().perUser, 10)
        XCTAssertEqual(try SaleSpec.decode(body([("starts_at", .int(now - 5_000))]), now: now).get().startsAt, now - 5_000,
                       "a sale may start at once")
    }

    func testEveryBadInputIsRefusedNamingItsField() {
        refused([("id", nil)], naming: "id")
        refused([("id", .string("a b"))], naming: "id")
        refused([("product", .int(1))], naming: "product")
        refused([("product", .string(String(repeating: "p", count: 65)))], naming: "product")
        refused([("price", .int(-1))], naming: "price")
        refused([("price", .double(1.5))], naming: "price")
        refused([("price", .string("100"))], naming: "price")
        refused([("price", .int(1_000_000_000_001))], naming: "price")
        refused([("quantity", .int(0))], naming: "quantity")
        refused([("quantity", .int(100_001))], naming: "quantity")
        refused([("quantity", nil)], naming: "quantity")
        refused([("starts_at", .string("soon"))], naming: "starts_at")
        refused([("ends_at", nil)], naming: "ends_at")
        refused([("ends_at", .int(now + 60_000))], naming: "ends_at")
        refused([("starts_at", .int(now - 20_000)), ("ends_at", .int(now - 10_000))], naming: "ends_at")
        refused([("ends_at", .int(now))], naming: "ends_at")
        refused([("per_user", .int(0))], naming: "per_user")
        refused([("per_user", .int(11))], naming: "per_user")
        refused([("per_user", .double(1e30))], naming: "per_user")
        refused([("per_user", .double(9_223_372_036_854_775_808.0))], naming: "per_user")
        refused([("price", .int(1_000_000_000_000)), ("quantity", .int(100)), ("per_user", .int(11))], naming: "per_user")
    }

    private func sale(remaining: Int = 5, closed: Bool = false) -> Sale {
        Sale(spec: SaleSpec(id: "s1", product: "p1", price: 100, quantity: 10, startsAt: now, endsAt: now + 60_000, perUser: 2),
             title: "Steam key", currency: "CNY", merchant: "m1", nonce: "00112233445566ff", remaining: remaining, sold: 10 - remaining,
             closed: closed)
    }

    func testTheSaleTimerMemberAndChannel() {
        XCTAssertEqual(TimerMember("sale:p1/s1"), .sale(product: "p1", sale: "s1"))
        XCTAssertEqual(TimerMember.sale(product: "p1", sale: "s1").member, "sale:p1/s1")
        XCTAssertNil(TimerMember("sale:p1"))
        XCTAssertNil(TimerMember("sale:/s1"))
        XCTAssertEqual(Channel("sale:s1"), Channel.sale("s1"))
        XCTAssertEqual(Channel.sale("s1").description, "sale:s1")
    }

    func testStateFollowsTheClockTheCountsAndTheClose() {
        XCTAssertEqual(sale().state(at: now - 1), .scheduled)
        XCTAssertEqual(sale().state(at: now), .open)
        XCTAssertEqual(sale(remaining: 0).state(at: now), .soldOut)
        XCTAssertEqual(sale().state(at: now + 60_000), .closed)
        XCTAssertEqual(sale(closed: true).state(at: now - 1), .closed)
        XCTAssertTrue(sale().isLive(at: now + 59_999))
        XCTAssertFalse(sale(closed: true).isLive(at: now))
    }

    func testTheSaleObjectAndItsRecord() {
        XCTAssertEqual(sale(remaining: 4).json(at: now).serialized(),
                       #"{"id":"s1","product":"p1","title":"Steam key","price":100,"currency":"CNY","quantity":10,"remaining":4,"sold":6,"per_user":2,"starts_at":\#(now),"ends_at":\#(now + 60_000),"state":"open"}"#)
        let record = Dictionary(uniqueKeysWithValues: sale().record)
        XCTAssertEqual(Sale(record: record), sale())
        XCTAssertNil(Sale(record: record.filter { $0.key != "nonce" }))
    }

    func testRefusalsMapToTheContractsErrors() {
        XCTAssertEqual(SaleRefusal.unknown.error(sale: "s1"), GatewayError(.notFound, "no sale s1"))
        XCTAssertEqual(SaleRefusal.stale.error(sale: "s1"), GatewayError(.notFound, "no sale s1"))
        XCTAssertEqual(SaleRefusal.tooEarly(retryAfterMs: 1500).error(sale: "s1"),
                       GatewayError(.badRequest, "sale s1 opens in 1500 ms", retryAfterMs: 1500))
        XCTAssertEqual(SaleRefusal.ended.error(sale: "s1"), GatewayError(.gone, "sale s1 has ended"))
        XCTAssertEqual(SaleRefusal.soldOut.error(sale: "s1"), GatewayError(.conflict, "sold out"))
        XCTAssertEqual(SaleRefusal.onlyLeft(2).error(sale: "s1"), GatewayError(.conflict, "only 2 left"))
        XCTAssertEqual(SaleRefusal.overLimit(held: 1, perUser: 2).error(sale: "s1"),
                       GatewayError(.forbidden, "at most 2 per buyer in this sale (you hold 1)"))
    }

    private var rules: OrderRules {
        var times = Fx.times
        times.saleTTL = 300_000
        return OrderRules(times: times)
    }

    func testASaleOrderIsAtTheSalePriceHoldsItsUnitsAndWaitsForPayment() throws {
        let d = rules.createSaleOrder(sale(), buyer: "u1", quantity: 2, now: now, orderID: "o-1")
        let order = try XCTUnwrap(d.savedOrder)
        XCTAssertEqual(order.sale, "s1")
        XCTAssertEqual(order.amount, 200, "price * quantity, no level discount")
        XCTAssertEqual(order.quantity, 2)
        XCTAssertEqual(order.status, .pendingPayment)
        XCTAssertEqual(order.expiresAt, now + 300_000)
        XCTAssertNil(order.level)
        XCTAssertEqual(d.preconditions, [.orderAbsent("o-1")])
        XCTAssertEqual(d.effects, [
            .saveOrder(order), .takeSaleUnits(order: "o-1", product: "p1", sale: "s1", user: "u1", count: 2),
            .schedule(order: "o-1", .payment, at: now + 300_000), Fx.statusPush("u1", order),
        ])
        XCTAssertEqual(order.json(for: .user("u1"))["sale"]?.stringValue, "s1")
        XCTAssertEqual(Order(record: Dictionary(uniqueKeysWithValues: order.record)), order, "the record keeps the sale")
        let normal = try XCTUnwrap(Fx.rules.create(Fx.request(), product: Fx.product, now: now, fresh: Fx.fresh).get().savedOrder)
        XCTAssertFalse(normal.record.contains { $0.0 == "sale" }, "other orders' records are as they were")
        XCTAssertNil(normal.json(for: .shop)["sale"])
    }

    func testAnExpiredOrCanceledSaleOrderGivesItsUnitsBack() throws {
        var order = try XCTUnwrap(rules.createSaleOrder(sale(), buyer: "u1", quantity: 2, now: now, orderID: "o-1").savedOrder)
        order.keyIDs = ["k1", "k2"]
        let back = Effect.returnSaleUnits(order: "o-1", product: "p1", sale: "s1", user: "u1", count: 2)
        let expired = rules.expire(order, .payment, payment: nil, now: order.expiresAt)
        XCTAssertEqual(expired.savedOrder?.status, .canceled)
        XCTAssertTrue(expired.effects.contains(back))
        XCTAssertFalse(expired.effects.contains { if case .returnKeys = $0 { true } else { false } })
        XCTAssertEqual(expired.events.first?.data["sale"]?.stringValue, "s1", "the event says which sale")
        let canceled = try rules.cancel(order, now: now).get()
        XCTAssertTrue(canceled.effects.contains(back))
        XCTAssertTrue(rules.expire(order, .payment, payment: nil, now: order.expiresAt - 1).effects.allSatisfy {
            if case .returnSaleUnits = $0 { false } else { true }
        }, "not before its time")
    }

    func testAPaidSaleOrderIsDeliveredWithTheUnitsItHolds() throws {
        var order = try XCTUnwrap(rules.createSaleOrder(sale(), buyer: "u1", quantity: 2, now: now, orderID: "o-1").savedOrder)
        order.keyIDs = ["k1", "k2"]
        let payment = Payment(id: "pay-1", order: "o-1", payer: "u1", amount: 200, currency: "CNY", status: .created, createdAt: now,
                              tradeNo: nil, version: 1)
        let d = try rules.notify(Fx.notice(payment), payment: payment, order: order, stock: 0, now: now + 1_000).get()
        XCTAssertEqual(d.savedOrder?.status, .delivered, "no stock needed")
        XCTAssertFalse(d.effects.contains { if case .allocateKeys = $0 { true } else { false } }, "it takes no more keys")
        XCTAssertEqual(d.events.first { $0.type == .orderDelivered }?.data["sale"]?.stringValue, "s1")
    }
}
