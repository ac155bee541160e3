/// Flat string records (one Redis hash per object). Pure: no Redis here, only the
/// field layout, so the store and the tests agree on it.
extension Order {
    public var record: [(String, String)] {
        var r: [(String, String)] = [
            ("id", id), ("kind", kind.rawValue), ("buyer", buyer), ("owner", owner), ("product", product),
            ("title", title), ("quantity", String(quantity)), ("amount", String(amount)), ("currency", currency),
            ("status", status.rawValue), ("created_at", String(createdAt)), ("expires_at", String(expiresAt)),
            ("keys", keyIDs.joined(separator: ",")), ("version", String(version)),
        ]
        func add(_ k: String, _ v: String?) { r.append((k, v ?? "")) }
        add("paid_by", paidBy)
        add("payment", payment)
        add("paid_at", paidAt.map(String.init))
        add("canceled_at", canceledAt.map(String.init))
        add("gift_code", gift?.code)
        add("gift_to", gift?.to)
        add("gift_message", gift?.message)
        add("gift_status", gift?.status.rawValue)
        add("gift_expires_at", gift?.expiresAt.map(String.init))
        add("pay_code", payCode)
        add("friend", friend)
        add("level", level)
        add("membership_ms", membershipAddedMs.map(String.init))
        // Only on sale orders (set at creation, never cleared): other records stay as they were.
        if let sale { r.append(("sale", sale)) }
        return r
    }

    public init?(record f: [String: String]) {
        func opt(_ k: String) -> String? { f[k].flatMap { $0.isEmpty ? nil : $0 } }
        guard let id = opt("id"), let kind = opt("kind").flatMap(OrderKind.init), let buyer = opt("buyer"),
              let owner = opt("owner"), let product = opt("product"), let quantity = opt("quantity").flatMap({ Int($0) }),
              let amount = opt("amount").flatMap({ Int64($0) }), let currency = opt("currency"),
              let status = opt("status").flatMap(OrderStatus.init), let createdAt = opt("created_at").flatMap({ Int64($0) }),
              let expiresAt = opt("expires_at").flatMap({ Int64($0) }), let version = opt("version").flatMap({ Int($0) })
        else { return nil }
        self.id = id
        self.kind = kind
        self.buyer = buyer
        self.owner = owner
        self.product = product
        self.title = f["title"] ?? ""
        self.quantity = quantity
        self.amount = amount
        self.currency = currency
        self.status = status
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.version = version
        keyIDs = (opt("keys") ?? "").split(separator: ",").map(String.init)
        paidBy = opt("paid_by")
        payment = opt("payment")
        paidAt = opt("paid_at").flatMap { Int64($0) }
        canceledAt = opt("canceled_at").flatMap { Int64($0) }
        if let code = opt("gift_code"), let gs = opt("gift_status").flatMap(GiftStatus.init) {
            gift = Gift(code: code, to: opt("gift_to"), message: opt("gift_message"), status: gs,
                        expiresAt: opt("gift_expires_at").flatMap { Int64($0) })
        } else {
            gift = nil
        }
        payCode = opt("pay_code")
        friend = opt("friend")
        level = opt("level")
        membershipAddedMs = opt("membership_ms").flatMap { Int64($0) }
        sale = opt("sale")
    }
}

extension Payment {
    public var record: [(String, String)] {
        [("id", id), ("order", order), ("payer", payer), ("amount", String(amount)), ("currency", currency),
         ("status", status.rawValue), ("created_at", String(createdAt)), ("trade_no", tradeNo ?? ""),
         ("version", String(version)), ("provider", provider ?? ""), ("updated_at", String(updatedAt)),
         ("refund_no", refundNo ?? "")]
    }

    public init?(record f: [String: String]) {
        guard let id = f["id"], !id.isEmpty, let order = f["order"], let payer = f["payer"],
              let amount = f["amount"].flatMap({ Int64($0) }), let currency = f["currency"],
              let status = f["status"].flatMap(PaymentStatus.init), let createdAt = f["created_at"].flatMap({ Int64($0) }),
              let version = f["version"].flatMap({ Int($0) }) else { return nil }
        func opt(_ k: String) -> String? { f[k].flatMap { $0.isEmpty ? nil : $0 } }
        // Records written before the ledger have no provider, update time or refund number.
        self.init(id: id, order: order, payer: payer, amount: amount, currency: currency, status: status,
                  createdAt: createdAt, tradeNo: opt("trade_no"), version: version, provider: opt("provider"),
                  updatedAt: opt("updated_at").flatMap { Int64($0) }, refundNo: opt("refund_no"))
    }
}

extension Product {
    public init?(record f: [String: String]) {
        guard let id = f["id"], let merchant = f["merchant"], let price = f["price"].flatMap({ Int64($0) }),
              let currency = f["currency"] else { return nil }
        self.init(id: id, merchant: merchant, title: f["title"] ?? "", price: price, currency: currency,
                  validityDays: f["validity_days"].flatMap { Int($0) })
    }
}
