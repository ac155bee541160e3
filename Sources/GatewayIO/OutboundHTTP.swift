import CLws  // OpenSSL comes with libwebsockets.h, the same libssl lws serves TLS with.
import Foundation
import GatewayProtocol

/// Blocking HTTP/1.1 POSTs on a few worker threads, answers handed back through `deliver`
/// (`EventLoop.post` in the node). Not lws' client: lws 4.1 resolves host names with a
/// blocking `getaddrinfo` on the loop thread, which would stall every connection; here a
/// slow resolver or receiver holds one worker, never the loop. Each worker keeps its
/// connection while the receiver allows it. Nothing here logs a header or a body (the
/// signature header is derived from the secret).
public final class OutboundHTTPPool {
    public typealias Header = (name: String, value: String)

    private let shared: Shared

    /// `workers` threads, so at most that many requests in flight; more wait in a queue.
    /// Throws only when an https target's TLS context cannot be made.
    public init(target: HTTPTarget, workers: Int, deliver: @escaping (@escaping () -> Void) -> Void) throws {
        let tls = try target.isTLS ? OutboundTLS() : nil
        shared = Shared(target: target, tls: tls, deliver: deliver)
        for i in 0..<max(1, workers) {
            let worker = Thread { [shared] in OutboundWorker(shared).run() }
            worker.name = "outbound-http-\(i)"
            worker.start()
        }
    }

    deinit { shutdown() }

    /// Queues one POST to the target; `done` gets the status, or why there is none, via
    /// `deliver`. `timeoutMs` counts from now, time in the queue included: past it the
    /// request is never sent (the caller has given up on it and may send it again elsewhere),
    /// and one under way is abandoned (name resolution aside, see `OutboundConnection`).
    public func post(headers: [Header], body: [UInt8], timeoutMs: Int64,
                     _ done: @escaping (Result<Int, OutboundHTTPFailure>) -> Void) {
        let bytes = Self.request(shared.target, headers: headers, body: body)
        shared.enqueue(Job(request: bytes, notAfter: monotonicSeconds() + Double(timeoutMs) / 1000, done: done))
    }

    /// The workers stop after their current request; queued requests are dropped unanswered.
    public func shutdown() { shared.stop() }

    /// The request's bytes. A header whose name or value could break the head (CR, LF, NUL)
    /// is left out rather than sent.
    static func request(_ target: HTTPTarget, headers: [Header], body: [UInt8]) -> [UInt8] {
        var head = "POST \(target.requestTarget) HTTP/1.1\r\nHost: \(target.hostHeader)\r\nContent-Length: \(body.count)\r\n"
        for h in headers where !(h.name + h.value).utf8.contains(where: { $0 == 13 || $0 == 10 || $0 == 0 }) {
            head += "\(h.name): \(h.value)\r\n"
        }
        head += "\r\n"
        return Array(head.utf8) + body
    }

    struct Job {
        let request: [UInt8]
        /// The request's deadline on the monotonic clock, fixed when it was posted.
        let notAfter: Double
        let done: (Result<Int, OutboundHTTPFailure>) -> Void
    }

    /// What the workers share: the queue (under `lock`) and the immutable setup.
    final class Shared {
        let target: HTTPTarget
        let tls: OutboundTLS?
        let deliver: (@escaping () -> Void) -> Void
        private let lock = NSCondition()
        private var queue: [Job] = []
        private var head = 0
        private var stopped = false

        init(target: HTTPTarget, tls: OutboundTLS?, deliver: @escaping (@escaping () -> Void) -> Void) {
            (self.target, self.tls, self.deliver) = (target, tls, deliver)
        }

        func enqueue(_ job: Job) {
            lock.lock()
            defer { lock.unlock() }
            guard !stopped else { return }
            queue.append(job)
            lock.signal()
        }

        /// The next job, waiting for one; nil once stopped.
        func next() -> Job? {
            lock.lock()
            defer { lock.unlock() }
            while head == queue.count && !stopped { lock.wait() }
            guard !stopped else { return nil }
            let job = queue[head]
            head += 1
            if head == queue.count { queue.removeAll(keepingCapacity: true); head = 0 }
            return job
        }

        func stop() {
            lock.lock()
            stopped = true
            queue.removeAll()
            head = 0
            lock.broadcast()
            lock.unlock()
        }
    }
}

/// Why a request got no status. The text names the target's origin, never its path or query.
public struct OutboundHTTPFailure: Error, Equatable, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

/// One worker thread: requests one at a time on its own connection.
private final class OutboundWorker {
    let shared: OutboundHTTPPool.Shared
    private var kept: OutboundConnection?

    init(_ shared: OutboundHTTPPool.Shared) { self.shared = shared }

    func run() {
        // A write to a connection the receiver closed must fail with EPIPE, not kill the
        // process (OpenSSL writes with plain `write`). SIGPIPE is thread-directed.
        var pipe = sigset_t()
        sigemptyset(&pipe)
        sigaddset(&pipe, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &pipe, nil)
        while let job = shared.next() {
            let result = perform(job)
            shared.deliver { job.done(result) }
        }
        kept?.close()
    }

    /// On the kept connection if it still looks alive, else (or if it fails before the
    /// whole request was written: the receiver closed it meanwhile) on a fresh one. Never
    /// sent twice: once every byte was written the receiver may have acted on it, so a close
    /// without an answer is reported as no answer, not retried. Never sent after `notAfter`.
    func perform(_ job: OutboundHTTPPool.Job) -> Result<Int, OutboundHTTPFailure> {
        let deadline = job.notAfter
        guard monotonicSeconds() < deadline else { return .failure(tooLate) }
        if let conn = kept {
            kept = nil
            if conn.isIdleAndOpen, let result = settle(conn, exchange(conn, job.request, deadline: deadline)) { return result }
            conn.close()
        }
        switch OutboundConnection.open(shared.target, tls: shared.tls, deadline: deadline) {
        case .success(let conn):
            return settle(conn, exchange(conn, job.request, deadline: deadline))
                ?? .failure(OutboundHTTPFailure("\(shared.target.origin) closed the connection before taking the request"))
        case .failure(let why):
            return .failure(why)
        }
    }

    private var tooLate: OutboundHTTPFailure {
        OutboundHTTPFailure("not sent to \(shared.target.origin): the request's time ran out before it could be")
    }

    /// Keeps the connection when the answer allows, else closes it; nil when the request
    /// was not fully written (so it may go on another connection).
    private func settle(_ conn: OutboundConnection, _ exchange: Exchange) -> Result<Int, OutboundHTTPFailure>? {
        switch exchange {
        case .answered(let status, let reusable):
            if reusable { kept = conn } else { conn.close() }
            return .success(status)
        case .failed(let why):
            conn.close()
            return .failure(why)
        case .notSent:
            conn.close()
            return nil
        }
    }

    enum Exchange {
        case answered(status: Int, reusable: Bool)
        /// Closed or reset before the whole request was written: the receiver cannot have acted on it.
        case notSent
        case failed(OutboundHTTPFailure)
    }

    private func exchange(_ conn: OutboundConnection, _ request: [UInt8], deadline: Double) -> Exchange {
        let origin = shared.target.origin
        // Connecting (and TLS) may have used up the time: then not a byte goes out.
        guard monotonicSeconds() < deadline else { return .failed(tooLate) }
        switch conn.send(request, deadline: deadline) {
        case .done: break
        case .timedOut: return .failed(OutboundHTTPFailure("\(origin) did not take the request in time"))
        case .closed: return .notSent
        }
        var reader = HTTPResponseReader()
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let received = buffer.withUnsafeMutableBytes { conn.receive(into: $0, deadline: deadline) }
            let step: HTTPResponseReader.Step
            switch received {
            case .bytes(let n): step = buffer.withUnsafeBytes { reader.feed(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
            case .closed: step = reader.peerClosed()
            case .timedOut:
                // Headers that arrived count: the receiver took the request.
                if case .answered(let status, _) = reader.timedOut() { return .answered(status: status, reusable: false) }
                return .failed(OutboundHTTPFailure("no answer from \(origin) in time"))
            }
            switch step {
            case .more: continue
            case .answered(let status, let reusable): return .answered(status: status, reusable: reusable)
            case .malformed(let why): return .failed(OutboundHTTPFailure("\(origin): \(why)"))
            }
        }
    }
}

/// The client TLS context: peers are verified against the system CA store
/// (`SSL_CERT_FILE` / `SSL_CERT_DIR` override it, read when the context is made).
final class OutboundTLS {
    let ctx: OpaquePointer

    init() throws {
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw IOError("could not create a TLS client context") }
        self.ctx = ctx
        guard SSL_CTX_set_default_verify_paths(ctx) == 1 else { throw IOError("could not load the system CA certificates") }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        _ = SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
    }

    deinit { SSL_CTX_free(ctx) }
}

/// One TCP (and maybe TLS) connection, non-blocking underneath so every step is bounded
/// by the request's deadline, except resolving a host name: `getaddrinfo` has no timeout
/// (an IP literal is not looked up, and a request whose time ran out meanwhile is not sent).
final class OutboundConnection {
    private let fd: Int32
    private var ssl: OpaquePointer?
    private var isClosed = false

    enum Sent { case done, timedOut, closed }
    enum Received { case bytes(Int), closed, timedOut }

    private init(fd: Int32) { self.fd = fd }

    deinit { close() }

    static func open(_ target: HTTPTarget, tls: OutboundTLS?, deadline: Double) -> Result<OutboundConnection, OutboundHTTPFailure> {
        let origin = target.origin
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | (isAddressLiteral(target.host) ? AI_NUMERICHOST : 0)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(target.host, String(target.port), &hints, &list)
        guard rc == 0, let first = list else {
            return .failure(OutboundHTTPFailure("could not resolve \(target.host): \(String(cString: gai_strerror(rc)))"))
        }
        defer { freeaddrinfo(list) }
        guard monotonicSeconds() < deadline else {
            return .failure(OutboundHTTPFailure("not sent to \(origin): the request's time ran out resolving \(target.host)"))
        }
        var lastError = "no address"
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let ai = next {
            next = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { lastError = String(cString: strerror(errno)); continue }
            let conn = OutboundConnection(fd: fd)
            if connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) != 0 {
                guard errno == EINPROGRESS else { lastError = String(cString: strerror(errno)); conn.close(); continue }
                // With another address to try, this one gets half the time left (an
                // unreachable IPv6 route must not use up the request before IPv4 is tried).
                let now = monotonicSeconds()
                let giveUp = next == nil ? deadline : now + (deadline - now) / 2
                guard conn.wait(Int16(POLLOUT), until: giveUp) else {
                    conn.close()
                    if next != nil { lastError = "timed out"; continue }
                    return .failure(OutboundHTTPFailure("connecting to \(origin) timed out"))
                }
                var soError: Int32 = 0
                var len = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
                guard soError == 0 else { lastError = String(cString: strerror(soError)); conn.close(); continue }
            }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            if let tls {
                if let why = conn.handshake(tls, host: target.host, deadline: deadline) {
                    conn.close()
                    return .failure(OutboundHTTPFailure("TLS with \(origin): \(why)"))
                }
            }
            return .success(conn)
        }
        return .failure(OutboundHTTPFailure("could not connect to \(origin): \(lastError)"))
    }

    private func handshake(_ tls: OutboundTLS, host: String, deadline: Double) -> String? {
        guard let ssl = SSL_new(tls.ctx) else { return "could not create a TLS session" }
        self.ssl = ssl
        guard SSL_set_fd(ssl, fd) == 1 else { return "could not attach the TLS session" }
        if let why = Self.expectPeer(ssl, host: host) { return why }
        while true {
            ERR_clear_error()
            let r = SSL_connect(ssl)
            if r == 1 { break }
            let err = SSL_get_error(ssl, r)
            let waitFor: Int16
            switch err {
            case SSL_ERROR_WANT_READ: waitFor = Int16(POLLIN)
            case SSL_ERROR_WANT_WRITE: waitFor = Int16(POLLOUT)
            default:
                let verify = SSL_get_verify_result(ssl)
                if verify != X509_V_OK { return "certificate refused: \(String(cString: X509_verify_cert_error_string(verify)))" }
                return "handshake failed"
            }
            guard wait(waitFor, until: deadline) else { return "handshake timed out" }
        }
        return SSL_get_verify_result(ssl) == X509_V_OK ? nil : "certificate refused"
    }

    /// `X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS`, from x509v3.h, which libwebsockets.h leaves out.
    static let noPartialWildcards: UInt32 = 0x4

    /// SNI and the name check for a host name (no partial wildcards like `w*.example.com`);
    /// an IP literal is checked as an address (and sent without SNI, which has no room for
    /// one). Any step that fails fails the connection: a check not set up is a peer not checked.
    static func expectPeer(_ ssl: OpaquePointer, host: String) -> String? {
        let param = SSL_get0_param(ssl)
        if isAddressLiteral(host) {
            guard X509_VERIFY_PARAM_set1_ip_asc(param, host) == 1 else { return "could not set the address to verify" }
            return nil
        }
        X509_VERIFY_PARAM_set_hostflags(param, noPartialWildcards)
        let sni = host.withCString {
            SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: $0))
        }
        guard sni == 1 else { return "could not set the server name (SNI)" }
        guard SSL_set1_host(ssl, host) == 1 else { return "could not set the name to verify" }
        return nil
    }

    func send(_ bytes: [UInt8], deadline: Double) -> Sent {
        bytes.withUnsafeBytes { buf in
            var offset = 0
            while offset < buf.count {
                let rest = UnsafeRawBufferPointer(rebasing: buf[offset...])
                if let ssl {
                    ERR_clear_error()
                    let n = SSL_write(ssl, rest.baseAddress, Int32(clamping: rest.count))
                    if n > 0 { offset += Int(n); continue }
                    switch SSL_get_error(ssl, n) {
                    case SSL_ERROR_WANT_WRITE: guard wait(Int16(POLLOUT), until: deadline) else { return .timedOut }
                    case SSL_ERROR_WANT_READ: guard wait(Int16(POLLIN), until: deadline) else { return .timedOut }
                    default: return .closed
                    }
                } else {
                    let n = Glibc.send(fd, rest.baseAddress, rest.count, Int32(MSG_NOSIGNAL))
                    if n > 0 { offset += n; continue }
                    if n < 0 && errno == EINTR { continue }
                    guard n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) else { return .closed }
                    guard wait(Int16(POLLOUT), until: deadline) else { return .timedOut }
                }
            }
            return .done
        }
    }

    func receive(into buffer: UnsafeMutableRawBufferPointer, deadline: Double) -> Received {
        while true {
            if let ssl {
                ERR_clear_error()
                let n = SSL_read(ssl, buffer.baseAddress, Int32(clamping: buffer.count))
                if n > 0 { return .bytes(Int(n)) }
                switch SSL_get_error(ssl, n) {
                case SSL_ERROR_WANT_READ: guard wait(Int16(POLLIN), until: deadline) else { return .timedOut }
                case SSL_ERROR_WANT_WRITE: guard wait(Int16(POLLOUT), until: deadline) else { return .timedOut }
                default: return .closed  // close_notify, a bare close or a reset: no more bytes either way
                }
            } else {
                let n = recv(fd, buffer.baseAddress, buffer.count, 0)
                if n > 0 { return .bytes(n) }
                if n == 0 { return .closed }
                if errno == EINTR { continue }
                guard errno == EAGAIN || errno == EWOULDBLOCK else { return .closed }
                guard wait(Int16(POLLIN), until: deadline) else { return .timedOut }
            }
        }
    }

    /// A kept connection is reused only when nothing arrived while it sat idle: a readable
    /// idle socket (or TLS bytes already read off it) is a close, a reset or bytes nobody asked for.
    var isIdleAndOpen: Bool {
        if let ssl, SSL_pending(ssl) > 0 { return false }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) == 0
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        if let ssl {
            SSL_free(ssl)
            self.ssl = nil
        }
        Glibc.close(fd)
    }

    /// Until the descriptor is ready for `events` (or has an error to report); false at the deadline.
    private func wait(_ events: Int16, until deadline: Double) -> Bool {
        while true {
            let left = deadline - monotonicSeconds()
            guard left > 0 else { return false }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let r = poll(&p, 1, Int32(min(left * 1000, 60_000).rounded(.up)))
            if r > 0 { return true }
            if r < 0 && errno != EINTR { return true }  // the next call reports it
        }
    }
}

/// An IPv4 or IPv6 address written out (`HTTPTarget.host` has no brackets).
private func isAddressLiteral(_ host: String) -> Bool {
    var v4 = in_addr(), v6 = in6_addr()
    return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
}
