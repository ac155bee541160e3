import Foundation
import OrderCore
import GatewayCrypto
import GatewayIO
import GatewayProtocol

/// Who is calling the HTTP API.
enum APICaller {
    case shop
    case merchant(String)

    func mayTouch(merchant: String) -> Bool {
        switch self {
        case .shop: true
        case .merchant(let id): id == merchant
        }
    }
}

/// A route under /api/v1, recognised from the method and path alone.
enum APIRoute: Equatable {
    case createProduct, publish, getProduct(String), updateProduct(String), addKeys(product: String)
    case createOrder, getOrder(String), createPayment(order: String), cancel(order: String), refund(order: String)
    case paymentNotify

    init?(_ method: HTTPRequest.Method, _ r: [String]) {
        switch (method, r.count, r.first) {
        case (.POST, 1, "products"): self = .createProduct
        case (.POST, 1, "publish"): self = .publish
        case (.GET, 2, "products"): self = .getProduct(r[1])
        case (.PATCH, 2, "products"): self = .updateProduct(r[1])
        case (.POST, 3, "products") where r[2] == "keys": self = .addKeys(product: r[1])
        case (.POST, 1, "orders"): self = .createOrder
        case (.GET, 2, "orders"): self = .getOrder(r[1])
        case (.POST, 3, "orders") where r[2] == "payments": self = .createPayment(order: r[1])
        case (.POST, 3, "orders") where r[2] == "cancel": self = .cancel(order: r[1])
        case (.POST, 3, "orders") where r[2] == "refund": self = .refund(order: r[1])
        case (.POST, 2, "payments") where r[1] == "notify": self = .paymentNotify
        default: return nil
        }
    }
}

/// What a request's headers resolved to at `httpHead`: the route, and for /api/v1 and
/// /dev the caller whose credentials were already checked.
enum HTTPRoute {
    case healthz, readyz, metrics, home, staticFile
    case api(APIRoute, APICaller?)
    case dev(DevRoute, user: String?)
}

extension Node {
    /// Every route but a key upload reads at most this much body (contract 4.1).
    static let smallBodyLimit = 64 * 1024

    /// Route, then credentials, then the body limit, on the headers alone: an unknown route
    /// is 404 and a missing or wrong key 401 before any of the body is read. The provider's
    /// notify is signed over its body, so only its size is checked here.
    public func httpHead(_ request: HTTPRequest) -> HTTPAdmission {
        let notFound = HTTPAdmission.refuse(status: 404, code: ErrorCode.notFound.rawValue,
                                            message: "no route \(request.method.rawValue) \(request.path)")
        let segments = request.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        let route: HTTPRoute
        switch (request.method, segments) {
        case (.GET, ["healthz"]): route = .healthz
        case (.GET, ["readyz"]): route = .readyz
        case (.GET, ["metrics"]): route = .metrics
        case (.GET, []), (.HEAD, []):
            guard options.dev else { return notFound }
            route = .home
        case (.GET, _) where segments.first == "client" || segments.first == "demo",
             (.HEAD, _) where segments.first == "client" || segments.first == "demo":
            route = .staticFile
        case (_, _) where segments.first == "dev":
            guard options.dev, let dev = DevRoute(request.method, Array(segments.dropFirst())) else { return notFound }
            var user: String?
            if dev.needsUser {
                switch devUser(request) {
                case .failure(let e): return .refuse(status: e.code.httpStatus, code: e.code.rawValue, message: e.message)
                case .success(let u): user = u
                }
            }
            route = .dev(dev, user: user)
        case (_, _) where segments.count >= 3 && segments[0] == "api" && segments[1] == "v1":
            guard let api = APIRoute(request.method, Array(segments.dropFirst(2))) else { return notFound }
            if api == .paymentNotify {
                route = .api(api, nil)
            } else {
                guard let caller = caller(request) else {
                    return .refuse(status: 401, code: ErrorCode.unauthorized.rawValue,
                                   message: "Authorization: Bearer <shop or merchant key> required")
                }
                route = .api(api, caller)
            }
        default:
            return notFound
        }
        request.context = route
        if case .api(.addKeys, _) = route { return .read(limit: options.maxBody) }
        return .read(limit: Self.smallBodyLimit)
    }

    public func httpRequest(_ request: HTTPRequest) {
        guard let route = request.context as? HTTPRoute else {
            return fail(request, GatewayError(.internal, "request without a route"))
        }
        switch route {
        case .healthz:
            respond(request, 200, .object([("ok", .bool(true)), ("node", .string(options.nodeName))]))
        case .readyz:
            // Not ready while v1 order records are being upgraded (orders answer 503 meanwhile).
            let ready = redis.isReady && !draining && legacyMigration.isDone
            respond(request, ready ? 200 : 503, .object([("ready", .bool(ready)), ("redis", .bool(redis.isReady)),
                                                         ("draining", .bool(draining))]))
        case .metrics:
            var frames = 0
            for client in clients.values { frames += client.conn.framesSent }
            let text = metrics.render(connections: clients.count, subscriptions: hub.subscriptionCount,
                                      channels: hub.channelCount, redisUp: redis.isReady, redisRTT: redis.lastRoundTrip,
                                      redisReconnects: redis.reconnects, framesSent: frames + metrics.framesSent,
                                      loopStall: loop.longestStallSeconds, refusedAtLimit: loop.refusedForDescriptors,
                                      pushLatency: loop.pushLatency.histogram)
            loop.longestStallSeconds = 0
            request.respond(status: 200, body: text, contentType: "text/plain; version=0.0.4")
        case .home:
            redirect(request, to: "/demo/")
        case .staticFile:
            serveStatic(request)
        case .dev(let dev, let user):
            devRequest(request, dev, user: user)
        case .api(.paymentNotify, _):
            paymentNotify(request)
        case .api(let api, let caller?):
            self.api(request, api, caller)
        case .api(_, nil):
            fail(request, GatewayError(.unauthorized, "Authorization: Bearer <shop or merchant key> required"))
        }
    }

    private func api(_ request: HTTPRequest, _ route: APIRoute, _ caller: APICaller) {
        switch route {
        case .createProduct:
            withJSONBody(request) { self.createProduct(request, caller, $0) }
        case .publish:
            withJSONBody(request) { self.publishFromAPI(request, caller, $0) }
        case .getProduct(let id):
            getProduct(request, caller, id)
        case .updateProduct(let id):
            withJSONBody(request) { self.updateProduct(request, caller, id, $0) }
        default:
            if !commerceRoute(request, caller, route) {
                fail(request, GatewayError(.notFound, "no route \(request.method.rawValue) \(request.path)"))
            }
        }
    }

    private func caller(_ request: HTTPRequest) -> APICaller? {
        guard let header = request.authorization, header.hasPrefix("Bearer ") else { return nil }
        let key = Array(header.dropFirst(7).utf8)
        if !options.shopKey.isEmpty, Crypto.constantTimeEquals(key, Array(options.shopKey.utf8)) { return .shop }
        for (merchant, merchantKey) in options.merchantKeys where Crypto.constantTimeEquals(key, Array(merchantKey.utf8)) {
            return .merchant(merchant)
        }
        return nil
    }

    func withJSONBody(_ request: HTTPRequest, _ body: (JSON) -> Void) {
        guard let json = try? JSON.parse(request.body), json.objectValue != nil else {
            fail(request, .badRequest("the body must be a JSON object"))
            return
        }
        body(json)
    }

    func respond(_ request: HTTPRequest, _ status: Int, _ json: JSON) {
        var out: [UInt8] = []
        json.write(into: &out)
        request.respond(status: status, body: out)
    }

    func fail(_ request: HTTPRequest, _ error: GatewayError) {
        let body: JSON = .object([("error", .object([("code", .string(error.code.rawValue)),
                                                      ("message", .string(error.message))]))])
        respond(request, error.code.httpStatus, body)
    }

    private func createProduct(_ request: HTTPRequest, _ caller: APICaller, _ body: JSON) {
        guard let id = body["id"]?.stringValue, Names.isValidID(id) else { return fail(request, .badRequest("\"id\" must be a valid id")) }
        guard let merchant = body["merchant"]?.stringValue, Names.isValidID(merchant) else {
            return fail(request, .badRequest("\"merchant\" must be a valid id"))
        }
        guard caller.mayTouch(merchant: merchant) else { return fail(request, .forbidden("a merchant key creates only its own products")) }
        guard let title = body["title"]?.stringValue, (1...200).contains(title.trimmingCharacters(in: .whitespaces).count) else {
            return fail(request, .badRequest("\"title\" must be 1 to 200 characters"))
        }
        let price: Int64
        switch ProductPrice.decode(body["price"]) {
        case .success(let value?): price = value
        case .success(nil): return fail(request, .badRequest("\"price\" is required"))
        case .failure(let error): return fail(request, error)
        }
        guard let currency = body["currency"]?.stringValue, currency.utf8.count == 3,
              currency.utf8.allSatisfy({ (65...90).contains($0) }) else {
            return fail(request, .badRequest("\"currency\" must be a three-letter code such as CNY"))
        }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let record = ProductRecord(id: id, merchant: merchant, title: title, price: price, currency: currency, createdAt: now)
        communityStore.createProduct(record) { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(true):
                self.respond(request, 201, self.productJSON(ProductView(product: record, stock: 0, buyers: 0, watchers: 0)))
            case .success(false):
                self.fail(request, GatewayError(.conflict, "product \(id) exists"))
            case .failure(let error):
                self.fail(request, error)
            }
        }
    }

    func getProduct(_ request: HTTPRequest, _ caller: APICaller, _ id: String) {
        guard Names.isValidID(id) else { return fail(request, .badRequest("not a valid product id")) }
        communityStore.product(id) { [weak self] result in
            guard let self else { return }
            switch result {
            case .failure(let error): self.fail(request, error)
            case .success(nil): self.fail(request, .notFound("no product \(id)"))
            case .success(let view?):
                guard caller.mayTouch(merchant: view.product.merchant) else {
                    return self.fail(request, .forbidden("product \(id) belongs to another merchant"))
                }
                self.respond(request, 200, self.productJSON(view))
            }
        }
    }

    private func productJSON(_ view: ProductView) -> JSON {
        let p = view.product
        return .object([("id", .string(p.id)), ("merchant", .string(p.merchant)), ("title", .string(p.title)),
                        ("price", .int(p.price)), ("currency", .string(p.currency)), ("stock", .int(view.stock)),
                        ("buyers", .int(view.buyers)), ("watchers", .int(view.watchers))])
    }

    /// `POST /api/v1/publish`: the shop (or a merchant, on its own products' channels) pushes anything.
    private func publishFromAPI(_ request: HTTPRequest, _ caller: APICaller, _ body: JSON) {
        guard let name = body["channel"]?.stringValue, let channel = Channel(name) else {
            return fail(request, .badRequest("\"channel\" must be user:<id>, group:<id> or product:<id>"))
        }
        guard let type = body["type"]?.stringValue, Self.isValidPushType(type) else {
            return fail(request, .badRequest("\"type\" must match [a-z][a-z0-9_.]{0,63}"))
        }
        guard let data = body["data"], data.objectValue != nil else { return fail(request, .badRequest("\"data\" must be an object")) }
        var merchant: String?
        if case .merchant(let id) = caller {
            guard channel.kind != .user else { return fail(request, .forbidden("merchants publish only to their products' channels")) }
            merchant = id
        }
        publish(channel, type: type, data: data, merchant: merchant) { result in
            switch result {
            case .success(let offset): self.respond(request, 200, .object([("offset", .int(Int64(offset)))]))
            case .failure(let error): self.fail(request, error)
            }
        }
    }

    static func isValidPushType(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard (1...64).contains(b.count), (97...122).contains(b[0]) else { return false }
        return b.allSatisfy { (97...122).contains($0) || (48...57).contains($0) || $0 == 95 || $0 == 46 }
    }
}
