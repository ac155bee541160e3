import CommunityCore
import Foundation
import GatewayAuth
import GatewayIO
import GatewayProtocol
import OrderCore

/// Buyer groups, presence, moderation and price watches on the node.
extension Node {
    var presenceTTLMs: Int64 { Int64(options.presenceTTLSeconds) * 1000 }
    static let alertBatch = 1_000

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
                    self.alertWatchers(AlertWalk(PriceDrop(product: id, title: title, currency: currency, previous: previous, price: now,
                                                               cooldownMs: Int64(self.options.alertCooldownSeconds) * 1000)))
                }
            }
        }
    }

    /// One price drop's walk over the watchers above the new price, a page at a time.
    /// The next page is read while the previous one is being sent (one page ahead, no
    /// more), so Redis never waits on this node and other commands still interleave.
    final class AlertWalk {
        let drop: PriceDrop
        let started = DispatchTime.now().uptimeNanoseconds
        var nextStart = 0
        var reading = false
        var readAll = false
        var sending = 0
        var sent = 0

        init(_ drop: PriceDrop) { self.drop = drop }

        var product: String { drop.product }
        var price: Int64 { drop.price }
        var done: Bool { readAll && !reading && sending == 0 }
        var elapsedMs: Double { Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6 }
    }

    func alertWatchers(_ walk: AlertWalk) {
        guard !walk.reading, !walk.readAll, walk.sending <= 1 else { return }
        walk.reading = true
        let start = walk.nextStart
        walk.nextStart += Self.alertBatch
        communityStore.watchersBelow(product: walk.product, price: walk.price, start: start, count: Self.alertBatch) { result in
            walk.reading = false
            if case .failure(let error) = result { self.log("price drop on \(walk.product): reading watchers failed: \(error.message)", level: .error, .product(walk.product)) }
            let page = (try? result.get()) ?? WatcherPage(scanned: 0, watches: [])
            if page.scanned < Self.alertBatch { walk.readAll = true }
            let alerts = walk.drop.alerts(page.watches, now: self.now)
            if !alerts.isEmpty {
                walk.sending += 1
                self.communityStore.sendAlerts(product: walk.product, alerts) { result in
                    walk.sending -= 1
                    walk.sent += (try? result.get()) ?? 0
                    self.alertWalkStep(walk)
                }
            }
            self.alertWalkStep(walk)
        }
    }

    private func alertWalkStep(_ walk: AlertWalk) {
        if walk.done {
            if walk.sent > 0 {
                log("price drop on \(walk.product): \(walk.sent) alerts in \(String(format: "%.0f", walk.elapsedMs)) ms", .product(walk.product))
            }
        } else {
            alertWatchers(walk)
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
