import Foundation

/// A real redis-server on a port of its own with its own data folder, tied to this process
/// (`TiedProcess`): the one Redis launcher of the tests, the cluster launcher and the load tester.
/// Durable by default (AOF, `appendfsync always`), so a SIGKILL loses nothing acknowledged.
/// Shared with fault threads: the process under `lock`; `auth` and `removesFolder` are set
/// before it is shared (hence unchecked Sendable).
public final class RedisServer: @unchecked Sendable {
    public let port: Int
    public let dir: URL
    /// Every argument after the binary, so `start()` brings it back alike (same port, same AOF).
    public let arguments: [String]
    public let logURL: URL
    /// redis-cli arguments that authenticate (for servers with a password).
    public var auth: [String]
    /// False: the data folder stays after `deinit` (the caller owns it).
    public var removesFolder: Bool
    public var socketPath: String { dir.appendingPathComponent("redis.sock").path }
    private let lock = NSLock()
    private var child: TiedProcess?

    public var pid: pid_t? { lock.withLock { child?.isRunning == true ? child?.pid : nil } }
    public var isRunning: Bool { pid != nil }

    /// - Parameters:
    ///   - debug: `DEBUG` from loopback and a unix socket at `socketPath` (link fault tests).
    ///   - extra: more arguments, after (and so overriding) the defaults.
    ///   - start: false to start it later (`start()`, or `spawn()` + `waitReady()` for several at once).
    public init(port: Int? = nil, dir: URL? = nil, appendOnly: Bool = true, fsyncAlways: Bool = true, debug: Bool = false,
                extra: [String] = [], auth: [String] = [], logURL: URL? = nil, start: Bool = true) throws {
        self.port = port ?? freePort()
        let dir = dir ?? URL(fileURLWithPath: "/tmp").appendingPathComponent("gw-redis-\(UUID().uuidString.prefix(8))")
        self.dir = dir
        removesFolder = true
        self.auth = auth
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let log = logURL ?? dir.appendingPathComponent("redis.log")
        self.logURL = log
        var args = ["--port", String(self.port), "--bind", "127.0.0.1", "--dir", dir.path, "--save", "",
                    "--appendonly", appendOnly ? "yes" : "no", "--appendfsync", fsyncAlways ? "always" : "everysec",
                    "--logfile", log.path, "--daemonize", "no"]
        if debug {
            args += ["--enable-debug-command", "local", "--unixsocket", dir.appendingPathComponent("redis.sock").path,
                     "--unixsocketperm", "700"]
        }
        arguments = args + extra
        if start { try self.start() }
    }

    /// The redis-server binary: PATH first, then the Debian place.
    public static func binary(_ name: String = "redis-server") throws -> String {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/usr/bin", "/usr/local/bin"]
        guard let path = dirs.map({ "\($0)/\(name)" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw TestError("\(name) not found in PATH: install it (apt-get install redis-server)")
        }
        return path
    }

    /// Starts it (again, on the same port and folder: it loads its AOF) and waits until it serves.
    public func start(timeout: Double = 10) throws {
        let before = readyLines()
        try spawn()
        try waitReady(after: before, timeout: timeout)
    }

    /// Starts the process without waiting (see `waitReady`).
    public func spawn() throws {
        let process = try TiedProcess.spawn(try Self.binary(), arguments)
        lock.withLock { child = process }
    }

    /// "Ready to accept connections" lines in its log so far (a password-protected server answers no PING).
    public func readyLines() -> Int {
        ((try? String(contentsOf: logURL, encoding: .utf8)) ?? "").components(separatedBy: "Ready to accept connections").count - 1
    }

    /// Waits for a new "Ready to accept connections" in its log; fails early if the process exited.
    public func waitReady(after before: Int = 0, timeout: Double = 10) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if readyLines() > before { return }
            if let process = lock.withLock({ child }), let status = process.poll() {
                throw TestError("redis-server on \(port) exited with \(status) at start: \(logTail())")
            }
            usleep(20_000)
        }
        throw TestError("redis-server on \(port) not ready within \(timeout) s: \(logTail())")
    }

    /// Kills the server hard (as a crash would) and waits for it to be gone.
    public func kill() {
        lock.withLock { child }?.crash()
    }

    /// SIGTERM (Redis fsyncs its AOF and exits), SIGKILL after `grace` seconds.
    public func stop(grace: Double = 10) {
        lock.withLock { child }?.stop(grace: grace)
    }

    /// Waits for an exit someone else caused (SHUTDOWN); false if it still runs.
    @discardableResult
    public func waitExited(timeout: Double = 10) -> Bool {
        guard let process = lock.withLock({ child }) else { return true }
        return process.waitExit(timeout: timeout) != nil
    }

    /// `redis-cli` against this server; `input` is fed on stdin (one command a line).
    @discardableResult
    public func cli(_ args: [String], input: String? = nil, db: Int = 0) -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: (try? Self.binary("redis-cli")) ?? "/usr/bin/redis-cli")
        p.arguments = ["-p", String(port), "-n", String(db), "--no-auth-warning"] + auth + args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        let inPipe = Pipe()
        p.standardInput = inPipe
        guard (try? p.run()) != nil else { return "" }
        if let input { inPipe.fileHandleForWriting.write(Data(input.utf8)) }
        try? inPipe.fileHandleForWriting.close()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// One command on a fresh connection (no AUTH).
    public func call(_ args: [String], timeout: Double = 5) throws -> RESP {
        try RedisProbe.call(port: port, args, timeout: timeout)
    }

    public func logTail(lines: Int = 5) -> String {
        ((try? String(contentsOf: logURL, encoding: .utf8)) ?? "").split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    deinit {
        stop()
        if removesFolder { try? FileManager.default.removeItem(at: dir) }
    }
}
