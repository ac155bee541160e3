import Foundation
import GatewayAuth
import GatewayCore
import GatewayCrypto
import GatewayIO
import GatewayProtocol
import OrderCore

/// The shop's control over live connections (PROTOCOL 4.3): `disconnect` and `ban` reach every
/// node through `ControlSignal`s on the control shard channel; each node closes its own
/// connections of the user and reports how many, and the node that took the call adds up the
/// reports of every node that received the signal.
final class LiveControl {
    struct Pending {
        var tally = DisconnectTally()
        let answer: (Int) -> Void
        let timer: LoopTimer?
    }

    /// Disconnects this node asked for, by request id, until every receiving node reported.
    var pending: [String: Pending] = [:]
    /// The next token step (warning, then 4003) of every connection, swept once a second.
    var tokenDeadlines = SecondBuckets<ConnectionID>(nowSecond: Node.wallClockMs() / 1_000)
    /// This node's connections by user (from `connect` on, still connecting included), so a
    /// signal about one user touches only that user's connections, not every one of the node.
    private(set) var connectionsByUser: [String: Set<ConnectionID>] = [:]

    func opened(_ id: ConnectionID, user: String) { connectionsByUser[user, default: []].insert(id) }

    func closed(_ id: ConnectionID, user: String) {
        connectionsByUser[user]?.remove(id)
        if connectionsByUser[user]?.isEmpty == true { connectionsByUser[user] = nil }
    }

    /// How long a disconnect waits for the nodes' reports: a node that received the signal
    /// and died before reporting must not hold the call forever.
    static let reportWaitMs = 3_000
    /// `ban.seconds`: 1 s to a year, as `moderate.seconds`.
    static let banSeconds: ClosedRange<Int64> = 1...31_536_000
}

/// The `/api/v1/users/{id}/…` routes (shop key only, but the membership listing).
enum UserRoute: Equatable {
    case disconnect(String), ban(String), unban(String)
    /// `GET /api/v1/users/{id}/memberships` (4.6): the shop sees all, a merchant its products' only.
    case memberships(String, APICaller)

    var user: String {
        switch self {
        case .disconnect(let user), .ban(let user), .unban(let user), .memberships(let user, _): user
        }
    }
}

extension Node {
    func userRequest(_ request: HTTPRequest, _ route: UserRoute) {
        guard Names.isValidID(route.user) else { return fail(request, .badRequest("not a valid user id")) }
        switch route {
        case .memberships(let user, let caller):
            listMemberships(request, user: user, caller: caller)
        case .disconnect(let user):
            withJSONBodyOrEmpty(request) { body in
                let reason = String((body["reason"]?.stringValue ?? "disconnected by the shop").prefix(100))
                self.disconnectEverywhere(user, reason: reason) { result in
                    switch result {
                    case .failure(let error): self.fail(request, error)
                    case .success(let closed): self.respond(request, 200, .object([("closed", .int(Int64(closed)))]))
                    }
                }
            }
        case .ban(let user):
            withJSONBody(request) { body in
                guard let seconds = body["seconds"]?.intValue, LiveControl.banSeconds.contains(seconds) else {
                    return self.fail(request, .badRequest("\"seconds\" must be an integer from 1 to \(LiveControl.banSeconds.upperBound)"))
                }
                let endsAt = Self.wallClockMs() + seconds * 1_000
                // The ban is written before the signal goes out: a connect racing the signal
                // either finds the ban or is already registered and closed by it.
                self.controlStore.ban(user: user, untilMs: endsAt, seconds: seconds) { written in
                    if case .failure(let error) = written { return self.fail(request, error) }
                    self.log("banned for \(seconds) s", .user(user))
                    self.disconnectEverywhere(user, reason: "banned") { result in
                        switch result {
                        case .failure(let error): self.fail(request, error)
                        case .success(let closed):
                            self.respond(request, 200, .object([("closed", .int(Int64(closed))), ("ends_at", .int(endsAt))]))
                        }
                    }
                }
            }
        case .unban(let user):
            controlStore.unban(user: user) { written in
                if case .failure(let error) = written { return self.fail(request, error) }
                self.log("ban lifted", .user(user))
                self.respond(request, 200, .object([]))
            }
        }
    }

    /// `disconnect` takes an optional body: none, or a JSON object.
    private func withJSONBodyOrEmpty(_ request: HTTPRequest, _ body: (JSON) -> Void) {
        if request.body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return body(.object([])) }
        withJSONBody(request, body)
    }

    /// Closes `user`'s connections here, then signals every node to close theirs with 4010,
    /// and answers how many were closed in all. Closing here first does not wait on this
    /// node's own subscription (down while its pub/sub link reconnects).
    func disconnectEverywhere(_ user: String, reason: String, _ done: @escaping (Result<Int, GatewayError>) -> Void) {
        let request = Crypto.randomToken(8)
        let closedHere = closeConnections(of: user, reason: reason)
        let timer = loop.schedule(afterMs: LiveControl.reportWaitMs) { [weak self] in
            guard let self, let late = self.liveControl.pending.removeValue(forKey: request) else { return }
            self.log("disconnect: \(late.tally.reports) of \(late.tally.expected.map(String.init) ?? "?") nodes reported in time",
                     level: .warning, .user(user))
            late.answer(late.tally.closed)
        }
        liveControl.pending[request] = LiveControl.Pending(tally: DisconnectTally(closedHere: closedHere), answer: { done(.success($0)) },
                                                           timer: timer)
        controlStore.signal(.disconnect(user: user, request: request, reason: reason)) { [weak self] sent in
            guard let self else { return }
            switch sent {
            case .failure(let error):
                if let failed = self.liveControl.pending.removeValue(forKey: request) {
                    failed.timer?.cancel()
                    done(.failure(error))
                }
            case .success(let nodes):
                self.liveControl.pending[request]?.tally.received(by: nodes)
                self.finishDisconnectIfComplete(request)
            }
        }
    }

    private func finishDisconnectIfComplete(_ request: String) {
        guard let entry = liveControl.pending[request], entry.tally.isComplete else { return }
        liveControl.pending[request] = nil
        entry.timer?.cancel()
        entry.answer(entry.tally.closed)
    }

    /// A signal from the control channel (any node, this one included).
    func controlSignal(_ payload: [UInt8]) {
        guard let signal = ControlSignal(payload) else {
            log("ignoring a control signal this node does not understand", level: .warning)
            return
        }
        switch signal {
        case .disconnect(let user, let request, let reason):
            let closed = closeConnections(of: user, reason: reason)
            if closed > 0 { log("closed \(closed) connections: \(reason)", .user(user)) }
            controlStore.signal(.closed(request: request, closed: closed)) { [weak self] sent in
                if case .failure(let error) = sent { self?.log("disconnect report not sent: \(error.message)", level: .warning, .user(user)) }
            }
        case .closed(let request, let closed):
            // Reports of other nodes' requests pass by every node; only the asking one keeps a tally.
            guard liveControl.pending[request] != nil else { return }
            liveControl.pending[request]?.tally.report(closed)
            finishDisconnectIfComplete(request)
        case .revoke(let user, let channel, let reason):
            removeChannel(channel, of: user, reason: reason)
        case .alerts(let product, let job):
            walkAlerts(product: product, job: job, opened: false)
        }
    }

    /// Once the control channel is subscribed again (the pub/sub link came back): the signals
    /// sent while it was away are gone, so what they stand for is read back from Redis. A
    /// ban is a key: every user connected here is checked, and a banned one is closed. A
    /// revoked group is a membership count: every buyer subscription to a group is checked.
    /// (A plain `disconnect` keeps no trace: one sent meanwhile misses this node.) One read
    /// per connected user and per buyer group subscription, after a link outage only.
    func catchUpOnControl() {
        for user in liveControl.connectionsByUser.keys {
            controlStore.banEnd(user: user) { [weak self] result in
                guard let self, case .success(let endsAt?) = result else { return }
                let closed = self.closeConnections(of: user, reason: "banned")
                if closed > 0 { self.log("closed \(closed) connections of a ban signalled while the control link was away (until \(endsAt))", .user(user)) }
            }
        }
        for client in clients.values where client.claims?.role == .buyer {
            guard let user = client.claims?.sub else { continue }
            for channel in client.channels where channel.kind == .group {
                communityStore.isBuyer(product: channel.id, user: user) { [weak self] result in
                    guard let self, case .success(false) = result, !client.conn.isClosing else { return }
                    self.removeChannel(channel, from: client, user: user, reason: "refunded")
                }
            }
        }
    }

    // MARK: Rights lost (contract 4.3)

    /// After a decision that took group membership away (a refund after delivery), once the
    /// count read after the decision says no other order keeps it (`keepBuyerTrail` reads it
    /// once for this and the owners' record): every node ends the user's subscriptions to
    /// the group. Read after the decision applied, so an order delivered meanwhile keeps the
    /// group. Best effort: a node that dies between the apply and the signal leaves the
    /// subscription until the client reconnects (its publishes are refused all the same: each one checks).
    func revokeLostGroup(_ product: String, of user: String) {
        controlStore.signal(.revoke(user: user, channel: .group(product), reason: "refunded")) { [weak self] sent in
            if case .failure(let error) = sent {
                self?.log("group revoke not signalled: \(error.message)", level: .warning, .user(user), .product(product))
            }
        }
    }

    /// A bot or merchant holds a group through its token's `products`: a refreshed token that
    /// no longer lists one ends that group (after the refresh's reply).
    private func removeGroupsNoLongerListed(_ client: Client, _ claims: Claims) {
        let held = Set(client.channels + client.authorizing.keys)
        for channel in held where channel.kind == .group && !claims.products.contains(channel.id) {
            removeChannel(channel, from: client, user: claims.sub, reason: "token")
        }
    }

    /// Ends `user`'s buyer subscriptions to `channel` on this node and tells each connection
    /// with `channel.removed` (on its `user:` channel, like `token.expiring`: to it alone).
    /// Bots and merchants hold groups through their token's products, which a refund does not touch.
    func removeChannel(_ channel: Channel, of user: String, reason: String) {
        for client in connections(of: user) where client.claims?.role == .buyer {
            removeChannel(channel, from: client, user: user, reason: reason)
        }
    }

    private func removeChannel(_ channel: Channel, from client: Client, user: String, reason: String) {
        guard endSubscription(client, channel, user: user) else { return }
        metrics.liveControl["channel_removed", default: 0] += 1
        client.conn.send(Self.connectionPush("channel.removed", user: user,
                                             data: .object([("channel", .string(channel.description)), ("reason", .string(reason))])),
                         isReply: false)
    }

    /// Closes with 4010 every connection of `user` on this node, those still connecting too
    /// (their claims are set before the ban check answers). Counts the ones it closed.
    func closeConnections(of user: String, reason: String) -> Int {
        let open = connections(of: user)
        for client in open { client.conn.close(code: CloseCode.removed.rawValue, reason: reason) }
        metrics.liveControl["removed", default: 0] += open.count
        return open.count
    }

    /// `user`'s connections on this node that are not closing.
    private func connections(of user: String) -> [Client] {
        (liveControl.connectionsByUser[user] ?? []).compactMap { clients[$0] }.filter { $0.claims?.sub == user && !$0.conn.isClosing }
    }
}

// MARK: Token expiry on live connections (contract 4.3)

extension Node {
    func startTokenClock(_ client: Client, exp: Int64) {
        client.lifetime = TokenLifetime(exp: exp)
        scheduleTokenStep(client)
    }

    private func scheduleTokenStep(_ client: Client) {
        guard let lifetime = client.lifetime else { return }
        let nowMs = Self.wallClockMs()
        let dueMs = switch lifetime.next(nowMs: nowMs) {
        case .warn(let ms), .expire(let ms): nowMs + ms
        }
        liveControl.tokenDeadlines.set(client.conn.id, at: (dueMs + 999) / 1_000)
    }

    /// Once a second: the connections whose token step is due.
    func sweepTokenDeadlines() {
        for id in liveControl.tokenDeadlines.take(upTo: Self.wallClockMs() / 1_000) {
            guard let client = clients[id], isLive(client) else { continue }
            tokenStepDue(client)
        }
        loop.schedule(afterMs: 1_000) { [weak self] in self?.sweepTokenDeadlines() }
    }

    private func tokenStepDue(_ client: Client) {
        guard var lifetime = client.lifetime, let user = client.claims?.sub, !client.conn.isClosing else { return }
        switch lifetime.next(nowMs: Self.wallClockMs()) {
        case .warn(let ms) where ms > 0, .expire(let ms) where ms > 0:
            // Swept within the second before the step: not due yet.
            scheduleTokenStep(client)
        case .warn where !client.isConnected:
            // Not before the connect reply, which names the personal channel the push is on.
            liveControl.tokenDeadlines.set(client.conn.id, at: liveControl.tokenDeadlines.swept + 1)
        case .warn:
            lifetime.didWarn()
            client.lifetime = lifetime
            client.conn.send(Self.tokenExpiringPush(user: user, exp: lifetime.exp), isReply: false)
            scheduleTokenStep(client)
        case .expire:
            metrics.liveControl["token_expired", default: 0] += 1
            client.conn.close(code: CloseCode.tokenExpired.rawValue, reason: "token expired")
        }
    }

    /// `token.expiring` concerns this one connection (another of the user's may hold a fresher
    /// token), so it is sent to it alone: on `user:`, without an offset, never in history.
    static func tokenExpiringPush(user: String, exp: Int64) -> [UInt8] {
        connectionPush("token.expiring", user: user, data: .object([("exp", .int(exp))]))
    }

    /// A push about one connection: on its `user:` channel, without offset or epoch.
    static func connectionPush(_ type: String, user: String, data: JSON) -> [UInt8] {
        Array(JSON.object([("push", .string(type)), ("channel", .string(Channel.user(user).description)),
                           ("ts", .int(wallClockMs())), ("data", data)]).serialized().utf8)
    }

    static func wallClockMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1_000) }

    /// `refresh`: a valid token of the same user and role; its claims (products, name) replace
    /// the connection's, and a later `exp` moves the connection's end. Answers the end in force.
    func refresh(_ client: Client, _ id: Int64, token: String) {
        guard let current = client.claims, var lifetime = client.lifetime else {
            return reply(client, id, error: GatewayError(.internal, "connection without a token"), op: "refresh")
        }
        switch verifier.verify(token, nowSeconds: Self.wallClockMs() / 1_000) {
        case .failure(let error):
            reply(client, id, error: GatewayError(.unauthorized, error.message), op: "refresh")
        case .success(let claims):
            guard claims.sub == current.sub else {
                return reply(client, id, error: .forbidden("the token is another user's; refresh takes a token of \(current.sub)"), op: "refresh")
            }
            guard claims.role == current.role else {
                return reply(client, id, error: .forbidden("the token has another role; connect again to change it"), op: "refresh")
            }
            client.claims = claims
            lifetime.refreshed(exp: claims.exp)
            client.claims?.exp = lifetime.exp
            client.lifetime = lifetime
            scheduleTokenStep(client)
            reply(client, id, .object([("exp", .int(lifetime.exp))]), op: "refresh")
            if claims.role != .buyer { removeGroupsNoLongerListed(client, claims) }
        }
    }
}
