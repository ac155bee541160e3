import Foundation
import GatewayClient
import XCTest

/// A node out of descriptors must keep serving: sockets past its ceiling are refused at
/// once instead of `accept` failing (EMFILE) in a loop that starves everything else.
final class DescriptorLimitTests: IntegrationCase {
    func testFullNodeRefusesUpgradesButKeepsAnsweringAndRecovers() throws {
        // 160 descriptors: the node keeps 16 in reserve and 8 more for HTTP, so about
        // 130 WebSocket clients fit (its own Redis links and files take the rest).
        let node = try GatewayNodeProcess(name: "n1", redisPort: redis?.port ?? 0, launcher: ["/usr/bin/prlimit", "--nofile=160:160"])
        nodes.append(node)
        var sessions: [GatewaySession] = []
        var refused = 0
        for i in 0..<200 {
            do {
                let (s, reply) = try GatewaySession.open(loop: Self.loop, url: node.wsURL, token: token("u\(i)"), timeout: 5)
                if reply["ok"] != nil { sessions.append(s) } else { refused += 1 }
            } catch {
                refused += 1
            }
        }
        XCTAssertGreaterThan(sessions.count, 100, "most of the 160 descriptors serve clients")
        XCTAssertLessThan(sessions.count, 160)
        XCTAssertEqual(sessions.count + refused, 200)

        // Still answering HTTP, and counting what it refused.
        XCTAssertEqual(try node.http("GET", "/healthz").status, 200)
        let metrics = try node.http("GET", "/metrics").text
        let line = try XCTUnwrap(metrics.split(separator: "\n").first { $0.hasPrefix("gateway_connections_refused_total ") })
        XCTAssertEqual(Double(line.split(separator: " ")[1]).map(Int.init), refused, metrics)

        // The ones still connected keep working, and freed slots take new clients.
        XCTAssertNotNil(try sessions[0].command("ping")["ok"])
        for s in sessions.suffix(20) { s.close() }
        sessions.removeLast(20)
        try waitUntil(timeout: 10, "slots freed") {
            guard let (s, reply) = try? GatewaySession.open(loop: Self.loop, url: node.wsURL, token: token("late")) else { return false }
            defer { s.close() }
            return reply["ok"] != nil
        }
    }
}
