import GatewayCore
@testable import GatewayNode
import GatewayRedis
import XCTest

/// The sender's own scheduling, against a store and a transport that answer only when the
/// test says so: what it claims while decisions keep coming, when it stops claiming, and
/// its deadline on a transport that never answers.
final class WebhookSenderLoopTests: XCTestCase {
    final class HeldStore: WebhookStore {
        var dispatches: [(StoreResult<Int>) -> Void] = []
        var claims: [(count: Int, done: (StoreResult<WebhookClaims>) -> Void)] = []
        var settled: [(WebhookClaim, WebhookOutcome)] = []
        func dispatch(limit: Int, _ done: @escaping (StoreResult<Int>) -> Void) { dispatches.append(done) }
        func claim(count: Int, leaseMs: Int64, node: String, _ done: @escaping (StoreResult<WebhookClaims>) -> Void) {
            claims.append((count, done))
        }
        func settle(_ claim: WebhookClaim, _ outcome: WebhookOutcome, _ done: @escaping (StoreResult<Bool>) -> Void) {
            settled.append((claim, outcome))
            done(.success(true))
        }
        func backlog(_ done: @escaping (StoreResult<WebhookBacklog>) -> Void) {}
    }

    final class SilentTransport: WebhookTransport {
        var posts = 0
        func post(body: [UInt8], headers: [WebhookDelivery.Header], timeoutMs: Int64, _ done: @escaping (Int?) -> Void) { posts += 1 }
    }

    var timers: [(ms: Int, body: () -> Void, cancelled: Bool)] = []

    func sender(_ store: HeldStore, _ transport: SilentTransport, concurrency: Int = 2) -> WebhookSender {
        WebhookSender(store: store, transport: transport, retry: WebhookRetry(maxBackoffSeconds: 600, retryForSeconds: 3_600),
                      secret: "whsec-test", node: "n1", concurrency: concurrency, nowMs: { 1_764_600_000_000 }, jitter: { 0.5 },
                      schedule: { [unowned self] ms, body in
                          let i = self.timers.count
                          self.timers.append((ms, body, false))
                          return { self.timers[i].cancelled = true }
                      }, log: { _ in })
    }

    func claims(_ keys: [String]) throws -> WebhookClaims {
        func bulk(_ s: String) -> RedisReply { .string(Array(s.utf8)) }
        let leased: [RedisReply] = keys.enumerated().map { i, key in
            let fields = ["type", "order.paid", "key", key, "at", "1764599999990", "data", "{}"]
            return .array([bulk(key), bulk("1764599999990-\(i)"), bulk("n1:\(i)"), .integer(1), .array(fields.map(bulk))])
        }
        return try WebhookClaims(redisReply: .array([.array(leased), .array([])]))
    }

    /// Decisions arriving during every dispatch must not keep claims from going out.
    func testClaimsGoOutWhileDecisionsKeepArriving() {
        let store = HeldStore()
        let s = sender(store, SilentTransport())
        s.tick()
        for round in 0..<5 {
            s.tick()  // a decision logged events while the dispatch is on its way
            XCTAssertEqual(store.dispatches.count, round + 1)
            store.dispatches[round](.success(1))
            XCTAssertEqual(store.claims.count, 1, "claimed after the first dispatch, whatever came in meanwhile")
        }
    }

    func testAStoppedSenderClaimsNothingMore() throws {
        let store = HeldStore()
        let transport = SilentTransport()
        let s = sender(store, transport)
        s.tick()
        store.dispatches[0](.success(0))
        store.claims[0].done(.success(try claims(["o-a"])))
        XCTAssertEqual(transport.posts, 1)
        s.stop()
        s.tick()
        XCTAssertEqual(store.dispatches.count, 1, "no tick after stop")
        timers[0].body()  // the delivery in flight ends (no answer): it settles, nothing new is claimed
        XCTAssertEqual(store.settled.count, 1)
        XCTAssertEqual(store.claims.count, 1)
        XCTAssertEqual(s.inFlight, 0)
    }

    /// A transport that never calls back (a resolver hanging, a lost callback) still ends
    /// the attempt before the lease (30 s) would let another node send the same event.
    func testTheSendersDeadlineEndsAnAttemptTheTransportNeverAnswers() throws {
        let store = HeldStore()
        let s = sender(store, SilentTransport())
        s.tick()
        store.dispatches[0](.success(0))
        store.claims[0].done(.success(try claims(["o-a", "o-b"])))
        XCTAssertEqual(s.inFlight, 2)
        XCTAssertEqual(timers.map(\.ms), [11_000, 11_000])
        XCTAssertLessThan(Int64(timers[0].ms), WebhookRetry.leaseMs)
        timers[0].body()
        timers[1].body()
        XCTAssertEqual(s.inFlight, 0)
        XCTAssertEqual(store.settled.map(\.1), [.retry(afterMs: 1_000), .retry(afterMs: 1_000)])
        XCTAssertEqual(s.attempts, ["retry": 2])
    }

    func testAnUnreadableClaimIsGivenUpAndTheRestSent() throws {
        func bulk(_ s: String) -> RedisReply { .string(Array(s.utf8)) }
        let store = HeldStore()
        let transport = SilentTransport()
        let s = sender(store, transport)
        var batch = try claims(["o-b"])
        batch.leased.insert(try WebhookClaim(redisReply: .array([bulk("o-a"), bulk("1-1"), bulk("n1:9"), .integer(1),
                                                                 .array([bulk("type"), bulk("order.paid")])])), at: 0)
        s.tick()
        store.dispatches[0](.success(0))
        store.claims[0].done(.success(batch))
        XCTAssertEqual(transport.posts, 1, "the readable one is sent")
        guard case .giveUp(let reason)? = store.settled.first?.1 else { return XCTFail("\(store.settled)") }
        XCTAssertTrue(reason.hasPrefix("unreadable log entry"), reason)
        XCTAssertEqual(store.settled.first?.0.key, "o-a")
    }
}
