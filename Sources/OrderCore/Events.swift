import GatewayProtocol

/// The state changes the shop must know of (contract 4.4), in the event log.
public enum EventType: String, Sendable, CaseIterable {
    case orderPaid = "order.paid"
    case orderDelivered = "order.delivered"
    case orderAbnormal = "order.abnormal"
    case orderCanceled = "order.canceled"
    case orderRefunded = "order.refunded"
    case paymentRefundRequired = "payment.refund_required"
    case giftClaimed = "gift.claimed"
    case giftDeclined = "gift.declined"
    case giftExpired = "gift.expired"
    case friendpayPaid = "friendpay.paid"
    case productRestocked = "product.restocked"
    case membershipExpiring = "membership.expiring"
    case userDormant = "user.dormant"
}

/// One event as a decision writes it, atomically with its other effects. The log gives it
/// its id; `key` is what webhooks are ordered by (one delivery at a time per key, in log
/// order): the order id for order, payment, gift and friend-pay events.
public struct EventRecord: Equatable, Sendable {
    public var type: EventType
    public var key: String
    public var createdAt: Int64
    /// Never a card key, gift code or pay code: events leave the gateway (webhooks).
    public var data: JSON

    public init(type: EventType, key: String, createdAt: Int64, data: JSON) {
        self.type = type
        self.key = key
        self.createdAt = createdAt
        self.data = data
    }

    /// An order's event: the order as the shop tracks it, without keys or codes.
    static func order(_ type: EventType, _ o: Order, at now: Int64) -> EventRecord {
        var data: [(String, JSON)] = [
            ("order", .string(o.id)), ("product", .string(o.product)), ("kind", .string(o.kind.rawValue)),
            ("status", .string(o.status.rawValue)), ("buyer", .string(o.buyer)), ("owner", .string(o.owner)),
            ("quantity", .int(Int64(o.quantity))), ("amount", .int(o.amount)), ("currency", .string(o.currency)),
        ]
        if let p = o.payment { data.append(("payment", .string(p))) }
        if let by = o.paidBy { data.append(("paid_by", .string(by))) }
        if let level = o.level { data.append(("level", .string(level))) }
        if let sale = o.sale { data.append(("sale", .string(sale))) }
        return EventRecord(type: type, key: o.id, createdAt: now, data: .object(data))
    }

    /// The event of an order's status, when that status is one the shop must know of.
    static func status(_ o: Order, at now: Int64) -> EventRecord? {
        let type: EventType
        switch o.status {
        case .delivered: type = .orderDelivered
        case .abnormal: type = .orderAbnormal
        case .canceled: type = .orderCanceled
        case .refunded: type = .orderRefunded
        case .pendingPayment, .paid: return nil
        }
        return order(type, o, at: now)
    }

    static func refundRequired(_ p: Payment, reason: String, at now: Int64) -> EventRecord {
        EventRecord(type: .paymentRefundRequired, key: p.order, createdAt: now, data: .object([
            ("payment", .string(p.id)), ("order", .string(p.order)), ("payer", .string(p.payer)),
            ("amount", .int(p.amount)), ("currency", .string(p.currency)), ("reason", .string(reason)),
        ]))
    }
}

extension Decision {
    /// The events of the decision, in the order they are written to the log.
    public var events: [EventRecord] {
        effects.compactMap { if case .event(let e) = $0 { e } else { nil } }
    }
}
