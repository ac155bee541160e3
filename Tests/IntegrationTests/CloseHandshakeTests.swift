import Foundation
import GatewayClient
import GatewayProtocol
import XCTest

/// Server-initiated closes on both event loops (`server.event_loop`): the client reads the
/// exact close code even while it keeps sending. On the epoll loop lws closes the socket as
/// soon as it is told to (no lingering half-close as under poll), so a second close request
/// after the close frame went out would reset the socket with the client's frames unread, and
/// the client would see 1006 instead of the code.
final class CloseHandshakeTests: IntegrationCase {
    private func node(_ loop: String, tls: Bool = false) throws -> GatewayNodeProcess {
        let node = try GatewayNodeProcess(name: "n-\(loop)", redisPort: redis?.port ?? 0,
                                          env: ["GATEWAY_SERVER_EVENT_LOOP": loop], tls: tls)
        nodes.append(node)
        return node
    }

    /// Ten protocol violations close with 4011; the client has sent many more frames behind them.
    private func closeWhileSending(_ node: GatewayNodeProcess, rounds: Int = 5) throws {
        for round in 0..<rounds {
            let ws = try RawWebSocket(port: node.port)
            XCTAssertEqual(ws.upgradeStatus, 101)
            let user = "u\(round)"
            try ws.sendText(#"{"id":1,"op":"connect","token":"\#(token(user))"}"#)
            XCTAssertNotNil(ws.until(id: 1).reply?["ok"])
            for _ in 0..<400 { try? ws.sendText("[1,2]") }
            XCTAssertEqual(ws.waitClosed(), 4011, "round \(round) on \(node.name)")
        }
    }

    func testACloseReachesAClientThatKeepsSendingOnEpoll() throws {
        let node = try node("epoll")
        XCTAssertTrue(node.log().contains("serving on epoll"), node.log())
        try closeWhileSending(node)
        XCTAssertEqual(try node.http("GET", "/healthz").status, 200)
    }

    func testACloseReachesAClientThatKeepsSendingOnPoll() throws {
        let node = try node("poll")
        XCTAssertTrue(node.log().contains("serving on poll"), node.log())
        try closeWhileSending(node)
    }

    func testACloseReachesAClientThatKeepsSendingOverTLS() throws {
        for loop in ["epoll", "poll"] {
            let node = try node(loop, tls: true)
            for round in 0..<3 {
                let (session, _) = try open(node, "t\(round)")
                for _ in 0..<400 { session.sendRawText("[1,2]") }
                XCTAssertEqual(session.waitClosed(timeout: 10), 4011, "round \(round) on \(loop) over TLS")
            }
        }
    }

    /// The epoll loop's turn probe feeds the stall gauge and the turn histogram.
    func testTheEpollLoopReportsItsTurns() throws {
        let node = try node("epoll")
        let (session, _) = try open(node, "m1")
        XCTAssertNotNil(try session.command("ping")["ok"])
        let metrics = try node.http("GET", "/metrics").text
        XCTAssertTrue(metrics.contains("gateway_loop_turn_seconds_count"), metrics)
        let turns = metrics.split(separator: "\n").first { $0.hasPrefix("gateway_loop_turn_seconds_count") }
        XCTAssertGreaterThan(Int(turns?.split(separator: " ").last ?? "") ?? 0, 0, metrics)
        XCTAssertFalse(try self.node("poll").http("GET", "/metrics").text.contains("gateway_loop_turn_seconds"))
    }
}
