import Foundation
import GatewayClient
import GatewayProtocol
import XCTest

extension RedisServer {
    /// A redis-server with `DEBUG`, a unix socket and the test's own arguments (passwords, ACL
    /// users, replication, eviction policy), restartable on the same port.
    static func custom(_ arguments: [String] = [], auth: [String] = []) throws -> RedisServer {
        try RedisServer(debug: true, extra: arguments, auth: auth)
    }
}

extension GatewayNodeProcess {
    var pid: Int32 { process?.processIdentifier ?? -1 }

    /// Open descriptors of the node process.
    func descriptorCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    /// User plus system CPU time the node process has used, in seconds.
    func cpuSeconds() -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return -1 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After "pid (comm)": state is field 3, utime 14, stime 15.
        guard fields.count > 12, let utime = Double(fields[11]), let stime = Double(fields[12]) else { return -1 }
        return (utime + stime) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// A flag a loader thread polls.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

/// The node's link to Redis: connection faults (killed connections, restarts, a stalled
/// server), credentials, databases, unix sockets, replica durability, the eviction policy
/// check and the TTL of every transient key.
final class RedisLinkTests: IntegrationCase {
    /// These tests start their own servers (`RedisServer.custom`), not the harness' default one.
    override func setUpWithError() throws {
        try requireSingleRedis("the link to one redis-server: its faults, credentials, unix socket and policy")
    }

    private func startNode(_ name: String, on server: RedisServer, env: [String: String] = [:], url: String? = nil,
                           waitReady: Bool = true) throws -> GatewayNodeProcess {
        let node = try GatewayNodeProcess(name: name, redisPort: server.port, env: env, redisURL: url, waitReady: waitReady)
        nodes.append(node)
        return node
    }

    private func status(_ node: GatewayNodeProcess, order id: String) -> String? {
        (try? node.http("GET", "/api/v1/orders/\(id)"))?.json?["status"]?.stringValue
    }

    // MARK: Connection faults

    /// Runs `fault` against a node with pushes flowing, a loader publishing over HTTP and the
    /// timer sweep running, then checks that the node is whole again: ready, pushes flow,
    /// an unpaid order is still canceled by its timer, descriptors back to where they were,
    /// and the loop idle (not spinning on a dead descriptor).
    @discardableResult
    private func assertRecovers(from what: String, env: [String: String] = [:],
                                _ fault: (RedisServer, GatewayNodeProcess, GatewaySession) throws -> Void) throws -> (GatewayNodeProcess, RedisServer) {
        let server = try RedisServer.custom()
        let node = try startNode("n1", on: server, env: ["GATEWAY_ORDERS_TTL_S": "1"].merging(env) { $1 })
        try createProduct(node, "p1")
        _ = try uploadKeys(node, "p1", ["K-1", "K-2", "K-3"])
        let (session, _) = try open(node, "u1")
        XCTAssertNotNil(try session.command("subscribe", [("channel", .string("product:p1"))])["ok"])
        // Let HTTP sockets of the set-up close before counting.
        usleep(1_500_000)
        let baseline = node.descriptorCount()
        XCTAssertGreaterThan(baseline, 0)

        let stop = StopFlag()
        let loaderDone = DispatchSemaphore(value: 0)
        let port = node.port
        Thread.detachNewThread {
            while !stop.isSet {
                _ = try? httpRequest(port: port, "POST", "/api/v1/publish",
                                     body: Array(#"{"channel":"product:p1","type":"load.note","data":{}}"#.utf8), key: TestSecrets.shopKey)
            }
            loaderDone.signal()
        }
        usleep(300_000)
        try fault(server, node, session)
        try waitUntil(timeout: 20, "\(what): ready again") { (try? node.http("GET", "/readyz"))?.status == 200 }
        usleep(500_000)
        stop.set()
        loaderDone.wait()

        // Pushes flow again on the connection that lived through the fault.
        try publish(node, "product:p1", 99, type: "after.fault")
        XCTAssertNotNil(push(session, "after.fault", timeout: 10), "\(what): pushes flow again")
        // The old connections are closed: no descriptor stays behind.
        usleep(500_000)
        do {
            try waitUntil(timeout: 10, "\(what): descriptors back to \(baseline)") { node.descriptorCount() <= baseline }
        } catch {
            XCTFail("\(what): \(node.descriptorCount()) descriptors open, \(baseline) before the fault")
        }
        // And the loop is idle, not spinning on a descriptor nobody reads.
        let before = node.cpuSeconds()
        usleep(2_000_000)
        let used = node.cpuSeconds() - before
        XCTAssertLessThan(used, 0.3, "\(what): the idle node used \(used) s of CPU in 2 s")
        // The timer sweep still runs: an unpaid order is canceled after orders.ttl_s.
        let created = try order(node, #"{"buyer":"u3","product":"p1"}"#)
        let id = try XCTUnwrap(created["id"]?.stringValue)
        try waitUntil(timeout: 15, "\(what): unpaid order canceled by its timer") { status(node, order: id) == "canceled" }
        XCTAssertTrue(node.process?.isRunning ?? false, "\(what): the node is still running")
        // The server too: it stops when the caller lets go of it.
        return (node, server)
    }

    /// The pub/sub connection dies while commands (the timer sweep, publishes) wait for
    /// replies on the command connection: Redis sleeps, kills pub/sub clients, sleeps again.
    func testPubSubConnectionKilledWhileCommandsPending() throws {
        try assertRecovers(from: "CLIENT KILL TYPE pubsub") { server, _, _ in
            let out = server.cli([], input: "MULTI\nDEBUG SLEEP 0.5\nCLIENT KILL TYPE pubsub\nDEBUG SLEEP 0.5\nEXEC\n")
            XCTAssertTrue(out.contains("QUEUED"), out)
        }
    }

    func testCommandConnectionKilledWhileCommandsPending() throws {
        try assertRecovers(from: "CLIENT KILL TYPE normal") { server, _, _ in
            let out = server.cli([], input: "MULTI\nDEBUG SLEEP 0.5\nCLIENT KILL TYPE normal SKIPME yes\nDEBUG SLEEP 0.5\nEXEC\n")
            XCTAssertTrue(out.contains("QUEUED"), out)
        }
    }

    func testRedisShutdownAndRestartOnTheSamePort() throws {
        try assertRecovers(from: "SHUTDOWN NOSAVE and restart") { server, _, _ in
            server.cli(["SHUTDOWN", "NOSAVE"])
            server.waitExited()
            usleep(500_000)
            try server.start()
        }
    }

    /// A server busy for 2 s is slow, not lost: with the default `redis.timeout_s` (10) the
    /// stall watchdog must not drop the link.
    func testRedisStalledByDebugSleep() throws {
        let (node, server) = try assertRecovers(from: "DEBUG SLEEP 2") { server, _, _ in
            XCTAssertEqual(server.cli(["DEBUG", "SLEEP", "2"]), "OK")
        }
        XCTAssertFalse(node.log().contains("redis lost"), "a 2 s stall under a 10 s limit is no reconnect: \(node.log())")
        withExtendedLifetime(server) {}
    }

    /// A server that stops answering with its sockets open (SIGSTOP, a network black hole):
    /// past `redis.timeout_s` the node drops the link (pending commands answered
    /// `unavailable`, /readyz 503, one log line naming the stall) and comes back after it.
    func testRedisFrozenBySigstopPastTheTimeout() throws {
        try assertRecovers(from: "SIGSTOP past redis.timeout_s", env: ["GATEWAY_REDIS_TIMEOUT_S": "2"]) { server, node, session in
            let pid = try XCTUnwrap(server.pid)
            XCTAssertEqual(kill(pid, SIGSTOP), 0)
            defer { kill(pid, SIGCONT) }
            let stoppedAt = Date()
            // A command waiting for Redis, and an HTTP call in flight.
            session.sendRawText(#"{"id":900,"op":"history","channel":"product:p1"}"#)
            let httpStatus = Locked<Int?>(nil)
            let httpDone = DispatchSemaphore(value: 0)
            let port = node.port
            Thread.detachNewThread {
                let r = try? httpRequest(port: port, "GET", "/api/v1/products/p1", key: TestSecrets.shopKey)
                httpStatus.mutate { $0 = r?.status }
                httpDone.signal()
            }
            let reply = session.reply(id: 900, timeout: 12)
            XCTAssertEqual(reply?["error"]?["code"]?.stringValue, "unavailable", "the pending command fails: \(String(describing: reply))")
            XCTAssertEqual(reply?["error"]?["temporary"]?.boolValue, true)
            try waitUntil(timeout: 12, "not ready while Redis is frozen") { (try? node.http("GET", "/readyz"))?.status == 503 }
            // 2 s limit, a watchdog tick and slack for a loaded machine: far below the 10 s the
            // HTTP call would otherwise wait.
            XCTAssertLessThan(Date().timeIntervalSince(stoppedAt), 8, "the stall is noticed about redis.timeout_s after it began")
            XCTAssertEqual(httpDone.wait(timeout: .now() + 12), .success, "the HTTP call is answered")
            XCTAssertEqual(httpStatus.value, 503, "the HTTP call in flight gets 503")
            // Still frozen a while longer: reconnects get a socket but no handshake reply, and
            // the watchdog drops those too (said once). (CPU is checked once idle again: the
            // loader's requests, answered 503 at once now, keep the node busy meanwhile.)
            try waitUntil(timeout: 15, "a stalled reconnect handshake dropped too") {
                node.log().contains("not usable: redis stopped answering")
            }
            XCTAssertEqual(try node.http("GET", "/readyz").status, 503)
            let log = node.log()
            XCTAssertEqual(log.components(separatedBy: "redis lost").count - 1, 1, log)
            XCTAssertTrue(log.contains("redis lost: redis stopped answering"), log)
            XCTAssertEqual(kill(pid, SIGCONT), 0)
        }
    }

    // MARK: redis.url

    private static let aclServer = ["--user", "alice", "on", ">alice-pw", "~*", "&*", "+@all", "--requirepass", "default-pw"]

    /// An ACL user with a password and db 3: AUTH and SELECT on both connections, keys in db 3.
    func testACLUserPasswordAndDatabase() throws {
        let server = try RedisServer.custom(Self.aclServer, auth: ["--user", "alice", "--pass", "alice-pw"])
        let node = try startNode("n1", on: server, url: "redis://alice:alice-pw@127.0.0.1:\(server.port)/3")
        try createProduct(node, "p1")
        let (session, _) = try open(node, "u1")
        XCTAssertNotNil(try session.command("subscribe", [("channel", .string("product:p1"))])["ok"])
        try publish(node, "product:p1", 1)
        XCTAssertEqual(session.nextPush()?["offset"]?.intValue, 1, "pub/sub authenticated too")
        XCTAssertEqual(server.cli(["EXISTS", "gw:{product:p1}:info"], db: 3), "1", "keys land in db 3")
        XCTAssertEqual(server.cli(["EXISTS", "gw:{product:p1}:info"], db: 0), "0", "nothing in db 0")
        XCTAssertFalse(node.log().contains("alice-pw"), "the password is never logged")

        // The default user by password alone, same db: sees the same product.
        let other = try startNode("n2", on: server, url: "redis://:default-pw@127.0.0.1:\(server.port)/3")
        XCTAssertEqual(try product(other, "p1")["id"]?.stringValue, "p1")

        // Credentials are sent again after a reconnect.
        server.cli(["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        usleep(300_000)
        try waitUntil(timeout: 15, "ready after the kill") { (try? node.http("GET", "/readyz"))?.status == 200 }
        try createProduct(node, "p2")
        XCTAssertEqual(server.cli(["EXISTS", "gw:{product:p2}:info"], db: 3), "1")
    }

    /// A wrong password: /readyz 503 with a clear log line, the process keeps running and retrying.
    func testWrongPasswordIsNotReadyAndSaysWhy() throws {
        let server = try RedisServer.custom(Self.aclServer, auth: ["--user", "alice", "--pass", "alice-pw"])
        let node = try startNode("n1", on: server, url: "redis://alice:not-the-pw@127.0.0.1:\(server.port)", waitReady: false)
        try waitUntil(timeout: 15, "the node answers HTTP") { (try? node.http("GET", "/healthz")) != nil }
        usleep(3_000_000)
        XCTAssertEqual(try node.http("GET", "/readyz").status, 503)
        XCTAssertTrue(node.process?.isRunning ?? false, "no crash")
        let log = node.log()
        XCTAssertTrue(log.contains("authentication failed"), log)
        XCTAssertFalse(log.contains("not-the-pw"), "the password is never logged")
    }

    func testUnixSocketWithDatabase() throws {
        let server = try RedisServer.custom()
        let node = try startNode("n1", on: server, url: "unix://\(server.socketPath)?db=2")
        try createProduct(node, "p1")
        let (session, _) = try open(node, "u1")
        XCTAssertNotNil(try session.command("subscribe", [("channel", .string("product:p1"))])["ok"])
        try publish(node, "product:p1", 1)
        XCTAssertEqual(session.nextPush()?["offset"]?.intValue, 1)
        XCTAssertEqual(server.cli(["EXISTS", "gw:{product:p1}:info"], db: 2), "1")
    }

    // MARK: redis.durability

    /// `replicas:1`: money writes are answered once a replica has them, and 503 `unavailable`
    /// (temporary) when no replica acknowledges in time.
    func testReplicaDurability() throws {
        let master = try RedisServer.custom()
        let replica = try RedisServer.custom(["--replicaof", "127.0.0.1", String(master.port)])
        try waitUntil(timeout: 15, "replica in sync") {
            master.cli(["INFO", "replication"]).contains("state=online")
        }
        let node = try startNode("n1", on: master, env: ["GATEWAY_REDIS_DURABILITY": "replicas:1"])
        try createProduct(node, "p1")
        _ = try uploadKeys(node, "p1", ["K-1", "K-2", "K-3"])
        let bought = try buy(node, "u1", "p1")
        XCTAssertEqual(bought["status"]?.stringValue, "delivered")
        // An order's key carries the slot tag in its id (`o-<T>-<random>`): `gw:{T}:order:<id>`.
        let boughtID = try XCTUnwrap(bought["id"]?.stringValue)
        XCTAssertEqual(replica.cli(["HGET", "gw:{\(boughtID.split(separator: "-")[1])}:order:\(boughtID)", "status"]), "delivered",
                       "the replica has the delivery")

        // Made while the replica is there: an order with an idempotency key, and an unpaid one.
        let keyed = try order(node, #"{"buyer":"u3","product":"p1","idempotency_key":"k-1"}"#)
        let unpaid = try order(node, #"{"buyer":"u4","product":"p1"}"#)
        let notify = notifyBody(try pay(node, unpaid["id"]!.stringValue!, payer: "u4"))

        replica.stop()
        try waitUntil(timeout: 15, "replica gone") { master.cli(["INFO", "replication"]).contains("connected_slaves:0") }
        let r = try node.http("POST", "/api/v1/orders", body: #"{"buyer":"u2","product":"p1"}"#)
        XCTAssertEqual(r.status, 503, r.text)
        XCTAssertEqual(r.json?["code"]?.stringValue ?? r.json?["error"]?["code"]?.stringValue, "unavailable", r.text)
        let keys = try node.http("POST", "/api/v1/products/p1/keys", body: #"{"keys":["K-9"]}"#)
        XCTAssertEqual(keys.status, 503, keys.text)
        // A repeat is no shortcut: the write it repeats is not on any replica either.
        XCTAssertEqual(try signedNotify(node, notify).status, 503, "the first notify")
        XCTAssertEqual(try signedNotify(node, notify).status, 503, "its retry, already applied on the primary")
        let again = try node.http("POST", "/api/v1/orders", body: #"{"buyer":"u3","product":"p1","idempotency_key":"k-1"}"#)
        XCTAssertEqual(again.status, 503, "the idempotent repeat of \(keyed["id"]?.stringValue ?? ""): \(again.text)")
    }

    // MARK: maxmemory-policy

    func testRefusesToStartUnlessNoeviction() throws {
        let server = try RedisServer.custom(["--maxmemory-policy", "allkeys-lru"])
        let node = try startNode("n1", on: server, waitReady: false)
        let status = node.waitExit(timeout: 20)
        XCTAssertNotNil(status, "the node stopped")
        XCTAssertNotEqual(status ?? 0, 0, "with a non-zero status")
        XCTAssertTrue(node.log().contains("maxmemory-policy"), node.log())

        // CONFIG renamed away: a warning, and the node runs.
        let hidden = try RedisServer.custom(["--rename-command", "CONFIG", ""])
        let ok = try startNode("n2", on: hidden)
        XCTAssertTrue(ok.log().contains("cannot check maxmemory-policy"), ok.log())
    }

    /// After a reconnect (a failover to a misconfigured server) the policy is checked again:
    /// not `noeviction` keeps the started node running and not ready until it is fixed.
    func testEvictionPolicyCheckedAgainAfterReconnect() throws {
        let server = try RedisServer.custom()
        let node = try startNode("n1", on: server)
        try createProduct(node, "p1")
        let (session, _) = try open(node, "u1")
        XCTAssertEqual(server.cli(["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]), "OK")
        server.cli(["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        try waitUntil(timeout: 15, "not ready on a server that may evict") { (try? node.http("GET", "/readyz"))?.status == 503 }
        // Stays so (the handshake is retried, and refused again), and says why.
        usleep(2_000_000)
        XCTAssertEqual(try node.http("GET", "/readyz").status, 503)
        let reply = try session.command("history", [("channel", .string("product:p1"))])
        XCTAssertEqual(reply["error"]?["code"]?.stringValue, "unavailable", "\(reply)")
        XCTAssertTrue(node.process?.isRunning ?? false, "a started node does not exit")
        XCTAssertTrue(node.log().contains("maxmemory-policy is allkeys-lru"), node.log())

        XCTAssertEqual(server.cli(["CONFIG", "SET", "maxmemory-policy", "noeviction"]), "OK")
        try waitUntil(timeout: 15, "ready again once fixed") { (try? node.http("GET", "/readyz"))?.status == 200 }
        XCTAssertEqual(try product(node, "p1")["id"]?.stringValue, "p1")
    }

    // MARK: Key hygiene

    /// Every transient key gets a TTL (or goes away with what it belongs to): idempotency
    /// keys, gift and pay codes, mutes, watches, presence of a dead node.
    func testTransientKeysExpire() throws {
        let server = try RedisServer.custom()
        let env = ["GATEWAY_ORDERS_TTL_S": "1", "GATEWAY_GIFTS_TTL_S": "1", "GATEWAY_FRIENDPAY_TTL_S": "1",
                   "GATEWAY_PAYMENTS_GRACE_S": "1", "GATEWAY_ALERTS_WATCH_TTL_S": "2", "GATEWAY_GROUPS_PRESENCE_TTL_S": "3"]
        let a = try startNode("n1", on: server, env: env)
        let b = try startNode("n2", on: server, env: env)
        try createProduct(a, "p1")
        _ = try uploadKeys(a, "p1", (0..<6).map { "K-\($0)" })
        try buy(a, "u3", "p1")
        _ = try order(a, #"{"buyer":"u1","product":"p1","idempotency_key":"idem-1"}"#)
        let gift = try order(a, #"{"buyer":"u1","product":"p1","kind":"gift","gift":{"to":"u2"}}"#)
        let giftPayment = try pay(a, gift["id"]!.stringValue!, payer: "u1")
        XCTAssertEqual(try signedNotify(a, notifyBody(giftPayment)).status, 200)
        _ = try order(a, #"{"buyer":"u1","product":"p1","kind":"friendpay","friendpay":{"to":"u2"}}"#)

        let (merchant, _) = try open(a, "m1", role: .merchant, products: ["p1"])
        XCTAssertNotNil(try merchant.command("moderate", [("channel", .string("group:p1")), ("action", .string("mute")),
                                                         ("user", .string("u3")), ("seconds", .int(2))])["ok"])
        let (watcher, _) = try open(a, "u1")
        XCTAssertNotNil(try watcher.command("watch", [("product", .string("p1"))])["ok"])
        // u3 is present in the group through n2, then n2 dies without cleaning up.
        let (present, _) = try open(b, "u3")
        XCTAssertNotNil(try present.command("subscribe", [("channel", .string("group:p1"))])["ok"])
        usleep(300_000)
        b.signal(SIGKILL)
        _ = b.waitExit()

        let transient = [":idem/", ":giftcode:", ":paycode:", ":online", ":onodes", ":on:", ":mute", ":watches", ":watchers", ":watch"]
        let keys = server.cli(["--scan"]).split(separator: "\n").map(String.init)
        var seen: Set<String> = []
        for key in keys {
            guard let kind = transient.first(where: { key.contains($0) }) else { continue }
            seen.insert(kind)
            let ttl = server.cli(["PTTL", key])
            XCTAssertNotEqual(ttl, "-1", "\(key) never expires")
        }
        for kind in [":idem/", ":giftcode:", ":paycode:", ":online", ":onodes", ":on:", ":mute", ":watches"] {
            XCTAssertTrue(seen.contains(kind), "a \(kind) key was written (\(keys))")
        }

        // Time passes: the short-lived ones are gone (the mute, the watch), and the dead node's
        // user drops out of presence (presence keys themselves live a day past the last renewal).
        try waitUntil(timeout: 15, "mutes and watches gone") {
            server.cli(["--scan"]).split(separator: "\n").allSatisfy { !$0.contains(":mute") && !$0.contains(":watch") }
        }
        try waitUntil(timeout: 15, "the dead node's user out of presence") {
            (try? merchant.command("presence", [("channel", .string("group:p1"))]))?["ok"]?["online"]?.intValue == 0
        }
        XCTAssertNotNil(try watcher.command("watches")["ok"])
    }
}
