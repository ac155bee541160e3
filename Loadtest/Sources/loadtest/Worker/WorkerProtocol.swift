import Foundation

/// What the parent tells one `loadtest worker` child (one JSON line on its stdin).
struct WorkerSpec: ChildSpec {
    var index: Int
    /// Node URLs; global connection g goes to `urls[g % urls.count]`.
    var urls: [String]
    /// Global index of this worker's first connection, and how many it opens.
    var first: Int
    var count: Int
    /// Connections per second this worker opens.
    var rate: Double
    /// Local addresses to bind (empty: let the kernel choose).
    var sourceAddresses: [String]
    var secret: String
    var tokenTTL: Int
    var userPrefix: String
    /// Channels to subscribe after connect; global connection g takes `channels[g % channels.count]`.
    var channels: [String]
    var rxBufferSize: Int
    /// Connections opened but not yet answered before pacing waits.
    var maxInFlight: Int
    var connectTimeout: Int
    /// `.nchan`: connect to `<url>/sub/<channel>` (no connect or subscribe commands), the
    /// subscription starts at offset 1 and the pushes are the publisher's own bodies.
    var target: FanoutTarget = .gateway
}

/// The server a fan-out runs against: the gateway, or Nchan for the side-by-side benchmark.
enum FanoutTarget: String, Codable {
    case gateway, nchan
}

/// Counters of one channel's subscribers in one worker, for loss accounting.
struct ChannelTally: Codable {
    var channel: Int
    var subscribers: Int
    /// Sum over open subscribers of the highest offset received with nothing missing below it.
    var contiguousSum: Int64
    /// Offsets skipped and never filled.
    var holes: Int
}

/// What a worker reports (one JSON line on its stdout), every half second and at the end.
/// Counters are cumulative; `latency` covers only deliveries since the previous report.
/// Summed over the workers it is `WorkerTotals`.
struct WorkerStatus: ChildStatus {
    var worker = 0
    var final = false
    var attempted = 0
    var opened = 0
    var connected = 0
    var failed = 0
    var dropped = 0
    var subscribed = 0
    var subscribeFailed = 0
    var deliveries = 0
    var duplicates = 0
    var outOfOrder = 0
    var holesOpen = 0
    var unexpected = 0
    var connectedPerNode: [Int] = []
    var failures: [String: Int] = [:]
    var drops: [String: Int] = [:]
    var firstAttemptMicros: Int64?
    var lastConnectMicros: Int64?
    var firstDeliveryMicros: Int64?
    var lastDeliveryMicros: Int64?
    var latency: SparseHistogram?
    var connectLatency: SparseHistogram?
    /// Sent once every connection is settled, and at the end.
    var channels: [ChannelTally]?
    var fdLimit = 0
    var rssBytes = 0
    /// Totals: workers that have reported.
    var reporting = 0

    var inFlight: Int { attempted - connected - failed }
    var open: Int { connected - dropped }

    /// Adds another worker's counters (histograms and tallies stay with the pool).
    mutating func add(_ s: WorkerStatus) {
        reporting += 1
        attempted += s.attempted
        opened += s.opened
        connected += s.connected
        failed += s.failed
        dropped += s.dropped
        subscribed += s.subscribed
        subscribeFailed += s.subscribeFailed
        deliveries += s.deliveries
        duplicates += s.duplicates
        outOfOrder += s.outOfOrder
        holesOpen += s.holesOpen
        unexpected += s.unexpected
        if connectedPerNode.count < s.connectedPerNode.count {
            connectedPerNode += Array(repeating: 0, count: s.connectedPerNode.count - connectedPerNode.count)
        }
        for (i, n) in s.connectedPerNode.enumerated() { connectedPerNode[i] += n }
        failures.add(s.failures)
        drops.add(s.drops)
        firstAttemptMicros = firstAttemptMicros.earliest(s.firstAttemptMicros)
        lastConnectMicros = lastConnectMicros.latest(s.lastConnectMicros)
        firstDeliveryMicros = firstDeliveryMicros.earliest(s.firstDeliveryMicros)
        lastDeliveryMicros = lastDeliveryMicros.latest(s.lastDeliveryMicros)
        rssBytes += s.rssBytes
    }
}

/// Sums of every worker's latest report.
typealias WorkerTotals = WorkerStatus
