import GatewayProtocol

/// `POST /api/v1/orders`, validated.
public struct OrderRequest: Equatable, Sendable {
    public var buyer: String
    public var product: String
    public var quantity: Int
    public var kind: OrderKind
    public var giftTo: String?
    public var giftMessage: String?
    public var friend: String?
    public var idempotencyKey: String?

    public static let maxQuantity = 10
    public static let maxGiftMessage = 200

    public static func decode(_ json: JSON) -> Result<OrderRequest, GatewayError> {
        func id(_ v: JSON?, _ name: String) -> Result<String?, GatewayError> {
            guard let v, !v.isNull else { return .success(nil) }
            guard let s = v.stringValue, Names.isValidID(s) else { return .failure(.badRequest("\"\(name)\" must be a valid id")) }
            return .success(s)
        }
        guard let buyer = json["buyer"]?.stringValue, Names.isValidID(buyer) else { return .failure(.badRequest("\"buyer\" must be a valid id")) }
        guard let product = json["product"]?.stringValue, Names.isValidID(product) else {
            return .failure(.badRequest("\"product\" must be a valid id"))
        }
        let quantity: Int64
        switch json["quantity"] {
        case nil, .null?: quantity = 1
        case .int(let q)?: quantity = q
        default: return .failure(.badRequest("\"quantity\" must be a whole number"))
        }
        guard (1...Int64(maxQuantity)).contains(quantity) else { return .failure(.badRequest("\"quantity\" must be 1 to \(maxQuantity)")) }
        let kindText: String?
        switch json["kind"] {
        case nil, .null?: kindText = "normal"
        case let k?: kindText = k.stringValue
        }
        guard let kind = kindText.flatMap(OrderKind.init) else { return .failure(.badRequest("\"kind\" must be normal, gift or friendpay")) }
        var request = OrderRequest(buyer: buyer, product: product, quantity: Int(quantity), kind: kind)
        if let gift = json["gift"], !gift.isNull {
            guard kind == .gift, gift.objectValue != nil else { return .failure(.badRequest("\"gift\" goes with kind gift, as an object")) }
            switch id(gift["to"], "gift.to") {
            case .failure(let e): return .failure(e)
            case .success(let to): request.giftTo = to
            }
            if request.giftTo == buyer { return .failure(.badRequest("a gift goes to someone else")) }
            if let m = gift["message"], !m.isNull {
                guard let text = m.stringValue, text.count <= maxGiftMessage else {
                    return .failure(.badRequest("\"gift.message\" must be text of at most \(maxGiftMessage) characters"))
                }
                // "" reads back from the record as no message: store none, so both agree.
                request.giftMessage = text.isEmpty ? nil : text
            }
        }
        if let fp = json["friendpay"], !fp.isNull {
            guard kind == .friendpay, fp.objectValue != nil else {
                return .failure(.badRequest("\"friendpay\" goes with kind friendpay, as an object"))
            }
            switch id(fp["to"], "friendpay.to") {
            case .failure(let e): return .failure(e)
            case .success(let to): request.friend = to
            }
            if request.friend == buyer { return .failure(.badRequest("ask a friend, not yourself")) }
        }
        if let key = json["idempotency_key"], !key.isNull {
            guard let k = key.stringValue, (1...128).contains(k.utf8.count), k.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                return .failure(.badRequest("\"idempotency_key\" must be 1 to 128 printable characters"))
            }
            request.idempotencyKey = k
        }
        return .success(request)
    }
}

/// `POST /api/v1/payments/notify` body, validated (the signature is checked before).
public struct PaymentNotify: Equatable, Sendable {
    public enum Outcome: String, Sendable { case success, failed }
    public var payment: String
    public var order: String
    public var amount: Int64
    public var currency: String
    public var outcome: Outcome
    public var tradeNo: String
    /// The route it came by, stored on the payment it settles: `hmac` is this JSON notify.
    public var provider: String

    public init(payment: String, order: String, amount: Int64, currency: String, outcome: Outcome, tradeNo: String,
                provider: String = "hmac") {
        self.payment = payment
        self.order = order
        self.amount = amount
        self.currency = currency
        self.outcome = outcome
        self.tradeNo = tradeNo
        self.provider = provider
    }

    public static func decode(_ json: JSON) -> Result<PaymentNotify, GatewayError> {
        guard let payment = json["payment"]?.stringValue, !payment.isEmpty, payment.utf8.count <= 128 else {
            return .failure(.badRequest("\"payment\" is required"))
        }
        guard let order = json["order"]?.stringValue, !order.isEmpty, order.utf8.count <= 128 else {
            return .failure(.badRequest("\"order\" is required"))
        }
        guard case .int(let amount)? = json["amount"], Ranges.amount.contains(amount) else {
            return .failure(.badRequest("\"amount\" must be a whole number of minor units, 0 to \(Ranges.amount.upperBound)"))
        }
        guard let currency = json["currency"]?.stringValue else { return .failure(.badRequest("\"currency\" is required")) }
        guard let s = json["status"]?.stringValue, let outcome = Outcome(rawValue: s) else {
            return .failure(.badRequest("\"status\" must be success or failed"))
        }
        let tradeNo = json["trade_no"]?.stringValue ?? ""
        guard tradeNo.utf8.count <= 128 else { return .failure(.badRequest("\"trade_no\" is too long")) }
        return .success(PaymentNotify(payment: payment, order: order, amount: amount, currency: currency,
                                      outcome: outcome, tradeNo: tradeNo))
    }
}

/// What a notify did, as its answer says (contract 4.4), read off the decision the rules made.
public enum NotifyOutcome: String, Sendable {
    case paid, duplicate, failed
    case refundRequired = "refund_required"

    public init(_ decision: Decision) {
        switch decision.savedPayment?.status {
        case .succeeded?: self = .paid
        case .failed?: self = .failed
        case .refundRequired?: self = .refundRequired
        case .created?, .refunded?, nil: self = .duplicate
        }
    }
}

/// `POST /api/v1/payments/{id}/refunded` body: the shop's reference for the money sent back.
public enum RefundConfirmation {
    public static func decode(_ json: JSON) -> Result<String, GatewayError> {
        guard let no = json["refund_no"]?.stringValue, (1...128).contains(no.utf8.count),
              no.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return .failure(.badRequest("\"refund_no\" must be 1 to 128 printable characters"))
        }
        return .success(no)
    }
}

/// `price` of `POST /api/v1/products` and `PATCH /api/v1/products/{id}`: whole minor units
/// within `Ranges.price`, so an order amount (price times quantity) stays a valid amount.
public enum ProductPrice {
    /// nil for absent or null (PATCH leaves the price alone).
    public static func decode(_ value: JSON?) -> Result<Int64?, GatewayError> {
        guard let value, !value.isNull else { return .success(nil) }
        guard case .int(let price) = value, Ranges.price.contains(price) else {
            return .failure(.badRequest("\"price\" must be a whole number of minor units, 0 to \(Ranges.price.upperBound)"))
        }
        return .success(price)
    }
}
