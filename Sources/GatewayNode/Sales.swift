import Foundation
import GatewayCore
import GatewayIO
import GatewayProtocol
import OrderCore

/// Flash sales on the node (contract 4.8): the HTTP calls, `sale.buy`, the `sale:` subscribe
/// rule and the sale's timed pushes. Every change is one script in the product's slot
/// (`SaleStore`); the node adds a cache of the sales' fixed terms, a per-sale door so a rush
/// does not pile onto one Redis shard (`SaleGate`), and precise local timers for pushes due
/// within `SaleClock.localHorizonMs`, which the 250 ms sweep alone would send late.
extension Node {
    var saleStore: (any SaleStore)? { orderStore.sales }

    /// Buys of one sale one node holds waiting at its door (each client's own are already
    /// capped by its command budget).
    static let saleQueueLimit = 50_000

    static let saleStoreMissing = GatewayError(.unavailable, "flash sales need the Redis store", temporary: true)

    // MARK: HTTP

    func saleRequest(_ request: HTTPRequest, _ route: SaleRoute, _ caller: APICaller) {
        switch route {
        case .create:
            withJSONBody(request) { body in
                let now = self.now
                switch SaleSpec.decode(body, now: now) {
                case .failure(let e): self.fail(request, e)
                case .success(let spec):
                    self.createSale(spec, merchant: caller.merchantID) { result in
                        switch result {
                        case .failure(let e): self.fail(request, e)
                        case .success(let (sale, created)): self.respond(request, created ? 201 : 200, sale.json(at: self.now))
                        }
                    }
                }
            }
        case .get(let id):
            guard Names.isValidID(id), let sales = saleStore else {
                return fail(request, Names.isValidID(id) ? Self.saleStoreMissing : .notFound("no sale \(id)"))
            }
            sales.sale(id) { result in
                switch result {
                case .failure(let e): self.fail(request, e)
                case .success(nil): self.fail(request, .notFound("no sale \(id)"))
                case .success(let sale?):
                    if case .merchant(let m) = caller, sale.merchant != m {
                        return self.fail(request, Sale.notYours(id))
                    }
                    self.respond(request, 200, sale.json(at: self.now))
                }
            }
        case .close(let id):
            guard Names.isValidID(id), let sales = saleStore else {
                return fail(request, Names.isValidID(id) ? Self.saleStoreMissing : .notFound("no sale \(id)"))
            }
            sales.closeSale(id, merchant: caller.merchantID) { result in
                switch result {
                case .failure(let e): self.fail(request, e)
                case .success(nil): self.fail(request, .notFound("no sale \(id)"))
                case .success(let sale?): self.respond(request, 200, sale.json(at: self.now))
                }
            }
        }
    }

    /// Creates sale `spec` (`POST /api/v1/sales`, GatewayDev's `/dev/sales`): units set aside
    /// from stock in one step, its timer set; `created` false for an identical repeat.
    /// `merchant`: that merchant's products only.
    package func createSale(_ spec: SaleSpec, merchant: String?,
                            _ done: @escaping (Result<(Sale, created: Bool), GatewayError>) -> Void) {
        guard let sales = saleStore else { return done(.failure(Self.saleStoreMissing)) }
        sales.createSale(spec, merchant: merchant) { result in
            if case .success(let (sale, _)) = result {
                self.saleDirectory.remember(sale)
                // A sale starting within the horizon: its open is timed here, not by the next sweep.
                self.armSaleTick(product: sale.product, sale: sale.id, at: sale.spec.firstDue(at: self.now))
            }
            done(result)
        }
    }

    // MARK: sale.buy

    func saleCommand(_ client: Client, _ id: Int64, _ command: SaleCommand, user: String) {
        switch command {
        case .buy(let sale, let quantity, let product):
            let ticket = SaleBuyTicket(client, sale: sale, buyer: user, quantity: quantity, product: product,
                                       answer: answerer(client, id, op: command.op))
            lookUpAndBuy(ticket)
        }
    }

    private func lookUpAndBuy(_ ticket: SaleBuyTicket, fresh: Bool = false) {
        saleInfo(ticket.sale, fresh: fresh) { result in
            switch result {
            case .failure(let e): ticket.finish(.failure(e), self)
            case .success(nil): ticket.finish(.failure(SaleRefusal.unknown.error(sale: ticket.sale)), self)
            case .success(let sale?):
                if let product = ticket.product, product != sale.product {
                    // The cached sale may be an earlier one of a reused id: asked once more, fresh,
                    // but kept unless Redis differs (a wrong product alone must not evict it).
                    if self.lookUpAgain(ticket, sale, forget: false) { return }
                    return ticket.finish(.failure(.badRequest("sale \(sale.id) is for product \(sale.product)")), self)
                }
                ticket.info = sale
                if let action = self.saleGate.arrive(sale.id, ticket, now: self.now) { self.gateActions([action]) }
            }
        }
    }

    private func gateActions(_ actions: [SaleGate<SaleBuyTicket>.Action]) {
        var actions = actions
        var next = 0
        while next < actions.count {
            let action = actions[next]
            next += 1
            switch action {
            case .start(let ticket):
                // A buyer gone while its buy waited at the door takes no units: the next one goes.
                guard let sale = ticket.info, let client = ticket.client, isLive(client) else {
                    actions += saleGate.finished(ticket.sale, soldOut: false, now: now)
                    continue
                }
                // Answered here, not by a store failing at once: a queue refused that way
                // would start (and refuse) its next buy from inside this one's answer.
                guard orderStore.store.isReady else {
                    ticket.finish(.failure(.redisUnavailable), self)
                    actions += saleGate.finished(ticket.sale, soldOut: false, now: now)
                    continue
                }
                startBuy(ticket, sale)
            case .soldOut(let ticket):
                ticket.finish(.failure(SaleRefusal.soldOut.error(sale: ticket.sale)), self, outcome: "sold_out_here")
            case .busy(let ticket):
                ticket.finish(.failure(GatewayError(.unavailable, "too many buys of sale \(ticket.sale) waiting on this node",
                                                    temporary: true, retryAfterMs: 250)), self)
            }
        }
    }

    /// One buy through the door: the order decided here, taken with its units in one script.
    private func startBuy(_ ticket: SaleBuyTicket, _ sale: Sale) {
        let decision = orderRules.createSaleOrder(sale, buyer: ticket.buyer, quantity: ticket.quantity, now: now,
                                                  orderID: freshID("o", product: sale.product))
        orderStore.buySale(decision, sale: sale, buyer: ticket.buyer, quantity: ticket.quantity) { result in
            let soldOut = if case .success(.refused(.soldOut)) = result { true } else { false }
            self.gateActions(self.saleGate.finished(sale.id, soldOut: soldOut, now: self.now))
            switch result {
            case .failure(let e): ticket.finish(.failure(e), self)
            case .success(.bought(let stockDue)):
                if let stockDue { self.armSaleTick(product: sale.product, sale: sale.id, at: stockDue) }
                ticket.finish(.success(decision.savedOrder!.json(for: .user(ticket.buyer))), self, outcome: "bought")
            case .success(.refused(let refusal)):
                // The id names a newer sale than the one cached (stale), or one of another
                // product while the cached one is gone (unknown): decided once more.
                if refusal == .stale || refusal == .unknown, self.lookUpAgain(ticket, sale, forget: true) { return }
                ticket.finish(.failure(refusal.error(sale: sale.id)), self, outcome: refusal.outcome)
            }
        }
    }

    /// Looks the id up again, once per buy; false when done already. `forget` when the script
    /// proved the cached `sale` gone; otherwise the fresh lookup replaces it only if it differs.
    private func lookUpAgain(_ ticket: SaleBuyTicket, _ sale: Sale, forget: Bool) -> Bool {
        guard !ticket.retried else { return false }
        if forget { saleDirectory.forget(sale.id, nonce: sale.nonce) }
        ticket.retried = true
        ticket.info = nil
        lookUpAndBuy(ticket, fresh: !forget)
        return true
    }

    /// A sale's fixed terms, from the cache (unless `fresh`) or one lookup shared by every caller meanwhile.
    func saleInfo(_ id: String, fresh: Bool = false, _ done: @escaping (Result<Sale?, GatewayError>) -> Void) {
        let cached = saleDirectory.cached(id)
        if let cached, !fresh { return done(.success(cached)) }
        guard let sales = saleStore else { return done(.failure(Self.saleStoreMissing)) }
        guard saleDirectory.wait(id, done) else { return }
        sales.sale(id) { result in
            switch result {
            case .success(let sale?): if sale.nonce != cached?.nonce { self.saleDirectory.remember(sale) }
            case .success(nil): if let cached { self.saleDirectory.forget(id, nonce: cached.nonce) }
            case .failure: break
            }
            for waiter in self.saleDirectory.takeWaiters(id) { waiter(result) }
        }
    }

    // MARK: Channel and timers

    /// `subscribe`/`history` of `sale:<id>`: any connected user, once the sale exists.
    func authorizeSale(_ id: String, _ done: @escaping (GatewayError?) -> Void) {
        saleInfo(id) { result in
            switch result {
            case .failure(let e): done(e)
            case .success(nil): done(.notFound("no sale \(id)"))
            case .success: done(nil)
            }
        }
    }

    /// A publication on `sale:<id>` reached this node: a `sale.stock` with units reopens the
    /// door a "sold out" answer closed (an unpaid order's units came back).
    func saleAnnounced(_ id: String, _ publication: Publication) {
        guard saleGate.sales > 0, let push = try? JSON.parse(publication.payload.bytes),
              push["push"]?.stringValue == "sale.stock", let remaining = push["data"]?["remaining"]?.intValue else { return }
        gateActions(saleGate.stock(id, remaining: Int(remaining), now: now))
    }

    /// A due `sale:<product>/<sale>` timer (the sweep's, or a local one). The script moves or
    /// removes the timer.
    func tickSale(product: String, sale: String, _ done: @escaping () -> Void) {
        guard let sales = saleStore else { return done() }
        sales.tickSale(product: product, sale: sale) { result in
            if case .success(let tick) = result, let next = tick.nextDue {
                self.armSaleTick(product: product, sale: sale, at: next)
            }
            done()
        }
    }

    /// A local timer for a sale push due within the horizon; one per sale, the earliest due.
    /// Every node may tick: the script's phase makes each push go out once.
    func armSaleTick(product: String, sale: String, at due: Int64) {
        let now = self.now
        guard due - now <= SaleClock.localHorizonMs else { return }
        let key = "\(product)/\(sale)"
        if let armed = saleTimers[key] {
            if armed.due <= due { return }
            armed.timer.cancel()
        }
        // The same due answered again by the tick this timer ran: Redis's clock is behind the node's.
        let repeats = saleRearms[key].map { $0.due == due ? $0.repeats + 1 : 0 } ?? 0
        let delay = Int(SaleClock.delayMs(due: due, now: now, repeats: repeats))
        let timer = loop.schedule(afterMs: delay) { [weak self] in
            guard let self else { return }
            self.saleTimers[key] = nil
            self.saleRearms[key] = (due, repeats)
            self.tickSale(product: product, sale: sale) { self.saleRearms[key] = nil }
        }
        saleTimers[key] = (due, timer)
    }
}

/// Times of the sale pushes the node arms itself.
enum SaleClock {
    /// A tick due sooner than this gets a local timer beside the sweep.
    static let localHorizonMs: Int64 = 2_000
    static let minRearmMs: Int64 = 5
    /// Past that the sweep (every 250 ms) asks as often.
    static let maxRearmMs: Int64 = 250

    /// How long until a local timer for `due` fires. A due the node's clock has passed but
    /// Redis's not yet is asked again shortly, backing off (5, 10, 20 ... 250 ms) while the
    /// tick keeps answering it: a node a second ahead of Redis ticks ~10 times, not 200.
    static func delayMs(due: Int64, now: Int64, repeats: Int) -> Int64 {
        max(due - now, min(minRearmMs << min(repeats, 8), maxRearmMs))
    }
}

/// One `sale.buy` on its way through lookup, door and script.
final class SaleBuyTicket {
    weak var client: Client?
    let sale: String
    let buyer: String
    let quantity: Int
    let product: String?
    let answer: (Result<JSON, GatewayError>) -> Void
    /// The sale as cached when the buy passed the door.
    var info: Sale?
    /// Already looked up again after a `stale` refusal.
    var retried = false

    init(_ client: Client, sale: String, buyer: String, quantity: Int, product: String?,
         answer: @escaping (Result<JSON, GatewayError>) -> Void) {
        self.client = client
        self.sale = sale
        self.buyer = buyer
        self.quantity = quantity
        self.product = product
        self.answer = answer
    }

    func finish(_ result: Result<JSON, GatewayError>, _ node: Node, outcome: String? = nil) {
        node.metrics.saleBuys[outcome ?? Self.outcome(of: result), default: 0] += 1
        answer(result)
    }

    static func outcome(of result: Result<JSON, GatewayError>) -> String {
        switch result {
        case .success: "bought"
        case .failure(let e): e.code.rawValue
        }
    }
}

extension SaleRefusal {
    /// The `outcome` label of `gateway_sale_buys_total` (`sold_out_here`: the node's door
    /// answered, no script ran).
    var outcome: String {
        switch self {
        case .unknown, .stale: "unknown"
        case .tooEarly: "too_early"
        case .ended: "ended"
        case .soldOut: "sold_out"
        case .onlyLeft: "only_left"
        case .overLimit: "over_limit"
        }
    }
}

/// The node's cache of sales (sale id -> the sale as looked up; only its fixed terms are
/// used: the counts are Redis's), bounded, with one lookup per sale in flight.
final class SaleDirectory {
    static let capacity = 10_000

    private var entries: [String: (sale: Sale, used: UInt64)] = [:]
    private var waiters: [String: [(Result<Sale?, GatewayError>) -> Void]] = [:]
    private var clock: UInt64 = 0

    func cached(_ id: String) -> Sale? {
        guard let entry = entries[id] else { return nil }
        clock += 1
        entries[id]?.used = clock
        return entry.sale
    }

    /// Queues `done` for the lookup of `id`; true when the caller is the first and looks up.
    func wait(_ id: String, _ done: @escaping (Result<Sale?, GatewayError>) -> Void) -> Bool {
        let first = waiters[id] == nil
        waiters[id, default: []].append(done)
        return first
    }

    func takeWaiters(_ id: String) -> [(Result<Sale?, GatewayError>) -> Void] {
        waiters.removeValue(forKey: id) ?? []
    }

    func remember(_ sale: Sale) {
        clock += 1
        entries[sale.id] = (sale, clock)
        guard entries.count > Self.capacity else { return }
        // The least recently used tenth goes at once, so eviction is rare, not per insert.
        let drop = entries.sorted { $0.value.used < $1.value.used }.prefix(Self.capacity / 10)
        for (id, _) in drop { entries[id] = nil }
    }

    /// Drops `id` if it is still the sale with `nonce` (a newer lookup may have replaced it).
    func forget(_ id: String, nonce: String) {
        if entries[id]?.sale.nonce == nonce { entries[id] = nil }
    }

    var count: Int { entries.count }
}

extension APICaller {
    /// The merchant a call is limited to; nil for the shop.
    var merchantID: String? {
        if case .merchant(let m) = self { m } else { nil }
    }
}
