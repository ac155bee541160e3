import Foundation

/// A TCP port free right now on 127.0.0.1 (bind to 0, read it back). Running out of
/// descriptors or ports is not something a test or load run can go on from.
public func freePort() -> Int {
    do { return try findFreePort() } catch { fatalError("freePort: \(error)") }
}

/// `freePort` for product code (the private redis-server), which fails with a message instead.
public func findFreePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestError("socket(): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard ok else { throw TestError("no free port on 127.0.0.1: \(String(cString: strerror(errno)))") }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// A blocking TCP socket connected to 127.0.0.1:`port`; reads give up after `timeout` seconds.
public func connectLoopback(port: Int, timeout: Double? = nil) throws -> Int32 {
    try connectTCP(host: "127.0.0.1", port: port, timeout: timeout)
}

/// A blocking TCP socket connected to `host` (an IPv4 address or `localhost`); reads and
/// writes give up after `timeout` seconds. The one connect of the HTTP and Redis clients.
public func connectTCP(host: String, port: Int, timeout: Double? = nil, noDelay: Bool = false) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestError("socket(): \(String(cString: strerror(errno)))") }
    if let timeout {
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int(timeout.truncatingRemainder(dividingBy: 1) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
    if noDelay {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr(host == "localhost" ? "127.0.0.1" : host)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    let ok = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
    guard ok else {
        let reason = String(cString: strerror(errno))
        close(fd)
        throw TestError("connect \(host):\(port): \(reason)")
    }
    return fd
}

/// Sends `request` and reads the answer: one read, or until the peer closes / a complete
/// HTTP response (`Content-Length`) has arrived.
public func rawExchange(port: Int, _ request: [UInt8], readUntilClose: Bool, timeout: Double = 10) throws -> [UInt8] {
    let fd = try connectLoopback(port: port, timeout: timeout)
    defer { close(fd) }
    var sent = 0
    while sent < request.count {
        let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { break }
        sent += n
    }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buf, buf.count)
        if n <= 0 { break }
        out += buf[..<n]
        if !readUntilClose || httpResponseComplete(out) { break }
    }
    return out
}

/// True once the headers and `Content-Length` bytes of body have arrived (servers may keep the connection open).
func httpResponseComplete(_ data: [UInt8]) -> Bool {
    guard let split = data.firstRange(of: Array("\r\n\r\n".utf8)) else { return false }
    let head = String(decoding: data[..<split.lowerBound], as: UTF8.self).lowercased()
    guard let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
          let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) else { return false }
    return data.count - split.upperBound >= length
}

public struct TestError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

public func waitUntil(timeout: Double, _ what: String, _ condition: () -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return }
        usleep(50_000)
    }
    throw TestError("timed out waiting for \(what)")
}
