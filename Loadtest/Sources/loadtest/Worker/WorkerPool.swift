import Foundation

/// Sums of every worker's latest report.
struct WorkerTotals {
    var attempted = 0, opened = 0, connected = 0, failed = 0, dropped = 0
    var subscribed = 0, subscribeFailed = 0
    var deliveries = 0, duplicates = 0, outOfOrder = 0, holesOpen = 0, unexpected = 0
    var connectedPerNode: [Int] = []
    var failures: [String: Int] = [:]
    var drops: [String: Int] = [:]
    var firstAttemptMicros: Int64?
    var lastConnectMicros: Int64?
    var firstDeliveryMicros: Int64?
    var lastDeliveryMicros: Int64?
    var rssBytes = 0
    var reporting = 0

    var inFlight: Int { attempted - connected - failed }
    var open: Int { connected - dropped }
}

/// The parent's side of the `loadtest worker` children: starts them, reads their
/// reports, merges latency histograms.
final class WorkerPool {
    private final class Slot {
        let spec: WorkerSpec
        let process: ChildProcess
        var latest: WorkerStatus?
        var final: WorkerStatus?
        var ended = false
        init(spec: WorkerSpec, process: ChildProcess) {
            self.spec = spec
            self.process = process
        }
    }

    private let lock = NSLock()
    private var slots: [Slot] = []
    private var interval = Latency()
    private(set) var total = Latency()
    private var connectLatency = Latency()

    init(specs: [WorkerSpec], logDir: String) throws {
        let exe = Machine.executablePath
        for spec in specs {
            let process = try ChildProcess.spawn(exe, ["worker"], name: "worker \(spec.index)", kind: .worker,
                                                 stdinPipe: true, stdout: .pipe,
                                                 stderr: .file("\(logDir)/worker-\(spec.index).log"))
            let slot = Slot(spec: spec, process: process)
            slots.append(slot)
            let line = String(decoding: try JSONEncoder().encode(spec), as: UTF8.self)
            guard process.writeLine(line) else { throw SpawnError("worker \(spec.index) did not take its spec") }
            let reader = Thread { [weak self] in self?.read(slot) }
            reader.name = "worker-\(spec.index)-reader"
            reader.start()
        }
    }

    private func read(_ slot: Slot) {
        var reader = LineReader(fd: slot.process.stdoutFD)
        let decoder = JSONDecoder()
        while let line = reader.next() {
            guard let status = try? decoder.decode(WorkerStatus.self, from: Data(line)) else { continue }
            lock.withLock {
                if let s = status.latency {
                    interval.add(s)
                    total.add(s)
                }
                if let c = status.connectLatency { connectLatency.add(c) }
                slot.latest = status
                if status.final { slot.final = status }
            }
        }
        lock.withLock { slot.ended = true }
    }

    var count: Int { slots.count }

    func totals() -> WorkerTotals {
        lock.withLock {
            var t = WorkerTotals()
            for s in slots.compactMap({ $0.latest }) {
                t.reporting += 1
                t.attempted += s.attempted
                t.opened += s.opened
                t.connected += s.connected
                t.failed += s.failed
                t.dropped += s.dropped
                t.subscribed += s.subscribed
                t.subscribeFailed += s.subscribeFailed
                t.deliveries += s.deliveries
                t.duplicates += s.duplicates
                t.outOfOrder += s.outOfOrder
                t.holesOpen += s.holesOpen
                t.unexpected += s.unexpected
                if t.connectedPerNode.count < s.connectedPerNode.count {
                    t.connectedPerNode += Array(repeating: 0, count: s.connectedPerNode.count - t.connectedPerNode.count)
                }
                for (i, n) in s.connectedPerNode.enumerated() { t.connectedPerNode[i] += n }
                for (k, v) in s.failures { t.failures[k, default: 0] += v }
                for (k, v) in s.drops { t.drops[k, default: 0] += v }
                t.firstAttemptMicros = [t.firstAttemptMicros, s.firstAttemptMicros].compactMap { $0 }.min()
                t.lastConnectMicros = [t.lastConnectMicros, s.lastConnectMicros].compactMap { $0 }.max()
                t.firstDeliveryMicros = [t.firstDeliveryMicros, s.firstDeliveryMicros].compactMap { $0 }.min()
                t.lastDeliveryMicros = [t.lastDeliveryMicros, s.lastDeliveryMicros].compactMap { $0 }.max()
                t.rssBytes += s.rssBytes
            }
            return t
        }
    }

    /// Per channel index: subscribers, highest-offset sums and holes over all workers;
    /// nil until every worker has settled.
    func channelTallies(channels: Int) -> [ChannelTally]? {
        lock.withLock {
            var t = (0..<channels).map { ChannelTally(channel: $0, subscribers: 0, contiguousSum: 0, holes: 0) }
            for slot in slots {
                guard let tallies = (slot.final ?? slot.latest)?.channels else { return nil }
                for c in tallies {
                    t[c.channel].subscribers += c.subscribers
                    t[c.channel].contiguousSum += c.contiguousSum
                    t[c.channel].holes += c.holes
                }
            }
            return t
        }
    }

    /// Latency recorded since the previous call.
    func takeInterval() -> Latency {
        lock.withLock {
            defer { interval = Latency() }
            return interval
        }
    }

    var connectLatencySummary: LatencySummary { lock.withLock { connectLatency.summary } }

    var pids: [pid_t] { slots.map { $0.process.pid } }

    /// Workers that ended without a final report, with the end of their logs.
    func crashed() -> [String] {
        lock.withLock {
            slots.filter { $0.ended && $0.final == nil }.map {
                "worker \($0.spec.index) exited (\($0.process.poll().map(String.init) ?? "?")): \($0.process.logTail(lines: 3))"
            }
        }
    }

    var allEnded: Bool { lock.withLock { slots.allSatisfy { $0.ended } } }

    /// Asks for final reports and waits for them (bounded).
    func finish(timeout: Double = 15) {
        for s in slots { s.process.writeLine("finish") }
        let deadline = Clock.now() + timeout
        while Clock.now() < deadline {
            if lock.withLock({ slots.allSatisfy { $0.final != nil || $0.ended } }) { return }
            usleep(20_000)
        }
    }

    /// Lets the workers exit and reaps them.
    func stop() {
        for s in slots {
            s.process.writeLine("exit")
            s.process.closeStdin()
        }
        for s in slots where s.process.waitExit(timeout: 5) == nil { s.process.stop(grace: 2) }
    }
}
