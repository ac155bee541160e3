import CommunityCore
import Foundation
import Logging
import GatewayClient
import GatewayProtocol

/// The bot's connection loop, shared by `gateway bot` and the bot `serve --dev` runs for
/// the demo products: joins every product's group, answers, and on any drop reconnects
/// with backoff and full jitter, resuming each group with `since`.
public struct BotRunner {
    let products: [String]
    let brain: BotAnswers
    let url: String
    var maxBackoff = 30.0
    /// Asked before each answer (the dev bot answers only while its node holds the lease).
    var shouldAnswer: @Sendable () -> Bool = { true }
    /// `wss://` to a self-signed certificate (the dev bot talks to its own node on loopback).
    var allowSelfSigned = false

    public init(products: [String], brain: BotAnswers, url: String, maxBackoff: Double = 30.0,
                shouldAnswer: @escaping @Sendable () -> Bool = { true }) {
        self.products = products
        self.brain = brain
        self.url = url
        self.maxBackoff = maxBackoff
        self.shouldAnswer = shouldAnswer
    }

    /// Closes after which the same token cannot get back in.
    static let refusals: Set<UInt16> = Set([CloseCode.badToken, .tokenExpired, .removed, .protocolViolations].map(\.rawValue))

    /// - Parameters:
    ///   - token: asked before every connection (the dev bot mints a fresh one each time).
    ///   - giveUp: throw on a refusal (`refusals`, a group it may not join)
    ///     instead of trying again after the backoff.
    public func run(token: () -> String, giveUp: Bool) throws {
        let product = products
        let loop = try ClientLoop(allowSelfSigned: allowSelfSigned)
        var positions: [String: GatewaySession.Position] = [:]
        var attempt = 0
        while true {
            do {
                let (session, reply) = try GatewaySession.open(loop: loop, url: url, token: token(), timeout: 10)
                guard let me = reply["ok"]?["user"]?.stringValue else {
                    let message = reply["error"]?["message"]?.stringValue ?? "\(reply)"
                    if let code = session.waitClosed(timeout: 2), Self.refusals.contains(code) {
                        throw BotRefused("the gateway refused the bot (\(code)): \(message)")
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
                        throw BotRefused("cannot join \(channel): \(e["message"]?.stringValue ?? "\(e)")")
                    }
                    for pub in r["ok"]?["publications"]?.arrayValue ?? [] { answer(pub, session, brain, me) }
                }
                print("bot \(me) answering in \(product.map { "group:\($0)" }.joined(separator: ", "))")
                fflush(nil) // all streams: `stdout` is shared mutable state to Swift 6
                attempt = 0
                while !session.isClosed {
                    guard let push = session.nextPush(timeout: 1) else { continue }
                    answer(push, session, brain, me)
                    for (channel, pos) in session.positions where channel.hasPrefix("group:") { positions[channel] = pos }
                }
                let code = session.waitClosed(timeout: 1)
                for (channel, pos) in session.positions where channel.hasPrefix("group:") { positions[channel] = pos }
                if let code, Self.refusals.contains(code) {
                    throw BotRefused("closed by the gateway with \(code): \(session.closeReason); not reconnecting")
                }
            } catch let error as BotRefused {
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

/// The gateway refused the bot in a way reconnecting cannot mend (a bad token, a group it may not join).
public struct BotRefused: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
    init(_ message: String) { self.message = message }
}

/// The process logger (JSON lines once `serve` or `bot` bootstrapped it).
private let botLogger = Logger(label: "bot")
