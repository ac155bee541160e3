import XCTest
import GatewayProtocol
@testable import OrderCore

/// Shared values and helpers of the order core tests. Times are in milliseconds.
enum Fx {
    static let orderTTL: Int64 = 900_000
    static let giftTTL: Int64 = 86_400_000
    static let friendpayTTL: Int64 = 1_800_000
    static let grace: Int64 = 43_200_000
    static let times = CommerceTimes(orderTTL: orderTTL, giftTTL: giftTTL, friendpayTTL: friendpayTTL, paymentGrace: grace)
    static let rules = OrderRules(times: times)
    static let product = Product(id: "p1", merchant: "m1", title: "Steam key", price: 1999, currency: "CNY")
    static let t0: Int64 = 1_763_900_000_000
    static let fresh = FreshIDs(order: "o-1", giftCode: "g-1", payCode: "f-1")

    /// `{order, product, kind, status, amount, currency}` of an `order.status` push.
    static func statusData(_ o: Order) -> JSON {
        .object([("order", .string(o.id)), ("product", .string(o.product)), ("kind", .string(o.kind.rawValue)),
                 ("status", .string(o.status.rawValue)), ("amount", .int(o.amount)), ("currency", .string(o.currency))])
    }

    static func statusPush(_ user: String, _ o: Order) -> Effect {
        .push(user: user, type: "order.status", data: statusData(o))
    }

    static func refundRequiredPush(_ p: Payment, reason: String) -> Effect {
        .push(user: p.payer, type: "payment.refund_required", data: .object([
            ("payment", .string(p.id)), ("order", .string(p.order)), ("amount", .int(p.amount)),
            ("currency", .string(p.currency)), ("reason", .string(reason)),
        ]))
    }

    static func request(_ kind: OrderKind = .normal, buyer: String = "u1", quantity: Int = 1, giftTo: String? = nil,
                        message: String? = nil, friend: String? = nil, key: String? = nil) -> OrderRequest {
        var r = OrderRequest(buyer: buyer, product: product.id, quantity: quantity, kind: kind)
        r.giftTo = giftTo
        r.giftMessage = message
        r.friend = friend
        r.idempotencyKey = key
        return r
    }

    static func notice(_ p: Payment, _ outcome: PaymentNotify.Outcome = .success, tradeNo: String = "T-1") -> PaymentNotify {
        PaymentNotify(payment: p.id, order: p.order, amount: p.amount, currency: p.currency, outcome: outcome, tradeNo: tradeNo)
    }
}

struct Push: Equatable {
    var user: String
    var type: String
    var data: JSON
}

extension Decision {
    var pushes: [Push] {
        effects.compactMap { if case .push(let u, let t, let d) = $0 { return Push(user: u, type: t, data: d) } else { return nil } }
    }

    func pushes(_ type: String) -> [Push] { pushes.filter { $0.type == type } }
}

/// Helpers that drive orders through the rules the way the store would.
extension XCTestCase {
    func success<T>(_ r: Result<T, GatewayError>, file: StaticString = #filePath, line: UInt = #line) throws -> T {
        switch r {
        case .success(let v): return v
        case .failure(let e):
            XCTFail("expected success, got \(e.code.rawValue): \(e.message)", file: file, line: line)
            throw e
        }
    }

    func assertFailure<T>(_ r: Result<T, GatewayError>, _ code: ErrorCode, _ note: String = "",
                          file: StaticString = #filePath, line: UInt = #line) {
        switch r {
        case .success(let v): XCTFail("expected \(code.rawValue), got success \(v) \(note)", file: file, line: line)
        case .failure(let e): XCTAssertEqual(e.code, code, "\(e.message) \(note)", file: file, line: line)
        }
    }

    /// The effects equal `expected` as a multiset (order does not matter, counts do). Events
    /// are left out: `EventTests` checks them, in their order.
    func assertEffects(_ d: Decision, _ expected: [Effect], file: StaticString = #filePath, line: UInt = #line) {
        var rest = d.effects.filter { if case .event = $0 { false } else { true } }
        var missing: [Effect] = []
        for e in expected {
            if let i = rest.firstIndex(of: e) { rest.remove(at: i) } else { missing.append(e) }
        }
        XCTAssertTrue(missing.isEmpty, "missing effects: \(missing)\nactual: \(d.effects)", file: file, line: line)
        XCTAssertTrue(rest.isEmpty, "unexpected effects: \(rest)\nactual: \(d.effects)", file: file, line: line)
        assertNoKeysInPushes(d, file: file, line: line)
    }

    /// Card keys never appear in a push (PROTOCOL.md 2.3).
    func assertNoKeysInPushes(_ d: Decision, file: StaticString = #filePath, line: UInt = #line) {
        for p in d.pushes {
            XCTAssertNil(p.data["keys"], "push \(p.type) carries keys", file: file, line: line)
            XCTAssertFalse(p.data.serialized().contains("k-"), "push \(p.type) carries a key id", file: file, line: line)
        }
    }

    func create(_ r: OrderRequest, now: Int64 = Fx.t0, fresh: FreshIDs = Fx.fresh,
                file: StaticString = #filePath, line: UInt = #line) throws -> Order {
        let d = try success(Fx.rules.create(r, product: Fx.product, now: now, fresh: fresh), file: file, line: line)
        return try XCTUnwrap(d.savedOrder, file: file, line: line)
    }

    func makePayment(_ o: Order, payer: String, id: String = "pay-1", now: Int64 = Fx.t0 + 1000,
                     file: StaticString = #filePath, line: UInt = #line) throws -> Payment {
        let d = try success(Fx.rules.createPayment(order: o, payer: payer, paymentID: id, now: now), file: file, line: line)
        return try XCTUnwrap(d.savedPayment, file: file, line: line)
    }

    /// Pays `o` with a success notify and applies the decision as the store would
    /// (allocated keys get ids `k-<order>-<n>`). Returns the saved order and payment.
    func pay(_ o: Order, payer: String, id: String = "pay-1", now: Int64 = Fx.t0 + 2000, stock: Int = 100,
             file: StaticString = #filePath, line: UInt = #line) throws -> (Order, Payment) {
        let p = try makePayment(o, payer: payer, id: id, now: now - 1000, file: file, line: line)
        let d = try success(Fx.rules.notify(Fx.notice(p), payment: p, order: o, stock: stock, now: now), file: file, line: line)
        var saved = try XCTUnwrap(d.savedOrder, file: file, line: line)
        for case .allocateKeys(order: let order, product: _, count: let count) in d.effects {
            saved.keyIDs = (1...count).map { "k-\(order)-\($0)" }
        }
        return (saved, try XCTUnwrap(d.savedPayment, file: file, line: line))
    }

    func parse(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> JSON {
        do { return try JSON.parse(text) } catch {
            XCTFail("bad test JSON \(text): \(error)", file: file, line: line)
            throw error
        }
    }
}
