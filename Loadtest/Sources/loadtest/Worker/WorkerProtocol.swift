import Foundation

/// What the parent tells one `loadtest worker` child (one JSON line on its stdin).
struct WorkerSpec: Codable {
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
struct WorkerStatus: Codable {
    var worker: Int
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

    var inFlight: Int { attempted - connected - failed }
    var open: Int { connected - dropped }
}
