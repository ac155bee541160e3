import GatewayConfig
import GatewayIO
import OrderCore

/// Everything a node needs to run, derived once from validated settings
/// (`NodeOptions(settings: .defaults, ...)` and then a field or two, in tests).
public struct NodeOptions: Sendable {
    public var nodeName: String
    public var host: String
    public var port: Int
    public var redisHost: String
    public var redisPort: Int
    public var authSecret: String
    public var shopKey: String
    public var merchantKeys: [String: String]
    public var maxFrame: Int
    public var maxBody: Int
    public var maxQueue: Int
    public var maxViolations: Int
    public var connectTimeoutSeconds: Double
    public var pingSeconds: Int
    public var historyUserSize: Int
    public var historyGroupSize: Int
    public var historyProductSize: Int
    public var historyTTLSeconds: Int
    public var paymentsSecret: String
    /// `webhooks.*`: the event log's retention (`retry_for_s`) and the webhook sender's settings.
    public var webhooks: Settings.Webhooks = Settings.defaultWebhooks
    /// The payment providers' keys (`payments.alipay_public_key` ... `payments.epay_key`):
    /// PEM paths and secrets, loaded into `ProviderAdapters` when the node starts.
    public var providerSettings: ProviderSettings
    /// 32 bytes: seals card keys at rest and keys their fingerprints.
    public var keysSecret: [UInt8]
    public var commerce: CommerceTimes
    /// `risk.*`: per-buyer limits on creating orders.
    public var risk: RiskLimits
    /// `members.levels`: the ladder orders are discounted by and points are levelled by.
    public var memberLevels: MemberLevels = .none
    /// `reminders.before_s` in ms, descending: membership reminders this long before the end.
    public var remindersBeforeMs: [Int64] = OrderRules.defaultRemindersBeforeMs
    /// `recall.dormant_s` in ms: how long a buyer stays away before one `user.dormant` event.
    public var dormantMs: Int64 = Int64(Settings.defaultRecall.dormantSeconds) * 1_000
    public var groupRate: Int
    public var groupRateWindowSeconds: Int
    public var allowLinks: Bool
    public var alertCooldownSeconds: Int
    public var watchTTLSeconds: Int
    /// `restock.hold_s`: how long a restock hold lasts (0: none).
    public var restockHoldSeconds: Int
    /// `sales.buys_in_flight`: sale.buy scripts in flight per sale on this node.
    public var saleBuysInFlight: Int = Settings.defaultSales.buysInFlight
    public var presenceTTLSeconds: Int
    /// `serve --dev`: the /dev endpoints, demo products and `GET /` to the demo page.
    public var dev: Bool
    /// Most UTF-8 bytes of one group message (`groups.max_text_bytes`).
    public var maxTextBytes: Int
    /// Commands of one connection awaiting replies (`limits.max_inflight`).
    public var maxInflight: Int
    /// Commands per second per connection, burst 2x (`limits.commands_per_s`).
    public var commandsPerSecond: Int
    /// Connections per user on this node, 0 = no limit (`limits.conns_per_user`).
    public var connsPerUser: Int
    /// Connections per source IP on this node, 0 = no limit (`limits.conns_per_ip`).
    public var connsPerIP: Int
    /// `limits.fanout_per_turn`.
    public var fanoutPerTurn = 5_000
    /// Seconds for an HTTP request's headers and body (`limits.http_timeout_s`).
    public var httpTimeoutSeconds: Int
    /// PEM certificate and key for `wss://` and `https://` (`server.tls_cert`, `server.tls_key`);
    /// nil serves plain text.
    public var tlsCert: String?
    public var tlsKey: String?
    /// `server.event_loop`.
    public var eventLoop = EventLoopBackend.epoll
    /// Most bytes of publications in one history or recovery reply (`history.max_reply_bytes`).
    public var historyMaxReplyBytes: Int
    /// Most publications in one recovery (`history.max_recover`).
    public var historyMaxRecover: Int
    /// The parsed `redis.url` (credentials, db), or the private server's address.
    public var redisURL: RedisURL?
    /// What acknowledged money writes wait for (`redis.durability`).
    public var durability: RedisDurability
    /// How long one `WAIT` for replicas may take before the write is answered 503.
    public var durabilityTimeoutMs = 1_000
    /// Seconds the oldest Redis command may wait for its reply before the link counts as
    /// lost and is reconnected (`redis.timeout_s`).
    public var redisTimeoutSeconds: Int
    /// `logging.level`: trace, debug, info, notice, warning, error or critical.
    public var logLevel: String

    /// Where Redis is: the URL's endpoint when one was given, else `redisHost:redisPort`.
    public var redisEndpoint: RedisURL.Endpoint { redisURL?.endpoint ?? .tcp(host: redisHost, port: redisPort) }

    /// Host and port (or socket) for logs; never the password.
    public var redisDescription: String { redisURL?.redacted ?? "\(redisHost):\(redisPort)" }
}

extension NodeOptions {
    /// The node's options from validated settings; `redis` is where to connect (the private
    /// server's address when the settings name none).
    public init(settings: Settings, nodeName: String, redis: RedisURL, dev: Bool) {
        let (redisHost, redisPort): (String, Int) = switch redis.endpoint {
        case .tcp(let host, let port): (host, port)
        case .unix(let path): (path, 0)
        }
        self.nodeName = nodeName
        host = settings.server.host
        port = settings.server.port
        self.redisHost = redisHost
        self.redisPort = redisPort
        authSecret = settings.auth.secret
        shopKey = settings.api.shopKey
        merchantKeys = settings.api.merchantKeys
        maxFrame = settings.limits.maxFrame
        maxBody = settings.limits.maxBody
        maxQueue = settings.limits.maxQueue
        maxViolations = settings.limits.maxViolations
        connectTimeoutSeconds = Double(settings.limits.connectTimeoutSeconds)
        pingSeconds = settings.server.pingSeconds
        historyUserSize = settings.history.userSize
        historyGroupSize = settings.history.groupSize
        historyProductSize = settings.history.productSize
        historyTTLSeconds = settings.history.ttlSeconds
        paymentsSecret = settings.payments.secret
        webhooks = settings.webhooks
        providerSettings = ProviderSettings(alipayPublicKey: settings.payments.alipayPublicKey,
                                            wechatpayPlatformPublicKey: settings.payments.wechatpayPlatformPublicKey,
                                            wechatpayAPIv3Key: settings.payments.wechatpayAPIv3Key,
                                            epayKey: settings.payments.epayKey)
        keysSecret = settings.keys.secretBytes ?? []
        commerce = CommerceTimes(orderTTL: Int64(settings.orders.ttlSeconds) * 1000, giftTTL: Int64(settings.gifts.ttlSeconds) * 1000,
                                 friendpayTTL: Int64(settings.friendpay.ttlSeconds) * 1000,
                                 paymentGrace: Int64(settings.payments.graceSeconds) * 1000,
                                 saleTTL: Int64(settings.sales.paySeconds) * 1000)
        risk = RiskLimits(maxPendingOrders: settings.risk.maxPendingOrders, maxRequestsPerHour: settings.risk.maxRequestsPerHour)
        memberLevels = settings.members.levels
        remindersBeforeMs = settings.reminders.beforeSeconds.map { Int64($0) * 1000 }
        dormantMs = Int64(settings.recall.dormantSeconds) * 1_000
        groupRate = settings.groups.rate
        logLevel = settings.logging.level
        groupRateWindowSeconds = settings.groups.rateWindowSeconds
        allowLinks = settings.groups.allowLinks
        alertCooldownSeconds = settings.alerts.cooldownSeconds
        watchTTLSeconds = settings.alerts.watchTTLSeconds
        restockHoldSeconds = settings.restock.holdSeconds
        saleBuysInFlight = settings.sales.buysInFlight
        presenceTTLSeconds = settings.groups.presenceTTLSeconds
        maxTextBytes = settings.groups.maxTextBytes
        maxInflight = settings.limits.maxInflight
        commandsPerSecond = settings.limits.commandsPerSecond
        connsPerUser = settings.limits.connsPerUser
        connsPerIP = settings.limits.connsPerIP
        fanoutPerTurn = settings.limits.fanoutPerTurn
        httpTimeoutSeconds = settings.limits.httpTimeoutSeconds
        tlsCert = settings.server.tlsCert
        tlsKey = settings.server.tlsKey
        eventLoop = EventLoopBackend(rawValue: settings.server.eventLoop) ?? .epoll
        historyMaxReplyBytes = settings.history.maxReplyBytes
        historyMaxRecover = settings.history.maxRecover
        redisURL = redis
        durability = settings.redis.durabilityMode
        redisTimeoutSeconds = settings.redis.timeoutSeconds
        self.dev = dev
    }
}
