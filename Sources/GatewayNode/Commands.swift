import Foundation
import GatewayAuth
import GatewayCore
import GatewayIO
import GatewayProtocol

extension Node {
    func handle(_ client: Client, _ id: Int64, _ command: Command) {
        if case .session(.connect(let token, let since)) = command {
            connect(client, id, token: token, since: since)
            return
        }
        guard client.isConnected, let claims = client.claims else {
            reply(client, id, error: GatewayError(.unauthorized, client.claims == nil ? "send connect first" : "connect is still in progress"), op: command.op)
            return
        }
        switch command {
        case .session(let command): sessionCommand(client, id, command)
        case .channel(let command): channelCommand(client, id, command, claims)
        case .order(let command): orderCommand(client, id, command, user: claims.sub)
        case .community(let command): communityCommand(client, id, command, claims)
        case .sale(let command): saleCommand(client, id, command, user: claims.sub)
        }
    }

    private func sessionCommand(_ client: Client, _ id: Int64, _ command: SessionCommand) {
        switch command {
        case .connect(let token, let since):
            // Answered "already connected".
            connect(client, id, token: token, since: since)
        case .refresh(let token):
            refresh(client, id, token: token)
        case .ping:
            reply(client, id, .object([]), op: "ping")
        }
    }

    private func channelCommand(_ client: Client, _ id: Int64, _ command: ChannelCommand, _ claims: Claims) {
        switch command {
        case .subscribe(let channel, let since):
            let ticket = client.startAuthorizing(channel)
            authorize(claims, channel, op: "subscribe", live(client) { [weak self] error in
                guard let self else { return }
                // An unsubscribe sent after this subscribe wins, even while it was being authorized.
                let stillWanted = client.finishAuthorizing(channel, ticket)
                if let error {
                    self.reply(client, id, error: error, op: "subscribe")
                    return
                }
                if !stillWanted {
                    self.reply(client, id, error: GatewayError(.conflict, "unsubscribed from \(channel) before the subscription completed"),
                               op: "subscribe")
                    return
                }
                if client.channels.contains(channel) {
                    self.reply(client, id, error: GatewayError(.conflict, "already subscribed to \(channel)"), op: "subscribe")
                    return
                }
                client.channels.append(channel)
                let ticket = client.hubTicket(for: id)
                client.pendingSubscribes[channel] = ticket
                self.count(op: "subscribe", "ok")
                self.execute(self.hub.subscribe(client.conn.id, to: channel, since: since, request: ticket))
            })
        case .unsubscribe(let channel):
            if channel == .user(claims.sub) {
                reply(client, id, error: .badRequest("the personal channel stays subscribed"), op: "unsubscribe")
                return
            }
            endSubscription(client, channel, user: claims.sub)
            reply(client, id, .object([]), op: "unsubscribe")
        case .history(let channel, let since, let limit):
            authorize(claims, channel, op: "history", live(client) { [weak self] error in
                guard let self else { return }
                if let error {
                    self.reply(client, id, error: error, op: "history")
                    return
                }
                self.history(client, id, channel, since: since, limit: limit)
            })
        }
    }

    /// Ends `client`'s subscription to `channel` (an unsubscribe, or a right lost), and any
    /// subscribe of it still being authorized or read. True when there was one to end.
    @discardableResult
    func endSubscription(_ client: Client, _ channel: Channel, user: String) -> Bool {
        let wasAuthorizing = client.authorizing.removeValue(forKey: channel) != nil
        guard let index = client.channels.firstIndex(of: channel) else { return wasAuthorizing }
        client.channels.remove(at: index)
        execute(hub.unsubscribe(client.conn.id, from: channel))
        // The hub forgets a subscribe still reading; answer it so it does not hang
        // (and its in-flight slot comes back).
        if let pending = client.pendingSubscribes.removeValue(forKey: channel),
           let pendingID = client.hubRequests.removeValue(forKey: pending) {
            reply(client, pendingID, error: GatewayError(.conflict, "unsubscribed from \(channel) before the subscription completed"),
                  op: "subscribe")
        }
        if let i = client.present.firstIndex(of: channel) {
            client.present.remove(at: i)
            presenceLeft(channel, user: user)
        }
        return true
    }

    private func connect(_ client: Client, _ id: Int64, token: String, since: StreamPosition?) {
        if client.claims != nil {
            reply(client, id, error: GatewayError(.conflict, "already connected"), op: "connect")
            return
        }
        let now = Int64(Date().timeIntervalSince1970)
        switch verifier.verify(token, nowSeconds: now) {
        case .failure(let error):
            reply(client, id, error: GatewayError(.unauthorized, error.message), op: "connect")
            client.conn.close(code: error.closeCode, reason: error.message)
        case .success(let claims):
            guard redis.isReady else {
                reply(client, id, error: .redisUnavailable, op: "connect")
                return
            }
            guard userQuota.tryAdd(claims.sub) else {
                // Per node (PROTOCOL.md): the error first, then 4029 (reconnect later, with backoff).
                reply(client, id, error: GatewayError(.rateLimited, "more than \(options.connsPerUser) connections of this user",
                                                      temporary: true, retryAfterMs: Self.tooManyConnectionsRetryMs), op: "connect")
                client.conn.close(code: CloseCode.tooManyConnections.rawValue, reason: "too many connections of this user")
                return
            }
            client.countedUser = claims.sub
            // Claims and the connect ticket are set before the ban is read: a disconnect or
            // ban signal arriving meanwhile finds this connection and closes it.
            client.claims = claims
            liveControl.opened(client.conn.id, user: claims.sub)
            startTokenClock(client, exp: claims.exp)
            let ticket = client.hubTicket(for: id)
            client.connectRequest = ticket
            // The ban is read beside the personal channel (not before it: one wait, not two);
            // the channel's answer is held until the ban read is in (`Client.heldConnectAnswer`).
            client.banUnread = true
            controlStore.banEnd(user: claims.sub, live(client) { [weak self] result in
                guard let self, !client.conn.isClosing else { return }
                let held = client.heldConnectAnswer
                let heldPushes = client.heldPushes
                client.banUnread = false
                client.heldConnectAnswer = nil
                client.heldPushes = []
                switch result {
                case .success(nil):
                    held?()
                    for payload in heldPushes where !client.conn.send(payload) {
                        self.metrics.slowClosed += 1
                        break
                    }
                case .success(let endsAt?):
                    client.hubRequests[ticket] = nil
                    self.reply(client, id, error: .forbidden("banned until \(endsAt)"), op: "connect")
                    client.conn.close(code: CloseCode.removed.rawValue, reason: "banned")
                case .failure(let error):
                    client.hubRequests[ticket] = nil
                    self.reply(client, id, error: error, op: "connect")
                    client.conn.close(code: CloseCode.goingAway.rawValue, reason: "storage unavailable")
                }
            })
            // A ban read answered at once (Redis lost) may have closed the connection already.
            guard !client.conn.isClosing else { return }
            let personal = Channel.user(claims.sub)
            client.channels.append(personal)
            execute(hub.subscribe(client.conn.id, to: personal, since: since, request: ticket))
        }
    }

    /// Retry hint with the per-user connection refusal: a connection has to close first,
    /// so a few seconds, with the client's own backoff on top.
    static let tooManyConnectionsRetryMs: Int64 = 5_000

    /// Who may read a channel (PROTOCOL.md 2.2). Calls back with nil when allowed.
    func authorize(_ claims: Claims, _ channel: Channel, op: String, _ done: @escaping (GatewayError?) -> Void) {
        switch channel.kind {
        case .user:
            done(channel.id == claims.sub ? nil : .forbidden("\(channel) is another user's channel"))
        case .group:
            if claims.role != .buyer {
                done(claims.products.contains(channel.id) ? nil : .forbidden("your token does not list product \(channel.id)"))
                return
            }
            communityStore.isBuyer(product: channel.id, user: claims.sub) { result in
                switch result {
                case .failure(let error): done(error)
                case .success(let buyer): done(buyer ? nil : .forbidden("not a buyer of \(channel.id)"))
                }
            }
        case .product:
            communityStore.productExists(channel.id) { result in
                switch result {
                case .failure(let error): done(error)
                case .success(let exists): done(exists ? nil : .notFound("no product \(channel.id)"))
                }
            }
        case .sale:
            authorizeSale(channel.id, done)
        }
    }

    /// The newest page that fits `history.max_reply_bytes` and `history.max_recover`, with
    /// `"truncated":true` when those caps (not `limit`) left publications out.
    private func history(_ client: Client, _ id: Int64, _ channel: Channel, since: StreamPosition?, limit: Int) {
        channelStore.history(channel, since: since, limit: limit, live(client) { [weak self] result in
            guard let self else { return }
            switch result {
            case .failure(let error):
                self.reply(client, id, error: error, op: "history")
            case .success(let page):
                self.count(op: "history", "ok")
                var fields: [(String, JSON)] = [("offset", .int(page.offset)), ("epoch", .string(page.epoch))]
                if page.truncated { fields.append(("truncated", .bool(true))) }
                self.sendReply(client, id, ReplyEncoder.okWithPublications(id: id, fields: fields, publications: page.publications))
            }
        })
    }

    /// Publishes a push: history first, then the announcement. `merchant` non-nil: only to
    /// that merchant's product's group: or product: channel.
    func publish(_ channel: Channel, type: String, data: JSON, merchant: String? = nil,
                 _ done: @escaping (Result<UInt64, GatewayError>) -> Void) {
        channelStore.publish(channel, type: type, data: data.serialized(), merchant: merchant) { result in
            switch result {
            case .failure(let error): done(.failure(error))
            case .success(.published(let offset)): done(.success(offset))
            case .success(.noProduct): done(.failure(.notFound("no product \(channel.id)")))
            case .success(.notYours): done(.failure(.forbidden("product \(channel.id) is not yours")))
            }
        }
    }
}
