import Prometheus

/// Counters kept as plain integers on the loop thread (no locks on the hot path) and
/// handed to the Prometheus registry only when `/metrics` is scraped.
final class NodeMetrics {
    struct OpResult: Hashable {
        let op: String
        let result: String
    }

    var connectionsOpened = 0
    var pushes = 0
    var slowClosed = 0
    var commands: [OpResult: Int] = [:]
    var framesSent = 0

    private let registry = PrometheusCollectorRegistry()
    private var exported: [String: Int] = [:]
    private var commandCounters: [OpResult: Counter] = [:]

    /// Prometheus text for the current values.
    func render(connections: Int, subscriptions: Int, channels: Int, redisUp: Bool, redisRTT: Double,
                redisReconnects: Int, framesSent: Int, loopStall: Double, refusedAtLimit: Int) -> [UInt8] {
        gauge("gateway_loop_stall_max_seconds", "Longest event-loop stall since the last scrape").set(loopStall)
        gauge("gateway_connections", "Open WebSocket connections").set(Int64(connections))
        gauge("gateway_subscriptions", "Channel subscriptions of local clients").set(Int64(subscriptions))
        gauge("gateway_channels", "Channels this node listens to").set(Int64(channels))
        gauge("gateway_redis_up", "1 when both Redis connections are up").set(Int64(redisUp ? 1 : 0))
        gauge("gateway_redis_rtt_seconds", "Last Redis PING round trip").set(redisRTT)
        advance("gateway_connections_opened_total", "WebSocket connections accepted", connectionsOpened)
        advance("gateway_pushes_total", "Publications queued to clients", pushes)
        advance("gateway_frames_sent_total", "WebSocket frames written", framesSent)
        advance("gateway_send_queue_closes_total", "Clients closed with 4008 for not reading", slowClosed)
        advance("gateway_redis_reconnects_total", "Redis reconnect attempts", redisReconnects)
        advance("gateway_connections_refused_total", "Sockets closed at accept: the node was at its descriptor ceiling",
                refusedAtLimit)
        for (key, value) in commands {
            let counter = commandCounters[key] ?? registry.makeCounter(
                descriptor: Self.descriptor("gateway_commands_total", "Commands by op and result (ok or error code)"),
                labels: [("op", key.op), ("result", key.result)])
            commandCounters[key] = counter
            let name = "cmd:\(key.op):\(key.result)"
            let delta = value - (exported[name] ?? 0)
            if delta > 0 { counter.increment(by: Int64(delta)) }
            exported[name] = value
        }
        var out: [UInt8] = []
        registry.emit(into: &out)
        return out
    }

    private func gauge(_ name: String, _ help: String) -> Gauge {
        registry.makeGauge(descriptor: Self.descriptor(name, help))
    }

    /// Our names already carry their unit (`_seconds`, `_total`).
    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    private func advance(_ name: String, _ help: String, _ value: Int) {
        let delta = value - (exported[name] ?? 0)
        let counter = registry.makeCounter(descriptor: Self.descriptor(name, help))
        if delta > 0 { counter.increment(by: Int64(delta)) }
        exported[name] = value
    }
}

/// One point of the admin page's live chart: what one node pushed over one interval.
/// (Issue 12 seam: the metrics work fills these; the admin page reads them.)
public struct LivePoint: Sendable, Equatable {
    /// End of the interval, ms since the epoch.
    public let atMs: Int64
    public let pushesPerSecond: Double
    /// Push latency p99 over the interval (publication `ts` to the socket write), seconds.
    public let p99Seconds: Double

    public init(atMs: Int64, pushesPerSecond: Double, p99Seconds: Double) {
        self.atMs = atMs
        self.pushesPerSecond = pushesPerSecond
        self.p99Seconds = p99Seconds
    }
}

extension NodeMetrics {
    /// The last few minutes of points, oldest first. (Stub until the metrics work lands.)
    func livePoints() -> [LivePoint] { [] }
}
