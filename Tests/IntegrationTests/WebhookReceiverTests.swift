import Foundation
import GatewayCrypto
import GatewayProtocol
import GatewayTestSupport
import XCTest

/// The test receiver the webhook tests and the load tester rely on: it must record exactly what
/// came over the wire and answer exactly as scripted, or their verdicts mean nothing.
final class WebhookReceiverTests: XCTestCase {
    private let secret = "whsec-receiver-test"

    private func event(_ id: String, order: String = "o-1") -> [UInt8] {
        Array(#"{"id":"\#(id)","type":"order.paid","created_at":1764600000000,"data":{"order":"\#(order)"}}"#.utf8)
    }

    private func headers(_ id: String, _ body: [UInt8], secret: String? = nil, timestamp: Int64? = nil) -> [(String, String)] {
        let t = timestamp ?? Int64(Date().timeIntervalSince1970)
        return [("Content-Type", "application/json"), ("X-Gateway-Event-Id", id),
                ("X-Gateway-Signature", WebhookSignature.header(secret: secret ?? self.secret, timestamp: t, body: body))]
    }

    func testRecordsEachRequestAndChecksItsSignatureOverOneKeptConnection() throws {
        let receiver = try WebhookReceiver(secret: secret)
        defer { receiver.stop() }
        XCTAssertEqual(receiver.url, "http://127.0.0.1:\(receiver.port)/hooks")
        let client = HTTPConnection(host: "127.0.0.1", port: receiver.port, timeout: 5)
        defer { client.disconnect() }

        let first = event("1-0"), second = event("2-0"), third = event("3-0")
        // Not idempotent: a server that closed the kept socket would make these throw.
        XCTAssertEqual(try client.request("POST", "/hooks", body: first, headers: headers("1-0", first)).status, 200)
        XCTAssertEqual(try client.request("POST", "/hooks", body: second, headers: headers("2-0", second, secret: "other")).status, 200)
        XCTAssertEqual(try client.request("POST", "/hooks", body: third,
                                          headers: headers("3-0", third, timestamp: Int64(Date().timeIntervalSince1970) - 3_600)).status, 200)

        let receipts = receiver.receipts()
        XCTAssertEqual(receipts.map(\.eventID), ["1-0", "2-0", "3-0"])
        XCTAssertEqual(receipts.map(\.signatureValid), [true, false, false], "wrong secret, then a replay outside 300 s")
        XCTAssertEqual(Set(receipts.map(\.connection)).count, 1, "keep-alive: one connection carried all three")
        XCTAssertEqual(receipts[0].body, first)
        XCTAssertEqual(receipts[0].json?["type"] as? String, "order.paid")
        XCTAssertEqual(receipts[0].path, "/hooks")
        XCTAssertEqual(receipts[0].method, "POST")
        XCTAssertTrue(receipts[0].signature.hasPrefix("t="))
        XCTAssertTrue(receipts.allSatisfy { $0.startedAt <= $0.endedAt && $0.endedAt <= WebhookReceiver.now() })
        let wallNow = Int64(Date().timeIntervalSince1970 * 1000)
        XCTAssertTrue(receipts.allSatisfy { abs($0.receivedAtMs - wallNow) < 60_000 })
        XCTAssertEqual(receiver.delivered().count, 3)
    }

    func testAnswerScriptsTheStatusByAttemptOfEachEvent() throws {
        let receiver = try WebhookReceiver(secret: secret) { id, attempt in
            id == "poison" ? (500, 0) : (attempt < 3 ? 500 : 200, 0)
        }
        defer { receiver.stop() }
        let client = HTTPConnection(host: "127.0.0.1", port: receiver.port, timeout: 5)
        defer { client.disconnect() }
        var statuses: [Int] = []
        for id in ["a-0", "poison", "a-0", "b-0", "a-0", "a-0"] {
            let body = event(id)
            statuses.append(try client.request("POST", "/hooks", body: body, headers: headers(id, body)).status)
        }
        XCTAssertEqual(statuses, [500, 500, 500, 500, 200, 200])
        XCTAssertEqual(receiver.delivered().map(\.eventID), ["a-0", "a-0"])
        XCTAssertTrue(receiver.waitForDelivered(count: 2, timeout: 1))
        XCTAssertFalse(receiver.waitForDelivered(count: 3, timeout: 0.2))
    }

    func testStopRefusesEveryoneAndRestartListensOnTheSamePort() throws {
        let receiver = try WebhookReceiver(secret: secret)
        let port = receiver.port
        let kept = HTTPConnection(host: "127.0.0.1", port: port, timeout: 5)
        defer { kept.disconnect() }
        let body = event("1-0")
        XCTAssertEqual(try kept.request("POST", "/hooks", body: body, headers: headers("1-0", body)).status, 200)

        receiver.stop()
        XCTAssertThrowsError(try kept.request("POST", "/hooks", body: body, headers: headers("1-0", body)),
                             "the kept connection was closed")
        XCTAssertThrowsError(try connectLoopback(port: port, timeout: 1), "the listener is gone: refused")

        try receiver.restart()
        defer { receiver.stop() }
        XCTAssertEqual(receiver.port, port)
        XCTAssertEqual(try httpRequest(port: port, "POST", "/hooks", body: body, headers: ["X-Gateway-Event-Id": "1-0"]).status, 200)
        XCTAssertEqual(receiver.receipts().map(\.eventID), ["1-0", "1-0"], "receipts survive a restart")
        XCTAssertEqual(receiver.receipts().map(\.connection), [1, 2])
    }

    func testAnAnswerTheClientNoLongerWaitsForIsNotDelivered() throws {
        let receiver = try WebhookReceiver(secret: secret) { id, _ in (200, id == "slow" ? 60_000 : 0) }
        defer { receiver.stop() }
        let body = event("slow")
        XCTAssertThrowsError(try httpRequest(port: receiver.port, "POST", "/hooks", body: body,
                                             headers: ["X-Gateway-Event-Id": "slow"], timeout: 0.3),
                             "the client times out long before the 60 s delay")
        try waitUntil(timeout: 10, "the abandoned answer is recorded") { receiver.receipts().count == 1 }
        XCTAssertEqual(receiver.receipts().first?.answered, false)
        XCTAssertEqual(receiver.receipts().first?.status, 200)
        XCTAssertTrue(receiver.delivered().isEmpty, "the sender saw no answer: not delivered")

        // stop() ends a pending delayed answer instead of waiting for it.
        let client = try connectLoopback(port: receiver.port, timeout: 30)
        defer { close(client) }
        let request = Array("POST /hooks HTTP/1.1\r\nHost: x\r\nX-Gateway-Event-Id: slow\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
        XCTAssertEqual(request.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }, request.count)
        try waitUntil(timeout: 10, "the second request arrived") { receiver.requestsInProgress() == 1 }
        receiver.stop()
        XCTAssertEqual(receiver.receipts().count, 2)
        XCTAssertEqual(receiver.receipts().last?.answered, false)
        var byte: UInt8 = 0
        XCTAssertEqual(recv(client, &byte, 1, 0), 0, "closed without an answer")
    }

    func testAClientThatHalfClosesAfterItsRequestStillGetsAnImmediateAnswer() throws {
        let receiver = try WebhookReceiver(secret: secret)
        defer { receiver.stop() }
        let fd = try connectLoopback(port: receiver.port, timeout: 5)
        defer { close(fd) }
        let request = Array("POST /hooks HTTP/1.1\r\nHost: x\r\nX-Gateway-Event-Id: 1-0\r\nContent-Length: 2\r\n\r\n{}".utf8)
        XCTAssertEqual(request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }, request.count)
        shutdown(fd, Int32(SHUT_WR))
        var answer: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            answer += buf[..<n]
        }
        XCTAssertTrue(String(decoding: answer, as: UTF8.self).hasPrefix("HTTP/1.1 200 "), String(decoding: answer, as: UTF8.self))
        XCTAssertEqual(receiver.delivered().map(\.eventID), ["1-0"])
    }

    func testMalformedRequestsAreRefusedNotRecorded() throws {
        let receiver = try WebhookReceiver(secret: secret)
        defer { receiver.stop() }
        let chunked = try rawExchange(port: receiver.port, Array(
            "POST /hooks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n".utf8), readUntilClose: true, timeout: 5)
        XCTAssertTrue(String(decoding: chunked, as: UTF8.self).hasPrefix("HTTP/1.1 411 "))
        let garbage = try rawExchange(port: receiver.port, Array("HELLO\r\n\r\n".utf8), readUntilClose: true, timeout: 5)
        XCTAssertTrue(String(decoding: garbage, as: UTF8.self).hasPrefix("HTTP/1.1 400 "))
        XCTAssertTrue(receiver.receipts().isEmpty)
    }

    func testTheAuditFindsLostDoubledUnexpectedAndReorderedDeliveries() throws {
        let receiver = try WebhookReceiver(secret: secret) { id, _ in (id == "4-0" ? 500 : 200, 0) }
        defer { receiver.stop() }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let log = [
            WebhookAudit.LoggedEvent(id: "1-0", type: "order.paid", createdAtMs: now, order: "o-1"),
            WebhookAudit.LoggedEvent(id: "2-0", type: "order.delivered", createdAtMs: now, order: "o-1"),
            WebhookAudit.LoggedEvent(id: "3-0", type: "order.paid", createdAtMs: now, order: "o-2"),
            WebhookAudit.LoggedEvent(id: "4-0", type: "order.delivered", createdAtMs: now, order: "o-2"),
            WebhookAudit.LoggedEvent(id: "5-0", type: "gift.expired", createdAtMs: now, order: nil),
        ]
        let client = HTTPConnection(host: "127.0.0.1", port: receiver.port, timeout: 5)
        defer { client.disconnect() }
        for (id, signedWith) in [("2-0", secret), ("1-0", secret), ("3-0", secret), ("3-0", secret), ("4-0", secret),
                                 ("5-0", "not-the-secret"), ("x-9", secret)] {
            let body = event(id)
            _ = try client.request("POST", "/hooks", body: body, headers: headers(id, body, secret: signedWith))
        }

        let audit = WebhookAudit(log: log, receipts: receiver.receipts())
        XCTAssertEqual(audit.requests, 7)
        XCTAssertEqual(audit.received, 5, "1-0, 2-0, 3-0, 5-0 and the unexpected x-9")
        XCTAssertEqual(audit.duplicates, 1)
        XCTAssertEqual(audit.missing, 1, "4-0 was answered 500")
        XCTAssertEqual(audit.missingSample, ["4-0"])
        XCTAssertEqual(audit.unexpected, 1)
        XCTAssertEqual(audit.outOfOrder, 1, "o-1's 2-0 came before its 1-0")
        XCTAssertEqual(audit.signaturesInvalid, 1)
        XCTAssertEqual(audit.latenciesMs.count, 4)
        XCTAssertTrue(audit.latenciesMs.allSatisfy { (0..<60_000).contains($0) }, "\(audit.latenciesMs)")

        let parsed = try XCTUnwrap(WebhookAudit.LoggedEvent(JSON.parse(event("7-1", order: "o-7"))))
        XCTAssertEqual(parsed.id, "7-1")
        XCTAssertEqual(parsed.order, "o-7")
        XCTAssertEqual(parsed.type, "order.paid")
        XCTAssertEqual(parsed.createdAtMs, 1_764_600_000_000)
    }
}
