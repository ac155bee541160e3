import GatewayProtocol

/// `POST /api/v1/sales` (contract 4.8), validated: everything past here may do arithmetic
/// on its numbers (price * per_user stays within `Ranges.amount`).
public struct SaleSpec: Equatable, Sendable {
    public var id: String
    public var product: String
    public var price: Int64
    public var quantity: Int
    public var startsAt: Int64
    public var endsAt: Int64
    public var perUser: Int

    public static let maxQuantity = 100_000

    public init(id: String, product: String, price: Int64, quantity: Int, startsAt: Int64, endsAt: Int64, perUser: Int = 1) {
        self.id = id
        self.product = product
        self.price = price
        self.quantity = quantity
        self.startsAt = startsAt
        self.endsAt = endsAt
        self.perUser = perUser
    }

    /// `now`: the node's clock (ms); a sale that already ended is refused.
    public static func decode(_ body: JSON, now: Int64) -> Result<SaleSpec, GatewayError> {
        func bad(_ m: String) -> Result<SaleSpec, GatewayError> { .failure(.badRequest(m)) }
        guard let id = body["id"]?.stringValue, Names.isValidID(id) else { return bad("\"id\" must be a valid id") }
        guard let product = body["product"]?.stringValue, Names.isValidID(product) else {
            return bad("\"product\" must be a valid id")
        }
        guard let price = body["price"]?.intValue, Ranges.price.contains(price) else {
            return bad("\"price\" must be a whole number from 0 to \(Ranges.price.upperBound)")
        }
        guard let quantity = body["quantity"]?.intValue, (1...Int64(maxQuantity)).contains(quantity) else {
            return bad("\"quantity\" must be a whole number from 1 to \(maxQuantity)")
        }
        guard let startsAt = body["starts_at"]?.intValue else { return bad("\"starts_at\" must be a time in ms") }
        guard let endsAt = body["ends_at"]?.intValue else { return bad("\"ends_at\" must be a time in ms") }
        guard endsAt > startsAt else { return bad("\"ends_at\" must be after \"starts_at\"") }
        guard endsAt > now else { return bad("\"ends_at\" is in the past") }
        var perUser: Int64 = 1
        if let p = body["per_user"], !p.isNull {
            guard let n = p.intValue, (1...quantity).contains(n) else {
                return bad("\"per_user\" must be a whole number from 1 to \"quantity\" (\(quantity))")
            }
            perUser = n
        }
        // One buyer's order is at most per_user units: its amount must be one a payment can carry.
        guard price * perUser <= Ranges.amount.upperBound else { return bad("\"per_user\" times \"price\" is too large an amount") }
        return .success(SaleSpec(id: id, product: product, price: price, quantity: Int(quantity), startsAt: startsAt,
                                 endsAt: endsAt, perUser: Int(perUser)))
    }
}

public enum SaleState: String, Sendable {
    case scheduled, open
    case soldOut = "sold_out"
    case closed
}

/// A stored sale (`gw:{product:P}:sale:<S>`) with its live counts.
public struct Sale: Equatable, Sendable {
    public var spec: SaleSpec
    public var title: String
    public var currency: String
    public var merchant: String
    /// Random at creation: a buy carries the nonce of the sale its node cached, so one made
    /// for an earlier sale of a reused id is refused (`stale`), never applied to the new one.
    public var nonce: String
    public var remaining: Int
    /// Units in orders, reserved or paid.
    public var sold: Int
    /// Closed by the API (a sale past `ends_at` is closed without it).
    public var closed: Bool

    public init(spec: SaleSpec, title: String, currency: String, merchant: String, nonce: String, remaining: Int, sold: Int,
                closed: Bool) {
        self.spec = spec
        self.title = title
        self.currency = currency
        self.merchant = merchant
        self.nonce = nonce
        self.remaining = remaining
        self.sold = sold
        self.closed = closed
    }

    public var id: String { spec.id }
    public var product: String { spec.product }

    public func state(at now: Int64) -> SaleState {
        if closed || now >= spec.endsAt { return .closed }
        if now < spec.startsAt { return .scheduled }
        return remaining == 0 ? .soldOut : .open
    }

    /// Whether units go back to it (not to the product's stock).
    public func isLive(at now: Int64) -> Bool { !closed && now < spec.endsAt }

    /// The sale object (contract 4.8).
    public func json(at now: Int64) -> JSON {
        .object([
            ("id", .string(spec.id)), ("product", .string(spec.product)), ("title", .string(title)), ("price", .int(spec.price)),
            ("currency", .string(currency)), ("quantity", .int(Int64(spec.quantity))), ("remaining", .int(Int64(remaining))),
            ("sold", .int(Int64(sold))), ("per_user", .int(Int64(spec.perUser))), ("starts_at", .int(spec.startsAt)),
            ("ends_at", .int(spec.endsAt)), ("state", .string(state(at: now).rawValue)),
        ])
    }

    /// The sale hash's fields (sale_create.lua writes them; `phase`, `stock_at`, `stock_dirty` are the script's own).
    public var record: [(String, String)] {
        [("id", spec.id), ("product", spec.product), ("title", title), ("currency", currency), ("merchant", merchant),
         ("price", String(spec.price)), ("quantity", String(spec.quantity)), ("remaining", String(remaining)),
         ("sold", String(sold)), ("per_user", String(spec.perUser)), ("starts_at", String(spec.startsAt)),
         ("ends_at", String(spec.endsAt)), ("closed", closed ? "1" : "0"), ("nonce", nonce)]
    }

    public init?(record f: [String: String]) {
        func int(_ k: String) -> Int64? { f[k].flatMap { Int64($0) } }
        guard let id = f["id"], let product = f["product"], let price = int("price"), let quantity = int("quantity"),
              let remaining = int("remaining"), let sold = int("sold"), let perUser = int("per_user"),
              let startsAt = int("starts_at"), let endsAt = int("ends_at"), let nonce = f["nonce"] else { return nil }
        self.init(spec: SaleSpec(id: id, product: product, price: price, quantity: Int(quantity), startsAt: startsAt,
                                 endsAt: endsAt, perUser: Int(perUser)),
                  title: f["title"] ?? "", currency: f["currency"] ?? "", merchant: f["merchant"] ?? "", nonce: nonce,
                  remaining: Int(remaining), sold: Int(sold), closed: f["closed"] == "1")
    }
}

/// What sale_buy.lua refused, before any write.
public enum SaleRefusal: Equatable, Sendable {
    case unknown
    /// The sale's nonce is not the one the buy was decided on: the id names another sale now.
    case stale
    case tooEarly(retryAfterMs: Int64)
    case ended
    case soldOut
    case onlyLeft(Int)
    case overLimit(held: Int, perUser: Int)

    /// The answer of `sale.buy` (contract 4.8). `stale` reads as unknown: the node looks the
    /// sale up again once before answering it.
    public func error(sale: String) -> GatewayError {
        switch self {
        case .unknown, .stale: .notFound("no sale \(sale)")
        case .tooEarly(let ms): GatewayError(.badRequest, "sale \(sale) opens in \(ms) ms", retryAfterMs: ms)
        case .ended: GatewayError(.gone, "sale \(sale) has ended")
        case .soldOut: GatewayError(.conflict, "sold out")
        case .onlyLeft(let n): GatewayError(.conflict, "only \(n) left")
        case .overLimit(let held, let perUser): .forbidden("at most \(perUser) per buyer in this sale (you hold \(held))")
        }
    }
}

extension OrderRules {
    /// A `sale.buy`: an order at the sale price holding `quantity` of the sale's units (taken
    /// by the buy script after its sale checks, with the order). No member-level discount and
    /// no risk limits: the sale's own `per_user` is the limit. Pay within `times.saleTTL`.
    public func createSaleOrder(_ sale: Sale, buyer: String, quantity: Int, now: Int64, orderID: String) -> Decision {
        var order = Order(id: orderID, kind: .normal, buyer: buyer, owner: buyer, product: sale.product, title: sale.title,
                          quantity: quantity, amount: sale.spec.price * Int64(quantity), currency: sale.currency,
                          status: .pendingPayment, createdAt: now, expiresAt: now + times.saleTTL, keyIDs: [], version: 1)
        order.sale = sale.id
        var d = Decision(preconditions: [.orderAbsent(order.id)])
        d.effects.append(.saveOrder(order))
        d.effects.append(.takeSaleUnits(order: order.id, product: sale.product, sale: sale.id, user: buyer, count: quantity))
        d.effects.append(.schedule(order: order.id, .payment, at: order.expiresAt))
        d.effects += statusPushes(order)
        return d
    }
}
