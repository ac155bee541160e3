import GatewayLog
import GatewayIO
import GatewayPayments

/// Every HTTP route of the node. `HTTPRoutes.table` says how each is reached and who may
/// call it; the handlers switch over their own area's cases, exhaustively. A route that
/// acts for a caller carries it: it is built only once the access check found one.
enum HTTPRoute: Equatable {
    case healthz, readyz, metrics
    /// `/` in `serve --dev`: redirects to the demo page.
    case home
    /// `/client/…` (the browser client) and `/demo/…`.
    case staticFile
    /// Products and pushes of the shop and merchants (`HTTPAPI.swift`).
    case catalog(CatalogRoute, APICaller)
    /// Keys, orders and payments (`Commerce.swift`).
    case commerce(CommerceRoute, APICaller)
    /// Flash sales (`Sales.swift`, contract 4.8).
    case sales(SaleRoute, APICaller)
    /// The payment provider's notify, signed over its body.
    case paymentNotify
    /// Alipay's, WeChat Pay's or 易支付's notify (`ProviderNotify.swift`), in its own format.
    case providerNotify(PaymentProvider)
    /// `serve --dev` only, answered by `devEndpoints` (GatewayDev).
    case dev(DevRoute)
    /// The operators' read-only view (`AdminAPI.swift`).
    case admin(AdminRoute)
    /// Live control of a user's connections (`LiveControl.swift`, shop key only).
    case users(UserRoute)
}

enum CatalogRoute: Equatable {
    case createProduct, getProduct(String), updateProduct(String), publish
    /// `GET /api/v1/products/{id}/also-bought` (contract 4.6).
    case alsoBought(String)
}

enum SaleRoute: Equatable {
    case create, get(String), close(String)
}

enum CommerceRoute: Equatable {
    case addKeys(product: String), createOrder, getOrder(String), createPayment(order: String)
    case cancel(order: String), refund(order: String)
    case getPayment(String), paymentRefunded(String)
    /// `GET /api/v1/events` (shop key only: events cover every merchant's orders).
    case events
    /// `GET /api/v1/users/{id}`: points and member level (shop key only: a user buys from every merchant).
    case getUser(String)
}

/// A `/dev` route; those that act for a gateway token's user carry it.
package enum DevRoute: Equatable {
    case token, products
    case orders(user: String), pay(user: String), price(user: String)
    /// `GET /dev/me`: `GET /api/v1/users/{id}` for the token's user (points and level).
    case me(user: String)
}

/// Who may call a route, checked on the headers before any of the body is read. Each case
/// builds the route from the pattern's `{…}` values and what its check found.
enum RouteAccess {
    case anyone(([String]) -> HTTPRoute)
    /// `Authorization: Bearer <shop or merchant key>`.
    case shopOrMerchant(([String], APICaller) -> HTTPRoute)
    /// `Authorization: Bearer <shop key>`: a merchant's key is 403.
    case shop(([String]) -> HTTPRoute)
    /// The payment provider: the signature covers the body, so it is checked once that is read.
    case signedNotify(([String]) -> HTTPRoute)
    /// `serve --dev` only.
    case dev(([String]) -> HTTPRoute)
    /// `serve --dev` only, for the user of `Authorization: Bearer <gateway token>`.
    case devUser(([String], String) -> HTTPRoute)

    enum Kind: Equatable { case anyone, shopOrMerchant, shop, signedNotify, dev, devUser }

    var kind: Kind {
        switch self {
        case .anyone: .anyone
        case .shopOrMerchant: .shopOrMerchant
        case .shop: .shop
        case .signedNotify: .signedNotify
        case .dev: .dev
        case .devUser: .devUser
        }
    }
}

/// How much body a route reads (contract 4.1).
enum BodyLimit: Equatable {
    /// `Node.smallBodyLimit`.
    case small
    /// `limits.max_body`: key uploads.
    case keyUpload
}

/// One row of the route table.
struct RouteRule {
    let methods: [HTTPRequest.Method]
    /// `/api/v1/orders/{id}/payments`: `{name}` takes one path segment, a final `*` any number.
    /// Also the stable `route` label of the request metrics.
    let pattern: String
    let body: BodyLimit
    let access: RouteAccess

    private let segments: [Substring]

    init(_ methods: [HTTPRequest.Method], _ pattern: String, body: BodyLimit = .small, _ access: RouteAccess) {
        self.methods = methods
        self.pattern = pattern
        self.body = body
        self.access = access
        self.segments = pattern.split(separator: "/", omittingEmptySubsequences: true)
    }

    init(_ method: HTTPRequest.Method, _ pattern: String, body: BodyLimit = .small, _ access: RouteAccess) {
        self.init([method], pattern, body: body, access)
    }

    /// The values of the `{…}` segments when `path` (split on `/`, empty segments dropped) matches.
    func match(_ path: [String]) -> [String]? {
        var values: [String] = []
        for (i, part) in segments.enumerated() {
            if part == "*" { return values }
            guard i < path.count else { return nil }
            if part.first == "{" {
                values.append(path[i])
            } else if part != path[i] {
                return nil
            }
        }
        return path.count == segments.count ? values : nil
    }
}

enum HTTPRoutes {
    /// The `route` label of requests no rule matched (404s).
    static let unmatchedLabel = "unmatched"

    static let table: [RouteRule] = [
        RouteRule(.GET, "/healthz", .anyone { _ in .healthz }),
        RouteRule(.GET, "/readyz", .anyone { _ in .readyz }),
        RouteRule(.GET, "/metrics", .anyone { _ in .metrics }),
        RouteRule([.GET, .HEAD], "/", .dev { _ in .home }),
        RouteRule([.GET, .HEAD], "/client/*", .anyone { _ in .staticFile }),
        RouteRule([.GET, .HEAD], "/demo/*", .anyone { _ in .staticFile }),
        RouteRule([.GET, .HEAD], "/admin/*", .anyone { _ in .staticFile }),

        RouteRule(.POST, "/api/v1/products", .shopOrMerchant { .catalog(.createProduct, $1) }),
        RouteRule(.GET, "/api/v1/products/{id}", .shopOrMerchant { .catalog(.getProduct($0[0]), $1) }),
        RouteRule(.PATCH, "/api/v1/products/{id}", .shopOrMerchant { .catalog(.updateProduct($0[0]), $1) }),
        RouteRule(.POST, "/api/v1/publish", .shopOrMerchant { .catalog(.publish, $1) }),
        RouteRule(.GET, "/api/v1/products/{id}/also-bought", .shopOrMerchant { .catalog(.alsoBought($0[0]), $1) }),

        RouteRule(.POST, "/api/v1/products/{id}/keys", body: .keyUpload, .shopOrMerchant { .commerce(.addKeys(product: $0[0]), $1) }),
        RouteRule(.POST, "/api/v1/orders", .shopOrMerchant { .commerce(.createOrder, $1) }),
        RouteRule(.GET, "/api/v1/orders/{id}", .shopOrMerchant { .commerce(.getOrder($0[0]), $1) }),
        RouteRule(.POST, "/api/v1/orders/{id}/payments", .shopOrMerchant { .commerce(.createPayment(order: $0[0]), $1) }),
        RouteRule(.POST, "/api/v1/orders/{id}/cancel", .shopOrMerchant { .commerce(.cancel(order: $0[0]), $1) }),
        RouteRule(.POST, "/api/v1/orders/{id}/refund", .shopOrMerchant { .commerce(.refund(order: $0[0]), $1) }),
        RouteRule(.POST, "/api/v1/payments/notify", .signedNotify { _ in .paymentNotify }),
        RouteRule(.POST, "/api/v1/payments/notify/alipay", .signedNotify { _ in .providerNotify(.alipay) }),
        RouteRule(.POST, "/api/v1/payments/notify/wechatpay", .signedNotify { _ in .providerNotify(.wechatpay) }),
        // 易支付 aggregators call the notify URL with GET (query string) or POST (form).
        RouteRule([.GET, .POST], "/api/v1/payments/notify/epay", .signedNotify { _ in .providerNotify(.epay) }),
        RouteRule(.GET, "/api/v1/payments/{id}", .shopOrMerchant { .commerce(.getPayment($0[0]), $1) }),
        RouteRule(.POST, "/api/v1/payments/{id}/refunded", .shopOrMerchant { .commerce(.paymentRefunded($0[0]), $1) }),
        RouteRule(.POST, "/api/v1/sales", .shopOrMerchant { .sales(.create, $1) }),
        RouteRule(.GET, "/api/v1/sales/{id}", .shopOrMerchant { .sales(.get($0[0]), $1) }),
        RouteRule(.POST, "/api/v1/sales/{id}/close", .shopOrMerchant { .sales(.close($0[0]), $1) }),
        RouteRule(.GET, "/api/v1/events", .shop { _ in .commerce(.events, .shop) }),
        RouteRule(.POST, "/api/v1/users/{id}/disconnect", .shop { .users(.disconnect($0[0])) }),
        RouteRule(.POST, "/api/v1/users/{id}/ban", .shop { .users(.ban($0[0])) }),
        RouteRule(.DELETE, "/api/v1/users/{id}/ban", .shop { .users(.unban($0[0])) }),
        RouteRule(.GET, "/api/v1/users/{id}", .shop { .commerce(.getUser($0[0]), .shop) }),
        RouteRule(.GET, "/api/v1/users/{id}/memberships", .shopOrMerchant { .users(.memberships($0[0], $1)) }),

        // MARK: Operators (/api/v1/admin/..., shop key only)

        RouteRule(.GET, "/api/v1/admin/overview", .shop { _ in .admin(.overview) }),
    ] + AdminPart.allCases.map { part in
        RouteRule(.GET, "/api/v1/admin/\(part.rawValue)", .shop { _ in .admin(.part(part)) })
    } + [

        RouteRule(.POST, "/dev/token", .dev { _ in .dev(.token) }),
        RouteRule(.GET, "/dev/products", .dev { _ in .dev(.products) }),
        RouteRule(.POST, "/dev/orders", .devUser { .dev(.orders(user: $1)) }),
        RouteRule(.POST, "/dev/pay", .devUser { .dev(.pay(user: $1)) }),
        RouteRule(.POST, "/dev/price", .devUser { .dev(.price(user: $1)) }),
        RouteRule(.GET, "/dev/me", .devUser { .dev(.me(user: $1)) }),
    ]

    /// The first rule for `method` and `path` (dev-only rules only in dev mode), with the
    /// values of its `{…}` segments.
    static func find(_ method: HTTPRequest.Method, _ path: String, dev: Bool) -> (rule: RouteRule, values: [String])? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        for rule in table where rule.methods.contains(method) {
            if !dev && (rule.access.kind == .dev || rule.access.kind == .devUser) { continue }
            if let values = rule.match(segments) { return (rule, values) }
        }
        return nil
    }
}

/// What `httpHead` made of a request: the matching rule's pattern (its metrics `route`
/// label, noted before the access check so that refusals count under their route), and the
/// route once the check admitted it.
struct AdmittedRoute {
    let label: String
    var route: HTTPRoute?
}

extension HTTPRoute {
    /// The order or product a request is about, for its log line.
    var logIDs: [LogID] {
        switch self {
        case .catalog(.getProduct(let id), _), .catalog(.updateProduct(let id), _), .commerce(.addKeys(let id), _),
             .catalog(.alsoBought(let id), _):
            [.product(id)]
        case .commerce(.getOrder(let id), _), .commerce(.createPayment(let id), _), .commerce(.cancel(let id), _),
             .commerce(.refund(let id), _):
            [.order(id)]
        case .users(let route):
            [.user(route.user)]
        case .healthz, .readyz, .metrics, .home, .staticFile, .catalog, .commerce, .sales, .paymentNotify, .providerNotify, .dev, .admin:
            []
        }
    }
}
/// `serve --dev`'s demo shop (GatewayDev): answers the table's `/dev` routes and stocks the
/// demo products once the node runs.
package protocol DevEndpoints: AnyObject {
    func start(_ node: Node)
    func request(_ request: HTTPRequest, _ route: DevRoute, node: Node)
}
