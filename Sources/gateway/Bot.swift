import ArgumentParser
import CommunityCore
import Foundation
import GatewayClient
import GatewayDev
import GatewayLog
import GatewayProtocol
import Logging

/// A group bot built on the client library, as an example of how bots are written:
/// it joins its products' groups, answers questions from an answers file, and
/// reconnects with backoff and full jitter, resuming every group with `since`.
struct Bot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a group bot (token from GATEWAY_BOT_TOKEN; mint one with `gateway token --role bot --products P`).")

    @Option(name: .long, help: "Product whose group to join (repeatable).") var product: [String]
    @Option(help: "Answers file (JSON), e.g. Config/bot-answers.json.") var answers: String
    @Option(help: "Gateway WebSocket URL.") var url = "ws://127.0.0.1:8080/ws"
    @Option(help: "Longest wait between reconnects, seconds.") var maxBackoff = 30.0

    func run() throws {
        GatewayLog.bootstrap(node: "bot", level: .info)
        guard let token = ProcessInfo.processInfo.environment["GATEWAY_BOT_TOKEN"], !token.isEmpty else {
            throw ValidationError("set GATEWAY_BOT_TOKEN to a bot token listing the products")
        }
        guard !product.isEmpty, product.allSatisfy(Names.isValidID) else { throw ValidationError("give at least one valid --product") }
        let data = try Data(contentsOf: URL(fileURLWithPath: answers))
        let brain: BotAnswers
        switch BotAnswers.decode((try? JSON.parse(Array(data))) ?? .null) {
        case .success(let b): brain = b
        case .failure(let e): throw ValidationError("\(answers): \(e.message)")
        }
        do {
            try BotRunner(products: product, brain: brain, url: url, maxBackoff: maxBackoff).run(token: { token }, giveUp: true)
        } catch let refused as BotRefused {
            throw ValidationError(refused.message)
        }
    }
}

/// The process logger (JSON lines once `serve` or `bot` bootstrapped it).
private let botLogger = Logger(label: "bot")
