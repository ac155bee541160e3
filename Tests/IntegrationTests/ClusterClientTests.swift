import Foundation
import GatewayClient
import GatewayProtocol
import GatewayRedis
import XCTest

/// Gateway nodes on a real Redis Cluster (3 masters, 3 replicas): slot routing, sharded
/// pub/sub per master, a slot moved under the nodes (MOVED and Redis' own `sunsubscribe`),
/// and a master SIGKILLed until its replica is promoted.
final class ClusterClientTests: IntegrationCase {
    var cluster: RedisClusterLauncher!

    override func setUpWithError() throws {
        cluster = try RedisClusterLauncher(dir: TestRedis.clusterFolder("client"))
    }

    override func tearDown() {
        super.tearDown()
        cluster?.stop()
        cluster = nil
    }

    func startClusterNode(_ name: String, url: String? = nil, waitReady: Bool = true) throws -> GatewayNodeProcess {
        let node = try GatewayNodeProcess(name: name, redisPort: 0, redisURL: url ?? cluster.url, waitReady: waitReady)
        nodes.append(node)
        return node
    }

    /// One user per master: `user:<u>`'s slot is on a different master for each.
    func usersOnEachMaster() throws -> [(user: String, master: RedisClusterLauncher.Node)] {
        var found: [(String, RedisClusterLauncher.Node)] = []
        for i in 0..<200 where found.count < 3 {
            let user = "cu\(i)"
            let master = try cluster.master(ofSlot: HashSlot.of("user:\(user)"))
            if !found.contains(where: { $0.1.port == master.port }) { found.append((user, master)) }
        }
        XCTAssertEqual(found.count, 3)
        return found
    }

    /// The `n`s of the next `count` test.note pushes on `session`.
    func notes(_ session: GatewaySession, _ count: Int, timeout: Double = 15) -> [Int64] {
        var got: [Int64] = []
        let deadline = Date().addingTimeInterval(timeout)
        while got.count < count, Date() < deadline {
            guard let push = self.push(session, "test.note", timeout: deadline.timeIntervalSinceNow) else { break }
            got.append(push["data"]?["n"]?.intValue ?? -1)
        }
        return got
    }

    /// Migrates `slot` the way `redis-cli --cluster reshard` does; `during` runs while the slot
    /// is MIGRATING on `source` and IMPORTING on `target`, its keys already moved.
    func moveSlot(_ slot: Int, from source: RedisClusterLauncher.Node, to target: RedisClusterLauncher.Node, during: () -> Void) {
        cluster.cli(["CLUSTER", "SETSLOT", String(slot), "IMPORTING", source.id], port: target.port)
        cluster.cli(["CLUSTER", "SETSLOT", String(slot), "MIGRATING", target.id], port: source.port)
        let keys = cluster.cli(["CLUSTER", "GETKEYSINSLOT", String(slot), "100"], port: source.port)
            .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        if !keys.isEmpty {
            let migrated = cluster.cli(["MIGRATE", "127.0.0.1", String(target.port), "", "0", "5000", "KEYS"] + keys, port: source.port)
            XCTAssertTrue(migrated.contains("OK"), migrated)
        }
        during()
        for node in (try? cluster.nodes()) ?? [] where node.role == .master {
            cluster.cli(["CLUSTER", "SETSLOT", String(slot), "NODE", target.id], port: node.port)
        }
        XCTAssertEqual(try? cluster.master(ofSlot: slot).port, target.port)
    }

    /// A publication written straight into the channel's stream on `port` and announced
    /// there, in the publish script's format (ASKING first while its slot is migrating).
    func publishDirect(_ port: Int, user: String, n: Int, asking: Bool = false) -> Int? {
        let script = """
            local epoch = redis.call('HGET', KEYS[1], 'epoch')
            local off = redis.call('HINCRBY', KEYS[1], 'offset', 1)
            local push = '{"push":"test.note","channel":"' .. ARGV[1] .. '","offset":' .. off .. ',"epoch":"' .. epoch ..
              '","ts":1,"data":{"n":' .. ARGV[2] .. '}}'
            redis.call('XADD', KEYS[2], '0-' .. off, 'd', push)
            redis.call('SPUBLISH', ARGV[3], off .. ' ' .. epoch .. ' ' .. push)
            return off
            """
        // The shard channel is not a key: while the slot is importing, a key that does not
        // exist would make the script TRYAGAIN.
        let eval = ["EVAL", script, "2", "gw:{user:\(user)}:meta", "gw:{user:\(user)}:log", "user:\(user)", String(n), "gw:{user:\(user)}"]
        // On one connection, so ASKING applies to the EVAL.
        let replies = Result { try RedisProbe(port: port, password: cluster.password).pipeline((asking ? [["ASKING"]] : []) + [eval]) }
        let offset = (try? replies.get())?.last?.int
        XCTAssertNotNil(offset, "\(replies)")
        return offset.map { Int($0) }
    }

    func testChannelsOnEveryMasterRoutingAMovedSlotAndAFailover() throws {
        let n1 = try startClusterNode("c1")
        let n2 = try startClusterNode("c2")
        XCTAssertEqual(try n1.http("GET", "/readyz").status, 200)
        let users = try usersOnEachMaster()

        // Every user has a tab on each node; publications alternate between the nodes.
        var sessions: [String: [GatewaySession]] = [:]
        for (user, _) in users {
            sessions[user] = [try open(n1, user).0, try open(n2, user).0]
        }
        for n in 1...6 {
            for (user, _) in users { try publish(n % 2 == 0 ? n1 : n2, "user:\(user)", n) }
        }
        for (user, master) in users {
            for s in sessions[user]! { XCTAssertEqual(notes(s, 6), Array(1...6), "user:\(user) on \(master.port)") }
            // Routed by slot: the channel's stream lives on the master that owns its slot.
            XCTAssertEqual(cluster.cli(["EXISTS", "gw:{user:\(user)}:log"], port: master.port).trimmingCharacters(in: .whitespacesAndNewlines), "1")
        }

        // Move the first user's slot to another master under the running nodes. A publication
        // made on the new owner while the slot is migrating (ASKING) reaches no node by pub/sub:
        // their subscriptions are still on the old owner. Once the slot is handed over, Redis
        // drops those subscriptions (`sunsubscribe`); each node subscribes on the new owner and
        // fills the gap from the stream, with no later publication to reveal it.
        let (moving, source) = users[0]
        let target = users[1].master
        let slot = HashSlot.of("user:\(moving)")
        moveSlot(slot, from: source, to: target) {
            XCTAssertEqual(publishDirect(target.port, user: moving, n: 7, asking: true), 7)
        }
        for s in sessions[moving]! { XCTAssertEqual(notes(s, 1), [7], "the publication made during the migration") }
        for n in 8...10 { try publish(n % 2 == 0 ? n1 : n2, "user:\(moving)", n) }
        for s in sessions[moving]! { XCTAssertEqual(notes(s, 3), Array(8...10), "after the slot moved") }
        XCTAssertEqual(cluster.cli(["EXISTS", "gw:{user:\(moving)}:log"], port: target.port).trimmingCharacters(in: .whitespacesAndNewlines), "1")

        // A slot no node subscribes to moves too: the nodes learn it only from MOVED, on the
        // subscribe (SSUBSCRIBE refused) and on the read of a new connection's personal channel.
        let quiet = "quiet-\(slot)"
        let quietSlot = HashSlot.of("user:\(quiet)")
        let quietOwner = try cluster.master(ofSlot: quietSlot)
        XCTAssertEqual(try publish(n1, "user:\(quiet)", 1), 1)
        let quietTarget = try XCTUnwrap(users.map(\.master).first { $0.port != quietOwner.port })
        moveSlot(quietSlot, from: quietOwner, to: quietTarget) {}
        let (quietSession, hello) = try open(n1, quiet)
        XCTAssertEqual(hello["ok"]?["offset"]?.intValue, 1, "\(hello)")
        XCTAssertEqual(publishDirect(quietTarget.port, user: quiet, n: 2), 2)
        XCTAssertEqual(notes(quietSession, 1), [2])

        // SIGKILL the master of the third user: its slots answer 503 (or /readyz says 503)
        // until the replica is promoted, then publications flow again to the same sessions.
        let (victimUser, victim) = users[2]
        cluster.kill(port: victim.port)
        var published: [Int64] = []
        var sawUnavailable = false
        var n: Int64 = 11
        let deadline = Date().addingTimeInterval(30)
        while published.count < 8, Date() < deadline {
            let node = n % 2 == 0 ? n1 : n2
            if (try? node.http("GET", "/readyz"))?.status == 503 { sawUnavailable = true }
            let r = try node.http("POST", "/api/v1/publish", body: #"{"channel":"user:\#(victimUser)","type":"test.note","data":{"n":\#(n)}}"#)
            if r.status == 200 {
                published.append(n)
            } else {
                XCTAssertEqual(r.status, 503, r.text)
                XCTAssertEqual(r.json?["error"]?["code"]?.stringValue, "unavailable", r.text)
                sawUnavailable = true
                usleep(100_000)
            }
            n += 1
        }
        XCTAssertTrue(sawUnavailable, "the lost master never showed as unavailable")
        XCTAssertEqual(published.count, 8, "publishing never recovered after the failover")
        XCTAssertNotEqual(try? cluster.master(ofSlot: HashSlot.of("user:\(victimUser)")).port, victim.port)
        try waitUntil(timeout: 15, "both nodes ready again") {
            [n1, n2].allSatisfy { (try? $0.http("GET", "/readyz"))?.status == 200 }
        }
        // Every publication that was accepted reaches every tab once, in order: those made
        // before a node had its subscription back are filled in from the stream.
        for s in sessions[victimUser]! { XCTAssertEqual(notes(s, published.count), published, "after the failover") }
        // The other masters' channels still flow.
        for (user, _) in users where user != victimUser {
            try publish(n1, "user:\(user)", 100)
            for s in sessions[user]! { XCTAssertEqual(notes(s, 1), [100]) }
        }
        for s in sessions.values.joined() { XCTAssertNil(push(s, "test.note", timeout: 0.3), "a push came twice") }
    }

    /// AUTH on every master: with the password the nodes are ready and publications flow on
    /// every master; with a wrong one the node stays not ready and says why (never the password).
    func testPasswordIsSentToEveryMaster() throws {
        cluster.stop()
        cluster = try RedisClusterLauncher(dir: TestRedis.clusterFolder("client-auth"), password: "cluster-pass")
        let good = try startClusterNode("a1")
        let users = try usersOnEachMaster()
        for (user, _) in users {
            let (session, _) = try open(good, user)
            XCTAssertEqual(try publish(good, "user:\(user)", 1), 1)
            XCTAssertEqual(notes(session, 1), [1])
        }
        let bad = try startClusterNode("a2", url: cluster.url(password: "wrong-pass"), waitReady: false)
        try waitUntil(timeout: 10, "the refusal in the log") { bad.log().contains("redis authentication failed (WRONGPASS") }
        XCTAssertEqual(try bad.http("GET", "/readyz").status, 503)
        XCTAssertFalse(bad.log().contains("wrong-pass"), bad.log())
    }
}
