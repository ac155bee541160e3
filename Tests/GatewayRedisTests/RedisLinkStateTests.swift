import GatewayRedis
import XCTest

final class RedisLinkStateTests: XCTestCase {
    let endpoint = "127.0.0.1:6379"

    func up(_ link: inout RedisLinkState) -> [RedisLinkState.Action] {
        _ = link.handshakeCompleted(.commands)
        return link.handshakeCompleted(.subscriber)
    }

    func testReadyOnlyOnceBothConnectionsFinishedTheirHandshake() {
        var link = RedisLinkState()
        XCTAssertEqual(link.start(), [.open])
        XCTAssertEqual(link.start(), [], "started once")
        XCTAssertEqual(link.handshakeCompleted(.commands), [])
        XCTAssertEqual(link.handshakeCompleted(.commands), [], "the same connection twice is still one")
        XCTAssertFalse(link.isReady)
        XCTAssertEqual(link.handshakeCompleted(.subscriber), [.ready])
        XCTAssertTrue(link.isReady)
        XCTAssertTrue(link.hasBeenReady)
    }

    func testLosingAReadyLinkClosesBothReportsTheLossAndBacksOff() {
        var link = RedisLinkState()
        _ = link.start()
        _ = up(&link)
        XCTAssertEqual(link.connectionDown("connection lost", endpoint: endpoint),
                       [.closeConnections, .lost("connection lost"), .reconnect(afterMs: 100...200)])
        XCTAssertEqual(link.phase, .backingOff)
        XCTAssertEqual(link.connectionDown("again", endpoint: endpoint), [], "already down: one reconnect scheduled")
        XCTAssertEqual(link.handshakeCompleted(.commands), [], "no handshake counts while backing off")
        XCTAssertEqual(link.reconnectDue(), [.open])
        XCTAssertEqual(link.reconnects, 1)
        XCTAssertEqual(up(&link), [.ready])
        XCTAssertEqual(link.attempt, 0, "the backoff starts over once ready")
    }

    func testBackoffDoublesToACapAndProblemsAreSaidOncePerReason() {
        var link = RedisLinkState()
        _ = link.start()
        var ranges: [ClosedRange<Int>] = []
        var problems: [String] = []
        for _ in 0..<8 {
            for action in link.connectionDown("connection refused", endpoint: endpoint) {
                if case .reconnect(let range) = action { ranges.append(range) }
                if case .problem(let text) = action { problems.append(text) }
                XCTAssertNotEqual(action, .lost("connection refused"), "never ready, never lost")
            }
            XCTAssertEqual(link.reconnectDue(), [.open])
        }
        XCTAssertEqual(ranges, [100...200, 200...400, 400...800, 800...1_600, 1_600...3_200, 2_500...5_000, 2_500...5_000, 2_500...5_000])
        XCTAssertEqual(problems, ["redis at 127.0.0.1:6379 not usable: connection refused; retrying"])
        XCTAssertEqual(link.connectionDown("wrong password", endpoint: endpoint).first,
                       .problem("redis at 127.0.0.1:6379 not usable: wrong password; retrying"))
    }

    func testProblemIsSaidAgainAfterTheLinkWasReady() {
        var link = RedisLinkState()
        _ = link.start()
        XCTAssertEqual(link.connectionDown("refused", endpoint: endpoint).first, .problem("redis at 127.0.0.1:6379 not usable: refused; retrying"))
        _ = link.reconnectDue()
        _ = up(&link)
        _ = link.connectionDown("lost", endpoint: endpoint)
        _ = link.reconnectDue()
        XCTAssertEqual(link.connectionDown("refused", endpoint: endpoint).first, .problem("redis at 127.0.0.1:6379 not usable: refused; retrying"))
    }

    func testEvictionPolicyIsFatalAtFirstStartAndRetriedLater() {
        var first = RedisLinkState()
        _ = first.start()
        XCTAssertEqual(first.evictionPolicyRefused("policy allkeys-lru", endpoint: endpoint), [.fatal("policy allkeys-lru and start again")])

        var running = RedisLinkState()
        _ = running.start()
        _ = up(&running)
        _ = running.connectionDown("failover", endpoint: endpoint)
        _ = running.reconnectDue()
        let actions = running.evictionPolicyRefused("policy allkeys-lru", endpoint: endpoint)
        XCTAssertEqual(actions.first, .problem("redis at 127.0.0.1:6379 not usable: policy allkeys-lru; not ready until then; retrying"))
        XCTAssertTrue(actions.contains(.closeConnections))
        XCTAssertFalse(running.isReady)

        var promoted = RedisLinkState()
        promoted.hasBeenReady = true   // a cluster master linked after the cluster was ready
        _ = promoted.start()
        XCTAssertFalse(promoted.evictionPolicyRefused("policy allkeys-lru", endpoint: endpoint).contains(.fatal("policy allkeys-lru and start again")))
    }

    func testStopCancelsTheReconnectAndIgnoresWhatFollows() {
        var link = RedisLinkState()
        _ = link.start()
        _ = link.connectionDown("refused", endpoint: endpoint)
        XCTAssertEqual(link.stop(), [.cancelReconnect, .closeConnections])
        XCTAssertEqual(link.stop(), [])
        XCTAssertEqual(link.reconnectDue(), [])
        XCTAssertEqual(link.connectionDown("closed", endpoint: endpoint), [], "closing on stop is no loss")

        var ready = RedisLinkState()
        _ = ready.start()
        _ = up(&ready)
        XCTAssertEqual(ready.stop(), [.closeConnections])
        XCTAssertFalse(ready.isReady)
    }
}
