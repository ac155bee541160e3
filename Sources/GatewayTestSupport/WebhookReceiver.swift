import Foundation
import GatewayCrypto
import GatewayProtocol

/// A shop's webhook endpoint for the tests and the load tester: a real HTTP/1.1 server on
/// 127.0.0.1 (keep-alive, `Content-Length` bodies) that records every request and answers as
/// `answer` says, so a test can script failures (500, slow answers, going away with `stop()`)
/// and check what the gateway sent: the event ids, their order, the signatures.
///
/// One thread accepts, one thread per connection reads and answers: the gateway's sender has
/// at most `webhooks.concurrency` requests in flight per node, so threads stay few. Those
/// threads hold the receiver: call `stop()` when done with it.
public final class WebhookReceiver: @unchecked Sendable {   // mutable state is under `lock`
    public struct Receipt: Sendable {
        public let eventID: String      // X-Gateway-Event-Id ("" when absent)
        public let signature: String    // X-Gateway-Signature ("" when absent)
        public let method: String
        /// Which connection carried it, 1-based in accept order: two requests with one number
        /// came over one kept-alive connection.
        public let connection: Int
        public let path: String
        public let body: [UInt8]
        public let status: Int          // what `answer` chose
        /// Monotonic seconds (same clock as `WebhookReceiver.now()`) when the request was
        /// complete / answered.
        public let startedAt: Double
        public let endedAt: Double
        /// Wall clock (ms since the epoch) when the request was complete: comparable with an
        /// event's `created_at` on the same host.
        public let receivedAtMs: Int64
        /// Checked with the receiver's secret, 300 s tolerance (what a shop does).
        public let signatureValid: Bool
        /// False when the answer never reached a client that was still there: it had hung up
        /// (its timeout) before the delay was over, `stop()` came first, or the write failed.
        /// The sender then saw no answer, so such a request is not delivered whatever its status.
        public let answered: Bool
        /// The body parsed (JSONSerialization); nil when it is not a JSON object.
        public var json: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
        }
        public var delivered: Bool { answered && (200..<300).contains(status) }
    }

    public typealias Answer = @Sendable (_ eventID: String, _ attempt: Int) -> (status: Int, delayMs: Int)

    private let secret: String
    private let answer: Answer
    private let lock = NSLock()
    private var boundPort = 0
    private var listener: Int32 = -1
    /// Bumped by `stop()`: accept loops and connections of an older generation end.
    private var generation = 0
    private var connections: Set<Int32> = []
    private let running = DispatchGroup()
    /// Arrival order; nil outcome while the request is being answered.
    private var entries: [Entry] = []
    private var attemptsByEvent: [String: Int] = [:]
    private var acceptedConnections = 0

    private struct Entry {
        var request: ParsedRequest
        var connection: Int
        var startedAt: Double
        var receivedAtMs: Int64
        var signatureValid: Bool
        var status: Int
        var endedAt: Double?
        var answered = false
    }

    /// port 0: a free port. `answer` decides each request's status (and an optional delay before answering).
    public init(secret: String, port: Int = 0, answer: @escaping Answer = { _, _ in (200, 0) }) throws {
        self.secret = secret
        self.answer = answer
        boundPort = port
        try startListening()
    }

    deinit { stop() }

    public var port: Int { lock.withLock { boundPort } }
    public var url: String { "http://127.0.0.1:\(port)/hooks" }

    /// Every request answered (or given up on), in arrival order.
    public func receipts() -> [Receipt] {
        lock.withLock { entries.compactMap(Self.receipt) }
    }

    /// The 2xx ones that reached a client still waiting for them.
    public func delivered() -> [Receipt] {
        receipts().filter(\.delivered)
    }

    /// Requests arrived and not answered yet (waiting out their delay).
    public func requestsInProgress() -> Int {
        lock.withLock { entries.count(where: { $0.endedAt == nil }) }
    }

    /// True once `delivered()` holds `count` receipts (repeats of an event count each time).
    public func waitForDelivered(count: Int, timeout: Double) -> Bool {
        let deadline = Self.now() + timeout
        while true {
            if delivered().count >= count { return true }
            if Self.now() >= deadline { return false }
            usleep(20_000)
        }
    }

    /// Close the listener and every connection: refused from now on. Returns once every
    /// connection thread has ended (a delayed answer is abandoned, recorded as not answered).
    public func stop() {
        lock.withLock {
            generation += 1
            if listener >= 0 { shutdown(listener, Int32(SHUT_RDWR)) }
            for fd in connections { shutdown(fd, Int32(SHUT_RDWR)) }
        }
        _ = running.wait(timeout: .now() + 5)
    }

    /// Listen again on the same port.
    public func restart() throws {
        stop()
        try startListening()
    }

    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    // MARK: - Listening

    private func startListening() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestError("socket(): \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        // Connections closed by `stop()` sit in TIME_WAIT on our side; `restart()` must still bind.
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && listen(fd, 512) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard ok else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw TestError("webhook receiver cannot listen on 127.0.0.1:\(port): \(reason)")
        }
        let myGeneration = lock.withLock {
            boundPort = Int(UInt16(bigEndian: addr.sin_port))
            listener = fd
            return generation
        }
        running.enter()
        let thread = Thread { [self] in
            acceptLoop(fd, myGeneration)
            running.leave()
        }
        thread.name = "webhook-receiver-accept"
        thread.start()
    }

    private func isCurrent(_ myGeneration: Int) -> Bool { lock.withLock { generation == myGeneration } }

    private func acceptLoop(_ fd: Int32, _ myGeneration: Int) {
        while isCurrent(myGeneration) {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                break   // shut down by stop()
            }
            let connection: Int? = lock.withLock {
                guard generation == myGeneration else { return nil }
                connections.insert(client)
                running.enter()
                acceptedConnections += 1
                return acceptedConnections
            }
            guard let connection else {
                close(client)
                break
            }
            var one: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            let thread = Thread { [self] in
                serve(client, connection, myGeneration)
                lock.withLock { _ = connections.remove(client) }
                close(client)
                running.leave()
            }
            thread.name = "webhook-receiver-conn"
            thread.start()
        }
        lock.withLock { if listener == fd { listener = -1 } }
        close(fd)
    }

    // MARK: - One connection

    private func serve(_ fd: Int32, _ connection: Int, _ myGeneration: Int) {
        var reader = RequestReader(fd: fd)
        while isCurrent(myGeneration) {
            let request: ParsedRequest
            switch reader.next() {
            case .request(let r): request = r
            case .closed: return
            case .bad(let status, let reason):
                _ = writeAll(fd, Self.response(status: status, text: reason, close: true))
                return
            }
            let startedAt = Self.now()
            let receivedAtMs = Int64(Date().timeIntervalSince1970 * 1000)
            let eventID = request.header("x-gateway-event-id") ?? ""
            let signature = request.header("x-gateway-signature") ?? ""
            let valid = WebhookSignature.verify(header: signature, secret: secret, body: request.body,
                                                now: Int64(Date().timeIntervalSince1970))
            let (index, attempt) = lock.withLock {
                let attempt = (attemptsByEvent[eventID] ?? 0) + 1
                attemptsByEvent[eventID] = attempt
                entries.append(Entry(request: request, connection: connection, startedAt: startedAt, receivedAtMs: receivedAtMs,
                                     signatureValid: valid, status: 0))
                return (entries.count - 1, attempt)
            }
            let (status, delayMs) = answer(eventID, attempt)
            lock.withLock { entries[index].status = status }

            let waited = waitOut(delayMs, fd, myGeneration)
            let reply = Self.response(status: status, text: status < 300 ? "ok" : "no", close: request.wantsClose)
            // Recorded before the write: a client that has its answer finds the receipt there.
            lock.withLock {
                entries[index].endedAt = Self.now()
                entries[index].answered = waited
            }
            let answered = waited && writeAll(fd, reply)
            if waited && !answered { lock.withLock { entries[index].answered = false } }
            if !answered || request.wantsClose { return }
        }
    }

    /// Sleeps `delayMs` in short slices; false when `stop()` came or the client hung up meanwhile
    /// (a client that only half-closed looks hung up too: only a delayed answer checks).
    private func waitOut(_ delayMs: Int, _ fd: Int32, _ myGeneration: Int) -> Bool {
        if delayMs <= 0 { return isCurrent(myGeneration) }
        let deadline = Self.now() + Double(delayMs) / 1000
        while true {
            guard isCurrent(myGeneration), !peerHungUp(fd) else { return false }
            let left = deadline - Self.now()
            if left <= 0 { return true }
            usleep(UInt32(min(left, 0.01) * 1e6))
        }
    }

    /// A client that gave up closed its end: a read would see EOF (pipelined bytes mean it is still there).
    private func peerHungUp(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        if n == 0 { return true }
        if n < 0 { return !(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) }
        return false
    }

    private static func receipt(_ e: Entry) -> Receipt? {
        guard let endedAt = e.endedAt else { return nil }
        return Receipt(eventID: e.request.header("x-gateway-event-id") ?? "",
                       signature: e.request.header("x-gateway-signature") ?? "",
                       method: e.request.method, connection: e.connection, path: e.request.path, body: e.request.body, status: e.status,
                       startedAt: e.startedAt, endedAt: endedAt, receivedAtMs: e.receivedAtMs,
                       signatureValid: e.signatureValid, answered: e.answered)
    }

    static func response(status: Int, text: String, close: Bool) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(reason(status))\r\nContent-Type: text/plain\r\nContent-Length: \(text.utf8.count)\r\n"
        if close { head += "Connection: close\r\n" }
        return Array((head + "\r\n" + text).utf8)
    }

    private static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 410: "Gone"
        case 411: "Length Required"
        case 413: "Payload Too Large"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}

/// What the deliveries amount to, held against the event log read back with
/// `GET /api/v1/events`: the load tester's webhook report, and a test's "nothing lost,
/// nothing out of order" in one call. Only 2xx answers a client got count as delivered.
public struct WebhookAudit: Sendable {
    public struct LoggedEvent: Sendable {
        public let id: String
        public let type: String
        public let createdAtMs: Int64?
        /// `data.order`: the events of one order must arrive in log order.
        public let order: String?

        public init(id: String, type: String, createdAtMs: Int64?, order: String?) {
            self.id = id
            self.type = type
            self.createdAtMs = createdAtMs
            self.order = order
        }

        /// One element of `events` in a `GET /api/v1/events` answer.
        public init?(_ event: JSON) {
            guard let id = event["id"]?.stringValue else { return nil }
            self.init(id: id, type: event["type"]?.stringValue ?? "", createdAtMs: event["created_at"]?.intValue,
                      order: event["data"]?["order"]?.stringValue)
        }
    }

    /// Every request the receiver answered.
    public var requests = 0
    /// Distinct event ids delivered.
    public var received = 0
    /// Deliveries of an id already delivered (allowed: at least once).
    public var duplicates = 0
    /// Logged, never delivered; `missingSample` names the first few.
    public var missing = 0
    public var missingSample: [String] = []
    /// Delivered, not in the log.
    public var unexpected = 0
    /// First deliveries that came after a later-logged event of the same order.
    public var outOfOrder = 0
    public var signaturesInvalid = 0
    /// `created_at` to the receiver having the request (wall clock ms), per logged event's first delivery.
    public var latenciesMs: [Int64] = []
    /// Wall clock (ms) of the first and the last first delivery.
    public var firstDeliveryMs: Int64?
    public var lastDeliveryMs: Int64?

    public init(log: [LoggedEvent], receipts: [WebhookReceiver.Receipt]) {
        requests = receipts.count
        signaturesInvalid = receipts.count { !$0.signatureValid }
        var position: [String: Int] = [:]
        for (i, e) in log.enumerated() { position[e.id] = i }
        var delivered: Set<String> = []
        var latestOfOrder: [String: Int] = [:]
        for d in receipts where d.delivered {
            guard delivered.insert(d.eventID).inserted else {
                duplicates += 1
                continue
            }
            firstDeliveryMs = min(firstDeliveryMs ?? d.receivedAtMs, d.receivedAtMs)
            lastDeliveryMs = max(lastDeliveryMs ?? d.receivedAtMs, d.receivedAtMs)
            guard let i = position[d.eventID] else {
                unexpected += 1
                continue
            }
            let event = log[i]
            if let created = event.createdAtMs { latenciesMs.append(d.receivedAtMs - created) }
            if let order = event.order {
                if let latest = latestOfOrder[order], latest > i { outOfOrder += 1 }
                latestOfOrder[order] = max(latestOfOrder[order] ?? i, i)
            }
        }
        received = delivered.count
        for e in log where !delivered.contains(e.id) {
            missing += 1
            if missingSample.count < 10 { missingSample.append(e.id) }
        }
    }

    /// Distinct events delivered per second, first to last delivery.
    public var receivedPerSecond: Double {
        guard let first = firstDeliveryMs, let last = lastDeliveryMs, last > first else { return 0 }
        return Double(received) / (Double(last - first) / 1000)
    }
}

private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var off = 0
    while off < bytes.count {
        let n = bytes[off...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return false }
        off += n
    }
    return true
}

struct ParsedRequest: Sendable {
    var method: String
    var path: String
    var headers: [(name: String, value: String)]   // names lowercased
    var body: [UInt8]
    var http10: Bool

    func header(_ name: String) -> String? { headers.first { $0.name == name }?.value }

    var expectsContinue: Bool { header("expect")?.lowercased() == "100-continue" }

    /// HTTP/1.1 keeps the connection unless told to close; 1.0 closes unless told to keep it.
    var wantsClose: Bool {
        let connection = header("connection")?.lowercased() ?? ""
        return http10 ? !connection.contains("keep-alive") : connection.contains("close")
    }
}

/// Reads requests off one blocking socket: headers up to the blank line, then exactly
/// `Content-Length` body bytes. Chunked bodies are refused (411): the gateway sends lengths.
struct RequestReader {
    enum Outcome { case request(ParsedRequest), closed, bad(status: Int, reason: String) }

    static let maxHeaderBytes = 64 * 1024
    static let maxBodyBytes = 16 * 1024 * 1024

    let fd: Int32
    private var buffer: [UInt8] = []

    init(fd: Int32) { self.fd = fd }

    mutating func next() -> Outcome {
        var headerEnd: Int?
        var searchFrom = 0
        while headerEnd == nil {
            headerEnd = Self.find(Self.crlfcrlf, in: buffer, from: searchFrom)
            if headerEnd != nil { break }
            searchFrom = max(0, buffer.count - 3)
            if buffer.count > Self.maxHeaderBytes { return .bad(status: 431, reason: "headers too large") }
            guard fill() else { return .closed }
        }
        let head = String(decoding: buffer[..<headerEnd!], as: UTF8.self)
        buffer.removeSubrange(..<(headerEnd! + 4))
        let lines = head.components(separatedBy: "\r\n")
        let requestLine = lines[0].split(separator: " ")
        guard requestLine.count == 3, requestLine[2].hasPrefix("HTTP/1.") else {
            return .bad(status: 400, reason: "bad request line")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { return .bad(status: 400, reason: "bad header") }
            headers.append((line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        var request = ParsedRequest(method: String(requestLine[0]), path: String(requestLine[1]), headers: headers,
                                    body: [], http10: requestLine[2] == "HTTP/1.0")
        if request.header("transfer-encoding") != nil { return .bad(status: 411, reason: "send a Content-Length") }
        let lengthText = request.header("content-length") ?? "0"
        guard let length = Int(lengthText), length >= 0 else { return .bad(status: 400, reason: "bad Content-Length") }
        guard length <= Self.maxBodyBytes else { return .bad(status: 413, reason: "body too large") }
        if request.expectsContinue && length > buffer.count {
            guard writeAll(fd, Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) else { return .closed }
        }
        while buffer.count < length {
            guard fill() else { return .closed }
        }
        request.body = Array(buffer[..<length])
        buffer.removeSubrange(..<length)
        return .request(request)
    }

    private static let crlfcrlf: [UInt8] = [13, 10, 13, 10]

    private static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard haystack.count >= start + needle.count else { return nil }
        for i in start...(haystack.count - needle.count) where haystack[i..<(i + needle.count)].elementsEqual(needle) {
            return i
        }
        return nil
    }

    /// False at EOF, an error, or when `stop()` shut the socket down.
    private mutating func fill() -> Bool {
        var scratch = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            buffer.append(contentsOf: scratch[..<n])
            return true
        }
    }
}
