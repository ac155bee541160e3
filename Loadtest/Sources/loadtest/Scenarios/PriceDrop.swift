import ArgumentParser
import Foundation
import GatewayTestSupport
import GatewayProtocol

/// Scenario 4: one price cut with many watchers, most of them offline. Measures how
/// long the node takes to alert everyone (pushes to the connected, history entries for
/// the rest), whether each watcher got exactly one alert, and how long the node's loop
/// stalled meanwhile.
struct PriceDropCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pricedrop",
        abstract: "Make W watches of one product (a fraction stays connected), lower its price, and time every alert.")

    @Option(help: "Watchers (distinct users), all workers together.")
    var watchers = 10_000

    @Option(help: "Fraction of watchers that stays connected; the rest watch, then close.")
    var connected = 0.2

    @Option(help: "Product price at watch time, minor units.")
    var price = 10_000

    @Option(help: "The lower price the PATCH sets (default: 90% of --price).")
    var newPrice: Int?

    @Option(help: "Watchers set up per second (connect, watch, maybe close), all workers together.")
    var connectRate: Double = 3000

    @Option(help: "Connections one probe worker may have mid set-up.")
    var inFlight = 500

    /// The node hangs up on sockets its liveness sweep finds idle for 55 s, and the sweep can
    /// miss pinging them in time while connections come and go (see the report's limits).
    @Option(help: "Seconds between `ping` commands from each connected watcher until the PATCH (0: silent clients).")
    var keepalive = 20

    @Option(help: "Seconds to hold the connected watchers idle between set-up and the PATCH.")
    var settle = 0

    @Option(help: "Seconds to wait for every alert after the PATCH.")
    var wait = 120

    /// Every wake-up of a node's loop costs a poll() over all its sockets, so pings are not free.
    @Option(help: "Milliseconds between pings of the loop-latency probe (one client per node; 0: no probe).")
    var pingMs = 50

    @Option(help: "Redis of the nodes given with --url (redis://host:port), to check stored alerts.")
    var redis: String?

    @Flag(help: "Profile the first node with `perf record -g` from the PATCH until the alerts are done.")
    var perf = false

    @OptionGroup var workerOptions: WorkerOptions
    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var output: OutputOptions

    @Flag(help: .hidden)
    var probeWorker = false

    var loweredPrice: Int { newPrice ?? price * 9 / 10 }

    func validate() throws {
        guard (1...2_000_000).contains(watchers) else { throw ValidationError("--watchers must be 1 to 2,000,000") }
        guard connected >= 0, connected <= 1 else { throw ValidationError("--connected must be 0 to 1") }
        guard price > 0, loweredPrice >= 0, loweredPrice < price else { throw ValidationError("--new-price must be below --price") }
        guard connectRate > 0 else { throw ValidationError("--connect-rate must be above 0") }
        guard (1...5000).contains(inFlight) else { throw ValidationError("--in-flight must be 1 to 5000") }
        guard (1...3600).contains(wait) else { throw ValidationError("--wait must be 1 to 3600 seconds") }
        guard (0...3600).contains(keepalive) else { throw ValidationError("--keepalive must be 0 to 3600 seconds") }
        guard (0...3600).contains(settle) else { throw ValidationError("--settle must be 0 to 3600 seconds") }
        guard (0...10_000).contains(pingMs) else { throw ValidationError("--ping-ms must be 0 to 10000") }
    }

    func run() throws {
        if probeWorker { try ProbeWorker.main() }
        try PriceDropScenario(self).run()
    }
}

struct PriceDropResults: EmptyResults {
    static let sections: ReportSections = [.limits, .verdict, .timeline]

    struct Parameters: Codable {
        var watchers: Int
        var connectedFraction: Double
        var online: Int
        var offline: Int
        var price: Int
        var newPrice: Int
        var nodes: Int
        var probeWorkers: Int
        var pingMs: Int
        var keepaliveSeconds: Int
        var external: Bool
    }

    struct Setup: Codable {
        var seconds = 0.0
        var watchesPerSecond = 0.0
        var watched = 0
        var online = 0
        var closedOffline = 0
        var failed = 0
        var dropped = 0
        var watchFailed = 0
        var failures: [String: Int] = [:]
        var drops: [String: Int] = [:]
        /// `watchers` of GET /api/v1/products/{id} before the drop.
        var productWatchers: Int?
        var nodeConnections: [String: Int] = [:]
        var maxStallMs: [String: Double] = [:]
    }

    struct Drop: Codable {
        var patchMs = 0.0
        /// PATCH sent to the last connected watcher's `price.drop`.
        var lastOnlineMs: Double?
        /// PATCH sent to the alert of the last offline watcher (last in the node's order) seen in Redis.
        var lastOfflineStoredMs: Double?
        /// The node's own figure from its log line `price drop on <p>: N alerts in X ms`.
        var gatewayAlerts: Int?
        var gatewayMs: Double?
        var alertsPerSecond: Double?
        /// PATCH sent to receipt, per connected watcher.
        var latency: LatencySummary?
        /// Longest event-loop stall of each node between the scrapes around the drop.
        var maxStallMs: [String: Double] = [:]
        /// `ping` every --ping-ms from one extra client per node, PATCH to done.
        var ping: [String: LatencySummary] = [:]
        var cpu: [CPUSpan] = []
        /// Redis `INFO commandstats` over the drop: calls and busy ms per command (scripts' inner calls included).
        var redisCommands: [String: RedisCommandStat] = [:]
        var error: String?
        /// Descriptors open / allowed per node at the end of set-up.
        var nodeFiles: [String: String] = [:]
    }

    struct Alerts: Codable {
        var expectedOnline = 0
        var receivedOnline = 0
        var duplicatesOnline = 0
        var wrongOnline = 0
        var expectedStored = 0
        var storedOnce = 0
        var storedMissing = 0
        var storedDuplicates = 0
        var storedOfflineOnce = 0
        /// Connected watchers whose socket closed after set-up, and why.
        var droppedAfterSetup = 0
        var dropReasons: [String: Int] = [:]
        /// Personal-channel offsets skipped or repeated on the sockets.
        var gaps = 0
        var repeats = 0
        var checkedInRedis = false
        var ok = false
    }

    var setup = Setup()
    var drop = Drop()
    var alerts = Alerts()
    var perfTop: [String] = []

    struct Point: Codable {
        var t: Double
        var phase: String
        var watched: Int
        var online: Int
        var alerts: Int
    }
}

typealias PriceDropReport = ScenarioReport<PriceDropResults>

final class PriceDropScenario {
    let cmd: PriceDropCommand
    let tag = Machine.randomHex(bytes: 3)

    init(_ cmd: PriceDropCommand) { self.cmd = cmd }

    var productID: String { "lt-drop-\(tag)" }
    var userPrefix: String { "lw-\(tag)-" }

    func run() throws {
        let ctx = try RunContext(scenario: "pricedrop", output: cmd.output)
        let p = ctx.progress
        let w = cmd.watchers
        let online = (0..<w).reduce(0) { $0 + (ProbeSpec.isOnline($1, fraction: cmd.connected) ? 1 : 0) }
        // Enough children that none keeps more than --per-worker open, and each sets up at most 25k.
        let workers = max(cmd.workerOptions.workerCount(for: max(online, 1)), (w + 24_999) / 25_000)
        var limits: [String] = []
        let perWorkerKept = (online + workers - 1) / workers
        if perWorkerKept + cmd.inFlight > WorkerOptions.hardCap {
            throw ValidationError("\(perWorkerKept) kept + \(cmd.inFlight) in flight per worker exceed \(WorkerOptions.hardCap) descriptors; add --workers")
        }
        limits += Preflight.check(connections: online, nodes: cmd.cluster.nodeCount, sourceAddresses: !cmd.workerOptions.noSourceAddresses)
        limits.forEach { p.note("preflight: \($0)") }

        var cluster: Cluster?
        var pool: ProbePool?
        defer {
            cluster?.stop()
            pool?.stop()
        }
        cluster = try Cluster.start(cmd.cluster, logDir: ctx.logDir, progress: p)
        let c = cluster!
        let redisURL = cmd.redis ?? (c.spawned ? ClusterSecrets.redisURL(logDir: ctx.logDir) : nil)
        var report = PriceDropReport(run: ctx.info, parameters: .init(
            watchers: w, connectedFraction: cmd.connected, online: online, offline: w - online, price: cmd.price,
            newPrice: cmd.loweredPrice, nodes: c.endpoints.count, probeWorkers: workers, pingMs: cmd.pingMs, keepaliveSeconds: cmd.keepalive, external: cmd.cluster.external))

        let admin = ShopClient(c.endpoints[0], shopKey: c.shopKey, timeout: 30)
        try admin.createProduct(id: productID, price: cmd.price, title: "Load test watch \(tag)")

        // Watches: every child opens its users, watches, and closes the offline ones;
        // each holds its own range so kept sockets spread evenly.
        let counts = (0..<workers).map { w / workers + ($0 < w % workers ? 1 : 0) }
        let plan = cmd.workerOptions.noSourceAddresses ? counts.map { _ in [String]() }
            : SourceAddresses.plan(connectionsPerWorker: counts).addresses
        var first = 0
        var specs: [ProbeSpec] = []
        for (i, count) in counts.enumerated() {
            specs.append(ProbeSpec(mode: .watchers, index: i, urls: c.endpoints.map(\.wsURL), secret: c.secret,
                                   tokenTTL: 7200 + Int(Double(w) / cmd.connectRate), userPrefix: userPrefix, first: first,
                                   count: count, rate: cmd.connectRate * Double(count) / Double(w), maxInFlight: cmd.inFlight,
                                   sourceAddresses: plan[i], connectTimeout: 20, rxBufferSize: 4096, product: productID,
                                   onlineFraction: cmd.connected, keepalive: cmd.keepalive))
            first += count
        }
        p.note("setting up \(Fmt.int(w)) watchers of \(productID) (\(Fmt.int(online)) stay connected) over \(c.endpoints.count) node(s) and \(workers) probe worker(s)"
            + (plan.first?.isEmpty == false ? ", source addresses " + plan.map { $0.joined(separator: ",") }.joined(separator: " | ") : ""))
        pool = try ProbePool(scenario: "pricedrop", specs: specs, logDir: ctx.logDir)
        let pl = pool!
        var cpu = CPUWatch(cluster: c, workers: pl.pids)
        var ticker = Ticker(interval: 1)
        let setupStart = Clock.now()
        let setupDeadline = setupStart + Double(w) / cmd.connectRate * 3 + 60
        var last = ProbeTotals()
        while !pl.settled() {
            ticker.wait()
            let t = pl.totals()
            report.timeline.append(.init(t: p.elapsed, phase: "watch", watched: t.watched, online: t.online, alerts: t.alerts))
            p.line("watch", "watched \(Fmt.int(t.watched))/\(Fmt.int(w)) (+\(Fmt.int(t.watched - last.watched))/s) online \(Fmt.int(t.online)) "
                + "closed \(Fmt.int(t.closedOffline)) failed \(Fmt.int(t.failed + t.watchFailed)) dropped \(Fmt.int(t.dropped)) in set-up \(Fmt.int(t.settling)) | "
                + nodeLine(c) + " | " + cpu.line() + " | mem avail \(Fmt.gib(Machine.memInfo().available))")
            last = t
            if pl.allEnded { throw SpawnError("every probe worker exited: " + pl.crashed().joined(separator: "; ")) }
            if let why = Preflight.runtimeLimit(cluster: c) { throw SpawnError(why) }
            if !c.deadNodes().isEmpty { throw SpawnError("gateway: node exited: " + c.deadNodes().joined(separator: "; ")) }
            if Clock.now() > setupDeadline {
                p.note("watch set-up timed out; dropping the price for the \(Fmt.int(t.watched)) watches made")
                break
            }
        }
        let setupSeconds = Clock.now() - setupStart
        let settleEnd = Clock.now() + Double(cmd.settle)
        while Clock.now() < settleEnd {
            ticker.wait()
            let t = pl.totals()
            p.line("settle", "online \(Fmt.int(t.online)) dropped \(Fmt.int(t.dropped)) | " + nodeLine(c) + " | " + cpu.line())
        }
        // Let the nodes finish the offline closes, so the drop runs on a quiet node.
        let closeDeadline = Clock.now() + 15
        while Clock.now() < closeDeadline {
            let held = c.endpoints.indices.compactMap { c.metric($0, "gateway_connections") }.reduce(0, +)
            if Int(held) <= pl.totals().online { break }
            usleep(200_000)
        }
        let t = pl.totals()
        var setup = PriceDropResults.Setup(seconds: setupSeconds, watchesPerSecond: Double(t.watched) / max(setupSeconds, 0.001),
                                          watched: t.watched, online: t.online, closedOffline: t.closedOffline, failed: t.failed,
                                          dropped: t.dropped, watchFailed: t.watchFailed, failures: t.failures, drops: t.drops)
        setup.productWatchers = (try? admin.product(productID))?["watchers"]?.intValue.map { Int($0) }
        for (i, ep) in c.endpoints.enumerated() {
            setup.nodeConnections[ep.name] = c.metric(i, "gateway_connections").map { Int($0) }
            // This scrape also resets the stall gauge for the drop.
            setup.maxStallMs[ep.name] = stallMs(c, i)
        }
        report.setup = setup
        p.note("set up \(Fmt.int(t.watched)) watches in \(Fmt.num(setupSeconds, 1)) s; product says \(setup.productWatchers.map { Fmt.int($0) } ?? "?") watchers; "
            + "\(Fmt.int(t.online)) connected (nodes hold " + setup.nodeConnections.sorted { $0.key < $1.key }.map { "\($0.key) \(Fmt.int($0.value))" }.joined(separator: ", ") + ")")

        // The last offline watcher in the node's order (score ties go by member bytes).
        let lastOffline = (0..<w).filter { !ProbeSpec.isOnline($0, fraction: cmd.connected) }.map { "\(userPrefix)\($0)" }
            .max { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let probeRedis = redisURL.flatMap { try? RedisProbe(url: $0) }
        if redisURL != nil && probeRedis == nil { p.note("could not reach Redis at \(redisURL!); stored alerts are not checked") }
        let logTail = c.spawned ? NodeLogTail(logDir: ctx.logDir, node: c.endpoints[0].name) : nil
        let ping = cmd.pingMs > 0 ? PingProbe(endpoints: c.endpoints, secret: c.secret, intervalMs: cmd.pingMs) : nil
        defer { ping?.stop() }
        if let ping, ping.connectedCount != c.endpoints.count { p.note("ping probe: only \(ping.connectedCount) of \(c.endpoints.count) nodes answered connect") }

        // The drop.
        var procs: [(String, pid_t)] = c.endpoints.compactMap { ep in ep.pid.map { (ep.name, $0) } }
        if let r = c.redisPid { procs.append(("redis", r)) }
        procs += pl.pids.enumerated().map { ("probe \($0.offset)", $0.element) }
        procs.append(("loadtest (pings, Redis polls)", getpid()))
        let perf = cmd.perf ? c.endpoints[0].pid.flatMap { PerfRecorder(pid: $0, logDir: ctx.logDir, name: "pricedrop-n1", progress: p) } : nil
        let expectedOnline = t.online
        var drop = PriceDropResults.Drop()
        for ep in c.endpoints {
            if let pid = ep.pid { drop.nodeFiles[ep.name] = "\(Machine.openFiles(pid).map(String.init) ?? "?")/\(Machine.fdLimit(of: pid).map(String.init) ?? "?")" }
        }
        var t0: Int64 = 0
        var offlineStoredAt: Int64?
        var gatewayLine: (Int, Double, Int64)?
        let logPattern = "price drop on \(productID): "
        _ = try? probeRedis?.call(["CONFIG", "RESETSTAT"])
        var patchError: String?
        let dropCPU = CPUSpan.measure(procs) {
            _ = ping?.take()
            t0 = Clock.unixMicros()
            pl.announce(t0: t0, price: Int64(cmd.loweredPrice))
            // A node that cannot answer is a result too: report it instead of stopping.
            do {
                let r = try admin.call("PATCH", "/api/v1/products/\(productID)", #"{"price":\#(cmd.loweredPrice)}"#)
                drop.patchMs = Double(Clock.unixMicros() - t0) / 1000
                if r.status != 200 { patchError = "PATCH: HTTP \(r.status) \(r.text)" }
            } catch {
                patchError = "PATCH: \(error)"
            }
            if patchError != nil { return }
            let deadline = Clock.now() + Double(cmd.wait)
            var nextLine = Clock.now() + 1
            var lastAlerts = 0
            while Clock.now() < deadline {
                usleep(5_000)
                if offlineStoredAt == nil, let key = lastOffline, let rp = probeRedis,
                   let n = try? rp.call(["XLEN", "gw:{user:\(key)}:log"]).int, n > 0 {
                    offlineStoredAt = Clock.unixMicros()
                }
                if gatewayLine == nil, let tail = logTail {
                    for line in tail.newLines() where line.contains(logPattern) {
                        let f = line.components(separatedBy: logPattern)[1].split(separator: " ")
                        if f.count >= 4, let n = Int(f[0]), let ms = Double(f[3]) { gatewayLine = (n, ms, Clock.unixMicros()) }
                    }
                }
                let pt = pl.totals()
                if Clock.now() >= nextLine {
                    nextLine += 1
                    let iv = pl.takeInterval().summary
                    report.timeline.append(.init(t: p.elapsed, phase: "drop", watched: pt.watched, online: pt.online, alerts: pt.alerts))
                    p.line("drop", "online alerts \(Fmt.int(pt.alerted))/\(Fmt.int(expectedOnline)) (+\(Fmt.int(pt.alerts - lastAlerts))/s, dup \(pt.alertDuplicates), sockets dropped \(Fmt.int(pt.dropped - t.dropped))) "
                        + (iv.count > 0 ? String(format: "p50 %.0f p99 %.0f ms", iv.p50Ms, iv.p99Ms) : "") + " | last offline stored "
                        + (offlineStoredAt.map { Fmt.num(Double($0 - t0) / 1000, 0) + " ms" } ?? "not yet") + " | node log "
                        + (gatewayLine.map { "\(Fmt.int($0.0)) alerts in \(Fmt.num($0.1, 0)) ms" } ?? "not yet") + " | " + cpu.line())
                    lastAlerts = pt.alerts
                }
                let onlineDone = pt.alerted >= expectedOnline
                let offlineDone = lastOffline == nil || probeRedis == nil || offlineStoredAt != nil
                let logDone = logTail == nil || gatewayLine != nil
                if onlineDone && offlineDone && logDone { break }
                // The node says it is done: give stragglers 5 s more.
                if let g = gatewayLine, Double(Clock.unixMicros() - g.2) > 5e6 { break }
            }
        }
        drop.cpu = dropCPU
        drop.error = patchError
        if let patchError { p.note("the drop did not happen: \(patchError)") }
        if let info = (try? probeRedis?.call(["INFO", "commandstats"]))??.text { drop.redisCommands = RedisCommandStat.parse(info) }
        drop.ping = ping?.take() ?? [:]
        for (i, ep) in c.endpoints.enumerated() { drop.maxStallMs[ep.name] = stallMs(c, i) }
        if let perf, let path = perf.stop() { report.perfTop = PerfRecorder.top(path, 15) }
        pl.finish()
        let ft = pl.totals()
        if let l = ft.lastAlertMicros { drop.lastOnlineMs = Double(l - t0) / 1000 }
        drop.lastOfflineStoredMs = offlineStoredAt.map { Double($0 - t0) / 1000 }
        if let g = gatewayLine {
            drop.gatewayAlerts = g.0
            drop.gatewayMs = g.1
            drop.alertsPerSecond = g.1 > 0 ? Double(g.0) / (g.1 / 1000) : nil
        }
        drop.latency = pl.total.summary
        report.drop = drop

        // Every watcher's history: exactly one price.drop of this product.
        var a = PriceDropResults.Alerts(expectedOnline: expectedOnline, receivedOnline: ft.alerted, duplicatesOnline: ft.alertDuplicates,
                                       wrongOnline: ft.alertWrong)
        a.droppedAfterSetup = ft.dropped - t.dropped
        a.dropReasons = ft.drops.merging(t.drops) { $0 - $1 }.filter { $0.value > 0 }
        a.gaps = ft.gaps
        a.repeats = ft.repeats
        if let rp = probeRedis, patchError == nil {
            p.note("checking the history of all \(Fmt.int(w)) watchers in Redis")
            a.checkedInRedis = true
            a.expectedStored = ft.watched
            let needle = Array(#""push":"price.drop""#.utf8)
            let productNeedle = Array(#""product":"\#(productID)""#.utf8)
            var g = 0
            while g < w {
                let batch = Array(g..<min(w, g + 2000))
                let replies = (try? rp.pipeline(batch.map { ["XRANGE", "gw:{user:\(userPrefix)\($0)}:log", "-", "+"] })) ?? []
                for (k, user) in batch.enumerated() {
                    var n = 0
                    for entry in (k < replies.count ? replies[k].array : nil) ?? [] {
                        guard let fields = entry.array?.last?.array, let d = fields.last, case .bulk(let b?) = d else { continue }
                        if contains(b, needle) && contains(b, productNeedle) { n += 1 }
                    }
                    if n == 1 {
                        a.storedOnce += 1
                        if !ProbeSpec.isOnline(user, fraction: cmd.connected) { a.storedOfflineOnce += 1 }
                    } else if n == 0 {
                        a.storedMissing += 1
                    } else {
                        a.storedDuplicates += 1
                    }
                }
                g += 2000
            }
            // Users whose watch failed never had one: not missing.
            a.storedMissing = max(0, a.storedMissing - (w - ft.watched))
        }
        a.ok = a.receivedOnline == a.expectedOnline && a.duplicatesOnline == 0 && a.wrongOnline == 0 && a.droppedAfterSetup == 0
            && (!a.checkedInRedis || (a.storedOnce == a.expectedStored && a.storedDuplicates == 0 && a.storedMissing == 0))
        report.alerts = a
        limits += judge(report, c)
        if !c.deadNodes().isEmpty { limits.append("gateway: node exited: " + c.deadNodes().joined(separator: "; ")) }
        report.limits = limits
        report.verdict = verdict(report)
        report.run.machine = MachineInfo()
        summary(report)
        try ctx.write(report)
    }

    private func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        guard hay.count >= needle.count else { return false }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] {
            var k = 1
            while k < needle.count && hay[i + k] == needle[k] { k += 1 }
            if k == needle.count { return true }
        }
        return false
    }

    private func stallMs(_ c: Cluster, _ i: Int) -> Double? {
        c.metric(i, "gateway_loop_stall_max_seconds").map { ($0 * 1e6).rounded() / 1000 }
    }

    private func nodeLine(_ c: Cluster) -> String {
        c.endpoints.map { ep in "\(ep.name) \(Fmt.mib(ep.pid.flatMap { Machine.rss($0) }))" }.joined(separator: " ")
    }

    private func judge(_ r: PriceDropReport, _ c: Cluster) -> [String] {
        var out: [String] = []
        let s = r.setup
        if let other = r.drop.cpu.first(where: { $0.name == "other processes" }), other.percentOfOneCore > 20 {
            out.append("machine: processes outside this run used \(Fmt.num(other.percentOfOneCore, 0))% of a core during the drop (someone else's build or tests?): times are skewed")
        }
        let total = r.drop.cpu.reduce(0) { $0 + $1.percentOfOneCore }
        if total > Double(Machine.cores) * 100 * 0.85 {
            out.append("machine: the \(Machine.cores) cores were (nearly) all busy during the drop (\(Fmt.num(total, 0))% of one core summed)")
        }
        for span in r.drop.cpu where c.endpoints.contains(where: { $0.name == span.name }) && span.percentOfOneCore > 90 {
            out.append("gateway: node \(span.name) used \(Fmt.num(span.percentOfOneCore, 0))% of a core during the drop (its one loop thread was saturated)")
        }
        for (node, l) in r.drop.ping.sorted(by: { $0.key < $1.key }) where l.maxMs > 100 {
            out.append("gateway: a ping to node \(node) waited up to \(Fmt.num(l.maxMs, 0)) ms during the drop (p99 \(Fmt.num(l.p99Ms, 0)) ms): its loop was busy that long")
        }
        for (node, ms) in r.drop.maxStallMs.sorted(by: { $0.key < $1.key }) where ms > 100 {
            out.append("gateway: node \(node)'s event loop stalled up to \(Fmt.num(ms, 0)) ms during the drop (every client on it waited)")
        }
        var machine: [String: Int] = [:]
        var other: [String: Int] = [:]
        for (reason, count) in s.failures.merging(s.drops, uniquingKeysWith: +) {
            if let cause = Preflight.machineCause(reason) { machine[cause, default: 0] += count } else { other[reason, default: 0] += count }
        }
        for (cause, count) in machine { out.append("machine: \(Fmt.int(count)) watcher connections failed for lack of \(cause)") }
        if !other.isEmpty {
            let top = other.sorted { $0.value > $1.value }.prefix(3).map { "\($0.value) x \($0.key)" }.joined(separator: "; ")
            let nodeFull = c.endpoints.contains { ep in
                guard let pid = ep.pid, let open = Machine.openFiles(pid), let lim = Machine.fdLimit(of: pid) else { return false }
                return open >= lim - 40
            }
            out.append("\(nodeFull ? "machine (node descriptor limit)" : "gateway"): \(Fmt.int(other.values.reduce(0, +))) watcher connections failed or dropped: \(top)")
        }
        for (node, files) in r.drop.nodeFiles.sorted(by: { $0.key < $1.key }) {
            let f = files.split(separator: "/").compactMap { Int($0) }
            if f.count == 2, f[0] >= f[1] - 20 {
                out.append("machine: node \(node) used \(f[0]) of its \(f[1]) descriptors (one process may hold at most \(Machine.fdLimit().hard) here): spread the connected watchers over more nodes (--nodes)")
            }
        }
        if let e = r.drop.error {
            out.append("gateway: the PATCH got no answer (\(e)); a node out of descriptors cannot accept the HTTP call (watch its CPU: lws retries accept() in a busy loop)")
        }
        let silentCuts = (s.drops["connection lost without a close frame"] ?? 0) + (r.alerts.dropReasons["connection lost without a close frame"] ?? 0)
        if silentCuts > 0 {
            out.append("gateway: \(Fmt.int(silentCuts)) healthy connected watchers were cut without a close frame: the node hangs up after 55 s without client traffic, but its liveness sweep pings a socket only when a visit finds it 25 s idle, and visits drift apart while connections come and go, so some are never pinged in time"
                + (r.parameters.keepaliveSeconds == 0 ? " (--keepalive 20 keeps them)" : ""))
        }
        out += c.logComplaints().map { "machine: node log says: \($0)" }
        return out
    }

    private func verdict(_ r: PriceDropReport) -> String {
        let a = r.alerts, d = r.drop
        if let e = d.error { return "no drop measured: \(e)" }
        var why: [String] = []
        if a.receivedOnline < a.expectedOnline { why.append("\(Fmt.int(a.expectedOnline - a.receivedOnline)) connected watchers got no alert") }
        if a.droppedAfterSetup > 0 {
            why.append("\(Fmt.int(a.droppedAfterSetup)) connected watchers were disconnected after set-up (" + a.dropReasons.sorted { $0.value > $1.value }.prefix(2).map { "\($0.value) x \($0.key)" }.joined(separator: "; ") + ")")
        }
        if a.duplicatesOnline > 0 { why.append("\(a.duplicatesOnline) duplicate alerts on sockets") }
        if a.wrongOnline > 0 { why.append("\(a.wrongOnline) alerts with the wrong product or price") }
        if a.checkedInRedis {
            if a.storedMissing > 0 { why.append("\(Fmt.int(a.storedMissing)) watchers have no alert in their history") }
            if a.storedDuplicates > 0 { why.append("\(Fmt.int(a.storedDuplicates)) watchers have more than one") }
        }
        if r.setup.watched < r.parameters.watchers { why.append("only \(Fmt.int(r.setup.watched)) of \(Fmt.int(r.parameters.watchers)) watches were made") }
        let stall = d.maxStallMs.values.max() ?? 0
        let pingMax = d.ping.values.map(\.maxMs).max()
        let head = "\(Fmt.int(r.setup.watched)) watchers alerted"
            + (d.gatewayMs.map { " in \(Fmt.num($0, 0)) ms by the node's count" } ?? "")
            + (d.lastOnlineMs.map { "; last connected receipt \(Fmt.num($0, 0)) ms" } ?? "")
            + (d.lastOfflineStoredMs.map { ", last offline stored \(Fmt.num($0, 0)) ms after the PATCH" } ?? "")
            + "; longest loop stall \(Fmt.num(stall, 0)) ms by the node's gauge" + (pingMax.map { ", slowest ping \(Fmt.num($0, 0)) ms" } ?? "")
        return why.isEmpty ? head + "; every alert exactly once" : head + "; problems: " + why.joined(separator: "; ")
    }

    private func summary(_ r: PriceDropReport) {
        let s = r.setup, d = r.drop, a = r.alerts
        var lines = ["", "== pricedrop: \(Fmt.int(r.parameters.watchers)) watchers (\(Fmt.int(r.parameters.online)) connected, \(Fmt.int(r.parameters.offline)) offline), price \(r.parameters.price) -> \(r.parameters.newPrice), \(r.parameters.nodes) node(s), \(r.parameters.probeWorkers) probe worker(s)"]
        lines.append("setup       \(Fmt.int(s.watched)) watches in \(Fmt.num(s.seconds, 1)) s (\(Fmt.num(s.watchesPerSecond, 0))/s); online \(Fmt.int(s.online)), closed \(Fmt.int(s.closedOffline)), failed \(Fmt.int(s.failed + s.watchFailed)), dropped \(Fmt.int(s.dropped)); product watchers \(s.productWatchers.map { Fmt.int($0) } ?? "?")")
        if let e = d.error { lines.append("patch       failed: \(e)") } else { lines.append("patch       answered in \(Fmt.num(d.patchMs, 1)) ms") }
        lines.append("online      last receipt \(d.lastOnlineMs.map { Fmt.num($0, 1) + " ms" } ?? "none") after the PATCH; \(d.latency?.line ?? "no samples")")
        lines.append("offline     last offline alert stored \(d.lastOfflineStoredMs.map { Fmt.num($0, 1) + " ms" } ?? "?") after the PATCH (Redis polled every 5 ms)")
        lines.append("node        log: \(d.gatewayAlerts.map { Fmt.int($0) } ?? "?") alerts in \(d.gatewayMs.map { Fmt.num($0, 0) } ?? "?") ms"
            + (d.alertsPerSecond.map { " (\(Fmt.int(Int($0))) alerts/s)" } ?? "") + "; loop stall max " + d.maxStallMs.sorted { $0.key < $1.key }.map { "\($0.key) \(Fmt.num($0.value, 1)) ms" }.joined(separator: ", ")
            + " (set-up: " + s.maxStallMs.sorted { $0.key < $1.key }.map { "\($0.key) \(Fmt.num($0.value, 1)) ms" }.joined(separator: ", ") + ")")
        if !d.ping.isEmpty && d.ping.values.contains(where: { $0.count > 0 }) {
            lines.append("ping        " + d.ping.sorted { $0.key < $1.key }.map { "\($0.key) p50 \(Fmt.num($0.value.p50Ms, 2)) p99 \(Fmt.num($0.value.p99Ms, 1)) max \(Fmt.num($0.value.maxMs, 1)) ms" }.joined(separator: "; ") + " (a ping every \(r.parameters.pingMs) ms per node, PATCH to done)")
        }
        lines.append("alerts      sockets \(Fmt.int(a.receivedOnline))/\(Fmt.int(a.expectedOnline)), duplicates \(a.duplicatesOnline), wrong \(a.wrongOnline), dropped after set-up \(Fmt.int(a.droppedAfterSetup)), gaps \(a.gaps)"
            + (a.checkedInRedis ? "; histories: exactly one \(Fmt.int(a.storedOnce))/\(Fmt.int(a.expectedStored)) (offline \(Fmt.int(a.storedOfflineOnce))), missing \(Fmt.int(a.storedMissing)), more than one \(Fmt.int(a.storedDuplicates))" : "; histories not checked (\(d.error == nil ? "no Redis" : "no drop")"))
        let busy = d.redisCommands.filter { $0.key.hasPrefix("eval") }.values.reduce(0) { $0 + $1.ms }
        if busy > 0 {
            lines.append("redis       scripts busy \(Fmt.num(busy, 0)) ms during the drop: " + d.redisCommands.sorted { $0.value.ms > $1.value.ms }.prefix(6)
                .map { "\($0.key) \(Fmt.int($0.value.calls)) calls \(Fmt.num($0.value.ms, 0)) ms" }.joined(separator: ", "))
        }
        lines.append("cpu         " + d.cpu.map { "\($0.name) \(Fmt.num($0.percentOfOneCore, 0))%" }.joined(separator: ", ") + " (PATCH to done)")
        for (k, v) in s.failures.sorted(by: { $0.value > $1.value }).prefix(4) { lines.append("failure     \(Fmt.int(v)) x \(k)") }
        for (k, v) in s.drops.sorted(by: { $0.value > $1.value }).prefix(4) { lines.append("drop        \(Fmt.int(v)) x \(k) (set-up)") }
        for (k, v) in a.dropReasons.sorted(by: { $0.value > $1.value }).prefix(4) { lines.append("drop        \(Fmt.int(v)) x \(k) (after set-up)") }
        for t in r.perfTop.prefix(8) { lines.append("perf n1     \(t)") }
        for l in r.limits { lines.append("limit       \(l)") }
        lines.append("verdict     \(r.verdict)")
        print(lines.joined(separator: "\n"))
    }
}

/// One line of Redis `INFO commandstats`.
struct RedisCommandStat: Codable {
    var calls: Int
    var ms: Double

    static func parse(_ info: String) -> [String: RedisCommandStat] {
        var out: [String: RedisCommandStat] = [:]
        for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("cmdstat_") {
            let parts = line.dropFirst(8).split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            var calls = 0, usec = 0.0
            for kv in parts[1].split(separator: ",") {
                let f = kv.split(separator: "=")
                if f.count == 2 && f[0] == "calls" { calls = Int(f[1]) ?? 0 }
                if f.count == 2 && f[0] == "usec" { usec = Double(f[1]) ?? 0 }
            }
            out[String(parts[0])] = RedisCommandStat(calls: calls, ms: usec / 1000)
        }
        return out
    }
}
