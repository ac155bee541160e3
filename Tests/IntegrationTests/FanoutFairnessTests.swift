import Foundation
import GatewayClient
import GatewayProtocol
import XCTest

/// A publication to more subscribers than one loop turn's fan-out budget (`limits.fanout_per_turn`,
/// 500 here) goes out over several turns, with HTTP answered in between: order and
/// exactly-once must hold anyway.
final class FanoutFairnessTests: IntegrationCase {
    /// A publisher that sends each publish only after the previous answer, to 1,100
    /// subscribers on one node, while some subscribers unsubscribe and resume with `since`
    /// between publications (their fan-out may still be pending): every subscriber sees every
    /// publication once, in order, from pushes and its recovery replies together.
    func testEveryoneGetsEveryPublicationOnceInOrderWhileThePublisherWaitsForAnswers() throws {
        let node = try startNode(env: ["GATEWAY_LIMITS_FANOUT_PER_TURN": "500"])
        try createProduct(node, "p1")
        let channel = "product:p1"
        let count = 1_100
        let setUp = SetUp(count)
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for i in stride(from: worker, to: count, by: 4) {
                do {
                    let (s, reply) = try GatewaySession.open(loop: Self.loop, url: node.wsURL, token: token("f\(i)"))
                    let ok = try s.command("subscribe", [("channel", .string(channel))])["ok"]
                    guard reply["ok"] != nil, let epoch = ok?["epoch"]?.stringValue else { continue }
                    setUp.add(i, s, epoch: epoch)
                } catch {}
            }
        }
        let (subscribers, epoch) = setUp.result
        XCTAssertEqual(subscribers.count, count, "subscribers set up")

        // Offsets each subscriber has seen, from pushes and from recovery replies.
        var seen = [[Int64]](repeating: [], count: subscribers.count)
        func take(_ i: Int) {
            for push in subscribers[i].drainPushes() where push["channel"]?.stringValue == channel {
                seen[i].append(push["offset"]?.intValue ?? -1)
            }
        }
        let total = 20
        let churners = Array(stride(from: 7, to: subscribers.count, by: 137))
        for n in 1...total {
            XCTAssertEqual(try publish(node, channel, n), Int64(n))
            guard n % 4 == 0 else { continue }
            for i in churners {
                let s = subscribers[i]
                XCTAssertNotNil(try s.command("unsubscribe", [("channel", .string(channel))])["ok"])
                // Everything pushed before the unsubscribe reply came before it.
                take(i)
                let since = JSON.object([("offset", .int(seen[i].last ?? 0)), ("epoch", .string(epoch))])
                let ok = try XCTUnwrap(try s.command("subscribe", [("channel", .string(channel)), ("since", since)])["ok"])
                XCTAssertEqual(ok["recovered"]?.boolValue, true, "\(ok)")
                seen[i] += ok["publications"]?.arrayValue?.map { $0["offset"]?.intValue ?? -1 } ?? []
            }
        }
        let deadline = Date().addingTimeInterval(60)
        for i in subscribers.indices {
            take(i)
            while seen[i].count < total && Date() < deadline, let push = subscribers[i].nextPush(timeout: 10) {
                if push["channel"]?.stringValue == channel { seen[i].append(push["offset"]?.intValue ?? -1) }
            }
        }
        var wrong = 0
        for i in subscribers.indices where seen[i] != Array(1...Int64(total)) {
            if wrong < 3 { XCTFail("subscriber \(i)\(churners.contains(i) ? " (churner)" : ""): \(seen[i])") }
            wrong += 1
        }
        XCTAssertEqual(wrong, 0, "subscribers with missing, duplicated or reordered publications")
        for i in churners + [0, subscribers.count - 1] {
            XCTAssertNil(subscribers[i].nextPush(timeout: 0.2), "no duplicates after the last publication")
        }
        XCTAssertEqual(try node.http("GET", "/healthz").status, 200)
    }

}

/// Sessions opened by several threads, and the channel's epoch.
private final class SetUp: @unchecked Sendable {
    private let lock = NSLock()
    private var sessions: [GatewaySession?]
    private var epoch = ""
    init(_ count: Int) { sessions = Array(repeating: nil, count: count) }
    func add(_ i: Int, _ s: GatewaySession, epoch: String) {
        lock.withLock {
            sessions[i] = s
            self.epoch = epoch
        }
    }
    var result: ([GatewaySession], String) { lock.withLock { (sessions.compactMap { $0 }, epoch) } }
}
