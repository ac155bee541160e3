import Foundation
import OrderCore
import GatewayCrypto
import GatewayIO
import GatewayProtocol

/// Who is calling the HTTP API.
package enum APICaller: Equatable {
    case shop
    case merchant(String)

    func mayTouch(merchant: String) -> Bool {
        switch self {
        case .shop: true
        case .merchant(let id): id == merchant
        }
    }
}

extension Node {
    /// Every route but a key upload reads at most this much body (contract 4.1).
    static let smallBodyLimit = 64 * 1024

    /// Route, then credentials, then the body limit, on the headers alone: an unknown route
    /// is 404 and a missing or wrong key 401 before any of the body is read. The provider's
    /// notify is signed over its body, so only its size is checked here.
    public func httpHead(_ request: HTTPRequest) -> HTTPAdmission {
        loop.assertOnLoopThread()
        guard let (rule, values) = HTTPRoutes.find(request.method, request.path, dev: options.dev) else {
            return .refuse(status: 404, code: ErrorCode.notFound.rawValue, message: "no route \(request.method.rawValue) \(request.path)")
        }
        request.context = AdmittedRoute(label: rule.pattern)
        let route: HTTPRoute
        switch rule.access {
        case .anyone(let build), .signedNotify(let build), .dev(let build):
            route = build(values)
        case .shopOrMerchant(let build):
            guard let caller = caller(request) else { return .refuse(status: 401, code: ErrorCode.unauthorized.rawValue, message: Self.keyRequired) }
            route = build(values, caller)
        case .shop(let build):
            switch caller(request) {
            case .shop?: route = build(values)
            case .merchant?: return .refuse(status: 403, code: ErrorCode.forbidden.rawValue, message: "this route takes the shop key")
            case nil: return .refuse(status: 401, code: ErrorCode.unauthorized.rawValue, message: "Authorization: Bearer <shop key> required")
            }
        case .devUser(let build):
            switch devUser(request) {
            case .failure(let e): return .refuse(status: e.code.httpStatus, code: e.code.rawValue, message: e.message)
            case .success(let user): route = build(values, user)
            }
        }
        request.context = AdmittedRoute(label: rule.pattern, route: route)
        switch rule.body {
        case .small: return .read(limit: Self.smallBodyLimit)
        case .keyUpload: return .read(limit: options.maxBody)
        }
    }

    static let keyRequired = "Authorization: Bearer <shop or merchant key> required"

    public func httpRequest(_ request: HTTPRequest) {
        loop.assertOnLoopThread()
        guard let route = (request.context as? AdmittedRoute)?.route else {
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
                                      pushLatency: loop.pushLatency.histogram, loopTurns: loop.turnSeconds?.histogram,
                                      webhookAttempts: webhookSender?.attempts ?? [:])
            loop.longestStallSeconds = 0
            request.respond(status: 200, body: text, contentType: "text/plain; version=0.0.4")
        case .home:
            redirect(request, to: "/demo/")
        case .staticFile:
            serveStatic(request)
        case .dev(let dev):
            guard let devEndpoints else { return fail(request, .notFound("no route \(request.method.rawValue) \(request.path)")) }
            devEndpoints.request(request, dev, node: self)
        case .admin(let admin):
            adminRequest(request, admin)
        case .users(let route):
            userRequest(request, route)
        case .paymentNotify:
            paymentNotify(request)
        case .providerNotify(let provider):
            providerNotify(request, provider)
        case .catalog(let route, let caller):
            catalogRequest(request, route, caller)
        case .commerce(let route, let caller):
            commerceRequest(request, route, caller)
        case .sales(let route, let caller):
            saleRequest(request, route, caller)
        }
    }

    /// The `route` label of a request's metrics: its table pattern, or `unmatched`.
    public func routeLabel(_ request: HTTPRequest) -> String {
        (request.context as? AdmittedRoute)?.label ?? HTTPRoutes.unmatchedLabel
    }

    private func catalogRequest(_ request: HTTPRequest, _ route: CatalogRoute, _ caller: APICaller) {
        switch route {
        case .createProduct:
            withJSONBody(request) { self.createProduct(request, caller, $0) }
        case .publish:
            withJSONBody(request) { self.publishFromAPI(request, caller, $0) }
        case .getProduct(let id):
            getProduct(request, caller, id)
        case .updateProduct(let id):
            withJSONBody(request) { self.updateProduct(request, caller, id, $0) }
        case .alsoBought(let id):
            alsoBought(request, caller, id)
        }
    }

    /// The user of the `Authorization: Bearer <token>` (a gateway token, as on `/ws`),
    /// checked on the headers before any body is read.
    func devUser(_ request: HTTPRequest) -> Result<String, GatewayError> {
        guard let header = request.authorization, header.hasPrefix("Bearer ") else {
            return .failure(GatewayError(.unauthorized, "Authorization: Bearer <token from /dev/token> required"))
        }
        switch verifier.verify(String(header.dropFirst(7)), nowSeconds: Int64(Date().timeIntervalSince1970)) {
        case .failure(let e): return .failure(GatewayError(.unauthorized, e.message))
        case .success(let claims): return .success(claims.sub)
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

    package func withJSONBody(_ request: HTTPRequest, _ body: (JSON) -> Void) {
        guard let json = try? JSON.parse(request.body), json.objectValue != nil else {
            fail(request, .badRequest("the body must be a JSON object"))
            return
        }
        body(json)
    }

    package func respond(_ request: HTTPRequest, _ status: Int, _ json: JSON) {
        var out: [UInt8] = []
        json.write(into: &out)
        request.respond(status: status, body: out)
    }

    package func fail(_ request: HTTPRequest, _ error: GatewayError) {
        request.respond(status: error.code.httpStatus, body: error.httpBody, headers: error.httpHeaders)
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
        var validityDays: Int?
        if let value = body["validity_days"], value != .null {
            guard let days = value.intValue, Self.validityDays.contains(days) else {
                return fail(request, .badRequest("\"validity_days\" must be an integer from 1 to \(Self.validityDays.upperBound)"))
            }
            validityDays = Int(days)
        }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let record = ProductRecord(id: id, merchant: merchant, title: title, price: price, currency: currency, createdAt: now,
                                   validityDays: validityDays)
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
        var f: [(String, JSON)] = [("id", .string(p.id)), ("merchant", .string(p.merchant)), ("title", .string(p.title)),
                                   ("price", .int(p.price)), ("currency", .string(p.currency)), ("stock", .int(view.stock)),
                                   ("buyers", .int(view.buyers)), ("watchers", .int(view.watchers)), ("held", .int(view.held))]
        if let days = p.validityDays { f.append(("validity_days", .int(Int64(days)))) }
        return .object(f)
    }

    /// `validity_days` of a membership product (4.6): a day to ten years.
    static let validityDays: ClosedRange<Int64> = 1...3650

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
