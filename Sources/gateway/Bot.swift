import ArgumentParser
import CommunityCore
import Foundation
import GatewayClient
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
        try BotRunner(products: product, brain: brain, url: url, maxBackoff: maxBackoff).run(token: { token }, giveUp: true)
    }
}

/// The bot's connection loop, shared by `gateway bot` and the bot `serve --dev` runs for
/// the demo products: joins every product's group, answers, and on any drop reconnects
/// with backoff and full jitter, resuming each group with `since`.
struct BotRunner {
    let products: [String]
    let brain: BotAnswers
    let url: String
    var maxBackoff = 30.0
    /// Asked before each answer (the dev bot answers only while its node holds the lease).
    var shouldAnswer: @Sendable () -> Bool = { true }

    /// - Parameters:
    ///   - token: asked before every connection (the dev bot mints a fresh one each time).
    ///   - giveUp: throw on a refusal (4002/4003/4010/4011, a group it may not join)
    ///     instead of trying again after the backoff.
    func run(token: () -> String, giveUp: Bool) throws {
        let product = products
        let loop = try ClientLoop()
        var positions: [String: GatewaySession.Position] = [:]
        var attempt = 0
        while true {
            do {
                let (session, reply) = try GatewaySession.open(loop: loop, url: url, token: token(), timeout: 10)
                guard let me = reply["ok"]?["user"]?.stringValue else {
                    let message = reply["error"]?["message"]?.stringValue ?? "\(reply)"
                    if let code = session.waitClosed(timeout: 2), [4002, 4003, 4010, 4011].contains(code) {
                        throw ValidationError("the gateway refused the bot (\(code)): \(message)")
                    }
                    throw GatewayClientError.closed(code: nil, reason: message)
                }
                for p in product {
                    let channel = "group:\(p)"
                    var fields: [(String, JSON)] = [("channel", .string(channel))]
                    if let pos = positions[channel] {
                        fields.append(("since", .object([("offset", .int(pos.offset)), ("epoch", .string(pos.epoch))])))
                    }
                    let r = try session.command("subscribe", fields)
                    if let e = r["error"] {
                        session.close()
                        throw ValidationError("cannot join \(channel): \(e["message"]?.stringValue ?? "\(e)")")
                    }
                    for pub in r["ok"]?["publications"]?.arrayValue ?? [] { answer(pub, session, brain, me) }
                }
                print("bot \(me) answering in \(product.map { "group:\($0)" }.joined(separator: ", "))")
                fflush(stdout)
                attempt = 0
                while !session.isClosed {
                    guard let push = session.nextPush(timeout: 1) else { continue }
                    answer(push, session, brain, me)
                    for (channel, pos) in session.positions where channel.hasPrefix("group:") { positions[channel] = pos }
                }
                let code = session.waitClosed(timeout: 1)
                for (channel, pos) in session.positions where channel.hasPrefix("group:") { positions[channel] = pos }
                if let code, [4002, 4003, 4010, 4011].contains(code) {
                    throw ValidationError("closed by the gateway with \(code): \(session.closeReason); not reconnecting")
                }
            } catch let error as ValidationError {
                if giveUp { throw error }
                botLogger.warning("bot: \(error.message)")
            } catch {
                botLogger.warning("bot: \(error)")
            }
            attempt += 1
            let cap = min(maxBackoff, 0.5 * pow(2, Double(min(attempt, 10))))
            let delay = Double.random(in: 0...cap)
            botLogger.notice("bot: reconnecting in \(String(format: "%.1f", delay)) s")
            Thread.sleep(forTimeInterval: delay)
        }
    }

    private func answer(_ push: JSON, _ session: GatewaySession, _ brain: BotAnswers, _ me: String) {
        guard push["push"]?.stringValue == "group.message", let channel = push["channel"]?.stringValue,
              let data = push["data"], data["from"]?.stringValue != me, data["role"]?.stringValue == "buyer",
              let text = data["text"]?.stringValue, let offset = push["offset"]?.intValue,
              shouldAnswer(), let reply = brain.answer(to: text) else { return }
        _ = try? session.command("publish", [("channel", .string(channel)),
                                             ("data", .object([("text", .string(reply)), ("reply_to", .int(offset))]))])
    }
}

/// The process logger (JSON lines once `serve` or `bot` bootstrapped it).
private let botLogger = Logger(label: "bot")
