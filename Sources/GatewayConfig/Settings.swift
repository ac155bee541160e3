import Configuration
import GatewayProtocol
import OrderCore
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every tunable of one gateway node, typed and validated once at start-up so that the rest
/// of the code never parses or range-checks configuration.
///
/// Keys and defaults are listed in `Config/gateway.json` and explained in `Config/README.md`.
/// Times ending in `Seconds` are whole seconds; sizes are bytes unless they count items.
public struct Settings: Sendable, Equatable {
    public var auth: Auth
    public var api: API
    public var payments: Payments
    public var webhooks: Webhooks = Settings.defaultWebhooks
    public var orders: Orders
    public var gifts: Gifts
    public var friendpay: FriendPay
    public var risk: Risk = Settings.defaultRisk
    public var restock: Restock = Settings.defaultRestock
    public var sales: Sales = Settings.defaultSales
    public var alerts: Alerts
    public var groups: Groups
    public var limits: Limits
    public var history: History
    public var server: Server
    public var redis: Redis
    public var keys: Keys
    public var logging: Logging
    public var members: Members = Members(levels: .none)
    public var reminders: Reminders = Reminders(beforeSeconds: [259_200, 86_400])
    public var recall: Recall = Settings.defaultRecall

    public struct Auth: Sendable, Equatable {
        /// HS256 key for client JWTs (`auth.secret`); required outside `--dev`.
        public var secret: String
    }

    public struct API: Sendable, Equatable {
        /// Bearer key that may do everything under `/api/v1` (`api.shop_key`); required outside `--dev`.
        public var shopKey: String
        /// Merchant id to bearer key; such a key only touches that merchant's products (`api.merchant_keys`).
        public var merchantKeys: [String: String]
    }

    public struct Payments: Sendable, Equatable {
        /// HMAC-SHA256 key for `X-Signature` of payment notifies (`payments.secret`); required outside `--dev`.
        public var secret: String
        /// A success notify this long after an unpaid order was canceled still pays it (`payments.grace_s`).
        public var graceSeconds: Int
        /// PEM file of Alipay's public key (`payments.alipay_public_key`); nil leaves
        /// `/api/v1/payments/notify/alipay` answering `fail`.
        public var alipayPublicKey: String? = nil
        /// PEM file of the WeChat Pay platform public key (`payments.wechatpay_platform_public_key`).
        public var wechatpayPlatformPublicKey: String? = nil
        /// The 32-character API v3 key that seals WeChat Pay's `resource` (`payments.wechatpay_api_v3_key`).
        public var wechatpayAPIv3Key: String = ""
        /// The 易支付 merchant key its MD5 signatures end with (`payments.epay_key`).
        public var epayKey: String = ""
    }

    /// The event log and its webhooks (contract 4.4).
    public struct Webhooks: Sendable, Equatable {
        /// Where every event is POSTed (`webhooks.url`); empty: no webhooks, the log is still written.
        public var url: String
        /// HMAC-SHA256 key of `X-Gateway-Signature` (`webhooks.secret`); required with a url.
        public var secret: String
        /// Cap of the retry backoff (`webhooks.max_backoff_s`).
        public var maxBackoffSeconds: Int
        /// How long an event is retried, and the least time the log keeps it (`webhooks.retry_for_s`).
        public var retryForSeconds: Int
        /// Deliveries in flight per node (`webhooks.concurrency`): the sender's worker threads.
        public var concurrency: Int = 32
    }

    public static let defaultWebhooks = Webhooks(url: "", secret: "", maxBackoffSeconds: 600, retryForSeconds: 259_200)

    public struct Orders: Sendable, Equatable {
        /// Unpaid orders are canceled after this (`orders.ttl_s`).
        public var ttlSeconds: Int
    }

    public struct Gifts: Sendable, Equatable {
        /// Unclaimed gifts are refunded after this (`gifts.ttl_s`).
        public var ttlSeconds: Int
    }

    public struct FriendPay: Sendable, Equatable {
        /// Unpaid pay-for-friend requests are canceled after this (`friendpay.ttl_s`).
        public var ttlSeconds: Int
    }

    /// Per-buyer limits on orders (contract 4.6), counted in Redis across nodes; 0: no limit.
    public struct Risk: Sendable, Equatable {
        /// Unpaid orders one buyer may have at once (`risk.max_pending_orders`).
        public var maxPendingOrders: Int
        /// Gift and friend-pay orders one buyer may create in any hour (`risk.max_requests_per_hour`).
        public var maxRequestsPerHour: Int
    }

    public static let defaultRisk = Risk(maxPendingOrders: 5, maxRequestsPerHour: 20)

    /// Restock holds (contract 4.6).
    public struct Restock: Sendable, Equatable {
        /// How long each of the first watchers of a restock holds a key for their own order;
        /// 0: no holds (`restock.hold_s`).
        public var holdSeconds: Int
    }

    public static let defaultRestock = Restock(holdSeconds: 300)

    /// Flash sales (contract 4.8).
    public struct Sales: Sendable, Equatable {
        /// How long a sale order waits for payment before its units go back (`sales.pay_s`).
        public var paySeconds: Int
        /// `sale.buy` scripts one node keeps in flight per sale; the rest queue on the node
        /// (`sales.buys_in_flight`).
        public var buysInFlight: Int
    }

    public static let defaultSales = Sales(paySeconds: 300, buysInFlight: 64)
    /// Bringing back buyers who went quiet (contract 4.6).
    public struct Recall: Sendable, Equatable {
        /// A buyer neither connected nor delivered anything for this long is dormant: one
        /// `user.dormant` event per such spell (`recall.dormant_s`).
        public var dormantSeconds: Int
    }

    public static let defaultRecall = Recall(dormantSeconds: 2_592_000)

    public struct Alerts: Sendable, Equatable {
        /// At most one price-drop alert per watcher and product in this window, unless a new low (`alerts.cooldown_s`).
        public var cooldownSeconds: Int
        /// A watch nobody renews is forgotten after this, so dead watches do not pile up (`alerts.watch_ttl_s`).
        public var watchTTLSeconds: Int
    }

    public struct Groups: Sendable, Equatable {
        /// Messages a buyer may send per group per window (`groups.rate`).
        public var rate: Int
        /// The rate window (`groups.rate_window_s`).
        public var rateWindowSeconds: Int
        /// Whether buyers may post links (`groups.allow_links`); bots and merchants always may.
        public var allowLinks: Bool
        /// How long a node's presence entries live without renewal (`groups.presence_ttl_s`):
        /// a dead node's users drop out of `online` after this.
        public var presenceTTLSeconds: Int = 30
        /// Most UTF-8 bytes in one group message, besides the 1000-character limit (`groups.max_text_bytes`).
        public var maxTextBytes: Int = 4_000
    }

    public struct Limits: Sendable, Equatable {
        /// Largest inbound WebSocket frame in bytes; larger closes with 1009 (`limits.max_frame`).
        public var maxFrame: Int
        /// Seconds a new connection has to send `connect` before close 4001 (`limits.connect_timeout`).
        public var connectTimeoutSeconds: Int
        /// Bytes queued to one client before it is closed with 4008 (`limits.max_queue`).
        public var maxQueue: Int
        /// Largest HTTP request body in bytes (`limits.max_body`).
        public var maxBody: Int
        /// Invalid frames in a row before close 4011 (`limits.max_violations`).
        public var maxViolations: Int
        /// Commands of one connection awaiting replies; beyond, `rate_limited` (`limits.max_inflight`).
        public var maxInflight: Int = 64
        /// Commands per second per connection, burst twice that; beyond, `rate_limited` (`limits.commands_per_s`).
        public var commandsPerSecond: Int = 50
        /// Live connections per user across the node; 0 means no limit (`limits.conns_per_user`).
        public var connsPerUser: Int = 20
        /// Live connections per source IP on the node; 0 means no limit (`limits.conns_per_ip`).
        public var connsPerIP: Int = 0
        /// Seconds an HTTP request has for its headers and body before it is closed (`limits.http_timeout_s`).
        public var httpTimeoutSeconds: Int = 10
        /// Pushes a node writes per loop turn before it serves other work (`limits.fanout_per_turn`).
        public var fanoutPerTurn: Int = 5_000
    }

    public struct History: Sendable, Equatable {
        /// Publications kept per `user:` channel (`history.user_size`).
        public var userSize: Int
        /// Publications kept per `group:` channel (`history.group_size`).
        public var groupSize: Int
        /// Publications kept per `product:` channel (`history.product_size`).
        public var productSize: Int
        /// History older than this may be dropped (`history.ttl_s`).
        public var ttlSeconds: Int
        /// Most bytes of publications in one `history` or recovery reply (`history.max_reply_bytes`).
        public var maxReplyBytes: Int = 262_144
        /// Most publications one `since` recovery returns (`history.max_recover`).
        public var maxRecover: Int = 1_000
    }

    public struct Server: Sendable, Equatable {
        /// Listening port; 0 picks a free one, which tests use (`server.port`).
        public var port: Int
        /// Listening address (`server.host`).
        public var host: String
        /// Seconds between server pings, also told to clients in the connect reply (`server.ping_s`).
        public var pingSeconds: Int
        /// Node id shown to clients and used in Redis; nil means `hostname-pid` (`server.node`).
        /// Use `nodeName()` for the effective value.
        public var node: String?
        /// PEM certificate (chain) for `wss://` and `https://` on `port`; nil serves plain
        /// `ws://` and `http://` (`server.tls_cert`). Set together with `tlsKey`.
        public var tlsCert: String? = nil
        /// PEM private key of `tlsCert` (`server.tls_key`).
        public var tlsKey: String? = nil
        /// What tells the loop which sockets are ready (`server.event_loop`): `epoll` (lws on
        /// libev, a turn costs what is ready) or `poll` (lws' own poll() over every socket).
        public var eventLoop: String = "epoll"

        public static let eventLoops = ["epoll", "poll"]
    }

    public struct Redis: Sendable, Equatable {
        /// `redis://host:port[/db]` or `unix:///path`; nil means start and supervise a private
        /// `redis-server` so one command runs everything on one machine (`redis.url`).
        public var url: String?
        /// Data and AOF folder of the private `redis-server` (`redis.data_dir`).
        public var dataDir: String
        /// What an acknowledged write waits for (`redis.durability`): `fsync` (the server's AOF
        /// policy; the private Redis runs `appendfsync always`) or `replicas:N` (WAIT N replicas).
        public var durability: String = "fsync"
        /// CA bundle (PEM) that verifies a `rediss://` server (`redis.tls_ca`).
        public var tlsCA: String?
        /// Seconds the oldest command may wait for Redis' reply before the node drops the
        /// link and reconnects (`redis.timeout_s`): a frozen server must not hang everything.
        public var timeoutSeconds: Int = 10

        /// `durability` decoded; valid once settings have loaded.
        public var durabilityMode: RedisDurability { RedisDurability(durability) ?? .fsync }
    }

    public struct Keys: Sendable, Equatable {
        /// AES-256-GCM key for card keys at rest, 64 hex characters (`keys.secret`); required outside `--dev`.
        public var secret: String

        /// The 32 key bytes, or nil while the secret is empty.
        public var secretBytes: [UInt8]? { hexBytes(secret) }
    }

    /// Member levels and points (contract 4.6).
    public struct Members: Sendable, Equatable {
        /// The level ladder (`members.levels`): `[{name, min_points, discount_percent}]`, from
        /// fewest points up; empty means no levels and no discounts.
        public var levels: MemberLevels
    }

    /// Membership reminders (contract 4.6).
    public struct Reminders: Sendable, Equatable {
        /// `membership.expiring` is pushed this long before a membership ends, once per entry
        /// (`reminders.before_s`), descending; `membership.expired` always comes at the end.
        public var beforeSeconds: [Int]
    }

    public struct Logging: Sendable, Equatable {
        /// Least severe level written (`logging.level`): one of `levels`.
        public var level: String

        /// swift-log's levels, least severe first.
        public static let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
    }

    /// The built-in defaults; `Config/gateway.json` must say the same (a test checks it).
    public static let defaults = Settings(
        auth: Auth(secret: ""),
        api: API(shopKey: "", merchantKeys: [:]),
        payments: Payments(secret: "", graceSeconds: 43_200),
        orders: Orders(ttlSeconds: 900),
        gifts: Gifts(ttlSeconds: 86_400),
        friendpay: FriendPay(ttlSeconds: 1_800),
        alerts: Alerts(cooldownSeconds: 3_600, watchTTLSeconds: 7_776_000),
        groups: Groups(rate: 5, rateWindowSeconds: 10, allowLinks: false, presenceTTLSeconds: 30, maxTextBytes: 4_000),
        limits: Limits(maxFrame: 65_536, connectTimeoutSeconds: 10, maxQueue: 1_048_576,
                       maxBody: 8_388_608, maxViolations: 10, maxInflight: 64, commandsPerSecond: 50,
                       connsPerUser: 20, connsPerIP: 0, httpTimeoutSeconds: 10),
        history: History(userSize: 1_000, groupSize: 1_000, productSize: 100, ttlSeconds: 86_400,
                         maxReplyBytes: 262_144, maxRecover: 1_000),
        server: Server(port: 8_080, host: "127.0.0.1", pingSeconds: 25, node: nil),
        redis: Redis(url: nil, dataDir: "data/redis", durability: "fsync", tlsCA: nil, timeoutSeconds: 10),
        keys: Keys(secret: ""),
        logging: Logging(level: "info")
    )
}

/// A start-up configuration problem; `message` names the setting and where its value came from.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

// MARK: - Loading

extension Settings {
    /// Layers, highest first: `overrides` (from CLI flags, keys like "server.port"), environment
    /// (GATEWAY_<SECTION>_<KEY> upper-cased, e.g. GATEWAY_AUTH_SECRET, GATEWAY_LIMITS_CONNECT_TIMEOUT,
    /// GATEWAY_API_MERCHANT_KEYS=m1:key1,m2:key2), the JSON file (if `file` is given it must exist and parse,
    /// else a clear error), then the built-in defaults.
    ///
    /// Every problem found is reported at once, one per line, so a bad deployment is fixed in one go.
    /// Unknown keys in the file or in `overrides`, and unknown `GATEWAY_<known section>_*` variables,
    /// are errors: a typo must not silently leave a default in force.
    public static func load(
        file: String?, environment: [String: String], overrides: [String: String]
    ) async throws(ConfigError) -> Settings {
        var loader = Loader(file: file, environment: environment, overrides: overrides)
        return try await loader.run()
    }

    /// Refuses to start without secrets: returns the names (e.g. "auth.secret (GATEWAY_AUTH_SECRET)")
    /// of required secrets that are empty: auth.secret, api.shop_key, payments.secret, keys.secret.
    public func missingSecrets() -> [String] {
        Self.requiredSecrets
            .filter { self[keyPath: $0.path].isEmpty }
            .map { "\($0.key) (\(Self.environmentName(for: $0.key)))" }
    }

    /// The secrets set by the file, the environment or a flag (all default to empty):
    /// `--dev` refuses them, since it prints its secrets.
    public func providedSecrets() -> [String] {
        var names = Self.requiredSecrets
            .filter { !self[keyPath: $0.path].isEmpty }
            .map { "\($0.key) (\(Self.environmentName(for: $0.key)))" }
        if !api.merchantKeys.isEmpty { names.append("api.merchant_keys (\(Self.environmentName(for: "api.merchant_keys")))") }
        return names
    }

    /// Fills every empty secret with random hex (for --dev), so a dev node starts with no setup
    /// yet never runs with a guessable key.
    public mutating func fillDevSecrets() {
        for secret in Self.requiredSecrets where self[keyPath: secret.path].isEmpty {
            self[keyPath: secret.path] = randomHex(bytes: 32)
        }
    }

    /// The node id in effect: `server.node`, or `hostname-pid` so that several nodes on one
    /// machine never share an id.
    public func nodeName() -> String {
        if let node = server.node { return node }
        var buffer = [CChar](repeating: 0, count: 256)
        let host = gethostname(&buffer, buffer.count) == 0
            ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            : "node"
        let clean = String(host.map { isIDCharacter($0) ? $0 : "-" }.prefix(48))
        return "\(clean.isEmpty ? "node" : clean)-\(getpid())"
    }

    /// Every setting key, in file order; a CLI may use it to validate `--set key=value`.
    public static var settingKeys: [String] { fields.map(\.key) }

    /// The environment variable read for a setting key, e.g. "limits.max_frame" -> "GATEWAY_LIMITS_MAX_FRAME".
    public static func environmentName(for key: String) -> String {
        "GATEWAY_" + key.uppercased().replacingOccurrences(of: ".", with: "_")
    }

    private static let requiredSecrets: [(key: String, path: WritableKeyPath<Settings, String> & Sendable)] = [
        ("auth.secret", \.auth.secret),
        ("api.shop_key", \.api.shopKey),
        ("payments.secret", \.payments.secret),
        ("keys.secret", \.keys.secret),
    ]
}

// MARK: - Redacted printing

extension Settings: CustomStringConvertible {
    /// One `key = value` line per setting with secrets shown only as set or empty, so the
    /// effective configuration can be logged at start-up.
    public var description: String {
        Self.fields.map { field in
            let value: String
            switch field.kind {
            case .int(let path, _): value = String(self[keyPath: path])
            case .bool(let path): value = String(self[keyPath: path])
            case .string(let path, _):
                let text = self[keyPath: path]
                value = field.secret ? (text.isEmpty ? "<empty>" : "<set>") : quoted(text)
            case .optionalString(let path, _): value = self[keyPath: path].map(quoted) ?? "<none>"
            case .merchantKeys:
                value = "{" + api.merchantKeys.keys.sorted().map { "\($0): <set>" }.joined(separator: ", ") + "}"
            case .secondsList(let path, _):
                value = "[" + self[keyPath: path].map(String.init).joined(separator: ", ") + "]"
            case .memberLevels:
                value = "[" + members.levels.levels.map {
                    "{name: \(quoted($0.name)), min_points: \($0.minPoints), discount_percent: \($0.discountPercent)}"
                }.joined(separator: ", ") + "]"
            }
            return "\(field.key) = \(value)"
        }.joined(separator: "\n")
    }
}

// MARK: - Schema

/// One setting: its key, how to read and check it, and where it lands in `Settings`.
struct Field {
    enum Kind {
        case int(WritableKeyPath<Settings, Int>, ClosedRange<Int>)
        case bool(WritableKeyPath<Settings, Bool>)
        /// The check returns a problem (without echoing secrets), or nil when fine.
        case string(WritableKeyPath<Settings, String>, check: (String) -> String?)
        /// Empty means nil.
        case optionalString(WritableKeyPath<Settings, String?>, check: (String) -> String?)
        case merchantKeys
        /// A JSON array of levels in the file; the same array as JSON text in a variable or flag.
        case memberLevels
        /// Up to 10 distinct whole numbers in `range`, stored descending: a JSON array in the
        /// file, comma-separated (or the JSON array) in a variable or flag; empty: none.
        case secondsList(WritableKeyPath<Settings, [Int]>, ClosedRange<Int>)
    }

    let key: String
    let kind: Kind
    var secret = false

    var section: String { String(key.prefix { $0 != "." }) }
    var envName: String { Settings.environmentName(for: key) }
}

private let maxSeconds = 315_360_000  // ten years: keeps millisecond arithmetic far from overflow
private let gib = 1 << 30

extension Settings {
    static var fields: [Field] {
        let anything: (String) -> String? = { _ in nil }
        return [
            Field(key: "auth.secret", kind: .string(\.auth.secret, check: anything), secret: true),
            Field(key: "api.shop_key", kind: .string(\.api.shopKey, check: anything), secret: true),
            Field(key: "api.merchant_keys", kind: .merchantKeys, secret: true),
            Field(key: "payments.secret", kind: .string(\.payments.secret, check: anything), secret: true),
            Field(key: "payments.grace_s", kind: .int(\.payments.graceSeconds, 0...maxSeconds)),
            Field(key: "payments.alipay_public_key", kind: .optionalString(\.payments.alipayPublicKey, check: { _ in nil })),
            Field(key: "payments.wechatpay_platform_public_key",
                  kind: .optionalString(\.payments.wechatpayPlatformPublicKey, check: { _ in nil })),
            Field(key: "payments.wechatpay_api_v3_key", kind: .string(\.payments.wechatpayAPIv3Key, check: { key in
                key.isEmpty || key.utf8.count == 32 ? nil : "must be the 32-character API v3 key WeChat Pay issues"
            }), secret: true),
            Field(key: "payments.epay_key", kind: .string(\.payments.epayKey, check: anything), secret: true),
            Field(key: "webhooks.url", kind: .string(\.webhooks.url, check: { url in
                // Parsed as the sender will (empty: no webhooks); the message never repeats the URL.
                do throws(HTTPTarget.Invalid) {
                    if !url.isEmpty { _ = try HTTPTarget(url) }
                    return nil
                } catch {
                    return error.description
                }
            }), secret: true),  // a receiver's URL may carry a token in its query
            Field(key: "webhooks.secret", kind: .string(\.webhooks.secret, check: anything), secret: true),
            Field(key: "webhooks.max_backoff_s", kind: .int(\.webhooks.maxBackoffSeconds, 1...86_400)),
            Field(key: "webhooks.retry_for_s", kind: .int(\.webhooks.retryForSeconds, 60...31_536_000)),
            Field(key: "webhooks.concurrency", kind: .int(\.webhooks.concurrency, 1...256)),
            Field(key: "orders.ttl_s", kind: .int(\.orders.ttlSeconds, 1...maxSeconds)),
            Field(key: "gifts.ttl_s", kind: .int(\.gifts.ttlSeconds, 1...maxSeconds)),
            Field(key: "friendpay.ttl_s", kind: .int(\.friendpay.ttlSeconds, 1...maxSeconds)),
            Field(key: "risk.max_pending_orders", kind: .int(\.risk.maxPendingOrders, 0...1_000_000)),
            Field(key: "risk.max_requests_per_hour", kind: .int(\.risk.maxRequestsPerHour, 0...1_000_000)),
            Field(key: "restock.hold_s", kind: .int(\.restock.holdSeconds, 0...86_400)),
            Field(key: "sales.pay_s", kind: .int(\.sales.paySeconds, 1...86_400)),
            Field(key: "sales.buys_in_flight", kind: .int(\.sales.buysInFlight, 1...10_000)),
            Field(key: "recall.dormant_s", kind: .int(\.recall.dormantSeconds, 60...31_536_000)),
            Field(key: "alerts.cooldown_s", kind: .int(\.alerts.cooldownSeconds, 0...maxSeconds)),
            Field(key: "alerts.watch_ttl_s", kind: .int(\.alerts.watchTTLSeconds, 1...maxSeconds)),
            Field(key: "groups.rate", kind: .int(\.groups.rate, 1...100_000)),
            Field(key: "groups.rate_window_s", kind: .int(\.groups.rateWindowSeconds, 1...86_400)),
            Field(key: "groups.allow_links", kind: .bool(\.groups.allowLinks)),
            Field(key: "groups.presence_ttl_s", kind: .int(\.groups.presenceTTLSeconds, 3...3600)),
            Field(key: "groups.max_text_bytes", kind: .int(\.groups.maxTextBytes, 4...1_048_576)),
            Field(key: "limits.max_frame", kind: .int(\.limits.maxFrame, 128...(16 << 20))),
            Field(key: "limits.connect_timeout", kind: .int(\.limits.connectTimeoutSeconds, 1...3_600)),
            Field(key: "limits.max_queue", kind: .int(\.limits.maxQueue, 1...gib)),
            Field(key: "limits.max_body", kind: .int(\.limits.maxBody, 1...gib)),
            Field(key: "limits.max_violations", kind: .int(\.limits.maxViolations, 1...1_000_000)),
            Field(key: "limits.max_inflight", kind: .int(\.limits.maxInflight, 1...100_000)),
            Field(key: "limits.commands_per_s", kind: .int(\.limits.commandsPerSecond, 1...1_000_000)),
            Field(key: "limits.conns_per_user", kind: .int(\.limits.connsPerUser, 0...1_000_000)),
            Field(key: "limits.conns_per_ip", kind: .int(\.limits.connsPerIP, 0...10_000_000)),
            Field(key: "limits.http_timeout_s", kind: .int(\.limits.httpTimeoutSeconds, 1...3_600)),
            Field(key: "limits.fanout_per_turn", kind: .int(\.limits.fanoutPerTurn, 100...1_000_000)),
            Field(key: "history.user_size", kind: .int(\.history.userSize, 1...10_000_000)),
            Field(key: "history.group_size", kind: .int(\.history.groupSize, 1...10_000_000)),
            Field(key: "history.product_size", kind: .int(\.history.productSize, 1...10_000_000)),
            Field(key: "history.ttl_s", kind: .int(\.history.ttlSeconds, 1...maxSeconds)),
            Field(key: "history.max_reply_bytes", kind: .int(\.history.maxReplyBytes, 4_096...(64 << 20))),
            Field(key: "history.max_recover", kind: .int(\.history.maxRecover, 1...1_000_000)),
            Field(key: "server.port", kind: .int(\.server.port, 0...65_535)),
            Field(key: "server.host", kind: .string(\.server.host, check: { host in
                host.isEmpty || host.contains(where: \.isWhitespace)
                    ? "expected a host name or IP address, got \(quoted(host))" : nil
            })),
            Field(key: "server.ping_s", kind: .int(\.server.pingSeconds, 1...3_600)),
            Field(key: "server.node", kind: .optionalString(\.server.node, check: { node in
                isValidID(node) ? nil : "expected 1 to 64 of A-Z a-z 0-9 _ . : -, got \(quoted(node))"
            })),
            Field(key: "server.tls_cert", kind: .optionalString(\.server.tlsCert, check: { _ in nil })),
            Field(key: "server.tls_key", kind: .optionalString(\.server.tlsKey, check: { _ in nil })),
            Field(key: "server.event_loop", kind: .string(\.server.eventLoop, check: { loop in
                Server.eventLoops.contains(loop) ? nil : "expected one of \(Server.eventLoops.joined(separator: ", ")), got \(quoted(loop))"
            })),
            Field(key: "redis.url", kind: .optionalString(\.redis.url, check: { url in
                switch RedisURL.parse(url) {
                case .success: nil
                case .failure(let error): error.message
                }
            }), secret: true),
            Field(key: "redis.durability", kind: .string(\.redis.durability, check: { value in
                RedisDurability(value) == nil ? "expected fsync or replicas:N (N 1 to 100), got \(quoted(value))" : nil
            })),
            Field(key: "redis.tls_ca", kind: .optionalString(\.redis.tlsCA, check: { path in
                path.isEmpty ? "expected a PEM file path" : nil
            })),
            Field(key: "redis.timeout_s", kind: .int(\.redis.timeoutSeconds, 1...3_600)),
            Field(key: "redis.data_dir", kind: .string(\.redis.dataDir, check: { dir in
                dir.isEmpty ? "expected a folder path, got \"\"" : nil
            })),
            Field(key: "keys.secret", kind: .string(\.keys.secret, check: { hex in
                hex.isEmpty || hexBytes(hex)?.count == 32
                    ? nil : "expected 64 hex characters (32 bytes), got \(hex.count) characters"
            }), secret: true),
            Field(key: "logging.level", kind: .string(\.logging.level, check: { level in
                Logging.levels.contains(level) ? nil : "expected one of \(Logging.levels.joined(separator: ", ")), got \(quoted(level))"
            })),
            Field(key: "members.levels", kind: .memberLevels),
            Field(key: "reminders.before_s", kind: .secondsList(\.reminders.beforeSeconds, 1...31_536_000)),
        ]
    }
}

// MARK: - The loader

/// Where the winning value of a key came from, for error messages.
private enum Origin {
    case override(key: String, raw: String)
    case environment(name: String, raw: String)
    case file(path: String, key: String, node: JSONNode)
    case builtIn(key: String)

    var label: String {
        switch self {
        case .override(let key, _): "command line \(key)"
        case .environment(let name, _): name
        case .file(let path, let key, _): "\(path): \(key)"
        case .builtIn(let key): "default \(key)"
        }
    }

    var shown: String {
        switch self {
        case .override(_, let raw), .environment(_, let raw): quoted(raw)
        case .file(_, _, let node): node.shown
        case .builtIn: "the default"
        }
    }
}

private struct Loader {
    let file: String?
    let environment: [String: String]
    let overrides: [String: String]

    var problems: [String] = []
    /// Keys already reported bad by a layer, so the library never sees them.
    var skipped: Set<String> = []
    /// Known keys found in the file, after strict type checks.
    var fileValues: [String: JSONNode] = [:]

    init(file: String?, environment: [String: String], overrides: [String: String]) {
        self.file = file
        self.environment = environment
        self.overrides = overrides
    }

    mutating func run() async throws(ConfigError) -> Settings {
        let fields = Settings.fields
        let byKey = Dictionary(uniqueKeysWithValues: fields.map { ($0.key, $0) })

        let typedOverrides = checkOverrides(byKey)
        checkEnvironment(fields)
        if let file { try readFile(file, byKey) }

        var providers: [any ConfigProvider] = [
            InMemoryProvider(name: "command line", values: typedOverrides),
            EnvironmentVariablesProvider(
                environmentVariables: environment,
                secretsSpecifier: .specific(Set(fields.filter(\.secret).map(\.envName)))
            ).prefixKeys(with: "gateway"),
        ]
        if let file {
            // The strict parse feeds the library: its own JSON snapshot refuses arrays of
            // objects (`members.levels`) and converts loosely.
            providers.append(InMemoryProvider(name: "config file \(quoted(file))", values: fileContents(byKey)))
        }
        let reader = ConfigReader(providers: providers)

        var settings = Settings.defaults
        for field in fields where !skipped.contains(field.key) {
            await read(field, from: reader, into: &settings)
        }
        if problems.isEmpty { crossCheck(settings) }
        try report()
        return settings
    }

    func report() throws(ConfigError) {
        guard !problems.isEmpty else { return }
        throw ConfigError(message: problems.count == 1
            ? problems[0]
            : "\(problems.count) configuration problems:\n" + problems.map { "  " + $0 }.joined(separator: "\n"))
    }

    // MARK: Layers

    /// Turns flag strings into typed values, because the in-memory provider does not convert.
    mutating func checkOverrides(_ byKey: [String: Field]) -> [AbsoluteConfigKey: ConfigValue] {
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        for (key, raw) in overrides.sorted(by: { $0.key < $1.key }) {
            guard let field = byKey[key] else {
                problems.append("command line: unknown setting \(quoted(key))\(suggestion(for: key))")
                continue
            }
            let origin = Origin.override(key: key, raw: raw)
            let content: ConfigContent
            switch field.kind {
            case .int:
                guard let int = Int(raw.trimmingCharacters(in: .whitespaces)) else {
                    problems.append("\(origin.label): expected a whole number, got \(origin.shown)")
                    skipped.insert(key)
                    continue
                }
                content = .int(int)
            case .bool:
                guard let bool = parseBool(raw) else {
                    problems.append("\(origin.label): expected true or false, got \(origin.shown)")
                    skipped.insert(key)
                    continue
                }
                content = .bool(bool)
            case .string, .optionalString, .merchantKeys, .memberLevels, .secondsList:
                content = .string(raw)
            }
            values[AbsoluteConfigKey(field.key.split(separator: ".").map(String.init))] =
                ConfigValue(content, isSecret: field.secret)
        }
        return values
    }

    /// The file's values as the library takes them; the maps and lists (merchant keys, member
    /// levels) are read from `fileValues` directly (see `read`).
    func fileContents(_ byKey: [String: Field]) -> [AbsoluteConfigKey: ConfigValue] {
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        for (key, node) in fileValues {
            guard let field = byKey[key] else { continue }
            let content: ConfigContent
            switch node {
            case .int(let int): content = .int(int)
            case .double(let double): guard let int = Int(exactly: double) else { continue }; content = .int(int)
            case .bool(let bool): content = .bool(bool)
            case .string(let string): content = .string(string)
            case .null, .array, .object: continue
            }
            values[AbsoluteConfigKey(key.split(separator: ".").map(String.init))] = ConfigValue(content, isSecret: field.secret)
        }
        return values
    }

    /// Flags `GATEWAY_<SECTION>_*` names that match no setting; other `GATEWAY_*` names
    /// (for instance the CLI's own) are left alone.
    mutating func checkEnvironment(_ fields: [Field]) {
        let known = Set(fields.map(\.envName))
        let sections = Set(fields.map { "GATEWAY_" + $0.section.uppercased() + "_" })
        for name in environment.keys.sorted() where !known.contains(name) {
            guard sections.contains(where: { name.hasPrefix($0) }) else { continue }
            let guess = fields.map(\.envName).min { editDistance($0, name) < editDistance($1, name) }
            let hint = guess.map { editDistance($0, name) <= 3 ? " (did you mean \($0)?)" : "" } ?? ""
            problems.append("\(name): unknown setting\(hint)")
        }
    }

    /// Reads the file strictly: the library's JSON snapshot converts loosely (true becomes 1,
    /// 1 becomes true) and cannot list unknown keys, so both checks are done here first.
    mutating func readFile(_ path: String, _ byKey: [String: Field]) throws(ConfigError) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ConfigError(message: "config file \(quoted(path)) not found")
        }
        guard !isDirectory.boolValue, let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(message: "config file \(quoted(path)) is not a readable file")
        }
        let root: JSONNode
        do {
            root = try JSONDecoder().decode(JSONNode.self, from: data)
        } catch {
            throw ConfigError(message: "config file \(quoted(path)) is not valid JSON: \(jsonSyntaxProblem(data) ?? "\(error)")")
        }
        guard case .object(let sections) = root else {
            throw ConfigError(message: "config file \(quoted(path)): expected a JSON object at the top, got \(root.shown)")
        }
        var unknown: [String] = []
        for (section, node) in sections.sorted(by: { $0.key < $1.key }) {
            guard byKey.keys.contains(where: { $0.hasPrefix(section + ".") }) else {
                unknown.append(section)
                continue
            }
            guard case .object(let entries) = node else {
                problems.append("\(path): \(section): expected an object of settings, got \(node.shown)")
                continue
            }
            for (name, value) in entries.sorted(by: { $0.key < $1.key }) {
                let key = section + "." + name
                guard let field = byKey[key] else {
                    unknown.append(key)
                    continue
                }
                if let problem = typeProblem(field.kind, value) {
                    problems.append("\(path): \(key): \(problem)")
                    skipped.insert(key)
                } else {
                    fileValues[key] = value
                }
            }
        }
        if !unknown.isEmpty {
            let listed = unknown.map { $0 + suggestion(for: $0) }.joined(separator: ", ")
            problems.append("\(path): unknown setting\(unknown.count == 1 ? "" : "s"): \(listed)")
        }
    }

    func typeProblem(_ kind: Field.Kind, _ node: JSONNode) -> String? {
        switch (kind, node) {
        case (.int, .int): return nil
        case (.int, .double(let double)) where Int(exactly: double) != nil: return nil
        case (.int, _): return "expected a whole number, got \(node.shown)"
        case (.bool, .bool): return nil
        case (.bool, _): return "expected true or false, got \(node.shown)"
        case (.string, .string), (.optionalString, .string), (.merchantKeys, .string): return nil
        case (.string, _), (.optionalString, _): return "expected a string, got \(node.shown)"
        case (.merchantKeys, .object(let entries)):
            return entries.values.allSatisfy { if case .string = $0 { true } else { false } }
                ? nil : "expected an object of merchant id to key (strings)"
        case (.merchantKeys, _):
            return "expected an object of merchant id to key, got \(node.shown)"
        case (.memberLevels, .array), (.memberLevels, .string): return nil
        case (.memberLevels, _): return "expected an array of {name, min_points, discount_percent}, got \(node.shown)"
        case (.secondsList, .array), (.secondsList, .string): return nil
        case (.secondsList, _): return "expected an array of whole numbers of seconds, got \(node.shown)"
        }
    }

    /// The layer that wins for a key; mirrors the provider order given to the reader.
    func origin(of field: Field) -> Origin {
        if let raw = overrides[field.key] { return .override(key: field.key, raw: raw) }
        if let raw = environment[field.envName] { return .environment(name: field.envName, raw: raw) }
        if let file, let node = fileValues[field.key] { return .file(path: file, key: field.key, node: node) }
        return .builtIn(key: field.key)
    }

    // MARK: Values

    mutating func read(_ field: Field, from reader: ConfigReader, into settings: inout Settings) async {
        let key = ConfigKey(field.key)
        let origin = origin(of: field)
        switch field.kind {
        case .int(let path, let range):
            let value: Int?
            do {
                value = try await reader.fetchInt(forKey: key)
            } catch {
                problems.append("\(origin.label): expected a whole number, got \(origin.shown)")
                return
            }
            guard let value else { return }
            guard range.contains(value) else {
                problems.append("\(origin.label): must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
                return
            }
            settings[keyPath: path] = value
        case .bool(let path):
            do {
                if let value = try await reader.fetchBool(forKey: key) { settings[keyPath: path] = value }
            } catch {
                problems.append("\(origin.label): expected true or false (or yes/no, 1/0), got \(origin.shown)")
            }
        case .string(let path, let check):
            guard let value = await string(field, key, origin, reader) else { return }
            if let problem = check(value) { problems.append("\(origin.label): \(problem)"); return }
            settings[keyPath: path] = value
        case .optionalString(let path, let check):
            guard let value = await string(field, key, origin, reader) else { return }
            if value.isEmpty { settings[keyPath: path] = nil; return }
            if let problem = check(value) { problems.append("\(origin.label): \(problem)"); return }
            settings[keyPath: path] = value
        case .merchantKeys:
            // A higher layer gives the whole map as one "id:key,..." string and replaces the
            // file's map; the file's object form flattens into per-id keys that the library
            // cannot enumerate, so that form is taken from the strict parse.
            if let text = await string(field, key, origin, reader) {
                if let map = parseMerchantKeys(text, origin) { settings.api.merchantKeys = map }
            } else if case .file(_, _, .object(let entries)) = origin {
                var map: [String: String] = [:]
                for (id, node) in entries.sorted(by: { $0.key < $1.key }) {
                    guard case .string(let secret) = node else { continue }
                    if let problem = merchantProblem(id: id, key: secret) {
                        problems.append("\(origin.label): \(problem)")
                    } else {
                        map[id] = secret
                    }
                }
                settings.api.merchantKeys = map
            }
        case .memberLevels:
            // Like merchant keys: a higher layer's JSON text replaces the file's array whole.
            if let text = await string(field, key, origin, reader) {
                if let levels = parseMemberLevels(text, origin) { settings.members.levels = levels }
            } else if case .file(_, _, let node) = origin, let levels = memberLevels(node, origin) {
                settings.members.levels = levels
            }
        case .secondsList(let path, let range):
            if let text = await string(field, key, origin, reader) {
                let items = text.trimmingCharacters(in: CharacterSet(charactersIn: "[] "))
                    .split(separator: ",", omittingEmptySubsequences: false)
                    .map { $0.trimmingCharacters(in: .whitespaces) }
                let numbers = items == [""] ? [] : items.map { Int($0) }
                if numbers.contains(nil) {
                    problems.append("\(origin.label): expected whole numbers of seconds separated by commas, got \(origin.shown)")
                } else if let list = secondsList(numbers.compactMap { $0 }, range, origin) {
                    settings[keyPath: path] = list
                }
            } else if case .file(_, _, .array(let nodes)) = origin {
                let numbers = nodes.map(\.wholeNumber)
                if numbers.contains(nil) {
                    problems.append("\(origin.label): expected an array of whole numbers of seconds, got \(origin.shown)")
                } else if let list = secondsList(numbers.compactMap { $0 }, range, origin) {
                    settings[keyPath: path] = list
                }
            }
        }
    }

    /// At most 10 distinct entries, each in `range`; returned descending.
    mutating func secondsList(_ numbers: [Int], _ range: ClosedRange<Int>, _ origin: Origin) -> [Int]? {
        guard numbers.count <= 10 else {
            problems.append("\(origin.label): at most 10 entries, got \(numbers.count)")
            return nil
        }
        if let bad = numbers.first(where: { !range.contains($0) }) {
            problems.append("\(origin.label): each entry must be between \(range.lowerBound) and \(range.upperBound), got \(bad)")
            return nil
        }
        guard Set(numbers).count == numbers.count else {
            problems.append("\(origin.label): entries must be distinct, got \(origin.shown)")
            return nil
        }
        return numbers.sorted(by: >)
    }

    /// JSON text of the levels array; empty means no levels.
    mutating func parseMemberLevels(_ text: String, _ origin: Origin) -> MemberLevels? {
        if text.trimmingCharacters(in: .whitespaces).isEmpty { return MemberLevels.none }
        guard let node = try? JSONDecoder().decode(JSONNode.self, from: Data(text.utf8)) else {
            problems.append("\(origin.label): expected a JSON array of {name, min_points, discount_percent}, got \(origin.shown)")
            return nil
        }
        return memberLevels(node, origin)
    }

    /// Each entry needs exactly its three fields: an unknown one is most likely a typo.
    mutating func memberLevels(_ node: JSONNode, _ origin: Origin) -> MemberLevels? {
        guard case .array(let entries) = node else {
            problems.append("\(origin.label): expected an array of {name, min_points, discount_percent}, got \(node.shown)")
            return nil
        }
        var levels: [MemberLevel] = []
        var ok = true
        for (index, entry) in entries.enumerated() {
            let at = "\(origin.label): level \(index + 1)"
            guard case .object(let fields) = entry else {
                problems.append("\(at): expected an object {name, min_points, discount_percent}, got \(entry.shown)")
                ok = false
                continue
            }
            let unknown = fields.keys.filter { !["name", "min_points", "discount_percent"].contains($0) }.sorted()
            if !unknown.isEmpty {
                problems.append("\(at): unknown field\(unknown.count == 1 ? "" : "s") \(unknown.map(quoted).joined(separator: ", "))")
                ok = false
            }
            guard case .string(let name) = fields["name"] ?? .null else {
                problems.append("\(at): name must be a string, got \((fields["name"] ?? .null).shown)")
                ok = false
                continue
            }
            guard let minPoints = fields["min_points"]?.wholeNumber else {
                problems.append("\(at): min_points must be a whole number, got \((fields["min_points"] ?? .null).shown)")
                ok = false
                continue
            }
            guard let discount = fields["discount_percent"]?.wholeNumber else {
                problems.append("\(at): discount_percent must be a whole number, got \((fields["discount_percent"] ?? .null).shown)")
                ok = false
                continue
            }
            levels.append(MemberLevel(name: name, minPoints: Int64(minPoints), discountPercent: discount))
        }
        guard ok else { return nil }
        do {
            return try MemberLevels(validating: levels)
        } catch {
            problems += error.problems.map { "\(origin.label): \($0)" }
            return nil
        }
    }

    mutating func string(_ field: Field, _ key: ConfigKey, _ origin: Origin, _ reader: ConfigReader) async -> String? {
        do {
            return try await reader.fetchString(forKey: key, isSecret: field.secret)
        } catch {
            problems.append("\(origin.label): expected a string: \(error)")
            return nil
        }
    }

    mutating func parseMerchantKeys(_ text: String, _ origin: Origin) -> [String: String]? {
        var map: [String: String] = [:]
        var ok = true
        for entry in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
            // The id ends at the first ":" so that keys may hold any character but "," and spaces.
            guard let colon = entry.firstIndex(of: ":") else {
                // Not echoed: the entry may be a bare key.
                problems.append("\(origin.label): expected merchant:key pairs separated by commas, found an entry without \":\"")
                ok = false
                continue
            }
            let id = String(entry[..<colon])
            let secret = String(entry[entry.index(after: colon)...])
            if let problem = merchantProblem(id: id, key: secret) {
                problems.append("\(origin.label): \(problem)")
                ok = false
            } else if map[id] != nil {
                problems.append("\(origin.label): merchant \(quoted(id)) is listed twice")
                ok = false
            } else {
                map[id] = secret
            }
        }
        return ok ? map : nil
    }

    func merchantProblem(id: String, key: String) -> String? {
        if !isValidID(id) { return "merchant id \(quoted(id)) must be 1 to 64 of A-Z a-z 0-9 _ . : -" }
        if key.isEmpty { return "merchant \(quoted(id)) has an empty key" }
        if key.contains(where: { $0.isWhitespace || $0 == "," }) {
            return "merchant \(quoted(id))'s key contains a space or comma"
        }
        return nil
    }

    /// Rules that span settings: a merchant key must identify exactly one caller.
    mutating func crossCheck(_ settings: Settings) {
        var owners: [String: String] = [:]
        for (id, key) in settings.api.merchantKeys.sorted(by: { $0.key < $1.key }) {
            if !settings.api.shopKey.isEmpty && key == settings.api.shopKey {
                problems.append("api.merchant_keys: merchant \(quoted(id))'s key equals api.shop_key")
            }
            if let other = owners[key] {
                problems.append("api.merchant_keys: merchants \(quoted(other)) and \(quoted(id)) share one key")
            }
            owners[key] = id
        }
        // Unsigned webhooks could not be told from anyone's POST.
        if !settings.webhooks.url.isEmpty && settings.webhooks.secret.isEmpty {
            problems.append("webhooks.url is set but webhooks.secret is not: receivers check every delivery's signature with it")
        }
        // Half a WeChat Pay setup could verify notifies but never read them, or the reverse.
        if (settings.payments.wechatpayPlatformPublicKey == nil) != settings.payments.wechatpayAPIv3Key.isEmpty {
            problems.append("payments.wechatpay_platform_public_key and payments.wechatpay_api_v3_key go together: give both, or neither to leave WeChat Pay off")
        }
        // Half a TLS setup would silently serve plain text where TLS was meant.
        switch (settings.server.tlsCert, settings.server.tlsKey) {
        case (.some, nil): problems.append("server.tls_cert is set but server.tls_key is not: give both PEM files, or neither for plain ws:// and http://")
        case (nil, .some): problems.append("server.tls_key is set but server.tls_cert is not: give both PEM files, or neither for plain ws:// and http://")
        default: break
        }
    }

    func suggestion(for key: String) -> String {
        let best = Settings.settingKeys.min { editDistance($0, key) < editDistance($1, key) }
        guard let best, editDistance(best, key) <= 3 else { return "" }
        return " (did you mean \(best)?)"
    }
}

// MARK: - Strict JSON

/// A JSON value that keeps booleans and numbers apart, unlike `JSONSerialization`.
private indirect enum JSONNode: Decodable {
    case null, bool(Bool), int(Int), double(Double), string(String)
    case array([JSONNode]), object([String: JSONNode])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Int.self) { self = .int(value) }
        else if let value = try? container.decode(Double.self) { self = .double(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([String: JSONNode].self) { self = .object(value) }
        else { self = .array(try container.decode([JSONNode].self)) }
    }

    /// An integer, or a double with no fraction (as the library reads numbers).
    var wholeNumber: Int? {
        switch self {
        case .int(let value): value
        case .double(let value): Int(exactly: value)
        default: nil
        }
    }

    var shown: String {
        switch self {
        case .null: "null"
        case .bool(let value): String(value)
        case .int(let value): String(value)
        case .double(let value): String(value)
        case .string(let value): quoted(value)
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// `JSONDecoder` only says "not valid JSON"; `JSONSerialization` says what and where, so ask it
/// for the message and turn its character offset into a line and column.
private func jsonSyntaxProblem(_ data: Data) -> String? {
    do {
        _ = try JSONSerialization.jsonObject(with: data)
        return nil
    } catch {
        guard let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String else { return nil }
        guard let range = detail.range(of: #"character \d+"#, options: .regularExpression),
              let offset = Int(detail[range].dropFirst("character ".count)) else { return detail }
        let before = Array(data.prefix(offset))
        let line = before.reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
        let column = before.count - (before.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0) + 1
        return "\(detail) (line \(line), column \(column))"
    }
}

// MARK: - Small helpers

func quoted(_ text: String) -> String {
    "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
}

/// Same rules as the library's environment provider, so flags and variables read alike.
private func parseBool(_ text: String) -> Bool? {
    switch text.trimmingCharacters(in: .whitespaces).lowercased() {
    case "true", "yes", "1": true
    case "false", "no", "0": false
    default: nil
    }
}

private func isIDCharacter(_ character: Character) -> Bool {
    character.isASCII && (character.isLetter || character.isNumber || "_.:-".contains(character))
}

/// `^[A-Za-z0-9_.:-]{1,64}$`, the contract's form for user, product and merchant ids.
private func isValidID(_ text: String) -> Bool {
    (1...64).contains(text.count) && text.allSatisfy(isIDCharacter)
}

private func hexBytes(_ text: String) -> [UInt8]? {
    guard !text.isEmpty, text.count % 2 == 0 else { return nil }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(text.count / 2)
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        guard let byte = UInt8(text[index..<next], radix: 16) else { return nil }
        bytes.append(byte)
        index = next
    }
    return bytes
}

private func randomHex(bytes count: Int) -> String {
    var generator = SystemRandomNumberGenerator()
    let digits = Array("0123456789abcdef")
    var text = ""
    for _ in 0..<count {
        let byte = UInt8.random(in: .min ... .max, using: &generator)
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0x0f)])
    }
    return text
}

private func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.lowercased()), b = Array(b.lowercased())
    if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
    var previous = Array(0...b.count)
    for i in 1...a.count {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1,
                             previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}
