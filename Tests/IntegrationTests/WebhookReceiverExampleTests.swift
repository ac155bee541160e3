import Foundation
import GatewayCrypto
import GatewayTestSupport
import XCTest

/// `Config/examples/webhook_receiver.py` checks signatures exactly as the gateway makes them
/// (`WebhookSignature`), so the example a shop copies cannot drift from the sender.
final class WebhookReceiverExampleTests: XCTestCase {
    func testTheExampleReceiverTakesOurSignatureAndRefusesOthers() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else { throw XCTSkip("no python3") }
        let script = URL(fileURLWithPath: GatewayNodeProcess.configPath).deletingLastPathComponent()
            .appendingPathComponent("examples/webhook_receiver.py").path
        let port = freePort()
        let receiver = try TiedProcess.spawn("/usr/bin/env", ["WEBHOOK_SECRET=whsec-test", "/usr/bin/python3", script, String(port)])
        defer { receiver.signal(SIGKILL); receiver.waitExit(timeout: 5) }

        let body = Array(#"{"id":"1764600000000-0","type":"order.paid","created_at":1764600000000,"data":{"order":"o-1"}}"#.utf8)
        func post(_ signature: String) throws -> Int {
            try httpRequest(port: port, "POST", "/", body: body, headers: ["X-Gateway-Signature": signature], timeout: 5).status
        }
        let now = Int64(Date().timeIntervalSince1970)
        let good = WebhookSignature.header(secret: "whsec-test", timestamp: now, body: body)
        let deadline = Date().addingTimeInterval(10)
        var status = -1
        while Date() < deadline {
            if let s = try? post(good) { status = s; break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTAssertEqual(status, 200, "a delivery signed with the secret is taken")
        XCTAssertEqual(try post(good), 200, "a repeat (at least once) is answered 2xx again")
        XCTAssertEqual(try post(WebhookSignature.header(secret: "other", timestamp: now, body: body)), 400)
        XCTAssertEqual(try post(WebhookSignature.header(secret: "whsec-test", timestamp: now - 3_600, body: body)), 400, "a replay")
        XCTAssertEqual(try post("v1=00"), 400)
    }
}
