import GatewayProtocol
import OrderCore

/// The buyers' risk limits on the node (contract 4.6): a place is taken before an order is
/// created and given back when the order leaves `pending_payment`. The rules are
/// `OrderCore.RiskLimits`; the counting is `RiskStore`'s, in Redis, shared by every node.
extension Node {
    /// Runs `create` once `decoded`'s buyer has a place for order `order` under the limits
    /// (at once when no limit counts it), or answers `refused` with 429 `rate_limited`.
    /// `create` calls `notCreated` when the order was not made, which frees the place. After
    /// `unavailable` too: the order may have been made, but a buyer retrying through a Redis
    /// failover must not run into the limit with places of attempts that never were (such
    /// an order, if it exists, goes uncounted until it is paid or expires).
    func withinRiskLimits(_ decoded: OrderRequest, order: String, refused: @escaping (GatewayError) -> Void,
                          create: @escaping (_ notCreated: @escaping (GatewayError) -> Void) -> Void) {
        let payWindowMs = decoded.kind == .friendpay ? options.commerce.friendpayTTL : options.commerce.orderTTL
        guard let reservation = options.risk.reservation(order: order, buyer: decoded.buyer, kind: decoded.kind,
                                                         payWindowMs: payWindowMs) else {
            return create { _ in }
        }
        let store = riskStore
        store.reserve(reservation) { result in
            switch result {
            case .failure(let e): refused(e)
            case .success(let refusal?): refused(refusal.error)
            case .success(nil):
                create { _ in store.cancel(reservation) }
            }
        }
    }

    /// The places of the orders `decision` took out of `pending_payment` (none while the
    /// unpaid-orders limit is off).
    func riskPlacesFreed(by decision: Decision) -> [(order: String, buyer: String)] {
        guard options.risk.maxPendingOrders > 0 else { return [] }
        return RiskLimits.leftPending(decision)
    }

    /// Frees `places` (after the decision applied; best effort: a lost release lapses at the
    /// order's pay deadline).
    func releaseRiskPlaces(_ places: [(order: String, buyer: String)]) {
        for (order, buyer) in places { riskStore.releasePending(order: order, buyer: buyer) }
    }
}
