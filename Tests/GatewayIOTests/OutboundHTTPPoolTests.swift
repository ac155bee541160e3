import CLws
import Foundation
@testable import GatewayIO
import GatewayProtocol
import GatewayTestSupport
import XCTest

/// A scripted HTTP/1.1 server on 127.0.0.1 (optionally TLS): each request, numbered in
/// arrival order from 0, is answered as `behaviour` says. Records every request it read
/// and on which connection.
final class ScriptedServer: @unchecked Sendable {
    enum Behaviour {
        case answer(Int)
        /// Answers (saying keep-alive), then closes the connection.
        case answerThenClose(Int)
        /// Reads the request, then closes without a byte of answer.
        case closeWithoutAnswer
        /// Reads the request and never answers.
        case silent
        /// These bytes as the answer, then the connection closed or not.
        case raw(String, close: Bool)
    }

    struct Request { let connection: Int; let head: String; let body: String }

    let port: Int
    private let listener: Int32
    private let tls: OpaquePointer?
    private let behaviour: (Int) -> Behaviour
    private let lock = NSLock()
    private var received: [Request] = []
    private var accepted = 0
    private var ended = 0
    private var serverNames: [String] = []
    private var open: [Int32] = []

    init(certificate: (cert: String, key: String)? = nil, behaviour: @escaping (Int) -> Behaviour = { _ in .answer(200) }) throws {
        self.behaviour = behaviour
        if let certificate {
            let ctx = SSL_CTX_new(TLS_server_method())!
            guard SSL_CTX_use_certificate_chain_file(ctx, certificate.cert) == 1,
                  SSL_CTX_use_PrivateKey_file(ctx, certificate.key, SSL_FILETYPE_PEM) == 1 else {
                throw TestError("the test server could not load its certificate")
            }
            tls = ctx
        } else {
            tls = nil
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        listener = fd
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard ok else { throw TestError("the test server could not listen") }
        port = Int(UInt16(bigEndian: addr.sin_port))
        Thread { [self] in acceptLoop() }.start()
    }

    var requests: [Request] { lock.withLock { received } }
    var connections: Int { lock.withLock { accepted } }
    /// Connections the client closed (or the script ended).
    var closedConnections: Int { lock.withLock { ended } }
    /// The SNI names TLS clients sent.
    var sniNames: [String] { lock.withLock { serverNames } }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        lock.withLock { open.forEach { shutdown($0, Int32(SHUT_RDWR)) } }
    }

    deinit {
        Glibc.close(listener)
        if let tls { SSL_CTX_free(tls) }
    }

    private func acceptLoop() {
        while true {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { return }
            let id = lock.withLock { () -> Int in
                accepted += 1
                open.append(fd)
                return accepted
            }
            Thread { [self] in serve(fd, connection: id) }.start()
        }
    }

    private func serve(_ fd: Int32, connection: Int) {
        // Writing to a client that went away must not kill the test process.
        var pipe = sigset_t()
        sigemptyset(&pipe)
        sigaddset(&pipe, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &pipe, nil)
        var ssl: OpaquePointer?
        defer {
            if let ssl { SSL_free(ssl) }
            Glibc.close(fd)
            lock.withLock { ended += 1 }
        }
        if let tls {
            ssl = SSL_new(tls)
            SSL_set_fd(ssl, fd)
            guard SSL_accept(ssl) == 1 else { return }
            if let name = SSL_get_servername(ssl, Int32(TLSEXT_NAMETYPE_host_name)) {
                let name = String(cString: name)
                lock.withLock { serverNames.append(name) }
            }
        }
        let io = (read: { (p: UnsafeMutableRawPointer, n: Int) -> Int in
            ssl.map { Int(SSL_read($0, p, Int32(n))) } ?? recv(fd, p, n, 0)
        }, write: { (bytes: [UInt8]) in
            _ = bytes.withUnsafeBytes { b in ssl.map { Int(SSL_write($0, b.baseAddress, Int32(b.count))) } ?? send(fd, b.baseAddress, b.count, Int32(MSG_NOSIGNAL)) }
        })
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            // One request: the head, then Content-Length bytes.
            var headEnd: Int?
            var bodyLength = 0
            while true {
                if headEnd == nil, let r = pending.firstRange(of: Array("\r\n\r\n".utf8)) {
                    headEnd = r.upperBound
                    let head = String(decoding: pending[..<r.lowerBound], as: UTF8.self).lowercased()
                    if let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }) {
                        bodyLength = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) ?? 0
                    }
                }
                if let end = headEnd, pending.count >= end + bodyLength { break }
                let n = chunk.withUnsafeMutableBytes { io.read($0.baseAddress!, $0.count) }
                guard n > 0 else { return }
                pending += chunk[..<n]
            }
            let end = headEnd!
            let request = Request(connection: connection, head: String(decoding: pending[..<end], as: UTF8.self),
                                  body: String(decoding: pending[end..<(end + bodyLength)], as: UTF8.self))
            pending.removeFirst(end + bodyLength)
            let index = lock.withLock { () -> Int in
                received.append(request)
                return received.count - 1
            }
            switch behaviour(index) {
            case .answer(let status):
                io.write(Array("HTTP/1.1 \(status) X\r\nContent-Length: 2\r\n\r\nok".utf8))
            case .answerThenClose(let status):
                io.write(Array("HTTP/1.1 \(status) X\r\nContent-Length: 2\r\n\r\nok".utf8))
                return
            case .closeWithoutAnswer:
                return
            case .raw(let text, let close):
                io.write(Array(text.utf8))
                if close { return }
            case .silent:
                while io.read(chunk.withUnsafeMutableBytes { $0.baseAddress! }, chunk.count) > 0 {}
                return
            }
        }
    }
}

final class OutboundHTTPPoolTests: XCTestCase {
    /// Answers come straight from the worker thread here; the node hands them to the loop.
    func pool(_ url: String, workers: Int = 1) throws -> OutboundHTTPPool {
        try OutboundHTTPPool(target: try HTTPTarget(url), workers: workers) { $0() }
    }

    /// One POST, waited for; the result and how long it took.
    func post(_ pool: OutboundHTTPPool, _ body: String, timeoutMs: Int64 = 10_000) -> (result: Result<Int, OutboundHTTPFailure>?, seconds: Double) {
        let started = Date()
        let done = DispatchSemaphore(value: 0)
        let box = NSLock()
        var result: Result<Int, OutboundHTTPFailure>?
        pool.post(headers: [("Content-Type", "application/json"), ("X-Gateway-Event-Id", "e-1")], body: Array(body.utf8),
                  timeoutMs: timeoutMs) { r in
            box.withLock { result = r }
            done.signal()
        }
        _ = done.wait(timeout: .now() + 60)
        return (box.withLock { result }, Date().timeIntervalSince(started))
    }

    func status(_ r: Result<Int, OutboundHTTPFailure>?) -> Int? {
        if case .success(let s)? = r { return s }
        return nil
    }

    func testPostsTheRequestAndReportsTheStatus() throws {
        let server = try ScriptedServer { $0 == 0 ? .answer(200) : .answer(500) }
        defer { server.stop() }
        let pool = try pool("http://127.0.0.1:\(server.port)/hooks?shop=1")
        defer { pool.shutdown() }
        XCTAssertEqual(status(post(pool, #"{"n":1}"#).result), 200)
        XCTAssertEqual(status(post(pool, #"{"n":2}"#).result), 500)
        let first = try XCTUnwrap(server.requests.first)
        XCTAssertTrue(first.head.hasPrefix("POST /hooks?shop=1 HTTP/1.1\r\n"), first.head)
        XCTAssertTrue(first.head.contains("\r\nHost: 127.0.0.1:\(server.port)\r\n"))
        XCTAssertTrue(first.head.contains("\r\nX-Gateway-Event-Id: e-1\r\n"))
        XCTAssertEqual(first.body, #"{"n":1}"#)
    }

    func testAKeptConnectionCarriesTheNextRequest() throws {
        let server = try ScriptedServer()
        defer { server.stop() }
        let pool = try pool("http://127.0.0.1:\(server.port)/")
        defer { pool.shutdown() }
        XCTAssertEqual(status(post(pool, "a").result), 200)
        XCTAssertEqual(status(post(pool, "b").result), 200)
        XCTAssertEqual(server.requests.map(\.body), ["a", "b"])
        XCTAssertEqual(server.connections, 1, "both requests on one connection")
    }

    func testAConnectionClosedAfterItsAnswerIsNotSentTwice() throws {
        // The kept connection is found closed before a byte of the next request is written:
        // that one goes on a fresh connection.
        let server = try ScriptedServer { _ in .answerThenClose(200) }
        defer { server.stop() }
        let pool = try pool("http://127.0.0.1:\(server.port)/")
        defer { pool.shutdown() }
        XCTAssertEqual(status(post(pool, "a").result), 200)
        waitUntil { server.closedConnections == 1 }
        XCTAssertEqual(status(post(pool, "b").result), 200)
        XCTAssertEqual(server.requests.map(\.body), ["a", "b"], "each request once")
        XCTAssertEqual(server.connections, 2)
    }

    func testAKeptConnectionThatDiesAfterTheWholeRequestIsNotSentAgain() throws {
        // The second request arrives whole on the kept connection, which the server then
        // closes unanswered: it may have acted on it, so no answer, and no second copy.
        let server = try ScriptedServer { $0 == 1 ? .closeWithoutAnswer : .answer(200) }
        defer { server.stop() }
        let pool = try pool("http://127.0.0.1:\(server.port)/")
        defer { pool.shutdown() }
        XCTAssertEqual(status(post(pool, "a").result), 200)
        XCTAssertNil(status(post(pool, "b").result))
        XCTAssertEqual(status(post(pool, "c").result), 200)
        XCTAssertEqual(server.requests.map(\.body), ["a", "b", "c"])
        XCTAssertEqual(server.requests.map(\.connection), [1, 1, 2])
    }

    func testARequestWhoseTimeRanOutInTheQueueIsNeverSent() throws {
        // One worker, held by a receiver that never answers; the second request's time runs
        // out while it waits: its sender has given up on it, so it must not go out late.
        let server = try ScriptedServer { _ in .silent }
        defer { server.stop() }
        let pool = try pool("http://127.0.0.1:\(server.port)/")
        defer { pool.shutdown() }
        let group = DispatchGroup()
        let box = NSLock()
        var second: Result<Int, OutboundHTTPFailure>?
        group.enter()
        pool.post(headers: [], body: Array("held".utf8), timeoutMs: 2_000) { _ in group.leave() }
        group.enter()
        pool.post(headers: [], body: Array("late".utf8), timeoutMs: 300) { r in
            box.withLock { second = r }
            group.leave()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        guard case .failure(let why)? = box.withLock({ second }) else { return XCTFail("the late request got a status") }
        XCTAssertTrue(why.description.contains("not sent"), why.description)
        XCTAssertEqual(server.requests.map(\.body), ["held"], "the late request never reached the receiver")
    }

    func testAnAnswerWithoutLengthCountsOnceItsHeadersAreIn() throws {
        // The body would end at a close that never comes: the status is not held back for it.
        let server = try ScriptedServer { $0 == 0 ? .raw("HTTP/1.1 200 OK\r\n\r\nthe body goes on", close: false) : .answer(201) }
        defer { server.stop() }
        let pool = try pool("http://127.0.0.1:\(server.port)/")
        defer { pool.shutdown() }
        XCTAssertEqual(status(post(pool, "a", timeoutMs: 20_000).result), 200)
        XCTAssertEqual(status(post(pool, "b").result), 201)
        XCTAssertEqual(server.requests.map(\.connection), [1, 2], "the first connection is not reused")
    }

    func testATimeoutAfterTheHeadersReportsTheStatus() throws {
        let server = try ScriptedServer {
            $0 == 0 ? .raw("HTTP/1.1 503 Busy\r\nContent-Length: 100\r\n\r\nhalf", close: false) : .answer(200)
        }
        defer { server.stop() }
        let pool = try pool("http://127.0.0.1:\(server.port)/")
        defer { pool.shutdown() }
        XCTAssertEqual(status(post(pool, "a", timeoutMs: 3_000).result), 503, "the receiver answered; only its body is late")
        XCTAssertEqual(status(post(pool, "b").result), 200)
        XCTAssertEqual(server.requests.map(\.connection), [1, 2], "the first connection is not reused")
    }

    func testAConnectionLetGoOfIsClosed() throws {
        let server = try ScriptedServer()
        defer { server.stop() }
        do {
            let target = try HTTPTarget("http://127.0.0.1:\(server.port)/")
            _ = try OutboundConnection.open(target, tls: nil, deadline: monotonicSeconds() + 10).get()
        }
        waitUntil { server.closedConnections == 1 }
        XCTAssertEqual(server.closedConnections, 1, "the descriptor did not leak")
    }

    /// Polls `condition` for up to 30 s.
    func waitUntil(_ condition: () -> Bool) {
        let until = Date().addingTimeInterval(30)
        while !condition() && Date() < until { usleep(10_000) }
    }

    func testChunkedAnswersKeepTheConnectionAndCloseDelimitedOnesEndAtTheClose() throws {
        let chunked = "HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        let answers: [ScriptedServer.Behaviour] = [
            .raw(chunked, close: false), .raw(chunked, close: false),
            .raw("HTTP/1.0 201 Created\r\n\r\nno length", close: true),
            .raw("HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + String(repeating: "x", count: 100_000), close: false),
            .answer(204),
        ]
        let server = try ScriptedServer { answers[$0] }
        defer { server.stop() }
        let pool = try pool("http://127.0.0.1:\(server.port)/")
        defer { pool.shutdown() }
        XCTAssertEqual(try (0..<5).map { _ in try post(pool, "x").result?.get() }, [202, 202, 201, 200, 204])
        XCTAssertEqual(server.requests.map(\.connection), [1, 1, 1, 2, 3],
                       "kept after chunked answers; a new one after the close and after a body past 64 KiB")
    }

    func testAFreshConnectionClosedWithoutAnswerIsNotRetried() throws {
        let server = try ScriptedServer { _ in .closeWithoutAnswer }
        defer { server.stop() }
        let pool = try pool("http://127.0.0.1:\(server.port)/")
        defer { pool.shutdown() }
        XCTAssertNil(status(post(pool, "a").result))
        XCTAssertEqual(server.requests.map(\.body), ["a"])
    }

    func testNoAnswerEndsAtTheDeadline() throws {
        let server = try ScriptedServer { _ in .silent }
        defer { server.stop() }
        let pool = try pool("http://127.0.0.1:\(server.port)/")
        defer { pool.shutdown() }
        let (result, seconds) = post(pool, "a", timeoutMs: 1_000)
        guard case .failure(let why)? = result else { return XCTFail("expected no status, got \(String(describing: result))") }
        XCTAssertTrue(why.description.contains("in time"), why.description)
        XCTAssertGreaterThanOrEqual(seconds, 0.9, "not before the deadline")
        XCTAssertLessThan(seconds, 15, "ended by the deadline")
    }

    func testRefusedConnectionFailsWithoutWaitingForTheDeadline() throws {
        let pool = try pool("http://127.0.0.1:\(freePort())/")
        defer { pool.shutdown() }
        let (result, seconds) = post(pool, "a", timeoutMs: 30_000)
        guard case .failure(let why)? = result else { return XCTFail("expected no status") }
        XCTAssertTrue(why.description.contains("refused"), why.description)
        XCTAssertLessThan(seconds, 20)
    }

    func testUnresolvableHostFails() throws {
        let pool = try pool("http://no-such-host.invalid/")
        defer { pool.shutdown() }
        XCTAssertNil(status(post(pool, "a", timeoutMs: 5_000).result))
    }

    func testWorkersCarryRequestsSideBySide() throws {
        // Two silent requests on two workers end together at their deadline, not one after the other.
        let server = try ScriptedServer { _ in .silent }
        defer { server.stop() }
        let pool = try pool("http://127.0.0.1:\(server.port)/", workers: 2)
        defer { pool.shutdown() }
        let group = DispatchGroup()
        for _ in 0..<2 {
            group.enter()
            pool.post(headers: [], body: [1], timeoutMs: 3_000) { _ in group.leave() }
        }
        let started = Date()
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(server.connections, 2)
        XCTAssertLessThan(Date().timeIntervalSince(started), 5.9, "not serialised (2 x 3 s)")
    }

    func testShutdownClosesTheKeptConnection() throws {
        let server = try ScriptedServer()
        defer { server.stop() }
        let pool = try pool("http://127.0.0.1:\(server.port)/")
        XCTAssertEqual(status(post(pool, "a").result), 200)
        XCTAssertEqual(server.closedConnections, 0, "kept")
        pool.shutdown()
        waitUntil { server.closedConnections == 1 }
        XCTAssertEqual(server.closedConnections, 1)
    }

    func testAnswersReachTheLoopThread() throws {
        let running = try RunningLoop()
        defer { running.stop() }
        let loop = running.loop
        let server = try ScriptedServer()
        defer { server.stop() }
        let pool = try OutboundHTTPPool(target: try HTTPTarget("http://127.0.0.1:\(server.port)/"), workers: 2) { work in loop.post(work) }
        defer { pool.shutdown() }
        let done = DispatchSemaphore(value: 0)
        var loopThread: UInt = 0
        loop.post { loopThread = UInt(pthread_self()) }
        var statuses: [Int?] = []
        for _ in 0..<3 {
            pool.post(headers: [], body: [1], timeoutMs: 10_000) { result in
                XCTAssertEqual(UInt(pthread_self()), loopThread, "on the loop thread")
                statuses.append(try? result.get())
                if statuses.count == 3 { done.signal() }
            }
        }
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        loop.post { done.signal() }
        _ = done.wait(timeout: .now() + 30)
        XCTAssertEqual(statuses, [200, 200, 200])
    }
}

/// HTTPS against certificates made with the openssl CLI, trusted through `SSL_CERT_FILE`
/// (read when a pool's TLS context is made).
final class OutboundHTTPSTests: XCTestCase {
    static let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gw-outbound-tls-\(getpid())").path

    /// A self-signed certificate for `names` (subjectAltName entries like `DNS:localhost`).
    static func certificate(_ name: String, _ altNames: String) throws -> (cert: String, key: String) {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let cert = "\(dir)/\(name).pem", key = "\(dir)/\(name)-key.pem"
        if FileManager.default.fileExists(atPath: cert) { return (cert, key) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                       "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=\(name)", "-addext", "subjectAltName=\(altNames)"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TestError("openssl req failed") }
        return (cert, key)
    }

    static func local() throws -> (cert: String, key: String) { try certificate("local", "DNS:localhost,IP:127.0.0.1") }

    /// A pool whose TLS context trusts exactly `caFile`.
    func pool(_ url: String, trusting caFile: String) throws -> OutboundHTTPPool {
        let previous = ProcessInfo.processInfo.environment["SSL_CERT_FILE"]
        setenv("SSL_CERT_FILE", caFile, 1)
        defer { if let previous { setenv("SSL_CERT_FILE", previous, 1) } else { unsetenv("SSL_CERT_FILE") } }
        return try OutboundHTTPPool(target: try HTTPTarget(url), workers: 1) { $0() }
    }

    func post(_ pool: OutboundHTTPPool, timeoutMs: Int64 = 10_000) -> Result<Int, OutboundHTTPFailure>? {
        let done = DispatchSemaphore(value: 0)
        let box = NSLock()
        var result: Result<Int, OutboundHTTPFailure>?
        pool.post(headers: [], body: Array("{}".utf8), timeoutMs: timeoutMs) { r in
            box.withLock { result = r }
            done.signal()
        }
        _ = done.wait(timeout: .now() + 60)
        return box.withLock { result }
    }

    func testTrustedCertificateByAddressAndByName() throws {
        let cert = try Self.local()
        let server = try ScriptedServer(certificate: cert)
        defer { server.stop() }
        let byAddress = try pool("https://127.0.0.1:\(server.port)/hooks", trusting: cert.cert)
        defer { byAddress.shutdown() }
        XCTAssertEqual(try post(byAddress)?.get(), 200)
        XCTAssertEqual(try post(byAddress)?.get(), 200)
        XCTAssertEqual(server.connections, 1, "the TLS connection is kept")
        XCTAssertEqual(server.sniNames, [], "no SNI for an address")

        let byName = try pool("https://localhost:\(server.port)/hooks", trusting: cert.cert)
        defer { byName.shutdown() }
        XCTAssertEqual(try post(byName)?.get(), 200)
        XCTAssertEqual(server.sniNames, ["localhost"])
        XCTAssertEqual(server.requests.count, 3)
    }

    func testUntrustedCertificateIsRefused() throws {
        let server = try ScriptedServer(certificate: try Self.local())
        defer { server.stop() }
        let other = try Self.certificate("other", "DNS:localhost,IP:127.0.0.1")
        let pool = try pool("https://127.0.0.1:\(server.port)/", trusting: other.cert)
        defer { pool.shutdown() }
        guard case .failure(let why)? = post(pool) else { return XCTFail("an untrusted certificate was accepted") }
        XCTAssertTrue(why.description.contains("certificate"), why.description)
        XCTAssertEqual(server.requests.count, 0, "nothing sent")
    }

    func testCertificateForAnotherNameIsRefused() throws {
        let elsewhere = try Self.certificate("elsewhere", "DNS:hooks.example.com")
        let server = try ScriptedServer(certificate: elsewhere)
        defer { server.stop() }
        for url in ["https://127.0.0.1:\(server.port)/", "https://localhost:\(server.port)/"] {
            let pool = try pool(url, trusting: elsewhere.cert)
            defer { pool.shutdown() }
            guard case .failure(let why)? = post(pool) else { return XCTFail("\(url): a certificate for another name was accepted") }
            XCTAssertTrue(why.description.contains("certificate"), why.description)
        }
        XCTAssertEqual(server.requests.count, 0, "nothing sent")
    }

    func testEveryPeerCheckIsSetUpOrTheConnectionFails() throws {
        let tls = try OutboundTLS()
        func session() throws -> OpaquePointer { try XCTUnwrap(SSL_new(tls.ctx)) }
        let named = try session()
        defer { SSL_free(named) }
        XCTAssertNil(OutboundConnection.expectPeer(named, host: "hooks.example.com"))
        XCTAssertNotEqual(X509_VERIFY_PARAM_get_hostflags(SSL_get0_param(named)) & OutboundConnection.noPartialWildcards, 0,
                          "w*.example.com must not match")
        let address = try session()
        defer { SSL_free(address) }
        XCTAssertNil(OutboundConnection.expectPeer(address, host: "127.0.0.1"))
        // SNI has room for 255 bytes: a longer name cannot be sent, so it is not connected to unchecked.
        let tooLong = try session()
        defer { SSL_free(tooLong) }
        XCTAssertNotNil(OutboundConnection.expectPeer(tooLong, host: String(repeating: "a", count: 300) + ".example.com"))
    }

    func testPlainServerBehindAnHTTPSURLFails() throws {
        let server = try ScriptedServer()
        defer { server.stop() }
        let pool = try pool("https://127.0.0.1:\(server.port)/", trusting: try Self.local().cert)
        defer { pool.shutdown() }
        XCTAssertNil(try? post(pool, timeoutMs: 2_000)?.get())
    }
}
