import CProcess
import Foundation
import GatewayNode
// One redis-server launcher kit with the tests and the load tester: binary, free port, PING.
import GatewayTestSupport
import Logging

/// A `redis-server` this process owns, so that one command runs everything on one
/// machine: AOF fsynced on every write, data under a local folder, restarted if it dies.
///
/// It is the shop's only store of orders and card keys, so two rules hold whatever happens:
/// - it never outlives its gateway: the child is tied to the gateway with PR_SET_PDEATHSIG,
///   so a `kill -9`, the OOM killer or a trap takes it down too (SIGTERM: it flushes and exits);
/// - one data folder never has two servers: the gateway holds an exclusive `flock` on
///   `<data>/.lock` for its whole life, and before starting it shuts down any `redis-server`
///   still serving the folder (an orphan from a system without PDEATHSIG, or one started by hand).
public final class PrivateRedis: @unchecked Sendable {
    public let port: Int
    public let dataDir: String
    private let folderLock: DataFolderLock
    private let lock = NSLock()
    private var child: pid_t = 0
    private var stopping = false
    private var supervisor: Thread?
    private let supervisorDone = DispatchSemaphore(value: 0)

    /// Takes the data folder: throws if another live gateway holds it.
    public init(dataDir: String, port: Int? = nil) throws {
        self.dataDir = URL(fileURLWithPath: dataDir).standardizedFileURL.path
        try FileManager.default.createDirectory(atPath: self.dataDir, withIntermediateDirectories: true)
        folderLock = try DataFolderLock(folder: self.dataDir)
        do { self.port = try port ?? findFreePort() } catch {
            throw RedisStartError("no port for the private redis-server: \(error)")
        }
    }

    public var pidFile: String { "\(dataDir)/redis.pid" }

    /// Shuts down servers left on the folder, starts ours and waits until it answers PING.
    public func start() throws {
        guard let path = try? RedisServer.binary() else {
            throw RedisStartError("redis-server not found: install it (apt-get install redis-server) or pass --redis redis://host:port")
        }
        for orphan in Self.serversOn(dataDir, pidFile: pidFile) {
            log("a redis-server (pid \(orphan)) still serves \(dataDir), left by an earlier run: shutting it down (SIGTERM flushes its AOF)")
            guard Self.terminate(orphan) else {
                throw RedisStartError("redis-server pid \(orphan) still serves \(dataDir) and would not stop; stop it by hand before starting the gateway")
            }
        }
        let arguments = [path, "--port", String(port), "--bind", "127.0.0.1", "--dir", dataDir,
                         "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                         "--pidfile", pidFile, "--logfile", "\(dataDir)/redis.log", "--daemonize", "no",
                         "--protected-mode", "yes", "--maxmemory-policy", "noeviction"]
        let thread = Thread { [self] in supervise(arguments) }
        thread.name = "private-redis"
        supervisor = thread
        thread.start()
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if redisPing(port) { return }
            usleep(50_000)
        }
        stop()
        throw RedisStartError("redis-server did not answer on port \(port) within 15 s; its log ends:\n\(logTail())")
    }

    /// Runs on its own thread for as long as the server should live: PDEATHSIG is tied to
    /// the thread that forked, so this thread forks, waits and restarts.
    private func supervise(_ arguments: [String]) {
        defer { supervisorDone.signal() }
        while true {
            let pid = Self.spawn(arguments)
            let keepGoing: Bool = lock.withLock {
                child = pid > 0 ? pid : 0
                return !stopping
            }
            if pid <= 0 {
                log("could not start redis-server: \(String(cString: strerror(errno)))")
            } else if !keepGoing {
                kill(pid, SIGTERM)
            }
            if pid > 0 {
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            }
            let again: Bool = lock.withLock {
                child = 0
                return !stopping
            }
            guard again, !Node.terminateRequested else { return }
            log("private redis-server exited; restarting in 1 s")
            Thread.sleep(forTimeInterval: 1)
        }
    }

    private static func spawn(_ arguments: [String]) -> pid_t {
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        return gw_spawn_tied(arguments[0], &argv, SIGTERM)
    }

    /// SIGTERM makes Redis fsync its AOF and exit; the lock goes once it is gone.
    public func stop() {
        let pid: pid_t = lock.withLock {
            stopping = true
            return child
        }
        if pid > 0 { kill(pid, SIGTERM) }
        if supervisor != nil {
            if supervisorDone.wait(timeout: .now() + 30) == .timedOut, pid > 0 { kill(pid, SIGKILL) }
            supervisor = nil
        }
        folderLock.release()
    }

    private func logTail() -> String {
        guard let text = try? String(contentsOfFile: "\(dataDir)/redis.log", encoding: .utf8) else { return "(no redis.log)" }
        return text.split(separator: "\n").suffix(5).joined(separator: "\n")
    }

    private func log(_ message: String) {
        Self.logger.notice("\(message)")
    }

    /// Runs before any node exists: the process logger, JSON lines once the CLI bootstrapped it.
    private static let logger = Logger(label: "private-redis")

    // MARK: Servers already on the folder

    /// Every live `redis-server` whose working folder is `dir` (Redis chdirs to `--dir`), plus the
    /// one named by its pidfile: an orphan started without a pidfile is found all the same.
    static func serversOn(_ dir: String, pidFile: String) -> [pid_t] {
        var found: Set<pid_t> = []
        if let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)),
           isLiveRedis(pid) {
            found.insert(pid)
        }
        let resolved = URL(fileURLWithPath: dir).resolvingSymlinksInPath().path
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry), pid != getpid(), isLiveRedis(pid),
                  let cwd = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd") else { continue }
            if cwd == resolved || cwd == dir { found.insert(pid) }
        }
        return found.sorted()
    }

    /// Alive (not a zombie) and a redis-server.
    static func isLiveRedis(_ pid: pid_t) -> Bool {
        guard pid > 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return false }
        let name = stat[stat.index(after: open)..<close]
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        return name.hasPrefix("redis-server") && state != "Z" && state != "X"
    }

    /// SIGTERM, up to 15 s for the AOF to flush, then SIGKILL. True once it is gone.
    static func terminate(_ pid: pid_t) -> Bool {
        kill(pid, SIGTERM)
        for attempt in 0..<200 {
            if !isLiveRedis(pid) { return true }
            if attempt == 150 { kill(pid, SIGKILL) }
            usleep(100_000)
        }
        return !isLiveRedis(pid)
    }
}

/// An exclusive `flock` on `<folder>/.lock` held for the gateway's life. The file names the
/// holder's pid, so a second gateway can say who has the folder. The kernel drops the lock
/// when the holder dies, however it dies, so a stale file never blocks a restart.
final class DataFolderLock: @unchecked Sendable {
    private var fd: Int32

    init(folder: String) throws {
        let path = "\(folder)/.lock"
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw RedisStartError("cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var buf = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buf, buf.count, 0)
            let holder = n > 0 ? String(decoding: buf[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "unknown"
            close(fd)
            fd = -1
            throw RedisStartError("""
                the data folder \(folder) is in use by another gateway (pid \(holder)), which runs its private redis-server. \
                Only one gateway may own a data folder. To run several nodes, share one Redis: pass --redis redis://host:port \
                (the first gateway prints its private Redis address) or give this one its own redis.data_dir.
                """)
        }
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, text, text.count, 0)
    }

    func release() {
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
    }

    deinit { release() }
}

public struct RedisStartError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}
