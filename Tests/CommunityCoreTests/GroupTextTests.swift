import XCTest
import GatewayProtocol
@testable import CommunityCore

/// Group text (PROTOCOL.md 4.1): 1 to 1000 characters after trimming AND at most
/// `groups.max_text_bytes` UTF-8 bytes; either breach is `bad_request`.
final class GroupTextTests: XCTestCase {
    private func assertRefused(_ text: String, maxBytes: Int = 4000, containing fragment: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        guard let error = GroupRules.textError(text, maxBytes: maxBytes) else {
            return XCTFail("accepted \(text.utf8.count) bytes", file: file, line: line)
        }
        XCTAssertEqual(error.code, .badRequest, file: file, line: line)
        XCTAssertTrue(error.message.contains(fragment), error.message, file: file, line: line)
    }

    /// The report: one base letter and 30,000 combining accents is one character of 60,001 bytes.
    func testCombiningMarksCountAsBytes() {
        let zalgo = "a" + String(repeating: "\u{301}", count: 30_000)
        XCTAssertEqual(zalgo.count, 1)
        assertRefused(zalgo, containing: "4000 bytes")
    }

    func testByteLimitIsTheSetting() {
        let ascii4000 = String(repeating: "a", count: 1000) // 1000 bytes
        XCTAssertNil(GroupRules.textError(ascii4000, maxBytes: 1000))
        assertRefused(ascii4000, maxBytes: 999, containing: "999 bytes")
        // 1000 CJK characters are 3000 bytes: fine under the default, not under 2999.
        let cjk = String(repeating: "好", count: 1000)
        XCTAssertNil(GroupRules.textError(cjk, maxBytes: 4000))
        XCTAssertNil(GroupRules.textError(cjk, maxBytes: 3000))
        assertRefused(cjk, maxBytes: 2999, containing: "bytes")
        // Exactly at the default: 4000 bytes in 1000 characters (4-byte emoji).
        let emoji = String(repeating: "😀", count: 1000)
        XCTAssertEqual(emoji.utf8.count, 4000)
        XCTAssertNil(GroupRules.textError(emoji, maxBytes: 4000))
        assertRefused(emoji + "😀", maxBytes: 8000, containing: "characters")
        assertRefused(emoji + "😀", containing: "bytes")
        let e = String(repeating: "\u{E9}", count: 999) + "\u{65}\u{301}\u{301}"  // 1000 characters, 2003 bytes
        XCTAssertEqual(e.count, 1000)
        XCTAssertNil(GroupRules.textError(e, maxBytes: 2003))
        assertRefused(e, maxBytes: 2002, containing: "bytes")
    }

    func testCharacterRuleLivesHereToo() {
        assertRefused("", containing: "characters")
        assertRefused(String(repeating: "a", count: 1001), containing: "characters")
        XCTAssertNil(GroupRules.textError("x", maxBytes: 4000))
        XCTAssertEqual(GroupRules.maxTextCharacters, 1000)
    }
}
