import Foundation
import GatewayAuth
import GatewayCrypto
import GatewayIO
import GatewayNode
import GatewayProtocol
import OrderCore

/// A product the dev node keeps in the shop, with throwaway card keys.
public struct DemoProduct: Sendable {
    public let id: String
    public let title: String
    public let price: Int64
    public let currency: String
}

/// Whether this node's demo bot should answer: with several dev nodes on one Redis every
/// node runs a bot, and only the holder of a short Redis lease answers, so a question
/// gets one answer. Read from the bot's thread, written on the loop thread.
public final class DemoBotLease: @unchecked Sendable {
    public static let shared = DemoBotLease()
    private let lock = NSLock()
    private var held = false
    public var isHeld: Bool { lock.lock(); defer { lock.unlock() }; return held }
    func set(_ value: Bool) { lock.lock(); held = value; lock.unlock() }
}

/// The latest demo sale this node scheduled, for a page that looks for "the current sale"
/// (`GET /dev/sales`). Per process: a page asks the node that serves it. Loop thread only.
final class DemoSales: @unchecked Sendable {
    static let shared = DemoSales()
    var latest: String?
}

/// `serve --dev` only: endpoints the demo page needs to stand in for the shop backend and
/// the payment provider (`/dev/...`), and the demo products. Every order and payment goes
/// through the same order rules and store as `/api/v1`; a sandbox payment is a success
/// notify signed with `payments.secret`, checked and applied like one from the provider.
extension Node {
    public static let demoMerchant = "demo-merchant"
    public static let demoProducts: [DemoProduct] = [
        DemoProduct(id: "demo-steam-50", title: "Steam Wallet card 50 CNY", price: 4800, currency: "CNY"),
        DemoProduct(id: "demo-netflix-1m", title: "Netflix 1 month (HK)", price: 6300, currency: "CNY"),
        DemoProduct(id: "demo-game-key", title: "Indie game key (global)", price: 2900, currency: "CNY"),
    ]
    /// Lifetime of a token from `POST /dev/token`.
    static let devTokenTTLSeconds: Int64 = 12 * 3600
    /// Below this many keys in stock a demo product gets `demoKeyBatch` more.
    static let demoLowStock = 50
    static let demoKeyBatch = 300
    /// What `POST /dev/sales` puts on sale unless told otherwise.
    static let demoSaleProduct = "demo-game-key"
    /// A demo sale: at most this many units (keys are topped up to cover them).
    static let demoSaleMaxQuantity = 1000

    // MARK: Routes

    func devRequest(_ request: HTTPRequest, _ route: DevRoute) {
        switch route {
        case .token:
            withJSONBody(request) { self.devToken(request, $0) }
        case .products:
            devProducts(request)
        case .orders(let user):
            withJSONBody(request) { self.devOrder(request, user, $0) }
        case .pay(let user):
            withJSONBody(request) { self.devPay(request, user, $0) }
        case .price:
            withJSONBody(request) { self.devPrice(request, $0) }
        case .me(let user):
            answerUser(request, user)
        case .createSale:
            // The body is optional: every field has a default.
            if request.body.isEmpty { return devCreateSale(request, .object([])) }
            withJSONBody(request) { self.devCreateSale(request, $0) }
        case .latestSale:
            // `null`, not a 404: the page asks on every load, and a 404 is an error in the browser's console.
            guard let id = DemoSales.shared.latest else { return respond(request, 200, .null) }
            answerSale(request, id)
        case .sale(let id):
            answerSale(request, id)
        }
    }

    /// `POST /dev/token {"user":"alice","name"?:"Alice"}`: a buyer token for anyone.
    private func devToken(_ request: HTTPRequest, _ body: JSON) {
        guard let user = body["user"]?.stringValue, Names.isValidID(user) else {
            return fail(request, .badRequest("\"user\" must be 1 to 64 characters of A-Z a-z 0-9 _ . : -"))
        }
        var name: String?
        if let n = body["name"], !n.isNull {
            guard let text = n.stringValue, (1...32).contains(text.count) else {
                return fail(request, .badRequest("\"name\" must be 1 to 32 characters"))
            }
            name = text
        }
        let exp = Int64(Date().timeIntervalSince1970) + Self.devTokenTTLSeconds
        let token = TokenMinter(secret: options.authSecret).mint(Claims(sub: user, exp: exp, role: .buyer, name: name))
        respond(request, 200, .object([("token", .string(token)), ("user", .string(user)), ("expires_at", .int(exp * 1000))]))
    }

    /// `GET /dev/products`: the demo products as they are now.
    private func devProducts(_ request: HTTPRequest) {
        var found: [String: JSON] = [:]
        var remaining = Self.demoProducts.count
        var failure: GatewayError?
        for product in Self.demoProducts {
            self.product(product.id) { [weak self] result in
                guard let self else { return }
                switch result {
                case .success(let view?):
                    found[product.id] = .object([
                        ("id", .string(product.id)), ("title", .string(view.product.title)), ("price", .int(view.product.price)),
                        ("currency", .string(view.product.currency)), ("stock", .int(view.stock)),
                    ])
                case .success(nil):
                    break
                case .failure(let error):
                    failure = error
                }
                remaining -= 1
                guard remaining == 0 else { return }
                if let failure { return self.fail(request, failure) }
                let list = Self.demoProducts.compactMap { found[$0.id] }
                self.respond(request, 200, .object([("products", .array(list))]))
            }
        }
    }

    /// `POST /dev/orders`: `POST /api/v1/orders` with the token's user as buyer.
    private func devOrder(_ request: HTTPRequest, _ user: String, _ body: JSON) {
        var fields = (body.objectValue ?? []).filter { $0.0 != "buyer" }
        fields.append(("buyer", .string(user)))
        var decoded: OrderRequest
        switch OrderRequest.decode(.object(fields)) {
        case .failure(let e): return fail(request, e)
        case .success(let r): decoded = r
        }
        // The buyer's own keys, apart from those the shop and merchants send for that buyer.
        decoded.idempotencyKey = decoded.idempotencyKey.map { "dev/" + $0 }
        placeOrder(request, decoded, viewer: .user(user), merchant: nil)
    }

    /// `POST /dev/pay {"order"}`: the sandbox provider. Creates a payment for the token's user
    /// and feeds a signed success notify into the provider's notify path; answers
    /// `{payment, order}` as they stand afterwards (no keys: the page reads them with order.get).
    private func devPay(_ request: HTTPRequest, _ user: String, _ body: JSON) {
        guard let orderID = body["order"]?.stringValue, !orderID.isEmpty, orderID.utf8.count <= 128 else {
            return fail(request, .badRequest("\"order\" must be an order id"))
        }
        let paymentID = CommerceKeys.paymentID(forOrder: orderID, random: Crypto.randomToken(10)) ?? ""
        orderStore.run(.order(orderID), decide: { s in
            guard let o = s.order else { return .failure(.notFound("no order \(orderID)")) }
            return self.orderRules.createPayment(order: o, payer: user, paymentID: paymentID, now: self.now)
        }) { result in
            switch result {
            case .failure(let e): self.fail(request, e)
            case .success(let (decision, _)):
                guard let payment = decision.savedPayment else { return self.fail(request, GatewayError(.internal, "no payment made")) }
                let notify = JSON.object([
                    ("payment", .string(payment.id)), ("order", .string(payment.order)), ("amount", .int(payment.amount)),
                    ("currency", .string(payment.currency)), ("status", .string("success")),
                    ("trade_no", .string("SANDBOX-\(Crypto.randomToken(6))")),
                ])
                let raw = Array(notify.serialized().utf8)
                let signature = Crypto.hex(Crypto.hmacSHA256(key: Array(self.options.paymentsSecret.utf8), message: raw))
                self.applyPaymentNotify(body: raw, signature: signature) { outcome in
                    if case .failure(let e) = outcome { return self.fail(request, e) }
                    self.orderStore.load(.payment(payment.id)) { loaded in
                        switch loaded {
                        case .failure(let e): self.fail(request, e)
                        case .success(let s):
                            self.respond(request, 200, .object([
                                ("payment", (s.payment ?? payment).json),
                                ("order", s.order.map { $0.json(for: .user(user)) } ?? .null),
                            ]))
                        }
                    }
                }
            }
        }
    }

    /// `POST /dev/price {"product","price"}`: `PATCH /api/v1/products/{id}` with the shop's rights.
    private func devPrice(_ request: HTTPRequest, _ body: JSON) {
        guard let product = body["product"]?.stringValue, Names.isValidID(product) else {
            return fail(request, .badRequest("\"product\" must be a valid product id"))
        }
        guard case .int(let price)? = body["price"], price >= 0 else {
            return fail(request, .badRequest("\"price\" must be a whole number of minor units, 0 or more"))
        }
        updateProduct(request, .shop, product, .object([("price", .int(price))]))
    }

    // MARK: Demo sales

    /// `POST /dev/sales {product?, quantity? [5], per_user? [1], starts_in_s? [30], duration_s? [600], price?}`:
    /// a flash sale of a demo product (by default at half its price) with the shop's rights,
    /// created as `POST /api/v1/sales` creates one; tops the product's keys up first if short.
    private func devCreateSale(_ request: HTTPRequest, _ body: JSON) {
        func int(_ name: String, _ fallback: Int64, _ range: ClosedRange<Int64>) -> Result<Int64, GatewayError> {
            guard let value = body[name], !value.isNull else { return .success(fallback) }
            guard case .int(let n) = value, range.contains(n) else {
                return .failure(.badRequest("\"\(name)\" must be a whole number from \(range.lowerBound) to \(range.upperBound)"))
            }
            return .success(n)
        }
        var product = Self.demoSaleProduct
        if let p = body["product"], !p.isNull {
            guard let id = p.stringValue, Names.isValidID(id) else { return fail(request, .badRequest("\"product\" must be a valid product id")) }
            product = id
        }
        let limits: [(String, Int64, ClosedRange<Int64>)] = [
            ("quantity", 5, 1...Int64(Self.demoSaleMaxQuantity)), ("per_user", 1, 1...Int64(Self.demoSaleMaxQuantity)),
            ("starts_in_s", 30, 0...86_400), ("duration_s", 600, 1...7 * 86_400),
        ]
        var values: [String: Int64] = [:]
        for (name, fallback, range) in limits {
            switch int(name, fallback, range) {
            case .failure(let e): return fail(request, e)
            case .success(let n): values[name] = n
            }
        }
        self.product(product) { [weak self] viewed in
            guard let self else { return }
            switch viewed {
            case .failure(let e): self.fail(request, e)
            case .success(nil): self.fail(request, .notFound("no product \(product)"))
            case .success(let view?): self.devCreateSale(request, body, view, values)
            }
        }
    }

    private func devCreateSale(_ request: HTTPRequest, _ body: JSON, _ view: ProductView, _ values: [String: Int64]) {
        let product = view.product.id
        let quantity = values["quantity"] ?? 1
        let startsAt = now + (values["starts_in_s"] ?? 0) * 1000
        var price = JSON.int(view.product.price / 2)
        if let p = body["price"], !p.isNull { price = p }
        // The rest is checked as the sales API checks it (price, per_user against quantity).
        let fields = JSON.object([
            ("id", .string("demo-sale-" + Crypto.randomToken(6))), ("product", .string(product)), ("price", price),
            ("quantity", .int(quantity)), ("per_user", .int(values["per_user"] ?? 1)),
            ("starts_at", .int(startsAt)), ("ends_at", .int(startsAt + (values["duration_s"] ?? 0) * 1000)),
        ])
        let spec: SaleSpec
        switch SaleSpec.decode(fields, now: now) {
        case .failure(let e): return fail(request, e)
        case .success(let s): spec = s
        }
        let short = spec.quantity - Int(view.stock)
        guard short > 0, Self.demoProducts.contains(where: { $0.id == product }) else { return devPlaceSale(request, spec) }
        addDemoKeys(product, count: short + Self.demoLowStock) { [weak self] ok in
            guard let self else { return }
            guard ok else { return self.fail(request, GatewayError(.unavailable, "could not top up the keys of \(product)")) }
            self.devPlaceSale(request, spec)
        }
    }

    private func devPlaceSale(_ request: HTTPRequest, _ spec: SaleSpec) {
        createSale(spec, merchant: nil) { [weak self] result in
            guard let self else { return }
            switch result {
            case .failure(let e): self.fail(request, e)
            case .success(let (sale, created)):
                DemoSales.shared.latest = sale.id
                self.respond(request, created ? 201 : 200, sale.json(at: self.now))
            }
        }
    }

    // MARK: Demo products

    /// Creates the demo products once Redis answers and keeps their stock topped up.
    func startDemo() {
        log("dev mode: /dev endpoints on, demo page at /demo/")
        var stocked = false
        func tick() {
            loop.schedule(afterMs: stocked ? 30_000 : 1_000) { [weak self] in
                guard let self else { return }
                if self.isRedisReady { self.stockDemoProducts { stocked = $0 } }
                tick()
            }
        }
        tick()
        renewBotLease()
    }

    /// Takes or keeps the demo-bot lease (15 s, renewed every 5 s).
    private func renewBotLease() {
        loop.schedule(afterMs: DemoBotLease.shared.isHeld ? 5_000 : 1_000) { [weak self] in
            guard let self else { return }
            guard self.isRedisReady else {
                DemoBotLease.shared.set(false)
                return self.renewBotLease()
            }
            self.renewBotLease(ttlMs: 15_000) { result in
                DemoBotLease.shared.set((try? result.get()) == true)
                self.renewBotLease()
            }
        }
    }

    private func stockDemoProducts(_ done: @escaping (Bool) -> Void) {
        var remaining = Self.demoProducts.count
        var allGood = true
        for product in Self.demoProducts {
            let record = ProductRecord(id: product.id, merchant: Self.demoMerchant, title: product.title, price: product.price,
                                       currency: product.currency, createdAt: now)
            createProduct(record) { [weak self] created in
                guard let self else { return }
                let finish = { (ok: Bool) in
                    allGood = allGood && ok
                    remaining -= 1
                    if remaining == 0 { done(allGood) }
                }
                if (try? created.get()) == true { self.log("dev mode: created demo product \(product.id)") }
                guard (try? created.get()) != nil else { return finish(false) }
                self.product(product.id) { viewed in
                    guard case .success(let view?) = viewed else { return finish(false) }
                    let stock = view.stock
                    guard stock < Self.demoLowStock else { return finish(true) }
                    self.addDemoKeys(product.id, count: Self.demoKeyBatch) { finish($0) }
                }
            }
        }
    }

    /// Throwaway keys, added exactly as `POST /api/v1/products/{id}/keys` adds them.
    private func addDemoKeys(_ product: String, count: Int, _ done: @escaping (Bool) -> Void) {
        let keys = (0..<count).map { _ in
            let hex = Crypto.randomToken(8).uppercased()
            var groups: [Substring] = []
            var rest = Substring(hex)
            while !rest.isEmpty { groups.append(rest.prefix(4)); rest = rest.dropFirst(4) }
            return "DEMO-" + groups.joined(separator: "-")
        }
        addKeys(keys, product: product) { [weak self] result in
            guard case .success(let (added, stock)) = result else { return done(false) }
            self?.log("dev mode: \(added) demo keys added to \(product) (stock \(stock))")
            done(true)
        }
    }
}

/// What `gateway serve --dev` hands the node: the /dev routes and the demo products.
public final class DevShop: DevEndpoints {
    public init() {}
    package func start(_ node: Node) { node.startDemo() }
    package func request(_ request: HTTPRequest, _ route: DevRoute, node: Node) {
        node.devRequest(request, route)
    }
}
