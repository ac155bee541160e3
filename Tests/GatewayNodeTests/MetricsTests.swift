@testable import GatewayNode
import GatewayCore
import XCTest

final class MetricsTests: XCTestCase {
    func testLiveSeriesKeepsTheLastPointsOldestFirst() {
        var series = LiveSeries(capacity: 3)
        var latency = LatencyHistogram()
        series.sample(atMs: 0, pushes: 0, latency: latency)
        XCTAssertEqual(series.points(), [], "the first sample is only the baseline")
        for i in 1...5 {
            latency.record(0.004, times: 100 * i)
            series.sample(atMs: Int64(i) * 2_000, pushes: 1_000 * i * (i + 1) / 2, latency: latency)
        }
        let points = series.points()
        XCTAssertEqual(points.map(\.atMs), [6_000, 8_000, 10_000])
        XCTAssertEqual(points.map(\.pushesPerSecond), [1_500, 2_000, 2_500], "pushes over each 2 s interval")
        XCTAssertEqual(points.map(\.p99Seconds), [0.005, 0.005, 0.005])
    }

    func testLiveSeriesP99IsPerInterval() {
        var series = LiveSeries(capacity: 10)
        var latency = LatencyHistogram()
        series.sample(atMs: 0, pushes: 0, latency: latency)
        latency.record(2, times: 100)
        series.sample(atMs: 2_000, pushes: 100, latency: latency)
        latency.record(0.002, times: 100)
        series.sample(atMs: 4_000, pushes: 200, latency: latency)
        series.sample(atMs: 6_000, pushes: 200, latency: latency)
        XCTAssertEqual(series.points().map(\.p99Seconds), [2.5, 0.0025, 0], "a slow interval does not colour the next ones")
        XCTAssertEqual(series.points().map(\.pushesPerSecond), [50, 50, 0])
    }

    func testScrapeHasTheHistograms() {
        let metrics = NodeMetrics()
        metrics.commandCompleted(op: "order.get", seconds: 0.003)
        metrics.httpCompleted(route: "/api/v1/orders", status: 201, seconds: 0.02)
        var push = LatencyHistogram()
        push.record(0.004, times: 3)
        let text = String(decoding: metrics.render(connections: 0, subscriptions: 0, channels: 0, redisUp: true, redisRTT: 0,
                                                   redisReconnects: 0, framesSent: 0, loopStall: 0, refusedAtLimit: 0,
                                                   pushLatency: push, webhookAttempts: ["delivered": 2, "retry": 1]), as: UTF8.self)
        for line in [#"gateway_push_latency_seconds_bucket{le="0.005"} 3"#, #"gateway_push_latency_seconds_bucket{le="+Inf"} 3"#,
                     "gateway_push_latency_seconds_count 3", "# TYPE gateway_push_latency_seconds histogram",
                     #"gateway_command_duration_seconds_count{op="order.get"} 1"#,
                     #"gateway_http_request_duration_seconds_count{route="/api/v1/orders",status="201"} 1"#,
                     "gateway_webhook_backlog 0", "gateway_webhook_oldest_seconds 0",
                     #"gateway_webhook_attempts_total{outcome="delivered"} 2"#, #"gateway_webhook_attempts_total{outcome="retry"} 1"#] {
            XCTAssertTrue(text.contains(line), "missing \(line) in\n\(text)")
        }
        XCTAssertTrue(text.contains(#"gateway_push_latency_seconds_bucket{le="0.0025"} 0"#), text)
    }
}
