import Foundation

/// Sums of every probe child's latest report.
struct ProbeTotals {
    var attempted = 0, connected = 0, failed = 0, dropped = 0, settling = 0, online = 0
    var watched = 0, watchFailed = 0, closedOffline = 0
    var gaps = 0, repeats = 0, unexpected = 0
    var alerts = 0, alerted = 0, alertDuplicates = 0, alertWrong = 0
    var firstAlertMicros: Int64?
    var lastAlertMicros: Int64?
    var pushes: [String: Int] = [:]
    var failures: [String: Int] = [:]
    var drops: [String: Int] = [:]
    var rssBytes = 0
    var reporting = 0
}

/// The parent's side of the probe children: starts them with `<scenario> --probe-worker`,
/// reads their reports, hands receipts to `onReceipts` and merges alert latencies.
final class ProbePool {
    private final class Slot {
        let spec: ProbeSpec
        let process: ChildProcess
        var latest: ProbeStatus?
        var final: ProbeStatus?
        var ended = false
        init(spec: ProbeSpec, process: ChildProcess) {
            self.spec = spec
            self.process = process
        }
    }

    private let lock = NSLock()
    private var slots: [Slot] = []
    private var interval = Latency()
    private(set) var total = Latency()
    /// Called on a reader thread with each batch of `order.status` receipts.
    private let onReceipts: ([ProbeReceipt]) -> Void

    init(scenario: String, specs: [ProbeSpec], logDir: String, onReceipts: @escaping ([ProbeReceipt]) -> Void = { _ in }) throws {
        self.onReceipts = onReceipts
        for spec in specs {
            let process = try ChildProcess.spawn(Machine.executablePath, [scenario, "--probe-worker"], name: "probe \(spec.index)",
                                                 kind: .worker, stdinPipe: true, stdout: .pipe,
                                                 stderr: .file("\(logDir)/probe-\(spec.index).log"))
            let slot = Slot(spec: spec, process: process)
            slots.append(slot)
            let line = String(decoding: try JSONEncoder().encode(spec), as: UTF8.self)
            guard process.writeLine(line) else { throw SpawnError("probe \(spec.index) did not take its spec") }
            let reader = Thread { [weak self] in self?.read(slot) }
            reader.name = "probe-\(spec.index)-reader"
            reader.start()
        }
    }

    private func read(_ slot: Slot) {
        var reader = LineReader(fd: slot.process.stdoutFD)
        let decoder = JSONDecoder()
        while let line = reader.next() {
            guard let status = try? decoder.decode(ProbeStatus.self, from: Data(line)) else { continue }
            if let r = status.receipts { onReceipts(r) }
            lock.withLock {
                if let s = status.alertLatency {
                    interval.add(s)
                    total.add(s)
                }
                slot.latest = status
                if status.final { slot.final = status }
            }
        }
        lock.withLock { slot.ended = true }
    }

    var pids: [pid_t] { slots.map { $0.process.pid } }

    func totals() -> ProbeTotals {
        lock.withLock {
            var t = ProbeTotals()
            for s in slots.compactMap({ $0.final ?? $0.latest }) {
                t.reporting += 1
                t.attempted += s.attempted
                t.connected += s.connected
                t.failed += s.failed
                t.dropped += s.dropped
                t.settling += s.settling
                t.online += s.online
                t.watched += s.watched
                t.watchFailed += s.watchFailed
                t.closedOffline += s.closedOffline
                t.gaps += s.gaps
                t.repeats += s.repeats
                t.unexpected += s.unexpected
                t.alerts += s.alerts
                t.alerted += s.alerted
                t.alertDuplicates += s.alertDuplicates
                t.alertWrong += s.alertWrong
                t.firstAlertMicros = [t.firstAlertMicros, s.firstAlertMicros].compactMap { $0 }.min()
                t.lastAlertMicros = [t.lastAlertMicros, s.lastAlertMicros].compactMap { $0 }.max()
                for (k, v) in s.pushes { t.pushes[k, default: 0] += v }
                for (k, v) in s.failures { t.failures[k, default: 0] += v }
                for (k, v) in s.drops { t.drops[k, default: 0] += v }
                t.rssBytes += s.rssBytes
            }
            return t
        }
    }

    /// True once every child has opened all its users and none is mid set-up.
    func settled() -> Bool {
        lock.withLock {
            slots.allSatisfy { s in
                guard let l = s.latest else { return false }
                return l.attempted == s.spec.count && l.settling == 0
            }
        }
    }

    /// Alert latency recorded since the previous call.
    func takeInterval() -> Latency {
        lock.withLock {
            defer { interval = Latency() }
            return interval
        }
    }

    /// Tells every child when the PATCH went out and the price it set.
    func announce(t0: Int64, price: Int64) {
        for s in slots { s.process.writeLine("t0 \(t0) \(price)") }
    }

    var allEnded: Bool { lock.withLock { slots.allSatisfy { $0.ended } } }

    func crashed() -> [String] {
        lock.withLock {
            slots.filter { $0.ended && $0.final == nil }.map {
                "probe \($0.spec.index) exited (\($0.process.poll().map(String.init) ?? "?")): \($0.process.logTail(lines: 3))"
            }
        }
    }

    /// Asks for final reports and waits for them (bounded).
    func finish(timeout: Double = 15) {
        for s in slots { s.process.writeLine("finish") }
        let deadline = Clock.now() + timeout
        while Clock.now() < deadline {
            if lock.withLock({ slots.allSatisfy { $0.final != nil || $0.ended } }) { return }
            usleep(20_000)
        }
    }

    func stop() {
        for s in slots {
            s.process.writeLine("exit")
            s.process.closeStdin()
        }
        for s in slots where s.process.waitExit(timeout: 5) == nil { s.process.stop(grace: 2) }
    }
}
