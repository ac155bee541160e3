import CProcess
import Foundation

/// A server process (redis-server) that can never outlive the process that started it:
/// `gw_spawn_tied` sets PR_SET_PDEATHSIG, so a test run or load test that dies (SIGKILL, a
/// trap, a timeout) takes its servers along instead of leaving them on their ports.
///
/// PDEATHSIG fires when the *thread* that forked exits, so every fork happens on one thread
/// that lives as long as the process (a test or a fault thread may end any time).
public final class TiedProcess: @unchecked Sendable {   // its exit status is under `lock`
    public let pid: pid_t
    private let lock = NSLock()
    private var exitStatus: Int32?

    private init(pid: pid_t) { self.pid = pid }

    /// Starts `path` with `arguments`; stdin is /dev/null, stdout and stderr are ours.
    public static func spawn(_ path: String, _ arguments: [String]) throws -> TiedProcess {
        let (pid, error) = Spawner.shared.run {
            var argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
            defer { argv.forEach { free($0) } }
            let pid = gw_spawn_tied(path, &argv, SIGKILL)
            return (pid, errno)
        }
        guard pid > 0 else { throw TestError("could not start \(path): \(String(cString: strerror(error)))") }
        return TiedProcess(pid: pid)
    }

    /// Exit status once it has exited (reaps it), nil while it runs.
    @discardableResult
    public func poll() -> Int32? {
        lock.withLock {
            if let exitStatus { return exitStatus }
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || r < 0 {
                exitStatus = r < 0 ? -1 : ((status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f))
            }
            return exitStatus
        }
    }

    public var isRunning: Bool { poll() == nil }

    public func signal(_ sig: Int32) {
        lock.withLock { if exitStatus == nil { _ = kill(pid, sig) } }
    }

    /// Waits up to `timeout` seconds for the exit; nil if it still runs.
    @discardableResult
    public func waitExit(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let s = poll() { return s }
            usleep(10_000)
        }
        return poll()
    }

    /// SIGTERM, then SIGKILL after `grace` seconds; returns once it is reaped.
    public func stop(grace: Double = 10) {
        signal(SIGTERM)
        if waitExit(timeout: grace) == nil {
            signal(SIGKILL)
            while waitExit(timeout: 5) == nil { signal(SIGKILL) }
        }
    }

    /// SIGKILL (a crash) and reap.
    public func crash() {
        signal(SIGKILL)
        while waitExit(timeout: 5) == nil { signal(SIGKILL) }
    }

    /// The one thread that forks, for as long as the process lives.
    private final class Spawner: @unchecked Sendable {
        static let shared = Spawner()
        private let condition = NSCondition()
        private var jobs: [() -> Void] = []

        private init() {
            let thread = Thread { [unowned self] in self.loop() }
            thread.name = "tied-spawner"
            thread.start()
        }

        private func loop() {
            while true {
                condition.lock()
                while jobs.isEmpty { condition.wait() }
                let job = jobs.removeFirst()
                condition.unlock()
                job()
            }
        }

        func run<T>(_ work: @escaping () -> T) -> T {
            var result: T?
            let done = DispatchSemaphore(value: 0)
            condition.lock()
            jobs.append {
                result = work()
                done.signal()
            }
            condition.signal()
            condition.unlock()
            done.wait()
            return result!
        }
    }
}
