import Foundation
import GatewayAuth
import GatewayClient
import GatewayCrypto
import GatewayProtocol
@_exported import GatewayTestSupport
import XCTest

/// The directory holding the built products (the gateway binary sits beside the test bundle).
let productsDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()

/// A built product; `GATEWAY_BIN` names another gateway binary (e.g. the AddressSanitizer
/// build of `.ci/asan`) for every test that spawns nodes, the load tester's included.
func executable(_ name: String) -> URL {
    if name == "gateway", let override = ProcessInfo.processInfo.environment["GATEWAY_BIN"], !override.isEmpty {
        return URL(fileURLWithPath: override)
    }
    let candidates = [productsDir.appendingPathComponent(name),
                      productsDir.deletingLastPathComponent().appendingPathComponent(name)]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
}

/// Secrets every test node shares.
enum TestSecrets {
    static let auth = "test-auth-secret-0123456789abcdef"
    static let shopKey = "test-shop-key"
    static let merchantKey = "test-merchant-key"
    static let payments = "test-payments-secret"
    static let keys = String(repeating: "ab", count: 32)

    /// The test secrets as `serve --dev` keeps its own (`dev-secrets.json` beside the data folder).
    static func writeDevFile(in folder: URL) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let secrets = ["auth.secret": auth, "api.shop_key": shopKey, "payments.secret": payments, "keys.secret": keys]
        try JSONSerialization.data(withJSONObject: secrets).write(to: folder.appendingPathComponent("dev-secrets.json"))
    }
}

func token(_ sub: String, role: Role = .buyer, products: [String] = [], moderator: Bool = false,
           ttl: Int64 = 3600, secret: String = TestSecrets.auth) -> String {
    TokenMinter(secret: secret).mint(Claims(sub: sub, exp: Int64(Date().timeIntervalSince1970) + ttl, role: role,
                                            products: products, moderator: moderator))
}

/// A real gateway process. Worker threads of a test only call `http` (the port is set once);
/// start and stop belong to the test's own thread (hence unchecked Sendable).
final class GatewayNodeProcess: @unchecked Sendable {
    let port: Int
    let name: String
    let redisPort: Int
    private let extraEnv: [String: String]
    private let launcher: [String]
    /// Extra `serve` arguments, e.g. `--dev`.
    let extraArguments: [String]
    /// With `--dev`: a throwaway folder for `redis.data_dir`, so the dev secrets file lands there, not in the repo.
    private let devDir: URL?
    /// `--redis` when not `redis://127.0.0.1:<redisPort>` (credentials, db, unix socket) nor the shared cluster.
    private let redisURL: String?
    /// False: `start()` returns once the process runs, without waiting for `/readyz`.
    private let waitReady: Bool
    /// Serves `wss://` and `https://` with `TestTLS`'s self-signed certificate.
    let tls: Bool
    private(set) var process: Process?
    let logURL: URL

    /// - Parameter dev: runs `serve --dev` (dev-only endpoints, /demo/) with the test secrets in its dev secrets file.
    /// - Parameter launcher: a command that runs the gateway, e.g. `["/usr/bin/prlimit", "--nofile=160:160"]`.
    /// - Parameter ownRedis: a folder for `serve --dev` with no `--redis`: the node runs its private
    ///   redis-server on `<folder>/redis` (`redisPort` is then unused).
    init(name: String, redisPort: Int, env: [String: String] = [:], dev: Bool = false, arguments: [String] = [],
         launcher: [String] = [], redisURL: String? = nil, waitReady: Bool = true, ownRedis: URL? = nil,
         tls: Bool = TestTLS.enabledByEnvironment) throws {
        self.launcher = launcher
        self.tls = tls
        self.redisURL = redisURL
        self.waitReady = waitReady
        self.name = name
        self.redisPort = redisPort
        self.extraEnv = tls ? try TestTLS.environment().merging(env) { _, given in given } : env
        self.extraArguments = (dev || ownRedis != nil ? ["--dev"] : []) + (ownRedis == nil ? ["--redis", redisURL ?? TestRedis.clusterURL ?? "redis://127.0.0.1:\(redisPort)"] : []) + arguments
        devDir = ownRedis ?? (dev ? FileManager.default.temporaryDirectory.appendingPathComponent("gw-dev-\(UUID().uuidString.prefix(8))") : nil)
        port = freePort()
        logURL = FileManager.default.temporaryDirectory.appendingPathComponent("gw-\(name)-\(port).log")
        try start()
    }

    func start() throws {
        let p = Process()
        p.executableURL = launcher.first.map { URL(fileURLWithPath: $0) } ?? executable("gateway")
        p.arguments = launcher.dropFirst() + (launcher.isEmpty ? [] : [executable("gateway").path]) + ["serve", "--port", String(port), "--node", name,
                       "--config", Self.configPath] + extraArguments
        var env = ProcessInfo.processInfo.environment
        if let devDir {
            // `--dev` refuses secrets from the environment; it reads the ones it "made" earlier.
            env["GATEWAY_REDIS_DATA_DIR"] = devDir.appendingPathComponent("redis").path
            try TestSecrets.writeDevFile(in: devDir)
        } else {
            env["GATEWAY_AUTH_SECRET"] = TestSecrets.auth
            env["GATEWAY_API_SHOP_KEY"] = TestSecrets.shopKey
            env["GATEWAY_API_MERCHANT_KEYS"] = "m1:\(TestSecrets.merchantKey)"
            env["GATEWAY_PAYMENTS_SECRET"] = TestSecrets.payments
            env["GATEWAY_KEYS_SECRET"] = TestSecrets.keys
        }
        for (k, v) in extraEnv { env[k] = v }
        p.environment = env
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        p.standardOutput = log
        p.standardError = log
        try p.run()
        process = p
        guard waitReady else { return }
        try waitUntil(timeout: 15, "gateway \(name) ready") {
            (try? http("GET", "/readyz"))?.status == 200 || !p.isRunning
        }
        // A node that refused to start says why in its log (e.g. a Redis URL it cannot serve).
        if !p.isRunning {
            p.waitUntilExit()
            throw TestError("gateway \(name) exited with \(p.terminationStatus) at start: \(self.log().suffix(600))")
        }
    }

    static var configPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Config/gateway.json").path
    }

    var wsURL: String { "\(tls ? "wss" : "ws")://127.0.0.1:\(port)/ws" }
    /// Where a browser finds the node: `http://` or `https://`, no trailing slash.
    var baseURL: String { "\(tls ? "https" : "http")://127.0.0.1:\(port)" }

    func signal(_ sig: Int32) {
        if let p = process { kill(p.processIdentifier, sig) }
    }

    /// Waits for the process to exit and returns its status.
    func waitExit(timeout: Double = 15) -> Int32? {
        guard let p = process else { return nil }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning { return nil }
        process = nil
        return p.terminationStatus
    }

    func stop() {
        guard let p = process else { return }
        if p.isRunning {
            p.terminate()
            if waitExit(timeout: 10) == nil { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        }
        process = nil
    }

    deinit {
        stop()
        if let devDir { try? FileManager.default.removeItem(at: devDir) }
    }

    func http(_ method: String, _ path: String, body: String? = nil, key: String? = TestSecrets.shopKey,
              headers: [String: String] = [:]) throws -> HTTPResponse {
        if tls { return try TestTLS.request(port: port, method, path, body: body.map { Array($0.utf8) }, key: key, headers: headers) }
        return try httpRequest(port: port, method, path, body: body.map { Array($0.utf8) }, key: key, headers: headers)
    }

    func log() -> String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }
}

/// Where the integration tests' Redis comes from (`GATEWAY_TEST_REDIS_CLUSTER`):
/// - unset: a redis-server of its own per test;
/// - a `redis+cluster://h:p,...` URL: that cluster, shared, with FLUSHALL on every master before each test;
/// - `start`: a local 3-master, 3-replica cluster (`RedisClusterLauncher`) this test process
///   starts once, under `GATEWAY_TEST_CLUSTER_DIR` if set, and stops at exit (its servers die
///   with the process however it ends: they are tied to it).
enum TestRedis {
    static let setting: String? = {
        let v = ProcessInfo.processInfo.environment["GATEWAY_TEST_REDIS_CLUSTER"] ?? ""
        return v.isEmpty ? nil : v
    }()

    static var isCluster: Bool { setting != nil }

    /// The `--redis` URL of the shared cluster (nil: a server per test).
    static var clusterURL: String? {
        guard let setting else { return nil }
        return setting == "start" ? (try? startedCluster.get())?.url : setting
    }

    /// The cluster started for `start`, once per process; nil for a given URL.
    static var launcher: RedisClusterLauncher? {
        setting == "start" ? try? startedCluster.get() : nil
    }

    /// A folder for a cluster's nodes under `GATEWAY_TEST_CLUSTER_DIR` (where `.ci/cluster` looks
    /// for leftovers), or nil for the launcher's own under /tmp.
    static func clusterFolder(_ name: String) -> URL? {
        ProcessInfo.processInfo.environment["GATEWAY_TEST_CLUSTER_DIR"].map {
            URL(fileURLWithPath: $0).appendingPathComponent("\(name)-\(getpid())-\(UUID().uuidString.prefix(6))")
        }
    }

    private static let startedCluster: Result<RedisClusterLauncher, Error> = Result {
        let started = Date()
        let cluster = try RedisClusterLauncher(dir: clusterFolder("shared"))
        print("shared Redis Cluster \(cluster.url) up in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        atexit { TestRedis.launcher?.stop() }
        return cluster
    }

    /// Empties the shared cluster for the next test (throws if it could not be started).
    static func flushCluster() throws {
        if setting == "start" {
            try startedCluster.get().flushAll()
        } else if let setting {
            try RedisClusterLauncher.flushAll(url: setting)
        }
    }
}

/// Starts a real redis-server per test (or uses the shared cluster, see `TestRedis`) and the
/// gateway nodes a test asks for.
class IntegrationCase: XCTestCase {
    static let loop = try! ClientLoop(allowSelfSigned: true)
    /// The test's own server; nil in cluster mode (tests that talk to it call `requireSingleRedis`).
    var redis: RedisServer!
    var nodes: [GatewayNodeProcess] = []

    override func setUpWithError() throws {
        if TestRedis.isCluster {
            try TestRedis.flushCluster()
        } else {
            redis = try RedisServer()
        }
    }

    override func tearDown() {
        nodes.forEach { $0.stop() }
        nodes = []
        redis = nil
    }

    /// Skips the test on a shared cluster: it talks to one redis-server directly (a port,
    /// redis-cli, a kill or restart, CONFIG), which a cluster run does not have.
    func requireSingleRedis(_ why: String) throws {
        if TestRedis.isCluster { throw XCTSkip("needs a redis-server of its own, not the shared cluster: \(why)") }
    }

    /// One command to the Redis holding `key` (the shared cluster's master of its slot).
    func redisCall(_ key: String, _ args: [String]) throws -> RESP {
        if TestRedis.isCluster {
            guard let cluster = TestRedis.launcher else { throw XCTSkip("needs the cluster started by the tests (GATEWAY_TEST_REDIS_CLUSTER=start)") }
            return try cluster.call(port: cluster.masterFor(key: key), args)
        }
        return try RedisProbe.call(port: redis.port, args)
    }

    func startNode(_ name: String = "n1", env: [String: String] = [:], dev: Bool = false) throws -> GatewayNodeProcess {
        let node = try GatewayNodeProcess(name: name, redisPort: redis?.port ?? 0, env: env, dev: dev)
        nodes.append(node)
        return node
    }

    func open(_ node: GatewayNodeProcess, _ user: String, role: Role = .buyer, products: [String] = [],
              since: GatewaySession.Position? = nil) throws -> (GatewaySession, JSON) {
        try GatewaySession.open(loop: Self.loop, url: node.wsURL, token: token(user, role: role, products: products), since: since)
    }

    func createProduct(_ node: GatewayNodeProcess, _ id: String, merchant: String = "m1", price: Int = 1999) throws {
        let r = try node.http("POST", "/api/v1/products",
                              body: #"{"id":"\#(id)","merchant":"\#(merchant)","title":"Card \#(id)","price":\#(price),"currency":"CNY"}"#)
        XCTAssertEqual(r.status, 201, r.text)
    }

    @discardableResult
    func publish(_ node: GatewayNodeProcess, _ channel: String, _ n: Int, type: String = "test.note") throws -> Int64 {
        let r = try node.http("POST", "/api/v1/publish", body: #"{"channel":"\#(channel)","type":"\#(type)","data":{"n":\#(n)}}"#)
        XCTAssertEqual(r.status, 200, r.text)
        return r.json?["offset"]?.intValue ?? -1
    }


    // MARK: Shop and payment provider

    func uploadKeys(_ node: GatewayNodeProcess, _ product: String, _ keys: [String]) throws -> JSON {
        let body = JSON.object([("keys", .array(keys.map { .string($0) }))]).serialized()
        let r = try node.http("POST", "/api/v1/products/\(product)/keys", body: body)
        XCTAssertEqual(r.status, 200, r.text)
        return try XCTUnwrap(r.json)
    }

    func order(_ node: GatewayNodeProcess, _ body: String, status: Int = 201) throws -> JSON {
        let r = try node.http("POST", "/api/v1/orders", body: body)
        XCTAssertEqual(r.status, status, r.text)
        return r.json ?? .null
    }

    func pay(_ node: GatewayNodeProcess, _ orderID: String, payer: String) throws -> JSON {
        let r = try node.http("POST", "/api/v1/orders/\(orderID)/payments", body: #"{"payer":"\#(payer)"}"#)
        XCTAssertEqual(r.status, 201, r.text)
        return try XCTUnwrap(r.json?["payment"])
    }

    func signedNotify(_ node: GatewayNodeProcess, _ body: String, secret: String = TestSecrets.payments) throws -> HTTPResponse {
        let sig = Crypto.hex(Crypto.hmacSHA256(key: Array(secret.utf8), message: Array(body.utf8)))
        return try node.http("POST", "/api/v1/payments/notify", body: body, key: nil, headers: ["X-Signature": sig])
    }

    func notifyBody(_ payment: JSON, status: String = "success", amount: Int64? = nil, currency: String? = nil, order: String? = nil) -> String {
        JSON.object([("payment", payment["id"]!), ("order", .string(order ?? payment["order"]!.stringValue!)),
                     ("amount", .int(amount ?? payment["amount"]!.intValue!)),
                     ("currency", .string(currency ?? payment["currency"]!.stringValue!)),
                     ("status", .string(status)), ("trade_no", .string("T\(Int.random(in: 1...1_000_000))"))]).serialized()
    }

    func getOrder(_ node: GatewayNodeProcess, _ id: String) throws -> JSON {
        let r = try node.http("GET", "/api/v1/orders/\(id)")
        XCTAssertEqual(r.status, 200, r.text)
        return try XCTUnwrap(r.json)
    }

    func product(_ node: GatewayNodeProcess, _ id: String) throws -> JSON {
        try XCTUnwrap(try node.http("GET", "/api/v1/products/\(id)").json)
    }

    /// Pushes seen while waiting for another type, per session, so order does not matter.
    private var stash: [ObjectIdentifier: [JSON]] = [:]

    /// The next push of `type` on `s` (in any order relative to other types).
    func push(_ s: GatewaySession, _ type: String, timeout: Double = 5) -> JSON? {
        let key = ObjectIdentifier(s)
        if let i = stash[key]?.firstIndex(where: { $0["push"]?.stringValue == type }) {
            return stash[key]!.remove(at: i)
        }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline, let p = s.nextPush(timeout: deadline.timeIntervalSinceNow) {
            if p["push"]?.stringValue == type { return p }
            stash[key, default: []].append(p)
        }
        return nil
    }

    /// Creates, pays and confirms an order: `buyer` then owns a delivered order of `product`.
    @discardableResult
    func buy(_ node: GatewayNodeProcess, _ buyer: String, _ product: String) throws -> JSON {
        let created = try order(node, #"{"buyer":"\#(buyer)","product":"\#(product)"}"#)
        let payment = try pay(node, created["id"]!.stringValue!, payer: buyer)
        XCTAssertEqual(try signedNotify(node, notifyBody(payment)).status, 200)
        return try getOrder(node, created["id"]!.stringValue!)
    }
}
