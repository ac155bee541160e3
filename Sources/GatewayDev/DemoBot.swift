import CommunityCore
import Foundation
import Logging
import GatewayAuth
import GatewayNode
import GatewayProtocol

/// The sample bot (`gateway bot`) answering in the demo products' groups of a `--dev` node,
/// on a thread of its own with a token minted from the node's own secret.
public enum DemoBot {
    static let user = "demo-bot"

    public static func reachableHost(_ host: String) -> String {
        ["", "0.0.0.0", "::", "*"].contains(host) ? "127.0.0.1" : host
    }

    /// Config/bot-answers.json from the working directory, else from the source tree.
    static func answersFile() -> URL? {
        let local = URL(fileURLWithPath: "Config/bot-answers.json")
        if FileManager.default.fileExists(atPath: local.path) { return local }
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Config/bot-answers.json")
        return FileManager.default.fileExists(atPath: source.path) ? source : nil
    }

    public static func start(host: String, port: Int, secret: String, tls: Bool) {
        guard let file = answersFile(), let data = try? Data(contentsOf: file),
              case .success(let brain) = BotAnswers.decode((try? JSON.parse(Array(data))) ?? .null) else {
            print("dev mode: no usable Config/bot-answers.json, the demo groups run without a bot")
            return
        }
        let products = Node.demoProducts.map(\.id)
        let url = "\(tls ? "wss" : "ws")://\(reachableHost(host)):\(port)/ws"
        let minter = TokenMinter(secret: secret)
        let thread = Thread {
            // Give the node a moment to reach Redis and create the demo products.
            Thread.sleep(forTimeInterval: 1.5)
            var runner = BotRunner(products: products, brain: brain, url: url, maxBackoff: 10,
                                   shouldAnswer: { DemoBotLease.shared.isHeld })
            // Its own node's certificate, on loopback.
            runner.allowSelfSigned = tls
            do {
                try runner.run(token: {
                    minter.mint(Claims(sub: user, exp: Int64(Date().timeIntervalSince1970) + 86400, role: .bot,
                                       products: products, name: "Shop helper"))
                }, giveUp: false)
            } catch {
                Logger(label: "bot").error("dev bot stopped: \(error)")
            }
        }
        thread.name = "demo-bot"
        thread.start()
    }
}
