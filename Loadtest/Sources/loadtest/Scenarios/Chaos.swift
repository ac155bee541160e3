import ArgumentParser
import Foundation
import GatewayTestSupport
import GatewayProtocol

/// Scenario 6: the holiday peak with faults injected while it runs. A node is SIGKILLed
/// and started again, Redis loses its pub/sub and normal clients (`CLIENT KILL TYPE`),
/// is paused (`DEBUG SLEEP`), stopped cleanly (`SHUTDOWN NOSAVE`) and crashed (SIGKILL,
/// `appendfsync always` so what was acknowledged survives). The holiday peak's own
/// accounting still runs (every push once, in order, live or through `since` recovery;
/// every key in exactly one order), and after the faults: unpaid orders still expire on
/// time (the timers kept firing), and each node's descriptors and CPU are back to idle.
struct ChaosCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chaos",
        abstract: "The holiday peak under faults: node SIGKILL, CLIENT KILL, DEBUG SLEEP, Redis SHUTDOWN NOSAVE and SIGKILL; nothing lost, doubled or wedged.",
        discussion: """
        Needs spawned nodes and Redis (no --url): it kills and restarts them. Faults run one after another, spread \
        over 10% to 80% of the peak, each after the previous one has healed (every node's /readyz 200 again). \
        Unpaid timer-probe orders are created before the faults and after each one (orders.ttl_s set by --order-ttl); \
        each must end `canceled` within --timer-slack seconds of its expires_at.
        """)

    static let allFaults = ["node-kill", "pubsub-kill", "normal-kill", "debug-sleep", "redis-shutdown", "redis-kill"]

    @Option(help: "Browsers held for the whole run.")
    var browsers = 2000
    @Option(help: "New browser connections per second during the ramp.")
    var connectRate: Double = 250
    @Option(help: "Seconds of peak; the faults happen inside it.")
    var duration = 60
    @Option(help: "Gift orders over the first 80% of the peak.")
    var gifts = 400
    @Option(help: "Friend-pay requests over the first 80% of the peak.")
    var friendpays = 200
    @Option(help: "Fraction of friend-pay requests paid by a second friend too.")
    var doublePay = 0.3
    @Option(help: "Buyer groups.")
    var groups = 4
    @Option(help: "Group members (buy during set-up, then chatter).")
    var groupMembers = 400
    @Option(help: "Group messages per second, all groups together.")
    var chatterRate: Double = 40
    @Option(help: "Watchers of the flash-drop product.")
    var watchers = 1000
    @Option(help: "Fraction of watchers kept connected.")
    var watchConnected = 0.5
    @Option(help: "When the price drops, as a fraction of the peak.")
    var dropAt = 0.55
    @Option(help: "Share of browsers in the reconnect storm (0: none; the faults drop plenty).")
    var stormShare = 0.0
    @Option(help: "When the storm hits, as a fraction of the peak.")
    var stormAt = 0.3
    @Option(help: "Seconds the stormed browsers stay away.")
    var stormDown = 3.0
    @Option(help: "Threads doing HTTP.")
    var httpWorkers = 8
    @Option(help: "Seconds to wait after the peak for late pushes and the last faults to heal.")
    var drain = 30

    @Option(help: "Faults, in order, comma-separated: \(allFaults.joined(separator: ",")).")
    var faults = allFaults.joined(separator: ",")
    @Option(help: "Seconds of DEBUG SLEEP.")
    var sleepSeconds = 2.0
    @Option(help: "Seconds a killed node stays down before it is started again.")
    var nodeDown = 1.0
    @Option(help: "orders.ttl_s of the spawned nodes: unpaid timer probes are canceled after it.")
    var orderTtl = 8
    @Option(help: "Unpaid timer-probe orders per batch (one batch before the faults, one after each, one at the end).")
    var timerProbes = 3
    @Option(help: "Seconds past expires_at by which a probe must read `canceled`.")
    var timerSlack = 5.0
    @Option(help: "Descriptors a node may hold above its idle count (right after start) once every client is gone.")
    var fdSlack = 3
    @Option(help: "Percent of one core a node may use once every client is gone.")
    var idleCpu = 10.0
    @Flag(inversion: .prefixedNo, help: "CLIENT KILL while the nodes have writes in flight: unpaid orders fall due just then and `CLIENT PAUSE WRITE` holds their expiry (and every other write) until the kill.")
    var busyKills = true

    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var output: OutputOptions

    var faultList: [String] { faults.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }

    func validate() throws {
        guard !cluster.external else { throw ValidationError("chaos kills and restarts nodes and Redis: it cannot use --url") }
        for f in faultList where !Self.allFaults.contains(f) {
            throw ValidationError("--faults: unknown fault \(f) (known: \(Self.allFaults.joined(separator: ", ")))")
        }
        guard (1...3600).contains(orderTtl) else { throw ValidationError("--order-ttl must be 1 to 3600") }
        guard (0...1000).contains(timerProbes) else { throw ValidationError("--timer-probes must be 0 to 1000") }
        guard sleepSeconds > 0, sleepSeconds <= 30 else { throw ValidationError("--sleep-seconds must be above 0 and at most 30") }
        guard nodeDown >= 0, nodeDown <= 60 else { throw ValidationError("--node-down must be 0 to 60") }
        _ = try peakCommand()
    }

    /// The holiday peak this run plays, with the same figures.
    func peakCommand() throws -> HolidayPeakCommand {
        var hp = try HolidayPeakCommand.parse([])
        hp.browsers = browsers
        hp.connectRate = connectRate
        hp.duration = duration
        hp.gifts = gifts
        hp.friendpays = friendpays
        hp.doublePay = doublePay
        hp.groups = groups
        hp.groupMembers = groupMembers
        hp.chatterRate = chatterRate
        hp.watchers = watchers
        hp.watchConnected = watchConnected
        hp.dropAt = dropAt
        hp.stormShare = stormShare
        hp.stormAt = stormAt
        hp.stormDown = stormDown
        hp.httpWorkers = httpWorkers
        hp.drain = drain
        // The restock rush is the holiday peak's own step; the faults here judge other things.
        hp.restockWatchers = 0
        // So is the flash sale (its expiry and resale timing is not what faults are about).
        hp.saleBuyers = 0
        // Fault windows make pushes late: latency objectives are not what this run judges.
        hp.p99Objective = 1e9
        var c = cluster
        c.defaultNodes = 2
        c.redisAof = true
        c.redisFsyncAlways = true
        c.redisDebugCommand = true
        c.nodeEnv.insert("GATEWAY_ORDERS_TTL_S=\(orderTtl)", at: 0)
        hp.cluster = c
        hp.output = output
        try hp.validate()
        return hp
    }

    func run() throws {
        let hp = try peakCommand()
        guard hp.cluster.spawnCount >= 2 || !faultList.contains("node-kill") else {
            throw ValidationError("node-kill needs at least 2 nodes (the second one is killed)")
        }
        let scenario = HolidayPeakScenario(hp)
        scenario.chaos = ChaosDriver(self)
        try scenario.run()
    }
}

struct ChaosResults: ScenarioResults {
    static let sections: ReportSections = [.checks, .verdict]
    typealias Point = Never

    struct Parameters: Codable {
        var faults: [String]
        var sleepSeconds: Double
        var nodeDownSeconds: Double
        var orderTtlSeconds: Int
        var timerProbesPerBatch: Int
        var timerSlackSeconds: Double
        var fdSlack: Int
        var idleCpuPercent: Double
    }

    /// One injected fault, timed from the start of the peak.
    struct Fault: Codable {
        var fault: String
        var atSeconds: Double
        /// Seconds into the run (the chart's axis).
        var runSeconds: Double
        var detail: String
        /// From the fault to every node answering /readyz 200 again.
        var healedAfterSeconds: Double?
        var error: String?
    }

    struct TimerProbe: Codable {
        var order: String
        var batch: String
        var expiresAt: Int64
        var status: String
        /// When it was first read `canceled`, seconds after its expires_at (nil: never).
        var canceledLateBySeconds: Double?
    }

    /// One node alone (the others SIGSTOPped): a wedged sweeper on it shows here, not hidden by the others.
    struct NodeTimers: Codable {
        var node: String
        var probes: Int
        var onTime: Int
        var worstLatenessSeconds: Double?
        var statuses: [String]
    }

    struct Timers: Codable {
        var perNode: [NodeTimers] = []
        var probes = 0
        var canceled = 0
        var onTime = 0
        var createFailures = 0
        var worstLatenessSeconds: Double?
        var notCanceled: [String] = []
        var list: [TimerProbe] = []
    }

    struct IdleNode: Codable {
        var name: String
        var pid: Int32?
        var fdsAtStart: Int?
        var fdsAfter: Int?
        /// Over 1 s right after start, before any client: what idle costs on this machine.
        var cpuPercentAtStart: Double?
        var cpuPercentAfter: Double?
        /// Descriptors held after but not at start (and the other way round, with a minus), by kind.
        var fdsGained: [String] = []
        /// `/readyz` at the end (200: the node says it reaches Redis).
        var readyAtEnd: Int?
        /// What the descriptors were at start, by kind.
        var fdKindsAtStart: [String] = []
        var alive: Bool
    }

    struct KeyStock: Codable {
        var product: String
        var uploaded: Int
        var stockAfter: Int?
        var inOrdersReadBack: Int
        /// Paid gifts not claimed: their keys are allocated but shown to nobody yet.
        var heldByUnclaimedGifts = 0
    }

    var faults: [Fault] = []
    /// HTTP calls retried while a node or Redis was away (as a shop backend would retry), by cause.
    var httpRetries: [String: Int] = [:]
    var timers = Timers()
    var idle: [IdleNode] = []
    var keys: [KeyStock] = []
    var browsersOnlineAtEnd = 0
    var browsersStranded: [String] = []
    var claimsUnanswered = 0
    var deadNodes: [String] = []
    var peak: HolidayPeakReport
}

typealias ChaosReport = ScenarioReport<ChaosResults>

/// Runs the faults on their own thread during the peak, and the timer and idle checks after it.
/// Mutable state under `lock`.
final class ChaosDriver: @unchecked Sendable {
    let cmd: ChaosCommand
    private let lock = NSLock()
    private var faultLog: [ChaosResults.Fault] = []
    private var retries: [String: Int] = [:]
    private var done = false
    private var probes: [(id: String, batch: String, expiresAt: Int64)] = []
    /// First time (Unix s) each probe read `canceled`, from the poller.
    private var canceledAt: [String: Double] = [:]
    private var lastStatus: [String: String] = [:]
    private var polling = true
    private var baselineCPU: [String: Double] = [:]
    private var baselineKinds: [String: [String]] = [:]
    /// Busy kills: the latest expires_at (ms) of the probes made to fall due at fault `index`.
    private var armed: [Int: Int64] = [:]
    /// Per node, alone (the others stopped): probes canceled on time after all faults.
    private var perNode: [String: (made: Int, onTime: Int, worst: Double?)] = [:]
    private var probeFailures = 0
    private var baselineFds: [String: Int] = [:]
    private var thread: Thread?
    private var timerProduct = ""
    private var tag = ""
    private var probeSeq = 0

    init(_ cmd: ChaosCommand) { self.cmd = cmd }

    var faultsDone: Bool { lock.withLock { done } }

    func retried(_ why: String) { lock.withLock { retries[why, default: 0] += 1 } }

    /// Idle descriptor counts (no client yet) and the timer-probe product.
    func clusterStarted(_ c: Cluster, tag: String, progress p: Progress) throws {
        self.tag = tag
        usleep(300_000)
        for ep in c.endpoints {
            guard let pid = ep.pid else { continue }
            baselineFds[ep.name] = Machine.openFiles(pid)
            baselineKinds[ep.name] = Self.descriptorKinds(pid, redisPort: c.redisPort ?? 0, ownPort: ep.port)
        }
        baselineCPU = Self.cpuPercent(c.endpoints, seconds: 1)
        timerProduct = "ch-\(tag)-timer"
        let admin = ShopClient(c.endpoints[0], shopKey: c.shopKey, timeout: 30)
        defer { admin.disconnect() }
        try admin.createProduct(id: timerProduct, price: 500, title: "Chaos timer probe")
        p.note("chaos: idle descriptors " + baselineFds.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            + "; faults: \(cmd.faultList.joined(separator: ", ")); orders.ttl_s \(cmd.orderTtl)")
    }

    /// Starts the fault thread: faults spread over 10%..80% of the peak, one after another.
    func peakStarted(cluster c: Cluster, peakSeconds: Double, progress p: Progress) {
        let start = Clock.now()
        let list = cmd.faultList
        // Probes are read every 250 ms from creation on, so lateness is measured, not the poll's delay.
        Thread { [self] in
            let shop = ShopClient(c.endpoints[0], shopKey: c.shopKey, timeout: 5)
            defer { shop.disconnect() }
            while lock.withLock({ polling }) {
                let open = lock.withLock { probes.filter { canceledAt[$0.id] == nil } }
                for pr in open {
                    guard let r = try? shop.call("GET", "/api/v1/orders/\(pr.id)", idempotent: true), let st = r.json?["status"]?.stringValue else { continue }
                    lock.withLock {
                        lastStatus[pr.id] = st
                        if st == "canceled" { canceledAt[pr.id] = Date().timeIntervalSince1970 }
                    }
                }
                usleep(250_000)
            }
        }.start()
        let times = list.indices.map { i in peakSeconds * (list.count == 1 ? 0.1 : 0.1 + 0.7 * Double(i) / Double(list.count - 1)) }
        // Busy kills: probes created one orders.ttl_s before their kill, so they fall due just then.
        if cmd.busyKills {
            Thread { [self] in
                for (i, fault) in list.enumerated() where fault.hasSuffix("-kill") && fault != "node-kill" && fault != "redis-kill" {
                    while Clock.now() - start < times[i] - Double(cmd.orderTtl) - 0.3 { usleep(20_000) }
                    let due = probeBatch(c, "due at \(fault)", count: 2)
                    lock.withLock { armed[i] = due ?? 0 }
                }
            }.start()
        }
        let t = Thread { [self] in
            probeBatch(c, "before faults")
            for (i, fault) in list.enumerated() {
                while Clock.now() - start < times[i] { usleep(20_000) }
                inject(fault, i, c, since: start, progress: p)
                probeBatch(c, "after \(fault)")
            }
            lock.withLock { done = true }
        }
        thread = t
        t.start()
    }

    private func inject(_ fault: String, _ index: Int, _ c: Cluster, since start: Double, progress p: Progress) {
        let t0 = Clock.now()
        var entry = ChaosResults.Fault(fault: fault, atSeconds: t0 - start, runSeconds: p.elapsed, detail: "")
        do {
            switch fault {
            case "node-kill":
                let i = c.endpoints.count - 1
                let name = c.endpoints[i].name
                let status = c.killNode(i)
                usleep(UInt32(cmd.nodeDown * 1e6))
                try c.restartNode(i)
                entry.detail = "SIGKILL \(name) (exit \(status.map(String.init) ?? "?")), down \(Fmt.num(cmd.nodeDown, 1)) s, started again as pid \(c.endpoints[i].pid ?? 0)"
            case "pubsub-kill", "normal-kill":
                let type = fault == "pubsub-kill" ? "pubsub" : "normal"
                let probe = try RedisProbe(url: "redis://127.0.0.1:\(c.redisPort ?? 0)", timeout: 5)
                var busy = ""
                if cmd.busyKills {
                    // Wait for this kill's probes to fall due, then hold every write (CLIENT KILL is not one):
                    // each node's timer sweep finds them and waits on their expiry, other writes pile up too.
                    let wait = Clock.now() + Double(cmd.orderTtl) + 5
                    var due: Int64?
                    while due == nil && Clock.now() < wait {
                        due = lock.withLock { armed[index] }
                        if due == nil { usleep(20_000) }
                    }
                    if let due, due > 0 { while Date().timeIntervalSince1970 < Double(due) / 1000 + 0.05 { usleep(10_000) } }
                    _ = try probe.call(["CLIENT", "PAUSE", "3000", "WRITE"])
                    usleep(600_000)
                    busy = " after 600 ms of CLIENT PAUSE WRITE with \(due.map { $0 > 0 ? "2 unpaid orders just due" : "no due orders (probes failed)" } ?? "no due orders (not armed in time)")"
                }
                // SKIPME yes (the default): this probe is a normal client and must live to read the count.
                let r = try probe.call(["CLIENT", "KILL", "TYPE", type, "SKIPME", "yes"])
                if cmd.busyKills { _ = try? probe.call(["CLIENT", "UNPAUSE"]) }
                entry.detail = "CLIENT KILL TYPE \(type): \(r.int.map { "\($0) connections" } ?? "\(r)")" + busy
            case "debug-sleep":
                let probe = try RedisProbe(url: "redis://127.0.0.1:\(c.redisPort ?? 0)", timeout: cmd.sleepSeconds + 10)
                let r = try probe.call(["DEBUG", "SLEEP", Fmt.num(cmd.sleepSeconds, 1)])
                entry.detail = "DEBUG SLEEP \(Fmt.num(cmd.sleepSeconds, 1)): \(r.text ?? "\(r)")"
            case "redis-shutdown":
                try c.shutdownRedis()
                try c.restartRedis()
                entry.detail = "SHUTDOWN NOSAVE, started again on the same port and AOF (pid \(c.redisPid ?? 0))"
            case "redis-kill":
                c.killRedis()
                usleep(200_000)
                try c.restartRedis()
                entry.detail = "SIGKILL redis-server, started again on the same port and AOF (pid \(c.redisPid ?? 0))"
            default:
                entry.detail = "unknown"
            }
        } catch {
            entry.error = "\(error)"
        }
        // Healed: every node reaches Redis again.
        let deadline = Clock.now() + 30
        while Clock.now() < deadline {
            if c.allReady() {
                entry.healedAfterSeconds = Clock.now() - t0
                break
            }
            usleep(100_000)
        }
        p.note("chaos: \(fault) at \(Fmt.num(entry.atSeconds, 1)) s into the peak: \(entry.detail)"
            + (entry.error.map { " ERROR \($0)" } ?? "") + "; healed after " + (entry.healedAfterSeconds.map { Fmt.num($0, 2) + " s" } ?? "NEVER (30 s)"))
        lock.withLock { faultLog.append(entry) }
    }

    /// Unpaid orders that only the expiry timer can cancel.
    /// Unpaid orders that only the expiry timer can cancel; the latest expires_at (ms).
    @discardableResult
    private func probeBatch(_ c: Cluster, _ batch: String, count: Int? = nil, node: Int? = nil) -> Int64? {
        let n = count ?? cmd.timerProbes
        guard n > 0 else { return nil }
        let seq = lock.withLock { () -> Int in probeSeq += n; return probeSeq - n }
        let shop = ShopClient(c.endpoints[node ?? seq % c.endpoints.count], shopKey: c.shopKey, timeout: 10)
        defer { shop.disconnect() }
        var latest: Int64?
        for k in 0..<n {
            let probeSeq = seq + k + 1
            let body = #"{"buyer":"ch-\#(tag)-t\#(probeSeq)","product":"\#(timerProduct)","quantity":1,"idempotency_key":"ch-\#(tag)-t\#(probeSeq)"}"#
            let deadline = Clock.now() + 20
            var made = false
            while !made && Clock.now() < deadline {
                if let r = try? shop.call("POST", "/api/v1/orders", body), r.status == 201,
                   let id = r.json?["id"]?.stringValue, let exp = r.json?["expires_at"]?.intValue {
                    lock.withLock { probes.append((id, batch, exp)) }
                    latest = max(latest ?? 0, exp)
                    made = true
                } else {
                    usleep(200_000)
                }
            }
            if !made { lock.withLock { probeFailures += 1 } }
        }
        return latest
    }

    /// After the peak: a last probe batch, the timers, clients gone, then descriptors and
    /// CPU back to idle; writes the chaos report.
    func finish(cluster c: Cluster, peak: HolidayPeakReport, ctx: RunContext, browsersOnline: Int, stranded: [String],
                claimsUnanswered: Int, keysReadBack: [String: Int], keysHeld: [String: Int], products: (gift: (String, Int), friendpay: (String, Int)),
                quiesce: () -> Void, printPeak: () -> Void) throws {
        let p = ctx.progress
        thread.map { _ in while !faultsDone { usleep(50_000) } }
        probeBatch(c, "after all faults")
        var report = ChaosReport(run: ctx.info, parameters: .init(
            faults: cmd.faultList, sleepSeconds: cmd.sleepSeconds, nodeDownSeconds: cmd.nodeDown, orderTtlSeconds: cmd.orderTtl,
            timerProbesPerBatch: cmd.timerProbes, timerSlackSeconds: cmd.timerSlack, fdSlack: cmd.fdSlack, idleCpuPercent: cmd.idleCpu),
            results: ChaosResults(peak: peak))
        report.browsersOnlineAtEnd = browsersOnline
        report.browsersStranded = Array(stranded.prefix(20))
        report.claimsUnanswered = claimsUnanswered

        // Keys: stock left plus keys in the orders read back is what was uploaded.
        let shop = ShopClient(c.endpoints[0], shopKey: c.shopKey, timeout: 10)
        for (product, uploaded) in [products.gift, products.friendpay] {
            let stock = (try? shop.product(product))?["stock"]?.intValue.map { Int($0) }
            report.keys.append(.init(product: product, uploaded: uploaded, stockAfter: stock, inOrdersReadBack: keysReadBack[product] ?? 0,
                                     heldByUnclaimedGifts: keysHeld[product] ?? 0))
        }

        // Timers: every probe canceled by expires_at + slack (the poller reads them every 250 ms).
        let all = lock.withLock { probes }
        let lastExpiry = all.map(\.expiresAt).max() ?? 0
        let pollUntil = Double(lastExpiry) / 1000 + cmd.timerSlack + 1
        p.note("chaos: waiting for \(all.count) timer probes to expire (orders.ttl_s \(cmd.orderTtl))")
        while Date().timeIntervalSince1970 < pollUntil && lock.withLock({ all.contains { canceledAt[$0.id] == nil } }) { usleep(100_000) }
        let list: [ChaosResults.TimerProbe] = lock.withLock {
            polling = false
            return all.map { pr in
                ChaosResults.TimerProbe(order: pr.id, batch: pr.batch, expiresAt: pr.expiresAt, status: lastStatus[pr.id] ?? "?",
                                       canceledLateBySeconds: canceledAt[pr.id].map { max(0, $0 - Double(pr.expiresAt) / 1000) })
            }
        }
        shop.disconnect()
        var timers = ChaosResults.Timers()
        timers.probes = list.count
        timers.createFailures = lock.withLock { probeFailures }
        timers.canceled = list.filter { $0.status == "canceled" }.count
        timers.onTime = list.filter { ($0.canceledLateBySeconds ?? .infinity) <= cmd.timerSlack }.count
        timers.worstLatenessSeconds = list.compactMap(\.canceledLateBySeconds).max()
        timers.notCanceled = list.filter { $0.status != "canceled" }.prefix(20).map { "\($0.order) (\($0.batch)): \($0.status)" }
        timers.list = list
        report.timers = timers

        // Idle: clients gone, then descriptors back to the count at start and no spinning loop.
        quiesce()
        if cmd.timerProbes > 0 {
            for i in c.endpoints.indices {
                report.timers.perNode.append(timersAlone(c, i, progress: p))
            }
        }
        let settle = Clock.now() + 15
        var fds: [String: Int] = [:]
        while Clock.now() < settle {
            fds = [:]
            for ep in c.endpoints { if let pid = ep.pid, let n = Machine.openFiles(pid) { fds[ep.name] = n } }
            if c.endpoints.allSatisfy({ (fds[$0.name] ?? .max) <= (baselineFds[$0.name] ?? 0) + cmd.fdSlack }) { break }
            usleep(250_000)
        }
        let cpu = Self.cpuPercent(c.endpoints, seconds: 3)
        for (i, ep) in c.endpoints.enumerated() {
            var gained: [String] = []
            if let pid = ep.pid {
                var before = Dictionary(grouping: baselineKinds[ep.name] ?? [], by: { $0 }).mapValues(\.count)
                for k in Self.descriptorKinds(pid, redisPort: c.redisPort ?? 0, ownPort: ep.port) { before[k, default: 0] -= 1 }
                gained = before.filter { $0.value != 0 }.sorted { $0.key < $1.key }.map { "\(-$0.value > 0 ? "+" : "")\(-$0.value) \($0.key)" }
            }
            report.idle.append(.init(name: ep.name, pid: ep.pid, fdsAtStart: baselineFds[ep.name], fdsAfter: fds[ep.name],
                                     cpuPercentAtStart: baselineCPU[ep.name], cpuPercentAfter: cpu[ep.name], fdsGained: gained,
                                     readyAtEnd: HTTPConnection.get(host: ep.host, port: ep.port, path: "/readyz", timeout: 3)?.status,
                                     fdKindsAtStart: Dictionary(grouping: baselineKinds[ep.name] ?? [], by: { $0 }).map { "\($0.value.count) \($0.key)" }.sorted(),
                                     alive: c.node(i)?.isRunning ?? false))
        }
        report.deadNodes = c.deadNodes()
        report.faults = lock.withLock { faultLog }
        report.httpRetries = lock.withLock { retries }
        for f in report.faults { report.peak.events.append(ChartEvent(t: f.runSeconds, label: f.fault)) }
        report.run.machine = MachineInfo()
        (report.checks, report.verdict) = Self.verdict(report, cmd)

        printPeak()
        Self.summary(report)
        try ctx.write(report)
    }

    /// Node `i` alone (the others stopped with SIGSTOP): fresh probes must still expire on time.
    private func timersAlone(_ c: Cluster, _ i: Int, progress p: Progress) -> ChaosResults.NodeTimers {
        let name = c.endpoints[i].name
        let others = c.endpoints.indices.filter { $0 != i }
        others.forEach { c.node($0)?.signal(SIGSTOP) }
        defer { others.forEach { c.node($0)?.signal(SIGCONT) } }
        let before = lock.withLock { probes.count }
        let latest = probeBatch(c, "alone on \(name)", count: 2, node: i) ?? 0
        let mine = lock.withLock { Array(probes[before...]) }
        p.note("chaos: timers on \(name) alone: \(mine.count) probes due in \(Fmt.num(max(0, Double(latest) / 1000 - Date().timeIntervalSince1970), 1)) s")
        let shop = ShopClient(c.endpoints[i], shopKey: c.shopKey, timeout: 5)
        defer { shop.disconnect() }
        var late: [String: Double] = [:]
        var status: [String: String] = [:]
        while Date().timeIntervalSince1970 < Double(latest) / 1000 + cmd.timerSlack + 0.5 && late.count < mine.count {
            for pr in mine where late[pr.id] == nil {
                guard let st = (try? shop.call("GET", "/api/v1/orders/\(pr.id)", idempotent: true))?.json?["status"]?.stringValue else { continue }
                status[pr.id] = st
                if st == "canceled" { late[pr.id] = max(0, Date().timeIntervalSince1970 - Double(pr.expiresAt) / 1000) }
            }
            usleep(250_000)
        }
        return .init(node: name, probes: mine.count, onTime: late.values.filter { $0 <= cmd.timerSlack }.count,
                     worstLatenessSeconds: late.values.max(), statuses: mine.map { status[$0.id] ?? "?" })
    }

    /// Percent of one core per node over `seconds` (utime + stime from /proc/<pid>/stat).
    static func cpuPercent(_ endpoints: [Endpoint], seconds: Double) -> [String: Double] {
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        let before = endpoints.map { $0.pid.flatMap { Machine.cpuTicks($0) } }
        let t0 = Clock.now()
        usleep(UInt32(seconds * 1e6))
        let dt = Clock.now() - t0
        var out: [String: Double] = [:]
        for (i, ep) in endpoints.enumerated() {
            if let b = before[i], let a = ep.pid.flatMap({ Machine.cpuTicks($0) }) { out[ep.name] = Double(a - b) / hz / dt * 100 }
        }
        return out
    }

    /// What each descriptor of a process is, without the parts that change (inodes, client
    /// ports): "tcp to redis ESTABLISHED", "tcp listening", "tcp client", "anon_inode:[eventfd]", a path.
    static func descriptorKinds(_ pid: pid_t, redisPort: Int, ownPort: Int) -> [String] {
        var sockets: [String: String] = [:]   // inode -> kind
        for file in ["tcp", "tcp6"] {
            guard let text = Machine.procText("/proc/\(pid)/net/\(file)") else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                guard f.count > 9 else { continue }
                let local = Int(f[1].split(separator: ":").last ?? "", radix: 16) ?? 0
                let remote = Int(f[2].split(separator: ":").last ?? "", radix: 16) ?? 0
                let states = ["01": "ESTABLISHED", "02": "SYN_SENT", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "0A": "LISTEN", "09": "LAST_ACK", "04": "FIN_WAIT1", "05": "FIN_WAIT2"]
                let state = states[String(f[3])] ?? String(f[3])
                let kind = remote == redisPort ? "tcp to redis \(state)" : local == ownPort ? (state == "LISTEN" ? "tcp listening" : "tcp client \(state)") : "tcp other \(state)"
                sockets[String(f[9])] = kind
            }
        }
        if let text = Machine.procText("/proc/\(pid)/net/unix") {
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                if f.count > 6 { sockets[String(f[6])] = "unix socket" + (f.count > 7 ? " \(f[7])" : "") }
            }
        }
        let dir = "/proc/\(pid)/fd"
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).compactMap { fd in
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(dir)/\(fd)") else { return nil }
            if target.hasPrefix("socket:[") {
                let inode = String(target.dropFirst(8).dropLast())
                // In no table: a TCP socket whose connect failed (or that was shut) and was never closed.
                return sockets[inode] ?? "socket in no tcp/unix table (closed or never connected)"
            }
            if target.hasPrefix("pipe:") { return "pipe" }
            return target
        }
    }

    static func verdict(_ r: ChaosReport, _ cmd: ChaosCommand) -> ([String], String) {
        var checks: [String] = []
        var failed: [String] = []
        func check(_ ok: Bool, _ text: String) {
            checks.append((ok ? "ok      " : "MISSED  ") + text)
            if !ok { failed.append(text) }
        }
        let pk = r.peak
        let t = pk.totals
        for f in r.faults {
            check(f.error == nil && f.healedAfterSeconds != nil,
                  "fault \(f.fault): \(f.error ?? f.detail); every node ready again after " + (f.healedAfterSeconds.map { Fmt.num($0, 2) + " s" } ?? "NEVER"))
        }
        let unanswered = r.httpRetries.filter { $0.key.contains("timed out") }.values.reduce(0, +)
        check(unanswered == 0, "every HTTP call answered within 5 s: \(unanswered) left unanswered (then retried): "
            + r.httpRetries.filter { $0.key.contains("timed out") }.keys.sorted().joined(separator: "; "))
        check(t.lost == 0, "no push lost: \(t.lost) of \(t.expected) expected pushes and group deliveries lost (live or through `since`)")
        check(t.duplicates == 0, "no push duplicated: \(t.duplicates)")
        check(t.outOfOrder == 0, "in order: \(t.outOfOrder) offsets skipped (personal \(pk.browsers.personalGaps), groups \(pk.groups.outOfOrder))")
        check(pk.storm.notRecovered == 0, "reconnects recovered with since: \(pk.storm.reconnected) reconnects, \(pk.storm.notRecovered) answered recovered:false or failed to resubscribe")
        check(r.browsersStranded.isEmpty, "every browser back online at the end: \(r.browsersOnlineAtEnd) online, \(r.browsersStranded.count) not (\(r.browsersStranded.prefix(3).joined(separator: ", ")))")
        let g = pk.gifts
        check(g.readBackDelivered == g.paid && g.paid == g.ordered && g.keysSeenTwice == 0,
              "gifts: \(g.ordered) ordered, \(g.paid) paid, \(g.readBackDelivered) read back delivered to the recipient with one key; keys seen twice \(g.keysSeenTwice)")
        check(g.claimed + g.claimsConfirmedByRetry == g.paid && r.claimsUnanswered == 0 && g.claimErrors == 0,
              "gift claims: \(g.claimed) answered ok + \(g.claimsConfirmedByRetry) confirmed by a retry (gone) of \(g.paid); unanswered \(r.claimsUnanswered), errors \(g.claimErrors)")
        let f = pk.friendPay
        check(f.readBackOK == f.paid && f.paid == f.requested && f.refundsReceived == f.refundsExpected,
              "friend-pay: \(f.requested) requested, \(f.paid) paid, \(f.readBackOK) read back paid once by the first friend with one key; refunds \(f.refundsReceived)/\(f.refundsExpected)")
        for k in r.keys {
            let ok = k.stockAfter.map { $0 + k.inOrdersReadBack + k.heldByUnclaimedGifts == k.uploaded } ?? false
            check(ok, "keys of \(k.product): \(k.uploaded) uploaded = \(k.stockAfter.map(String.init) ?? "?") in stock + \(k.inOrdersReadBack) in orders read back"
                + " + \(k.heldByUnclaimedGifts) held by paid gifts not claimed (none lost or doubled)")
        }
        let tm = r.timers
        check(tm.probes > 0 && tm.onTime == tm.probes && tm.createFailures == 0,
              "timers: \(tm.onTime)/\(tm.probes) unpaid probes canceled within \(Fmt.num(cmd.timerSlack, 0)) s of expires_at (worst \(tm.worstLatenessSeconds.map { Fmt.num($0, 1) + " s" } ?? "-")); not canceled: \(tm.notCanceled.prefix(3).joined(separator: "; ")); create failures \(tm.createFailures)")
        for t in tm.perNode {
            check(t.probes > 0 && t.onTime == t.probes,
                  "timers on \(t.node) alone (other nodes stopped): \(t.onTime)/\(t.probes) probes canceled within \(Fmt.num(cmd.timerSlack, 0)) s of expires_at; statuses \(t.statuses.joined(separator: ", "))")
        }
        for n in r.idle {
            check(n.alive, "node \(n.name) alive at the end")
            if let a = n.fdsAfter, let b = n.fdsAtStart {
                // Sockets in no table (a failed or shut connection never closed) or left in CLOSE_WAIT are leaks at any count.
                let leaked = n.fdsGained.filter { $0.hasPrefix("+") && ($0.contains("no tcp/unix table") || $0.contains("CLOSE_WAIT")) }
                check(a <= b + cmd.fdSlack && leaked.isEmpty, "node \(n.name) descriptors back to idle: \(a) after, \(b) at start (slack \(cmd.fdSlack), none leaked)"
                      + (n.fdsGained.isEmpty ? "" : "; changed: " + n.fdsGained.joined(separator: ", ")))
            } else {
                check(false, "node \(n.name) descriptors: not measured")
            }
            if let c = n.cpuPercentAfter {
                check(c <= cmd.idleCpu, "node \(n.name) CPU idle after: \(Fmt.num(c, 1))% of a core (at most \(Fmt.num(cmd.idleCpu, 0))%; \(n.cpuPercentAtStart.map { Fmt.num($0, 1) + "%" } ?? "?") idle at start)")
            }
        }
        check(r.deadNodes.isEmpty, "no node exited on its own: \(r.deadNodes.joined(separator: "; "))")
        let verdict = failed.isEmpty
            ? "survived \(r.faults.count) faults: \(Fmt.int(t.received)) pushes checked, none lost, doubled or out of order; every key once; timers on time; idle after"
            : "chaos found problems: " + failed.joined(separator: "; ")
        return (checks, verdict)
    }

    static func summary(_ r: ChaosReport) {
        var lines = ["", "== chaos: \(r.faults.count) faults during a \(r.peak.parameters.durationSeconds) s holiday peak, \(r.peak.parameters.nodes) nodes"]
        for f in r.faults {
            lines.append("fault       +\(Fmt.num(f.atSeconds, 1)) s \(f.fault): \(f.detail)" + (f.error.map { " ERROR \($0)" } ?? "")
                + "; healed \(f.healedAfterSeconds.map { Fmt.num($0, 2) + " s" } ?? "never")")
        }
        if !r.httpRetries.isEmpty {
            lines.append("retries     " + r.httpRetries.sorted { $0.value > $1.value }.prefix(5).map { "\($0.value) x \($0.key)" }.joined(separator: "; "))
        }
        lines.append("timers      \(r.timers.onTime)/\(r.timers.probes) probes canceled on time, worst \(r.timers.worstLatenessSeconds.map { Fmt.num($0, 1) + " s" } ?? "-") late; alone: "
            + r.timers.perNode.map { "\($0.node) \($0.onTime)/\($0.probes)" }.joined(separator: ", "))
        for n in r.idle {
            lines.append("idle        \(n.name): fds \(n.fdsAfter.map(String.init) ?? "?") (start \(n.fdsAtStart.map(String.init) ?? "?"); \(n.fdsGained.joined(separator: ", "))), cpu \(n.cpuPercentAfter.map { Fmt.num($0, 1) + "%" } ?? "?") (start \(n.cpuPercentAtStart.map { Fmt.num($0, 1) + "%" } ?? "?")), readyz \(n.readyAtEnd.map(String.init) ?? "none"), \(n.alive ? "alive" : "DEAD")")
        }
        for c in r.checks { lines.append("check       \(c)") }
        lines.append("verdict     \(r.verdict)")
        print(lines.joined(separator: "\n"))
    }
}

extension ChaosResults {
    static func markdown(_ report: ChaosReport, chartFile: String?) -> String? { report.markdown(chartFile: chartFile) }
    static func chart(_ report: ChaosReport) -> (title: String, panels: [ChartPanel], events: [ChartEvent])? { report.chart() }
}

extension ScenarioReport where Results == ChaosResults {
    func markdown(chartFile: String?) -> String {
        var out = "# Chaos: \(self.faults.count) faults during a \(self.peak.parameters.durationSeconds) s holiday peak, \(Fmt.int(self.peak.parameters.browsers)) browsers, \(self.peak.parameters.nodes) nodes\n\n"
        out += "**Verdict:** \(verdict)\n\n"
        out += checks.map { "- \($0.hasPrefix("ok") ? "✅" : "❌") " + $0.dropFirst(8) }.joined(separator: "\n") + "\n\n"
        if let chartFile { out += "![latency, throughput and browsers online, faults marked](\(chartFile))\n\n" }
        out += "## Fault timeline\n\nSeconds from the start of the peak; healed = every node's `/readyz` 200 again.\n\n"
        out += MD.table(["at s", "fault", "what happened", "healed after s", "error"], self.faults.map {
            [Fmt.num($0.atSeconds, 1), "`\($0.fault)`", $0.detail, $0.healedAfterSeconds.map { Fmt.num($0, 2) } ?? "never", $0.error ?? ""]
        }, rightAlignFrom: 9) + "\n"
        if !self.httpRetries.isEmpty {
            out += "HTTP calls retried while a node or Redis was away: " + self.httpRetries.sorted { $0.value > $1.value }.prefix(8).map { "\($0.value) × \($0.key)" }.joined(separator: "; ") + ".\n\n"
        }
        out += "## Timers\n\nUnpaid orders (orders.ttl_s \(parameters.orderTtlSeconds)) created before the faults and after each: each must read `canceled` within \(Fmt.num(parameters.timerSlackSeconds, 0)) s of its `expires_at`.\n\n"
        var byBatch: [String: (Int, Int, Double)] = [:]
        for p in self.timers.list {
            var e = byBatch[p.batch] ?? (0, 0, 0)
            e.0 += 1
            if p.status == "canceled" { e.1 += 1 }
            e.2 = max(e.2, p.canceledLateBySeconds ?? .infinity)
            byBatch[p.batch] = e
        }
        out += MD.table(["batch", "probes", "canceled", "worst s after expires_at"], byBatch.sorted { $0.key < $1.key }.map {
            [$0.key, "\($0.value.0)", "\($0.value.1)", $0.value.2.isFinite ? Fmt.num($0.value.2, 1) : "never"]
        }) + "\n"
        if !self.timers.perNode.isEmpty {
            out += "After the faults and with every client gone, each node alone (the others stopped with SIGSTOP), so one wedged timer sweeper is not hidden by the others:\n\n"
            out += MD.table(["node", "probes", "canceled on time", "worst s after expires_at", "statuses"], self.timers.perNode.map {
                [$0.node, "\($0.probes)", "\($0.onTime)", $0.worstLatenessSeconds.map { Fmt.num($0, 1) } ?? "never", $0.statuses.joined(separator: ", ")]
            }) + "\n"
        }
        out += "## Idle after\n\nEvery client closed; descriptors (`/proc/<pid>/fd`) against the count right after start, CPU (`/proc/<pid>/stat`) over 3 s.\n\n"
        out += MD.table(["node", "pid", "fds at start", "fds after", "changed", "CPU % at start", "CPU % after", "alive"], self.idle.map {
            [$0.name, "\($0.pid ?? 0)", $0.fdsAtStart.map(String.init) ?? "?", $0.fdsAfter.map(String.init) ?? "?", $0.fdsGained.joined(separator: ", "),
             $0.cpuPercentAtStart.map { Fmt.num($0, 1) } ?? "?", $0.cpuPercentAfter.map { Fmt.num($0, 1) } ?? "?", $0.alive ? "yes" : "**no**"]
        }, rightAlignFrom: 9) + "\n"
        out += "## Keys\n\n" + MD.table(["product", "uploaded", "in stock after", "in orders read back", "held by paid gifts not claimed"], self.keys.map {
            ["`\($0.product)`", "\($0.uploaded)", $0.stockAfter.map(String.init) ?? "?", "\($0.inOrdersReadBack)", "\($0.heldByUnclaimedGifts)"]
        }) + "\n"
        // The holiday peak's own page, one heading level down, without its run section (below).
        let inner = self.peak.markdown(chartFile: nil).split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("#") ? "#" + $0 : String($0) }
        let cut = inner.firstIndex { $0.hasPrefix("### Run") } ?? inner.count
        out += inner[..<cut].joined(separator: "\n") + "\n"
        out += MD.runSection(run)
        return out
    }

    func chart() -> (title: String, panels: [ChartPanel], events: [ChartEvent])? {
        guard let c = self.peak.chart() else { return nil }
        return ("loadtest chaos: \(self.faults.count) faults, \(Fmt.int(self.peak.parameters.browsers)) browsers, \(self.peak.parameters.nodes) nodes", c.panels, c.events)
    }
}
