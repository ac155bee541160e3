import ArgumentParser
import Foundation
import CommunityCore
import GatewayAuth
import GatewayConfig
import GatewayDev
import GatewayLog
import GatewayNode
import GatewayProtocol
import Logging
import OrderCore

@main
struct Gateway: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Realtime notification and community gateway of the card-key shop.",
        subcommands: [Serve.self, Token.self, Bot.self],
        defaultSubcommand: Serve.self)
}

/// Options every subcommand shares: where settings come from.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "Settings file (JSON). Default: Config/gateway.json when present.")
    var config: String?

    func load(overrides: [String: String]) throws -> Settings {
        let file = config ?? (FileManager.default.fileExists(atPath: "Config/gateway.json") ? "Config/gateway.json" : nil)
        let env = ProcessInfo.processInfo.environment
        let box = ResultBox()
        let semaphore = DispatchSemaphore(value: 0)
        Task {
            do { box.result = .success(try await Settings.load(file: file, environment: env, overrides: overrides)) } catch {
                box.result = .failure(error)
            }
            semaphore.signal()
        }
        semaphore.wait()
        switch box.result! {
        case .success(let s): return s
        case .failure(let e): throw ValidationError("configuration: \(e)")
        }
    }
}

final class ResultBox: @unchecked Sendable {
    var result: Result<Settings, Error>?
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a gateway node (and a private Redis when no URL is given).")

    @OptionGroup var configOptions: ConfigOptions
    @Option(help: "Port to listen on (0 picks a free one).") var port: Int?
    @Option(help: "Address to listen on.") var host: String?
    @Option(help: "Redis URL, e.g. redis://127.0.0.1:6379. Without it a private redis-server is started.") var redis: String?
    @Option(help: "Node name, unique among nodes sharing a Redis.") var node: String?
    @Flag(help: "Development mode: generate missing secrets, print how to mint tokens, serve the /dev endpoints, demo products and a bot behind the demo page at /demo/.") var dev = false

    func run() throws {
        var overrides: [String: String] = [:]
        if let port { overrides["server.port"] = String(port) }
        if let host { overrides["server.host"] = host }
        if let redis { overrides["redis.url"] = redis }
        if let node { overrides["server.node"] = node }
        var settings = try configOptions.load(overrides: overrides)
        GatewayLog.bootstrap(node: settings.nodeName(), level: Logger.Level(rawValue: settings.logging.level) ?? .info)
        if dev {
            try DevSecrets.fill(&settings)
        } else {
            let missing = settings.missingSecrets()
            if !missing.isEmpty {
                throw ValidationError("refusing to start without secrets: \(missing.joined(separator: ", ")). Set them in the config file or environment, or run with --dev to generate throwaway ones.")
            }
        }

        var privateRedis: PrivateRedis?
        let redisURL: RedisURL
        if let url = settings.redis.url {
            // Settings validated the syntax; here is what this build cannot honour (PROTOCOL.md 4.2).
            redisURL = try RedisURL.parse(url).get()
            if redisURL.tls { throw ValidationError("redis.url: rediss:// needs hiredis with TLS, and Debian's hiredis 0.14 has none; reach Redis over loopback, a unix socket or a TLS tunnel (stunnel) instead") }
        } else {
            if case .replicas = settings.redis.durabilityMode {
                throw ValidationError("redis.durability \(settings.redis.durability) needs a Redis with replicas: give one with --redis; the private redis-server has none (it fsyncs every write instead)")
            }
            let server = try PrivateRedis(dataDir: settings.redis.dataDir)
            try server.start()
            privateRedis = server
            redisURL = RedisURL(endpoints: [.tcp(host: "127.0.0.1", port: server.port)])
            print("private redis-server on 127.0.0.1:\(server.port), data in \(server.dataDir)")
        }
        defer { privateRedis?.stop() }

        let nodeName = settings.nodeName()
        let options = NodeOptions(settings: settings, nodeName: nodeName, redis: redisURL, dev: dev)
        Node.staticFiles = Node.staticFiles.adding(DemoPage.load())
        let web = Node.staticFiles
        if web.files.isEmpty { print("no browser files found (\(web.source)): /client and /demo answer 404") }
        let gateway = try Node(options: options)
        if dev { gateway.devEndpoints = DevShop() }
        try gateway.run { port in
            let secure = settings.server.tlsCert != nil ? "s" : ""
            print("gateway node \(nodeName) listening on ws\(secure)://\(settings.server.host):\(port)/ws and http\(secure)://\(settings.server.host):\(port)/")
            if dev {
                DemoBot.start(host: settings.server.host, port: port, secret: settings.auth.secret, tls: !secure.isEmpty)
                let minter = TokenMinter(secret: settings.auth.secret)
                let sample = minter.mint(Claims(sub: "u1", exp: Int64(Date().timeIntervalSince1970) + 86400, name: "Demo buyer"))
                print("""
                dev mode (loopback only): throwaway secrets generated and kept in \(DevSecrets.file(settings).path).
                  shop key:        \(settings.api.shopKey)
                  payments secret: \(settings.payments.secret)
                  token for u1:    \(sample)
                  more tokens:     GATEWAY_AUTH_SECRET=\(settings.auth.secret) gateway token --sub u2
                  demo page:       http\(secure)://\(DemoBot.reachableHost(settings.server.host)):\(port)/demo/
                """)
            }
            fflush(nil)  // every stream: Swift 6 mode refuses the global `stdout`
        }
    }
}

struct Token: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a token signed with the configured auth.secret.")

    @OptionGroup var configOptions: ConfigOptions
    @Option(help: "User id (sub).") var sub: String
    @Option(help: "buyer, bot or merchant.") var role: String = "buyer"
    @Option(help: "Comma-separated product ids the bot or merchant may join.") var products: String?
    @Option(help: "Display name (at most 32 characters).") var name: String?
    @Flag(help: "Bots only: may moderate their groups.") var moderator = false
    @Option(help: "Lifetime in seconds.") var ttl: Int = 3600

    func run() throws {
        let settings = try configOptions.load(overrides: [:])
        guard !settings.auth.secret.isEmpty else {
            throw ValidationError("auth.secret is empty: set GATEWAY_AUTH_SECRET or the config file")
        }
        guard let role = Role(rawValue: role) else { throw ValidationError("--role must be buyer, bot or merchant") }
        guard ttl > 0 else { throw ValidationError("--ttl must be positive") }
        let list = products.map { $0.split(separator: ",").map(String.init) } ?? []
        let claims = Claims(sub: sub, exp: Int64(Date().timeIntervalSince1970) + Int64(ttl), role: role,
                            products: list, moderator: moderator, name: name)
        let token = TokenMinter(secret: settings.auth.secret).mint(claims)
        // Check what we mint the way the gateway will.
        if case .failure(let error) = TokenVerifier(secret: settings.auth.secret).verify(token, nowSeconds: Int64(Date().timeIntervalSince1970)) {
            throw ValidationError("cannot mint that token: \(error.message)")
        }
        print(token)
    }
}

/// `--dev` secrets are generated once and kept beside the private Redis data, so tokens
/// and sealed card keys stay valid across restarts of a development node.
enum DevSecrets {
    static func file(_ settings: Settings) -> URL {
        URL(fileURLWithPath: settings.redis.dataDir).deletingLastPathComponent().appendingPathComponent("dev-secrets.json")
    }

    /// Dev mode prints its secrets, so it only runs on loopback and only with secrets it made
    /// itself: a production secret from the environment or config is never printed.
    static func fill(_ settings: inout Settings) throws {
        guard isLoopback(settings.server.host) else {
            throw ValidationError("--dev serves throwaway secrets and test endpoints, so it listens on loopback only (127.0.0.1, ::1 or localhost), not \(settings.server.host). Run without --dev, with real secrets, to serve other hosts.")
        }
        let provided = settings.providedSecrets()
        guard provided.isEmpty else {
            throw ValidationError("--dev makes its own throwaway secrets and prints them, so it refuses secrets from the config or environment: \(provided.joined(separator: ", ")). Unset them, or run without --dev.")
        }
        let file = self.file(settings)
        var saved: [String: String] = [:]
        if let data = try? Data(contentsOf: file), let json = try? JSONSerialization.jsonObject(with: data) as? [String: String] {
            saved = json
        }
        func take(_ value: inout String, _ key: String) {
            if let s = saved[key], !s.isEmpty { value = s }
        }
        take(&settings.auth.secret, "auth.secret")
        take(&settings.api.shopKey, "api.shop_key")
        take(&settings.payments.secret, "payments.secret")
        take(&settings.keys.secret, "keys.secret")
        if let keys = saved["keys.secret"], settings.keys.secretBytes == nil {
            throw ValidationError("\(file.path): keys.secret must be 64 hex characters, got \(keys.count) characters")
        }
        settings.fillDevSecrets()
        let out = ["auth.secret": settings.auth.secret, "api.shop_key": settings.api.shopKey,
                   "payments.secret": settings.payments.secret, "keys.secret": settings.keys.secret]
        if out != saved {
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            let data = try JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys])
            guard FileManager.default.createFile(atPath: file.path, contents: data, attributes: [.posixPermissions: 0o600]) else {
                throw ValidationError("cannot write \(file.path)")
            }
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" || host == "[::1]" { return true }
        let parts = host.split(separator: ".")
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}
