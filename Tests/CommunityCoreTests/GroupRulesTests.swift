import XCTest
@testable import CommunityCore

/// Links in buyer messages (PROTOCOL.md 2.2): `http://`, `https://`, `www.`.
final class GroupRulesTests: XCTestCase {
    func testLinks() {
        let links = [
            "http://example.com",
            "https://example.com/path?q=1",
            "www.example.com",
            "see http://x.y for details",
            "cheaper at https://shop.example",
            "go to www.example.com now",
            "HTTP://EXAMPLE.COM",
            "HTTPS://Example.com",
            "Https://example.com",
            "hTtP://x",
            "WWW.EXAMPLE.COM",
            "Www.example.com",
            "链接：https://例子.中国",
            "访问www.example.cn",
            "text\nhttp://on-second-line",
            "(www.x)",
            "http://",
            "www.",
        ]
        for text in links {
            XCTAssertTrue(GroupRules.containsLink(text), "not seen as a link: \(text)")
        }
    }

    func testPlainText() {
        let plain = [
            "",
            "hello",
            "v1.2",
            "version 1.2.3 is out",
            "price dropped to 19.99, nice.",
            "e.g. this works",
            "example.com",             // no scheme, no www.
            "http is a protocol",
            "http:/example.com",
            "https:example.com",
            "http//example",
            "ftp://example.com",
            "www",
            "wwwexample",
            "w.w.w.",
            "ww.example.com",
            "怎么激活？",
            "我的卡密用不了。。。",
        ]
        for text in plain {
            XCTAssertFalse(GroupRules.containsLink(text), "seen as a link: \(text)")
        }
    }
}
