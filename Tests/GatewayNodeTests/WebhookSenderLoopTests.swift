import GatewayCore
@testable import GatewayNode
import GatewayRedis
import XCTest

/// The sender's own scheduling, against a store and a transport that answer only when the
/// test says so: what it claims while decisions keep coming, how it batches settlements,
/// when it stops claiming, and its deadline on a transport that never answers.
final class WebhookSenderLoopTests: XCTestCase {
    final class HeldStore: WebhookStore {
        var dispatches: [(StoreResult<Int>) -> Void] = []
        var steps: [(settlements: [WebhookSettlement], count: Int, done: (StoreResult<WebhookStep>) -> Void)] = []
        func dispatch(limit: Int, _ done: @escaping (StoreResult<Int>) -> Void) { dispatches.append(done) }
        func settle(_ settlements: [WebhookSettlement], thenClaim count: Int, leaseMs: Int64, node: String,
                    _ done: @escaping (StoreResult<WebhookStep>) -> Void) {
            steps.append((settlements, count, done))
        }
        func backlog(_ done: @escaping (StoreResult<WebhookBacklog>) -> Void) {}
    }

    final class HeldTransport: WebhookTransport {
        var answers: [(Int?) -> Void] = []
        func post(body: [UInt8], headers: [WebhookDelivery.Header], timeoutMs: Int64, _ done: @escaping (Int?) -> Void) {
            answers.append(done)
        }
    }

    var timers: [(ms: Int, body: () -> Void, cancelled: Bool)] = []

    func sender(_ store: HeldStore, _ transport: HeldTransport, concurrency: Int = 2) -> WebhookSender {
        WebhookSender(store: store, transport: transport, retry: WebhookRetry(maxBackoffSeconds: 600, retryForSeconds: 3_600),
                      secret: "whsec-test", node: "n1", concurrency: concurrency, nowMs: { 1_764_600_000_000 }, jitter: { 0.5 },
                      schedule: { [unowned self] ms, body in
                          let i = self.timers.count
                          self.timers.append((ms, body, false))
                          return { self.timers[i].cancelled = true }
                      }, log: { _ in })
    }

    func bulk(_ s: String) -> RedisReply { .string(Array(s.utf8)) }

    func claim(_ key: String, _ n: Int) -> RedisReply {
        let fields = ["type", "order.paid", "key", key, "at", "1764599999990", "data", "{}"]
        return .array([bulk(key), bulk("1764599999990-\(n)"), bulk("n1:\(n)"), .integer(1), .array(fields.map(bulk))])
    }

    /// webhook_settle.lua's answer: `taken` flags, then the claims.
    func step(taken: [Bool] = [], _ claims: [RedisReply]) throws -> StoreResult<WebhookStep> {
        .success(try WebhookStep(redisReply: .array([.array(taken.map { .integer($0 ? 1 : 0) }), .array(claims), .array([])])))
    }

    /// Decisions arriving during every dispatch must not keep claims from going out.
    func testClaimsGoOutWhileDecisionsKeepArriving() {
        let store = HeldStore()
        let s = sender(store, HeldTransport())
        s.tick()
        for round in 0..<5 {
            s.tick()  // a decision logged events while the dispatch is on its way
            XCTAssertEqual(store.dispatches.count, round + 1)
            store.dispatches[round](.success(1))
            XCTAssertEqual(store.steps.count, 1, "claimed after the first dispatch, whatever came in meanwhile")
        }
    }

    /// Answers that come while a step is on its way are settled together by the next one,
    /// which claims exactly the slots they free.
    func testAnswersAreSettledInBatchesThatClaimTheFreedSlots() throws {
        let store = HeldStore()
        let transport = HeldTransport()
        let s = sender(store, transport, concurrency: 3)
        s.tick()
        store.dispatches[0](.success(0))
        XCTAssertEqual(store.steps[0].count, 3)
        store.steps[0].done(try step([claim("o-a", 0), claim("o-b", 1), claim("o-c", 2)]))
        XCTAssertEqual(transport.answers.count, 3)
        transport.answers[0](200)
        XCTAssertEqual(store.steps.count, 2, "the first answer is settled at once")
        XCTAssertEqual(store.steps[1].settlements.map(\.claim.key), ["o-a"])
        XCTAssertEqual(store.steps[1].count, 1)
        transport.answers[1](200)
        transport.answers[2](500)
        XCTAssertEqual(store.steps.count, 2, "one step at a time")
        store.steps[1].done(try step(taken: [true], []))
        XCTAssertEqual(store.steps.count, 3)
        XCTAssertEqual(store.steps[2].settlements.map(\.outcome), [.delivered, .retry(afterMs: 1_000)])
        XCTAssertEqual(store.steps[2].count, 3, "all three slots free once these settle")
        store.steps[2].done(try step(taken: [true, false], []))
        XCTAssertEqual(s.inFlight, 0)
        XCTAssertEqual(s.attempts["delivered"], 2)
        XCTAssertEqual(s.attempts["lease_lost"], 1, "a settle refused for a lapsed lease is not counted as its outcome")
        XCTAssertEqual(s.attempts["retry"], 0)
        XCTAssertTrue(s.isIdle)
    }

    func testAStoppedSenderSettlesButClaimsNothingMore() throws {
        let store = HeldStore()
        let transport = HeldTransport()
        let s = sender(store, transport)
        s.tick()
        store.dispatches[0](.success(0))
        store.steps[0].done(try step([claim("o-a", 0)]))
        XCTAssertEqual(transport.answers.count, 1)
        s.stop()
        s.tick()
        XCTAssertEqual(store.dispatches.count, 1, "no tick after stop")
        XCTAssertFalse(s.isIdle)
        timers[0].body()  // the delivery in flight ends (no answer): it settles, nothing new is claimed
        XCTAssertEqual(store.steps[1].settlements.count, 1)
        XCTAssertEqual(store.steps[1].count, 0)
        store.steps[1].done(try step(taken: [true], []))
        XCTAssertEqual(s.inFlight, 0)
        XCTAssertTrue(s.isIdle)
    }

    /// A transport that never calls back (a resolver hanging, a lost callback) still ends
    /// the attempt before the lease (30 s) would let another node send the same event; an
    /// answer that does come cancels the deadline.
    func testTheSendersDeadlineEndsAnAttemptTheTransportNeverAnswers() throws {
        let store = HeldStore()
        let transport = HeldTransport()
        let s = sender(store, transport)
        s.tick()
        store.dispatches[0](.success(0))
        store.steps[0].done(try step([claim("o-a", 0), claim("o-b", 1)]))
        XCTAssertEqual(s.inFlight, 2)
        XCTAssertEqual(timers.map(\.ms), [11_000, 11_000])
        XCTAssertLessThan(Int64(timers[0].ms), WebhookRetry.leaseMs)
        timers[0].body()
        transport.answers[0](200)  // too late: ignored
        transport.answers[1](200)
        XCTAssertTrue(timers[1].cancelled, "an answer cancels its deadline")
        XCTAssertEqual(store.steps[1].settlements.map(\.outcome), [.retry(afterMs: 1_000)])
        store.steps[1].done(try step(taken: [true], []))
        XCTAssertEqual(store.steps[2].settlements.map(\.outcome), [.delivered])
    }

    /// Nothing a delivery used stays alive once it settled (the deadline timer and the
    /// answer closure once held each other).
    func testAFinishedDeliveryKeepsNothingAlive() throws {
        final class Token {}
        weak var watched: Token?
        let store = HeldStore()
        let transport = HeldTransport()
        do {
            let token = Token()
            watched = token
            let s = WebhookSender(store: store, transport: transport, retry: WebhookRetry(maxBackoffSeconds: 600, retryForSeconds: 3_600),
                                  secret: "whsec-test", node: "n1", concurrency: 1, nowMs: { 1_764_600_000_000 }, jitter: { 0.5 },
                                  schedule: { _, body in { [token] in _ = token; _ = body } }, log: { _ in })
            s.tick()
            store.dispatches[0](.success(0))
            store.steps[0].done(try step([claim("o-a", 0)]))
            transport.answers[0](200)
            transport.answers = []
        }
        XCTAssertNil(watched, "the deadline's cancel closure was released")
    }

    func testAnUnreadableClaimIsGivenUpAndTheRestSent() throws {
        let store = HeldStore()
        let transport = HeldTransport()
        let s = sender(store, transport)
        let unreadable: RedisReply = .array([bulk("o-a"), bulk("1-1"), bulk("n1:9"), .integer(1), .array([bulk("type"), bulk("order.paid")])])
        s.tick()
        store.dispatches[0](.success(0))
        store.steps[0].done(try step([unreadable, claim("o-b", 1)]))
        XCTAssertEqual(transport.answers.count, 1, "the readable one is sent")
        XCTAssertEqual(s.inFlight, 2)
        guard case .giveUp(let reason)? = store.steps[1].settlements.first?.outcome else { return XCTFail("\(store.steps[1])") }
        XCTAssertTrue(reason.hasPrefix("unreadable log entry"), reason)
        XCTAssertEqual(store.steps[1].settlements.first?.claim.key, "o-a")
        XCTAssertEqual(store.steps[1].count, 1, "its slot is claimed again, the sent one's is not")
    }
}
