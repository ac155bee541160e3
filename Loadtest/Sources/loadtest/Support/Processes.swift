import Foundation

struct SpawnError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Every child still running, so Ctrl-C and error paths can stop them all.
enum Children {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var live: [pid_t: ChildProcess] = [:]

    static func add(_ child: ChildProcess) { lock.withLock { live[child.pid] = child } }
    static func remove(_ pid: pid_t) { _ = lock.withLock { live.removeValue(forKey: pid) } }
    static var all: [ChildProcess] { lock.withLock { Array(live.values) } }

    /// Scratch folders (Redis data) removed on Ctrl-C too.
    nonisolated(unsafe) private static var scratch: Set<String> = []
    static func addScratch(_ path: String) { _ = lock.withLock { scratch.insert(path) } }
    static func removeScratch(_ path: String) {
        _ = lock.withLock { scratch.remove(path) }
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Load generators first (they only hold sockets), then nodes, then Redis last so
    /// nodes can drain cleanly.
    static func stopAll(grace: Double = 5) {
        let children = all
        for group in [ChildProcess.Kind.worker, .node, .redis] {
            let members = children.filter { $0.kind == group }
            members.forEach { $0.signal(SIGTERM) }
            let deadline = Clock.now() + grace
            for child in members {
                while child.poll() == nil && Clock.now() < deadline { usleep(20_000) }
                if child.poll() == nil {
                    child.signal(SIGKILL)
                    _ = child.waitExit(timeout: 2)
                }
            }
        }
    }

    /// Ctrl-C or SIGTERM: stop every child, then exit. Children run in their own process
    /// groups, so the terminal's SIGINT reaches only us and we choose the order.
    static func installSignalCleanup() {
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                lock.withLock { stopping = true }
                FileHandle.standardError.write(Data("\ninterrupted: stopping \(all.count) child processes\n".utf8))
                stopAll(grace: 3)
                for path in lock.withLock({ scratch }) { try? FileManager.default.removeItem(atPath: path) }
                exit(130)
            }
            source.resume()
            sources.append(source)
        }
        signal(SIGPIPE, SIG_IGN)
    }

    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []
    nonisolated(unsafe) private static var stopping = false

    /// After Ctrl-C the main thread must not go on to report what the cleanup broke:
    /// it waits here for the signal handler's exit.
    static func haltIfInterrupted() {
        while lock.withLock({ stopping }) { sleep(1) }
    }
}

/// A child started with posix_spawn in its own process group.
final class ChildProcess {
    enum Kind { case redis, node, worker, other }
    enum Output { case pipe, file(String), null }

    let pid: pid_t
    let name: String
    let kind: Kind
    let logPath: String?
    /// Our end of its stdin (-1 when it has none).
    private(set) var stdinFD: Int32
    /// Our end of its stdout (-1 unless `.pipe`).
    let stdoutFD: Int32
    private let lock = NSLock()
    private var exitStatus: Int32?

    private init(pid: pid_t, name: String, kind: Kind, logPath: String?, stdinFD: Int32, stdoutFD: Int32) {
        self.pid = pid
        self.name = name
        self.kind = kind
        self.logPath = logPath
        self.stdinFD = stdinFD
        self.stdoutFD = stdoutFD
    }

    /// glibc 2.34+ has `posix_spawn_file_actions_addclosefrom_np`, which Swift's Glibc module
    /// does not import: found at run time; without it every descriptor of ours is marked
    /// close-on-exec instead (racy only with descriptors opened meanwhile).
    private static func closeFrom3(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>) {
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np"),
           unsafeBitCast(symbol, to: CloseFrom.self)(actions, 3) == 0 {
            return
        }
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            if let fd = Int32(entry), fd > 2 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        }
    }

    static func spawn(_ path: String, _ args: [String], name: String, kind: Kind,
                      environment extra: [String: String] = [:], stdinPipe: Bool = false,
                      stdout: Output = .null, stderr: Output = .null) throws -> ChildProcess {
        var env = ProcessInfo.processInfo.environment
        for (k, v) in extra { env[k] = v }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var toClose: [Int32] = []
        var inWrite: Int32 = -1, outRead: Int32 = -1

        if stdinPipe {
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else { throw SpawnError("pipe: \(String(cString: strerror(errno)))") }
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            posix_spawn_file_actions_adddup2(&actions, fds[0], 0)
            inWrite = fds[1]
            toClose.append(fds[0])
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        for (fd, output) in [(Int32(1), stdout), (Int32(2), stderr)] {
            switch output {
            case .pipe:
                var fds: [Int32] = [0, 0]
                guard pipe(&fds) == 0 else { throw SpawnError("pipe: \(String(cString: strerror(errno)))") }
                _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
                _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
                posix_spawn_file_actions_adddup2(&actions, fds[1], fd)
                outRead = fds[0]
                toClose.append(fds[1])
            case .file(let path):
                posix_spawn_file_actions_addopen(&actions, fd, path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            case .null:
                posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_WRONLY, 0)
            }
        }

        // Nothing but 0, 1 and 2: a child must never hold a copy of one of our client sockets
        // (a node restarted mid-run would keep the peer's connection half open).
        closeFrom3(&actions)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        posix_spawnattr_setpgroup(&attr, 0)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        // Ignored signals survive exec; children get the default actions back.
        for sig in [SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attr, &mask)

        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attr, argv, envp)
        toClose.forEach { close($0) }
        guard rc == 0 else {
            if inWrite >= 0 { close(inWrite) }
            if outRead >= 0 { close(outRead) }
            throw SpawnError("could not start \(path): \(String(cString: strerror(rc)))")
        }
        var log: String?
        if case .file(let p) = stderr { log = p }
        let child = ChildProcess(pid: pid, name: name, kind: kind, logPath: log, stdinFD: inWrite, stdoutFD: outRead)
        Children.add(child)
        return child
    }

    /// Exit status once it has exited (reaps it), nil while it runs.
    @discardableResult
    func poll() -> Int32? {
        lock.withLock {
            if let exitStatus { return exitStatus }
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || r < 0 {
                // Exit code, or 128 + signal like a shell.
                let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
                exitStatus = r < 0 ? -1 : code
                Children.remove(pid)
            }
            return exitStatus
        }
    }

    var isRunning: Bool { poll() == nil }

    /// Signals its whole process group, so children of a wrapper script go too. Linux
    /// does not reuse a pid while a group of that id exists, so this stays safe after
    /// the leader is reaped; the bare pid is signalled only while we know it is ours.
    func signal(_ sig: Int32) {
        lock.withLock {
            if kill(-pid, sig) != 0 && exitStatus == nil { _ = kill(pid, sig) }
        }
    }

    func waitExit(timeout: Double) -> Int32? {
        let deadline = Clock.now() + timeout
        while Clock.now() < deadline {
            if let s = poll() { return s }
            usleep(10_000)
        }
        return poll()
    }

    /// SIGTERM, then SIGKILL after `grace` seconds.
    @discardableResult
    func stop(grace: Double = 5) -> Int32? {
        closeStdin()
        signal(SIGTERM)
        var status = waitExit(timeout: grace)
        if status == nil {
            signal(SIGKILL)
            status = waitExit(timeout: 2)
        }
        // Whatever the leader left behind in its group (a wrapper's child).
        _ = kill(-pid, SIGKILL)
        return status
    }

    @discardableResult
    func writeLine(_ text: String) -> Bool {
        guard stdinFD >= 0 else { return false }
        let bytes = Array((text + "\n").utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { write(stdinFD, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    func closeStdin() {
        if stdinFD >= 0 {
            close(stdinFD)
            stdinFD = -1
        }
    }

    /// The last lines of its log, to explain an early exit.
    func logTail(lines: Int = 8) -> String {
        guard let logPath, let text = try? String(contentsOfFile: logPath, encoding: .utf8) else { return "" }
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }
}

/// Reads `\n`-terminated lines from a descriptor (a child's stdout pipe).
struct LineReader {
    let fd: Int32
    private var buffer: [UInt8] = []
    private var eof = false

    init(fd: Int32) { self.fd = fd }

    mutating func next() -> [UInt8]? {
        while true {
            if let nl = buffer.firstIndex(of: 0x0A) {
                let line = Array(buffer[..<nl])
                buffer.removeSubrange(...nl)
                return line
            }
            if eof { return nil }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                eof = true
                if buffer.isEmpty { return nil }
                defer { buffer = [] }
                return buffer
            }
            buffer.append(contentsOf: chunk[..<n])
        }
    }
}
