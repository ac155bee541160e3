import Foundation
import GatewayRedis
import XCTest

/// The test cluster itself (`RedisClusterLauncher`): no gateway involved, so it runs in every
/// mode and proves the cluster stage's machinery before the gateway speaks cluster.
final class ClusterLauncherTests: XCTestCase {
    private func launch() throws -> RedisClusterLauncher {
        let started = Date()
        let cluster = try RedisClusterLauncher(dir: TestRedis.clusterFolder("launcher"))
        print("cluster of 3 masters and 3 replicas up in \(String(format: "%.1f", Date().timeIntervalSince(started))) s: \(cluster.url)")
        return cluster
    }

    func testThreeMastersWithAReplicaEachServeEveryKeyOnItsOwner() throws {
        let cluster = try launch()
        defer { cluster.stop() }
        XCTAssertEqual(cluster.url.split(separator: ",").count, 6)
        XCTAssertTrue(cluster.url.hasPrefix("redis+cluster://127.0.0.1:"))
        let nodes = try cluster.nodes()
        let masters = nodes.filter { $0.role == .master }
        let replicas = nodes.filter { $0.role == .replica }
        XCTAssertEqual(masters.count, 3, "\(nodes)")
        XCTAssertEqual(replicas.count, 3, "\(nodes)")
        XCTAssertEqual(masters.flatMap(\.slots).map(\.count).reduce(0, +), HashSlot.count, "every slot served once")
        XCTAssertEqual(Set(replicas.compactMap(\.masterID)), Set(masters.map(\.id)), "one replica for each master")

        // The local slot function agrees with the server's, hash tags included.
        for key in ["a", "gw:{product:p1}:info", "gw:{user:u1}:log", "{}x", "x{}{y}", "{user:u1", "gw:{product:p1}"] {
            let reply = try RedisProbe.call(port: masters[0].port, ["CLUSTER", "KEYSLOT", key])
            XCTAssertEqual(reply.int.map(Int.init), HashSlot.of(key), key)
        }

        // A key written on its owner is read back there; another master redirects to the owner.
        let key = "gw:{product:p1}:info"
        let owner = try cluster.masterFor(key: key)
        XCTAssertEqual(try RedisProbe.call(port: owner, ["SET", key, "v1"]), .simple("OK"))
        XCTAssertEqual(try RedisProbe.call(port: owner, ["GET", key]).text, "v1")
        let other = try XCTUnwrap(masters.first { $0.port != owner })
        XCTAssertEqual(try RedisProbe.call(port: other.port, ["GET", key]), .error("MOVED \(HashSlot.of(key)) 127.0.0.1:\(owner)"))

        try cluster.flushAll()
        XCTAssertEqual(try RedisProbe.call(port: owner, ["EXISTS", key]).int, 0, "FLUSHALL reached the owner")
    }

    func testAKilledMastersReplicaTakesOverAndStopLeavesNothingBehind() throws {
        let cluster = try launch()
        defer { cluster.stop() }
        let key = "gw:{user:u1}:meta"
        let slot = HashSlot.of(key)
        let victim = try cluster.masterFor(slot: slot)
        let victimID = try XCTUnwrap(try cluster.nodes().first { $0.port == victim }?.id)
        let replica = try XCTUnwrap(try cluster.replicas().first { $0.masterID == victimID }?.port)
        XCTAssertEqual(try RedisProbe.call(port: victim, ["SET", key, "kept"]), .simple("OK"))
        XCTAssertEqual(try RedisProbe.call(port: victim, ["WAIT", "1", "2000"]).int, 1, "the replica holds the write")

        cluster.kill(port: victim)
        XCTAssertFalse(cluster.livePorts.contains(victim))
        // cluster-node-timeout is 1 s: failure detection plus the election take a few seconds.
        let killedAt = Date()
        try waitUntil(timeout: 20, "the replica :\(replica) promoted") { (try? cluster.masterFor(slot: slot)) == replica }
        let promoted = Date().timeIntervalSince(killedAt)
        try cluster.waitHealthy(timeout: 30)
        print(String(format: "failover: replica promoted %.1f s, cluster healthy %.1f s after the kill", promoted, Date().timeIntervalSince(killedAt)))
        XCTAssertEqual(try RedisProbe.call(port: replica, ["GET", key]).text, "kept", "the acknowledged write survived")

        // The old master comes back as a replica of the new one.
        try cluster.restart(port: victim)
        try cluster.waitHealthy(timeout: 30)
        XCTAssertEqual(try cluster.nodes().first { $0.port == victim }?.role, .replica)
        XCTAssertEqual(try cluster.masterFor(slot: slot), replica)

        let pids = cluster.ports.compactMap { cluster.pid(port: $0) }
        XCTAssertEqual(pids.count, 6, "every node runs")
        cluster.stop()
        for pid in pids {
            // Reaped by stop(): the pid no longer names a redis-server (gone, or reused by another program).
            let comm = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? ""
            XCTAssertFalse(comm.hasPrefix("redis-server"), "redis-server \(pid) is gone")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: cluster.dir.path), "the cluster's folder is removed")
        XCTAssertTrue(cluster.ports.allSatisfy { !redisPing($0) })
    }

    /// With a password every node refuses a caller without it, while the launcher's own calls,
    /// its redis-cli and the replicas' links (masterauth) authenticate.
    func testPasswordProtectsEveryNodeAndTheLauncherAuthenticates() throws {
        let cluster = try RedisClusterLauncher(dir: TestRedis.clusterFolder("launcher-auth"), password: "launch-pass")
        defer { cluster.stop() }
        XCTAssertTrue(cluster.url.hasPrefix("redis+cluster://:launch-pass@127.0.0.1:"), cluster.url)
        // Started at all: init waits until every replica is linked to its master, which needs masterauth.
        XCTAssertEqual(try cluster.replicas().count, 3)
        for port in cluster.ports {
            guard case .error(let refusal) = try RedisProbe.call(port: port, ["PING"]) else { return XCTFail(":\(port) answered without AUTH") }
            XCTAssertTrue(refusal.hasPrefix("NOAUTH"), refusal)
            XCTAssertEqual(try cluster.call(port: port, ["PING"]), .simple("PONG"))
            XCTAssertEqual(cluster.cli(["PING"], port: port), "PONG")
        }
        let key = "gw:{user:u1}:meta"
        let owner = try cluster.master(ofSlot: HashSlot.of(key))
        XCTAssertEqual(try cluster.call(port: owner.port, ["SET", key, "v"]), .simple("OK"))
        try cluster.flushAll()
        XCTAssertEqual(try cluster.call(port: owner.port, ["EXISTS", key]).int, 0, "FLUSHALL reached the owner")
    }

    /// A test process that dies (SIGKILL: no teardown, no atexit) takes its cluster along:
    /// this test runs the bundle again as a child holding a cluster, kills it, and looks.
    func testAKilledTestProcessLeavesNoServerBehind() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gw-hold-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: folder) }
        let child = Process()
        child.executableURL = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        child.arguments = ["IntegrationTests.ClusterLauncherTests/testHelperHoldingAClusterUntilKilled"]
        child.environment = ProcessInfo.processInfo.environment.merging(["GATEWAY_TEST_HOLD_CLUSTER": folder.path]) { $1 }
        child.standardOutput = FileHandle.nullDevice
        child.standardError = FileHandle.nullDevice
        try child.run()
        defer { if child.isRunning { kill(child.processIdentifier, SIGKILL) } }
        let pidsFile = folder.appendingPathComponent("pids")
        try waitUntil(timeout: 30, "the child's cluster") { FileManager.default.fileExists(atPath: pidsFile.path) }
        let pids = try String(contentsOf: pidsFile, encoding: .utf8).split(separator: " ").compactMap { pid_t($0) }
        XCTAssertEqual(pids.count, 6)
        XCTAssertTrue(pids.allSatisfy { Self.isRedis($0) }, "the child's servers run")

        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        try waitUntil(timeout: 10, "every server of the killed process gone") { !pids.contains { Self.isRedis($0) } }
    }

    /// Only as the child of the test above: holds a cluster until killed.
    func testHelperHoldingAClusterUntilKilled() throws {
        guard let path = ProcessInfo.processInfo.environment["GATEWAY_TEST_HOLD_CLUSTER"] else {
            throw XCTSkip("runs as a child of testAKilledTestProcessLeavesNoServerBehind")
        }
        let folder = URL(fileURLWithPath: path)
        let cluster = try RedisClusterLauncher(dir: folder.appendingPathComponent("cluster"))
        let pids = cluster.ports.compactMap { cluster.pid(port: $0) }.map(String.init).joined(separator: " ")
        try Data(pids.utf8).write(to: folder.appendingPathComponent("pids.tmp"))
        try FileManager.default.moveItem(at: folder.appendingPathComponent("pids.tmp"), to: folder.appendingPathComponent("pids"))
        sleep(60)
        cluster.stop()
    }

    private static func isRedis(_ pid: pid_t) -> Bool {
        ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "").hasPrefix("redis-server")
    }
}
