import OrderCore
import XCTest

final class TimerMemberTests: XCTestCase {
    func testEveryKindRoundTrips() {
        let members: [TimerMember] = [
            .order(.payment, "o:1-a.b"), .order(.gift, "g1"),
            .holds(product: "p:1.x", upload: "9f3a01bc"),
            .membership(product: "vip-1", user: "u:7"),
            .dormant(user: "u.1:2"),
        ]
        for m in members { XCTAssertEqual(TimerMember(m.member), m, m.member) }
        XCTAssertEqual(TimerMember.order(.payment, "o1").member, "pay:o1")
        XCTAssertEqual(TimerMember.holds(product: "p", upload: "r").member, "hold:p/r")
    }

    func testUnknownOrBrokenMembersAreNil() {
        for s in ["", "pay", "pay:", "nope:o1", "hold:p", "hold:/r", "hold:p/", "hold:p/r/x", "mem:p", "dorm:", ":x"] {
            XCTAssertNil(TimerMember(s), s)
        }
    }
}
