import XCTest
import GatewayProtocol
@testable import OrderCore

/// The payments ledger (contract 4.4): late successes, notify outcomes, `refund_required`
/// until the shop's `refunded` call, and the payment's provider and update time.
final class LedgerTests: XCTestCase {
    let rules = Fx.rules
    let now = Fx.t0 + 60_000

    func failed(_ r: OrderRequest = Fx.request()) throws -> (Order, Payment) {
        let o = try create(r)
        let p = try makePayment(o, payer: r.kind == .friendpay ? "u2" : "u1")
        let d = try success(rules.notify(Fx.notice(p, .failed, tradeNo: "T-F"), payment: p, order: o, stock: 5, now: now))
        XCTAssertEqual(NotifyOutcome(d), .failed)
        return (o, try XCTUnwrap(d.savedPayment))
    }

    func owed() throws -> Payment {
        let (o, p) = try pay(try create(Fx.request()), payer: "u1")
        return try XCTUnwrap(try success(rules.refund(o, payment: p, now: now)).savedPayment)
    }

    // MARK: Late success

    func testSuccessForAFailedPaymentPaysTheOrder() throws {
        let (o, f) = try failed()
        let d = try success(rules.notify(Fx.notice(f, tradeNo: "T-2"), payment: f, order: o, stock: 5, now: now + 5))
        XCTAssertEqual(d.preconditions.prefix(2), [.paymentVersion("pay-1", 2), .orderVersion("o-1", 1)])
        XCTAssertEqual(d.savedOrder?.status, .delivered)
        XCTAssertEqual(d.savedOrder?.payment, "pay-1")
        XCTAssertEqual(d.savedPayment?.status, .succeeded)
        XCTAssertEqual(d.savedPayment?.tradeNo, "T-2")
        XCTAssertEqual(d.savedPayment?.version, 3)
        XCTAssertEqual(d.savedPayment?.updatedAt, now + 5)
        XCTAssertEqual(NotifyOutcome(d), .paid)
    }

    func testLateSuccessKeepsTheTradeNumberWhenTheNotifyHasNone() throws {
        let (o, f) = try failed()
        let d = try success(rules.notify(Fx.notice(f, tradeNo: ""), payment: f, order: o, stock: 5, now: now + 5))
        XCTAssertEqual(d.savedPayment?.tradeNo, "T-F")
    }

    func testLateSuccessForAnOrderNoLongerPayableIsRefundRequired() throws {
        let (o, f) = try failed(Fx.request(.friendpay, friend: "u2"))
        let (paid, _) = try pay(o, payer: "u9", id: "pay-2")
        let d = try success(rules.notify(Fx.notice(f), payment: f, order: paid, stock: 5, now: now + 5))
        XCTAssertNil(d.savedOrder)
        XCTAssertEqual(d.savedPayment?.status, .refundRequired)
        XCTAssertEqual(d.pushes("payment.refund_required").map(\.user), ["u2"])
        XCTAssertEqual(NotifyOutcome(d), .refundRequired)
    }

    func testFailedAgainForAFailedPaymentIsADuplicate() throws {
        let (o, f) = try failed()
        let d = try success(rules.notify(Fx.notice(f, .failed), payment: f, order: o, stock: 5, now: now + 5))
        XCTAssertEqual(d, Decision())
        XCTAssertEqual(NotifyOutcome(d), .duplicate)
    }

    // MARK: Outcomes and provider

    func testOutcomesOfTheNotify() throws {
        let o = try create(Fx.request())
        let p = try makePayment(o, payer: "u1")
        let first = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 5, now: now))
        XCTAssertEqual(NotifyOutcome(first), .paid)
        let abnormal = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 0, now: now))
        XCTAssertEqual(abnormal.savedOrder?.status, .abnormal)
        XCTAssertEqual(NotifyOutcome(abnormal), .paid, "money taken for an order that waits for keys")
        let again = try success(rules.notify(Fx.notice(p), payment: first.savedPayment, order: first.savedOrder, stock: 4, now: now))
        XCTAssertEqual(NotifyOutcome(again), .duplicate)
    }

    func testNotifyRecordsItsProvider() throws {
        let o = try create(Fx.request())
        let p = try makePayment(o, payer: "u1")
        XCTAssertNil(p.provider)
        XCTAssertEqual(p.updatedAt, p.createdAt)
        var n = Fx.notice(p)
        XCTAssertEqual(n.provider, "hmac")
        n.provider = "alipay"
        let d = try success(rules.notify(n, payment: p, order: o, stock: 5, now: now))
        XCTAssertEqual(d.savedPayment?.provider, "alipay")
        XCTAssertEqual(d.savedPayment?.updatedAt, now)
    }

    // MARK: The shop's refunded call

    func testShopRefundLeavesThePaymentRefundRequired() throws {
        let p = try owed()
        XCTAssertEqual(p.status, .refundRequired)
        XCTAssertEqual(p.updatedAt, now)
    }

    func testRefundedCallSettlesARefundRequiredPayment() throws {
        let p = try owed()
        let d = try success(rules.markRefunded(p, id: p.id, refundNo: "R-1", now: now + 7))
        XCTAssertEqual(d.preconditions, [.paymentVersion("pay-1", p.version)])
        var settled = p
        settled.status = .refunded
        settled.refundNo = "R-1"
        settled.updatedAt = now + 7
        settled.version = p.version + 1
        XCTAssertEqual(d.effects, [
            .savePayment(settled),
            .push(user: "u1", type: "payment.refunded", data: .object([
                ("payment", .string("pay-1")), ("order", .string("o-1")), ("amount", .int(1999)),
                ("currency", .string("CNY")), ("reason", .string("refund sent")), ("refund_no", .string("R-1")),
            ])),
        ])
        // The same call again changes nothing; another refund number is a conflict.
        XCTAssertEqual(try success(rules.markRefunded(settled, id: p.id, refundNo: "R-1", now: now + 8)), Decision())
        assertFailure(rules.markRefunded(settled, id: p.id, refundNo: "R-2", now: now + 8), .conflict)
    }

    func testRefundedCallForAnyOtherPaymentIsConflictOrNotFound() throws {
        let p = try owed()
        for status in [PaymentStatus.created, .succeeded, .failed] {
            var q = p
            q.status = status
            assertFailure(rules.markRefunded(q, id: p.id, refundNo: "R-1", now: now), .conflict, "\(status)")
        }
        assertFailure(rules.markRefunded(nil, id: "pay-x", refundNo: "R-1", now: now), .notFound)
    }

    func testRefundNumberDecoding() throws {
        XCTAssertEqual(try success(RefundConfirmation.decode(try parse(#"{"refund_no":"R-2026-1"}"#))), "R-2026-1")
        for bad in [#"{}"#, #"{"refund_no":""}"#, #"{"refund_no":"a b"}"#, #"{"refund_no":12}"#,
                    "{\"refund_no\":\"\(String(repeating: "x", count: 129))\"}"] {
            assertFailure(RefundConfirmation.decode(try parse(bad)), .badRequest, bad)
        }
    }

    // MARK: Records

    func testPaymentJSONIsTheLedgerEntry() throws {
        var p = try owed()
        XCTAssertEqual(p.json.serialized(), #"{"id":"pay-1","order":"o-1","payer":"u1","amount":1999,"currency":"CNY","status":"refund_required","trade_no":"T-1","provider":"hmac","created_at":\#(Fx.t0 + 1000),"updated_at":\#(now)}"#)
        p.refundNo = "R-1"
        XCTAssertEqual(p.json["refund_no"], .string("R-1"))
        let fresh = try makePayment(try create(Fx.request()), payer: "u1")
        XCTAssertEqual(fresh.json["trade_no"], .null)
        XCTAssertEqual(fresh.json["provider"], .null)
    }

    func testRecordWrittenBeforeTheLedgerReadsWithItsCreationTime() throws {
        let p = try makePayment(try create(Fx.request()), payer: "u1")
        var old: [String: String] = [:]
        for (k, v) in p.record where !["provider", "updated_at", "refund_no"].contains(k) { old[k] = v }
        let read = try XCTUnwrap(Payment(record: old))
        XCTAssertEqual(read.updatedAt, p.createdAt)
        XCTAssertNil(read.provider)
        XCTAssertNil(read.refundNo)
    }
}
