import GatewayIO
import GatewayProtocol

/// What the dev shop (GatewayDev) uses of the node beyond its HTTP helpers and the order
/// store: products, Redis readiness and key uploads, without opening the stores' protocols.
extension Node {
    package var isRedisReady: Bool { redis.isReady }

    package func product(_ id: String, _ done: @escaping (Result<ProductView?, GatewayError>) -> Void) {
        communityStore.product(id, done)
    }

    /// false when the product exists already.
    package func createProduct(_ record: ProductRecord, _ done: @escaping (Result<Bool, GatewayError>) -> Void) {
        communityStore.createProduct(record, done)
    }

    /// Takes or keeps a short lease for this node; true while it holds it.
    package func renewBotLease(ttlMs: Int, _ done: @escaping (Result<Bool, GatewayError>) -> Void) {
        communityStore.renewBotLease(node: options.nodeName, ttlMs: ttlMs, done)
    }

    /// Seals and adds `keys` to the shop's own `product`, as `POST /api/v1/products/{id}/keys`
    /// does; answers how many were added and the stock after.
    package func addKeys(_ keys: [String], product: String, _ done: @escaping (Result<(added: Int, stock: Int), GatewayError>) -> Void) {
        uploadKeys(product: product, merchant: nil, keys.map { seal($0, product: product) }) { result in
            switch result {
            case .failure(let e): done(.failure(e))
            case .success(.added(let added, _, let stock, _)): done(.success((added, stock)))
            case .success(.noProduct), .success(.otherMerchant): done(.failure(.notFound("no product \(product)")))
            }
        }
    }

    /// Answers `request` as `GET /api/v1/users/{id}` with the shop's rights: the demo page's
    /// buyer sees their own points and level through the same handler.
    package func answerUser(_ request: HTTPRequest, _ user: String) {
        commerceRequest(request, .getUser(user), .shop)
    }

    /// Answers `request` as `GET /api/v1/sales/{id}` with the shop's rights: the demo page
    /// reads a sale (fresh counts) without a shop key.
    package func answerSale(_ request: HTTPRequest, _ id: String) {
        saleRequest(request, .get(id), .shop)
    }
}
