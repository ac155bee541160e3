/// A parsed `redis.url` (PROTOCOL.md 4.2): every part is kept, so that a part the node
/// cannot honour is refused at start-up instead of silently dropped.
///
///     redis://[user:pass@]host:port[/db]
///     rediss://[user:pass@]host:port[/db]        TLS, verified with redis.tls_ca
///     unix:///path/to/redis.sock[?db=N]
///     redis+cluster://[user:pass@]h:p[,h:p...]   Redis Cluster (no db)
public struct RedisURL: Sendable, Equatable {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    /// Where to connect; several seed nodes only for a cluster.
    public var endpoints: [Endpoint]
    public var tls: Bool
    public var cluster: Bool
    /// ACL user (Redis 6+); nil with a password alone means the default user.
    public var user: String?
    public var password: String?
    public var db: Int

    public init(endpoints: [Endpoint], tls: Bool = false, cluster: Bool = false,
                user: String? = nil, password: String? = nil, db: Int = 0) {
        self.endpoints = endpoints
        self.tls = tls
        self.cluster = cluster
        self.user = user
        self.password = password
        self.db = db
    }

    /// The first endpoint: the one a single-server node connects to.
    public var endpoint: Endpoint { endpoints[0] }

    /// Host and port for logs; never the password.
    public var redacted: String {
        let scheme = cluster ? "redis+cluster" : (tls ? "rediss" : "redis")
        let auth = password == nil ? "" : "\(user ?? ""):***@"
        let hosts = endpoints.map { endpoint -> String in
            switch endpoint {
            case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            case .unix(let path): path
            }
        }
        if case .unix = endpoint { return "unix://\(hosts[0])" + (db == 0 ? "" : "?db=\(db)") }
        return "\(scheme)://\(auth)\(hosts.joined(separator: ","))" + (db == 0 ? "" : "/\(db)")
    }

    public static func parse(_ url: String) -> Result<RedisURL, ConfigError> {
        func fail(_ why: String) -> Result<RedisURL, ConfigError> {
            .failure(ConfigError(message: why))
        }
        let schemes = ["redis://", "rediss://", "unix://", "redis+cluster://"]
        guard let scheme = schemes.first(where: { url.hasPrefix($0) }) else {
            return fail("expected redis://, rediss://, unix:// or redis+cluster://, got a URL starting \(quoted(String(url.prefix(12))))")
        }
        guard !url.contains(where: { $0.isWhitespace || $0.isNewline }) else { return fail("a Redis URL has no spaces") }
        var rest = Substring(url.dropFirst(scheme.count))

        if scheme == "unix://" {
            var db = 0
            if let q = rest.firstIndex(of: "?") {
                let query = rest[rest.index(after: q)...]
                rest = rest[..<q]
                for pair in query.split(separator: "&") {
                    let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    guard kv.count == 2, kv[0] == "db" else { return fail("unix:// takes only ?db=N, got \(quoted(String(pair)))") }
                    guard let n = Int(kv[1]), (0...65_535).contains(n) else { return fail("db must be 0 to 65535, got \(quoted(String(kv[1])))") }
                    db = n
                }
            }
            guard rest.hasPrefix("/"), rest.count > 1 else { return fail("unix:// needs an absolute socket path, e.g. unix:///run/redis/redis.sock") }
            return .success(RedisURL(endpoints: [.unix(path: String(rest))], db: db))
        }

        var user: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let u = credentials[..<colon]
                user = u.isEmpty ? nil : percentDecoded(u)
                password = percentDecoded(credentials[credentials.index(after: colon)...])
            } else {
                // `redis://secret@host`: a lone word is the password, as redis-cli reads it.
                password = percentDecoded(credentials)
            }
            guard user != nil || password != nil, password.map({ !$0.isEmpty }) ?? true else {
                return fail("empty credentials before @")
            }
        }

        var db = 0
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !path.isEmpty {
                guard scheme != "redis+cluster://" else { return fail("Redis Cluster has only database 0; drop /\(path)") }
                guard let n = Int(path), (0...65_535).contains(n) else { return fail("the database after / must be 0 to 65535, got \(quoted(String(path)))") }
                db = n
            }
        }
        guard !rest.contains("?") else { return fail("query options are not supported on \(scheme)") }

        let hostList = rest.split(separator: ",", omittingEmptySubsequences: false)
        guard scheme == "redis+cluster://" || hostList.count == 1 else { return fail("several hosts need redis+cluster://") }
        var endpoints: [Endpoint] = []
        for item in hostList {
            switch parseHostPort(item) {
            case .success(let endpoint): endpoints.append(endpoint)
            case .failure(let error): return .failure(error)
            }
        }
        return .success(RedisURL(endpoints: endpoints, tls: scheme == "rediss://", cluster: scheme == "redis+cluster://",
                                 user: user, password: password, db: db))
    }

    private static func parseHostPort(_ text: Substring) -> Result<Endpoint, ConfigError> {
        func fail(_ why: String) -> Result<Endpoint, ConfigError> { .failure(ConfigError(message: why)) }
        var host: Substring
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return fail("unclosed [ in an IPv6 address") }
            host = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return fail("expected :port after ]") }
                portText = after.dropFirst()
            }
        } else {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { return fail("expected host:port, got \(quoted(String(text)))") }
            host = parts[0]
            portText = parts.count == 2 ? parts[1] : nil
        }
        guard !host.isEmpty else { return fail("missing host") }
        guard host.allSatisfy({ $0.isLetter || $0.isNumber || "-._:".contains($0) }) else {
            return fail("bad host \(quoted(String(host)))")
        }
        var port = 6379
        if let portText {
            guard let n = Int(portText), (1...65_535).contains(n) else { return fail("port must be 1 to 65535, got \(quoted(String(portText)))") }
            port = n
        }
        return .success(.tcp(host: String(host), port: port))
    }

    private static func percentDecoded(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        var i = text.utf8.startIndex
        let utf8 = text.utf8
        while i < utf8.endIndex {
            let b = utf8[i]
            if b == UInt8(ascii: "%"), let h = utf8.index(i, offsetBy: 2, limitedBy: utf8.endIndex), h < utf8.endIndex,
               let v = UInt8(String(decoding: utf8[utf8.index(after: i)...h], as: UTF8.self), radix: 16) {
                bytes.append(v)
                i = utf8.index(after: h)
            } else {
                bytes.append(b)
                i = utf8.index(after: i)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// What an acknowledged write waits for before the node answers (`redis.durability`).
public enum RedisDurability: Sendable, Equatable {
    /// The server's own AOF policy (the private Redis: `appendfsync always`).
    case fsync
    /// `WAIT n` replicas after each money write.
    case replicas(Int)

    public init?(_ text: String) {
        if text == "fsync" { self = .fsync; return }
        guard text.hasPrefix("replicas:"), let n = Int(text.dropFirst("replicas:".count)), (1...100).contains(n) else { return nil }
        self = .replicas(n)
    }
}
