import GatewayIO
import GatewayProtocol

/// Webhook POSTs over `OutboundHTTPPool`: blocking HTTP/1.1 on `concurrency` worker
/// threads (the sender never has more in flight), each answer handed back on the loop.
/// Why a delivery got no status is logged when it changes (once for a receiver that stays
/// down, not once per attempt), with the origin only, never the path, headers or body.
final class WebhookHTTPTransport: WebhookTransport {
    private let pool: OutboundHTTPPool
    private let log: (String) -> Void
    private var lastProblem: String?

    convenience init(target: HTTPTarget, concurrency: Int, loop: EventLoop, log: @escaping (String) -> Void) throws {
        try self.init(target: target, concurrency: concurrency, deliver: { [weak loop] work in loop?.post(work) }, log: log)
    }

    /// `deliver` runs each answer where the sender lives (the loop; tests run it in place).
    init(target: HTTPTarget, concurrency: Int, deliver: @escaping (@escaping () -> Void) -> Void, log: @escaping (String) -> Void) throws {
        pool = try OutboundHTTPPool(target: target, workers: concurrency, deliver: deliver)
        self.log = log
    }

    deinit { pool.shutdown() }

    func post(body: [UInt8], headers: [WebhookDelivery.Header], timeoutMs: Int64, _ done: @escaping (Int?) -> Void) {
        pool.post(headers: headers.map { ($0.name, $0.value) }, body: body, timeoutMs: timeoutMs) { [weak self] result in
            switch result {
            case .success(let status):
                self?.lastProblem = nil
                done(status)
            case .failure(let problem):
                if let self, self.lastProblem != problem.description {
                    self.lastProblem = problem.description
                    self.log("webhook: no answer: \(problem)")
                }
                done(nil)
            }
        }
    }
}
