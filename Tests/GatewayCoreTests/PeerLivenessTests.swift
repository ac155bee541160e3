import GatewayCore
import XCTest

final class PeerLivenessTests: XCTestCase {
    func testQuietPeerIsPingedOnceThenDroppedAfterTheGrace() {
        var peer = PeerLiveness(pingSeconds: 25, now: 0)
        XCTAssertEqual(peer.pongGraceSeconds, 30)
        XCTAssertEqual(peer.check(at: 24.9, closing: false), .none, "quiet for less than ping_s")
        XCTAssertEqual(peer.check(at: 25, closing: false), .sendPing)
        XCTAssertEqual(peer.check(at: 26, closing: false), .none, "one ping at a time")
        XCTAssertTrue(peer.takeOwedPing())
        XCTAssertFalse(peer.takeOwedPing(), "written once")
        XCTAssertEqual(peer.check(at: 54.9, closing: false), .none, "within the grace")
        XCTAssertEqual(peer.check(at: 55, closing: false), .drop)
    }

    func testAnythingFromThePeerAnswersThePing() {
        var peer = PeerLiveness(pingSeconds: 10, now: 0)
        XCTAssertEqual(peer.check(at: 10, closing: false), .sendPing)
        XCTAssertTrue(peer.takeOwedPing())
        peer.heard(at: 12)
        XCTAssertNil(peer.pingSentAt)
        XCTAssertEqual(peer.check(at: 21.9, closing: false), .none)
        XCTAssertEqual(peer.check(at: 22, closing: false), .sendPing, "pinged again once quiet for ping_s")
    }

    /// The sweep asked for a ping, the peer kept sending, but the socket's write turn never
    /// came (the peer does not read): the unwritten ping is not answered, so the peer is dropped.
    func testAPeerThatSendsButNeverLetsThePingOutIsStillDropped() {
        var peer = PeerLiveness(pingSeconds: 25, now: 0)
        XCTAssertEqual(peer.check(at: 25, closing: false), .sendPing)
        for t in stride(from: 26.0, through: 54.0, by: 1) {
            peer.heard(at: t)
            XCTAssertEqual(peer.check(at: t, closing: false), .none)
        }
        peer.heard(at: 55)
        XCTAssertEqual(peer.check(at: 55, closing: false), .drop)
    }

    /// A client that sends nothing but answers every ping stays, however long.
    func testQuietPeerThatAnswersPingsIsNeverDropped() {
        var peer = PeerLiveness(pingSeconds: 10, now: 0)
        var pings = 0
        for tick in 1...400 {
            let now = Double(tick) * 2.5
            switch peer.check(at: now, closing: false) {
            case .sendPing:
                XCTAssertTrue(peer.takeOwedPing())
                pings += 1
                peer.heard(at: now + 0.1)   // its pong
            case .drop: return XCTFail("dropped at \(now) s")
            case .none: break
            }
        }
        // 10 s of quiet after each pong, noticed at the next 2.5 s visit: a ping every 12.5 s.
        XCTAssertEqual(pings, 80)
    }

    func testBusyPeerIsNeverPinged() {
        var peer = PeerLiveness(pingSeconds: 5, now: 0)
        for t in stride(from: 1.0, through: 100, by: 1) {
            peer.heard(at: t)
            XCTAssertEqual(peer.check(at: t + 0.5, closing: false), .none)
        }
        XCTAssertFalse(peer.takeOwedPing())
    }

    func testClosingConnectionIsNotPingedButAnEarlierPingStillCounts() {
        var quiet = PeerLiveness(pingSeconds: 5, now: 0)
        XCTAssertEqual(quiet.check(at: 100, closing: true), .none, "its close has its own deadline")
        XCTAssertFalse(quiet.takeOwedPing())

        var pinged = PeerLiveness(pingSeconds: 5, now: 0)
        XCTAssertEqual(pinged.check(at: 5, closing: false), .sendPing)
        XCTAssertEqual(pinged.check(at: 15, closing: true), .drop)
    }

    /// A ping asked for but not written yet (the socket had no write turn) is not asked again
    /// while the peer speaks; once written, the next answer clears it.
    func testOwedPingIsNotAskedTwice() {
        var peer = PeerLiveness(pingSeconds: 5, now: 0)
        XCTAssertEqual(peer.check(at: 5, closing: false), .sendPing)
        peer.heard(at: 6)
        XCTAssertEqual(peer.check(at: 12, closing: false), .none)
        XCTAssertTrue(peer.takeOwedPing())
        peer.heard(at: 13)
        XCTAssertNil(peer.pingSentAt, "the written ping is answered")
        XCTAssertEqual(peer.check(at: 18, closing: false), .sendPing)
    }

    func testPingIntervalHasAFloorOfOneSecond() {
        let peer = PeerLiveness(pingSeconds: 0, now: 0)
        XCTAssertEqual(peer.pingSeconds, 1)
        XCTAssertEqual(peer.pongGraceSeconds, 6)
    }
}
