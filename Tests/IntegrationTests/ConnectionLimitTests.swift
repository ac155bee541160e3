import Foundation
import GatewayClient
import GatewayProtocol
import XCTest

/// Connection lifecycle and per-connection/per-user/per-IP limits (PROTOCOL 4.1) on a
/// real node: hostile clients get a clear answer and never take the node down.
final class ConnectionLimitTests: IntegrationCase {
    /// Opens a raw WebSocket and sends `connect`; fails the test unless it is accepted.
    private func rawConnect(_ node: GatewayNodeProcess, _ user: String) throws -> RawWebSocket {
        let ws = try RawWebSocket(port: node.port)
        XCTAssertEqual(ws.upgradeStatus, 101)
        try ws.sendText(#"{"id":1,"op":"connect","token":"\#(token(user))"}"#)
        let reply = try XCTUnwrap(ws.until(id: 1).reply)
        XCTAssertNotNil(reply["ok"], "\(reply)")
        return ws
    }

    // MARK: Replies to a client that is gone

    /// A frame of ~1,000 `history` commands and then a TCP reset: the answers come back
    /// from Redis after lws freed the connection. None may reach it (use-after-free).
    func testResetAfterAFloodOfHistoryKeepsTheNodeUp() throws {
        // Freed memory is filled with a pattern, so a write through a freed wsi crashes
        // here instead of passing silently: glibc (no thread cache to keep it intact), or
        // AddressSanitizer, which cannot see the access itself because libwebsockets is
        // not instrumented.
        // The command budget is opened wide so every one of the commands reaches Redis:
        // liveness, not the budget, has to protect the node here.
        let asan = [ProcessInfo.processInfo.environment["ASAN_OPTIONS"], "max_free_fill_size=65536:free_fill_byte=165"]
        let node = try startNode(env: ["GLIBC_TUNABLES": "glibc.malloc.tcache_count=0:glibc.malloc.perturb=165",
                                       "ASAN_OPTIONS": asan.compactMap { $0 }.joined(separator: ":"),
                                       "GATEWAY_LIMITS_MAX_INFLIGHT": "100000", "GATEWAY_LIMITS_COMMANDS_PER_S": "1000000"])
        try createProduct(node, "p1")
        for round in 0..<6 {
            let ws = try rawConnect(node, "u\(round)")
            // Half on a product that does not exist (answered from the permission check),
            // half on one that does (answered after the history read).
            let lines = (2..<1_002).map { id in
                #"{"id":\#(id),"op":"history","channel":"product:\#(id % 2 == 0 ? "nope" : "p1")"}"#
            }
            try ws.sendLines(lines)
            ws.reset()
        }
        // The late answers arrive while other clients come and go.
        for i in 0..<5 {
            let (s, reply) = try open(node, "other\(i)")
            XCTAssertNotNil(reply["ok"], "\(reply)")
            XCTAssertNotNil(try s.command("ping")["ok"])
            s.close()
        }
        XCTAssertEqual(try node.http("GET", "/healthz").status, 200)
        XCTAssertEqual(node.process?.isRunning, true, node.log())
    }

    // MARK: In-flight and rate

    /// ~1,300 commands in one 64 KiB frame: `max_inflight` start, the rest are refused
    /// with `rate_limited` and a retry hint, and none of those become Redis calls.
    func testAFrameOfCommandsStartsAtMostMaxInflight() throws {
        try requireSingleRedis("counts commands with INFO commandstats on the server port")
        let node = try startNode(env: ["GATEWAY_LIMITS_COMMANDS_PER_S": "100000"])
        try createProduct(node, "p1")
        let ws = try rawConnect(node, "u1")
        let before = try redisCommandCount("exists")
        let ids = 2..<1_302
        let lines = ids.map { #"{"id":\#($0),"op":"history","channel":"product:p1"}"# }
        XCTAssertLessThanOrEqual(lines.joined(separator: "\n").utf8.count, 65536)
        try ws.sendLines(lines)
        var ok = 0, limited = 0
        var seen = Set<Int64>()
        while seen.count < ids.count, let reply = ws.next() {
            guard let id = reply["id"]?.intValue else { continue }
            seen.insert(id)
            if reply["ok"] != nil { ok += 1 }
            if let error = reply["error"] {
                XCTAssertEqual(error["code"]?.stringValue, "rate_limited", "\(reply)")
                XCTAssertGreaterThan(error["retry_after_ms"]?.intValue ?? 0, 0, "\(reply)")
                XCTAssertEqual(error["temporary"], .bool(true))
                limited += 1
            }
        }
        XCTAssertEqual(seen.count, ids.count, "every command is answered")
        XCTAssertEqual(ok, 64, "at most limits.max_inflight start")
        XCTAssertEqual(limited, ids.count - 64)
        XCTAssertEqual(try redisCommandCount("exists") - before, 64, "refused commands do no Redis work")
        // Once the answers are out the window is free again.
        try ws.sendLines((2_000..<2_010).map { #"{"id":\#($0),"op":"history","channel":"product:p1"}"# })
        for _ in 0..<10 { XCTAssertNotNil(ws.next()?["ok"]) }
    }

    /// Cheap commands are held to `commands_per_s` with a burst of twice that.
    func testCommandsPerSecondWithBurst() throws {
        let node = try startNode(env: ["GATEWAY_LIMITS_COMMANDS_PER_S": "50"])
        let ws = try rawConnect(node, "u1")
        try ws.sendLines((2..<1_002).map { #"{"id":\#($0),"op":"ping"}"# })
        var ok = 0, limited = 0
        for _ in 0..<1_000 {
            guard let reply = ws.next() else { break }
            if reply["ok"] != nil { ok += 1 }
            if reply["error"]?["code"]?.stringValue == "rate_limited" {
                XCTAssertGreaterThan(reply["error"]?["retry_after_ms"]?.intValue ?? 0, 0)
                limited += 1
            }
        }
        XCTAssertEqual(ok + limited, 1_000)
        // The connect took one token; the frame is read in well under a second.
        XCTAssertGreaterThanOrEqual(ok, 99)
        XCTAssertLessThan(ok, 150, "burst is 2x commands_per_s")
        // After the refill it answers again.
        try waitUntil(timeout: 10, "the bucket to refill") {
            try? ws.sendText(#"{"id":5000,"op":"ping"}"#)
            return ws.until(id: 5000).reply?["ok"] != nil
        }
    }

    // MARK: Connections per IP and per user

    /// Over `limits.conns_per_ip` the upgrade is answered 429 before it becomes a WebSocket.
    func testConnectionsPerIPAreRefusedWith429BeforeTheUpgrade() throws {
        let node = try startNode(env: ["GATEWAY_LIMITS_CONNS_PER_IP": "3"])
        var open: [RawWebSocket] = []
        for _ in 0..<3 {
            let ws = try RawWebSocket(port: node.port)
            XCTAssertEqual(ws.upgradeStatus, 101)
            open.append(ws)
        }
        let refused = try RawWebSocket(port: node.port)
        XCTAssertEqual(refused.upgradeStatus, 429)
        XCTAssertEqual(try node.http("GET", "/healthz").status, 200, "HTTP is not counted")
        // A freed slot takes a new connection, which works.
        open.removeFirst().reset()
        try waitUntil(timeout: 10, "a slot to free up") {
            (try? RawWebSocket(port: node.port))?.upgradeStatus == 101
        }
        let ws = try rawConnect(node, "u1")
        try ws.sendText(#"{"id":2,"op":"ping"}"#)
        XCTAssertNotNil(ws.until(id: 2).reply?["ok"])
    }

    /// Over `limits.conns_per_user` the `connect` is answered `rate_limited` and the
    /// connection closes with 4029; other users and freed slots are unaffected.
    func testConnectionsPerUserCloseWith4029() throws {
        let node = try startNode(env: ["GATEWAY_LIMITS_CONNS_PER_USER": "2"])
        let (a, _) = try open(node, "u1")
        let (b, _) = try open(node, "u1")
        let (c, reply) = try open(node, "u1")
        XCTAssertEqual(reply["error"]?["code"]?.stringValue, "rate_limited", "\(reply)")
        XCTAssertGreaterThan(reply["error"]?["retry_after_ms"]?.intValue ?? 0, 0)
        XCTAssertEqual(c.waitClosed(), 4029)
        XCTAssertEqual(c.closeAdvice, .reconnectWithBackoff)
        let (other, otherReply) = try open(node, "u2")
        XCTAssertNotNil(otherReply["ok"])
        XCTAssertNotNil(try a.command("ping")["ok"], "the connections within the cap keep working")
        b.close()
        try waitUntil(timeout: 10, "u1's slot to free up") {
            guard let (s, r) = try? open(node, "u1") else { return false }
            defer { s.close() }
            return r["ok"] != nil
        }
        withExtendedLifetime(other) {}
    }

    /// How many times Redis ran `command` (INFO commandstats).
    private func redisCommandCount(_ command: String) throws -> Int {
        let raw = try rawExchange(port: redis.port, Array("INFO commandstats\r\n".utf8), readUntilClose: false)
        let text = String(decoding: raw, as: UTF8.self)
        guard let line = text.split(separator: "\r\n").first(where: { $0.hasPrefix("cmdstat_\(command):") }),
              let calls = line.split(separator: "=").dropFirst().first?.split(separator: ",").first else { return 0 }
        return Int(calls) ?? 0
    }
}
