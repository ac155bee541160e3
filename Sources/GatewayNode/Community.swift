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

    func communityCommand(_ client: Client, _ id: Int64, _ command: Command, _ claims: Claims) {
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
                let keys = [Keys.presenceOnline(channel), Keys.presenceNodes(channel), CommerceKeys.members(channel.id)]
                self.redis.eval(CommunityScripts.presence, keys: keys, args: [self.presenceNode]) { reply in
                    guard let items = reply.array, items.count >= 2, let online = items[0].int, let buyers = items[1].int else {
                        return answer(.failure(self.storageError(reply)))
                    }
                    answer(.success(.object([("online", .int(online)), ("buyers", .int(buyers)),
                                             ("users", .array(items.dropFirst(2).compactMap { $0.text.map(JSON.string) }))])))
                }
            })
        case .moderate(let channel, let action, let user, let offset, let seconds):
            guard claims.products.contains(channel.id), claims.role == .merchant || (claims.role == .bot && claims.moderator) else {
                return answer(.failure(.forbidden("only the product's merchant or a moderator bot may moderate")))
            }
            // `seconds` is within Ranges.moderateSeconds (decoder), so this cannot overflow.
            let until = now + (seconds ?? Ranges.defaultMuteSeconds) * 1000
            let args: [RedisArgument] = [channel.id, action.rawValue, user ?? "", until, offset ?? 0,
                                         options.historyGroupSize, options.historyTTLSeconds, newEpoch()]
            redis.eval(CommunityScripts.moderate, keys: [], args: args) { reply in
                switch reply.int {
                case 1?: answer(.success(.object([])))
                case 0?: answer(.failure(.notFound("no message at offset \(offset ?? 0) in \(channel)")))
                default: answer(.failure(self.storageError(reply)))
                }
            }
        case .watch(let product, let below):
            let ttl = Int64(options.watchTTLSeconds) * 1000
            redis.eval(CommunityScripts.watch, keys: [], args: [product, claims.sub, below.map { String($0) } ?? "", now, ttl]) { reply in
                guard let price = reply.int else { return answer(.failure(self.storageError(reply))) }
                if price < 0 { return answer(.failure(.notFound("no product \(product)"))) }
                answer(.success(.object([("product", .string(product)), ("price", .int(price)), ("below", .int(below ?? price))])))
            }
        case .unwatch(let product):
            redis.eval(CommunityScripts.unwatch, keys: [], args: [product, claims.sub]) { reply in
                answer(reply.isFailure ? .failure(self.storageError(reply)) : .success(.object([])))
            }
        case .watches:
            redis.eval(CommunityScripts.watches, keys: [], args: [claims.sub]) { reply in
                guard let items = reply.array else { return answer(.failure(self.storageError(reply))) }
                var list: [JSON] = []
                var i = 0
                while i + 2 < items.count {
                    if let p = items[i].text, let r = items[i + 1].text, let w = Watch(product: p, user: claims.sub, record: r),
                       w.expiresAt > self.now {
                        list.append(w.json(price: items[i + 2].int))
                    }
                    i += 3
                }
                answer(.success(.object([("watches", .array(list))])))
            }
        default:
            answer(.failure(.badRequest("not a community command")))
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
        let args: [RedisArgument] = [product, claims.sub, buyer ? "1" : "0", options.groupRate,
                                     options.groupRateWindowSeconds * 1000, JSON.object(data).serialized(),
                                     options.historyGroupSize, options.historyTTLSeconds, newEpoch()]
        redis.eval(CommunityScripts.groupPublish, keys: [], args: args) { reply in
            guard let items = reply.array, let first = items.first?.int else { return answer(.failure(self.storageError(reply))) }
            switch first {
            case -1: answer(.failure(.forbidden("you are muted in this group")))
            case -2:
                let retry = items.count > 1 ? items[1].int ?? 0 : 0
                answer(.failure(GatewayError(.rateLimited, "at most \(self.options.groupRate) messages per \(self.options.groupRateWindowSeconds) s",
                                             temporary: true, retryAfterMs: max(retry, 1))))
            default: answer(.success(.object([("offset", .int(first))])))
            }
        }
    }

    // MARK: Presence

    private func presenceKeys(_ channel: Channel) -> [String] { [Keys.presenceOnline(channel), Keys.presenceNodes(channel)] }

    /// A connection of `user` now listens to `channel` (group: and product: only). Redis
    /// hears only of the first local connection of a user and the last one leaving.
    func presenceJoined(_ channel: Channel, user: String) {
        guard channel.kind != .user else { return }
        var users = presence[channel] ?? [:]
        users[user, default: 0] += 1
        presence[channel] = users
        if users[user] == 1 {
            redis.eval(CommunityScripts.presenceJoin, keys: presenceKeys(channel), args: [presenceNode, presenceTTLMs, user]) { [weak self] reply in
                // Taken for dead while it had other users here: they may have been reaped.
                guard let self, reply.int == 1, (self.presence[channel]?.count ?? 0) > 1 else { return }
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
            redis.eval(CommunityScripts.presenceLeave, keys: presenceKeys(channel), args: [presenceNode, user]) { _ in }
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
                self.redis.eval(CommunityScripts.presenceRenew, keys: self.presenceKeys(channel),
                                args: [self.presenceNode, self.presenceTTLMs]) { [weak self] reply in
                    if reply.int == 1 { self?.syncPresence(channel) }
                }
            }
        }
    }

    /// Makes Redis hold exactly this node's local users of `channel` (after Redis came
    /// back, when joins or leaves may have been lost). O(local users), rare.
    func syncPresence(_ channel: Channel) {
        let users = presence[channel].map { Array($0.keys) } ?? []
        let args: [RedisArgument] = [presenceNode, presenceTTLMs] + users.map { $0 as RedisArgument }
        redis.eval(CommunityScripts.presenceSync, keys: presenceKeys(channel), args: args) { _ in }
    }

    // MARK: Prices

    /// `PATCH /api/v1/products/{id}`: a lower price announces `product.price` and alerts watchers.
    func updateProduct(_ request: HTTPRequest, _ caller: APICaller, _ id: String, _ body: JSON) {
        var price = ""
        switch ProductPrice.decode(body["price"]) {
        case .failure(let error): return fail(request, error)
        case .success(let v): price = v.map { String($0) } ?? ""
        }
        var title = ""
        if let t = body["title"], !t.isNull {
            guard let v = t.stringValue, (1...200).contains(v.trimmingCharacters(in: .whitespaces).count) else {
                return fail(request, .badRequest("\"title\" must be 1 to 200 characters"))
            }
            title = v
        }
        guard Names.isValidID(id) else { return fail(request, .badRequest("not a valid product id")) }
        let go = {
            let args: [RedisArgument] = [id, price, title, self.options.historyProductSize, self.options.historyTTLSeconds, self.newEpoch()]
            self.redis.eval(CommunityScripts.updateProduct, keys: [], args: args) { reply in
                guard let r = reply.array else { return self.fail(request, self.storageError(reply)) }
                guard r.count == 5, let previous = r[0].int, let now = r[1].int, let title = r[2].text, let currency = r[3].text
                else { return self.fail(request, .notFound("no product \(id)")) }
                self.getProduct(request, caller, id)
                if now < previous {
                    self.alertWatchers(AlertWalk(product: id, title: title, currency: currency, previous: previous, price: now))
                }
            }
        }
        guard case .merchant(let m) = caller else { return go() }
        redis.send(["HGET", Keys.product(id), "merchant"]) { reply in
            guard let owner = reply.text else { return self.fail(request, reply.isFailure ? self.storageError(reply) : .notFound("no product \(id)")) }
            guard owner == m else { return self.fail(request, .forbidden("product \(id) belongs to another merchant")) }
            go()
        }
    }

    /// One price drop's walk over the watchers above the new price, a page at a time.
    /// The next page is read while the previous one is being sent (one page ahead, no
    /// more), so Redis never waits on this node and other commands still interleave.
    final class AlertWalk {
        let product: String, title: String, currency: String
        let previous: Int64, price: Int64
        let started = DispatchTime.now().uptimeNanoseconds
        var nextStart = 0
        var reading = false
        var readAll = false
        var sending = 0
        var sent = 0

        init(product: String, title: String, currency: String, previous: Int64, price: Int64) {
            self.product = product
            self.title = title
            self.currency = currency
            self.previous = previous
            self.price = price
        }

        var done: Bool { readAll && !reading && sending == 0 }
        var elapsedMs: Double { Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6 }
    }

    func alertWatchers(_ walk: AlertWalk) {
        guard !walk.reading, !walk.readAll, walk.sending <= 1 else { return }
        walk.reading = true
        let start = walk.nextStart
        walk.nextStart += Self.alertBatch
        redis.eval(CommunityScripts.watchersBelow, keys: [],
                   args: [walk.product, walk.price, start, Self.alertBatch]) { reply in
            walk.reading = false
            if reply.isFailure { self.log("price drop on \(walk.product): reading watchers failed: \(reply)") }
            let all = reply.array ?? []
            let scanned = all.first?.int ?? 0
            if scanned < Self.alertBatch { walk.readAll = true }
            if let args = self.alertArguments(walk, Array(all.dropFirst())) {
                walk.sending += 1
                self.redis.eval(CommunityScripts.sendAlerts, keys: [], args: args) { reply in
                    walk.sending -= 1
                    walk.sent += Int(reply.int ?? 0)
                    self.alertWalkStep(walk)
                }
            }
            self.alertWalkStep(walk)
        }
    }

    private func alertWalkStep(_ walk: AlertWalk) {
        if walk.done {
            if walk.sent > 0 {
                log("price drop on \(walk.product): \(walk.sent) alerts in \(String(format: "%.0f", walk.elapsedMs)) ms")
            }
        } else {
            alertWatchers(walk)
        }
    }

    /// `sendAlerts` arguments for the watchers of one page the alert rule picks; nil when
    /// it picks none.
    private func alertArguments(_ walk: AlertWalk, _ items: [RedisReply]) -> [RedisArgument]? {
        let now = self.now
        let cooldown = Int64(options.alertCooldownSeconds) * 1000
        var args: [RedisArgument] = [walk.product, options.historyUserSize, options.historyTTLSeconds, newEpoch()]
        var picked = false
        var i = 0
        while i + 1 < items.count {
            defer { i += 2 }
            guard let user = items[i].text, let record = items[i + 1].text,
                  let watch = Watch(product: walk.product, user: user, record: record),
                  AlertRules.shouldAlert(watch, newPrice: walk.price, now: now, cooldownMs: cooldown) else { continue }
            let after = AlertRules.alerted(watch, price: walk.price, now: now)
            args += [user, record, after.record,
                     AlertRules.alertData(watch, title: walk.title, previous: walk.previous, price: walk.price,
                                          currency: walk.currency).serialized()]
            picked = true
        }
        return picked ? args : nil
    }
}
