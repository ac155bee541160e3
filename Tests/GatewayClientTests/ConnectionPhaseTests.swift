import GatewayClient
import XCTest

/// The client connection's life without sockets: every path ends exactly once, with the
/// code and reason the handlers are promised.
final class ConnectionPhaseTests: XCTestCase {
    private func opened() -> ConnectionPhase {
        var p = ConnectionPhase()
        XCTAssertEqual(p.connectDue(loopRunning: true), .nothing)
        XCTAssertEqual(p.established(), .nothing)
        return p
    }

    func testOpensAndShowsTheCallerItsState() {
        var p = ConnectionPhase()
        XCTAssertEqual(p.state, .connecting)
        XCTAssertEqual(p.connectDue(loopRunning: true), .nothing)
        XCTAssertEqual(p.stage, .connecting)
        XCTAssertEqual(p.state, .connecting)
        XCTAssertEqual(p.established(), .nothing)
        XCTAssertEqual(p.state, .open)
        XCTAssertTrue(p.wasEstablished)
    }

    func testCloseWhileQueuedNeverOpens() {
        var p = ConnectionPhase()
        XCTAssertEqual(p.closeRequested(code: 1000), .nothing)
        XCTAssertTrue(p.cancelled)
        XCTAssertEqual(p.connectDue(loopRunning: true), .finish(code: nil, reason: "closed before open"))
        XCTAssertEqual(p.state, .closed)
    }

    func testAbortWhileQueuedNeverOpens() {
        var p = ConnectionPhase()
        XCTAssertEqual(p.abortRequested(), .nothing)
        XCTAssertEqual(p.connectDue(loopRunning: true), .finish(code: nil, reason: "closed before open"))
    }

    func testQueuedConnectOfAStoppingLoop() {
        var p = ConnectionPhase()
        XCTAssertEqual(p.connectDue(loopRunning: false), .finish(code: nil, reason: "client loop shut down"))
    }

    func testCloseWhileConnectingDropsTheSocket() {
        var p = ConnectionPhase()
        _ = p.connectDue(loopRunning: true)
        XCTAssertEqual(p.closeRequested(code: 1000), .dropSocket)
        XCTAssertEqual(p.socketClosed(loopRunning: true), .finish(code: nil, reason: "closed before open"))
    }

    func testOurCloseSendsAFrameAfterTheQueueAndReportsOurCode() {
        var p = opened()
        XCTAssertEqual(p.closeRequested(code: 4000), .sendCloseAfterQueue)
        XCTAssertEqual(p.state, .closing)
        XCTAssertEqual(p.ourCloseCode, 4000)
        // A second close changes nothing: the first code goes out.
        XCTAssertEqual(p.closeRequested(code: 1000), .nothing)
        XCTAssertEqual(p.socketClosed(loopRunning: true), .finish(code: 4000, reason: ""))
    }

    func testPeerCodeWinsOverOurs() {
        var p = opened()
        _ = p.closeRequested(code: 1000)
        p.peerClosed(code: 4003, reason: "token expired")
        XCTAssertEqual(p.socketClosed(loopRunning: true), .finish(code: 4003, reason: "token expired"))
    }

    func testPeerCloseFrameWithoutStatusIs1005() {
        var p = opened()
        p.peerClosed(code: nil, reason: "")
        XCTAssertEqual(p.state, .closing)
        XCTAssertEqual(p.socketClosed(loopRunning: true), .finish(code: 1005, reason: ""))
    }

    func testLostWithoutCloseFrame() {
        var p = opened()
        XCTAssertEqual(p.socketClosed(loopRunning: true), .finish(code: nil, reason: "connection lost without a close frame"))
    }

    func testRefusedConnect() {
        var p = ConnectionPhase()
        _ = p.connectDue(loopRunning: true)
        XCTAssertEqual(p.connectionError("connection refused"), .finish(code: nil, reason: "connection refused"))
        var q = ConnectionPhase()
        _ = q.connectDue(loopRunning: true)
        XCTAssertEqual(q.socketClosed(loopRunning: true), .finish(code: nil, reason: "connect failed"))
    }

    func testLoopShutdownExplainsTheEnd() {
        var p = opened()
        XCTAssertEqual(p.socketClosed(loopRunning: false), .finish(code: nil, reason: "client loop shut down"))
    }

    func testAbortKeepsItsReason() {
        var p = opened()
        XCTAssertEqual(p.abortRequested(), .dropSocket)
        XCTAssertEqual(p.socketClosed(loopRunning: true), .finish(code: nil, reason: "aborted"))
        XCTAssertEqual(p.abortRequested(), .nothing)
    }

    func testTooLargeMessageClosesWith1009() {
        var p = opened()
        p.messageTooLarge()
        XCTAssertEqual(p.ourCloseCode, 1009)
        XCTAssertEqual(p.socketClosed(loopRunning: true), .finish(code: 1009, reason: ""))
    }

    /// CLIENT_CLOSED and WSI_DESTROY both arrive: one report.
    func testEndsExactlyOnce() {
        var p = opened()
        XCTAssertEqual(p.socketClosed(loopRunning: true), .finish(code: nil, reason: "connection lost without a close frame"))
        XCTAssertEqual(p.socketClosed(loopRunning: true), .nothing)
        XCTAssertEqual(p.connectionError("late"), .nothing)
        XCTAssertEqual(p.closeRequested(code: 1000), .nothing)
        XCTAssertEqual(p.state, .closed)
    }
}
