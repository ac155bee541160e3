import Foundation

/// A load-generator child's instructions: one JSON line on its stdin.
protocol ChildSpec: Codable, Sendable {
    var index: Int { get }
}

/// A load-generator child's report: one JSON line on its stdout, repeated, the last one `final`.
protocol ChildStatus: Codable, Sendable {
    var final: Bool { get }
}

/// The parent's side of load-generator children of one kind (`loadtest worker`, the probe
/// children): spawns `loadtest <arguments>` per spec, hands each its spec, reads its
/// status lines on a thread of its own, merges one latency histogram, finishes and reaps.
/// What the counters mean is the kind's business (`WorkerPool`, `ProbePool`).
final class ChildPool<Spec: ChildSpec, Status: ChildStatus>: @unchecked Sendable {
    /// One child's spec with its latest and final status.
    struct Child {
        let spec: Spec
        let latest: Status?
        let final: Status?
    }

    private final class Slot: @unchecked Sendable {
        let spec: Spec
        let process: ChildProcess
        var latest: Status?
        var final: Status?
        var ended = false
        init(spec: Spec, process: ChildProcess) {
            self.spec = spec
            self.process = process
        }
    }

    private let lock = NSLock()
    private var slots: [Slot] = []
    private var interval = Latency()
    private var merged = Latency()
    private let label: String
    private let latency: (Status) -> SparseHistogram?
    private let onStatus: (Status) -> Void

    /// - Parameters:
    ///   - label: names processes, reader threads and logs (`<label> <index>`, `<label>-<index>.log`).
    ///   - latency: the histogram of a status merged into `total` and `takeInterval()`.
    ///   - onStatus: called on the child's reader thread with every status, before it is stored.
    init(label: String, arguments: [String], specs: [Spec], logDir: String,
         latency: @escaping (Status) -> SparseHistogram?, onStatus: @escaping (Status) -> Void = { _ in }) throws {
        self.label = label
        self.latency = latency
        self.onStatus = onStatus
        for spec in specs {
            let process = try ChildProcess.spawn(Machine.executablePath, arguments, name: "\(label) \(spec.index)", kind: .worker,
                                                 stdinPipe: true, stdout: .pipe, stderr: .file("\(logDir)/\(label)-\(spec.index).log"))
            let slot = Slot(spec: spec, process: process)
            slots.append(slot)
            let line = String(decoding: try JSONEncoder().encode(spec), as: UTF8.self)
            guard process.writeLine(line) else { throw SpawnError("\(label) \(spec.index) did not take its spec") }
            let reader = Thread { [weak self] in self?.read(slot) }
            reader.name = "\(label)-\(spec.index)-reader"
            reader.start()
        }
    }

    private func read(_ slot: Slot) {
        var reader = LineReader(fd: slot.process.stdoutFD)
        let decoder = JSONDecoder()
        while let line = reader.next() {
            guard let status = try? decoder.decode(Status.self, from: Data(line)) else { continue }
            onStatus(status)
            lock.withLock {
                if let s = latency(status) {
                    interval.add(s)
                    merged.add(s)
                }
                slot.latest = status
                if status.final { slot.final = status }
            }
        }
        lock.withLock { slot.ended = true }
    }

    var count: Int { slots.count }

    var pids: [pid_t] { slots.map { $0.process.pid } }

    /// Every child's spec and statuses as of now.
    var children: [Child] { lock.withLock { slots.map { Child(spec: $0.spec, latest: $0.latest, final: $0.final) } } }

    /// Latency of the whole run so far.
    var total: Latency { lock.withLock { merged } }

    /// Latency recorded since the previous call.
    func takeInterval() -> Latency {
        lock.withLock {
            defer { interval = Latency() }
            return interval
        }
    }

    /// Sends one line to every child's stdin.
    func broadcast(_ line: String) {
        for s in slots { s.process.writeLine(line) }
    }

    var allEnded: Bool { lock.withLock { slots.allSatisfy { $0.ended } } }

    /// Children that ended without a final report, with the end of their logs.
    func crashed() -> [String] {
        lock.withLock {
            slots.filter { $0.ended && $0.final == nil }.map {
                "\(label) \($0.spec.index) exited (\($0.process.poll().map(String.init) ?? "?")): \($0.process.logTail(lines: 3))"
            }
        }
    }

    /// Asks for final reports and waits for them (bounded).
    func finish(timeout: Double = 15) {
        broadcast("finish")
        let deadline = Clock.now() + timeout
        while Clock.now() < deadline {
            if lock.withLock({ slots.allSatisfy { $0.final != nil || $0.ended } }) { return }
            usleep(20_000)
        }
    }

    /// Lets the children exit and reaps them.
    func stop() {
        for s in slots {
            s.process.writeLine("exit")
            s.process.closeStdin()
        }
        for s in slots where s.process.waitExit(timeout: 5) == nil { s.process.stop(grace: 2) }
    }
}

/// Sums of kind-specific counters, for the pools' `totals()`.
extension Dictionary where Value == Int {
    mutating func add(_ other: [Key: Int]) {
        for (k, v) in other { self[k, default: 0] += v }
    }
}

extension Optional where Wrapped == Int64 {
    /// The earlier (`min`) or later (`max`) of two optional moments.
    func earliest(_ other: Int64?) -> Int64? { [self, other].compactMap { $0 }.min() }
    func latest(_ other: Int64?) -> Int64? { [self, other].compactMap { $0 }.max() }
}
