@testable import GatewayIO
@testable import GatewayNode
import GatewayPayments
import XCTest

/// The one route table: every path the node answers, who may call it, its body limit, and
/// the pattern that labels its metrics.
final class HTTPRouteTableTests: XCTestCase {
    /// The matching rule's label, access, body limit, and its route as built for the shop
    /// (key routes) or user u1 (token routes).
    private func find(_ method: HTTPRequest.Method, _ path: String, dev: Bool = false)
        -> (label: String, route: HTTPRoute, access: RouteAccess.Kind, body: BodyLimit)? {
        guard let (rule, values) = HTTPRoutes.find(method, path, dev: dev) else { return nil }
        let route: HTTPRoute = switch rule.access {
        case .anyone(let build), .signedNotify(let build), .dev(let build), .shop(let build): build(values)
        case .shopOrMerchant(let build): build(values, .shop)
        case .devUser(let build): build(values, "u1")
        }
        return (rule.pattern, route, rule.access.kind, rule.body)
    }

    func testAPIRoutesCarryTheirIdsAndLabelByPattern() {
        let cases: [(HTTPRequest.Method, String, HTTPRoute, String)] = [
            (.POST, "/api/v1/products", .catalog(.createProduct, .shop), "/api/v1/products"),
            (.GET, "/api/v1/products/p1", .catalog(.getProduct("p1"), .shop), "/api/v1/products/{id}"),
            (.PATCH, "/api/v1/products/p1", .catalog(.updateProduct("p1"), .shop), "/api/v1/products/{id}"),
            (.POST, "/api/v1/publish", .catalog(.publish, .shop), "/api/v1/publish"),
            (.POST, "/api/v1/products/p1/keys", .commerce(.addKeys(product: "p1"), .shop), "/api/v1/products/{id}/keys"),
            (.POST, "/api/v1/orders", .commerce(.createOrder, .shop), "/api/v1/orders"),
            (.GET, "/api/v1/orders/o-1", .commerce(.getOrder("o-1"), .shop), "/api/v1/orders/{id}"),
            (.POST, "/api/v1/orders/o-1/payments", .commerce(.createPayment(order: "o-1"), .shop), "/api/v1/orders/{id}/payments"),
            (.POST, "/api/v1/orders/o-1/cancel", .commerce(.cancel(order: "o-1"), .shop), "/api/v1/orders/{id}/cancel"),
            (.POST, "/api/v1/orders/o-1/refund", .commerce(.refund(order: "o-1"), .shop), "/api/v1/orders/{id}/refund"),
            (.POST, "/api/v1/payments/notify", .paymentNotify, "/api/v1/payments/notify"),
            (.POST, "/api/v1/payments/notify/alipay", .providerNotify(.alipay), "/api/v1/payments/notify/alipay"),
            (.POST, "/api/v1/payments/notify/wechatpay", .providerNotify(.wechatpay), "/api/v1/payments/notify/wechatpay"),
            (.POST, "/api/v1/payments/notify/epay", .providerNotify(.epay), "/api/v1/payments/notify/epay"),
            (.GET, "/api/v1/payments/notify/epay", .providerNotify(.epay), "/api/v1/payments/notify/epay"),
            (.GET, "/api/v1/payments/pay-1", .commerce(.getPayment("pay-1"), .shop), "/api/v1/payments/{id}"),
            (.POST, "/api/v1/payments/pay-1/refunded", .commerce(.paymentRefunded("pay-1"), .shop), "/api/v1/payments/{id}/refunded"),
            (.GET, "/healthz", .healthz, "/healthz"),
            (.GET, "/metrics", .metrics, "/metrics"),
            (.GET, "/demo/app.js", .staticFile, "/demo/*"),
            (.HEAD, "/client/gateway-client.js", .staticFile, "/client/*"),
            (.GET, "/demo", .staticFile, "/demo/*"),
            (.GET, "/admin/", .staticFile, "/admin/*"),
            (.GET, "/api/v1/admin/overview", .admin(.overview), "/api/v1/admin/overview"),
            (.GET, "/api/v1/admin/groups", .admin(.part(.groups)), "/api/v1/admin/groups"),
            (.POST, "/api/v1/users/u1/disconnect", .users(.disconnect("u1")), "/api/v1/users/{id}/disconnect"),
            (.POST, "/api/v1/users/u1/ban", .users(.ban("u1")), "/api/v1/users/{id}/ban"),
            (.DELETE, "/api/v1/users/u1/ban", .users(.unban("u1")), "/api/v1/users/{id}/ban"),
            (.GET, "/api/v1/users/u1/memberships", .users(.memberships("u1", .shop)), "/api/v1/users/{id}/memberships"),
        ]
        for (method, path, route, label) in cases {
            let found = find(method, path)
            XCTAssertEqual(found?.route, route, "\(method) \(path)")
            XCTAssertEqual(found?.label, label, "\(method) \(path)")
        }
        // Empty segments do not count, as before the table.
        XCTAssertEqual(find(.GET, "//api/v1/orders/o-1/")?.route, .commerce(.getOrder("o-1"), .shop))
    }

    func testWhoMayCallAndHowMuchBody() {
        XCTAssertEqual(find(.POST, "/api/v1/orders")?.access, .shopOrMerchant)
        XCTAssertEqual(find(.POST, "/api/v1/payments/notify")?.access, .signedNotify)
        for provider in ["alipay", "wechatpay", "epay"] {
            XCTAssertEqual(find(.POST, "/api/v1/payments/notify/\(provider)")?.access, .signedNotify)
            XCTAssertEqual(find(.POST, "/api/v1/payments/notify/\(provider)")?.body, .small)
        }
        // Only 易支付 calls with GET.
        XCTAssertNil(find(.GET, "/api/v1/payments/notify/alipay"))
        XCTAssertNil(find(.GET, "/api/v1/payments/notify/wechatpay"))
        XCTAssertEqual(find(.GET, "/healthz")?.access, .anyone)
        XCTAssertEqual(find(.GET, "/api/v1/admin/nodes")?.access, .shop)
        // The operators' view is read-only, one part per route.
        XCTAssertNil(find(.POST, "/api/v1/admin/groups"))
        XCTAssertNil(find(.GET, "/api/v1/admin/groups/p1"))
        XCTAssertNil(find(.GET, "/api/v1/admin"))
        XCTAssertEqual(find(.POST, "/dev/pay", dev: true)?.access, .devUser)
        XCTAssertEqual(find(.POST, "/dev/token", dev: true)?.access, .dev)
        XCTAssertEqual(find(.POST, "/api/v1/products/p1/keys")?.body, .keyUpload)
        for rule in HTTPRoutes.table where rule.pattern != "/api/v1/products/{id}/keys" {
            XCTAssertEqual(rule.body, .small, rule.pattern)
        }
    }

    func testUnknownPathsAndMethodsMatchNothing() {
        for (method, path) in [(HTTPRequest.Method.GET, "/api/v1"), (.DELETE, "/api/v1/orders/o-1"), (.GET, "/api/v1/orders/o-1/x"),
                               (.POST, "/healthz"), (.GET, "/nothing"), (.GET, "/api/v1/products/p1/keys")] {
            XCTAssertNil(find(method, path), "\(method) \(path)")
        }
    }

    func testDevRoutesOnlyInDevMode() {
        for (method, path) in [(HTTPRequest.Method.GET, "/"), (.POST, "/dev/token"), (.GET, "/dev/products"), (.POST, "/dev/orders")] {
            XCTAssertNil(find(method, path), "\(path) without --dev")
            XCTAssertNotNil(find(method, path, dev: true), "\(path) with --dev")
        }
        XCTAssertEqual(find(.GET, "/", dev: true)?.route, .home)
        // Token routes carry the token's user.
        XCTAssertEqual(find(.POST, "/dev/pay", dev: true)?.route, .dev(.pay(user: "u1")))
        XCTAssertNil(find(.POST, "/dev/sales"), "/dev/sales without --dev")
        XCTAssertEqual(find(.POST, "/dev/sales", dev: true)?.route, .dev(.createSale))
        XCTAssertEqual(find(.GET, "/dev/sales", dev: true)?.route, .dev(.latestSale))
        XCTAssertEqual(find(.GET, "/dev/sales/s-1", dev: true)?.route, .dev(.sale("s-1")))
    }

    func testPatternsAreUniquePerMethod() {
        var seen = Set<String>()
        for rule in HTTPRoutes.table {
            for method in rule.methods {
                XCTAssertTrue(seen.insert("\(method.rawValue) \(rule.pattern)").inserted, rule.pattern)
            }
        }
    }
}
