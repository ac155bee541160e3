import GatewayCore
import GatewayCrypto
@testable import GatewayNode
import GatewayProtocol
import GatewayRedis
import XCTest

final class WebhookDeliveryTests: XCTestCase {
    let event = LoggedEvent(id: "1764600000000-3", type: "order.paid", key: "o-1", createdAt: 1_764_599_999_990,
                            data: #"{"order":"o-1","amount":2900}"#)

    /// webhook_claim.lua's answer for one claim.
    func claim(attempt: Int) throws -> WebhookClaim {
        func bulk(_ s: String) -> RedisReply { .string(Array(s.utf8)) }
        let fields: [String] = ["type", "order.paid", "key", "o-1", "at", "1764599999990", "data", event.data]
        let entry: RedisReply = .array(fields.map(bulk))
        let reply: RedisReply = .array([bulk("o-1"), bulk(event.id), bulk("n1:7"), .integer(Int64(attempt)), entry])
        return try WebhookClaim(redisReply: reply)
    }

    func testTheRequestIsTheSignedEventObject() throws {
        let (body, headers) = WebhookDelivery.request(event, secret: "whsec-test", nowSeconds: 1_764_600_001)
        let json = try JSON.parse(body)
        XCTAssertEqual(json.objectValue?.map(\.0), ["id", "type", "created_at", "data"])
        XCTAssertEqual(json["data"]?["amount"]?.intValue, 2900)
        let byName = Dictionary(uniqueKeysWithValues: headers.map { ($0.name, $0.value) })
        XCTAssertEqual(byName["X-Gateway-Event-Id"], event.id)
        XCTAssertEqual(byName["Content-Type"], "application/json")
        let signature = try XCTUnwrap(byName["X-Gateway-Signature"])
        XCTAssertTrue(signature.hasPrefix("t=1764600001,v1="))
        XCTAssertTrue(WebhookSignature.verify(header: signature, secret: "whsec-test", body: body, now: 1_764_600_001))
    }

    func testAnswersMapToOutcomes() throws {
        let retry = WebhookRetry(maxBackoffSeconds: 600, retryForSeconds: 60)
        let start = event.idMs
        XCTAssertEqual(WebhookDelivery.outcome(status: 204, try claim(attempt: 1), retry, nowMs: start + 10, jitter: 0.5), .delivered)
        XCTAssertEqual(WebhookDelivery.outcome(status: 500, try claim(attempt: 1), retry, nowMs: start + 10, jitter: 0.5),
                       .retry(afterMs: 1_000))
        XCTAssertEqual(WebhookDelivery.outcome(status: 302, try claim(attempt: 2), retry, nowMs: start + 10, jitter: 0.5),
                       .retry(afterMs: 2_000), "a redirect is not followed: a failure")
        XCTAssertEqual(WebhookDelivery.outcome(status: nil, try claim(attempt: 3), retry, nowMs: start + 10, jitter: 0.5),
                       .retry(afterMs: 4_000), "no answer")
        guard case .giveUp(let reason) = WebhookDelivery.outcome(status: 500, try claim(attempt: 9), retry, nowMs: start + 60_000, jitter: 0.5)
        else { return XCTFail("retried past retry_for_s") }
        XCTAssertEqual(reason, "no 2xx in 60 s (9 attempts, last HTTP 500)")
    }
}
