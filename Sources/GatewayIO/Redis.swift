import CHiredis
import CLws
import Foundation
@_exported import GatewayRedis

extension RedisReply {
    /// Copies a hiredis reply out, so it outlives the callback.
    public init(_ r: UnsafeMutablePointer<redisReply>) {
        let reply = r.pointee
        switch Int32(reply.type) {
        case REDIS_REPLY_STRING:
            self = .string(Array(UnsafeRawBufferPointer(start: reply.str, count: Int(reply.len))))
        case REDIS_REPLY_STATUS:
            self = .status(String(cString: reply.str))
        case REDIS_REPLY_INTEGER:
            self = .integer(reply.integer)
        case REDIS_REPLY_ARRAY:
            var items: [RedisReply] = []
            items.reserveCapacity(Int(reply.elements))
            for i in 0..<Int(reply.elements) {
                if let e = reply.element[i] { items.append(RedisReply(e)) } else { items.append(.null) }
            }
            self = .array(items)
        case REDIS_REPLY_ERROR:
            self = .error(String(cString: reply.str))
        default:
            self = .null
        }
    }
}

/// A descriptor lws polls for us (hiredis' socket, adopted as a raw file). lws polls a
/// dup of the socket so that lws and hiredis each close their own descriptor.
final class RawDescriptor {
    static let protocolName = "redis-raw"
    var wsi: OpaquePointer?
    weak var owner: RedisConnection?

    init(owner: RedisConnection) { self.owner = owner }
}

func rawDescriptorCallback(_ wsi: OpaquePointer?, _ reason: lws_callback_reasons, _ user: UnsafeMutableRawPointer?,
                           _ input: UnsafeMutableRawPointer?, _ len: Int) -> Int32 {
    let slot = user?.assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
    let raw: RawDescriptor? = slot?.pointee.map { Unmanaged<RawDescriptor>.fromOpaque($0).takeUnretainedValue() }
    switch reason {
    case LWS_CALLBACK_RAW_ADOPT_FILE:
        return 0
    case LWS_CALLBACK_RAW_RX_FILE:
        guard let raw, raw.wsi != nil else { return -1 }
        raw.owner?.handleRead()
        return raw.wsi == nil ? -1 : 0
    case LWS_CALLBACK_RAW_WRITEABLE_FILE:
        guard let raw, raw.wsi != nil else { return -1 }
        raw.owner?.handleWrite()
        return raw.wsi == nil ? -1 : 0
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        if let raw, let slot {
            let wasAttached = raw.wsi != nil
            raw.wsi = nil
            slot.pointee = nil
            if wasAttached { raw.owner?.descriptorClosed() }
            // Balances the retain taken when the descriptor was stored in the slot.
            Unmanaged.passUnretained(raw).release()
        }
        return 0
    default:
        return 0
    }
}

/// One hiredis async connection driven by the lws loop. Commands pipeline; replies
/// come back on the loop thread in order. Pub/sub messages go to `onMessage`.
///
/// Lifetime: hiredis owns the context until it frees it (`cleanup` is the one hook it
/// always calls, exactly once, right before `redisFree`). Until then this object keeps
/// itself alive and its descriptor adopted in the loop, so replies are still read and
/// every pending callback runs exactly once — with the reply, or `.disconnected` when
/// the context is freed. Dropping the last outside reference never strands a context.
public final class RedisConnection {
    public let endpoint: RedisEndpoint
    unowned let loop: EventLoop
    private var context: UnsafeMutablePointer<redisAsyncContext>?
    private var raw: RawDescriptor?
    /// Set while hiredis holds a context pointing at us; released a loop turn after it freed it.
    private var keepAlive: RedisConnection?
    public private(set) var isConnected = false
    /// `close()` was called: no new commands, the context is on its way out.
    private var closing = false
    public var onConnect: ((RedisConnection) -> Void)?
    public var onDisconnect: ((RedisConnection, String) -> Void)?
    /// Pub/sub deliveries: kind (`message`, `subscribe`, `unsubscribe`), channel, payload;
    /// kind `error` (no channel, the message as payload) for a refused command.
    public var onPubSub: ((String, [UInt8], [UInt8]) -> Void)?
    private var lastError = ""
    /// Send times (monotonic ns) of commands still waiting for their reply, oldest first
    /// from `sentHead`. Replies to `send` come back in send order, so each retires the head:
    /// the stall watchdog reads the oldest wait without scanning anything.
    private var sentAt: [UInt64] = []
    private var sentHead = 0
    /// When `connect()` started, until hiredis reports the connect (a black-holed SYN waits too).
    private var connectStartedAt: UInt64?

    public init(loop: EventLoop, endpoint: RedisEndpoint) {
        self.loop = loop
        self.endpoint = endpoint
    }

    public convenience init(loop: EventLoop, host: String, port: Int) {
        self.init(loop: loop, endpoint: .tcp(host: host, port: port))
    }

    /// True while hiredis still holds a context of this connection (tests, metrics).
    public var hasContext: Bool { context != nil }

    /// Since when (monotonic ns, `DispatchTime.uptimeNanoseconds`) this connection has been
    /// waiting on Redis: the connect still under way, else the oldest command sent with
    /// `send` and not answered yet; nil when it waits for nothing. SUBSCRIBE and the
    /// messages of a pub/sub connection are not counted (they need no answer).
    public var waitingSince: UInt64? {
        guard context != nil else { return nil }
        if let connectStartedAt { return connectStartedAt }
        return sentHead < sentAt.count ? sentAt[sentHead] : nil
    }

    /// A reply (or `.disconnected`) retired the oldest command.
    private func answered() {
        guard sentHead < sentAt.count else { return }
        sentHead += 1
        if sentHead == sentAt.count {
            sentAt.removeAll(keepingCapacity: sentAt.count <= 1_024)
            sentHead = 0
        } else if sentHead >= 1_024, sentHead * 2 >= sentAt.count {
            sentAt.removeFirst(sentHead)
            sentHead = 0
        }
    }

    /// Starts a non-blocking connect; `onConnect` or `onDisconnect` follows.
    public func connect() {
        guard context == nil, !closing else { return }
        let made: UnsafeMutablePointer<redisAsyncContext>?
        switch endpoint {
        case .tcp(let host, let port): made = redisAsyncConnect(host, Int32(port))
        case .unix(let path): made = redisAsyncConnectUnix(path)
        }
        guard let ac = made else {
            fail("out of memory")
            return
        }
        if chiredis_err(ac) != 0 {
            let message = String(cString: chiredis_errstr(ac))
            redisAsyncFree(ac)
            fail(message)
            return
        }
        if case .tcp = endpoint { _ = chiredis_keepalive(ac) }
        let dupfd = dup(chiredis_fd(ac))
        guard dupfd >= 0, let vhost = loop.vhost,
              let wsi = lws_adopt_descriptor_vhost(vhost, LWS_ADOPT_RAW_FILE_DESC, clws_filefd(dupfd),
                                                   RawDescriptor.protocolName, nil) else {
            if dupfd >= 0 { Glibc.close(dupfd) }
            redisAsyncFree(ac)
            fail("could not adopt the Redis socket into the loop")
            return
        }
        context = ac
        connectStartedAt = DispatchTime.now().uptimeNanoseconds
        keepAlive = self
        ac.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let raw = RawDescriptor(owner: self)
        raw.wsi = wsi
        if let slot = lws_wsi_user(wsi)?.assumingMemoryBound(to: UnsafeMutableRawPointer?.self) {
            slot.pointee = Unmanaged.passRetained(raw).toOpaque()
        }
        self.raw = raw
        chiredis_attach(ac, Unmanaged.passUnretained(self).toOpaque(),
                        { _ in }, { _ in }, redisAddWrite, { _ in }, redisCleanup)
        redisAsyncSetConnectCallback(ac, redisConnected)
        redisAsyncSetDisconnectCallback(ac, redisDisconnected)
    }

    /// Closes the connection now: hiredis frees the context, every pending callback gets
    /// `.disconnected` once, and both descriptors are closed. `onDisconnect` still fires
    /// when it was connected (detach it first to ignore it). Safe inside a reply callback
    /// of this connection (hiredis then frees it when the callback returns).
    public func close() {
        isConnected = false
        closing = true
        guard let ac = context else { return }
        guard !inConnectCallback else {
            // hiredis goes on using the context after the connect callback returns: free it
            // on the next loop turn instead.
            loop.schedule(afterMs: 0) { [self] in if let ac = context { redisAsyncFree(ac) } }
            return
        }
        redisAsyncFree(ac)
    }

    /// Inside `onConnect`, which hiredis does not guard against a free from inside it.
    private var inConnectCallback = false

    /// Old name of `close()`: pending replies are not awaited (nothing may be left to read them).
    public func disconnect() { close() }

    /// Sends a command; `callback` runs once with the reply (or `.disconnected`).
    public func send(_ args: [RedisArgument], _ callback: @escaping (RedisReply) -> Void) {
        guard let ac = context, isConnected, !routesAllReplies else {
            callback(.disconnected)
            return
        }
        let box = Unmanaged.passRetained(ReplyBox { [weak self] reply in
            self?.answered()
            callback(reply)
        }).toOpaque()
        if !sendArgv(ac, args.map(\.redisBytes), redisReplyCallback, box) {
            Unmanaged<ReplyBox>.fromOpaque(box).release()
            callback(.disconnected)
            return
        }
        sentAt.append(DispatchTime.now().uptimeNanoseconds)
    }

    /// Set once the connection only receives pushes (see `pubsub`).
    private var routesAllReplies = false

    /// SSUBSCRIBE/SUNSUBSCRIBE (or any pub/sub command) on a pub/sub connection: its answers
    /// and the messages come through `onPubSub`. The first call turns the connection into one
    /// that hands every reply to `onPubSub` (hiredis 0.14 has no notion of sharded pub/sub);
    /// `send` is refused on it from then on.
    public func pubsub(_ command: String, _ channels: [String]) {
        guard let ac = context, isConnected, !channels.isEmpty else { return }
        if !routesAllReplies {
            // The one queued callback, re-queued after every reply; nothing else may be waiting.
            guard sentHead == sentAt.count else { return }
            let queued = withArgv([Array("PING".utf8)]) { argc, argv, lengths in
                chiredis_command_argv(ac, redisPubSubCallback, Unmanaged.passUnretained(self).toOpaque(), argc, argv, lengths)
            }
            guard queued == REDIS_OK else { return }
            chiredis_route_all_replies(ac)
            routesAllReplies = true
        }
        let args = [Array(command.utf8)] + channels.map { Array($0.utf8) }
        if withArgv(args, { argc, argv, lengths in chiredis_append_argv(ac, argc, argv, lengths) }) == REDIS_OK {
            wantWrite()
        }
    }

    private func sendArgv(_ ac: UnsafeMutablePointer<redisAsyncContext>, _ args: [[UInt8]],
                          _ fn: @escaping @convention(c) (UnsafeMutablePointer<redisAsyncContext>?, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void,
                          _ privdata: UnsafeMutableRawPointer) -> Bool {
        withArgv(args) { argc, argv, lengths in chiredis_command_argv(ac, fn, privdata, argc, argv, lengths) } == REDIS_OK
    }

    /// Runs `body` with the arguments as C argv/length arrays (hiredis copies them into its
    /// output buffer before returning). All arguments share one block: one allocation per
    /// command, not one per argument.
    private func withArgv(_ args: [[UInt8]],
                          _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int>?) -> Int32) -> Int32 {
        var total = 0
        for arg in args { total += arg.count }
        let block = UnsafeMutableRawPointer.allocate(byteCount: max(total, 1), alignment: 1)
        defer { block.deallocate() }
        var pointers: [UnsafePointer<CChar>?] = []
        var lengths: [Int] = []
        pointers.reserveCapacity(args.count)
        lengths.reserveCapacity(args.count)
        var offset = 0
        for arg in args {
            let start = block + offset
            arg.withUnsafeBytes { b in
                if let base = b.baseAddress { start.copyMemory(from: base, byteCount: b.count) }
            }
            pointers.append(UnsafePointer(start.assumingMemoryBound(to: CChar.self)))
            lengths.append(arg.count)
            offset += arg.count
        }
        return pointers.withUnsafeMutableBufferPointer { pp in
            lengths.withUnsafeBufferPointer { lp in body(Int32(args.count), pp.baseAddress, lp.baseAddress) }
        }
    }

    fileprivate func connected(status: Int32) {
        connectStartedAt = nil
        if status != REDIS_OK {
            if let ac = context { lastError = String(cString: chiredis_conn_errstr(ac)) }
            if lastError.isEmpty { lastError = "connect failed" }
            // hiredis frees the context right after this callback (`cleanup` follows), and
            // this callback is not guarded against a free from inside it: forget the context
            // so that `close()` from `onDisconnect` cannot free it twice.
            context = nil
            isConnected = false
            if !closing { onDisconnect?(self, lastError) }
            return
        }
        if closing { return }
        isConnected = true
        inConnectCallback = true
        onConnect?(self)
        inConnectCallback = false
    }

    fileprivate func disconnected(status: Int32) {
        let wasConnected = isConnected
        isConnected = false
        if status != REDIS_OK && lastError.isEmpty { lastError = "connection lost" }
        if wasConnected || !lastError.isEmpty { onDisconnect?(self, lastError.isEmpty ? "connection closed" : lastError) }
    }

    private func fail(_ message: String) {
        isConnected = false
        onDisconnect?(self, message)
    }

    fileprivate func wantWrite() {
        if let wsi = raw?.wsi { lws_callback_on_writable(wsi) }
    }

    /// hiredis is about to free the context and close its descriptor (called exactly once).
    fileprivate func cleanup() {
        if let ac = context, chiredis_err(ac) != 0 { lastError = String(cString: chiredis_errstr(ac)) }
        // Retire lws' duplicate of the descriptor too.
        if let raw, let wsi = raw.wsi {
            raw.wsi = nil
            lws_set_timeout(wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC)
        }
        raw = nil
        context = nil
        connectStartedAt = nil
        // hiredis still calls the disconnect callback with our pointer after this: let go
        // of ourselves only once it is done with the context.
        if let me = keepAlive {
            keepAlive = nil
            loop.schedule(afterMs: 0) { _ = me }
        }
    }

    func handleRead() { if let ac = context { redisAsyncHandleRead(ac) } }
    func handleWrite() { if let ac = context { redisAsyncHandleWrite(ac) } }

    /// lws saw the descriptor hang up before hiredis did: let hiredis find out.
    func descriptorClosed() {
        raw = nil
        if let ac = context { redisAsyncHandleRead(ac) }
        // Still not freed (a hang-up hiredis did not see as one): nothing would drive it any more.
        if let ac = context {
            isConnected = false
            lastError = lastError.isEmpty ? "connection lost" : lastError
            redisAsyncFree(ac)
        }
    }

    fileprivate func pubsubReply(_ reply: RedisReply) {
        // A refused SSUBSCRIBE (Redis Cluster: `MOVED` when the slot lives elsewhere).
        if case .error(let message) = reply { return onPubSub?("error", [], Array(message.utf8)) ?? () }
        guard case .array(let items) = reply, items.count >= 3, let kind = items[0].text,
              let channel = items[1].bytes else { return }
        let payload = items[2].bytes ?? []
        onPubSub?(kind, channel, payload)
    }
}

final class ReplyBox {
    let callback: (RedisReply) -> Void
    init(_ c: @escaping (RedisReply) -> Void) { callback = c }
}

private func owner(_ ac: UnsafePointer<redisAsyncContext>?) -> RedisConnection? {
    guard let data = ac?.pointee.data else { return nil }
    return Unmanaged<RedisConnection>.fromOpaque(data).takeUnretainedValue()
}

private func redisAddWrite(_ data: UnsafeMutableRawPointer?) {
    guard let data else { return }
    Unmanaged<RedisConnection>.fromOpaque(data).takeUnretainedValue().wantWrite()
}

private func redisCleanup(_ data: UnsafeMutableRawPointer?) {
    guard let data else { return }
    Unmanaged<RedisConnection>.fromOpaque(data).takeUnretainedValue().cleanup()
}

private func redisConnected(_ ac: UnsafePointer<redisAsyncContext>?, _ status: Int32) {
    owner(ac)?.connected(status: status)
}

private func redisDisconnected(_ ac: UnsafePointer<redisAsyncContext>?, _ status: Int32) {
    owner(ac)?.disconnected(status: status)
}

private func redisReplyCallback(_ ac: UnsafeMutablePointer<redisAsyncContext>?, _ r: UnsafeMutableRawPointer?,
                                _ privdata: UnsafeMutableRawPointer?) {
    guard let privdata else { return }
    let box = Unmanaged<ReplyBox>.fromOpaque(privdata).takeRetainedValue()
    if let r { box.callback(RedisReply(r.assumingMemoryBound(to: redisReply.self))) } else { box.callback(.disconnected) }
}

private func redisPubSubCallback(_ ac: UnsafeMutablePointer<redisAsyncContext>?, _ r: UnsafeMutableRawPointer?,
                                 _ privdata: UnsafeMutableRawPointer?) {
    guard let r, let privdata else { return }
    let conn = Unmanaged<RedisConnection>.fromOpaque(privdata).takeUnretainedValue()
    conn.pubsubReply(RedisReply(r.assumingMemoryBound(to: redisReply.self)))
}
