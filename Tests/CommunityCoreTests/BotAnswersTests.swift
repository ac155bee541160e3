import Foundation
import XCTest
import GatewayProtocol
@testable import CommunityCore

/// The group bot's keyword answers: `{"answers":[{"keywords":[...],"answer":"..."}]}`.
final class BotAnswersTests: XCTestCase {
    // MARK: helpers

    private func decode(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> Result<BotAnswers, GatewayError> {
        do {
            return BotAnswers.decode(try JSON.parse(text))
        } catch {
            XCTFail("test JSON does not parse: \(error)", file: file, line: line)
            return .failure(.badRequest("unparsable test input"))
        }
    }

    private func answers(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> BotAnswers? {
        switch decode(text, file: file, line: line) {
        case .success(let a): return a
        case .failure(let e):
            XCTFail("refused: \(e.message)", file: file, line: line)
            return nil
        }
    }

    private func assertRefused(_ text: String, containing fragment: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        switch decode(text, file: file, line: line) {
        case .success(let a):
            XCTFail("accepted \(text) as \(a.rules.map { ($0.keywords, $0.answer) })", file: file, line: line)
        case .failure(let e):
            XCTAssertEqual(e.code, .badRequest, file: file, line: line)
            XCTAssertFalse(e.temporary, file: file, line: line)
            XCTAssertTrue(e.message.contains(fragment), "\"\(e.message)\" lacks \"\(fragment)\"", file: file, line: line)
        }
    }

    private func rule(_ keywords: String, _ answer: String) -> String {
        #"{"keywords":\#(keywords),"answer":\#(JSON.string(answer).serialized())}"#
    }

    private static var sampleFile: URL {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()   // CommunityCoreTests
            .deletingLastPathComponent()   // Tests
            .deletingLastPathComponent()   // package root
            .appendingPathComponent("Config")
            .appendingPathComponent("bot-answers.json")
    }

    // MARK: decode errors

    func testMissingAnswersIsRefused() {
        assertRefused("{}", containing: "\"answers\"")
        assertRefused(#"{"answer":[]}"#, containing: "\"answers\"")
        assertRefused(#"{"answers":null}"#, containing: "\"answers\"")
        assertRefused(#"{"answers":{"keywords":["a"],"answer":"b"}}"#, containing: "\"answers\"")
        assertRefused(#"{"answers":"activate"}"#, containing: "\"answers\"")
    }

    func testNotAnObjectIsRefused() {
        assertRefused("[]", containing: "\"answers\"")
        assertRefused("null", containing: "\"answers\"")
        assertRefused(#""answers""#, containing: "\"answers\"")
        XCTAssertThrowsError(try BotAnswers.decode(JSON.null).get())
    }

    func testEmptyAnswersIsRefused() {
        assertRefused(#"{"answers":[]}"#, containing: "non-empty")
    }

    func testEmptyKeywordsAreRefused() {
        assertRefused(#"{"answers":[\#(rule("[]", "hi"))]}"#, containing: "answers[0].keywords")
        assertRefused(#"{"answers":[\#(rule(#"[""]"#, "hi"))]}"#, containing: "answers[0].keywords")
        assertRefused(#"{"answers":[\#(rule(#"["ok",""]"#, "hi"))]}"#, containing: "answers[0].keywords")
        assertRefused(#"{"answers":[{"answer":"hi"}]}"#, containing: "answers[0].keywords")
        assertRefused(#"{"answers":[\#(rule("null", "hi"))]}"#, containing: "answers[0].keywords")
        assertRefused(#"{"answers":[\#(rule(#""activate""#, "hi"))]}"#, containing: "answers[0].keywords")
    }

    /// A blank keyword would match almost every message (" " is in any sentence).
    func testBlankKeywordsAreRefused() {
        assertRefused(#"{"answers":[\#(rule(#"[" "]"#, "hi"))]}"#, containing: "answers[0].keywords")
        assertRefused(#"{"answers":[\#(rule(#"["ok","\t\n "]"#, "hi"))]}"#, containing: "answers[0].keywords")
    }

    /// A keyword list with something that is not a word is malformed, not silently shortened.
    func testNonStringKeywordsAreRefused() {
        assertRefused(#"{"answers":[\#(rule("[1, 2]", "hi"))]}"#, containing: "answers[0].keywords")
        assertRefused(#"{"answers":[\#(rule(#"["refund", 7]"#, "hi"))]}"#, containing: "answers[0].keywords")
        assertRefused(#"{"answers":[\#(rule(#"["refund", null]"#, "hi"))]}"#, containing: "answers[0].keywords")
    }

    func testErrorNamesTheFaultyRule() {
        let text = #"{"answers":[\#(rule(#"["a"]"#, "x")),\#(rule(#"["b"]"#, "y")),\#(rule("[]", "z"))]}"#
        assertRefused(text, containing: "answers[2].keywords")
        let text2 = #"{"answers":[\#(rule(#"["a"]"#, "x")),\#(rule(#"["b"]"#, ""))]}"#
        assertRefused(text2, containing: "answers[1].answer")
    }

    func testEmptyAnswerIsRefused() {
        assertRefused(#"{"answers":[\#(rule(#"["a"]"#, ""))]}"#, containing: "answers[0].answer")
        assertRefused(#"{"answers":[{"keywords":["a"]}]}"#, containing: "answers[0].answer")
        assertRefused(#"{"answers":[{"keywords":["a"],"answer":null}]}"#, containing: "answers[0].answer")
        assertRefused(#"{"answers":[{"keywords":["a"],"answer":42}]}"#, containing: "answers[0].answer")
        assertRefused(#"{"answers":[{"keywords":["a"],"answer":["x"]}]}"#, containing: "answers[0].answer")
    }

    /// The bot posts the answer as a group message, which must be 1 to 1000 characters
    /// after trimming (PROTOCOL.md 2.2): a blank answer could never be sent.
    func testBlankAnswerIsRefused() {
        assertRefused(#"{"answers":[\#(rule(#"["a"]"#, "   "))]}"#, containing: "answers[0].answer")
        assertRefused(#"{"answers":[\#(rule(#"["a"]"#, "\n\t "))]}"#, containing: "answers[0].answer")
    }

    /// Length counts after trimming, as for group messages; the stored answer is what gets sent.
    func testAnswerIsTrimmed() {
        let longest = String(repeating: "x", count: 1000)
        XCTAssertEqual(answers(#"{"answers":[\#(rule(#"["a"]"#, "  \n" + longest + "\t "))]}"#)?.rules.first?.answer, longest)
        XCTAssertEqual(answers(#"{"answers":[\#(rule(#"["a"]"#, " Hello, 你好 "))]}"#)?.answer(to: "a"), "Hello, 你好")
        assertRefused(#"{"answers":[\#(rule(#"["a"]"#, " " + longest + "y "))]}"#, containing: "answers[0].answer")
    }

    func testTooLongAnswerIsRefused() {
        assertRefused(#"{"answers":[\#(rule(#"["a"]"#, String(repeating: "x", count: 1001)))]}"#,
                      containing: "answers[0].answer")
        assertRefused(#"{"answers":[\#(rule(#"["a"]"#, String(repeating: "激", count: 1001)))]}"#,
                      containing: "answers[0].answer")
    }

    func testAnswerLengthLimitsAreInclusive() {
        XCTAssertEqual(answers(#"{"answers":[\#(rule(#"["a"]"#, "k"))]}"#)?.rules.first?.answer, "k")
        let longest = String(repeating: "x", count: 1000)
        XCTAssertEqual(answers(#"{"answers":[\#(rule(#"["a"]"#, longest))]}"#)?.rules.first?.answer, longest)
    }

    /// Characters, as group messages count them, not UTF-8 bytes.
    func testAnswerLengthCountsCharacters() {
        let chinese = String(repeating: "激", count: 1000)       // 3000 UTF-8 bytes
        XCTAssertEqual(answers(#"{"answers":[\#(rule(#"["a"]"#, chinese))]}"#)?.rules.first?.answer, chinese)
        let emoji = String(repeating: "👍🏽", count: 1000)       // 1000 characters, 2000 scalars
        XCTAssertEqual(answers(#"{"answers":[\#(rule(#"["a"]"#, emoji))]}"#)?.rules.first?.answer, emoji)
    }

    /// Whatever decode accepts, the gateway accepts as a group message.
    func testAcceptedAnswersAreValidGroupMessages() {
        let samples = ["k", String(repeating: "x", count: 1000), String(repeating: "激", count: 1000),
                       String(repeating: "👍🏽", count: 1000), " padded answer "]
        for sample in samples {
            guard let a = answers(#"{"answers":[\#(rule(#"["a"]"#, sample))]}"#), let text = a.answer(to: "a") else {
                XCTFail("no answer for \(sample.prefix(20))")
                continue
            }
            assertPublishable(text)
        }
    }

    private func assertPublishable(_ text: String, file: StaticString = #filePath, line: UInt = #line) {
        let command = JSON.object([("op", .string("publish")), ("channel", .string("group:p1")),
                                   ("data", .object([("text", .string(text)), ("reply_to", .int(3))]))])
        switch CommandDecoder.decodeCommand(command) {
        case .success(.community(.publish(_, let sent, let replyTo))):
            XCTAssertFalse(sent.isEmpty, file: file, line: line)
            XCTAssertEqual(replyTo, 3, file: file, line: line)
        case .success(let other):
            XCTFail("decoded as \(other)", file: file, line: line)
        case .failure(let e):
            XCTFail("the gateway would refuse the answer: \(e.message)", file: file, line: line)
        }
    }

    func testKeywordsAreStoredLowercased() {
        let a = answers(#"{"answers":[\#(rule(#"["ACTIVATE","Redeem"]"#, "ok"))]}"#)
        XCTAssertEqual(a?.rules.first?.keywords, ["activate", "redeem"])
        XCTAssertEqual(a?.rules.count, 1)
    }

    func testExtraFieldsAreIgnored() {
        let a = answers(#"{"version":1,"answers":[{"keywords":["a"],"answer":"b","note":"x"}]}"#)
        XCTAssertEqual(a?.answer(to: "A"), "b")
    }

    // MARK: matching

    private let twoRules = #"""
    {"answers":[
      {"keywords":["activate","Redeem","激活"],"answer":"ACT"},
      {"keywords":["refund","退款","ACTIVATE"],"answer":"REF"}
    ]}
    """#

    func testMatchIsCaseInsensitive() {
        let a = answers(twoRules)
        XCTAssertEqual(a?.answer(to: "activate"), "ACT")
        XCTAssertEqual(a?.answer(to: "How do I ACTIVATE it?"), "ACT")
        XCTAssertEqual(a?.answer(to: "AcTiVaTe"), "ACT")
        XCTAssertEqual(a?.answer(to: "redeem please"), "ACT", "upper-case keyword in the file")
        XCTAssertEqual(a?.answer(to: "REDEEM"), "ACT")
        XCTAssertEqual(a?.answer(to: "I want a Refund"), "REF")
    }

    func testMatchIsASubstring() {
        let a = answers(twoRules)
        XCTAssertEqual(a?.answer(to: "reactivated?"), "ACT")
        XCTAssertEqual(a?.answer(to: "refunds!"), "REF")
    }

    func testChineseKeywords() {
        let a = answers(twoRules)
        XCTAssertEqual(a?.answer(to: "怎么激活"), "ACT")
        XCTAssertEqual(a?.answer(to: "激活"), "ACT")
        XCTAssertEqual(a?.answer(to: "可以退款吗？"), "REF")
        XCTAssertNil(a?.answer(to: "激"))
        XCTAssertNil(a?.answer(to: "退"))
    }

    func testFirstRuleWins() {
        let a = answers(twoRules)
        // "activate" is in both rules: the first one answers.
        XCTAssertEqual(a?.answer(to: "activate"), "ACT")
        // Rule order decides, not where the keyword sits in the text.
        XCTAssertEqual(a?.answer(to: "refund or activate?"), "ACT")
        XCTAssertEqual(a?.answer(to: "退款还是激活"), "ACT")
        let reversed = answers(#"{"answers":[{"keywords":["refund"],"answer":"REF"},{"keywords":["activate"],"answer":"ACT"}]}"#)
        XCTAssertEqual(reversed?.answer(to: "activate or refund?"), "REF")
    }

    func testNoMatchIsNil() {
        let a = answers(twoRules)
        XCTAssertNil(a?.answer(to: ""))
        XCTAssertNil(a?.answer(to: "hello everyone"))
        XCTAssertNil(a?.answer(to: "activ ate"))
        XCTAssertNil(a?.answer(to: "refun"))
        XCTAssertNil(a?.answer(to: "你好"))
    }

    // MARK: the sample file

    private func sample(file: StaticString = #filePath, line: UInt = #line) throws -> BotAnswers {
        let data = try Data(contentsOf: Self.sampleFile)
        let json = try JSON.parse(Array(data))
        return try BotAnswers.decode(json).get()
    }

    func testSampleFileDecodes() throws {
        let a = try sample()
        XCTAssertEqual(a.rules.count, 5)
        for rule in a.rules {
            XCTAssertFalse(rule.keywords.isEmpty)
            XCTAssertEqual(rule.keywords, rule.keywords.map { $0.lowercased() })
            assertPublishable(rule.answer)
        }
    }

    func testSampleFileAnswersActivationInEnglishAndChinese() throws {
        let a = try sample()
        let english = try XCTUnwrap(a.answer(to: "How do I activate this card?"))
        XCTAssertTrue(english.hasPrefix("To redeem a game card"), english)
        XCTAssertTrue(english.contains("兑换方法"), english)
        let chinese = try XCTUnwrap(a.answer(to: "怎么激活"))
        XCTAssertEqual(chinese, english)
        XCTAssertEqual(a.answer(to: "HOW DO I REDEEM?"), english)
        XCTAssertEqual(a.answer(to: "兑换码在哪"), english)
    }

    func testSampleFileOtherRules() throws {
        let a = try sample()
        XCTAssertEqual(a.answer(to: "Which region is this?")?.hasPrefix("These cards are for the region"), true)
        XCTAssertEqual(a.answer(to: "这个是哪个区服的"), a.answer(to: "region"))
        XCTAssertEqual(a.answer(to: "My key does not work")?.hasPrefix("Sorry!"), true)
        XCTAssertEqual(a.answer(to: "卡密无效"), a.answer(to: "invalid"))
        XCTAssertEqual(a.answer(to: "Can I get a refund?")?.hasPrefix("Unused keys can be refunded"), true)
        XCTAssertEqual(a.answer(to: "能送给朋友吗"), a.answer(to: "gift"))
        XCTAssertEqual(a.answer(to: "Buy as a GIFT?")?.hasPrefix("Buy it as a gift"), true)
        XCTAssertNil(a.answer(to: "hello, anyone here?"))
        XCTAssertNil(a.answer(to: "v1.2 is great"))
    }
}
