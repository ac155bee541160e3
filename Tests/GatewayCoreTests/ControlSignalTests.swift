import GatewayCore
import XCTest

final class ControlSignalTests: XCTestCase {
    func testSignalsRoundTrip() {
        for signal in [ControlSignal.disconnect(user: "u1", request: "r1", reason: "banned \"now\""),
                       .closed(request: "r1", closed: 3), .revoke(user: "u1", channel: .group("p1"), reason: "refunded"),
                       .alerts(product: "p1", job: "0a1b2c3d4e5f6071")] {
            XCTAssertEqual(ControlSignal(Array(signal.encoded().utf8)), signal)
        }
    }

    func testUnknownOrBrokenSignalsAreIgnored() {
        for text in ["", "not json", "[]", #"{"t":"reboot","req":"r"}"#, #"{"t":"disconnect","req":"r"}"#,
                     #"{"t":"disconnect","req":"r","user":"a b"}"#, #"{"t":"closed","req":"r","n":-1}"#,
                     #"{"t":"closed","n":1}"#, #"{"t":"revoke","user":"u1","channel":"nope"}"#,
                     #"{"t":"revoke","channel":"group:p1"}"#, #"{"t":"alerts","product":"p1"}"#,
                     #"{"t":"alerts","product":"p 1","job":"j"}"#] {
            XCTAssertNil(ControlSignal(Array(text.utf8)), text)
        }
    }

    func testTallyCompletesOnceEveryReceivingNodeReportedInEitherOrder() {
        var early = DisconnectTally()
        early.report(2)
        XCTAssertFalse(early.isComplete, "the number of receiving nodes is not known yet")
        early.received(by: 2)
        XCTAssertFalse(early.isComplete)
        early.report(1)
        XCTAssertTrue(early.isComplete)
        XCTAssertEqual(early.closed, 3)

        var withLocal = DisconnectTally(closedHere: 2)
        withLocal.received(by: 1)
        withLocal.report(0)
        XCTAssertEqual(withLocal.closed, 2, "the asking node's own report finds its connections closing")

        var nobody = DisconnectTally()
        nobody.received(by: 0)
        XCTAssertTrue(nobody.isComplete)
        XCTAssertEqual(nobody.closed, 0)
    }
}
