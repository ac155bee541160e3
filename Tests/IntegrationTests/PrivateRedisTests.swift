import Foundation
import GatewayProtocol
import XCTest

/// `serve --dev` with no `--redis` runs a private redis-server on its data folder. It must die
/// with its gateway however the gateway dies, never run twice on one folder, and keep every
/// acknowledged write across a hard kill (PROTOCOL.md 4.2, issue 16). Real binaries only.
final class PrivateRedisTests: IntegrationCase {
    private var folder: URL!

    override func setUpWithError() throws {
        try requireSingleRedis("the private redis-server and `--redis` on one server are single-instance features")
        try super.setUpWithError()
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("gw-own-\(UUID().uuidString.prefix(8))")
    }

    override func tearDown() {
        super.tearDown()
        guard folder != nil else { return }  // skipped before it was made
        // Whatever a failed test left behind on the folder.
        for pid in serversOnFolder() { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(at: folder)
    }

    private var dataDir: String { folder.appendingPathComponent("redis").path }

    private func startOwn(_ name: String = "own") throws -> GatewayNodeProcess {
        let node = try GatewayNodeProcess(name: name, redisPort: 0, ownRedis: folder)
        nodes.append(node)
        return node
    }

    /// Live redis-server processes whose working folder is the data folder (Redis chdirs to --dir).
    private func serversOnFolder() -> [pid_t] {
        let want = URL(fileURLWithPath: dataDir).resolvingSymlinksInPath().path
        return ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry), isLiveRedis(pid),
                  let cwd = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd"),
                  cwd == want else { return nil }
            return pid
        }
    }

    private func isLiveRedis(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        return stat.contains("(redis-server") && state != "Z" && state != "X"
    }

    /// The private Redis port the node printed at start.
    private func privatePort(_ node: GatewayNodeProcess) throws -> Int {
        let line = try XCTUnwrap(node.log().split(separator: "\n").last { $0.hasPrefix("private redis-server on 127.0.0.1:") })
        return try XCTUnwrap(Int(line.dropFirst("private redis-server on 127.0.0.1:".count).prefix { $0.isNumber }))
    }

    /// One paid order with its key: the writes the node acknowledged before a crash.
    private func writeShopData(_ node: GatewayNodeProcess) throws -> String {
        try createProduct(node, "p-durable")
        _ = try uploadKeys(node, "p-durable", ["KEY-DURABLE-1", "KEY-DURABLE-2"])
        let order = try self.order(node, #"{"buyer":"u1","product":"p-durable","quantity":1,"kind":"normal"}"#)
        let orderID = try XCTUnwrap(order["id"]?.stringValue)
        let payment = try pay(node, orderID, payer: "u1")
        XCTAssertEqual(try signedNotify(node, notifyBody(payment)).status, 200)
        XCTAssertEqual(try getOrder(node, orderID)["status"]?.stringValue, "delivered")
        return orderID
    }

    func testKillNineTakesTheRedisAlongAndAcknowledgedDataSurvives() throws {
        let node = try startOwn()
        let first = serversOnFolder()
        XCTAssertEqual(first.count, 1, "one private redis-server on the folder")
        let pidFile = (try? String(contentsOfFile: "\(dataDir)/redis.pid", encoding: .utf8)) ?? ""
        XCTAssertEqual(pid_t(pidFile.trimmingCharacters(in: .whitespacesAndNewlines)), first.first, "Redis writes its pidfile")
        let orderID = try writeShopData(node)

        node.signal(SIGKILL)
        XCTAssertNotNil(node.waitExit(timeout: 5))
        // PDEATHSIG: the server goes with its gateway, within a second.
        try waitUntil(timeout: 1, "the private redis-server to die with its gateway") { serversOnFolder().isEmpty }

        try node.start()
        XCTAssertEqual(serversOnFolder().count, 1, "exactly one redis-server after the restart")
        let order = try getOrder(node, orderID)
        XCTAssertEqual(order["status"]?.stringValue, "delivered")
        XCTAssertEqual(order["keys"]?.arrayValue?.compactMap(\.stringValue), ["KEY-DURABLE-1"], "the delivered key survived the crash")
        XCTAssertEqual(try product(node, "p-durable")["stock"]?.intValue, 1)
    }

    func testASecondGatewayOnTheSameFolderRefusesAndNamesTheFirst() throws {
        let node = try startOwn()
        let firstPid = try XCTUnwrap(node.process?.processIdentifier)

        let second = try runGateway(["serve", "--dev", "--port", String(freePort()), "--node", "second"], env: [:])
        let message = second.output
        XCTAssertNotEqual(second.status, 0, "the second gateway must refuse, not serve")
        XCTAssertTrue(message.contains("in use by another gateway (pid \(firstPid))"), message)
        XCTAssertTrue(message.contains("--redis"), "tells the user how to share one Redis: \(message)")
        XCTAssertEqual(serversOnFolder().count, 1, "the refused gateway started no redis-server")
        XCTAssertEqual(try node.http("GET", "/readyz").status, 200, "the first gateway is untouched")
    }

    func testAnOrphanOnTheFolderIsShutDownNotDoubled() throws {
        // An orphan as an older gateway without PDEATHSIG would leave it: same folder, AOF on, no pidfile.
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let orphan = try RedisServer(dir: URL(fileURLWithPath: dataDir), logURL: URL(fileURLWithPath: "\(dataDir)/orphan.log"))
        orphan.removesFolder = false
        let orphanPid = try XCTUnwrap(orphan.pid)
        _ = try rawExchange(port: orphan.port, Array("SET orphan-marker kept\r\n".utf8), readUntilClose: false)

        let node = try startOwn()
        let servers = serversOnFolder()
        XCTAssertEqual(servers.count, 1, "never two servers on one folder")
        XCTAssertFalse(servers.contains(orphanPid), "the orphan was shut down")
        XCTAssertTrue(node.log().contains("pid \(orphanPid)"), "the node says what it shut down")
        // SIGTERM flushed the orphan's AOF, and the new server loaded it.
        let reply = try rawExchange(port: try privatePort(node), Array("GET orphan-marker\r\n".utf8), readUntilClose: false)
        XCTAssertEqual(String(decoding: reply, as: UTF8.self), "$4\r\nkept\r\n")
    }

    func testTheNodeStopsItsRedisOnAGracefulStop() throws {
        let node = try startOwn()
        XCTAssertEqual(serversOnFolder().count, 1)
        node.signal(SIGTERM)
        XCTAssertEqual(node.waitExit(timeout: 15), 0)
        XCTAssertTrue(serversOnFolder().isEmpty)
    }

    // MARK: --dev prints its secrets, so it runs on loopback and with its own secrets only

    /// Runs the gateway on the test's data folder for at most 10 s (a gateway that should have
    /// refused to start is stopped) and returns its exit status and everything it printed.
    private func runGateway(_ arguments: [String], env extraEnv: [String: String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = executable("gateway")
        p.arguments = arguments + ["--config", GatewayNodeProcess.configPath]
        var env = ProcessInfo.processInfo.environment
        env["GATEWAY_REDIS_DATA_DIR"] = dataDir
        for (k, v) in extraEnv { env[k] = v }
        p.environment = env
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("gw-run-\(UUID().uuidString.prefix(8)).log")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: out) }
        let handle = try FileHandle(forWritingTo: out)
        p.standardError = handle
        p.standardOutput = handle
        try p.run()
        let deadline = Date().addingTimeInterval(10)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        return (p.terminationStatus, (try? String(contentsOf: out, encoding: .utf8)) ?? "")
    }

    private func devRun(_ extra: [String], env: [String: String]) throws -> (status: Int32, output: String) {
        try runGateway(["serve", "--dev", "--port", String(freePort()), "--redis", "redis://127.0.0.1:\(redis.port)"] + extra, env: env)
    }

    /// An all-zero `keys.secret` would seal card keys under a key anyone can guess.
    func testAnAllZeroKeysSecretRefusesToStart() throws {
        let env = ["GATEWAY_AUTH_SECRET": TestSecrets.auth, "GATEWAY_API_SHOP_KEY": TestSecrets.shopKey,
                   "GATEWAY_PAYMENTS_SECRET": TestSecrets.payments, "GATEWAY_KEYS_SECRET": String(repeating: "0", count: 64)]
        let run = try runGateway(["serve", "--port", String(freePort()), "--redis", "redis://127.0.0.1:\(redis.port)"], env: env)
        XCTAssertNotEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("keys.secret is all zeros"), run.output)
        XCTAssertFalse(run.output.contains("listening"), run.output)
    }

    func testDevRefusesANonLoopbackHost() throws {
        for host in ["0.0.0.0", "::", "192.0.2.10", "example.com"] {
            let run = try devRun(["--host", host], env: [:])
            XCTAssertNotEqual(run.status, 0, host)
            XCTAssertTrue(run.output.contains("loopback only"), run.output)
        }
    }

    func testDevRefusesSecretsItDidNotMakeAndNeverPrintsThem() throws {
        let production = "prod-secret-\(UUID().uuidString)"
        for variable in ["GATEWAY_AUTH_SECRET", "GATEWAY_API_SHOP_KEY", "GATEWAY_PAYMENTS_SECRET", "GATEWAY_API_MERCHANT_KEYS"] {
            let value = variable == "GATEWAY_API_MERCHANT_KEYS" ? "m1:\(production)" : production
            let run = try devRun([], env: [variable: value])
            XCTAssertNotEqual(run.status, 0, variable)
            XCTAssertTrue(run.output.contains(variable), run.output)
            XCTAssertFalse(run.output.contains(production), "the secret itself is never printed")
        }
    }
}
