import CLibev
import CLws
import Foundation
import GatewayCore
import Logging
import Synchronization

/// What the lws server reports; every call happens on the loop thread.
public protocol ServerDelegate: AnyObject {
    func connectionOpened(_ conn: WSConnection)
    /// One whole inbound message (fragments joined), already checked against `maxFrame`.
    func connectionReceived(_ conn: WSConnection, _ message: UnsafeRawBufferPointer)
    func connectionClosed(_ conn: WSConnection)
    /// The deadline armed with `WSConnection.armDeadline` passed.
    func connectionTimer(_ conn: WSConnection)
    /// An HTTP request's headers arrived: decide on its route and credentials and give its
    /// body limit, before any of the body is read. The decision may be noted in `request.context`.
    func httpHead(_ request: HTTPRequest) -> HTTPAdmission
    /// A complete HTTP request (admitted by `httpHead`); answer with `request.respond`, now or later.
    func httpRequest(_ request: HTTPRequest)
    /// Whether a WebSocket upgrade may proceed (false while draining).
    func acceptsConnections() -> Bool
    /// Whether one more WebSocket from this source address fits; a refusal is answered
    /// HTTP 429 before the upgrade (`limits.conns_per_ip`).
    func admitsUpgrade(from peer: String) -> Bool
    /// `lws_cancel_service` interrupted the poll (a signal handler does this).
    func loopWoken()
    /// Every answer to an HTTP request, whoever gave it (the delegate or a refusal here),
    /// as it is queued for writing, `seconds` after its request line came in.
    func httpAnswered(_ request: HTTPRequest, status: Int, seconds: Double)
}

extension ServerDelegate {
    public func admitsUpgrade(from peer: String) -> Bool { true }
    public func httpAnswered(_ request: HTTPRequest, status: Int, seconds: Double) {}
}

/// What tells lws which sockets are ready (`server.event_loop`).
public enum EventLoopBackend: String, Sendable {
    /// lws' evlib_ev plugin on a libev loop over epoll: a turn costs what is ready.
    case epoll
    /// lws' own `poll()` over every socket on each turn: O(connections) per wake-up.
    case poll
}

/// Server settings the loop needs before it can listen.
public struct ListenOptions {
    public var host: String
    public var port: Int
    public var maxFrame: Int
    public var maxBody: Int
    public var pingSeconds: Int
    /// Seconds for an HTTP request's headers, and again for its body (`limits.http_timeout_s`).
    public var httpTimeoutSeconds = 10
    /// Serve TLS (`wss://`, `https://`) with these files; nil serves plain text.
    public var tls: TLSFiles?
    public var eventLoop = EventLoopBackend.epoll
    public init(host: String, port: Int, maxFrame: Int, maxBody: Int, pingSeconds: Int) {
        self.host = host
        self.port = port
        self.maxFrame = maxFrame
        self.maxBody = maxBody
        self.pingSeconds = pingSeconds
    }
}

/// One lws context serving WebSocket and HTTP on one port, plus raw descriptors
/// (hiredis) and timers, all on one thread. The only thread-safe calls are `post` and
/// `lws_cancel_service` on `context` (a signal handler wakes the loop with it: `loopWoken`).
public final class EventLoop {
    public weak var delegate: ServerDelegate?
    public let options: ListenOptions
    public private(set) var context: OpaquePointer?
    var vhost: OpaquePointer?
    public private(set) var boundPort: Int = 0
    /// The port speaks TLS: `wss://` and `https://`.
    public var isTLS: Bool { options.tls != nil }
    /// What the loop runs on: `options.eventLoop`, or poll when the libev plugin would not load.
    public private(set) var backend = EventLoopBackend.poll
    /// The libev loop lws runs on (a "foreign" loop: ours to break and destroy); nil on poll.
    private(set) var evLoop: OpaquePointer?
    private var turnProbe: TurnProbe?

    private var protocols: UnsafeMutablePointer<lws_protocols>
    private var retryPolicy: UnsafeMutablePointer<lws_retry_bo_t>
    private var names: [UnsafeMutablePointer<CChar>] = []
    /// Set by `stop()` from any thread.
    private let stopping = Atomic<Bool>(false)
    private var nextConnectionID: ConnectionID = 0
    var writeScratch: UnsafeMutableRawPointer
    var writeScratchCapacity: Int
    private var timers: [UnsafeMutableRawPointer: LoopTimer] = [:]
    let liveness: Liveness
    let httpDeadlines: HTTPDeadlines

    public init(options: ListenOptions) {
        self.options = options
        protocols = .allocate(capacity: 3)
        protocols.initialize(repeating: lws_protocols(), count: 3)
        retryPolicy = .allocate(capacity: 1)
        retryPolicy.initialize(to: lws_retry_bo_t())
        writeScratchCapacity = 64 * 1024
        writeScratch = .allocate(byteCount: Int(clws_pre) + writeScratchCapacity, alignment: 16)
        liveness = Liveness(pingSeconds: options.pingSeconds)
        httpDeadlines = HTTPDeadlines(bodySeconds: options.httpTimeoutSeconds)
    }

    deinit {
        postedLock.lock()
        wakeable = nil
        postedLock.unlock()
        if let context { lws_context_destroy(context) }
        if let evLoop {
            turnProbe?.stop(evLoop)
            for timer in timers.values { clibev_timer_stop(evLoop, timer.evTimer) }
            ev_loop_destroy(evLoop)
        }
        lwsHeartbeat.deallocate()
        protocols.deallocate()
        retryPolicy.deallocate()
        writeScratch.deallocate()
        names.forEach { free($0) }
    }

    /// Accepted sockets numbered at or above this are closed at once. Descriptors are
    /// handed out lowest first, so this keeps a reserve free for Redis, files and the
    /// listener: a process that runs out cannot accept, and lws would spin on the
    /// failing `accept` (EMFILE) and stop answering everyone.
    public private(set) var descriptorCeiling = Int.max
    /// WebSocket upgrades stop lower still, so `/healthz` and `/metrics` keep answering
    /// on a full node.
    private(set) var upgradeCeiling = Int.max
    /// Connections closed at accept because the node was at `descriptorCeiling`.
    public internal(set) var refusedForDescriptors = 0
    /// Publication `ts` to the socket write of every push written (`gateway_push_latency_seconds`).
    public let pushLatency = LatencyRecorder()

    /// Raises the soft descriptor limit to the hard one and returns the ceiling for
    /// accepted sockets.
    static func acceptCeiling() -> Int {
        var rl = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 else { return Int.max }
        if rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        }
        guard rl.rlim_cur < rlim_t(Int32.max) else { return Int.max }
        let limit = Int(rl.rlim_cur)
        return limit - min(128, max(16, limit / 16))
    }

    /// Descriptors kept for HTTP between `upgradeCeiling` and `descriptorCeiling`.
    static func httpHeadroom(_ ceiling: Int) -> Int { min(64, max(8, ceiling / 64)) }

    /// Creates the context and starts listening. Throws with the reason when the port is taken
    /// or the TLS files are unusable.
    public func start() throws {
        try options.tls?.check()
        descriptorCeiling = Self.acceptCeiling()
        upgradeCeiling = descriptorCeiling == Int.max ? Int.max : descriptorCeiling - Self.httpHeadroom(descriptorCeiling)
        lws_set_log_level(Int32(LLL_ERR)) { _, line in
            guard let line else { return }
            lwsLogger.error("lws: \(String(cString: line).trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        let gatewayName = strdup("gateway")!
        let redisName = strdup(RawDescriptor.protocolName)!
        names = [gatewayName, redisName]
        protocols[0].name = UnsafePointer(gatewayName)
        protocols[0].callback = gatewayCallback
        protocols[0].per_session_data_size = MemoryLayout<UnsafeMutableRawPointer>.size
        // lws allocates this per connection at the upgrade: it is most of an idle
        // connection's memory. Larger frames arrive in pieces and are joined.
        protocols[0].rx_buffer_size = 1024
        protocols[1].name = UnsafePointer(redisName)
        protocols[1].callback = rawDescriptorCallback
        protocols[1].per_session_data_size = MemoryLayout<UnsafeMutableRawPointer>.size

        // lws keeps its timers in one sorted linked list and walks it on every insert, so
        // a per-connection ping timer costs O(connections) per ping. Liveness is swept by
        // `Liveness` instead; lws' own validity timers stay off.
        retryPolicy.pointee.secs_since_valid_ping = 0
        retryPolicy.pointee.secs_since_valid_hangup = 0

        var info = lws_context_creation_info()
        info.port = Int32(options.port)
        let iface = strdup(options.host)!
        names.append(iface)
        info.iface = UnsafePointer(iface)
        info.protocols = UnsafePointer(protocols)
        info.options = UInt64(LWS_SERVER_OPTION_VALIDATE_UTF8) | UInt64(LWS_SERVER_OPTION_DISABLE_IPV6)
        info.retry_and_idle_policy = UnsafePointer(retryPolicy)
        info.user = Unmanaged.passUnretained(self).toOpaque()
        info.timeout_secs = 10
        // lws holds a connection's header table from its first byte: this bounds how long
        // the headers of a request may take (slowloris).
        info.timeout_secs_ah_idle = UInt32(max(options.httpTimeoutSeconds, 1))
        info.pt_serv_buf_size = 16 * 1024
        info.fd_limit_per_thread = 0
        if let tls = options.tls {
            // The vhost loads both files at creation; a plain request on the port fails its handshake.
            info.options |= UInt64(LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT)
            let cert = strdup(tls.certificate)!
            let key = strdup(tls.privateKey)!
            names += [cert, key]
            info.ssl_cert_filepath = UnsafePointer(cert)
            info.ssl_private_key_filepath = UnsafePointer(key)
            // HTTP/1.1 only: the request glue (bodies, half-close, the upgrade filter) is
            // HTTP/1, and lws would otherwise offer h2 to browsers and curl.
            let alpn = strdup("http/1.1")!
            names.append(alpn)
            info.alpn = UnsafePointer(alpn)
        }
        guard let ctx = createContext(&info) else {
            if let tls = options.tls {
                throw IOError("could not start TLS with server.tls_cert \(tls.certificate) and server.tls_key \(tls.privateKey) (does the key belong to the certificate?), or \(options.host):\(options.port) is not free")
            }
            throw IOError("could not create the lws context (is \(options.host):\(options.port) free?)")
        }
        context = ctx
        currentContext = ctx
        postedLock.lock()
        wakeable = ctx
        postedLock.unlock()
        // Runs work posted before the start and, on libev, starts lws' timers: lws arms its
        // timer watcher only after its first io event.
        lws_cancel_service(ctx)
        vhost = lws_get_vhost_by_name(ctx, "default")
        if vhost == nil {
            throw IOError("could not listen on \(options.host):\(options.port)")
        }
        let port = lws_get_vhost_listen_port(vhost)
        if port <= 0 {
            throw IOError("could not listen on \(options.host):\(options.port): the port is taken or not allowed")
        }
        boundPort = Int(port)
        if backend == .epoll { keepLwsTimersMoving() }
        tick()
    }

    /// Creates the lws context on `options.eventLoop`; when the libev plugin does not load
    /// (package `libwebsockets-evlib-ev` missing), says so and serves on poll.
    private func createContext(_ info: inout lws_context_creation_info) -> OpaquePointer? {
        if options.eventLoop == .epoll, let ev = clibev_epoll_loop() {
            var loops: [UnsafeMutableRawPointer?] = [UnsafeMutableRawPointer(ev)]
            let plain = info.options
            info.options |= UInt64(LWS_SERVER_OPTION_LIBEV)
            let ctx = loops.withUnsafeMutableBufferPointer { buffer -> OpaquePointer? in
                info.foreign_loops = buffer.baseAddress
                defer { info.foreign_loops = nil }
                return lws_create_context(&info)
            }
            if let ctx {
                evLoop = ev
                backend = .epoll
                let probe = TurnProbe()
                probe.start(ev)
                turnProbe = probe
                return ctx
            }
            ev_loop_destroy(ev)
            info.options = plain
            lwsLogger.error("lws could not run on libev/epoll (is the package libwebsockets-evlib-ev installed?): trying poll()")
        }
        backend = .poll
        return lws_create_context(&info)
    }

    /// The longest time the loop was held by one turn of work (libev: measured between
    /// waking and blocking again; poll: how late the 250 ms tick came): a stall every
    /// client on this node felt. Reset by whoever reads it.
    public var longestStallSeconds: Double {
        get { max(lateTickSeconds, turnProbe?.longestTurn ?? 0) }
        set {
            lateTickSeconds = newValue
            turnProbe?.longestTurn = newValue
        }
    }
    /// Busy time of each loop turn (libev only; empty on poll).
    public var turnSeconds: LatencyRecorder? { turnProbe?.turns }
    private var lateTickSeconds = 0.0

    /// Four times a second: connection deadlines and a slice of the ping sweep.
    private func tick() {
        let due = monotonicSeconds() + 0.25
        schedule(afterMs: 250) { [weak self] in
            guard let self else { return }
            let now = monotonicSeconds()
            if self.turnProbe == nil { self.lateTickSeconds = max(self.lateTickSeconds, now - due) }
            self.liveness.tick(now: now, delegate: self.delegate)
            self.httpDeadlines.tick(now: now)
            self.tick()
        }
    }

    /// The thread in `run()`; set in debug builds only, for `assertOnLoopThread`.
    private var loopThread: pthread_t?

    /// Traps in debug builds when called off the thread running the loop (once it runs):
    /// everything the loop owns is unsynchronised. Free in release builds.
    public func assertOnLoopThread(file: StaticString = #fileID, line: UInt = #line) {
        assert(loopThread.map { pthread_equal($0, pthread_self()) != 0 } ?? true, "off the event-loop thread", file: file, line: line)
    }

    /// Services the loop until `stop()`.
    public func run() {
        assert({ loopThread = pthread_self(); return true }())
        while !stopping.load(ordering: .acquiring), let context {
            if lws_service(context, 0) < 0 { break }
        }
    }

    /// Ends `run()`; from any thread (the loop stops at its next wake-up).
    public func stop() {
        stopping.store(true, ordering: .releasing)
        // Through `wakeable` under its lock, as `post` does: `deinit` may be destroying the context.
        postedLock.lock()
        if let wakeable { lws_cancel_service(wakeable) }
        postedLock.unlock()
    }

    /// On the loop, when `lws_cancel_service` woke it: libev's run only returns when broken.
    func breakIfStopping() {
        if stopping.load(ordering: .acquiring), let evLoop { clibev_break_all(evLoop) }
    }

    // MARK: Work from other threads

    private let postedLock = NSLock()
    private var posted: [() -> Void] = []
    /// `context` as other threads may read it (under `postedLock`).
    private var wakeable: OpaquePointer?

    /// Runs `body` on the loop thread soon, in the order posted: the one way for another
    /// thread (a worker with an HTTP answer) to hand work to the loop. Safe from any thread;
    /// work posted before `start` runs once the loop first wakes.
    public func post(_ body: @escaping () -> Void) {
        postedLock.lock()
        defer { postedLock.unlock() }
        let asleep = posted.isEmpty
        posted.append(body)
        // One wake per batch: each wake costs the loop a pass over every socket it polls, and
        // work posted before the wake is served drains with it. Under the lock: `deinit`
        // clears `wakeable` under it before destroying the context.
        if asleep, let wakeable { lws_cancel_service(wakeable) }
    }

    /// On the loop, when `lws_cancel_service` woke it.
    func runPosted() {
        postedLock.lock()
        let work = posted
        posted.removeAll()
        postedLock.unlock()
        for body in work { body() }
    }

    func newConnectionID() -> ConnectionID {
        nextConnectionID &+= 1
        if nextConnectionID == 0 { nextConnectionID = 1 }
        return nextConnectionID
    }

    // MARK: Timers

    /// Runs `body` on the loop after `ms` milliseconds; keep the timer to cancel it.
    ///
    /// On libev the node's timers are libev timers: lws re-arms its one libev timer only from
    /// its own timer and idle callbacks, and the idle one does not run while sockets keep
    /// being ready, so an lws timer set from an io callback for earlier than the one lws has
    /// armed would wait for that one (up to the 250 ms tick).
    @discardableResult
    public func schedule(afterMs ms: Int, _ body: @escaping () -> Void) -> LoopTimer {
        let timer = LoopTimer(loop: self, body: body)
        timers[timer.handle] = timer
        if let evLoop {
            clibev_timer_start(evLoop, timer.evTimer, Double(max(ms, 0)) / 1_000, { _, watcher, _ in
                guard let watcher, let data = watcher.pointee.data else { return }
                Unmanaged<EventLoop>.fromOpaque(data).takeUnretainedValue().timerFired(UnsafeMutableRawPointer(watcher))
            }, Unmanaged.passUnretained(self).toOpaque())
        } else {
            lws_sul_schedule(context, 0, timer.sul, loopTimerFired, lws_usec_t(ms) * 1000)
        }
        return timer
    }

    fileprivate func timerFired(_ handle: UnsafeMutableRawPointer) {
        guard let timer = timers.removeValue(forKey: handle) else { return }
        timer.body()
    }

    fileprivate func cancelTimer(_ timer: LoopTimer) {
        guard timers.removeValue(forKey: timer.handle) != nil else { return }
        if let evLoop { clibev_timer_stop(evLoop, timer.evTimer) } else { lws_sul_cancel(timer.sul) }
    }

    /// lws' own timers (wsi timeouts, `LWS_TO_KILL_ASYNC`) on libev: set from an io callback
    /// they wait for the timer lws has armed (see `schedule`). This lws timer, always armed,
    /// bounds that wait to 100 ms.
    private func keepLwsTimersMoving() {
        lwsHeartbeat.initialize(to: lws_sorted_usec_list_t())
        lws_sul_schedule(context, 0, lwsHeartbeat, lwsHeartbeatFired, 100_000)
    }
    fileprivate let lwsHeartbeat = UnsafeMutablePointer<lws_sorted_usec_list_t>.allocate(capacity: 1)
}

private func lwsHeartbeatFired(_ sul: UnsafeMutablePointer<lws_sorted_usec_list_t>?) {
    guard let sul, let ctx = currentContext else { return }
    lws_sul_schedule(ctx, 0, sul, lwsHeartbeatFired, 100_000)
}

/// A one-shot timer on the loop: a libev timer (epoll) or an lws sorted-usec list entry (poll).
public final class LoopTimer {
    /// Room for either; the loop knows which it is.
    fileprivate let handle: UnsafeMutableRawPointer
    fileprivate let body: () -> Void
    private weak var loop: EventLoop?

    fileprivate var sul: UnsafeMutablePointer<lws_sorted_usec_list_t> { handle.assumingMemoryBound(to: lws_sorted_usec_list_t.self) }
    fileprivate var evTimer: UnsafeMutablePointer<ev_timer> { handle.assumingMemoryBound(to: ev_timer.self) }

    fileprivate init(loop: EventLoop, body: @escaping () -> Void) {
        self.loop = loop
        self.body = body
        let size = max(MemoryLayout<lws_sorted_usec_list_t>.size, MemoryLayout<ev_timer>.size)
        handle = .allocate(byteCount: size, alignment: 16)
        handle.initializeMemory(as: UInt8.self, repeating: 0, count: size)
    }

    deinit { handle.deallocate() }

    public func cancel() { loop?.cancelTimer(self) }
}

public struct IOError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

private func loopTimerFired(_ sul: UnsafeMutablePointer<lws_sorted_usec_list_t>?) {
    guard let sul, let ctx = currentContext else { return }
    loopOf(ctx)?.timerFired(UnsafeMutableRawPointer(sul))
}

/// lws gives timer callbacks only the list entry; there is one loop per process.
nonisolated(unsafe) private var currentContext: OpaquePointer?

func loopOf(_ ctx: OpaquePointer?) -> EventLoop? {
    guard let ctx, let user = lws_context_user(ctx) else { return nil }
    return Unmanaged<EventLoop>.fromOpaque(user).takeUnretainedValue()
}

/// Seconds on a monotonic clock, coarse enough for liveness.
/// lws' own error lines, as JSON lines like the node's (the process bootstraps the handler).
private let lwsLogger = Logger(label: "lws")

/// Milliseconds since the epoch, the clock of a publication's `ts`.
func wallClockMs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000 + Int64(ts.tv_nsec) / 1_000_000
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Pings idle connections, drops dead ones and fires connect deadlines without a timer
/// per connection: every connection is visited twice per ping interval, a slice per
/// tick, and deadlines (all of one length) wait in arrival order. What a visit does is
/// each connection's `PeerLiveness`.
final class Liveness {
    let pingSeconds: Double
    private var ring: [WSConnection] = []
    private var cursor = 0
    private var deadlines = FIFO<(at: Double, conn: WSConnection)>()

    init(pingSeconds: Int) {
        self.pingSeconds = Double(max(pingSeconds, 1))
    }

    func add(_ conn: WSConnection) { ring.append(conn) }

    func arm(_ conn: WSConnection, at: Double) { deadlines.append((at, conn)) }

    func tick(now: Double, delegate: ServerDelegate?) {
        while let first = deadlines.peek(), first.at <= now {
            _ = deadlines.popFirst()
            if first.conn.deadlineArmed && !first.conn.isGone {
                first.conn.deadlineArmed = false
                delegate?.connectionTimer(first.conn)
            }
        }
        // Four ticks a second, each connection visited every half ping interval.
        var budget = Int((Double(ring.count) / (pingSeconds * 2)).rounded(.up))
        while budget > 0 && !ring.isEmpty {
            if cursor >= ring.count { cursor = 0 }
            let conn = ring[cursor]
            if conn.isGone {
                ring.swapAt(cursor, ring.count - 1)
                ring.removeLast()
                continue
            }
            budget -= 1
            cursor += 1
            conn.checkLiveness(at: now)
        }
    }
}
