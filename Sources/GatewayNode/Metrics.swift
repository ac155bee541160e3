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
        registry.makeGauge(name: "gateway_loop_stall_max_seconds",
                           help: "Longest event-loop stall since the last scrape").set(loopStall)
        registry.makeGauge(name: "gateway_connections", help: "Open WebSocket connections").set(Int64(connections))
        registry.makeGauge(name: "gateway_subscriptions", help: "Channel subscriptions of local clients").set(Int64(subscriptions))
        registry.makeGauge(name: "gateway_channels", help: "Channels this node listens to").set(Int64(channels))
        registry.makeGauge(name: "gateway_redis_up", help: "1 when both Redis connections are up").set(Int64(redisUp ? 1 : 0))
        registry.makeGauge(name: "gateway_redis_rtt_seconds", help: "Last Redis PING round trip").set(redisRTT)
        advance("gateway_connections_opened_total", "WebSocket connections accepted", connectionsOpened)
        advance("gateway_pushes_total", "Publications queued to clients", pushes)
        advance("gateway_frames_sent_total", "WebSocket frames written", framesSent)
        advance("gateway_send_queue_closes_total", "Clients closed with 4008 for not reading", slowClosed)
        advance("gateway_redis_reconnects_total", "Redis reconnect attempts", redisReconnects)
        advance("gateway_connections_refused_total", "Sockets closed at accept: the node was at its descriptor ceiling",
                refusedAtLimit)
        for (key, value) in commands {
            let counter = commandCounters[key] ?? registry.makeCounter(
                name: "gateway_commands_total", labels: [("op", key.op), ("result", key.result)],
                help: "Commands by op and result (ok or error code)")
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

    private func advance(_ name: String, _ help: String, _ value: Int) {
        let delta = value - (exported[name] ?? 0)
        let counter = registry.makeCounter(name: name, help: help)
        if delta > 0 { counter.increment(by: Int64(delta)) }
        exported[name] = value
    }
}
