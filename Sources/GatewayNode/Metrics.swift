import Foundation
import CoreMetrics
import GatewayCore
import GatewayLog
import Prometheus

/// Counters kept as plain integers on the loop thread (no locks on the hot path) and
/// handed to the Prometheus registry only when `/metrics` is scraped. Command and HTTP
/// durations go through swift-metrics timers at once (one per reply or response, beside a
/// Redis round trip); push latency is counted by the loop (`EventLoop.pushLatency`) and
/// rendered here, since a Prometheus histogram takes a lock per observation.
final class NodeMetrics {
    struct OpResult: Hashable {
        let op: String
        let result: String
    }

    var connectionsOpened = 0
    var pushes = 0
    var slowClosed = 0
    /// Live control (contract 4.3), by reason: `removed` (4010: disconnect or ban),
    /// `token_expired` (4003 on a live connection), `channel_removed` (a subscription ended).
    var liveControl: [String: Int] = ["removed": 0, "token_expired": 0, "channel_removed": 0]
    var commands: [OpResult: Int] = [:]
    var framesSent = 0
    /// `sale.buy` answers by outcome (bought, sold_out, only_left, over_limit, too_early, ended,
    /// unknown, or an error code): the error codes alone lump sold out with over the limit.
    var saleBuys: [String: Int] = [:]

    /// Events not yet delivered by webhook and the time of the oldest (cluster-wide, read every
    /// 2 s with `webhooks.url` set; 0 without). The age is taken when asked, so it keeps
    /// growing while Redis is away and no new sample comes.
    var webhookBacklogSample = WebhookBacklog(count: 0, oldestMs: 0)
    var webhookBacklog: Int { webhookBacklogSample.count }
    var webhookOldestSeconds: Double { webhookBacklogSample.oldestSeconds(nowMs: Int64(Date().timeIntervalSince1970 * 1_000)) }

    private let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private var exported: [String: Int] = [:]
    private var commandCounters: [OpResult: Prometheus.Counter] = [:]
    private var commandTimers: [String: CoreMetrics.Timer] = [:]
    private var httpTimers: [HTTPLabels: CoreMetrics.Timer] = [:]
    /// The live chart's points (`livePoints()`), sampled by the node every `LiveSeries.intervalMs`.
    private(set) var live = LiveSeries()

    struct HTTPLabels: Hashable {
        let route: String
        let status: Int
    }

    static let commandDuration = "gateway_command_duration_seconds"
    static let httpDuration = "gateway_http_request_duration_seconds"
    static let pushLatency = "gateway_push_latency_seconds"
    static let loopTurns = "gateway_loop_turn_seconds"

    init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        let buckets = LatencyHistogram.latencyBounds.map { Duration.nanoseconds(Int64(($0 * 1e9).rounded())) }
        factory.durationHistogramBuckets = [Self.commandDuration: buckets, Self.httpDuration: buckets]
        self.factory = factory
    }

    /// From admission to the reply, by op.
    func commandCompleted(op: String, seconds: Double) {
        let timer = commandTimers[op] ?? CoreMetrics.Timer(label: Self.commandDuration, dimensions: [("op", op)], factory: factory)
        commandTimers[op] = timer
        timer.recordNanoseconds(Int64(seconds * 1e9))
    }

    /// From the request's headers to the response, by route pattern (the route table's) and status.
    func httpCompleted(route: String, status: Int, seconds: Double) {
        let key = HTTPLabels(route: route, status: status)
        let timer = httpTimers[key] ?? CoreMetrics.Timer(label: Self.httpDuration, dimensions: [("route", route), ("status", String(status))],
                                                         factory: factory)
        httpTimers[key] = timer
        timer.recordNanoseconds(Int64(seconds * 1e9))
    }

    /// Closes one interval of the live series.
    func sampleLive(atMs: Int64, pushLatency: LatencyHistogram) {
        live.sample(atMs: atMs, pushes: pushes, latency: pushLatency)
    }

    /// Prometheus text for the current values.
    func render(connections: Int, subscriptions: Int, channels: Int, redisUp: Bool, redisRTT: Double,
                redisReconnects: Int, framesSent: Int, loopStall: Double, refusedAtLimit: Int,
                pushLatency: LatencyHistogram, loopTurns: LatencyHistogram? = nil,
                webhookAttempts: [String: Int]) -> [UInt8] {
        gauge("gateway_loop_stall_max_seconds", "Longest event-loop stall since the last scrape").set(loopStall)
        gauge("gateway_connections", "Open WebSocket connections").set(Int64(connections))
        gauge("gateway_subscriptions", "Channel subscriptions of local clients").set(Int64(subscriptions))
        gauge("gateway_channels", "Channels this node listens to").set(Int64(channels))
        gauge("gateway_redis_up", "1 when both Redis connections are up").set(Int64(redisUp ? 1 : 0))
        gauge("gateway_redis_rtt_seconds", "Last Redis PING round trip").set(redisRTT)
        gauge("gateway_webhook_backlog", "Webhook deliveries waiting to be sent").set(Int64(webhookBacklog))
        gauge("gateway_webhook_oldest_seconds", "Age of the oldest webhook delivery waiting").set(webhookOldestSeconds)
        advance("gateway_connections_opened_total", "WebSocket connections accepted", connectionsOpened)
        advance("gateway_pushes_total", "Publications queued to clients", pushes)
        advance("gateway_frames_sent_total", "WebSocket frames written", framesSent)
        advance("gateway_send_queue_closes_total", "Clients closed with 4008 for not reading", slowClosed)
        advance("gateway_redis_reconnects_total", "Redis reconnect attempts", redisReconnects)
        advance("gateway_connections_refused_total", "Sockets closed at accept: the node was at its descriptor ceiling",
                refusedAtLimit)
        for (reason, value) in liveControl {
            advance("gateway_live_control_total", "Connections closed (removed, token_expired) and subscriptions ended (channel_removed) by live control",
                    value, labels: [("reason", reason)])
        }
        for (outcome, value) in saleBuys {
            advance("gateway_sale_buys_total", "sale.buy answers by outcome", value, labels: [("outcome", outcome)])
        }
        for (outcome, value) in webhookAttempts {
            advance("gateway_webhook_attempts_total", "Webhook events this node settled, by outcome (delivered, retry, give_up, lease_lost, unsettled)", value,
                    labels: [("outcome", outcome)])
        }
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
        Self.emit(Self.pushLatency, "Publication ts to the socket write of each push", pushLatency, into: &out)
        if let loopTurns {
            Self.emit(Self.loopTurns, "Busy time of each event-loop turn, wake-up to the next wait (whole ms; epoll loop only)",
                      loopTurns, into: &out)
        }
        return out
    }

    /// A histogram in the text format the registry writes (cumulative buckets, +Inf, sum, count).
    static func emit(_ name: String, _ help: String, _ histogram: LatencyHistogram, into out: inout [UInt8]) {
        var text = "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        var cumulative = 0
        for (bound, n) in zip(histogram.bounds, histogram.counts) {
            cumulative += n
            text += "\(name)_bucket{le=\"\(bound)\"} \(cumulative)\n"
        }
        text += "\(name)_bucket{le=\"+Inf\"} \(histogram.count)\n"
        text += "\(name)_sum \(histogram.sum)\n\(name)_count \(histogram.count)\n"
        out.append(contentsOf: text.utf8)
    }

    private func gauge(_ name: String, _ help: String) -> Prometheus.Gauge {
        registry.makeGauge(descriptor: Self.descriptor(name, help))
    }

    /// Our names already carry their unit (`_seconds`, `_total`).
    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// Brings a counter up to `value` (the registry hands back the same counter each call).
    private func advance(_ name: String, _ help: String, _ value: Int, labels: [(String, String)] = []) {
        let key = ([name] + labels.map { "\($0.0)=\($0.1)" }).joined(separator: ":")
        let delta = value - (exported[key] ?? 0)
        let counter = registry.makeCounter(descriptor: Self.descriptor(name, help), labels: labels)
        if delta > 0 { counter.increment(by: Int64(delta)) }
        exported[key] = value
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
    /// The last few minutes of points, oldest first.
    func livePoints() -> [LivePoint] { live.points() }
}

/// The admin page's chart data: a ring of the last `capacity` intervals, each the pushes/s
/// and push latency p99 between two samples. Pure: the node samples it on a timer.
struct LiveSeries {
    /// 2 s points over 5 minutes.
    static let intervalMs = 2_000
    let capacity: Int
    private var ring: [LivePoint] = []
    /// Where the next point goes once the ring is full (its oldest).
    private var next = 0
    private var last: (atMs: Int64, pushes: Int, latency: LatencyHistogram)?

    init(capacity: Int = 150) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    /// Takes the running totals at `atMs`; the first sample only sets the baseline.
    mutating func sample(atMs: Int64, pushes: Int, latency: LatencyHistogram) {
        defer { last = (atMs, pushes, latency) }
        guard let last, atMs > last.atMs else { return }
        let seconds = Double(atMs - last.atMs) / 1_000
        let point = LivePoint(atMs: atMs, pushesPerSecond: Double(pushes - last.pushes) / seconds,
                              p99Seconds: latency.since(last.latency).quantile(0.99))
        if ring.count < capacity {
            ring.append(point)
        } else {
            ring[next] = point
            next = (next + 1) % capacity
        }
    }

    /// Oldest first.
    func points() -> [LivePoint] { Array(ring[next...] + ring[..<next]) }
}

