import CLws
import Foundation
import GatewayProtocol

/// The per-session slot lws allocates for every wsi holds one retained Swift object.
private func slot(_ user: UnsafeMutableRawPointer?) -> UnsafeMutablePointer<UnsafeMutableRawPointer?>? {
    user?.assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
}

private func store(_ object: AnyObject, in user: UnsafeMutableRawPointer?) {
    guard let s = slot(user) else { return }
    if let old = s.pointee { Unmanaged<AnyObject>.fromOpaque(old).release() }
    s.pointee = Unmanaged.passRetained(object).toOpaque()
}

private func load<T: AnyObject>(_ user: UnsafeMutableRawPointer?, as: T.Type) -> T? {
    guard let s = slot(user), let raw = s.pointee else { return nil }
    return Unmanaged<AnyObject>.fromOpaque(raw).takeUnretainedValue() as? T
}

private func clear(_ user: UnsafeMutableRawPointer?) {
    guard let s = slot(user), let raw = s.pointee else { return }
    s.pointee = nil
    Unmanaged<AnyObject>.fromOpaque(raw).release()
}

private func header(_ wsi: OpaquePointer, _ token: lws_token_indexes) -> String? {
    let len = Int(lws_hdr_total_length(wsi, token))
    guard len > 0 else { return nil }
    var buf = [CChar](repeating: 0, count: len + 1)
    guard lws_hdr_copy(wsi, &buf, Int32(buf.count), token) >= 0 else { return nil }
    return String(cString: buf)
}

private func customHeader(_ wsi: OpaquePointer, _ name: String) -> String? {
    let len = Int(lws_hdr_custom_length(wsi, name, Int32(name.utf8.count)))
    guard len > 0 else { return nil }
    var buf = [CChar](repeating: 0, count: len + 1)
    guard lws_hdr_custom_copy(wsi, &buf, Int32(buf.count), name, Int32(name.utf8.count)) >= 0 else { return nil }
    return String(cString: buf)
}

private func namedHeaders(_ wsi: OpaquePointer) -> [String: String] {
    var found: [String: String] = [:]
    for name in HTTPRequest.namedHeaders {
        if let value = customHeader(wsi, name + ":") { found[name] = value }
    }
    return found
}

/// lws splits the query at each `&` and percent-decodes every `name=value` piece; encoded
/// again here, the query reads as one `application/x-www-form-urlencoded` string, where an
/// escaped `&` or `=` inside a value stays part of it.
private func queryString(_ wsi: OpaquePointer) -> String {
    var pieces: [String] = []
    var index: Int32 = 0
    while true {
        let len = Int(lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, index))
        guard len > 0 else { break }
        var buf = [CChar](repeating: 0, count: len + 1)
        guard lws_hdr_copy_fragment(wsi, &buf, Int32(buf.count), WSI_TOKEN_HTTP_URI_ARGS, index) >= 0 else { break }
        let piece = buf.prefix(len).map { UInt8(bitPattern: $0) }
        if let eq = piece.firstIndex(of: UInt8(ascii: "=")) {
            pieces.append(percentEncoded(piece[..<eq]) + "=" + percentEncoded(piece[(eq + 1)...]))
        } else {
            pieces.append(percentEncoded(piece[...]))
        }
        index += 1
    }
    return pieces.joined(separator: "&")
}

private func percentEncoded(_ bytes: ArraySlice<UInt8>) -> String {
    var out = ""
    for byte in bytes {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
            out.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            out += "%" + String(byte >> 4, radix: 16) + String(byte & 0x0F, radix: 16)
        }
    }
    return out
}

private func requestMethod(_ wsi: OpaquePointer) -> (HTTPRequest.Method, String)? {
    let candidates: [(lws_token_indexes, HTTPRequest.Method)] = [
        (WSI_TOKEN_GET_URI, .GET), (WSI_TOKEN_POST_URI, .POST), (WSI_TOKEN_PATCH_URI, .PATCH),
        (WSI_TOKEN_PUT_URI, .PUT), (WSI_TOKEN_DELETE_URI, .DELETE), (WSI_TOKEN_OPTIONS_URI, .OPTIONS),
        (WSI_TOKEN_HEAD_URI, .HEAD),
    ]
    for (token, method) in candidates {
        if let uri = header(wsi, token) { return (method, uri) }
    }
    return nil
}

/// Headers are in: framing, then the delegate's route and credential check, then the
/// declared size, all before a byte of the body is read.
private func httpHead(_ request: HTTPRequest, _ wsi: OpaquePointer, _ loop: EventLoop) {
    let framing: HTTPFraming
    let contentLength = header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH)
    switch HTTPFraming.of(contentLength: contentLength, transferEncoding: header(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING)) {
    case .success(let f): framing = f
    case .failure(let e): return request.refuse(status: 400, code: "bad_request", message: e.message)
    }
    let carriesBody = request.method == .POST || request.method == .PUT || request.method == .PATCH
    // lws reads a body of unknown length only for these methods; elsewhere it would parse it as the next request.
    if framing == .chunked && !carriesBody {
        return request.refuse(status: 400, code: "bad_request", message: "a chunked body only with POST, PUT or PATCH")
    }
    // Without a length lws waits for 100 MiB after a POST: its idea of the end is wrong, so close after answering.
    request.closeAfterResponse = framing == .chunked || (contentLength == nil && carriesBody)
    guard let delegate = loop.delegate else { return request.refuse(status: 503, code: "unavailable", message: "shutting down") }
    switch delegate.httpHead(request) {
    case .refuse(let status, let code, let message):
        request.refuse(status: status, code: code, message: message)
    case .read(let limit):
        request.intake = HTTPBodyIntake(framing: framing, limit: min(limit, loop.options.maxBody))
        switch request.intake!.start {
        case .more:
            request.phase = .body
            loop.httpDeadlines.body(request)
            if header(wsi, WSI_TOKEN_HTTP_EXPECT)?.lowercased() == "100-continue" { sendContinue(wsi, tls: loop.isTLS) }
        case let step:
            httpStep(request, step, loop)
        }
    }
}

/// A client that waits for `100 Continue` (curl does above 1 MiB) gets it once the headers
/// passed, and only then sends the body; lws does not send it. Nothing else has been written
/// on the connection yet, so on plain text the line goes straight to the socket; under TLS it
/// must go through lws' encryption.
private func sendContinue(_ wsi: OpaquePointer, tls: Bool) {
    let line = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
    guard tls else {
        _ = line.withUnsafeBytes { send(lws_get_socket_fd(wsi), $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        return
    }
    var buf = [UInt8](repeating: 0, count: Int(clws_pre)) + line
    _ = buf.withUnsafeMutableBufferPointer { b in
        lws_write(wsi, b.baseAddress! + Int(clws_pre), line.count, LWS_WRITE_HTTP)
    }
}

/// Acts on what the body intake decided.
private func httpStep(_ request: HTTPRequest, _ step: HTTPBodyIntake.Step, _ loop: EventLoop) {
    switch step {
    case .more:
        break
    case .complete:
        request.phase = .dispatched
        loop.delegate?.httpRequest(request)
    case .tooLarge:
        let limit = request.intake?.limit ?? 0
        request.refuse(status: 413, code: "too_large", message: "request body over \(limit) bytes")
    case .malformed(let why):
        request.refuse(status: 400, code: "bad_request", message: why)
    }
}

func peerAddress(_ wsi: OpaquePointer) -> String {
    var buf = [CChar](repeating: 0, count: 64)
    lws_get_peer_simple(wsi, &buf, buf.count)
    return String(cString: buf)
}

/// Answers an upgrade request with an HTTP error before it becomes a WebSocket; lws
/// closes the socket when the filter callback then returns nonzero.
private func refuseUpgrade(_ wsi: OpaquePointer, status: UInt32, code: String, message: String) {
    let body = GatewayError(wireCode: code, message, temporary: true, retryAfterMs: 1000).httpBody
    var buf = [UInt8](repeating: 0, count: Int(clws_pre) + 1024 + body.count)
    buf.withUnsafeMutableBufferPointer { b in
        let start = b.baseAddress! + Int(clws_pre)
        var p: UnsafeMutablePointer<UInt8>? = start
        let end = b.baseAddress! + b.count - 1 - body.count
        guard lws_add_http_common_headers(wsi, status, "application/json", lws_filepos_t(body.count), &p, end) == 0,
              lws_add_http_header_by_name(wsi, "retry-after:", "1", 1, &p, end) == 0,
              lws_finalize_http_header(wsi, &p, end) == 0, var out = p else { return }
        body.withUnsafeBytes { UnsafeMutableRawPointer(out).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        out += body.count
        _ = lws_write(wsi, start, out - start, LWS_WRITE_HTTP_HEADERS)
    }
}

/// The first close callback of a WebSocket: marks it gone before anything else can run
/// (the delegate's cleanup included), so no later send or close reaches the freed wsi.
private func connectionGone(_ loop: EventLoop, _ user: UnsafeMutableRawPointer?) {
    guard let conn = load(user, as: WSConnection.self) else { return }
    conn.isGone = true
    clear(user)
    loop.delegate?.connectionClosed(conn)
}

/// The one callback for the gateway protocol: HTTP requests and WebSocket connections.
func gatewayCallback(_ wsi: OpaquePointer?, _ reason: lws_callback_reasons, _ user: UnsafeMutableRawPointer?,
                     _ input: UnsafeMutableRawPointer?, _ len: Int) -> Int32 {
    guard let wsi else { return 0 }
    guard let loop = loopOf(lws_get_context(wsi)) else { return 0 }
    switch reason {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        // `input` carries the accepted descriptor; refusing closes it.
        guard Int(bitPattern: input) >= loop.descriptorCeiling else { return 0 }
        loop.refusedForDescriptors += 1
        return 1

    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        let uri = header(wsi, WSI_TOKEN_GET_URI) ?? ""
        let path = uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? uri
        guard path == "/ws", loop.delegate?.acceptsConnections() ?? false else { return 1 }
        if Int(lws_get_socket_fd(wsi)) >= loop.upgradeCeiling {
            loop.refusedForDescriptors += 1
            return 1
        }
        if let delegate = loop.delegate, !delegate.admitsUpgrade(from: peerAddress(wsi)) {
            refuseUpgrade(wsi, status: 429, code: "rate_limited", message: "too many connections from this address, retry later")
            return 1
        }
        return 0

    case LWS_CALLBACK_ESTABLISHED:
        let conn = WSConnection(id: loop.newConnectionID(), wsi: wsi, loop: loop)
        store(conn, in: user)
        loop.liveness.add(conn)
        loop.delegate?.connectionOpened(conn)
        return 0

    case LWS_CALLBACK_RECEIVE:
        guard let conn = load(user, as: WSConnection.self), !conn.isClosing else { return 0 }
        conn.touch()
        let final = lws_is_final_fragment(wsi) != 0 && lws_remaining_packet_payload(wsi) == 0
        let chunk = UnsafeRawBufferPointer(start: input, count: len)
        if final && conn.rxAssembly.isEmpty {
            loop.delegate?.connectionReceived(conn, chunk)
            return 0
        }
        if conn.rxAssembly.count + len > loop.options.maxFrame {
            conn.rxAssembly = []
            conn.close(code: CloseCode.tooLarge.rawValue, reason: "frame too large")
            return 0
        }
        conn.rxAssembly.append(contentsOf: chunk)
        if final {
            let message = conn.rxAssembly
            conn.rxAssembly = []
            message.withUnsafeBytes { loop.delegate?.connectionReceived(conn, $0) }
        }
        return 0

    case LWS_CALLBACK_SERVER_WRITEABLE:
        guard let conn = load(user, as: WSConnection.self) else { return 0 }
        return conn.writable()

    case LWS_CALLBACK_RECEIVE_PONG:
        load(user, as: WSConnection.self)?.touch()
        return 0

    case LWS_CALLBACK_CLOSED:
        connectionGone(loop, user)
        return 0

    case LWS_CALLBACK_WSI_DESTROY:
        // The last word on every wsi; CLOSED normally came first and emptied the slot.
        connectionGone(loop, user)
        return lws_callback_http_dummy(wsi, reason, user, input, len)

    case LWS_CALLBACK_HTTP:
        guard let (method, uri) = requestMethod(wsi) else { return -1 }
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let request = HTTPRequest(method: method, path: String(parts[0]),
                                  query: parts.count > 1 ? String(parts[1]) : queryString(wsi),
                                  authorization: header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION),
                                  signature: customHeader(wsi, "x-signature:"),
                                  headers: namedHeaders(wsi), wsi: wsi)
        store(request, in: user)
        httpHead(request, wsi, loop)
        return 0

    case LWS_CALLBACK_HTTP_BODY:
        // After an early answer the rest of the body is dropped as it comes, never kept.
        guard let request = load(user, as: HTTPRequest.self), request.phase == .body, request.intake != nil else { return 0 }
        // lws restarts its own body timer on every piece: a trickle is cut here.
        if monotonicSeconds() >= request.deadline { return -1 }
        httpStep(request, request.intake!.feed(UnsafeRawBufferPointer(start: input, count: len)), loop)
        return 0

    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        guard let request = load(user, as: HTTPRequest.self) else { return 0 }
        // While bytes past the body wait in its buffer (a request pipelined behind this one)
        // lws 4.1 reports the end again and again, and past an answer it may never return to
        // the loop: a node stuck for good. Past a few milliseconds of that, close.
        let now = monotonicSeconds()
        if let first = request.firstCompletion {
            if now - first > 0.02 { return -1 }
            return 0
        }
        request.firstCompletion = now
        // lws saw its idea of the end (the Content-Length); the intake has normally said so first.
        if request.phase == .body { request.refuse(status: 400, code: "bad_request", message: "the body ended early") }
        return 0

    case LWS_CALLBACK_HTTP_WRITEABLE:
        guard let request = load(user, as: HTTPRequest.self) else { return 0 }
        return request.writable()

    case LWS_CALLBACK_CLOSED_HTTP, LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if let request = load(user, as: HTTPRequest.self) {
            request.closed()
            clear(user)
        }
        return 0

    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        // Only WebSocket: an h2c upgrade would take the connection past these HTTP/1 checks.
        if let up = input.map({ String(cString: $0.assumingMemoryBound(to: CChar.self)) }), up.lowercased() != "websocket" {
            return -1
        }
        return lws_callback_http_dummy(wsi, reason, user, input, len)

    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        loop.runPosted()
        loop.delegate?.loopWoken()
        loop.breakIfStopping()
        return 0

    default:
        return lws_callback_http_dummy(wsi, reason, user, input, len)
    }
}
