import XCTest
@testable import GatewayProtocol

final class NamesTests: XCTestCase {
    func testValidIDs() {
        for id in ["u1", "A", "z", "0", "user_42", "p.1", "ns:id", "a-b", "AZaz09_.:-"] {
            XCTAssertTrue(Names.isValidID(id), id)
        }
    }

    func testLengthLimit() {
        XCTAssertTrue(Names.isValidID(String(repeating: "a", count: 64)))
        XCTAssertFalse(Names.isValidID(String(repeating: "a", count: 65)))
        XCTAssertFalse(Names.isValidID(String(repeating: "a", count: 1000)))
        XCTAssertFalse(Names.isValidID(""))
    }

    func testBadCharacters() {
        for id in ["a b", " a", "a ", "a/b", "a@b", "a+b", "a\u{0}", "a\nb", "é", "ü1", "a😀", "a*", "a#b",
                   "a,b", "\"a\"", "a\\b", "a\tb"] {
            XCTAssertFalse(Names.isValidID(id), id.debugDescription)
        }
    }

    func testSubstringInput() {
        let s = "user:u1"
        XCTAssertTrue(Names.isValidID(s[s.index(s.startIndex, offsetBy: 5)...]))
        XCTAssertFalse(Names.isValidID(s.dropLast(7)))
    }

    func testChannelParsing() {
        XCTAssertEqual(Channel("user:u1"), Channel(kind: .user, id: "u1"))
        XCTAssertEqual(Channel("group:p1"), .group("p1"))
        XCTAssertEqual(Channel("product:p-9.x"), .product("p-9.x"))
        // The id may itself contain colons; only the first one splits.
        XCTAssertEqual(Channel("user:a:b"), Channel(kind: .user, id: "a:b"))
        XCTAssertEqual(Channel("group:" + String(repeating: "g", count: 64))?.id.count, 64)
    }

    func testChannelRejections() {
        for name in ["", "user", "user:", ":u1", "users:u1", "User:u1", "merchant:m1", "group:a b",
                     "product:é", "group:" + String(repeating: "g", count: 65), "u1"] {
            XCTAssertNil(Channel(name), name)
        }
    }

    func testChannelDescriptionRoundTrip() {
        for kind in Channel.Kind.allCases {
            let channel = Channel(kind: kind, id: "x_1")
            XCTAssertEqual(channel.description, "\(kind.rawValue):x_1")
            XCTAssertEqual(Channel(channel.description), channel)
        }
        XCTAssertEqual(Channel.user("u1").description, "user:u1")
        XCTAssertEqual(Set([Channel.user("a"), .user("a"), .group("a")]).count, 2)
    }
}
