import Foundation

/// What this machine allows, read from /proc, so a report can tell a machine limit
/// from a gateway limit.
enum Machine {
    static var cores: Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    /// A /proc file read whole. Foundation's `String(contentsOfFile:)` stops at the first
    /// 4 KiB of a procfs file (its size reads as 0), which cut `/proc/net/tcp` short on any
    /// busy machine: read(2) until end of file instead.
    static func procText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return n == 0 ? String(decoding: out, as: UTF8.self) : nil }
            out += buf[..<n]
        }
    }

    static func fdLimit() -> (soft: Int, hard: Int) {
        var rl = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        return (Int(clamping: rl.rlim_cur), Int(clamping: rl.rlim_max))
    }

    /// Local ports the kernel hands out per source address.
    static func portRange() -> (low: Int, high: Int) {
        let text = Machine.procText("/proc/sys/net/ipv4/ip_local_port_range") ?? ""
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
        return parts.count == 2 ? (parts[0], parts[1]) : (32768, 60999)
    }

    static var portsPerAddress: Int {
        let r = portRange()
        return r.high - r.low + 1
    }

    static func memInfo() -> (total: Int, available: Int) {
        var total = 0, available = 0
        let text = Machine.procText("/proc/meminfo") ?? ""
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 2, let kb = Int(f[1]) else { continue }
            if f[0] == "MemTotal:" { total = kb * 1024 }
            if f[0] == "MemAvailable:" { available = kb * 1024 }
        }
        return (total, available)
    }

    /// Resident set size, bytes (VmRSS).
    static func rss(_ pid: pid_t) -> Int? {
        guard let text = Machine.procText("/proc/\(pid)/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count >= 2, let kb = Int(f[1]) { return kb * 1024 }
        }
        return nil
    }

    /// utime + stime in clock ticks.
    static func cpuTicks(_ pid: pid_t) -> Int? {
        guard let text = Machine.procText("/proc/\(pid)/stat"),
              let close = text.lastIndex(of: ")") else { return nil }
        // Fields after the command name; utime and stime are fields 14 and 15.
        let f = text[text.index(after: close)...].split(separator: " ")
        guard f.count > 12, let u = Int(f[11]), let s = Int(f[12]) else { return nil }
        return u + s
    }

    /// Busy (non-idle, non-iowait) ticks of the whole machine, all cores.
    static func busyTicks() -> Int? {
        guard let text = Machine.procText("/proc/stat"),
              let line = text.split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
        let f = line.split(separator: " ").dropFirst().compactMap { Int($0) }
        guard f.count >= 5 else { return nil }
        return f.reduce(0, +) - f[3] - f[4]
    }

    static func loadAverage() -> String {
        (Machine.procText("/proc/loadavg") ?? "").split(separator: " ").prefix(3).joined(separator: " ")
    }

    static func openFiles(_ pid: pid_t) -> Int? {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count
    }

    /// Soft "Max open files" of another process.
    static func fdLimit(of pid: pid_t) -> Int? {
        guard let text = Machine.procText("/proc/\(pid)/limits") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("Max open files") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count >= 4 { return Int(f[3]) }
        }
        return nil
    }

    static func conntrack() -> (count: Int, max: Int)? {
        guard let m = Machine.procText("/proc/sys/net/netfilter/nf_conntrack_max"),
              let max = Int(m.trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        let c = (Machine.procText("/proc/sys/net/netfilter/nf_conntrack_count"))
            .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        return (c, max)
    }

    /// TCP sockets (any state, TIME_WAIT included) per local IPv4 address, from
    /// /proc/net/tcp: a source address with many of them has fewer free ports.
    static func socketsPerLocalAddress() -> [String: Int] {
        guard let text = Machine.procText("/proc/net/tcp") else { return [:] }
        var counts: [String: Int] = [:]
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count > 2, let colon = f[1].firstIndex(of: ":"),
                  let raw = UInt32(f[1][..<colon], radix: 16) else { continue }
            // Little-endian hex.
            let ip = "\(raw & 0xff).\((raw >> 8) & 0xff).\((raw >> 16) & 0xff).\(raw >> 24)"
            counts[ip, default: 0] += 1
        }
        return counts
    }

    /// The process listening on a local TCP port (for RSS of nodes we did not start).
    static func pidListening(port: Int) -> pid_t? {
        guard let text = Machine.procText("/proc/net/tcp") else { return nil }
        var inode: String?
        let hexPort = String(format: "%04X", port)
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count > 9, f[3] == "0A", f[1].hasSuffix(":" + hexPort) else { continue }
            inode = String(f[9])
            break
        }
        guard let inode else { return nil }
        let target = "socket:[\(inode)]"
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry) else { continue }
            let dir = "/proc/\(pid)/fd"
            for fd in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
                if (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(dir)/\(fd)")) == target { return pid }
            }
        }
        return nil
    }

    /// This executable, resolved (so the gateway can be found beside it).
    static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    static func randomHex(bytes: Int) -> String {
        (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }
}

/// CPU use of a set of processes between two samples, in percent of one core.
struct CPUSampler {
    private var last: [pid_t: (ticks: Int, at: Double)] = [:]
    private var lastMachine: (ticks: Int, at: Double)?
    private let hz = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// Whole-machine busy time since the previous call, percent of one core.
    mutating func machine() -> Double? {
        guard let ticks = Machine.busyTicks() else { return nil }
        let now = Clock.now()
        defer { lastMachine = (ticks, now) }
        guard let prev = lastMachine, now > prev.at else { return nil }
        return Double(ticks - prev.ticks) / hz / (now - prev.at) * 100
    }

    mutating func sample(_ pid: pid_t) -> Double? {
        guard let ticks = Machine.cpuTicks(pid) else { return nil }
        let now = Clock.now()
        defer { last[pid] = (ticks, now) }
        guard let prev = last[pid], now > prev.at else { return nil }
        return Double(ticks - prev.ticks) / hz / (now - prev.at) * 100
    }
}

/// Source addresses for load generators: every 127.0.0.x is local, and each has its
/// own ephemeral port range (~28k), so binding to several lets one machine open far
/// more than 28k connections to a port.
enum SourceAddresses {
    /// Addresses for each worker; busiest addresses (TIME_WAIT of earlier runs) last.
    static func plan(connectionsPerWorker: [Int]) -> (addresses: [[String]], perAddress: Int) {
        let usage = Machine.socketsPerLocalAddress()
        let candidates = (2...254).sorted { (usage["127.0.0.\($0)"] ?? 0, $0) < (usage["127.0.0.\($1)"] ?? 0, $1) }
            .map { "127.0.0.\($0)" }
        // Leave room for sockets we did not count and for the kernel's random probing.
        let perAddress = max(1000, Machine.portsPerAddress - 3000)
        var next = 0
        var plan: [[String]] = []
        for count in connectionsPerWorker {
            let need = max(1, (count + perAddress - 1) / perAddress)
            plan.append(Array(candidates[next..<min(next + need, candidates.count)]))
            next = min(next + need, candidates.count - 1)
        }
        return (plan, perAddress)
    }

    static func isLoopback(host: String) -> Bool {
        if host == "localhost" { return true }
        let parts = host.split(separator: ".")
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}
