import Foundation

/// A `redis-server` this process owns, so that one command runs everything on one
/// machine: AOF on, data under a local folder, restarted if it dies, stopped on exit.
public final class PrivateRedis: @unchecked Sendable {
    public let port: Int
    public let dataDir: String
    private let lock = NSLock()
    private var process: Process?
    private var stopping = false

    public init(dataDir: String, port: Int? = nil) throws {
        self.dataDir = URL(fileURLWithPath: dataDir).standardizedFileURL.path
        self.port = try port ?? PrivateRedis.freePort()
    }

    public static func serverPath() -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/usr/sbin").split(separator: ":") + ["/usr/bin", "/usr/sbin"] {
            let path = "\(dir)/redis-server"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    /// Starts the server and waits until it answers PING.
    public func start() throws {
        guard let path = Self.serverPath() else {
            throw RedisStartError("redis-server not found: install it (apt-get install redis-server) or pass --redis redis://host:port")
        }
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        try launch(path)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if PrivateRedis.ping(port: port) { return }
            usleep(50_000)
        }
        throw RedisStartError("redis-server did not answer on port \(port) within 10 s; see \(dataDir)/redis.log")
    }

    private func launch(_ path: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--dir", dataDir, "--appendonly", "yes",
                       "--save", "", "--logfile", "\(dataDir)/redis.log", "--daemonize", "no",
                       "--protected-mode", "yes"]
        p.terminationHandler = { [weak self] _ in self?.exited(path) }
        try p.run()
        lock.withLock { process = p }
    }

    private func exited(_ path: String) {
        // Ctrl-C reaches redis-server too (same process group): do not bring it back
        // while the node is shutting down.
        let again = lock.withLock { !stopping } && !Node.terminateRequested
        guard again else { return }
        FileHandle.standardError.write(Data("private redis-server exited; restarting in 1 s\n".utf8))
        Thread.sleep(forTimeInterval: 1)
        try? launch(path)
    }

    public func stop() {
        let p: Process? = lock.withLock {
            stopping = true
            return process
        }
        guard let p, p.isRunning else { return }
        p.terminate()
        p.waitUntilExit()
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RedisStartError("socket() failed") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard ok else { throw RedisStartError("could not find a free port") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// A blocking PING over a plain socket: used only at start-up.
    static func ping(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else { return false }
        let ping = Array("PING\r\n".utf8)
        guard write(fd, ping, ping.count) == ping.count else { return false }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = read(fd, &buf, buf.count)
        return n > 0 && String(decoding: buf[..<n], as: UTF8.self).hasPrefix("+PONG")
    }
}

public struct RedisStartError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}
