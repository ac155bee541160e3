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
            guard let words = item["keywords"]?.arrayValue?.compactMap(\.stringValue), !words.isEmpty,
                  words.allSatisfy({ !$0.isEmpty }) else {
                return .failure(.badRequest("answers[\(i)].keywords must be a non-empty list of words"))
            }
            guard let answer = item["answer"]?.stringValue, (1...1000).contains(answer.count) else {
                return .failure(.badRequest("answers[\(i)].answer must be 1 to 1000 characters"))
            }
            rules.append(Rule(keywords: words.map { $0.lowercased() }, answer: answer))
        }
        return .success(BotAnswers(rules: rules))
    }

    /// The first rule with a keyword in `text` (case-insensitive), if any.
    public func answer(to text: String) -> String? {
        let lower = text.lowercased()
        return rules.first { rule in rule.keywords.contains { lower.contains($0) } }?.answer
    }
}
