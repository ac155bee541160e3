import GatewayProtocol
import GatewayRedis
import OrderCore

/// What `sale_tick.lua` answered: when the sale is due next (nil: finished, its timer is
/// gone) and the sale as it is now (nil: no such sale).
package struct SaleTick: Equatable {
    package var nextDue: Int64?
    package var sale: Sale?
}

/// The answer of a buy: applied, with the due time of the `sale.stock` push it made
/// pending (nil: one was already pending), or refused by the sale's checks (nothing changed).
package enum SaleBuyOutcome: Equatable {
    case bought(stockDue: Int64?)
    case refused(SaleRefusal)
}

/// Flash sales in Redis (contract 4.8). Every script runs in the product's slot; the
/// `sale:S` channel's pushes go inline (one server) or through the product's outbox.
protocol SaleStore: AnyObject {
    /// Sets the sale's units aside from stock; `created` false: the same sale existed (a repeat).
    /// `merchant`: nil for the shop; another merchant's product is 403.
    func createSale(_ spec: SaleSpec, merchant: String?, done: @escaping (Result<(Sale, created: Bool), GatewayError>) -> Void)
    /// Nil: no such sale.
    func sale(_ id: String, done: @escaping (Result<Sale?, GatewayError>) -> Void)
    /// Closes the sale (idempotent) and returns its unsold units to stock. Nil: no such sale.
    func closeSale(_ id: String, merchant: String?, done: @escaping (Result<Sale?, GatewayError>) -> Void)
    /// Runs what is due of the sale (its timer `sale:<product>/<sale>`) and moves its timer.
    func tickSale(product: String, sale: String, done: @escaping (Result<SaleTick, GatewayError>) -> Void)
    /// `decision`: `OrderRules.createSaleOrder`'s, applied in the same step as the sale's
    /// checks (one round trip; no load first).
    func buySale(_ decision: Decision, sale: Sale, buyer: String, quantity: Int, product: String,
                 done: @escaping (Result<SaleBuyOutcome, GatewayError>) -> Void)
}

extension RedisCommerceStore: SaleStore {
    func createSale(_ spec: SaleSpec, merchant: String?, done: @escaping (Result<(Sale, created: Bool), GatewayError>) -> Void) {
        fatalError("not yet")
    }

    func sale(_ id: String, done: @escaping (Result<Sale?, GatewayError>) -> Void) {
        fatalError("not yet")
    }

    func closeSale(_ id: String, merchant: String?, done: @escaping (Result<Sale?, GatewayError>) -> Void) {
        fatalError("not yet")
    }

    func tickSale(product: String, sale: String, done: @escaping (Result<SaleTick, GatewayError>) -> Void) {
        fatalError("not yet")
    }

    func buySale(_ decision: Decision, sale: Sale, buyer: String, quantity: Int, product: String,
                 done: @escaping (Result<SaleBuyOutcome, GatewayError>) -> Void) {
        fatalError("not yet")
    }
}
