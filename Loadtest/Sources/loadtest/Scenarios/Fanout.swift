import ArgumentParser
import Foundation
import GatewayProtocol
import GatewayTestSupport

/// Scenario 2: publications through the HTTP API fanned out to many subscribers;
/// checks every offset (lost, duplicated, out of order) and measures end-to-end latency.
struct FanoutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fanout",
        abstract: "Subscribe clients to product channels, publish at a fixed rate, check every delivery and its latency.")

    @Option(help: "Subscriber connections (all workers together).")
    var subscribers = 1000

    @Option(help: "product: channels; subscriber i takes channel i mod G, publication n goes to channel n mod G.")
    var channels = 1

    @Option(help: "Publications per second (all channels together).")
    var rate: Double = 100

    @Option(help: "Seconds to publish.")
    var duration = 10

    @Option(help: "Size of each publication's data object, bytes (0: just seq and t).")
    var payload = 0

    @Option(help: "Concurrent HTTP publishers, each on its own keep-alive connection (default: rate/25, 4 to 64, enough for 40 ms answers).")
    var publishers: Int?

    /// Each publisher waits for its answer, so `rate` needs rate x answer-time of them.
    var publisherCount: Int { publishers ?? min(64, max(4, Int(rate / 25))) }

    @Option(help: "New subscriber connections per second while setting up.")
    var connectRate: Double = 2000

    @Option(help: "Seconds to wait for late deliveries after the last publication.")
    var drain = 15

    @Option(help: "Latency objective: a rate counts as sustained only if p99 stays at or under this many ms.")
    var p99Objective: Double = 100

    @Option(help: "Server to measure: the gateway (spawned or --url), or Nchan at --nchan-url for the side-by-side benchmark (Loadtest/nchan/compare.sh).")
    var target: FanoutTarget = .gateway

    @Option(help: ArgumentHelp("Nchan's nginx with `/pub/<channel>` (publisher) and `/sub/<channel>` (WebSocket subscriber) locations.",
                               valueName: "http://127.0.0.1:PORT"))
    var nchanUrl: String?

    @Option(help: "PID of an nginx worker serving Nchan (repeatable), for CPU and RSS figures.")
    var nchanPid: [Int32] = []

    @Option(help: "PID of the redis-server behind Nchan, for CPU figures.")
    var nchanRedisPid: Int32?

    /// Host and port of `--nchan-url`.
    var nchanAddress: (host: String, port: Int)? {
        guard let url = nchanUrl, url.hasPrefix("http://") else { return nil }
        let authority = url.dropFirst(7).split(separator: "/", maxSplits: 1).first ?? ""
        let parts = authority.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]), (1..<65536).contains(port) else { return nil }
        return (String(parts[0]), port)
    }

    @OptionGroup var workerOptions: WorkerOptions
    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (1...1_000_000).contains(subscribers) else { throw ValidationError("--subscribers must be 1 to 1,000,000") }
        guard (1...100_000).contains(channels) else { throw ValidationError("--channels must be 1 to 100,000") }
        guard rate > 0, rate <= 1_000_000 else { throw ValidationError("--rate must be above 0 and at most 1,000,000") }
        guard (1...3600).contains(duration) else { throw ValidationError("--duration must be 1 to 3600 seconds") }
        guard Double(duration) * rate <= 10_000_000 else { throw ValidationError("--rate x --duration must be at most 10,000,000 publications") }
        guard (0...60_000).contains(payload) else { throw ValidationError("--payload must be 0 to 60000 bytes") }
        if let publishers, !(1...256).contains(publishers) { throw ValidationError("--publishers must be 1 to 256") }
        guard connectRate > 0, connectRate <= 100_000 else { throw ValidationError("--connect-rate must be above 0 and at most 100,000") }
        guard (1...600).contains(drain) else { throw ValidationError("--drain must be 1 to 600 seconds") }
        if target == .nchan {
            guard let address = nchanAddress else { throw ValidationError("--target nchan needs --nchan-url http://127.0.0.1:PORT") }
            guard SourceAddresses.isLoopback(host: address.host) else {
                throw ValidationError("--nchan-url \(nchanUrl!): this tool only sends traffic to 127.0.0.0/8")
            }
        }
    }

    func run() throws { try FanoutScenario(self).run() }
}

extension FanoutTarget: ExpressibleByArgument {}

struct FanoutResults: EmptyResults {
    static let sections: ReportSections = [.limits, .verdict, .timeline]

    struct Parameters: Codable {
        /// "gateway" or "nchan": the server measured.
        var target: String
        var subscribers: Int
        var channels: Int
        var rate: Double
        var durationSeconds: Int
        var payloadBytes: Int
        var publishers: Int
        var nodes: Int
        var workers: Int
        var external: Bool
        var p99ObjectiveMs: Double
    }

    struct Subscribers: Codable {
        var connected = 0
        var subscribed = 0
        var failed = 0
        var dropped = 0
        var failures: [String: Int] = [:]
        var drops: [String: Int] = [:]
    }

    struct Publications: Codable {
        var requested = 0
        var ok = 0
        var errors = 0
        var errorReasons: [String: Int] = [:]
        var ratePerSecond = 0.0
        var maxLagSeconds = 0.0
        /// Request to response of POST /api/v1/publish.
        var httpLatency: LatencySummary?
    }

    struct Deliveries: Codable {
        var expected = 0
        var received = 0
        var perSecond = 0.0
        var lost = 0
        var duplicates = 0
        var outOfOrder = 0
        var unexpected = 0
        var drainSeconds = 0.0
        /// Last delivery after the last publication was sent: a backlog when over a second.
        var tailSeconds = 0.0
        /// Server CPU time per delivery while publishing (gateway nodes, or Nchan's nginx
        /// workers; comparable across machines and peers).
        var gatewayCpuMicrosPerDelivery: Double?
        /// Publication send time (`t`) to receipt by the subscriber.
        var latency: LatencySummary?
    }

    struct Point: Codable {
        var t: Double
        var published: Int
        var deliveries: Int
        var p50Ms: Double
        var p99Ms: Double
        var maxMs: Double
    }

    var subscribers = Subscribers()
    var publications = Publications()
    var deliveries = Deliveries()
    /// Percent of one core while publishing.
    var cpuWhilePublishing: [CPUSpan] = []
    var nodeRssBytes: [String: Int] = [:]
}

typealias FanoutReport = ScenarioReport<FanoutResults>

final class FanoutScenario {
    let cmd: FanoutCommand

    init(_ cmd: FanoutCommand) { self.cmd = cmd }

    func run() throws {
        let ctx = try RunContext(scenario: "fanout", output: cmd.output)
        let p = ctx.progress
        let s = cmd.subscribers
        let workers = cmd.workerOptions.workerCount(for: s)
        var limits = Preflight.check(connections: s, nodes: cmd.cluster.nodeCount, sourceAddresses: !cmd.workerOptions.noSourceAddresses)
        limits.forEach { p.note("preflight: \($0)") }

        var cluster: Cluster?
        var pool: WorkerPool?
        defer {
            cluster?.stop()
            pool?.stop()
        }
        let nchan = cmd.target == .nchan
        if let address = cmd.nchanAddress, nchan {
            let eps = cmd.nchanPid.isEmpty ? [Endpoint(name: "nchan", host: address.host, port: address.port)]
                : cmd.nchanPid.enumerated().map { Endpoint(name: "nginx\($0.offset + 1)", host: address.host, port: address.port, pid: $0.element) }
            guard HTTPConnection.get(host: address.host, port: address.port, path: "/healthz") != nil else {
                throw SpawnError("\(cmd.nchanUrl!): nothing answers /healthz (start nginx with Loadtest/nchan/nginx.conf.template)")
            }
            cluster = Cluster.foreign(endpoints: eps, redisPid: cmd.nchanRedisPid, logDir: ctx.logDir)
            p.note("target: Nchan at \(cmd.nchanUrl!)" + (cmd.nchanPid.isEmpty ? "" : ", nginx worker pid(s) \(cmd.nchanPid.map(String.init).joined(separator: ", "))"))
        } else {
            cluster = try Cluster.start(cmd.cluster, logDir: ctx.logDir, progress: p)
        }
        let c = cluster!
        let serverPids = c.endpoints.compactMap(\.pid)

        // Products, so that product: channels may be subscribed (Nchan channels need nothing).
        // Nchan hands a new subscriber the channel's stored messages: fresh names per run.
        let nchanRun = "lt\(getpid())x\(Int.random(in: 0..<1_000_000))"
        let channelNames = (1...cmd.channels).map { nchan ? "\(nchanRun)-\($0)" : "product:lt-\($0)" }
        let api = HTTPConnection(host: c.endpoints[0].host, port: c.endpoints[0].port, timeout: 5)
        for k in 1...cmd.channels where !nchan {
            let body = #"{"id":"lt-\#(k)","merchant":"loadtest","title":"Load test product \#(k)","price":100,"currency":"CNY"}"#
            let r = try api.request("POST", "/api/v1/products", body: Array(body.utf8),
                                    headers: [("Authorization", "Bearer \(c.shopKey)"), ("Content-Type", "application/json")],
                                    idempotent: true)
            guard r.status == 201 || r.status == 409 else { throw SpawnError("creating product lt-\(k): HTTP \(r.status) \(r.text)") }
        }
        api.disconnect()

        // Subscribers.
        let counts = (0..<workers).map { s / workers + ($0 < s % workers ? 1 : 0) }
        let plan = cmd.workerOptions.noSourceAddresses ? (counts.map { _ in [String]() }, 0)
            : SourceAddresses.plan(connectionsPerWorker: counts)
        var first = 0
        var specs: [WorkerSpec] = []
        for (w, count) in counts.enumerated() {
            specs.append(WorkerSpec(
                index: w, urls: nchan ? ["ws://\(c.endpoints[0].host):\(c.endpoints[0].port)"] : c.endpoints.map(\.wsURL),
                first: first, count: count,
                rate: cmd.connectRate * Double(count) / Double(s), sourceAddresses: plan.0[w], secret: c.secret,
                tokenTTL: Int(Double(s) / cmd.connectRate) + cmd.duration + cmd.drain + 3600, userPrefix: "lt-",
                channels: channelNames, rxBufferSize: 16384, maxInFlight: 500, connectTimeout: 20, target: cmd.target))
            first += count
        }
        var report = FanoutReport(run: ctx.info, parameters: .init(
            target: cmd.target.rawValue, subscribers: s, channels: cmd.channels, rate: cmd.rate, durationSeconds: cmd.duration, payloadBytes: cmd.payload,
            publishers: cmd.publisherCount, nodes: c.endpoints.count, workers: workers, external: cmd.cluster.external || nchan,
            p99ObjectiveMs: cmd.p99Objective))
        p.note("connecting \(Fmt.int(s)) subscribers to \(cmd.channels) channel(s) over \(nchan ? "Nchan" : "\(c.endpoints.count) node(s)") and \(workers) worker(s)")
        pool = try WorkerPool(specs: specs, logDir: ctx.logDir)
        let pl = pool!
        var cpu = CPUWatch(cluster: c, workers: pl.pids)
        var ticker = Ticker(interval: 1)
        let setupDeadline = Clock.now() + Double(s) / cmd.connectRate * 2 + 30
        var tallies: [ChannelTally]?
        while tallies == nil {
            ticker.wait()
            let t = pl.totals()
            p.line("connect", "connected \(Fmt.int(t.connected))/\(Fmt.int(s)) subscribed \(Fmt.int(t.subscribed)) failed \(Fmt.int(t.failed + t.subscribeFailed)) | " + cpu.line())
            tallies = pl.channelTallies(channels: cmd.channels)
            if pl.allEnded { throw SpawnError("every worker exited: " + pl.crashed().joined(separator: "; ")) }
            if Clock.now() > setupDeadline {
                p.note("set-up timed out; publishing to the \(Fmt.int(t.subscribed)) subscribers that made it")
                break
            }
        }
        let subscribersPerChannel = (tallies ?? pl.channelTallies(channels: cmd.channels) ?? []).reduce(into: Array(repeating: 0, count: cmd.channels)) {
            $0[$1.channel] = $1.subscribers
        }
        let setup = pl.totals()
        guard setup.subscribed > 0 else { throw SpawnError("no subscriber got subscribed; see \(ctx.logDir)") }

        // Publish.
        let total = Int(cmd.rate * Double(cmd.duration))
        let publisher = Publisher(endpoints: c.endpoints, shopKey: c.shopKey, channels: channelNames, rate: cmd.rate,
                                  total: total, threads: cmd.publisherCount, payload: cmd.payload, target: cmd.target)
        var procs: [(String, pid_t)] = c.endpoints.compactMap { ep in ep.pid.map { (ep.name, $0) } }
        if let r = c.redisPid { procs.append(("redis", r)) }
        procs += pl.pids.enumerated().map { ("worker \($0.offset)", $0.element) }
        procs.append(("loadtest (publishers)", getpid()))
        _ = pl.takeInterval()
        var lastPublished = 0
        var lastDelivered = setup.deliveries
        var publishSeconds = 0.0
        report.cpuWhilePublishing = CPUSpan.measure(procs) {
            let t0 = Clock.now()
            defer { publishSeconds = Clock.now() - t0 }
            publisher.start()
            ticker = Ticker(interval: 1)
            while !publisher.isDone {
                ticker.wait()
                tick(p, "publish", publisher, pl, &cpu, &report, &lastPublished, &lastDelivered)
            }
        }

        let deliveredWhilePublishing = pl.totals().deliveries - setup.deliveries
        // Late deliveries.
        let pub = publisher.snapshot
        let expected = zip(subscribersPerChannel, pub.okPerChannel).map { $0 * $1 }.reduce(0, +)
        let drainStart = Clock.now()
        var lastChange = Clock.now()
        while pl.totals().deliveries < expected && Clock.now() - drainStart < Double(cmd.drain) && Clock.now() - lastChange < 3 {
            ticker.wait()
            let before = lastDelivered
            tick(p, "drain", publisher, pl, &cpu, &report, &lastPublished, &lastDelivered)
            if lastDelivered != before { lastChange = Clock.now() }
        }
        let drainSeconds = Clock.now() - drainStart
        for ep in c.endpoints { if let pid = ep.pid { report.nodeRssBytes[ep.name] = Machine.rss(pid) } }
        pl.finish()
        let t = pl.totals()
        let finalTallies = pl.channelTallies(channels: cmd.channels) ?? []

        // Loss: every open subscriber should hold every offset up to the channel's last one.
        var lost = 0
        for tally in finalTallies where tally.subscribers > 0 && pub.maxOffset[tally.channel] > 0 {
            // Nchan: a publication that failed left a number every subscriber misses.
            let failed = pub.failedOffsets[tally.channel].filter { $0 <= pub.maxOffset[tally.channel] }.count
            let missing = Int64(tally.subscribers) * (pub.maxOffset[tally.channel] - Int64(failed)) - tally.contiguousSum + Int64(tally.holes)
            lost += max(0, Int(missing))
        }

        report.subscribers = .init(connected: setup.connected, subscribed: setup.subscribed, failed: t.failed + t.subscribeFailed,
                                   dropped: t.dropped, failures: t.failures, drops: t.drops)
        let window = Double((pub.lastSendMicros ?? 0) - (pub.firstSendMicros ?? 0)) / 1e6
        report.publications = .init(requested: total, ok: pub.ok, errors: pub.errors, errorReasons: pub.errorReasons,
                                    ratePerSecond: window > 0 ? Double(pub.sent - 1) / window : 0,
                                    maxLagSeconds: pub.maxLagSeconds, httpLatency: publisher.httpLatency)
        let received = t.deliveries - setup.deliveries
        let deliveryWindow = Double((t.lastDeliveryMicros ?? 0) - (pub.firstSendMicros ?? 0)) / 1e6
        report.deliveries = .init(expected: expected, received: received,
                                  perSecond: deliveryWindow > 0 ? Double(received) / deliveryWindow : 0, lost: lost,
                                  duplicates: t.duplicates, outOfOrder: t.outOfOrder, unexpected: t.unexpected,
                                  drainSeconds: drainSeconds,
                                  tailSeconds: Double((t.lastDeliveryMicros ?? 0) - (pub.lastSendMicros ?? 0)) / 1e6,
                                  latency: pl.total.summary)
        let nodeCPU = report.cpuWhilePublishing.filter { n in c.endpoints.contains { $0.name == n.name } }
            .reduce(0) { $0 + $1.percentOfOneCore }
        if deliveredWhilePublishing > 0 && (c.spawned || !serverPids.isEmpty) {
            report.deliveries.gatewayCpuMicrosPerDelivery = (nodeCPU / 100 * publishSeconds / Double(deliveredWhilePublishing) * 1e6 * 1000).rounded() / 1000
        }
        limits += judge(report, cpu: report.cpuWhilePublishing)
        if !nchan && !c.deadNodes().isEmpty { limits.append("gateway: node exited: " + c.deadNodes().joined(separator: "; ")) }
        report.limits = limits
        report.verdict = verdict(report)
        report.run.machine = MachineInfo()
        summary(report)
        try ctx.write(report)
    }

    private func tick(_ p: Progress, _ phase: String, _ publisher: Publisher, _ pl: WorkerPool, _ cpu: inout CPUWatch,
                      _ report: inout FanoutReport, _ lastPublished: inout Int, _ lastDelivered: inout Int) {
        let s = publisher.snapshot
        let t = pl.totals()
        let lat = pl.takeInterval()
        let sum = lat.summary
        report.timeline.append(.init(t: p.elapsed, published: s.ok, deliveries: t.deliveries,
                                     p50Ms: sum.p50Ms, p99Ms: sum.p99Ms, maxMs: sum.maxMs))
        p.line(phase, "published \(Fmt.int(s.ok)) (+\(Fmt.int(s.ok - lastPublished))/s) err \(s.errors) | "
            + "delivered \(Fmt.int(t.deliveries)) (+\(Fmt.int(t.deliveries - lastDelivered))/s) | "
            + (lat.count > 0 ? String(format: "p50 %.2f p99 %.2f max %.1f ms", sum.p50Ms, sum.p99Ms, sum.maxMs) : "no deliveries")
            + " | gaps \(t.holesOpen) dup \(t.duplicates) ooo \(t.outOfOrder) | " + cpu.line())
        lastPublished = s.ok
        lastDelivered = t.deliveries
    }

    /// Who limited the run: the gateway, the load generator, or the machine.
    private func judge(_ r: FanoutReport, cpu: [CPUSpan]) -> [String] {
        var out: [String] = []
        let server = r.parameters.target
        let total = cpu.reduce(0) { $0 + $1.percentOfOneCore }
        if let other = cpu.first(where: { $0.name == "other processes" }), other.percentOfOneCore > 20 {
            out.append("machine: processes outside this run used \(Fmt.num(other.percentOfOneCore, 0))% of a core while publishing (someone else's build or tests?): figures are skewed, rerun on a quiet machine")
        }
        let cores = Double(Machine.cores) * 100
        if total > cores * 0.9 {
            out.append("machine: all \(Machine.cores) cores were busy while publishing (\(Fmt.num(total, 0))% of one core summed over gateway, Redis and load generator); figures are relative to this machine")
        }
        for span in cpu where span.percentOfOneCore > 90 && span.name != "other processes" {
            let who = span.name.hasPrefix("worker") || span.name.hasPrefix("loadtest") ? "load generator" : server
            out.append("\(who): \(span.name) used \(Fmt.num(span.percentOfOneCore, 0))% of a core (single-threaded: saturated)")
        }
        if r.publications.maxLagSeconds > 1 {
            // Closed loop per publisher: with answers this slow, N publishers top out at N / answer time.
            let answer = (r.publications.httpLatency?.meanMs ?? 0) / 1000
            let ceiling = answer > 0 ? Double(r.parameters.publishers) / answer : .infinity
            if ceiling < r.parameters.rate * 1.1 {
                out.append("load generator: \(r.parameters.publishers) publishers waiting \(Fmt.num(answer * 1000, 1)) ms per answer top out near \(Fmt.num(ceiling, 0))/s; raise --publishers (the slow answers themselves are the \(server)'s)")
            } else {
                out.append("\(server): publishers fell \(Fmt.num(r.publications.maxLagSeconds)) s behind schedule: the publish path (HTTP + Redis) did not keep up with \(Fmt.num(r.parameters.rate, 0))/s")
            }
        }
        if r.deliveries.received < r.deliveries.expected {
            out.append("\(server): \(Fmt.int(r.deliveries.expected - r.deliveries.received)) deliveries had not arrived \(Fmt.num(r.deliveries.drainSeconds)) s after the last publication")
        }
        return out
    }

    private func verdict(_ r: FanoutReport) -> String {
        let d = r.deliveries
        // Nchan's order is the order publications reach it, not the numbers publishers gave them.
        let ordered = d.outOfOrder == 0 || r.parameters.target == FanoutTarget.nchan.rawValue
        let clean = d.lost == 0 && d.duplicates == 0 && ordered && r.publications.errors == 0
        let onPace = r.publications.ratePerSecond >= r.parameters.rate * 0.97 && r.publications.maxLagSeconds < 1
        let delivered = d.received >= d.expected
        let kept = d.tailSeconds < 1
        let p99 = d.latency?.p99Ms ?? 0
        let fast = p99 <= r.parameters.p99ObjectiveMs
        if clean && onPace && delivered && kept && fast {
            return "sustained \(Fmt.num(r.parameters.rate, 0)) publications/s to \(Fmt.int(r.subscribers.subscribed)) subscribers: \(Fmt.int(Int(d.perSecond))) deliveries/s, p99 \(Fmt.num(p99, 2)) ms, nothing lost"
        }
        var why: [String] = []
        if !clean { why.append("lost \(d.lost), duplicated \(d.duplicates), out of order \(d.outOfOrder), publish errors \(r.publications.errors)") }
        if !onPace { why.append("publishing reached \(Fmt.num(r.publications.ratePerSecond, 0))/s of \(Fmt.num(r.parameters.rate, 0))/s") }
        if !delivered { why.append("\(Fmt.int(d.expected - d.received)) deliveries missing at the end") }
        if delivered && kept && !fast {
            why.append("kept pace (\(Fmt.int(Int(d.perSecond))) deliveries/s) but p99 \(Fmt.num(p99, 0)) ms is over the \(Fmt.num(r.parameters.p99ObjectiveMs, 0)) ms objective")
        }
        if delivered && !kept {
            why.append("deliveries fell behind: \(Fmt.int(Int(d.perSecond)))/s, the last one \(Fmt.num(d.tailSeconds)) s after the last publication (p99 \(Fmt.num(p99, 0)) ms)")
        }
        return "not sustained: " + why.joined(separator: "; ")
    }

    private func summary(_ r: FanoutReport) {
        let d = r.deliveries
        let pb = r.publications
        var lines = ["", "== fanout (\(r.parameters.target)): \(Fmt.int(r.parameters.subscribers)) subscribers on \(r.parameters.channels) channel(s), \(Fmt.num(r.parameters.rate, 0)) publications/s for \(r.parameters.durationSeconds) s, \(r.parameters.nodes) node(s), payload \(r.parameters.payloadBytes) B"]
        lines.append("subscribers   \(Fmt.int(r.subscribers.subscribed)) subscribed, \(Fmt.int(r.subscribers.failed)) failed, \(Fmt.int(r.subscribers.dropped)) dropped")
        lines.append("publications  \(Fmt.int(pb.ok)) ok of \(Fmt.int(pb.requested)), \(pb.errors) errors, \(Fmt.num(pb.ratePerSecond, 1))/s, max lag \(Fmt.num(pb.maxLagSeconds * 1000, 1)) ms")
        if let h = pb.httpLatency { lines.append("publish HTTP  \(h.line)") }
        lines.append("deliveries    \(Fmt.int(d.received)) of \(Fmt.int(d.expected)) expected, \(Fmt.int(Int(d.perSecond)))/s")
        let nchan = r.parameters.target == FanoutTarget.nchan.rawValue
        if let us = d.gatewayCpuMicrosPerDelivery { lines.append("server cost   \(Fmt.num(us, 2)) us of \(nchan ? "nginx" : "node") CPU per delivery") }
        lines.append("checks        lost \(d.lost), duplicates \(d.duplicates), out of order \(d.outOfOrder)\(nchan ? " (includes publisher races)" : ""), unexpected \(d.unexpected)")
        if let l = d.latency { lines.append("latency       \(l.line) (publish send to receipt)") }
        lines.append("cpu           " + r.cpuWhilePublishing.map { "\($0.name) \(Fmt.num($0.percentOfOneCore, 0))%" }.joined(separator: ", "))
        for (k, v) in r.subscribers.failures.sorted(by: { $0.value > $1.value }).prefix(4) { lines.append("failure       \(v) x \(k)") }
        for (k, v) in pb.errorReasons.sorted(by: { $0.value > $1.value }).prefix(4) { lines.append("publish error \(v) x \(k)") }
        for l in r.limits { lines.append("limit         \(l)") }
        lines.append("verdict       \(r.verdict)")
        print(lines.joined(separator: "\n"))
    }
}
