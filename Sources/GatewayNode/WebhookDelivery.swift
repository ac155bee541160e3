import GatewayCore
import GatewayCrypto
import GatewayProtocol

/// What a webhook attempt sends and what its answer means (contract 4.4), pure: the sender's
/// transport (WebhookHTTPTransport on OutboundHTTPPool's worker threads) only carries the
/// bytes and reports the status.
enum WebhookDelivery {
    struct Header: Equatable {
        var name: String
        var value: String
    }

    /// The POST of `event`: the event object as body, its id, and a signature made now
    /// (`t` is the attempt's time, so a receiver refusing old timestamps takes a retry).
    static func request(_ event: LoggedEvent, secret: String, nowSeconds: Int64) -> (body: [UInt8], headers: [Header]) {
        var body: [UInt8] = []
        event.json.write(into: &body)
        return (body, [
            Header(name: "Content-Type", value: "application/json"),
            Header(name: "User-Agent", value: "gateway-webhooks/1"),
            Header(name: "X-Gateway-Event-Id", value: event.id),
            Header(name: "X-Gateway-Signature", value: WebhookSignature.header(secret: secret, timestamp: nowSeconds, body: body)),
        ])
    }

    /// A 2xx is delivered; anything else, or no answer (`status` nil: refused, reset, or no
    /// answer within `WebhookRetry.answerTimeoutMs`), is tried again until `retry_for_s`
    /// after the event (its id's time, the clock the log is trimmed by), then given up.
    static func outcome(status: Int?, _ claim: WebhookClaim, _ retry: WebhookRetry, nowMs: Int64, jitter: Double) -> WebhookOutcome {
        if let status, (200..<300).contains(status) { return .delivered }
        switch retry.afterFailure(attempt: claim.attempt, eventAtMs: claim.event.idMs, nowMs: nowMs, jitter: jitter) {
        case .retry(let at): return .retry(afterMs: max(0, at - nowMs))
        case .giveUp:
            return .giveUp(reason: "no 2xx in \(retry.retryForMs / 1_000) s (\(claim.attempt) attempts, last \(status.map { "HTTP \($0)" } ?? "no answer"))")
        }
    }
}

extension LoggedEvent {
    /// The time part of the event's id (ms, the log master's clock).
    var idMs: Int64 { Int64(id.prefix { $0 != "-" }) ?? 0 }
}
