import GatewayProtocol
import GatewayRedis
import OrderCore

extension CommerceKeys {
    /// Hash user -> `Membership.record`: the product's validity memberships (4.6). Not
    /// `members` (the product group's buyers).
    static func memberships(_ product: String) -> String { "gw:\(StoreKeys.tag(.product(product))):memberships" }
}

extension StoreKeys {
    /// Set of the products a user has (had) a validity membership of: the listing index of
    /// `GET /api/v1/users/{id}/memberships`. Written ahead of the decision on a cluster (its
    /// own slot), so an entry may lack its record: the listing drops those.
    static func userMemberships(_ user: String) -> String { "gw:\(tag(.user(user))):memberships" }
}

extension CommerceStore {
    /// A user's validity memberships with their products: the index, then each record
    /// (loaded in its product's slot, all sent at once); index entries without a record or
    /// product (a decision refused after its index write) are left out.
    func memberships(of user: String, _ done: @escaping (Result<[(Membership, Product)], GatewayError>) -> Void) {
        membershipProducts(of: user) { listed in
            guard case .success(let products) = listed else { return done(listed.map { _ in [] }) }
            guard !products.isEmpty else { return done(.success([])) }
            var rows: [(Membership, Product)] = []
            var failure: GatewayError?
            var remaining = products.count
            for product in products {
                self.load(.membership(product: product, user: user)) { loaded in
                    switch loaded {
                    case .failure(let e): failure = e
                    case .success(let s):
                        if case .present(let m) = s.membership, let p = s.product { rows.append((m, p)) }
                    }
                    remaining -= 1
                    guard remaining == 0 else { return }
                    done(failure.map { .failure($0) } ?? .success(rows))
                }
            }
        }
    }
}
