import GatewayProtocol

public enum OrderKind: String, Sendable, CaseIterable { case normal, gift, friendpay }

public enum OrderStatus: String, Sendable {
    case pendingPayment = "pending_payment"
    case paid, delivered, canceled, refunded, abnormal
}

public enum GiftStatus: String, Sendable { case pending, claimed, declined, expired }

/// `refund_required`: money was taken that must go back; it stays so until the shop says
/// it sent the money back (`refunded`), so no refund is forgotten.
public enum PaymentStatus: String, Sendable, CaseIterable {
    case created, succeeded, failed
    case refundRequired = "refund_required"
    case refunded
}

/// What the order core needs to know of a product.
public struct Product: Equatable, Sendable {
    public var id: String
    public var merchant: String
    public var title: String
    public var price: Int64
    public var currency: String
    /// Days of membership a delivery gives (`validity_days`, 4.6); nil: not a membership product.
    public var validityDays: Int?
    public init(id: String, merchant: String, title: String, price: Int64, currency: String, validityDays: Int? = nil) {
        self.id = id
        self.merchant = merchant
        self.title = title
        self.price = price
        self.currency = currency
        self.validityDays = validityDays
    }
}

public struct Gift: Equatable, Sendable {
    public var code: String
    public var to: String?
    public var message: String?
    public var status: GiftStatus
    /// Set once the gift is paid: unclaimed gifts expire then.
    public var expiresAt: Int64?
}

/// An order and everything that happened to it. `version` increases with every saved
/// change so that concurrent writers can be detected (compare-and-set).
public struct Order: Equatable, Sendable {
    public var id: String
    public var kind: OrderKind
    public var buyer: String
    public var owner: String
    public var product: String
    public var title: String
    public var quantity: Int
    public var amount: Int64
    public var currency: String
    public var status: OrderStatus
    public var createdAt: Int64
    public var expiresAt: Int64
    public var paidBy: String?
    public var payment: String?
    public var paidAt: Int64?
    public var canceledAt: Int64?
    public var gift: Gift?
    public var payCode: String?
    public var friend: String?
    /// The buyer's member level when the order was created, whose discount its amount took
    /// (`members.levels`); nil without one.
    public var level: String?
    /// The membership time (ms) this order's delivery added (4.6), taken back by its refund.
    public var membershipAddedMs: Int64?
    /// The flash sale (4.8) whose units the order holds; nil for other orders.
    public var sale: String?
    /// Ids of the card keys allocated to this order (never the keys themselves).
    public var keyIDs: [String]
    public var version: Int

    /// Everyone a status push goes to: buyer, owner and payer.
    public var concerned: [String] {
        var users = [buyer]
        if owner != buyer { users.append(owner) }
        if let paidBy, !users.contains(paidBy) { users.append(paidBy) }
        return users
    }
}

public struct Payment: Equatable, Sendable {
    public var id: String
    public var order: String
    public var payer: String
    public var amount: Int64
    public var currency: String
    public var status: PaymentStatus
    public var createdAt: Int64
    public var tradeNo: String?
    public var version: Int
    /// The notify route that settled it: `hmac` (the v1 JSON notify), `alipay`, `wechatpay`, `epay`.
    public var provider: String?
    public var updatedAt: Int64
    /// The shop's reference for the money it sent back (`POST /api/v1/payments/{id}/refunded`).
    public var refundNo: String?

    public init(id: String, order: String, payer: String, amount: Int64, currency: String, status: PaymentStatus,
                createdAt: Int64, tradeNo: String?, version: Int, provider: String? = nil, updatedAt: Int64? = nil,
                refundNo: String? = nil) {
        self.id = id
        self.order = order
        self.payer = payer
        self.amount = amount
        self.currency = currency
        self.status = status
        self.createdAt = createdAt
        self.tradeNo = tradeNo
        self.version = version
        self.provider = provider
        self.updatedAt = updatedAt ?? createdAt
        self.refundNo = refundNo
    }

    /// The payment object of `GET /api/v1/payments/{id}` (contract 4.4).
    public var json: JSON {
        var f: [(String, JSON)] = [
            ("id", .string(id)), ("order", .string(order)), ("payer", .string(payer)), ("amount", .int(amount)),
            ("currency", .string(currency)), ("status", .string(status.rawValue)),
            ("trade_no", tradeNo.map(JSON.string) ?? .null), ("provider", provider.map(JSON.string) ?? .null),
            ("created_at", .int(createdAt)), ("updated_at", .int(updatedAt)),
        ]
        if let refundNo { f.append(("refund_no", .string(refundNo))) }
        return .object(f)
    }
}

/// Who reads an order decides what of it they see.
public enum Viewer: Equatable, Sendable {
    case shop
    case user(String)
    case merchant(String)
}

extension Order {
    /// The order object of PROTOCOL.md 2.5. `keys` are passed in only when the viewer
    /// may see them (the owner of a delivered order, or the shop).
    public func json(for viewer: Viewer, keys: [String]? = nil) -> JSON {
        var f: [(String, JSON)] = [
            ("id", .string(id)), ("kind", .string(kind.rawValue)), ("buyer", .string(buyer)),
            ("owner", .string(owner)), ("product", .string(product)), ("quantity", .int(Int64(quantity))),
            ("amount", .int(amount)), ("currency", .string(currency)), ("status", .string(status.rawValue)),
            ("created_at", .int(createdAt)), ("expires_at", .int(expiresAt)),
        ]
        if let paidBy { f.append(("paid_by", .string(paidBy))) }
        if let gift {
            var g: [(String, JSON)] = []
            if viewer == .shop || viewer == .user(buyer) { g.append(("code", .string(gift.code))) }
            if let to = gift.to { g.append(("to", .string(to))) }
            if let message = gift.message { g.append(("message", .string(message))) }
            g.append(("status", .string(gift.status.rawValue)))
            if let e = gift.expiresAt { g.append(("expires_at", .int(e))) }
            f.append(("gift", .object(g)))
        }
        if let payCode, viewer == .shop || viewer == .user(buyer) { f.append(("pay_code", .string(payCode))) }
        if let friend, kind == .friendpay { f.append(("friend", .string(friend))) }
        if let level { f.append(("level", .string(level))) }
        if let sale { f.append(("sale", .string(sale))) }
        if let keys { f.append(("keys", .array(keys.map { .string($0) }))) }
        return .object(f)
    }

    /// Keys are shown to the owner once the order is delivered; a gift's keys only after it was claimed.
    public func keysVisible(to viewer: Viewer) -> Bool {
        guard status == .delivered, !keyIDs.isEmpty else { return false }
        switch viewer {
        case .shop: return true
        case .user(let u): return u == owner
        case .merchant: return false
        }
    }
}
