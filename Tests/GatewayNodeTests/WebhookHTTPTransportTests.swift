import Foundation
@testable import GatewayNode
import GatewayProtocol
import XCTest

final class WebhookHTTPTransportTests: XCTestCase {
    /// A port on 127.0.0.1 nothing listens on (bound, read back, closed).
    func closedPort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    func testNoAnswerIsNilAndLoggedOnceWithoutThePathOrQuery() throws {
        let lock = NSLock()
        var logged: [String] = []
        let target = try HTTPTarget("http://127.0.0.1:\(closedPort())/hooks?token=shop-secret")
        let transport = try WebhookHTTPTransport(target: target, concurrency: 1, deliver: { work in lock.withLock { work() } },
                                                 log: { logged.append($0) })
        var statuses: [Int?] = []
        let done = DispatchSemaphore(value: 0)
        for _ in 0..<3 {
            transport.post(body: Array("{}".utf8), headers: [.init(name: "X-Gateway-Signature", value: "t=1,v1=abc")], timeoutMs: 10_000) { status in
                statuses.append(status)
                done.signal()
            }
        }
        for _ in 0..<3 { XCTAssertEqual(done.wait(timeout: .now() + 60), .success) }
        lock.withLock {
            XCTAssertEqual(statuses, [nil, nil, nil])
            XCTAssertEqual(logged.count, 1, "the same reason is logged once: \(logged)")
            XCTAssertTrue(logged.first?.contains("127.0.0.1") == true, "\(logged)")
            XCTAssertFalse(logged.joined().contains("shop-secret") || logged.joined().contains("/hooks") || logged.joined().contains("v1=abc"))
        }
    }
}
