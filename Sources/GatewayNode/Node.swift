import CLws
import CommunityCore
import Foundation
import GatewayAuth
import GatewayCore
import GatewayConfig
import GatewayCrypto
import GatewayIO
import GatewayLog
import GatewayProtocol
import Logging
import OrderCore

/// Node-side state of one WebSocket client.
final class Client {
    let conn: WSConnection
    var claims: Claims?
    /// The hub ticket of the `connect` command while its personal channel is being read.
    var connectRequest: Int64?
    /// While the connect's ban read (sent beside the personal channel's read) is out, and the
    /// channel's answer held until it is in: a banned user gets the refusal, never the channel.
    var banUnread = false
    var heldConnectAnswer: (() -> Void)?
    /// Pushes for this client decided meanwhile: they follow the held answer, or are dropped
    /// with a refusal (a channel answered without Redis, then pushes from the pub/sub link).
    var heldPushes: [Payload] = []
    var channels: [Channel] = []
    /// Channels this client counts as present in (subscribed successfully).
    var present: [Channel] = []
    var violations = 0
    /// Commands admitted and not yet answered, and the command rate (PROTOCOL 4.1).
    var budget: CommandBudget
    /// `subscribe` requests the hub has not answered yet, by channel (their hub tickets).
    var pendingSubscribes: [Channel: Int64] = [:]
    /// Hub ticket -> command id. The hub matches reads by the request it was given; a client
    /// may reuse a command id, so the hub gets tickets that are never reused instead, and a
    /// read answered after its subscription ended matches nothing.
    var hubRequests: [Int64: Int64] = [:]
    /// Subscribes still being authorized (their tickets), by channel; an unsubscribe drops
    /// the channel's entry, so those subscribes end instead of completing after it.
    var authorizing: [Channel: Set<Int64>] = [:]
    /// Set once this connection counts toward its user's `limits.conns_per_user`.
    var countedUser: String?
    /// Set once this connection counts in its user's last-seen state (dormant buyers): its close is noted too.
    var countedSeen = false
    /// Whether it counts toward its source address's `limits.conns_per_ip`.
    var countedAddress = false
    /// Admitted commands not answered yet, by id: their op and admission time (`Node.clock`),
    /// for `gateway_command_duration_seconds`. A command id reused while in flight is timed once.
    var commandStarts: [Int64: (op: String, at: Double)] = [:]
    /// When this connection's token ends (LiveControl.swift).
    var lifetime: TokenLifetime?
    /// The last ticket handed out on this connection (never reused).
    private var lastTicket: Int64 = 0

    init(conn: WSConnection, budget: CommandBudget) {
        self.conn = conn
        self.budget = budget
    }

    var isConnected: Bool { claims != nil && connectRequest == nil }

    func hubTicket(for commandID: Int64) -> Int64 {
        lastTicket += 1
        hubRequests[lastTicket] = commandID
        return lastTicket
    }

    func startAuthorizing(_ channel: Channel) -> Int64 {
        lastTicket += 1
        authorizing[channel, default: []].insert(lastTicket)
        return lastTicket
    }

    /// False when an unsubscribe came in the meantime.
    func finishAuthorizing(_ channel: Channel, _ ticket: Int64) -> Bool {
        guard authorizing[channel]?.remove(ticket) != nil else { return false }
        if authorizing[channel]?.isEmpty == true { authorizing[channel] = nil }
        return true
    }
}

/// One gateway node: owns every connection and all gateway state on the loop thread,
/// turns commands into hub events and Redis calls, and executes the hub's actions.
public final class Node: ServerDelegate {
    public let options: NodeOptions
    package let loop: EventLoop
    let redis: any RedisLink
    let hub = ChannelHub()
    /// The hub's deliveries, `limits.fanout_per_turn` sends per loop turn (`writeFanout`).
    var fanout: FanoutScheduler
    let verifier: TokenVerifier
    let metrics = NodeMetrics()
    /// JSON lines on stderr at `logging.level` (`log`).
    let logger: Logger
    /// The per-request and per-command lines, decided once: the hot paths test a Bool.
    let logsDebug: Bool
    let logsTrace: Bool
    package let orderRules: OrderRules
    package let orderStore: OrderStore
    /// One-time upgrade of v1 order records (one server), run at connect.
    let legacyMigration: LegacyCommerceMigration
    /// Channels and community data (Store/): every non-commerce Redis call.
    let channelStore: any ChannelStore
    let communityStore: any CommunityStore
    /// Bans and the nodes' control signals (LiveControl.swift).
    let controlStore: any ControlStore
    /// Also-bought counts and last-seen (BuyerTrail.swift).
    let buyerTrail: any BuyerTrailStore
    /// Buyers' risk limits (RiskControl.swift): one store for the node's life, not one per order.
    let riskStore: any RiskStore
    /// Pushes written to outboxes by decisions (Redis Cluster only).
    let outboxRelay: OutboxRelay
    let keyBox: SecretBox
    /// Alipay, WeChat Pay and 易支付 notifies, for the providers whose settings are given.
    let providers: ProviderAdapters
    /// `serve --dev`: the /dev routes and demo products (GatewayDev).
    package var devEndpoints: DevEndpoints?
    var sweeping = false
    /// Flash sales (Sales.swift): the sales' terms, the per-sale door of `sale.buy`, and the
    /// local timers of pushes due soon, by `<product>/<sale>`.
    let saleDirectory = SaleDirectory()
    var saleGate: SaleGate<SaleBuyTicket>
    var saleTimers: [String: (due: Int64, timer: LoopTimer)] = [:]
    /// Local connections per user in each group: and product: channel, for presence.
    var presence: [Channel: [String: Int]] = [:]
    /// Price drops' alert jobs this node is walking, by job id.
    var alertWalkers: [String: AlertWalker] = [:]
    /// This process in presence data: the node name plus a random part, so entries left
    /// by an earlier run of the same node are reaped, never inherited.
    let presenceNode: String
    /// Posts the event log to `webhooks.url`; nil without one.
    let webhookSender: WebhookSender?
    var clients: [ConnectionID: Client] = [:]
    /// Disconnects and bans across nodes (LiveControl.swift).
    let liveControl = LiveControl()
    /// WebSockets per source address (`limits.conns_per_ip`) and per user
    /// (`limits.conns_per_user`) on this node.
    var ipQuota: ConnectionQuota
    var userQuota: ConnectionQuota
    private(set) var draining = false
    /// For the operators' view (AdminStats.swift).
    let startedMs = Int64(Date().timeIntervalSince1970 * 1000)
    private var drainDeadline: LoopTimer?
    private var waitingForWebhooks = false
    private var stopped = false
    /// Set from a signal handler; read when the loop wakes.
    nonisolated(unsafe) package static var terminateRequested = false

    /// Refuses options it cannot run safely, such as a card-key secret that is not 32 bytes
    /// or is all zeros: sealing keys under a made-up or guessable key would lose them.
    public init(options: NodeOptions) throws {
        if !options.keysSecret.isEmpty, options.keysSecret.allSatisfy({ $0 == 0 }) {
            throw NodeStartError(description: "keys.secret is all zeros; refusing to seal card keys with a key anyone can guess (make one with: openssl rand -hex 32)")
        }
        guard let keyBox = SecretBox(key: options.keysSecret) else {
            throw NodeStartError(description: "keys.secret must be 32 bytes (64 hex characters); refusing to seal card keys with anything else")
        }
        self.keyBox = keyBox
        providers = try ProviderAdapters(options.providerSettings)
        self.options = options
        fanout = FanoutScheduler(budget: options.fanoutPerTurn)
        saleGate = SaleGate(inFlight: options.saleBuysInFlight, maxQueued: Self.saleQueueLimit)
        var listen = ListenOptions(host: options.host, port: options.port, maxFrame: options.maxFrame,
                                   maxBody: options.maxBody, pingSeconds: options.pingSeconds)
        listen.httpTimeoutSeconds = options.httpTimeoutSeconds
        listen.eventLoop = options.eventLoop
        if let cert = options.tlsCert, let key = options.tlsKey { listen.tls = TLSFiles(certificate: cert, privateKey: key) }
        loop = EventLoop(options: listen)
        if options.redisURL?.tls == true {
            throw NodeStartError(description: "rediss:// needs hiredis with TLS, and hiredis 0.14 has none; reach Redis over loopback, a unix socket or a TLS tunnel")
        }
        if let url = options.redisURL, url.cluster {
            redis = RedisClusterClient(loop: loop, config: Self.redisLink(options), seeds: url.endpoints.map(RedisEndpoint.init))
        } else {
            redis = RedisClient(loop: loop, config: Self.redisLink(options))
        }
        verifier = TokenVerifier(secret: options.authSecret)
        orderRules = OrderRules(times: options.commerce, remindersBeforeMs: options.remindersBeforeMs)
        let sizes = (options.historyUserSize, options.historyGroupSize, options.historyProductSize)
        let storeSettings = Self.storeSettings(options)
        let logger = GatewayLog.logger(node: options.nodeName, level: Logger.Level(rawValue: options.logLevel) ?? .info)
        self.logger = logger
        logsDebug = logger.logLevel <= .debug
        logsTrace = logger.logLevel <= .trace
        // The stores report trouble: a Redis error, an entry they could not relay.
        let log: (String) -> Void = { message in logger.warning("\(message)") }
        channelStore = RedisChannelStore(redis: redis, settings: storeSettings, log: log)
        let schedule: (Int, @escaping () -> Void) -> Void = { [loop] ms, body in loop.schedule(afterMs: ms, body) }
        outboxRelay = OutboxRelay(redis: redis, settings: storeSettings, log: log, schedule: schedule)
        communityStore = RedisCommunityStore(redis: redis, settings: storeSettings, relay: outboxRelay, log: log)
        controlStore = RedisControlStore(redis: redis, log: log)
        buyerTrail = RedisBuyerTrailStore(redis: redis, relay: redis.isCluster ? outboxRelay : nil,
                                          eventRetentionMs: Self.eventRetentionMs(options), log: log)
        riskStore = RedisRiskStore(redis: redis, log: log)
        let commerceStore = RedisCommerceStore(
            redis: redis, retention: KeyRetention(options.commerce), historyTTL: options.historyTTLSeconds, historySize: { kind in
                switch kind {
                case .user: sizes.0
                case .group: sizes.1
                case .product, .sale: sizes.2
                }
            }, durability: options.durability, durabilityTimeoutMs: options.durabilityTimeoutMs, newEpoch: { Crypto.randomToken(4) })
        commerceStore.relay = outboxRelay
        commerceStore.eventRetentionMs = Self.eventRetentionMs(options)
        commerceStore.memberLadder = options.memberLevels.scriptArgument
        legacyMigration = LegacyCommerceMigration(redis: redis, log: { message in logger.notice("\(message)") }, after: schedule)
        commerceStore.legacyMigration = legacyMigration
        orderStore = OrderStore(store: commerceStore)
        presenceNode = "\(options.nodeName).\(Crypto.randomToken(4))"
        webhookSender = try Self.webhookSender(options, redis: redis, loop: loop, node: presenceNode, log: log)
        ipQuota = ConnectionQuota(limit: options.connsPerIP)
        userQuota = ConnectionQuota(limit: options.connsPerUser)
        loop.delegate = self
    }

    /// Why the node stopped on its own (a Redis it must not use); `run` throws it.
    private var fatal: String?

    /// Listens, connects to Redis and serves until SIGTERM/SIGINT has drained the clients.
    /// Throws when Redis turned out unusable (its eviction policy), so the process exits non-zero.
    public func run(onListening: (Int) -> Void = { _ in }) throws {
        try loop.start()
        log("serving on \(loop.backend.rawValue)", level: loop.backend == options.eventLoop ? .info : .warning)
        onListening(loop.boundPort)
        redis.onReady = { [weak self] in self?.redisReady() }
        orderStore.afterApply = { [weak self] decision in
            guard let self else { return }
            self.indexRefunds(of: decision)
            // A delivered buyer's place is freed with the ownership update; the others alone.
            let unpaidLeft = self.riskPlacesFreed(by: decision)
            self.releaseRiskPlaces(self.keepBuyerTrail(of: decision, freeing: unpaidLeft))
            if !decision.events.isEmpty { self.webhookSender?.tick() }
        }
        redis.onLost = { [weak self] reason in self?.redisLost(reason) }
        redis.onProblem = { [weak self] problem in self?.log(problem, level: .warning) }
        redis.onFatal = { [weak self] reason in
            guard let self else { return }
            self.log("refusing to run: \(reason)", level: .critical)
            self.fatal = reason
            self.loop.stop()
        }
        redis.onPubSub = { [weak self] kind, channel, payload in self?.pubsub(kind, channel, payload) }
        redis.start()
        sweepTimers()
        refreshPresence()
        reportAdminStats()
        outboxRelay.start()
        sampleLiveSeries()
        sweepTokenDeadlines()
        sweepAlertJobs()
        if webhookSender != nil { tickWebhooks() }
        if options.dev { devEndpoints?.start(self) }
        installSignalHandlers(loop)
        loop.run()
        redis.stop()
        if let fatal { throw NodeStartError(description: fatal) }
    }

    // MARK: Redis

    /// The link settings from the options: endpoint, credentials and db of `redis.url`.
    static func redisLink(_ options: NodeOptions) -> RedisLinkConfig {
        let endpoint: RedisEndpoint
        switch options.redisEndpoint {
        case .tcp(let host, let port): endpoint = .tcp(host: host, port: port)
        case .unix(let path): endpoint = .unix(path: path)
        }
        var link = RedisLinkConfig(endpoint: endpoint, user: options.redisURL?.user, password: options.redisURL?.password,
                                   db: options.redisURL?.db ?? 0)
        // A `WAIT` for replicas legitimately holds the command connection for up to its own
        // timeout: the stall limit never undercuts it.
        let waitFloor = if case .replicas = options.durability { options.durabilityTimeoutMs + 1_000 } else { 0 }
        link.stallLimitMs = max(options.redisTimeoutSeconds * 1_000, waitFloor)
        link.scripts = LuaScripts.all
        return link
    }

    /// What the channel and community stores need from the options.
    static func storeSettings(_ options: NodeOptions) -> StoreSettings {
        StoreSettings(historyUserSize: options.historyUserSize, historyGroupSize: options.historyGroupSize,
                      historyProductSize: options.historyProductSize, historyTTLSeconds: options.historyTTLSeconds,
                      replyPublicationBytes: replyPublicationBytes(options), maxRecover: options.historyMaxRecover,
                      redisTimeoutSeconds: options.redisTimeoutSeconds, durability: options.durability,
                      durabilityTimeoutMs: options.durabilityTimeoutMs,
                      eventRetentionMs: eventRetentionMs(options), newEpoch: { Crypto.randomToken(4) })
    }

    /// The event log keeps an event as long as webhooks retry it (`webhooks.retry_for_s`) and an
    /// hour more, so the last retry, due at the very end, still finds it.
    static func eventRetentionMs(_ options: NodeOptions) -> Int64 { Int64(options.webhooks.retryForSeconds) * 1_000 + 3_600_000 }

    private func redisReady() {
        loop.assertOnLoopThread()
        log("redis ready at \(options.redisDescription)")
        execute(hub.redisConnected())
        redis.subscribe([StoreKeys.control])
        legacyMigration.start()
        // Joins and leaves sent while Redis was away may be lost.
        for channel in presence.keys { syncPresence(channel) }
    }

    /// Every command in flight has already been answered `.disconnected` (the old
    /// connections are freed before this runs), so in-progress flags such as `sweeping`
    /// were reset by their own callbacks.
    private func redisLost(_ reason: String) {
        loop.assertOnLoopThread()
        log("redis lost: \(reason); reconnecting", level: .warning)
        hub.redisDisconnected()
    }

    private func pubsub(_ kind: String, _ name: [UInt8], _ payload: [UInt8]) {
        loop.assertOnLoopThread()
        if name.elementsEqual(StoreKeys.control.utf8) {
            if kind == "smessage" { controlSignal(payload) } else if kind == "ssubscribe" { catchUpOnControl() }
            return
        }
        guard let channel = StoreKeys.channel(fromShardChannel: name) else { return }
        switch kind {
        case "smessage":
            guard let publication = Self.parseAnnouncement(payload) else {
                log("dropping a malformed announcement on \(channel)", level: .warning, .channel(channel.description))
                return
            }
            if channel.kind == .sale { saleAnnounced(channel.id, publication) }
            execute(hub.message(channel, publication))
        case "ssubscribe":
            execute(hub.redisSubscribed(channel))
        case "sunsubscribe":
            execute(hub.redisUnsubscribed(channel))
        default:
            break
        }
    }

    /// `<offset> <epoch> <push JSON>` as the publish script announces it.
    static func parseAnnouncement(_ payload: [UInt8]) -> Publication? {
        guard let s1 = payload.firstIndex(of: 0x20) else { return nil }
        guard let s2 = payload[(s1 + 1)...].firstIndex(of: 0x20) else { return nil }
        guard let offset = UInt64(String(decoding: payload[..<s1], as: UTF8.self)) else { return nil }
        let epoch = String(decoding: payload[(s1 + 1)..<s2], as: UTF8.self)
        return Publication(offset: offset, epoch: epoch, payload: Payload(push: Array(payload[(s2 + 1)...])))
    }

    func newEpoch() -> String { Crypto.randomToken(4) }

    /// Carries out what the hub decided.
    func execute(_ actions: [HubAction]) {
        for action in actions {
            switch action {
            case .redisSubscribe(let channel):
                redis.subscribe([StoreKeys.shardChannel(channel)])
            case .redisUnsubscribe(let channel):
                redis.unsubscribe([StoreKeys.shardChannel(channel)])
            case .read(let channel, let since, let purpose):
                read(channel, since: since, purpose: purpose)
            case .deliver(let payload, let targets, let channel):
                if fanout.add(payload, to: targets, channel, hub: hub) { writeFanout(fanout.slice(hub)) }
            case .subscribed(let id, let request, let channel, let result):
                if let client = waitingForBanRead(id, request) {
                    client.heldConnectAnswer = { [weak self] in self?.subscribed(id, request: request, channel, result) }
                    continue
                }
                subscribed(id, request: request, channel, result)
            case .subscribeFailed(let id, let request, let channel, let error):
                if let client = waitingForBanRead(id, request) {
                    client.heldConnectAnswer = { [weak self] in self?.subscribeFailed(id, request: request, channel, error) }
                    continue
                }
                subscribeFailed(id, request: request, channel, error)
            case .resync(let id, let channel):
                clients[id]?.conn.close(code: CloseCode.goingAway.rawValue, reason: "history of \(channel) lost, resubscribe")
            }
        }
    }

    /// Writes one slice of the fan-out; the rest waits for a zero-delay timer, a loop turn later.
    private func writeFanout(_ slice: [FanoutScheduler.Send]) {
        metrics.pushes += slice.count
        for s in slice {
            // One closing since the slice was decided is no slow consumer.
            guard let client = clients[s.conn], !client.conn.isClosing else { continue }
            if client.banUnread {
                client.heldPushes.append(s.payload)
                continue
            }
            if !client.conn.send(s.payload) { metrics.slowClosed += 1 }
        }
        guard fanout.armed else { return }
        loop.schedule(afterMs: 0) { [weak self] in
            guard let self else { return }
            self.writeFanout(self.fanout.timerFired(self.hub))
        }
    }

    /// Bytes of publications one history or recovery reply may carry: `history.max_reply_bytes`
    /// less room for the rest of the reply (id, connect fields, offset, epoch, flags), so the
    /// whole reply stays within the cap.
    static func replyPublicationBytes(_ options: NodeOptions) -> Int {
        max(0, options.historyMaxReplyBytes - 512 - 6 * options.nodeName.utf8.count)
    }

    private func read(_ channel: Channel, since: StreamPosition?, purpose: ReadPurpose) {
        channelStore.read(channel, since: since, purpose: purpose) { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let read): self.execute(self.hub.readCompleted(channel, purpose: purpose, read))
            case .failure(let error): self.execute(self.hub.readFailed(channel, purpose: purpose, error))
            }
        }
    }

    func storageError(_ reply: RedisReply) -> GatewayError {
        if case .error(let message) = reply { log("redis error: \(message)", level: .error) }
        return reply.isFailure && !redis.isReady ? .redisUnavailable : GatewayError(.unavailable, "storage error, retry")
    }

    /// The client whose connect (hub request `request`) still waits for its ban read.
    private func waitingForBanRead(_ id: ConnectionID, _ request: Int64) -> Client? {
        guard let client = clients[id], client.banUnread, client.connectRequest == request else { return nil }
        return client
    }

    private func subscribeFailed(_ id: ConnectionID, request: Int64, _ channel: Channel, _ error: GatewayError) {
        guard let client = clients[id], isLive(client), let commandID = client.hubRequests.removeValue(forKey: request) else { return }
        if client.pendingSubscribes[channel] == request { client.pendingSubscribes[channel] = nil }
        if client.connectRequest == request {
            reply(client, commandID, error: error)
            client.conn.close(code: CloseCode.goingAway.rawValue, reason: "personal channel unavailable")
        } else {
            client.channels.removeAll { $0 == channel }
            reply(client, commandID, error: error)
        }
    }

    private func subscribed(_ id: ConnectionID, request: Int64, _ channel: Channel, _ result: ReadResult) {
        guard let client = clients[id], isLive(client), let commandID = client.hubRequests.removeValue(forKey: request) else { return }
        if client.pendingSubscribes[channel] == request { client.pendingSubscribes[channel] = nil }
        var fields: [(String, JSON)] = []
        var connected: String?
        if client.connectRequest == request, let claims = client.claims {
            connected = claims.sub
            client.connectRequest = nil
            client.conn.cancelDeadline()
            if logsDebug { log("connected", level: .debug, .client(clientID(id)), .user(claims.sub)) }
            fields = [
                ("client", .string(clientID(id))),
                ("user", .string(claims.sub)), ("role", .string(claims.role.rawValue)),
                ("node", .string(options.nodeName)), ("ping_s", .int(Int64(options.pingSeconds))),
                // The node's clock, so clients count down to a sale on the server's time (contract 4.8).
                ("server_time", .int(now)),
            ]
            count(op: "connect", "ok")
        }
        if channel.kind == .group || channel.kind == .product, let user = client.claims?.sub {
            client.present.append(channel)
            presenceJoined(channel, user: user)
        }
        fields += [("channel", .string(channel.description)), ("offset", .int(Int64(result.offset))),
                   ("epoch", .string(result.epoch)), ("recovered", .bool(result.recovered))]
        sendReply(client, commandID, ReplyEncoder.okWithPublications(id: commandID, fields: fields,
                                                          publications: result.publications.map(\.payload.bytes)))
        // Once the connect is answered: its reply never waits behind the last-seen write.
        if let connected {
            client.countedSeen = true
            noteSeen(connected, opened: true)
        }
    }

    // MARK: ServerDelegate

    public func acceptsConnections() -> Bool { !draining }

    public func admitsUpgrade(from peer: String) -> Bool { ipQuota.allows(peer) }

    public func connectionOpened(_ conn: WSConnection) {
        loop.assertOnLoopThread()
        conn.maxQueue = options.maxQueue
        // Room for the queue plus four of the largest replies: never reached by one reply.
        conn.maxUnreadReplies = options.maxQueue + 4 * options.historyMaxReplyBytes
        let client = Client(conn: conn, budget: CommandBudget(maxInflight: options.maxInflight,
                                                              perSecond: options.commandsPerSecond, now: Self.clock()))
        // The filter callback checked `admitsUpgrade` just before, in the same lws callback
        // sequence, so this fits; counted here (and uncounted at close) so the two match.
        client.countedAddress = ipQuota.tryAdd(conn.peerAddress)
        clients[conn.id] = client
        conn.armDeadline(seconds: options.connectTimeoutSeconds)
        metrics.connectionsOpened += 1
    }

    public func connectionTimer(_ conn: WSConnection) {
        loop.assertOnLoopThread()
        guard let client = clients[conn.id], !client.isConnected else { return }
        conn.close(code: CloseCode.connectTimeout.rawValue, reason: "no connect in time")
    }

    public func connectionClosed(_ conn: WSConnection) {
        loop.assertOnLoopThread()
        guard let client = clients.removeValue(forKey: conn.id) else { return }
        liveControl.tokenDeadlines.remove(conn.id)
        if let user = client.claims?.sub { liveControl.closed(conn.id, user: user) }
        if client.countedAddress { ipQuota.remove(conn.peerAddress) }
        if let user = client.countedUser { userQuota.remove(user) }
        if client.countedSeen, let user = client.claims?.sub { noteSeen(user, opened: false) }
        metrics.framesSent += conn.framesSent
        for channel in client.channels {
            execute(hub.unsubscribe(conn.id, from: channel))
            if let user = client.claims?.sub, client.present.contains(channel) { presenceLeft(channel, user: user) }
        }
        if draining && clients.isEmpty { finishDrain() }
    }

    public func connectionReceived(_ conn: WSConnection, _ message: UnsafeRawBufferPointer) {
        loop.assertOnLoopThread()
        guard let client = clients[conn.id], !conn.isClosing else { return }
        if message.count > options.maxFrame {
            conn.close(code: CloseCode.tooLarge.rawValue, reason: "frame too large")
            return
        }
        let now = Self.clock()
        for line in CommandDecoder.decodeFrame(message) {
            if conn.isClosing { return }
            switch line {
            case .malformed(let why), .missingID(let why):
                violation(client, GatewayError.badRequest(why))
            case .invalid(let id, let error):
                client.violations = 0
                guard admit(client, id, op: "invalid", now: now) else { continue }
                count(op: "invalid", error.code.rawValue)
                reply(client, id, error: error)
            case .command(let id, let command):
                client.violations = 0
                guard admit(client, id, op: command.op, now: now) else { continue }
                handle(client, id, command)
            }
        }
    }

    /// Seconds on a monotonic clock, for the command budget.
    static func clock() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// Takes an in-flight slot and a token for command `id`, or answers `rate_limited`
    /// at once. A refused command does no work at all (no Redis call).
    private func admit(_ client: Client, _ id: Int64, op: String, now: Double) -> Bool {
        switch client.budget.admit(now: now) {
        case .admit:
            client.commandStarts[id] = (op, now)
            return true
        case .reject(let retryAfterMs, let reason):
            count(op: op, ErrorCode.rateLimited.rawValue)
            let why = reason == .inflight
                ? "more than \(options.maxInflight) commands awaiting replies"
                : "more than \(options.commandsPerSecond) commands per second"
            // Not an admitted command: answered directly, not through `sendReply`.
            client.conn.send(ReplyEncoder.error(id: id, GatewayError(.rateLimited, why, temporary: true, retryAfterMs: retryAfterMs)))
            return false
        }
    }

    private func violation(_ client: Client, _ error: GatewayError) {
        client.violations += 1
        count(op: "malformed", error.code.rawValue)
        client.conn.send(ReplyEncoder.error(id: nil, error))
        if client.violations >= options.maxViolations {
            client.conn.close(code: CloseCode.protocolViolations.rawValue, reason: "too many protocol violations")
        }
    }

    public func loopWoken() {
        loop.assertOnLoopThread()
        if Node.terminateRequested && !draining { beginDrain() }
    }

    public func httpAnswered(_ request: HTTPRequest, status: Int, seconds: Double) {
        let route = routeLabel(request)
        metrics.httpCompleted(route: route, status: status, seconds: seconds)
        if logsDebug {
            log("\(request.method.rawValue) \(route) \(status) in \(String(format: "%.1f", seconds * 1_000)) ms", level: .debug,
                ids: (request.context as? AdmittedRoute)?.route?.logIDs ?? [])
        }
    }

    // MARK: Replies

    /// True while `client` still owns a live connection: registered, and lws has not
    /// closed its wsi. Whatever comes back from Redis after that must not touch it.
    /// Every continuation and reply passes here, so here is where they check their thread.
    func isLive(_ client: Client) -> Bool {
        loop.assertOnLoopThread()
        return !client.conn.isGone && clients[client.conn.id] === client
    }

    /// Wraps an asynchronous continuation (a Redis callback) of `client`'s command so it
    /// runs only while the client is live; otherwise it is dropped.
    func live<T>(_ client: Client, _ body: @escaping (T) -> Void) -> (T) -> Void {
        { [weak self] value in
            guard let self, self.isLive(client) else { return }
            body(value)
        }
    }

    /// The one way the reply to an admitted command leaves the node: dropped when the
    /// client is gone, otherwise sent, freeing the command's in-flight slot (and timed).
    func sendReply(_ client: Client, _ id: Int64, _ frame: [UInt8]) {
        guard isLive(client) else { return }
        client.budget.completed()
        client.conn.send(frame)
        if let start = client.commandStarts.removeValue(forKey: id) {
            let seconds = Self.clock() - start.at
            metrics.commandCompleted(op: start.op, seconds: seconds)
            if logsTrace {
                log("\(start.op) answered in \(String(format: "%.1f", seconds * 1_000)) ms", level: .trace,
                    .client(clientID(client.conn.id)), .user(client.claims?.sub ?? ""))
            }
        }
    }

    func reply(_ client: Client, _ id: Int64, _ result: JSON, op: String) {
        count(op: op, "ok")
        sendReply(client, id, ReplyEncoder.ok(id: id, result))
    }

    func reply(_ client: Client, _ id: Int64, error: GatewayError, op: String? = nil) {
        if let op { count(op: op, error.code.rawValue) }
        sendReply(client, id, ReplyEncoder.error(id: id, error))
    }

    /// Answers command `id` later, once, if the client is still connected.
    func answerer(_ client: Client, _ id: Int64, op: String) -> (Result<JSON, GatewayError>) -> Void {
        var answered = false
        return { [weak self] result in
            guard let self, !answered, self.isLive(client) else { return }
            answered = true
            switch result {
            case .success(let json): self.reply(client, id, json, op: op)
            case .failure(let e): self.reply(client, id, error: e, op: op)
            }
        }
    }

    func count(op: String, _ result: String) {
        metrics.commands[NodeMetrics.OpResult(op: op, result: result), default: 0] += 1
    }

    /// Every `LiveSeries.intervalMs`, for the admin page's chart.
    private func sampleLiveSeries() {
        metrics.sampleLive(atMs: Int64(Date().timeIntervalSince1970 * 1_000), pushLatency: loop.pushLatency.histogram)
        sampleWebhookBacklog()
        loop.schedule(afterMs: LiveSeries.intervalMs) { [weak self] in self?.sampleLiveSeries() }
    }

    /// Every `WebhookSender.tickMs` with `webhooks.url` set: new events queued, due ones sent.
    private func tickWebhooks() {
        if redis.isReady { webhookSender?.tick() }
        loop.schedule(afterMs: WebhookSender.tickMs) { [weak self] in self?.tickWebhooks() }
    }

    static func webhookSender(_ options: NodeOptions, redis: any RedisLink, loop: EventLoop, node: String,
                              log: @escaping (String) -> Void) throws -> WebhookSender? {
        let settings = options.webhooks
        guard !settings.url.isEmpty else { return nil }
        // The settings refused a URL HTTPTarget cannot take; a TLS setup failure stops the node
        // rather than leave it running without webhooks.
        let transport: WebhookHTTPTransport
        do {
            transport = try WebhookHTTPTransport(target: try HTTPTarget(settings.url), concurrency: settings.concurrency, loop: loop, log: log)
        } catch {
            throw NodeStartError(description: "webhooks.url: \(error)")
        }
        return WebhookSender(store: RedisWebhookStore(redis: redis, log: log), transport: transport,
                             retry: WebhookRetry(maxBackoffSeconds: settings.maxBackoffSeconds, retryForSeconds: settings.retryForSeconds),
                             secret: settings.secret, node: node, concurrency: settings.concurrency,
                             nowMs: { Int64(Date().timeIntervalSince1970 * 1_000) }, jitter: { Double.random(in: 0..<1) },
                             schedule: { [loop] ms, body in
                                 let timer = loop.schedule(afterMs: ms, body)
                                 return { [weak timer] in timer?.cancel() }
                             }, log: log)
    }

    /// With `webhooks.url` set: the events not yet delivered and the oldest one's age, for
    /// `/metrics` and the admin page (the same cluster-wide figures on every node).
    private func sampleWebhookBacklog() {
        guard !options.webhooks.url.isEmpty, redis.isReady else { return }
        RedisWebhookStore(redis: redis, log: { [weak self] in self?.log($0) }).backlog { [weak self] result in
            guard let self, case .success(let backlog) = result else { return }
            self.metrics.webhookBacklogSample = backlog
        }
    }

    // MARK: Shutdown

    private func beginDrain() {
        draining = true
        webhookSender?.stop()
        log("draining \(clients.count) connections")
        // Webhook attempts get their whole answer time, and a moment to settle.
        let deadline = webhookSender == nil ? 10_000 : Int(WebhookRetry.answerTimeoutMs) + 3_000
        drainDeadline = loop.schedule(afterMs: deadline) { [weak self] in self?.stopLoop() }
        closeBatch()
    }

    /// Closes clients 500 at a time so reconnects spread out instead of stampeding.
    private func closeBatch() {
        let batch = clients.values.lazy.filter { !$0.conn.isClosing }.prefix(500)
        if batch.isEmpty {
            if clients.isEmpty { finishDrain() }
            return
        }
        for client in batch { client.conn.close(code: CloseCode.goingAway.rawValue, reason: "node shutting down") }
        loop.schedule(afterMs: 20) { [weak self] in self?.closeBatch() }
    }

    /// The clients are gone; webhook deliveries in flight still get their answer and settle
    /// (within the drain deadline), so none lapses only to be sent again by another node.
    private func finishDrain() {
        guard !waitingForWebhooks else { return }
        if let sender = webhookSender, !sender.isIdle {
            waitingForWebhooks = true
            loop.schedule(afterMs: 20) { [weak self] in
                self?.waitingForWebhooks = false
                self?.finishDrain()
            }
            return
        }
        stopLoop()
    }

    private func stopLoop() {
        guard !stopped else { return }
        stopped = true
        drainDeadline?.cancel()
        log("stopped")
        loop.stop()
    }

    /// One JSON line on stderr (PROTOCOL 4.7): the ids go in `ids`, never a key, token or secret.
    package func log(_ message: String, level: Logger.Level = .info, _ ids: LogID...) {
        log(message, level: level, ids: ids)
    }

    package func log(_ message: String, level: Logger.Level, ids: [LogID]) {
        guard level >= logger.logLevel else { return }
        var metadata: Logger.Metadata = [:]
        for id in ids { metadata[id.field.name] = .string(id.field.value) }
        logger.log(level: level, "\(message)", metadata: metadata)
    }

    /// The id clients see for a connection (the connect reply's `client`).
    func clientID(_ id: ConnectionID) -> String { "c-\(options.nodeName)-\(String(id, radix: 16))" }
}

private func installSignalHandlers(_ loop: EventLoop) {
    signalLoop = loop.context
    for sig in [SIGTERM, SIGINT] {
        signal(sig) { _ in
            Node.terminateRequested = true
            if let ctx = signalLoop { lws_cancel_service(ctx) }
        }
    }
    signal(SIGPIPE, SIG_IGN)
}

nonisolated(unsafe) private var signalLoop: OpaquePointer?

/// The node refused to run (see `Node.run`).
public struct NodeStartError: Error, CustomStringConvertible {
    public let description: String
}
