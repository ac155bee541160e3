import GatewayProtocol

/// Keyword answers for a group bot, loaded from a JSON file:
/// `{"answers":[{"keywords":["activate","激活"],"answer":"..."}]}`.
public struct BotAnswers: Sendable {
    public struct Rule: Sendable {
        public var keywords: [String]
        public var answer: String
    }

    public var rules: [Rule]

    public static func decode(_ json: JSON) -> Result<BotAnswers, GatewayError> {
        guard let list = json["answers"]?.arrayValue, !list.isEmpty else {
            return .failure(.badRequest("the answers file needs a non-empty \"answers\" array"))
        }
        var rules: [Rule] = []
        for (i, item) in list.enumerated() {
            // Every keyword a string with a non-blank word: a blank one would match nearly any text.
            guard let given = item["keywords"]?.arrayValue, !given.isEmpty,
                  case let words = given.compactMap(\.stringValue), words.count == given.count,
                  words.allSatisfy({ !trimmed($0).isEmpty }) else {
                return .failure(.badRequest("answers[\(i)].keywords must be a non-empty list of words"))
            }
            // Posted as a group message: 1 to 1000 characters after trimming (PROTOCOL.md 2.2).
            guard let raw = item["answer"]?.stringValue, case let answer = trimmed(raw), (1...1000).contains(answer.count) else {
                return .failure(.badRequest("answers[\(i)].answer must be 1 to 1000 characters"))
            }
            rules.append(Rule(keywords: words.map { $0.lowercased() }, answer: answer))
        }
        return .success(BotAnswers(rules: rules))
    }

    private static func trimmed(_ text: String) -> String {
        guard let first = text.firstIndex(where: { !$0.isWhitespace }),
              let last = text.lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return String(text[first...last])
    }

    /// The first rule with a keyword in `text` (case-insensitive), if any.
    public func answer(to text: String) -> String? {
        let lower = text.lowercased()
        return rules.first { rule in rule.keywords.contains { lower.contains($0) } }?.answer
    }
}
