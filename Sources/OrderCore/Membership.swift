import GatewayProtocol

/// A validity membership (contract 4.6): what delivered orders of a product with
/// `validity_days` give their owner. Not the product group's membership (`Effect.membership`).
/// Stored as one hash field per user, `<starts_at>|<ends_at>|<reminded_at>`; `remindedAt` is
/// the last reminder stage sent, or the start/renewal time (no stage before it is sent).
public struct Membership: Equatable, Sendable {
    public var product: String
    public var user: String
    public var startsAt: Int64
    public var endsAt: Int64
    public var remindedAt: Int64

    public init(product: String, user: String, startsAt: Int64, endsAt: Int64, remindedAt: Int64) {
        self.product = product
        self.user = user
        self.startsAt = startsAt
        self.endsAt = endsAt
        self.remindedAt = remindedAt
    }

    public init?(product: String, user: String, record: String) {
        let parts = record.split(separator: "|", omittingEmptySubsequences: false)
        guard parts.count == 3, let s = Int64(parts[0]), let e = Int64(parts[1]), let r = Int64(parts[2]) else { return nil }
        self.init(product: product, user: user, startsAt: s, endsAt: e, remindedAt: r)
    }

    public var record: String { "\(startsAt)|\(endsAt)|\(remindedAt)" }

    public func isLive(at now: Int64) -> Bool { endsAt > now }
}

/// What a delivery adds to the owner's membership: checks, effects and the time added.
public struct MembershipChange: Equatable, Sendable {
    public var preconditions: [Precondition]
    public var effects: [Effect]
    public var addedMs: Int64
}

extension OrderRules {
    public static let dayMs: Int64 = 86_400_000
    /// `reminders.before_s`' default, in ms, descending: 3 days and 1 day before the end.
    public static let defaultRemindersBeforeMs: [Int64] = [259_200_000, 86_400_000]

    /// The reminder stages of a membership ending at `endsAt`, in time order: each
    /// `reminders.before_s` before the end, then the end itself (`membership.expired`).
    func reminderStages(endsAt: Int64) -> [Int64] {
        remindersBeforeMs.sorted(by: >).map { endsAt - $0 } + [endsAt]
    }

    /// The first stage strictly after `after`; nil once the end was reminded.
    public func nextReminder(endsAt: Int64, after: Int64) -> Int64? {
        reminderStages(endsAt: endsAt).first { $0 > after }
    }

    /// A delivery of `quantity` of `product` to `owner` (notify's delivered branch, a gift
    /// claim): `validity_days` per unit (each key is one period), from now, or from the end
    /// of a live membership. Nil when the product gives none,
    /// or the order was saved by a version that did not link its memberships (nothing is known).
    public func membershipChange(owner: String, product: Product?, quantity: Int = 1, membership: Linked<Membership>,
                                 now: Int64) -> MembershipChange? {
        guard let product, let days = product.validityDays, days > 0 else { return nil }
        let current: Membership?
        switch membership {
        case .notLinked: return nil
        case .absent: current = nil
        case .present(let m): current = m
        }
        let added = Int64(days) * Self.dayMs * Int64(max(1, quantity))
        var m = Membership(product: product.id, user: owner, startsAt: now, endsAt: now + added, remindedAt: now)
        if let current, current.isLive(at: now) {
            m.startsAt = current.startsAt
            m.endsAt = current.endsAt + added
        }
        var effects: [Effect] = [.saveMembership(m), .indexMembership(user: owner, product: product.id)]
        if let next = nextReminder(endsAt: m.endsAt, after: now) {
            effects.append(.scheduleReminder(product: product.id, user: owner, at: next))
        }
        return MembershipChange(preconditions: [.membershipRecord(product: product.id, user: owner, record: current?.record ?? "")],
                                effects: effects, addedMs: added)
    }

    /// A refund of a delivered order that added time: the membership loses it. Still live:
    /// reminders for the new end; over: kept as a record, its reminders removed, no push.
    func membershipRefund(_ order: Order, membership: Linked<Membership>, now: Int64) -> (Precondition, [Effect])? {
        guard let added = order.membershipAddedMs, added > 0, case .present(let current) = membership else { return nil }
        var m = current
        // Never before its start: time added in an earlier spell is not taken from a later one.
        m.endsAt = max(current.startsAt, current.endsAt - added)
        m.remindedAt = now
        var effects: [Effect] = [.saveMembership(m)]
        if m.isLive(at: now), let next = nextReminder(endsAt: m.endsAt, after: now) {
            effects.append(.scheduleReminder(product: m.product, user: m.user, at: next))
        } else {
            effects.append(.unscheduleReminder(product: m.product, user: m.user))
        }
        return (.membershipRecord(product: m.product, user: m.user, record: current.record), effects)
    }

    /// A due `mem:` timer. Sends the latest due stage only (after a downtime, no burst of
    /// stale reminders); one that fires early is put back; a finished membership changes nothing.
    public func remind(_ m: Membership, now: Int64) -> Decision {
        let stages = reminderStages(endsAt: m.endsAt).filter { $0 > m.remindedAt }
        guard let first = stages.first else { return Decision() }
        guard let stage = stages.last(where: { $0 <= now }) else {
            return Decision(effects: [.scheduleReminder(product: m.product, user: m.user, at: first)])
        }
        var sent = m
        sent.remindedAt = stage
        let expired = stage >= m.endsAt
        let data: JSON = .object([("product", .string(m.product)), ("ends_at", .int(m.endsAt))])
        var d = Decision(preconditions: [.membershipRecord(product: m.product, user: m.user, record: m.record)],
                         effects: [.saveMembership(sent),
                                   .push(user: m.user, type: expired ? "membership.expired" : "membership.expiring", data: data)])
        if !expired {
            d.effects.append(.event(EventRecord(type: .membershipExpiring, key: "membership:\(m.product)/\(m.user)", createdAt: now,
                                                data: .object([("product", .string(m.product)), ("user", .string(m.user)),
                                                               ("ends_at", .int(m.endsAt))]))))
        }
        // Never both: on a cluster the ZREM after the apply would undo the ZADD written ahead.
        if let next = nextReminder(endsAt: m.endsAt, after: stage) {
            d.effects.append(.scheduleReminder(product: m.product, user: m.user, at: next))
        } else {
            d.effects.append(.unscheduleReminder(product: m.product, user: m.user))
        }
        return d
    }
}
