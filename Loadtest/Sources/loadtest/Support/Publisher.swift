import Foundation
import GatewayProtocol
import GatewayTestSupport

/// Publishes `total` publications at `rate` per second through `POST /api/v1/publish`
/// (or Nchan's `POST /pub/<channel>`), open loop: publication n is due at start + n/rate
/// whatever happened before, so a slow server shows up as lag instead of a quietly
/// lower rate.
///
/// Nchan has no offsets of its own that reach a plain WebSocket subscriber, so for it the
/// body is the gateway's push frame with the offset filled in here (publication n is
/// number n / channels + 1 on its channel): subscribers check both servers the same way
/// and receive frames of the same size. Concurrent publishers may reach Nchan in another
/// order than they numbered, so out-of-order counts there include publisher races.
/// Mutable state under `lock`.
final class Publisher: @unchecked Sendable {
    struct Stats {
        var sent = 0
        var ok = 0
        var errors = 0
        var errorReasons: [String: Int] = [:]
        /// Highest offset the gateway returned, per channel index.
        var maxOffset: [Int64]
        var okPerChannel: [Int]
        var maxLagSeconds = 0.0
        var firstSendMicros: Int64?
        var lastSendMicros: Int64?
        /// Nchan: numbers of failed publications per channel (holes nobody can fill).
        var failedOffsets: [[Int64]]
    }

    let total: Int
    let rate: Double
    let channels: [String]
    private let endpoints: [Endpoint]
    private let headers: [(String, String)]
    private let threads: Int
    private let pad: String
    private let lock = NSLock()
    private var stats: Stats
    private var next = 0
    private var running = 0
    private var http = Latency()
    private var startAt = 0.0
    private let nchanHeaders = [("Content-Type", "application/json")]

    let target: FanoutTarget

    init(endpoints: [Endpoint], shopKey: String, channels: [String], rate: Double, total: Int, threads: Int, payload: Int,
         target: FanoutTarget = .gateway) {
        self.target = target
        self.endpoints = endpoints
        self.channels = channels
        self.rate = rate
        self.total = total
        self.threads = max(1, threads)
        headers = [("Authorization", "Bearer \(shopKey)"), ("Content-Type", "application/json")]
        // `{"seq":N,"t":T}` is ~35 bytes; pad the data object up to `payload`.
        let fill = max(0, payload - 35 - 9)
        pad = fill > 0 ? #","pad":""# + String(repeating: "x", count: fill) + "\"" : ""
        stats = Stats(maxOffset: Array(repeating: 0, count: channels.count), okPerChannel: Array(repeating: 0, count: channels.count),
                      failedOffsets: Array(repeating: [], count: channels.count))
    }

    func start() {
        startAt = Clock.now() + 0.02
        running = threads
        for i in 0..<threads {
            let ep = endpoints[i % endpoints.count]
            let t = Thread { [self] in
                work(ep)
                lock.withLock { running -= 1 }
            }
            t.name = "publisher-\(i)"
            t.start()
        }
    }

    var isDone: Bool { lock.withLock { running == 0 } }
    var snapshot: Stats { lock.withLock { stats } }
    var httpLatency: LatencySummary { lock.withLock { http.summary } }

    private func work(_ ep: Endpoint) {
        // Generous: an overloaded server's late answer is lag, not an error (the publication
        // may well have gone out, and a retry would publish it twice).
        let conn = HTTPConnection(host: ep.host, port: ep.port, timeout: 30)
        while true {
            let n: Int = lock.withLock {
                guard next < total else { return -1 }
                next += 1
                return next - 1
            }
            if n < 0 { return }
            let due = startAt + Double(n) / rate
            Clock.sleep(until: due)
            let lag = Clock.now() - due
            let ch = n % channels.count
            let t = Clock.unixMicros()
            var offset: Int64?
            var failure: String?
            do {
                let r: HTTPResponse
                if target == .nchan {
                    let numbered = Int64(n / channels.count + 1)
                    let body = #"{"push":"lt.tick","channel":"\#(channels[ch])","offset":\#(numbered),"data":{"seq":\#(n),"t":\#(t)\#(pad)}}"#
                    r = try conn.request("POST", "/pub/\(channels[ch])", body: Array(body.utf8), headers: nchanHeaders)
                    if (200..<300).contains(r.status) { offset = numbered } else { lock.withLock { stats.failedOffsets[ch].append(numbered) } }
                } else {
                    let body = #"{"channel":"\#(channels[ch])","type":"lt.tick","data":{"seq":\#(n),"t":\#(t)\#(pad)}}"#
                    r = try conn.request("POST", "/api/v1/publish", body: Array(body.utf8), headers: headers)
                    if r.status == 200 { offset = (try? JSON.parse(r.body))?["offset"]?.intValue }
                }
                if offset == nil {
                    failure = "HTTP \(r.status): \(String(r.text.prefix(120)))"
                }
            } catch {
                failure = "\(error)"
                if target == .nchan { lock.withLock { stats.failedOffsets[ch].append(Int64(n / channels.count + 1)) } }
            }
            let done = Clock.unixMicros()
            lock.withLock {
                stats.sent += 1
                stats.maxLagSeconds = max(stats.maxLagSeconds, lag)
                if stats.firstSendMicros == nil || t < stats.firstSendMicros! { stats.firstSendMicros = t }
                stats.lastSendMicros = max(stats.lastSendMicros ?? 0, t)
                if let offset {
                    stats.ok += 1
                    stats.okPerChannel[ch] += 1
                    stats.maxOffset[ch] = max(stats.maxOffset[ch], offset)
                    http.record(micros: done - t)
                } else {
                    stats.errors += 1
                    stats.errorReasons[failure ?? "?", default: 0] += 1
                }
            }
        }
    }
}
