import CLibev
import CLws
import Foundation
import GatewayProtocol
import Synchronization

/// Errors the client library throws synchronously (events report the rest).
public enum GatewayClientError: Error, Equatable, CustomStringConvertible {
    case badURL(String)
    case loopStopped
    case contextFailed
    case timeout(String)
    case closed(code: UInt16?, reason: String)

    public var description: String {
        switch self {
        case let .badURL(url): return "bad WebSocket URL: \(url)"
        case .loopStopped: return "client loop is shut down"
        case .contextFailed: return "lws_create_context failed"
        case let .timeout(what): return "timed out waiting for \(what)"
        case let .closed(code, reason):
            return "connection closed (\(code.map(String.init) ?? "no close frame")): \(reason)"
        }
    }
}

/// One lws client context serviced by one thread. lws is single-threaded, so every
/// lws call happens on that thread; other threads post commands and wake it with
/// `lws_cancel_service`.
///
/// Sendable by confinement: what other threads touch is in `control` (a Mutex); every
/// other stored property belongs to the loop thread (or is set once in `init`).
public final class ClientLoop: @unchecked Sendable {
    // Commands posted by other threads, drained on EVENT_WAIT_CANCELLED.
    enum Command {
        case connect(ClientConnection, Target)
        case write(ClientConnection)
        case close(ClientConnection, UInt16)
        case abort(ClientConnection)
        case readFlow(ClientConnection, Bool)
    }

    struct Target {
        var address: String
        var port: Int32
        var path: String
        var hostHeader: String
        var sourceAddress: String?
        /// `wss://`: TLS to the server.
        var tls = false
    }

    /// What other threads share with the loop thread.
    private struct Control {
        var commands: [Command] = []
        var wakePending = false
        var stopRequested = false
        var stopped = false
        var live = 0
    }
    private let control = Mutex(Control())

    private var context: OpaquePointer?
    /// The libev loop lws runs on with `epoll: true` (ours to break and destroy).
    private var evLoop: OpaquePointer?
    private let protocols: UnsafeMutablePointer<lws_protocols>
    private var thread: Thread!
    private let finished = DispatchSemaphore(value: 0)

    // Loop-thread only.
    private var running = true
    private var scratch: UnsafeMutableRawPointer
    private var scratchCapacity: Int
    let maxMessageSize: Int
    private let allowSelfSigned: Bool

    /// - Parameters:
    ///   - rxBufferSize: lws mallocs this per connection at handshake (larger frames
    ///     arrive in several pieces); load tests with many idle sockets may lower it.
    ///   - maxConnections: caps lws's fd tables (default: the soft `ulimit -n` at
    ///     creation; raise it first with `raiseOpenFileLimit`).
    ///   - maxMessageSize: a peer message larger than this closes with 1009.
    ///   - quietLogs: lws logging is process-wide; errors only by default.
    ///   - allowSelfSigned: `wss://` accepts a self-signed certificate whatever its host name
    ///     (tests, a node's own loopback); otherwise the system's CAs must vouch for the host.
    ///   - epoll: run lws on libev over epoll (evlib_ev), so a turn costs what is ready rather
    ///     than a `poll()` over every socket: load generators with thousands of sockets.
    ///     Falls back to poll when the plugin does not load.
    public init(rxBufferSize: Int = 65536, maxConnections: Int? = nil,
                connectTimeout: UInt32 = 10, timeout: UInt32 = 10,
                maxMessageSize: Int = 16 << 20, quietLogs: Bool = true, allowSelfSigned: Bool = false,
                epoll: Bool = false) throws {
        if quietLogs { lws_set_log_level(Int32(LLL_ERR), nil) }
        self.maxMessageSize = maxMessageSize
        self.allowSelfSigned = allowSelfSigned
        scratchCapacity = 4096
        scratch = .allocate(byteCount: scratchCapacity + Int(clws_pre), alignment: 16)

        protocols = .allocate(capacity: 2)
        protocols.initialize(repeating: lws_protocols(), count: 2)
        protocols[0].name = UnsafePointer(strdup("gateway-client"))
        protocols[0].callback = clientCallback
        protocols[0].rx_buffer_size = rxBufferSize

        var info = lws_context_creation_info()
        info.port = CONTEXT_PORT_NO_LISTEN
        // The client TLS context (system CAs) for `wss://`.
        info.options = UInt64(LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT)
        info.protocols = UnsafePointer(protocols)
        info.gid = -1
        info.uid = -1
        info.connect_timeout_secs = connectTimeout
        info.timeout_secs = timeout
        // TCP keepalive: notices a dead peer on an idle socket within ~90 s.
        info.ka_time = 60
        info.ka_probes = 3
        info.ka_interval = 10
        if let maxConnections { info.fd_limit_per_thread = UInt32(maxConnections + 16) }
        info.user = Unmanaged.passUnretained(self).toOpaque()
        var created: OpaquePointer?
        if epoll, let ev = clibev_epoll_loop() {
            var loops: [UnsafeMutableRawPointer?] = [UnsafeMutableRawPointer(ev)]
            var onEv = info
            onEv.options |= UInt64(LWS_SERVER_OPTION_LIBEV)
            created = loops.withUnsafeMutableBufferPointer { buffer in
                onEv.foreign_loops = buffer.baseAddress
                return lws_create_context(&onEv)
            }
            if created != nil { evLoop = ev } else { ev_loop_destroy(ev) }
        }
        guard let ctx = created ?? lws_create_context(&info) else {
            free(UnsafeMutableRawPointer(mutating: protocols[0].name))
            protocols.deallocate()
            scratch.deallocate()
            throw GatewayClientError.contextFailed
        }
        context = ctx
        // The thread owns the loop until run() returns, then lets go (no cycle).
        let ref = LoopRef(self)
        let t = Thread {
            ref.take()?.run()
        }
        t.name = "lws-client"
        thread = t
        t.start()
    }

    /// Raises the soft open-file limit (lws sizes its tables from it when the loop is
    /// created). Returns the new soft limit.
    @discardableResult
    public static func raiseOpenFileLimit(to wanted: Int = 1 << 20) -> Int {
        var rl = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 else { return -1 }
        // lws treats a limit over 10M as bogus and falls back to 2560 fds.
        let target = rlim_t(min(wanted, 10_000_000))
        if rl.rlim_cur < target {
            rl.rlim_cur = min(target, rl.rlim_max)
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        }
        return Int(rl.rlim_cur)
    }

    deinit {
        free(UnsafeMutableRawPointer(mutating: protocols[0].name))
        protocols.deallocate()
        scratch.deallocate()
    }

    /// Connections not yet reported closed (including ones still connecting).
    public var connectionCount: Int { control.withLock { $0.live } }

    public var isLoopThread: Bool { Thread.current === thread }

    /// Starts a connection; events arrive on the loop thread through `handlers`.
    /// `sourceAddress` binds the local end (e.g. 127.0.0.2) so one process can exceed
    /// one address's ephemeral port range.
    public func connect(url: String, sourceAddress: String? = nil, userData: (any AnyObject & Sendable)? = nil,
                        handlers: ClientHandlers) throws -> ClientConnection {
        guard let target = Self.parse(url: url, sourceAddress: sourceAddress) else {
            throw GatewayClientError.badURL(url)
        }
        let conn = ClientConnection(loop: self, handlers: handlers, userData: userData)
        let accepted: Bool = control.withLock {
            guard !$0.stopRequested else { return false }
            $0.live += 1
            return true
        }
        guard accepted else { throw GatewayClientError.loopStopped }
        post(.connect(conn, target))
        return conn
    }

    /// Closes every connection (without close frames) and joins the loop thread.
    public func shutdown() {
        control.withLock {
            $0.stopRequested = true
            // Under the lock: the loop thread marks `stopped` before destroying the context.
            if !$0.stopped { lws_cancel_service(context) }
        }
        if !isLoopThread {
            finished.wait()
            finished.signal()   // let later callers through too
        }
    }

    // MARK: - Posting work

    /// Runs `command` now on the loop thread, or queues it and wakes the loop. Connects
    /// are always queued: opening a socket from inside a close callback is asking for it.
    func post(_ command: Command) {
        if isLoopThread {
            if case .connect = command {} else {
                perform(command)
                return
            }
        }
        control.withLock {
            guard !$0.stopped else { return }
            $0.commands.append(command)
            if !$0.wakePending {
                $0.wakePending = true
                lws_cancel_service(context)   // a pipe write; safe from any thread
            }
        }
    }

    private static func parse(url: String, sourceAddress: String?) -> Target? {
        let tls = url.hasPrefix("wss://")
        guard tls || url.hasPrefix("ws://") else { return nil }
        let rest = url.dropFirst(tls ? 6 : 5)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        let path = slash < rest.endIndex ? String(rest[slash...]) : "/"
        var host = Substring(authority)
        var port: Int32 = tls ? 443 : 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int32(after.dropFirst()) else { return nil }
                port = p
            } else if !after.isEmpty { return nil }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            guard let p = Int32(authority[authority.index(after: colon)...]) else { return nil }
            port = p
        }
        guard !host.isEmpty, port > 0, port < 65536 else { return nil }
        return Target(address: String(host), port: port, path: path,
                      hostHeader: String(authority), sourceAddress: sourceAddress, tls: tls)
    }

    // MARK: - Loop thread

    private func run() {
        while running {
            if lws_service(context, 0) < 0 { break }
        }
        let leftovers: [Command] = control.withLock { c in
            c.stopRequested = true
            c.stopped = true
            defer { c.commands = [] }
            return c.commands
        }
        // Fires close callbacks for every wsi still open.
        lws_context_destroy(context)
        if let evLoop { ev_loop_destroy(evLoop) }
        for case let .connect(conn, _) in leftovers {
            finish(conn, code: nil, reason: "client loop shut down")
        }
        finished.signal()
    }

    fileprivate func drain() {
        let (batch, stop): ([Command], Bool) = control.withLock { c in
            c.wakePending = false
            defer { c.commands = [] }
            return (c.commands, c.stopRequested)
        }
        if stop {
            running = false
            // On libev, lws_service returns only when its loop is broken.
            if let evLoop { clibev_break_all(evLoop) }
        }
        for command in batch { perform(command) }
    }

    private func perform(_ command: Command) {
        switch command {
        case let .connect(conn, target):
            open(conn, target)
        case let .write(conn):
            conn.shared.withLock { $0.writePosted = false }
            if let wsi = conn.wsi, conn.established { lws_callback_on_writable(wsi) }
        case let .close(conn, code):
            carryOut(conn.phase.closeRequested(code: code), conn)
        case let .abort(conn):
            carryOut(conn.phase.abortRequested(), conn)
        case let .readFlow(conn, enabled):
            conn.readPaused = !enabled
            if let wsi = conn.wsi, conn.established { _ = lws_rx_flow_control(wsi, enabled ? 1 : 0) }
        }
    }

    private func open(_ conn: ClientConnection, _ target: Target) {
        let due = conn.phase.connectDue(loopRunning: running)
        guard due == .nothing else { return carryOut(due, conn) }
        var info = lws_client_connect_info()
        info.context = context
        info.port = target.port
        info.ietf_version_or_minus_one = -1
        if target.tls {
            var flags = Int32(LCCSCF_USE_SSL.rawValue)
            if allowSelfSigned { flags |= Int32(LCCSCF_ALLOW_SELFSIGNED.rawValue | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK.rawValue) }
            info.ssl_connection = flags
        }
        // The wsi holds a reference until LWS_CALLBACK_WSI_DESTROY.
        info.opaque_user_data = Unmanaged.passRetained(conn).toOpaque()
        conn.wsiRetain = true
        var result: OpaquePointer?
        target.address.withCString { address in
            target.path.withCString { path in
                target.hostHeader.withCString { host in
                    withOptionalCString(target.sourceAddress) { iface in
                        info.address = address
                        info.path = path
                        info.host = host
                        info.origin = host
                        info.iface = iface
                        // lws copies these strings into its own stash.
                        result = lws_client_connect_via_info(&info)
                    }
                }
            }
        }
        if let result {
            if !conn.finished { conn.wsi = result }
        } else {
            // The wsi is gone, with or without a WSI_DESTROY callback.
            releaseWsiRetain(conn)
            finish(conn, code: nil, reason: "connect failed")
        }
    }

    /// Does what the connection's phase decided.
    private func carryOut(_ decision: ConnectionPhase.Decision, _ conn: ClientConnection) {
        switch decision {
        case .nothing:
            break
        case .sendCloseAfterQueue:
            conn.shared.withLock { $0.state = conn.phase.state }
            if let wsi = conn.wsi { lws_callback_on_writable(wsi) }
        case .dropSocket:
            if let wsi = conn.wsi { lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC) }
        case let .finish(code, reason):
            conn.rx = []
            conn.shared.withLock {
                $0.state = .closed
                $0.outbound = []
                $0.outboundHead = 0
            }
            control.withLock { $0.live -= 1 }
            conn.handlers.onClose?(conn, code, reason)
        }
    }

    fileprivate func releaseWsiRetain(_ conn: ClientConnection) {
        guard conn.wsiRetain else { return }
        conn.wsiRetain = false
        conn.wsi = nil
        Unmanaged.passUnretained(conn).release()
    }

    /// Reports the end of a connection (the phase makes it exactly once).
    fileprivate func finish(_ conn: ClientConnection, code: UInt16?, reason: String) {
        carryOut(conn.phase.end(code: code, reason: reason, loopRunning: running), conn)
    }

    // MARK: - lws callback

    fileprivate func callback(_ wsi: OpaquePointer, _ reason: lws_callback_reasons,
                              _ input: UnsafeMutableRawPointer?, _ len: Int) -> Int32 {
        switch reason {
        case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
            drain()
            return 0
        case LWS_CALLBACK_CLIENT_ESTABLISHED, LWS_CALLBACK_CLIENT_RECEIVE,
             LWS_CALLBACK_CLIENT_WRITEABLE, LWS_CALLBACK_WS_PEER_INITIATED_CLOSE,
             LWS_CALLBACK_CLIENT_CONNECTION_ERROR, LWS_CALLBACK_CLIENT_CLOSED,
             LWS_CALLBACK_WSI_DESTROY:
            break
        default:
            return 0
        }
        // Only now is `wsi` a real connection (broadcasts use a partial fake wsi).
        guard let opaque = lws_get_opaque_user_data(wsi) else { return 0 }
        let conn = Unmanaged<ClientConnection>.fromOpaque(opaque).takeUnretainedValue()

        switch reason {
        case LWS_CALLBACK_CLIENT_ESTABLISHED:
            conn.wsi = wsi
            let closing = conn.phase.established() == .sendCloseAfterQueue
            let state = conn.phase.state
            let pending: Bool = conn.shared.withLock {
                $0.state = state
                return $0.outboundHead < $0.outbound.count
            }
            if conn.readPaused { _ = lws_rx_flow_control(wsi, 0) }
            conn.handlers.onOpen?(conn)
            if pending || closing { lws_callback_on_writable(wsi) }

        case LWS_CALLBACK_CLIENT_RECEIVE:
            guard !conn.finished else { return -1 }
            let chunk = UnsafeRawBufferPointer(start: input, count: len)
            let final = lws_is_final_fragment(wsi) != 0
            if final && conn.rx.isEmpty {
                conn.deliver(chunk)
            } else {
                if conn.rx.count + len > maxMessageSize {
                    conn.rx = []
                    conn.phase.messageTooLarge()
                    lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, nil, 0)
                    return -1
                }
                conn.rx.append(contentsOf: chunk)
                if final {
                    let message = conn.rx
                    conn.rx = []
                    message.withUnsafeBytes { conn.deliver($0) }
                }
            }

        case LWS_CALLBACK_CLIENT_WRITEABLE:
            return writable(conn, wsi)

        case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
            if len >= 2, let p = input?.assumingMemoryBound(to: UInt8.self) {
                conn.phase.peerClosed(code: UInt16(p[0]) << 8 | UInt16(p[1]),
                                      reason: String(decoding: UnsafeBufferPointer(start: p + 2, count: len - 2), as: UTF8.self))
            } else {
                conn.phase.peerClosed(code: nil, reason: "")
            }
            conn.shared.withLock { $0.state = .closing }

        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
            let message = input.map { String(cString: $0.assumingMemoryBound(to: CChar.self)) }
            carryOut(conn.phase.connectionError(message), conn)

        case LWS_CALLBACK_CLIENT_CLOSED:
            carryOut(conn.phase.socketClosed(loopRunning: running), conn)

        case LWS_CALLBACK_WSI_DESTROY:
            carryOut(conn.phase.socketClosed(loopRunning: running), conn)
            releaseWsiRetain(conn)

        default:
            break
        }
        return 0
    }

    /// One queued message per writable callback keeps connections fair.
    private func writable(_ conn: ClientConnection, _ wsi: OpaquePointer) -> Int32 {
        let (frame, more): (ClientConnection.Frame?, Bool) = conn.shared.withLock { out in
            guard out.outboundHead < out.outbound.count else { return (nil, false) }
            let frame = out.outbound[out.outboundHead]
            out.outboundHead += 1
            if out.outboundHead == out.outbound.count {
                out.outbound = []
                out.outboundHead = 0
                return (frame, false)
            }
            if out.outboundHead >= 64 && out.outboundHead * 2 >= out.outbound.count {
                out.outbound.removeFirst(out.outboundHead)
                out.outboundHead = 0
            }
            return (frame, true)
        }
        guard let frame else {
            if let code = conn.phase.ourCloseCode {
                lws_close_reason(wsi, lws_close_status(rawValue: UInt32(code)), nil, 0)
                return -1
            }
            return 0
        }
        let pre = Int(clws_pre)
        let count = frame.bytes.count
        if count > scratchCapacity {
            scratch.deallocate()
            scratchCapacity = max(count, scratchCapacity * 2)
            scratch = .allocate(byteCount: scratchCapacity + pre, alignment: 16)
        }
        let body = scratch + pre
        frame.bytes.withUnsafeBytes { src in
            if let base = src.baseAddress { body.copyMemory(from: base, byteCount: count) }
        }
        let written = lws_write(wsi, body.assumingMemoryBound(to: UInt8.self), count,
                                lws_write_protocol(rawValue: frame.flags))
        if written < 0 { return -1 }
        if more || conn.phase.ourCloseCode != nil { lws_callback_on_writable(wsi) }
        return 0
    }
}

/// The loop thread's one strong reference to its loop, dropped when `run()` returns (no cycle).
private final class LoopRef: Sendable {
    private let slot: Mutex<ClientLoop?>
    init(_ loop: ClientLoop) { slot = Mutex(loop) }
    func take() -> ClientLoop? { slot.withLock { loop in defer { loop = nil }; return loop } }
}

private func withOptionalCString<R>(_ s: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let s else { return body(nil) }
    return s.withCString { body($0) }
}

private func clientCallback(_ wsi: OpaquePointer?, _ reason: lws_callback_reasons,
                            _ user: UnsafeMutableRawPointer?, _ input: UnsafeMutableRawPointer?,
                            _ len: Int) -> Int32 {
    guard let wsi, let raw = lws_context_user(lws_get_context(wsi)) else { return 0 }
    let loop = Unmanaged<ClientLoop>.fromOpaque(raw).takeUnretainedValue()
    return loop.callback(wsi, reason, input, len)
}
