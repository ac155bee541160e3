import XCTest
import GatewayProtocol
@testable import OrderCore

/// Validity memberships (contract 4.6): what deliveries, refunds and the `mem:` timer decide.
final class MembershipRulesTests: XCTestCase {
    let rules = Fx.rules
    let day = OrderRules.dayMs
    let product = Product(id: "p1", merchant: "m1", title: "VIP month", price: 1999, currency: "CNY", validityDays: 30)
    let paidAt = Fx.t0 + 2000

    /// A normal order of `product` paid by its buyer, delivered on `membership`.
    func deliver(_ membership: Linked<Membership>, product: Product? = nil, now: Int64? = nil) throws -> Decision {
        let o = try create(Fx.request())
        let now = now ?? paidAt
        let p = try makePayment(o, payer: "u1", now: now - 1000)
        return try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 10, now: now,
                                        product: product ?? self.product, membership: membership))
    }

    func saved(_ d: Decision) -> Membership? {
        for case .saveMembership(let m) in d.effects.reversed() { return m }
        return nil
    }

    func reminders(_ d: Decision) -> [Effect] {
        d.effects.filter {
            switch $0 {
            case .scheduleReminder, .unscheduleReminder: true
            default: false
            }
        }
    }

    func testADeliveryStartsAMembershipRemindedThreeDaysBeforeItsEnd() throws {
        let d = try deliver(.absent)
        let m = try XCTUnwrap(saved(d))
        XCTAssertEqual(m, Membership(product: "p1", user: "u1", startsAt: paidAt, endsAt: paidAt + 30 * day, remindedAt: paidAt))
        XCTAssertEqual(d.savedOrder?.membershipAddedMs, 30 * day)
        XCTAssertTrue(d.preconditions.contains(.membershipRecord(product: "p1", user: "u1", record: "")))
        XCTAssertEqual(reminders(d), [.scheduleReminder(product: "p1", user: "u1", at: m.endsAt - 3 * day)])
        XCTAssertTrue(d.effects.contains(.indexMembership(user: "u1", product: "p1")))
        XCTAssertTrue(d.pushes.allSatisfy { !$0.type.hasPrefix("membership.") }, "no push of its own at delivery")
    }

    func testARenewalExtendsFromTheCurrentEndAndMovesTheReminder() throws {
        let live = Membership(product: "p1", user: "u1", startsAt: Fx.t0 - 10 * day, endsAt: Fx.t0 + 20 * day, remindedAt: Fx.t0 - 10 * day)
        let d = try deliver(.present(live))
        let m = try XCTUnwrap(saved(d))
        XCTAssertEqual(m.startsAt, live.startsAt)
        XCTAssertEqual(m.endsAt, live.endsAt + 30 * day)
        XCTAssertEqual(m.remindedAt, paidAt, "stages before the renewal are not sent")
        XCTAssertTrue(d.preconditions.contains(.membershipRecord(product: "p1", user: "u1", record: live.record)))
        XCTAssertEqual(reminders(d), [.scheduleReminder(product: "p1", user: "u1", at: m.endsAt - 3 * day)])
    }

    func testEachUnitOfTheOrderGivesItsDays() throws {
        let o = try create(Fx.request(quantity: 3))
        let p = try makePayment(o, payer: "u1", now: paidAt - 1000)
        let d = try success(rules.notify(Fx.notice(p), payment: p, order: o, stock: 10, now: paidAt, product: product, membership: .absent))
        XCTAssertEqual(saved(d)?.endsAt, paidAt + 90 * day)
        XCTAssertEqual(d.savedOrder?.membershipAddedMs, 90 * day)
    }

    func testADeliveryAfterTheEndStartsAgainFromNow() throws {
        let over = Membership(product: "p1", user: "u1", startsAt: Fx.t0 - 40 * day, endsAt: Fx.t0 - 10 * day, remindedAt: Fx.t0 - 10 * day)
        let m = try XCTUnwrap(saved(try deliver(.present(over))))
        XCTAssertEqual(m.startsAt, paidAt)
        XCTAssertEqual(m.endsAt, paidAt + 30 * day)
    }

    func testNoValidityOrNoLinkGivesNoMembership() throws {
        for d in [try deliver(.absent, product: Fx.product), try deliver(.notLinked)] {
            XCTAssertNil(saved(d))
            XCTAssertNil(d.savedOrder?.membershipAddedMs)
            XCTAssertEqual(d.savedOrder?.status, .delivered)
            XCTAssertTrue(reminders(d).isEmpty)
            XCTAssertFalse(d.preconditions.contains { if case .membershipRecord = $0 { true } else { false } })
        }
    }

    func testAGiftClaimStartsTheClaimersMembership() throws {
        let o = try create(Fx.request(.gift, giftTo: "u3"))
        let (paid, _) = try pay(o, payer: "u1", now: paidAt)
        XCTAssertNil(paid.membershipAddedMs, "a paid gift is not delivered yet")
        let d = try success(rules.claim(paid, by: "u3", now: paidAt + 5000, product: product, membership: .absent))
        let m = try XCTUnwrap(saved(d))
        XCTAssertEqual(m.user, "u3")
        XCTAssertEqual(m.endsAt, paidAt + 5000 + 30 * day)
        XCTAssertTrue(d.effects.contains(.indexMembership(user: "u3", product: "p1")))
        XCTAssertEqual(d.savedOrder?.membershipAddedMs, 30 * day)
    }

    func testRefundingTheOnlyOrderEndsTheMembershipWithoutAPush() throws {
        let d = try deliver(.absent)
        let order = try XCTUnwrap(d.savedOrder), m = try XCTUnwrap(saved(d))
        let r = try success(rules.refund(order, payment: nil, now: paidAt + day, membership: .present(m)))
        let after = try XCTUnwrap(saved(r))
        XCTAssertFalse(after.isLive(at: paidAt + day))
        XCTAssertEqual(after.endsAt, m.startsAt)
        XCTAssertEqual(reminders(r), [.unscheduleReminder(product: "p1", user: "u1")])
        XCTAssertTrue(r.preconditions.contains(.membershipRecord(product: "p1", user: "u1", record: m.record)))
        XCTAssertTrue(r.pushes.allSatisfy { !$0.type.hasPrefix("membership.") })
    }

    func testRefundingOneOfTwoShortensAndReschedules() throws {
        let live = Membership(product: "p1", user: "u1", startsAt: Fx.t0 - 10 * day, endsAt: Fx.t0 + 20 * day, remindedAt: Fx.t0)
        let second = try XCTUnwrap(try deliver(.present(live)).savedOrder)
        let extended = Membership(product: "p1", user: "u1", startsAt: live.startsAt, endsAt: live.endsAt + 30 * day, remindedAt: paidAt)
        let now = paidAt + day
        let r = try success(rules.refund(second, payment: nil, now: now, membership: .present(extended)))
        let after = try XCTUnwrap(saved(r))
        XCTAssertEqual(after.endsAt, live.endsAt)
        XCTAssertTrue(after.isLive(at: now))
        XCTAssertEqual(reminders(r), [.scheduleReminder(product: "p1", user: "u1", at: live.endsAt - 3 * day)])
    }

    func testARefundWithoutAddedTimeLeavesMembershipsAlone() throws {
        let o = try create(Fx.request())
        let (delivered, _) = try pay(o, payer: "u1")
        let m = Membership(product: "p1", user: "u1", startsAt: Fx.t0, endsAt: Fx.t0 + day, remindedAt: Fx.t0)
        let r = try success(rules.refund(delivered, payment: nil, now: paidAt, membership: .present(m)))
        XCTAssertNil(saved(r))
        XCTAssertTrue(reminders(r).isEmpty)
    }

    // MARK: The timer

    func testAnEarlyTimerIsOnlyPutBack() {
        let m = Membership(product: "p1", user: "u1", startsAt: Fx.t0, endsAt: Fx.t0 + 30 * day, remindedAt: Fx.t0)
        XCTAssertEqual(rules.remind(m, now: Fx.t0 + day),
                       Decision(effects: [.scheduleReminder(product: "p1", user: "u1", at: m.endsAt - 3 * day)]))
    }

    func testAReminderSendsTheStageAndSchedulesTheNext() throws {
        let m = Membership(product: "p1", user: "u1", startsAt: Fx.t0, endsAt: Fx.t0 + 30 * day, remindedAt: Fx.t0)
        let now = m.endsAt - 3 * day + 5
        let d = rules.remind(m, now: now)
        var sent = m
        sent.remindedAt = m.endsAt - 3 * day
        let data: JSON = .object([("product", .string("p1")), ("ends_at", .int(m.endsAt))])
        assertEffects(d, [.saveMembership(sent), .push(user: "u1", type: "membership.expiring", data: data),
                          .scheduleReminder(product: "p1", user: "u1", at: m.endsAt - day)])
        XCTAssertEqual(d.preconditions, [.membershipRecord(product: "p1", user: "u1", record: m.record)])
        XCTAssertEqual(d.events.map(\.type), [.membershipExpiring])
        XCTAssertEqual(d.events.first?.key, "membership:p1/u1")
        XCTAssertEqual(d.events.first?.data.serialized(), #"{"product":"p1","user":"u1","ends_at":\#(m.endsAt)}"#)
    }

    func testAfterADowntimeOnlyTheLatestDueStageIsSent() {
        let m = Membership(product: "p1", user: "u1", startsAt: Fx.t0, endsAt: Fx.t0 + 30 * day, remindedAt: Fx.t0)
        let d = rules.remind(m, now: m.endsAt - day + 10)
        XCTAssertEqual(d.pushes.map(\.type), ["membership.expiring"])
        XCTAssertEqual(d.effects.last, .scheduleReminder(product: "p1", user: "u1", at: m.endsAt))
        let late = rules.remind(m, now: m.endsAt + day)
        XCTAssertEqual(late.pushes.map(\.type), ["membership.expired"], "no stale expiring once it ended")
        XCTAssertTrue(late.events.isEmpty, "the contract has no membership.expired event")
    }

    func testTheEndPushesExpiredAndUnschedulesNeverBoth() {
        var m = Membership(product: "p1", user: "u1", startsAt: Fx.t0, endsAt: Fx.t0 + 30 * day, remindedAt: Fx.t0)
        m.remindedAt = m.endsAt - day
        let d = rules.remind(m, now: m.endsAt)
        XCTAssertEqual(d.pushes.map(\.type), ["membership.expired"])
        XCTAssertEqual(reminders(d), [.unscheduleReminder(product: "p1", user: "u1")])
        var done = m
        done.remindedAt = m.endsAt
        XCTAssertEqual(rules.remind(done, now: m.endsAt + 1), Decision(), "a finished membership decides nothing")
    }

    func testRemindersFollowTheConfiguredList() {
        let custom = OrderRules(times: Fx.times, remindersBeforeMs: [1_000])
        XCTAssertEqual(custom.nextReminder(endsAt: 10_000, after: 0), 9_000)
        XCTAssertEqual(custom.nextReminder(endsAt: 10_000, after: 9_000), 10_000)
        XCTAssertNil(custom.nextReminder(endsAt: 10_000, after: 10_000))
        let none = OrderRules(times: Fx.times, remindersBeforeMs: [])
        XCTAssertEqual(none.nextReminder(endsAt: 10_000, after: 0), 10_000, "expired still comes at the end")
    }

    func testTheRecordRoundTrips() {
        let m = Membership(product: "p1", user: "u1", startsAt: 1, endsAt: 2, remindedAt: 3)
        XCTAssertEqual(m.record, "1|2|3")
        XCTAssertEqual(Membership(product: "p1", user: "u1", record: m.record), m)
        XCTAssertNil(Membership(product: "p1", user: "u1", record: ""))
        XCTAssertNil(Membership(product: "p1", user: "u1", record: "1|x|3"))
        XCTAssertEqual(Product(record: ["id": "p1", "merchant": "m1", "price": "1", "currency": "CNY", "validity_days": "30"])?.validityDays, 30)
    }
}
