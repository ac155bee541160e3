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
/// event, and the key's next event is claimable only once this one settled. Finished
/// attempts are settled in batches, each batch claiming the slots it frees in the same
/// script call. Any failure just waits for the next tick (an attempt whose settle is lost
/// lapses and is sent again).
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
    /// The outcomes counted in `attempts`, all exported from the start.
    static let outcomes = ["delivered", "retry", "give_up", "lease_lost", "unsettled"]

    /// Attempts leased and not yet settled (sent, or finished and waiting for `step`).
    private(set) var inFlight = 0
    private var dispatching = false
    /// Events were logged while a dispatch was on its way: dispatch once more after it.
    private var dispatchAgain = false
    /// A settle-and-claim call is on its way; `stepAgain`: another is wanted after it.
    private var stepping = false
    private var stepAgain = false
    /// Finished attempts waiting for the next step.
    private var finished: [WebhookSettlement] = []
    /// Set when the node drains: what is in flight settles, nothing more is claimed.
    private(set) var stopped = false
    /// Events settled by this node, by outcome: `delivered`, `retry`, `give_up` (including
    /// heads found missing from the log, never sent), `lease_lost` (settled too late: the
    /// event goes again), `unsettled` (Redis did not take the outcome: the event goes again).
    private(set) var attempts = Dictionary(uniqueKeysWithValues: WebhookSender.outcomes.map { ($0, 0) })

    init(store: any WebhookStore, transport: any WebhookTransport, retry: WebhookRetry, secret: String, node: String,
         concurrency: Int, nowMs: @escaping () -> Int64, jitter: @escaping () -> Double,
         schedule: @escaping (Int, @escaping () -> Void) -> () -> Void, log: @escaping (String) -> Void) {
        (self.store, self.transport, self.retry, self.secret, self.node) = (store, transport, retry, secret, node)
        (self.concurrency, self.nowMs, self.jitter, self.schedule, self.log) = (concurrency, nowMs, jitter, schedule, log)
    }

    /// Nothing in flight, nothing to settle, no call on its way: a draining node may stop.
    var isIdle: Bool { inFlight == 0 && !stepping && !dispatching }

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

    /// The node drains: claim nothing more (what is in flight still settles).
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
            self.step()
            if case .success(let n) = result, n == Self.dispatchBatch || self.dispatchAgain { self.tick() }
        }
    }

    /// Settles what finished and claims the free slots, in one call; one call at a time, so
    /// answers arriving meanwhile are settled together by the next.
    private func step() {
        guard !stepping else {
            stepAgain = true
            return
        }
        let settling = finished
        let free = stopped ? 0 : concurrency - (inFlight - settling.count)
        guard !settling.isEmpty || free > 0 else { return }
        finished = []
        stepping = true
        stepAgain = false
        store.settle(settling, thenClaim: free, leaseMs: WebhookRetry.leaseMs, node: node) { [weak self] result in
            guard let self else { return }
            self.inFlight -= settling.count
            switch result {
            case .success(let step):
                for (s, taken) in zip(settling, step.taken) { self.count(s, taken: taken) }
                for gone in step.missing {
                    self.attempts["give_up", default: 0] += 1
                    self.log("webhook: event \(gone.id) (key \(gone.key)) given up: no longer in the event log (trimmed, or lost by Redis)")
                }
                for c in step.leased { self.deliver(c) }
            case .failure:
                self.attempts["unsettled", default: 0] += settling.count
                if !settling.isEmpty {
                    self.log("webhook: \(settling.count) outcome(s) not settled (Redis); those events go again once their lease lapses")
                }
            }
            // Only now: an attempt finished while the claims were being sent waits for this.
            self.stepping = false
            if self.stepAgain || !self.finished.isEmpty { self.step() }
        }
    }

    private func count(_ s: WebhookSettlement, taken: Bool) {
        guard taken else {
            attempts["lease_lost", default: 0] += 1
            return log("webhook: event \(s.claim.event.id): the lease lapsed before the answer; another node may have sent it again")
        }
        attempts[s.outcome.name, default: 0] += 1
        if case .giveUp(let reason) = s.outcome {
            log("webhook: event \(s.claim.event.id) (\(s.claim.event.type), key \(s.claim.key)) given up: \(reason)")
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
            let cancel = cancelDeadline
            cancelDeadline = {}  // the timer and this closure hold each other until now
            cancel()
            self.finish(claim, WebhookDelivery.outcome(status: status, claim, self.retry, nowMs: self.nowMs(), jitter: self.jitter()))
        }
        cancelDeadline = schedule(Int(WebhookRetry.answerTimeoutMs) + 1_000) { answer(nil) }
        transport.post(body: body, headers: headers, timeoutMs: WebhookRetry.answerTimeoutMs, answer)
    }

    private func finish(_ claim: WebhookClaim, _ outcome: WebhookOutcome) {
        finished.append(WebhookSettlement(claim: claim, outcome: outcome))
        step()
    }
}
