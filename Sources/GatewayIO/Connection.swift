import CLws
import Foundation
import GatewayCore
import GatewayProtocol

/// One WebSocket connection as the loop sees it: its send queue and close state.
/// The node keeps its own per-connection state by `id`.
public final class WSConnection {
    public let id: ConnectionID
    let wsi: OpaquePointer
    unowned let loop: EventLoop
    /// Bytes of pushes queued: what `maxQueue` limits.
    public private(set) var queuedBytes = 0
    /// Bytes of replies queued: never a reason to close (PROTOCOL.md 4.1).
    public private(set) var replyBytes = 0
    /// Reading paused because replies piled up unread.
    private var readPaused = false
    public private(set) var isClosing = false
    public private(set) var peerAddress = ""
    private var queue = FIFO<(payload: Payload, isReply: Bool)>()
    private var closeCode: UInt16 = 0
    private var closeReason = ""
    var rxAssembly: [UInt8] = []
    /// Closes with this code once the queue passes this many bytes.
    public var maxQueue = 1 << 20
    /// Unread reply bytes past which the client is closed with 4008.
    public var maxUnreadReplies = 4 << 20
    /// Counts frames handed to lws; the node reads it for metrics.
    public private(set) var framesSent = 0

    /// The loop's, held here so a push written does not go through the unowned `loop`.
    private let pushLatency: LatencyRecorder

    init(id: ConnectionID, wsi: OpaquePointer, loop: EventLoop) {
        self.id = id
        self.wsi = wsi
        self.loop = loop
        liveness = PeerLiveness(pingSeconds: loop.options.pingSeconds, now: monotonicSeconds())
        pushLatency = loop.pushLatency
        peerAddress = GatewayIO.peerAddress(wsi)
    }

    /// Queues bytes shared with other subscribers. Returns false if the connection
    /// was closed for falling behind (4008) by this call.
    /// Only pushes count toward `maxQueue`: 4008 is for pushes piling up unread. No single
    /// reply closes the connection, however large; while more than `maxQueue` bytes of
    /// replies wait unread, the client's further commands are not read (TCP back-pressure).
    /// Commands already read still answer, so a client that sends a frame of big `history`
    /// commands and never reads is closed with 4008 once its unread replies pass
    /// `maxUnreadReplies` (which the node sets well above one largest reply).
    @discardableResult
    public func send(_ payload: Payload, isReply: Bool = false) -> Bool {
        guard !isClosing, !isGone else { return false }
        if queue.isEmpty { lws_callback_on_writable(wsi) }
        queue.append((payload, isReply))
        if isReply {
            replyBytes += payload.bytes.count + 1
            if replyBytes > maxUnreadReplies {
                close(code: CloseCode.slowConsumer.rawValue, reason: "too slow to read replies", flush: false)
                return false
            }
            if replyBytes > maxQueue && !readPaused {
                readPaused = true
                lws_rx_flow_control(wsi, 0)
            }
            return true
        }
        queuedBytes += payload.bytes.count + 1
        if queuedBytes > maxQueue {
            close(code: CloseCode.slowConsumer.rawValue, reason: "too slow to read", flush: false)
            return false
        }
        return true
    }

    /// A reply or error for this connection alone (pushes go through `send(_: Payload)`).
    public func send(_ bytes: [UInt8], isReply: Bool = true) { send(Payload(bytes), isReply: isReply) }

    /// `writtenAtMs`: the wall clock of this write, read at its first timed push (0 until then).
    private func unqueued(_ entry: (payload: Payload, isReply: Bool), writtenAtMs: inout Int64) {
        if entry.isReply { replyBytes -= entry.payload.bytes.count + 1; return }
        queuedBytes -= entry.payload.bytes.count + 1
        let publishedAt = entry.payload.publishedAtMs
        guard publishedAt > 0 else { return }
        if writtenAtMs == 0 { writtenAtMs = wallClockMs() }
        pushLatency.record(ms: writtenAtMs - publishedAt)
    }

    /// Sends a close frame with `code` after what is already queued (an error reply
    /// explaining the close goes out first), or at once with `flush: false` for a
    /// client that does not read. The peer gets two seconds before the socket is cut.
    public func close(code: UInt16, reason: String, flush: Bool = true) {
        guard !isClosing, !isGone else { return }
        isClosing = true
        closeCode = code
        closeReason = String(reason.utf8.prefix(100)) ?? ""
        if !flush {
            queue.removeAll()
            queuedBytes = 0
            replyBytes = 0
        }
        lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, 2)
        lws_callback_on_writable(wsi)
    }

    /// `connectionTimer` fires once, `seconds` from now, unless cancelled.
    public func armDeadline(seconds: Double) {
        deadlineArmed = true
        loop.liveness.arm(self, at: monotonicSeconds() + seconds)
    }

    public func cancelDeadline() { deadlineArmed = false }

    var deadlineArmed = false
    /// The close went to lws (`writable` returned -1 once); lws owns the rest of the handshake.
    private var closeHandedOver = false
    /// Set at the first lws close callback (CLOSED, or WSI_DESTROY if that came first):
    /// lws frees `wsi` right after, so from then on nothing here may touch it. Replies
    /// that come back from Redis later are dropped; the liveness sweep forgets it.
    public internal(set) var isGone = false
    /// Pings and the pong deadline; the sweep in `Liveness` drives it.
    var liveness: PeerLiveness

    func touch() { liveness.heard(at: monotonicSeconds()) }

    /// The sweep's visit: ping a quiet peer, drop one that left a ping unanswered.
    func checkLiveness(at now: Double) {
        switch liveness.check(at: now, closing: isClosing) {
        case .none: break
        case .sendPing: lws_callback_on_writable(wsi)
        case .drop: kill()
        }
    }

    /// The peer stopped answering pings: drop it without a close handshake.
    func kill() {
        guard !isGone else { return }
        lws_set_timeout(wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC)
    }

    /// Writes queued payloads as one frame, newline separated, up to the scratch size.
    /// Returns -1 to make lws close the connection.
    func writable() -> Int32 {
        if isGone { return -1 }
        if !isClosing && liveness.takeOwedPing() {
            let start = (loop.writeScratch + Int(clws_pre)).assumingMemoryBound(to: UInt8.self)
            start[0] = UInt8(ascii: "g")
            start[1] = UInt8(ascii: "w")
            if lws_write(wsi, start, 2, LWS_WRITE_PING) < 0 { return -1 }
            if !queue.isEmpty { lws_callback_on_writable(wsi) }
            return 0
        }
        if isClosing && queue.isEmpty {
            // lws writes the close frame and then waits for the peer's answer; it may call
            // back here meanwhile. A second -1 would kill the socket at once: with input still
            // unread, the kernel resets it and the peer never reads our close frame (1006).
            if closeHandedOver { return 0 }
            closeHandedOver = true
            var reason = Array(closeReason.utf8)
            lws_close_reason(wsi, lws_close_status(rawValue: UInt32(closeCode)), &reason, reason.count)
            return -1
        }
        guard let first = queue.popFirst() else { return 0 }
        var length = first.payload.bytes.count
        let pre = Int(clws_pre)
        loop.ensureScratch(length)
        var out = loop.writeScratch + pre
        first.payload.bytes.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        var writtenAtMs: Int64 = 0
        unqueued(first, writtenAtMs: &writtenAtMs)
        while let next = queue.peek(), length + 1 + next.payload.bytes.count <= loop.writeScratchCapacity {
            _ = queue.popFirst()
            out = loop.writeScratch + pre + length
            out.storeBytes(of: UInt8(ascii: "\n"), as: UInt8.self)
            next.payload.bytes.withUnsafeBytes { (out + 1).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            length += 1 + next.payload.bytes.count
            unqueued(next, writtenAtMs: &writtenAtMs)
        }
        let start = (loop.writeScratch + pre).assumingMemoryBound(to: UInt8.self)
        if lws_write(wsi, start, length, LWS_WRITE_TEXT) < length { return -1 }
        framesSent += 1
        if readPaused && replyBytes <= maxQueue / 2 && !isClosing {
            readPaused = false
            lws_rx_flow_control(wsi, 1)
        }
        if !queue.isEmpty || (isClosing && !closeHandedOver) { lws_callback_on_writable(wsi) }
        return 0
    }
}

extension EventLoop {
    func ensureScratch(_ length: Int) {
        guard length > writeScratchCapacity else { return }
        writeScratch.deallocate()
        writeScratchCapacity = length
        writeScratch = .allocate(byteCount: Int(clws_pre) + length, alignment: 16)
    }
}

/// An HTTP request with its whole body; answered once with `respond`.
public final class HTTPRequest {
    public enum Method: String { case GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD }

    /// Where the request is in its life: the glue acts only on the phase it expects, so a
    /// late lws callback (a body after an early answer, a second completion) does nothing.
    enum Phase {
        case head
        /// Taking in the body, until `deadline`.
        case body
        /// Handed to the delegate; awaiting `respond`.
        case dispatched
        /// Answered before the body was read (or while it was): the connection closes.
        case refused
        /// Answer written and the write side shut; input is dropped until the peer
        /// closes or `deadline`.
        case lingering
        /// Answered, the connection kept for the next request.
        case done
    }

    public let method: Method
    public let path: String
    public let query: String
    public let authorization: String?
    public let signature: String?
    /// The headers of `HTTPRequest.namedHeaders` the request carried, by lowercase name.
    public let headers: [String: String]
    public var body: [UInt8] { intake?.body ?? [] }
    /// The delegate's own note on the request, made at `httpHead` (its route, its caller).
    public var context: Any?
    var wsi: OpaquePointer?
    var phase = Phase.head
    var intake: HTTPBodyIntake?
    var deadline = 0.0
    /// lws cannot tell where this request ends (chunked, no length, refused unread): close after answering.
    var closeAfterResponse = false
    /// When the request line arrived (monotonic seconds): what its duration counts from.
    let receivedAt = monotonicSeconds()
    private var response: (status: Int, body: [UInt8], contentType: String, headers: [(String, String)])?
    private var headersSent = false
    private var shutdownPending = false

    /// Headers kept besides the standard ones: WeChat Pay signs its notify in these.
    public static let namedHeaders = ["wechatpay-timestamp", "wechatpay-nonce", "wechatpay-signature", "wechatpay-serial"]

    init(method: Method, path: String, query: String, authorization: String?, signature: String?,
         headers: [String: String], wsi: OpaquePointer) {
        self.method = method
        self.path = path
        self.query = query
        self.authorization = authorization
        self.signature = signature
        self.headers = headers
        self.wsi = wsi
    }

    /// True once the client went away or the request was answered; a late answer is then dropped.
    public var isGone: Bool { wsi == nil || response != nil }

    /// `headers`: extra response headers, e.g. `("Location", "/demo/")`.
    public func respond(status: Int, body: [UInt8], contentType: String = "application/json",
                        headers: [(String, String)] = []) {
        guard response == nil, let wsi else { return }
        response = (status, body, contentType, headers)
        lws_callback_on_writable(wsi)
        loopOf(lws_get_context(wsi))?.delegate?.httpAnswered(self, status: status, seconds: monotonicSeconds() - receivedAt)
    }

    /// Answers before (or instead of) reading the rest of the body, then closes.
    func refuse(status: Int, code: String, message: String) {
        guard response == nil, wsi != nil else { return }
        phase = .refused
        closeAfterResponse = true
        intake = nil
        let error = GatewayError(wireCode: code, message)
        respond(status: status, body: error.httpBody, headers: error.httpHeaders)
    }

    func writable() -> Int32 {
        guard let wsi else { return 0 }
        if shutdownPending { return halfClose(wsi) }
        guard let response, phase == .dispatched || phase == .refused else { return 0 }
        if !headersSent {
            headersSent = true
            var buf = [UInt8](repeating: 0, count: Int(clws_pre) + 1024)
            return buf.withUnsafeMutableBufferPointer { b -> Int32 in
                let start = b.baseAddress! + Int(clws_pre)
                var p: UnsafeMutablePointer<UInt8>? = start
                let end = b.baseAddress! + b.count - 1
                if lws_add_http_common_headers(wsi, UInt32(response.status), response.contentType,
                                               lws_filepos_t(response.body.count), &p, end) != 0 { return -1 }
                var headers = response.headers
                if closeAfterResponse { headers.append(("Connection", "close")) }
                for (name, value) in headers {
                    let field = name.lowercased() + ":"
                    if lws_add_http_header_by_name(wsi, field, value, Int32(value.utf8.count), &p, end) != 0 { return -1 }
                }
                if lws_finalize_write_http_header(wsi, start, &p, end) != 0 { return -1 }
                lws_callback_on_writable(wsi)
                return 0
            }
        }
        var body = [UInt8](repeating: 0, count: Int(clws_pre)) + response.body
        let n = response.body.count
        let written = body.withUnsafeMutableBufferPointer { b in
            lws_write(wsi, b.baseAddress! + Int(clws_pre), n, LWS_WRITE_HTTP_FINAL)
        }
        if written < n { return -1 }
        if closeAfterResponse {
            shutdownPending = true
            // What lws could not write yet goes out before the next writable callback.
            if lws_partial_buffered(wsi) != 0 {
                lws_callback_on_writable(wsi)
                return 0
            }
            return halfClose(wsi)
        }
        phase = .done
        self.wsi = nil
        return lws_http_transaction_completed(wsi) != 0 ? -1 : 0
    }

    /// The answer is out: shut the write side (the client sees the end of the answer) and
    /// drop whatever it still sends for a moment, so closing does not reset the connection
    /// under a client that is still sending and lose the answer it has not read yet.
    private func halfClose(_ wsi: OpaquePointer) -> Int32 {
        shutdownPending = false
        guard shutdown(lws_get_socket_fd(wsi), Int32(SHUT_WR)) == 0 else { return -1 }
        phase = .lingering
        loopOf(lws_get_context(wsi))?.httpDeadlines.linger(self)
        return 0
    }

    /// When lws first reported the end of the body; it reports it again while input past
    /// this request waits in its buffer.
    var firstCompletion: Double?

    /// lws closed the connection.
    func closed() {
        wsi = nil
        intake = nil
    }

    /// The body or linger deadline passed: drop the connection.
    func expire(now: Double) {
        guard let wsi, phase == .body || phase == .lingering, now >= deadline else { return }
        lws_set_timeout(wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC)
    }
}
