import CLws
import GatewayProtocol
import Synchronization

/// Event handlers, called on the loop thread (so they are `@Sendable`: they are made on
/// another). A class so thousands of connections can share one set: each handler gets the
/// connection (and its `userData`).
public final class ClientHandlers: Sendable {
    public let onOpen: (@Sendable (ClientConnection) -> Void)?
    /// A whole message (fragments reassembled), text or binary.
    public let onText: (@Sendable (ClientConnection, [UInt8]) -> Void)?
    /// Each `\n`-separated JSON object of a message; lines that are not JSON are skipped
    /// (they still reach `onText`).
    public let onMessage: (@Sendable (ClientConnection, JSON) -> Void)?
    /// Called once. `code` is the peer's close code (1005 if its close frame had none),
    /// or ours if we closed first; nil when the socket ended without a close handshake.
    public let onClose: (@Sendable (ClientConnection, UInt16?, String) -> Void)?

    public init(onOpen: (@Sendable (ClientConnection) -> Void)? = nil,
                onText: (@Sendable (ClientConnection, [UInt8]) -> Void)? = nil,
                onMessage: (@Sendable (ClientConnection, JSON) -> Void)? = nil,
                onClose: (@Sendable (ClientConnection, UInt16?, String) -> Void)? = nil) {
        self.onOpen = onOpen
        self.onText = onText
        self.onMessage = onMessage
        self.onClose = onClose
    }
}

/// One WebSocket client connection on a `ClientLoop`. Methods are thread-safe; they
/// queue work for the loop thread.
///
/// Sendable by confinement: what callers' threads touch is in `shared` (a Mutex); the
/// lws side (`wsi`, `rx`, `phase`, ...) belongs to the loop thread.
public final class ClientConnection: @unchecked Sendable {
    public enum State: UInt8, Sendable { case connecting, open, closing, closed }

    public enum FrameKind: Sendable { case text, binary, ping }

    struct Frame {
        var bytes: [UInt8]
        var flags: UInt32
    }

    /// The state callers see and the messages they queued for the loop thread.
    struct Shared {
        var state: State = .connecting
        var outbound: [Frame] = []
        var outboundHead = 0
        var writePosted = false
    }

    public let loop: ClientLoop
    public let handlers: ClientHandlers
    /// Caller's per-connection object, so shared handlers need no lookup table (the handlers
    /// get it on the loop thread, hence Sendable).
    public let userData: (any AnyObject & Sendable)?

    let shared = Mutex(Shared())

    // Loop thread only.
    var wsi: OpaquePointer?
    var rx: [UInt8] = []
    var phase = ConnectionPhase()
    var wsiRetain = false
    var readPaused = false

    var established: Bool { phase.wasEstablished }
    var finished: Bool { phase.isFinished }
    var cancelled: Bool { phase.cancelled }

    init(loop: ClientLoop, handlers: ClientHandlers, userData: (any AnyObject & Sendable)?) {
        self.loop = loop
        self.handlers = handlers
        self.userData = userData
    }

    public var currentState: State { shared.withLock { $0.state } }
    public var isOpen: Bool { currentState == .open }
    public var isClosed: Bool { currentState == .closed }

    /// Messages queued but not yet handed to the socket.
    public var queuedCount: Int { shared.withLock { $0.outbound.count - $0.outboundHead } }

    /// Queues a text message; sent once open. False if the connection is closing.
    @discardableResult
    public func send(_ text: String) -> Bool {
        enqueue([Frame(bytes: Array(text.utf8), flags: LWS_WRITE_TEXT.rawValue)])
    }

    /// Queues a message from bytes (no size limit; oversize frames go out as one frame).
    @discardableResult
    public func send(bytes: [UInt8], binary: Bool = false) -> Bool {
        let op = binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT
        return enqueue([Frame(bytes: bytes, flags: op.rawValue)])
    }

    /// For protocol tests: a message split into frames of `fragmentSize` bytes (0: one
    /// frame), or a ping (payload up to 125 bytes).
    @discardableResult
    public func sendRaw(_ bytes: [UInt8], kind: FrameKind = .text, fragmentSize: Int = 0) -> Bool {
        let first: UInt32
        switch kind {
        case .text: first = LWS_WRITE_TEXT.rawValue
        case .binary: first = LWS_WRITE_BINARY.rawValue
        case .ping: return enqueue([Frame(bytes: bytes, flags: LWS_WRITE_PING.rawValue)])
        }
        guard fragmentSize > 0, bytes.count > fragmentSize else {
            return enqueue([Frame(bytes: bytes, flags: first)])
        }
        var frames: [Frame] = []
        var start = 0
        while start < bytes.count {
            let end = min(start + fragmentSize, bytes.count)
            var flags = start == 0 ? first : LWS_WRITE_CONTINUATION.rawValue
            if end < bytes.count { flags |= LWS_WRITE_NO_FIN.rawValue }
            frames.append(Frame(bytes: Array(bytes[start..<end]), flags: flags))
            start = end
        }
        return enqueue(frames)
    }

    /// Sends a close frame after the queued messages; before open, just drops the socket.
    public func close(code: UInt16 = 1000) {
        loop.post(.close(self, code))
    }

    /// Drops the socket without a close frame.
    public func abort() {
        loop.post(.abort(self))
    }

    /// Stops reading the socket so the server's send queue grows (slow-consumer tests).
    public func pauseReading() { loop.post(.readFlow(self, false)) }

    public func resumeReading() { loop.post(.readFlow(self, true)) }

    private func enqueue(_ frames: [Frame]) -> Bool {
        let post: Bool? = shared.withLock {
            guard $0.state == .connecting || $0.state == .open else { return nil }
            $0.outbound.append(contentsOf: frames)
            if $0.writePosted || $0.state == .connecting { return false }
            $0.writePosted = true
            return true
        }
        guard let post else { return false }
        if post { loop.post(.write(self)) }
        return true
    }

    /// Hands one complete message to the handlers (loop thread).
    func deliver(_ message: UnsafeRawBufferPointer) {
        if let onText = handlers.onText { onText(self, Array(message)) }
        guard let onMessage = handlers.onMessage else { return }
        var start = 0
        let count = message.count
        while start < count {
            var end = start
            while end < count && message[end] != 0x0A { end += 1 }
            var lo = start, hi = end
            while lo < hi, message[lo] == 0x20 || message[lo] == 0x0D || message[lo] == 0x09 { lo += 1 }
            while hi > lo, message[hi - 1] == 0x20 || message[hi - 1] == 0x0D || message[hi - 1] == 0x09 { hi -= 1 }
            if hi > lo, let json = try? JSON.parse(UnsafeRawBufferPointer(rebasing: message[lo..<hi])) {
                onMessage(self, json)
            }
            start = end + 1
        }
    }
}
