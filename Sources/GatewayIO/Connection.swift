import CLws
import GatewayCore

/// One WebSocket connection as the loop sees it: its send queue and close state.
/// The node hangs its own per-connection state on `context`.
public final class WSConnection {
    public let id: ConnectionID
    let wsi: OpaquePointer
    unowned let loop: EventLoop
    public var context: AnyObject?
    public private(set) var queuedBytes = 0
    public private(set) var isClosing = false
    public private(set) var peerAddress = ""
    private var queue = FIFO<Payload>()
    private var closeCode: UInt16 = 0
    private var closeReason = ""
    var rxAssembly: [UInt8] = []
    var rxTooLarge = false
    /// Closes with this code once the queue passes this many bytes.
    public var maxQueue = 1 << 20
    /// Counts frames handed to lws; the node reads it for metrics.
    public private(set) var framesSent = 0

    init(id: ConnectionID, wsi: OpaquePointer, loop: EventLoop) {
        self.id = id
        self.wsi = wsi
        self.loop = loop
        peerAddress = GatewayIO.peerAddress(wsi)
    }

    /// Queues bytes shared with other subscribers. Returns false if the connection
    /// was closed for falling behind (4008) by this call.
    @discardableResult
    public func send(_ payload: Payload) -> Bool {
        guard !isClosing, !isGone else { return false }
        if queue.isEmpty { lws_callback_on_writable(wsi) }
        queue.append(payload)
        queuedBytes += payload.bytes.count + 1
        if queuedBytes > maxQueue {
            close(code: 4008, reason: "too slow to read", flush: false)
            return false
        }
        return true
    }

    public func send(_ bytes: [UInt8]) { send(Payload(bytes)) }

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
    /// Set at the first lws close callback (CLOSED, or WSI_DESTROY if that came first):
    /// lws frees `wsi` right after, so from then on nothing here may touch it. Replies
    /// that come back from Redis later are dropped; the liveness sweep forgets it.
    public internal(set) var isGone = false
    /// Last time anything (data or pong) came from the peer.
    var lastActivity = monotonicSeconds()
    private var pingDue = false
    /// When the unanswered ping went out; any traffic from the peer answers it.
    var pingSentAt: Double?

    func touch() {
        lastActivity = monotonicSeconds()
        pingSentAt = nil
    }

    func requestPing(at now: Double) {
        guard !pingDue, !isClosing, !isGone else { return }
        pingDue = true
        pingSentAt = now
        lws_callback_on_writable(wsi)
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
        if pingDue && !isClosing {
            pingDue = false
            let start = (loop.writeScratch + Int(clws_pre)).assumingMemoryBound(to: UInt8.self)
            start[0] = UInt8(ascii: "g")
            start[1] = UInt8(ascii: "w")
            if lws_write(wsi, start, 2, LWS_WRITE_PING) < 0 { return -1 }
            if !queue.isEmpty { lws_callback_on_writable(wsi) }
            return 0
        }
        if isClosing && queue.isEmpty {
            var reason = Array(closeReason.utf8)
            lws_close_reason(wsi, lws_close_status(rawValue: UInt32(closeCode)), &reason, reason.count)
            return -1
        }
        guard let first = queue.popFirst() else { return 0 }
        var length = first.bytes.count
        let pre = Int(clws_pre)
        loop.ensureScratch(length)
        var out = loop.writeScratch + pre
        first.bytes.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        queuedBytes -= first.bytes.count + 1
        while let next = queue.peek(), length + 1 + next.bytes.count <= loop.writeScratchCapacity {
            _ = queue.popFirst()
            out = loop.writeScratch + pre + length
            out.storeBytes(of: UInt8(ascii: "\n"), as: UInt8.self)
            next.bytes.withUnsafeBytes { (out + 1).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            length += 1 + next.bytes.count
            queuedBytes -= next.bytes.count + 1
        }
        let start = (loop.writeScratch + pre).assumingMemoryBound(to: UInt8.self)
        if lws_write(wsi, start, length, LWS_WRITE_TEXT) < length { return -1 }
        framesSent += 1
        if !queue.isEmpty || isClosing { lws_callback_on_writable(wsi) }
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

    public let method: Method
    public let path: String
    public let query: String
    public let authorization: String?
    public let signature: String?
    public internal(set) var body: [UInt8] = []
    var wsi: OpaquePointer?
    var expectedBody = 0
    var bodyTooLarge = false
    private var response: (status: Int, body: [UInt8], contentType: String, headers: [(String, String)])?
    private var headersSent = false

    init(method: Method, path: String, query: String, authorization: String?, signature: String?, wsi: OpaquePointer) {
        self.method = method
        self.path = path
        self.query = query
        self.authorization = authorization
        self.signature = signature
        self.wsi = wsi
    }

    /// True once the client went away; a late answer is then dropped.
    public var isGone: Bool { wsi == nil }

    /// `headers`: extra response headers, e.g. `("Location", "/demo/")`.
    public func respond(status: Int, body: [UInt8], contentType: String = "application/json",
                        headers: [(String, String)] = []) {
        guard response == nil, let wsi else { return }
        response = (status, body, contentType, headers)
        lws_callback_on_writable(wsi)
    }

    func writable() -> Int32 {
        guard let wsi, let response else { return 0 }
        if !headersSent {
            headersSent = true
            var buf = [UInt8](repeating: 0, count: Int(clws_pre) + 1024)
            return buf.withUnsafeMutableBufferPointer { b -> Int32 in
                let start = b.baseAddress! + Int(clws_pre)
                var p: UnsafeMutablePointer<UInt8>? = start
                let end = b.baseAddress! + b.count - 1
                if lws_add_http_common_headers(wsi, UInt32(response.status), response.contentType,
                                               lws_filepos_t(response.body.count), &p, end) != 0 { return -1 }
                for (name, value) in response.headers {
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
        self.wsi = nil
        return lws_http_transaction_completed(wsi) != 0 ? -1 : 0
    }
}
