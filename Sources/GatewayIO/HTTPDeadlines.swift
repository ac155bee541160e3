import CLws

/// The delegate's answer to a request's headers, before any of its body is read.
public enum HTTPAdmission {
    /// Read the body, at most `limit` bytes (a longer one is answered 413 as soon as it shows).
    case read(limit: Int)
    /// Answer now and close: the body is never read.
    case refuse(status: Int, code: String, message: String)
}

/// Time limits of HTTP requests without a timer each: bodies must arrive within
/// `bodySeconds` of their headers, and a connection answered before its body was read
/// lingers `lingerSeconds` at most. Each kind has one length, so deadlines wait in
/// arrival order and the loop tick pops the due ones.
final class HTTPDeadlines {
    let bodySeconds: Double
    let lingerSeconds: Double
    private var bodies = FIFO<(at: Double, request: HTTPRequest)>()
    private var lingering = FIFO<(at: Double, request: HTTPRequest)>()

    init(bodySeconds: Int, lingerSeconds: Double = 2) {
        self.bodySeconds = Double(max(bodySeconds, 1))
        self.lingerSeconds = lingerSeconds
    }

    func body(_ request: HTTPRequest) {
        request.deadline = monotonicSeconds() + bodySeconds
        bodies.append((request.deadline, request))
    }

    func linger(_ request: HTTPRequest) {
        request.deadline = monotonicSeconds() + lingerSeconds
        lingering.append((request.deadline, request))
    }

    func tick(now: Double) {
        while let first = bodies.peek(), first.at <= now {
            _ = bodies.popFirst()
            if first.request.phase == .body { first.request.expire(now: now) }
        }
        while let first = lingering.peek(), first.at <= now {
            _ = lingering.popFirst()
            if first.request.phase == .lingering { first.request.expire(now: now) }
        }
    }
}
