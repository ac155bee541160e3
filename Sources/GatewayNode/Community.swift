import CommunityCore
import Foundation
import GatewayAuth
import GatewayCore
import GatewayCrypto
import GatewayIO
import GatewayProtocol
import OrderCore

/// Buyer groups, presence, moderation and price watches on the node.
extension Node {
    var presenceTTLMs: Int64 { Int64(options.presenceTTLSeconds) * 1000 }

    // MARK: Commands

    func communityCommand(_ client: Client, _ id: Int64, _ command: CommunityCommand, _ claims: Claims) {
        let op = command.op
        let answer = answerer(client, id, op: op)
        switch command {
        case .publish(let channel, let text, let replyTo):
            // The size rule needs `groups.max_text_bytes`, so it runs here, as early as the decoder's.
            if let error = GroupRules.textError(text, maxBytes: options.maxTextBytes) { return answer(.failure(error)) }
            authorize(claims, channel, op: op, live(client) { error in
                if let error { return answer(.failure(error)) }
                self.groupPublish(claims, product: channel.id, text: text, replyTo: replyTo, answer)
            })
        case .presence(let channel):
            authorize(claims, channel, op: op, live(client) { error in
                if let error { return answer(.failure(error)) }
                self.communityStore.presence(channel) { result in
                    answer(result.map { snapshot in
                        .object([("online", .int(snapshot.online)), ("buyers", .int(snapshot.buyers)),
                                 ("users", .array(snapshot.users.map(JSON.string)))])
                    })
                }
            })
        case .moderate(let channel, let action, let user, let offset, let seconds):
            guard claims.products.contains(channel.id), claims.role == .merchant || (claims.role == .bot && claims.moderator) else {
                return answer(.failure(.forbidden("only the product's merchant or a moderator bot may moderate")))
            }
            // `seconds` is within Ranges.moderateSeconds (decoder), so this cannot overflow.
            let until = now + (seconds ?? Ranges.defaultMuteSeconds) * 1000
            communityStore.moderate(product: channel.id, action: action, user: user ?? "", untilMs: until, offset: offset ?? 0) { result in
                switch result {
                case .success(true): answer(.success(.object([])))
                case .success(false): answer(.failure(.notFound("no message at offset \(offset ?? 0) in \(channel)")))
                case .failure(let error): answer(.failure(error))
                }
            }
        case .watch(let product, let below, let restock):
            let ttl = Int64(options.watchTTLSeconds) * 1000
            communityStore.watch(product: product, user: claims.sub, below: below, restock: restock, nowMs: now, ttlMs: ttl) { result in
                switch result {
                case .failure(let error): answer(.failure(error))
                case .success(nil): answer(.failure(.notFound("no product \(product)")))
                case .success(let price?):
                    var reply: [(String, JSON)] = [("product", .string(product)), ("price", .int(price)), ("below", .int(below ?? price))]
                    if restock { reply.append(("restock", .bool(true))) }
                    answer(.success(.object(reply)))
                }
            }
        case .unwatch(let product):
            communityStore.unwatch(product: product, user: claims.sub) { result in
                answer(result.map { .object([]) })
            }
        case .watches:
            communityStore.watches(user: claims.sub, nowMs: now) { result in
                answer(result.map { list in .object([("watches", .array(list.map(\.json)))]) })
            }
        case .alsoBought(let product, let limit):
            alsoBought(product: product, limit: limit, merchant: nil, answer)
        }
    }

    private func groupPublish(_ claims: Claims, product: String, text: String, replyTo: UInt64?,
                              _ answer: @escaping (Result<JSON, GatewayError>) -> Void) {
        let buyer = claims.role == .buyer
        if buyer && !options.allowLinks && GroupRules.containsLink(text) {
            return answer(.failure(.forbidden("links are not allowed in group messages")))
        }
        var data: [(String, JSON)] = [("from", .string(claims.sub))]
        if let name = claims.name { data.append(("name", .string(name))) }
        data += [("role", .string(claims.role.rawValue)), ("text", .string(text))]
        if let replyTo { data.append(("reply_to", .int(Int64(replyTo)))) }
        communityStore.groupPublish(product: product, user: claims.sub, limited: buyer, rate: options.groupRate,
                                    windowMs: options.groupRateWindowSeconds * 1000, data: JSON.object(data).serialized()) { result in
            switch result {
            case .failure(let error): answer(.failure(error))
            case .success(.muted): answer(.failure(.forbidden("you are muted in this group")))
            case .success(.rateLimited(let retry)):
                answer(.failure(GatewayError(.rateLimited, "at most \(self.options.groupRate) messages per \(self.options.groupRateWindowSeconds) s",
                                             temporary: true, retryAfterMs: max(retry, 1))))
            case .success(.published(let offset)): answer(.success(.object([("offset", .int(offset))])))
            }
        }
    }

    // MARK: Presence

    /// A connection of `user` now listens to `channel` (group: and product: only). Redis
    /// hears only of the first local connection of a user and the last one leaving.
    func presenceJoined(_ channel: Channel, user: String) {
        guard channel.kind != .user else { return }
        var users = presence[channel] ?? [:]
        users[user, default: 0] += 1
        presence[channel] = users
        if users[user] == 1 {
            communityStore.presenceJoin(channel, node: presenceNode, ttlMs: presenceTTLMs, user: user) { [weak self] result in
                // Taken for dead while it had other users here: they may have been reaped.
                guard let self, case .success(true) = result, (self.presence[channel]?.count ?? 0) > 1 else { return }
                self.syncPresence(channel)
            }
        }
    }

    func presenceLeft(_ channel: Channel, user: String) {
        guard channel.kind != .user, var users = presence[channel], let n = users[user] else { return }
        if n > 1 {
            users[user] = n - 1
        } else {
            users[user] = nil
            communityStore.presenceLeave(channel, node: presenceNode, user: user)
        }
        presence[channel] = users.isEmpty ? nil : users
    }

    /// Every ttl/3 the node renews one heartbeat per channel it has users on (not one
    /// entry per user), which also reaps dead nodes' users a slice at a time. If the node
    /// had been taken for dead meanwhile, it sends its whole list again.
    func refreshPresence() {
        loop.schedule(afterMs: options.presenceTTLSeconds * 1000 / 3) { [weak self] in
            guard let self else { return }
            defer { self.refreshPresence() }
            guard self.redis.isReady else { return }
            for channel in self.presence.keys {
                self.communityStore.presenceRenew(channel, node: self.presenceNode, ttlMs: self.presenceTTLMs) { [weak self] result in
                    if case .success(true) = result { self?.syncPresence(channel) }
                }
            }
        }
    }

    /// Makes Redis hold exactly this node's local users of `channel` (after Redis came
    /// back, when joins or leaves may have been lost). O(local users), rare.
    func syncPresence(_ channel: Channel) {
        let users = presence[channel].map { Array($0.keys) } ?? []
        communityStore.presenceSync(channel, node: presenceNode, ttlMs: presenceTTLMs, users: users)
    }

    // MARK: Prices

    /// `PATCH /api/v1/products/{id}`: a lower price announces `product.price` and alerts watchers.
    package func updateProduct(_ request: HTTPRequest, _ caller: APICaller, _ id: String, _ body: JSON) {
        var price: Int64?
        switch ProductPrice.decode(body["price"]) {
        case .failure(let error): return fail(request, error)
        case .success(let v): price = v
        }
        var title: String?
        if let t = body["title"], !t.isNull {
            guard let v = t.stringValue, (1...200).contains(v.trimmingCharacters(in: .whitespaces).count) else {
                return fail(request, .badRequest("\"title\" must be 1 to 200 characters"))
            }
            title = v
        }
        guard Names.isValidID(id) else { return fail(request, .badRequest("not a valid product id")) }
        var merchant: String?
        if case .merchant(let m) = caller { merchant = m }
        communityStore.updateProduct(id, price: price, title: title, merchant: merchant) { result in
            switch result {
            case .failure(let error): self.fail(request, error)
            case .success(.noProduct): self.fail(request, .notFound("no product \(id)"))
            case .success(.notYours): self.fail(request, .forbidden("product \(id) belongs to another merchant"))
            case .success(.updated(let previous, let now, let title, let currency)):
                self.getProduct(request, caller, id)
                if now < previous {
                    self.alertWatchers(PriceDrop(product: id, title: title, currency: currency, previous: previous, price: now,
                                                 cooldownMs: Int64(self.options.alertCooldownSeconds) * 1000))
                }
            }
        }
    }

    /// How long an alert job may live: far more than a walk takes, so an abandoned one goes.
    static let alertJobTTLMs = 3_600_000

    /// Opens the drop's alert job in Redis, lists it among the open jobs (swept by every node,
    /// so one that misses the signal or restarts still walks it), tells every node (their
    /// walkers share its pages) and walks it here too. If the job cannot be opened, nobody is
    /// alerted (logged).
    func alertWatchers(_ drop: PriceDrop) {
        let job = Crypto.randomToken(8)
        communityStore.openAlerts(product: drop.product, job: job, spec: drop.spec, price: drop.price, ttlMs: Self.alertJobTTLMs) { result in
            if case .failure(let error) = result {
                return self.log("price drop on \(drop.product): no alerts, the job was not opened: \(error.message)", level: .error, .product(drop.product))
            }
            self.communityStore.listAlerts(product: drop.product, job: job, untilMs: self.now + Int64(Self.alertJobTTLMs)) { listed in
                if case .failure(let error) = listed { self.log("price drop alerts not listed for the sweep: \(error.message)", level: .warning, .product(drop.product)) }
            }
            self.walkAlerts(product: drop.product, job: job, opened: true)
            self.controlStore.signal(.alerts(product: drop.product, job: job)) { sent in
                if case .failure(let error) = sent { self.log("price drop alerts not shared with the other nodes: \(error.message)", level: .warning, .product(drop.product)) }
            }
        }
    }

    /// Walks an alert job's pages on this node (once per job). The node that opened it logs
    /// the total when the job is done and drops it.
    func walkAlerts(product: String, job: String, opened: Bool) {
        guard alertWalkers[job] == nil else { return }
        let walker = AlertWalker(product: product, job: job, store: communityStore, now: { [weak self] in self?.now ?? 0 },
                                 schedule: { [weak self] ms, body in _ = self?.loop.schedule(afterMs: ms, body) }) { [weak self] end in
            guard let self, let walker = self.alertWalkers.removeValue(forKey: job) else { return }
            self.communityStore.unlistAlerts(product: product, job: job)
            guard opened, case .done(let sent, let ms) = end else {
                if walker.pages > 0 { self.log("price drop on \(product): this node sent \(walker.sent) alerts from \(walker.pages) pages", .product(product)) }
                return
            }
            self.communityStore.closeAlerts(product: product, job: job)
            if sent > 0 {
                self.log("price drop on \(product): \(sent) alerts in \(ms) ms (\(walker.pages) pages here)", .product(product))
            }
        }
        alertWalkers[job] = walker
        walker.start()
    }

    /// Every few seconds: walks the open alert jobs this node is not walking (its signal was
    /// missed, or this node restarted mid-job). One read; the next sweep after its answer.
    func sweepAlertJobs() {
        loop.schedule(afterMs: 2_000) { [weak self] in
            guard let self else { return }
            guard self.redis.isReady else { return self.sweepAlertJobs() }
            self.communityStore.listedAlerts(nowMs: self.now) { listed in
                for open in (try? listed.get()) ?? [] { self.walkAlerts(product: open.product, job: open.job, opened: false) }
                self.sweepAlertJobs()
            }
        }
    }
}

extension WatchedProduct {
    /// A `watches` entry: the watch, and its restock line place and hold when it has them.
    var json: JSON {
        guard case .object(var fields) = watch.json(price: price) else { return watch.json(price: price) }
        if restock { fields.append(("restock", .bool(true))) }
        if let hold { fields.append(("hold", .object([("until", .int(hold.until))]))) }
        return .object(fields)
    }
}

/// Which watchers of one page a price drop alerts, and with what: the alert rule over
/// each watch, the watch as it becomes, the alert's data. Pure, so it is unit-tested.
struct PriceDrop: Equatable {
    var product: String, title: String, currency: String
    var previous: Int64, price: Int64
    var cooldownMs: Int64

    func alerts(_ watches: [Watch], now: Int64) -> [PriceDropAlert] {
        watches.compactMap { watch in
            guard AlertRules.shouldAlert(watch, newPrice: price, now: now, cooldownMs: cooldownMs) else { return nil }
            return PriceDropAlert(seen: watch, after: AlertRules.alerted(watch, price: price, now: now),
                                  data: AlertRules.alertData(watch, title: title, previous: previous, price: price,
                                                             currency: currency).serialized())
        }
    }
}

extension PriceDrop {
    /// The drop as its alert job keeps it, for the nodes that walk it.
    var spec: String {
        JSON.object([("product", .string(product)), ("title", .string(title)), ("currency", .string(currency)),
                     ("previous", .int(previous)), ("price", .int(price)), ("cooldown_ms", .int(cooldownMs))]).serialized()
    }

    init?(spec: String) {
        guard let json = try? JSON.parse(Array(spec.utf8)), let product = json["product"]?.stringValue,
              let title = json["title"]?.stringValue, let currency = json["currency"]?.stringValue,
              let previous = json["previous"]?.intValue, let price = json["price"]?.intValue,
              let cooldownMs = json["cooldown_ms"]?.intValue else { return nil }
        self.init(product: product, title: title, currency: currency, previous: previous, price: price, cooldownMs: cooldownMs)
    }
}
