import XCTest
@testable import GatewayConfig

final class RedisURLTests: XCTestCase {
    private func parse(_ url: String) -> RedisURL? { try? RedisURL.parse(url).get() }

    func testPlainHostPortAndDefaultPort() {
        XCTAssertEqual(parse("redis://127.0.0.1:6380"), RedisURL(endpoints: [.tcp(host: "127.0.0.1", port: 6380)]))
        XCTAssertEqual(parse("redis://cache.local"), RedisURL(endpoints: [.tcp(host: "cache.local", port: 6379)]))
        XCTAssertEqual(parse("redis://[::1]:7000")?.endpoint, .tcp(host: "::1", port: 7000))
    }

    func testCredentialsAndDatabaseAreKept() {
        let url = parse("redis://shop:p%40ss:w@10.0.0.5:6379/3")
        XCTAssertEqual(url?.user, "shop")
        XCTAssertEqual(url?.password, "p@ss:w")
        XCTAssertEqual(url?.db, 3)
        XCTAssertEqual(url?.redacted, "redis://shop:***@10.0.0.5:6379/3")
        let passwordOnly = parse("redis://:secret@h:1")
        XCTAssertNil(passwordOnly?.user)
        XCTAssertEqual(passwordOnly?.password, "secret")
        XCTAssertEqual(parse("redis://secret@h:1")?.password, "secret")
    }

    func testUnixTLSAndCluster() {
        XCTAssertEqual(parse("unix:///run/redis.sock?db=2"), RedisURL(endpoints: [.unix(path: "/run/redis.sock")], db: 2))
        XCTAssertEqual(parse("rediss://h:6380")?.tls, true)
        let cluster = parse("redis+cluster://u:p@a:7000,b:7001,c")
        XCTAssertEqual(cluster?.cluster, true)
        XCTAssertEqual(cluster?.endpoints, [.tcp(host: "a", port: 7000), .tcp(host: "b", port: 7001), .tcp(host: "c", port: 6379)])
    }

    func testEveryPartThatCannotBeHonouredIsAnError() {
        for bad in ["http://h:1", "redis://", "redis://h:0", "redis://h:70000", "redis://h:x", "redis://h:1/db",
                    "redis://h:1/-1", "redis://h:1/99999", "redis://a:1,b:2", "redis+cluster://a:1/2",
                    "unix://relative.sock", "unix://", "unix:///s?db=x", "unix:///s?timeout=1", "redis://h:1?x=1",
                    "redis://h h:1", "redis://:@h:1", "redis://h;rm:1", "redis://[::1:5"] {
            if case .success = RedisURL.parse(bad) { XCTFail("accepted \(bad)") }
        }
    }

    func testErrorsNeverEchoThePassword() {
        guard case .failure(let error) = RedisURL.parse("redis://u:hunter2@h:99999") else { return XCTFail("accepted") }
        XCTAssertFalse(error.message.contains("hunter2"), error.message)
    }

    func testDurability() {
        XCTAssertEqual(RedisDurability("fsync"), .fsync)
        XCTAssertEqual(RedisDurability("replicas:2"), .replicas(2))
        for bad in ["", "always", "replicas:", "replicas:0", "replicas:101", "replicas:-1"] { XCTAssertNil(RedisDurability(bad), bad) }
    }
}
