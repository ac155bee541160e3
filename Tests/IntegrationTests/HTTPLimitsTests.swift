import Foundation
import GatewayProtocol
import XCTest

/// HTTP against hostile or clumsy clients (contract 4.1): route and credentials are decided
/// on the headers, bodies over the route's limit are refused unread, slow requests are
/// closed, and idempotency keys never reach across callers.
final class HTTPLimitsTests: IntegrationCase {
    static let mib = 1 << 20

    func head(_ method: String, _ path: String, key: String? = TestSecrets.shopKey, length: Int? = nil,
              extra: [String] = []) -> String {
        var h = "\(method) \(path) HTTP/1.1\r\nHost: gw\r\n"
        if let key { h += "Authorization: Bearer \(key)\r\n" }
        if let length { h += "Content-Type: application/json\r\nContent-Length: \(length)\r\n" }
        for line in extra { h += line + "\r\n" }
        return h + "\r\n"
    }

    /// Sends only the headers and expects the answer, and the connection closed by the
    /// node, without a single body byte sent.
    func answeredOnHeaders(_ node: GatewayNodeProcess, _ headers: String, _ status: Int, _ code: String,
                           file: StaticString = #filePath, line: UInt = #line) throws {
        let c = try RawHTTP(port: node.port)
        XCTAssertTrue(c.send(headers), file: file, line: line)
        let r = c.readResponse(timeout: 5)
        XCTAssertEqual(r.status, status, "\(headers.prefix(60)): \(r.text)", file: file, line: line)
        XCTAssertEqual(r.json?["error"]?["code"]?.stringValue, code, r.text, file: file, line: line)
        XCTAssertNotNil(r.json?["error"]?["temporary"]?.boolValue, "every HTTP error says whether it is temporary: \(r.text)", file: file, line: line)
        XCTAssertTrue(r.headers.contains("connection: close"), r.headers, file: file, line: line)
        XCTAssertTrue(c.waitClosed(timeout: 5), "the node closes after answering before the body", file: file, line: line)
    }

    // MARK: Decided on the headers

    func testKeyUploadOverMaxBodyIs413BeforeTheBody() throws {
        let node = try startNode()
        try createProduct(node, "p1")
        try answeredOnHeaders(node, head("POST", "/api/v1/products/p1/keys", length: 9 * Self.mib), 413, "too_large")
        // Credentials come first: a wrong key is 401, whatever the size.
        try answeredOnHeaders(node, head("POST", "/api/v1/products/p1/keys", key: "wrong", length: 9 * Self.mib), 401, "unauthorized")
        // Up to limits.max_body the upload is read and applied.
        let keys = (0..<2200).map { "KEY-\($0)-" + String(repeating: "x", count: 500) }
        let body = JSON.object([("keys", .array(keys.map { .string($0) }))]).serialized()
        XCTAssertGreaterThan(body.utf8.count, Self.mib)
        // A client that waits for 100 Continue (curl above 1 MiB) gets it, then sends the body.
        let c = try RawHTTP(port: node.port)
        XCTAssertTrue(c.send(head("POST", "/api/v1/products/p1/keys", length: body.utf8.count, extra: ["Expect: 100-continue"])))
        XCTAssertEqual(c.readResponse(timeout: 5).status, 100)
        XCTAssertTrue(c.send(body))
        let r = c.readResponse(timeout: 10)
        XCTAssertEqual(r.status, 200, r.text)
        XCTAssertEqual(r.json?["added"]?.intValue, 2200)
    }

    /// The node's errors and the I/O glue's have one shape, with `temporary` as on the WebSocket.
    func testEveryHTTPErrorCarriesTemporary() throws {
        let node = try startNode()
        let answers = [
            try node.http("GET", "/api/v1/orders/o-none"),                  // the node, after routing
            try node.http("POST", "/api/v1/orders", body: "[1]"),           // the node, a bad body
            try node.http("GET", "/nowhere"),                               // refused on the headers
            try node.http("GET", "/api/v1/orders/o-1", key: "wrong"),
        ]
        XCTAssertEqual(answers.map(\.status), [404, 400, 404, 401])
        for r in answers {
            XCTAssertEqual(r.json?["error"]?["temporary"], .bool(false), r.text)
            XCTAssertNotNil(r.json?["error"]?["message"]?.stringValue, r.text)
        }
    }

    func testRouteAndKeyAreCheckedBeforeTheBody() throws {
        let node = try startNode()
        try answeredOnHeaders(node, head("POST", "/api/v1/orders", key: "wrong", length: 1000), 401, "unauthorized")
        try answeredOnHeaders(node, head("POST", "/api/v1/orders", key: nil, length: 1000), 401, "unauthorized")
        try answeredOnHeaders(node, head("POST", "/api/v1/nowhere", length: 1000), 404, "not_found")
        try answeredOnHeaders(node, head("PUT", "/api/v1/orders", length: 1000), 404, "not_found")
        try answeredOnHeaders(node, head("POST", "/elsewhere", length: 1000), 404, "not_found")
        try answeredOnHeaders(node, head("POST", #"/else"where\"#, length: 1000), 404, "not_found")
        try answeredOnHeaders(node, head("POST", "/dev/orders", key: nil, length: 1000), 404, "not_found")
        XCTAssertEqual(try node.http("GET", "/healthz").status, 200, "the node still serves")
    }

    func testOtherRoutesTakeAt64KiB() throws {
        let node = try startNode()
        try createProduct(node, "p1")
        try answeredOnHeaders(node, head("POST", "/api/v1/orders", length: 65537), 413, "too_large")
        try answeredOnHeaders(node, head("PATCH", "/api/v1/products/p1", length: 100_000), 413, "too_large")
        // The provider's notify is authenticated by the body, but its size is known first.
        try answeredOnHeaders(node, head("POST", "/api/v1/payments/notify", key: nil, length: 70_000), 413, "too_large")
        try answeredOnHeaders(node, head("GET", "/healthz", key: nil, length: 70_000), 413, "too_large")

        // Exactly 64 KiB is read and handled.
        let prefix = #"{"buyer":"u1","product":"nope","pad":""#
        let body = prefix + String(repeating: "z", count: 65536 - prefix.utf8.count - 2) + "\"}"
        XCTAssertEqual(body.utf8.count, 65536)
        let r = try node.http("POST", "/api/v1/orders", body: body)
        XCTAssertEqual(r.status, 404, r.text)
    }

    func testMalformedContentLength() throws {
        let node = try startNode()
        for bad in ["-1", "abc", "12abc", "1 2", "+5", "0x10", "5, 5"] {
            try answeredOnHeaders(node, head("POST", "/api/v1/orders", extra: ["Content-Length: \(bad)"]), 400, "bad_request")
        }
        try answeredOnHeaders(node, head("POST", "/api/v1/orders", extra: ["Content-Length: 99999999999999999999999"]), 413, "too_large")
        try answeredOnHeaders(node, head("POST", "/api/v1/orders", extra: ["Content-Length: 10", "Transfer-Encoding: chunked"]),
                              400, "bad_request")
        try answeredOnHeaders(node, head("POST", "/api/v1/orders", extra: ["Transfer-Encoding: gzip"]), 400, "bad_request")
        XCTAssertEqual(try node.http("GET", "/healthz").status, 200)
    }

    func testChunkedBodies() throws {
        let node = try startNode()
        try createProduct(node, "p1")
        let chunked = head("POST", "/api/v1/orders", extra: ["Content-Type: application/json", "Transfer-Encoding: chunked"])

        // A small chunked body is decoded and handled.
        let json = #"{"buyer":"u1","product":"p1"}"#
        let small = try RawHTTP(port: node.port)
        let half = json.utf8.count / 2
        XCTAssertTrue(small.send(chunked + String(half, radix: 16) + "\r\n" + String(json.prefix(half)) + "\r\n"))
        let rest = String(json.dropFirst(half))
        XCTAssertTrue(small.send(String(rest.utf8.count, radix: 16) + ";ext=1\r\n" + rest + "\r\n0\r\n\r\n"))
        let created = small.readResponse(timeout: 5)
        XCTAssertEqual(created.status, 201, created.text)
        XCTAssertEqual(created.json?["product"]?.stringValue, "p1")

        // A chunked body that passes 64 KiB is refused as soon as it does, before it ends.
        let big = try RawHTTP(port: node.port)
        XCTAssertTrue(big.send(chunked))
        let piece = String(repeating: "q", count: 4096)
        for _ in 0..<17 { _ = big.send("1000\r\n" + piece + "\r\n") }
        let refused = big.readResponse(timeout: 5)
        XCTAssertEqual(refused.status, 413, refused.text)
        XCTAssertTrue(big.waitClosed(timeout: 5))

        // Broken framing is a 400 and a closed connection.
        let broken = try RawHTTP(port: node.port)
        XCTAssertTrue(broken.send(chunked + "zz\r\nabc\r\n"))
        XCTAssertEqual(broken.readResponse(timeout: 5).status, 400)
        XCTAssertTrue(broken.waitClosed(timeout: 5))
    }

    /// lws 4.1 does not get past bytes pipelined behind a request body: such a connection is
    /// closed after the first answer, and the node keeps serving everyone else.
    func testPipelinedRequestsNeverWedgeTheNode() throws {
        let node = try startNode()
        try createProduct(node, "p1")
        let one = head("POST", "/api/v1/orders", length: 30) + #"{"buyer":"u1","product":"p1"} "#
        XCTAssertEqual(one.utf8.count - one.components(separatedBy: "\r\n\r\n")[0].utf8.count - 4, 30)
        for pipelined in [one + one, head("GET", "/healthz", key: nil) + one] {
            let c = try RawHTTP(port: node.port)
            XCTAssertTrue(c.send(pipelined))
            // The first request is answered if that fits in the moment before the close.
            let first = c.readResponse(timeout: 5)
            XCTAssertTrue(first.status != nil || c.waitClosed(timeout: 5), "answered or closed")
            XCTAssertEqual(try node.http("GET", "/healthz").status, 200, "the node still serves others")
        }
        _ = try order(node, #"{"buyer":"u2","product":"p1"}"#)
    }

    // MARK: Slow clients

    func testSlowHeadersAreClosed() throws {
        let node = try startNode(env: ["GATEWAY_LIMITS_HTTP_TIMEOUT_S": "1"])
        // Many slow clients at once; each sends a header line every 300 ms and never ends.
        let slow = try (0..<40).map { _ in try RawHTTP(port: node.port) }
        for c in slow { _ = c.send("POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\n") }
        let start = Date()
        var open = slow
        while !open.isEmpty && Date().timeIntervalSince(start) < 8 {
            open = open.filter { $0.send("X-Slow: a\r\n") && !$0.waitClosed(timeout: 0) }
            usleep(300_000)
        }
        XCTAssertEqual(open.count, 0, "slow header senders still open after 8 s with http_timeout_s=1")
        XCTAssertEqual(try node.http("GET", "/healthz").status, 200)
    }

    func testSlowOrStalledBodiesAreClosed() throws {
        let node = try startNode(env: ["GATEWAY_LIMITS_HTTP_TIMEOUT_S": "1"])
        try createProduct(node, "p1")
        let trickle = try RawHTTP(port: node.port)
        XCTAssertTrue(trickle.send(head("POST", "/api/v1/orders", length: 200) + "{"))
        let stalled = try RawHTTP(port: node.port)
        XCTAssertTrue(stalled.send(head("POST", "/api/v1/orders", length: 200) + "{"))
        let start = Date()
        var trickleOpen = true
        while trickleOpen && Date().timeIntervalSince(start) < 8 {
            trickleOpen = trickle.send(" ") && !trickle.waitClosed(timeout: 0)
            usleep(300_000)
        }
        XCTAssertFalse(trickleOpen, "a body sent a byte every 300 ms is still read after 8 s with http_timeout_s=1")
        XCTAssertTrue(stalled.waitClosed(timeout: 3), "a stalled body is closed")
        XCTAssertEqual(try node.http("GET", "/healthz").status, 200)
        // A body sent in time still works on the same node.
        _ = try order(node, #"{"buyer":"u1","product":"p1"}"#)
    }

    // MARK: Merchants stay in their lane

    func testIdempotencyKeyNeverReachesAnotherCaller() throws {
        let m2Key = "test-merchant-key-2"
        let node = try startNode(env: ["GATEWAY_API_MERCHANT_KEYS": "m1:\(TestSecrets.merchantKey),m2:\(m2Key)"])
        try createProduct(node, "p1", merchant: "m1")
        try createProduct(node, "p2", merchant: "m2")
        let body1 = #"{"buyer":"u1","product":"p1","idempotency_key":"k-1"}"#
        let first = try node.http("POST", "/api/v1/orders", body: body1, key: TestSecrets.merchantKey)
        XCTAssertEqual(first.status, 201, first.text)
        let firstID = try XCTUnwrap(first.json?["id"]?.stringValue)
        let again = try node.http("POST", "/api/v1/orders", body: body1, key: TestSecrets.merchantKey)
        XCTAssertEqual(again.status, 200, again.text)
        XCTAssertEqual(again.json?["id"]?.stringValue, firstID, "the same caller gets its order back")

        // Another merchant replaying m1's request: forbidden, and no order of m1 in the answer.
        let probe = try node.http("POST", "/api/v1/orders", body: body1, key: m2Key)
        XCTAssertEqual(probe.status, 403, probe.text)
        XCTAssertFalse(probe.text.contains(firstID))
        // Another merchant, same buyer and key: its own order, never m1's.
        let other = try node.http("POST", "/api/v1/orders", body: #"{"buyer":"u1","product":"p2","idempotency_key":"k-1"}"#, key: m2Key)
        XCTAssertEqual(other.status, 201, other.text)
        XCTAssertNotEqual(other.json?["id"]?.stringValue, firstID)
        XCTAssertEqual(other.json?["product"]?.stringValue, "p2")
        // The shop has its own namespace too.
        let shop = try node.http("POST", "/api/v1/orders", body: body1)
        XCTAssertEqual(shop.status, 201, shop.text)
        XCTAssertNotEqual(shop.json?["id"]?.stringValue, firstID)

        // No other route lets m2 near m1's order or product.
        XCTAssertEqual(try node.http("GET", "/api/v1/orders/\(firstID)", key: m2Key).status, 404)
        XCTAssertEqual(try node.http("POST", "/api/v1/orders/\(firstID)/payments", body: #"{"payer":"u1"}"#, key: m2Key).status, 404)
        XCTAssertEqual(try node.http("POST", "/api/v1/orders/\(firstID)/cancel", key: m2Key).status, 404)
        XCTAssertEqual(try node.http("POST", "/api/v1/orders/\(firstID)/refund", key: m2Key).status, 404)
        XCTAssertEqual(try node.http("GET", "/api/v1/products/p1", key: m2Key).status, 403)
        XCTAssertEqual(try node.http("PATCH", "/api/v1/products/p1", body: #"{"price":1}"#, key: m2Key).status, 403)
        XCTAssertEqual(try node.http("POST", "/api/v1/products/p1/keys", body: #"{"keys":["X"]}"#, key: m2Key).status, 403)
        XCTAssertEqual(try node.http("POST", "/api/v1/publish", body: #"{"channel":"product:p1","type":"x","data":{}}"#,
                                     key: m2Key).status, 403)
        XCTAssertEqual(try node.http("POST", "/api/v1/publish", body: #"{"channel":"group:p1","type":"x","data":{}}"#,
                                     key: m2Key).status, 403)
        XCTAssertEqual(try node.http("POST", "/api/v1/products", body: #"{"id":"p3","merchant":"m1","title":"t","price":1,"currency":"CNY"}"#,
                                     key: m2Key).status, 403)
        XCTAssertEqual(try getOrder(node, firstID)["status"]?.stringValue, "pending_payment", "m2 changed nothing")
        XCTAssertEqual(try product(node, "p1")["price"]?.intValue, 1999)
    }
}

/// One raw TCP connection to a node, so a test sends a request piece by piece and sees
/// exactly when the node answers or closes.
final class RawHTTP {
    let fd: Int32
    private var buffer: [UInt8] = []
    private(set) var peerClosed = false

    struct Response {
        var status: Int?
        var headers: String
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
        var json: JSON? { try? JSON.parse(body) }
    }

    init(port: Int) throws {
        fd = try connectLoopback(port: port)
    }

    deinit { close(fd) }

    /// False once the node has closed or reset the connection.
    @discardableResult
    func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }

    /// Reads what is there within `timeout`; false when nothing came.
    private func fill(timeout: Double) -> Bool {
        guard !peerClosed else { return false }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(max(0, timeout * 1000))) > 0 else { return false }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = read(fd, &chunk, chunk.count)
        if n <= 0 {
            peerClosed = true
            return false
        }
        buffer += chunk[..<n]
        return true
    }

    /// The next whole response (headers and `Content-Length` body), or what arrived by `timeout`.
    func readResponse(timeout: Double) -> Response {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let split = buffer.firstRange(of: Array("\r\n\r\n".utf8)) {
                let head = String(decoding: buffer[..<split.lowerBound], as: UTF8.self).lowercased()
                let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                    .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                if buffer.count - split.upperBound >= length {
                    let parts = head.split(separator: "\r\n").first?.split(separator: " ") ?? []
                    let body = Array(buffer[split.upperBound..<(split.upperBound + length)])
                    buffer.removeFirst(split.upperBound + length)
                    return Response(status: parts.count > 1 ? Int(parts[1]) : nil, headers: head, body: body)
                }
            }
            let left = deadline.timeIntervalSinceNow
            if left <= 0 || (!fill(timeout: left) && (peerClosed || deadline.timeIntervalSinceNow <= 0)) {
                return Response(status: nil, headers: "", body: buffer)
            }
        }
    }

    /// True when the node closed the connection (EOF or reset) within `timeout`; bytes that
    /// still arrive are dropped.
    func waitClosed(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            if peerClosed { return true }
            if !fill(timeout: max(0, deadline.timeIntervalSinceNow)) && !peerClosed && deadline.timeIntervalSinceNow <= 0 { return false }
            buffer.removeAll()
        } while true
    }
}
