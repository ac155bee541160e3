import GatewayCore

/// Carries one webhook POST to `webhooks.url`. `done(status)` once answered; nil when no
/// answer came within `timeoutMs` or the connection failed (the transport ends the request
/// at the timeout, well inside the lease).
protocol WebhookTransport: AnyObject {
    func post(body: [UInt8], headers: [WebhookDelivery.Header], timeoutMs: Int64, _ done: @escaping (Int?) -> Void)
}

/// Sends the event log to `webhooks.url` (contract 4.4; Store/README.md "Webhooks"). Every node
/// runs one: each tick dispatches new log events to the per-key queues, then claims as many
/// due keys as it has free slots; the Redis lease on a key keeps every other node off that
/// event, and the key's next event is claimable only once this one settled. Any failure
/// just waits for the next tick (a claim whose settle is lost lapses and is sent again).
final class WebhookSender {
    let store: any WebhookStore
    let transport: any WebhookTransport
    let retry: WebhookRetry
    let secret: String
    /// Names this node in lease tokens.
    let node: String
    let concurrency: Int
    let nowMs: () -> Int64
    /// 0..<1, for the backoff's jitter.
    let jitter: () -> Double
    /// Runs a body on the loop after some ms, answering how to cancel it: the sender's own
    /// deadline on each delivery.
    let schedule: (Int, @escaping () -> Void) -> () -> Void
    let log: (String) -> Void

    static let tickMs = 250
    static let dispatchBatch = 500

    private(set) var inFlight = 0
    private var dispatching = false
    /// Events were logged while a dispatch was on its way: dispatch once more after it.
    private var dispatchAgain = false
    private var claiming = false
    /// Set when the node drains: what is in flight settles, nothing more is claimed.
    private(set) var stopped = false
    /// Attempts by how they ended (`delivered`, `retry`, `give_up`), for `/metrics`.
    private(set) var attempts: [String: Int] = [:]

    init(store: any WebhookStore, transport: any WebhookTransport, retry: WebhookRetry, secret: String, node: String,
         concurrency: Int, nowMs: @escaping () -> Int64, jitter: @escaping () -> Double,
         schedule: @escaping (Int, @escaping () -> Void) -> () -> Void, log: @escaping (String) -> Void) {
        (self.store, self.transport, self.retry, self.secret, self.node) = (store, transport, retry, secret, node)
        (self.concurrency, self.nowMs, self.jitter, self.schedule, self.log) = (concurrency, nowMs, jitter, schedule, log)
    }

    /// Every `tickMs` while Redis is ready, and right after a decision logged events (so a
    /// delivery does not wait for the next tick).
    func tick() {
        guard !stopped else { return }
        guard !dispatching else {
            dispatchAgain = true
            return
        }
        dispatch()
    }

    /// The node drains: claim nothing more.
    func stop() { stopped = true }

    /// Queues the log's new events, then claims what is due; dispatches again while batches
    /// come full or events were logged meanwhile. Claims go first: a steady stream of
    /// decisions must not keep deliveries waiting behind dispatch after dispatch.
    private func dispatch() {
        dispatching = true
        dispatchAgain = false
        store.dispatch(limit: Self.dispatchBatch) { [weak self] result in
            guard let self else { return }
            self.dispatching = false
            self.claim()
            if case .success(let n) = result, n == Self.dispatchBatch || self.dispatchAgain { self.tick() }
        }
    }

    private func claim() {
        let free = concurrency - inFlight
        guard free > 0, !claiming, !stopped else { return }
        claiming = true
        store.claim(count: free, leaseMs: WebhookRetry.leaseMs, node: node) { [weak self] result in
            guard let self else { return }
            self.claiming = false
            guard case .success(let claims) = result else { return }
            for gone in claims.missing {
                self.attempts["give_up", default: 0] += 1
                self.log("webhook: event \(gone.id) (key \(gone.key)) given up: no longer in the event log (trimmed, or lost by Redis)")
            }
            for c in claims.leased { self.deliver(c) }
        }
    }

    private func deliver(_ claim: WebhookClaim) {
        inFlight += 1
        if let why = claim.unreadable { return finish(claim, .giveUp(reason: "unreadable log entry: \(why)")) }
        let (body, headers) = WebhookDelivery.request(claim.event, secret: secret, nowSeconds: nowMs() / 1_000)
        // The transport answers within the timeout; this deadline holds even if it did not
        // (a resolver hanging, a queue), so the lease is never outlived by an attempt.
        var answered = false
        var cancelDeadline: () -> Void = {}
        let answer: (Int?) -> Void = { [weak self] status in
            guard let self, !answered else { return }
            answered = true
            cancelDeadline()
            self.finish(claim, WebhookDelivery.outcome(status: status, claim, self.retry, nowMs: self.nowMs(), jitter: self.jitter()))
        }
        cancelDeadline = schedule(Int(WebhookRetry.answerTimeoutMs) + 1_000) { answer(nil) }
        transport.post(body: body, headers: headers, timeoutMs: WebhookRetry.answerTimeoutMs, answer)
    }

    private func finish(_ claim: WebhookClaim, _ outcome: WebhookOutcome) {
        attempts[outcome.name, default: 0] += 1
        if case .giveUp(let reason) = outcome {
            log("webhook: event \(claim.event.id) (\(claim.event.type), key \(claim.key)) given up: \(reason)")
        }
        store.settle(claim, outcome) { [weak self] settled in
            guard let self else { return }
            self.inFlight -= 1
            if case .success(false) = settled {
                self.log("webhook: event \(claim.event.id): the lease lapsed before the answer; another node may have sent it again")
            }
            // The key's next event is due at once: take it without waiting for the tick.
            if outcome == .delivered { self.claim() }
        }
    }
}
