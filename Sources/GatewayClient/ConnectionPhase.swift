import GatewayProtocol

/// Where one client connection is in its life, and what the loop must do on each event.
///
/// Pure: `ClientLoop` feeds it what lws reports and what the caller asks for, and carries
/// out the decisions (lws calls stay in the loop). It guarantees the one promise the
/// handlers rely on: a connection ends exactly once, with the close code that explains it.
public struct ConnectionPhase: Equatable, Sendable {
    public enum Stage: Equatable, Sendable {
        /// The connect is queued for the loop thread; there is no socket yet.
        case queued
        /// The socket and handshake are under way.
        case connecting
        case open
        /// A close frame was asked for (by us or the peer); the socket is still there.
        case closing
        /// Reported to `onClose`; nothing happens any more.
        case closed
    }

    /// What the loop does next.
    public enum Decision: Equatable, Sendable {
        case nothing
        /// Ask for a writable callback: the queued messages, then our close frame, go out.
        case sendCloseAfterQueue
        /// Drop the socket without a close frame.
        case dropSocket
        /// Report the end to `onClose` (once) and forget the connection.
        case finish(code: UInt16?, reason: String)
    }

    public private(set) var stage: Stage = .queued
    /// Our close code, once we asked an open connection to close (or it sent too large a frame).
    public private(set) var ourCloseCode: UInt16?
    /// The peer's close code (1005 for a close frame without one).
    public private(set) var peerCloseCode: UInt16?
    /// Why it closed, when known before the socket goes (peer's reason text, "aborted", ...).
    public private(set) var closeReason: String?
    /// Close or abort asked for while the connect was still queued: it is never opened.
    public private(set) var cancelled = false

    public init() {}

    /// What callers see (`ClientConnection.currentState`).
    public var state: ClientConnection.State {
        switch stage {
        case .queued, .connecting: return .connecting
        case .open: return .open
        case .closing: return .closing
        case .closed: return .closed
        }
    }

    /// The handshake completed once (stays true after the end).
    public private(set) var wasEstablished = false
    public var isFinished: Bool { stage == .closed }

    /// The loop takes the queued connect: open the socket, or end here if it was cancelled
    /// meanwhile or the loop is stopping.
    public mutating func connectDue(loopRunning: Bool) -> Decision {
        guard stage == .queued else { return .nothing }
        guard loopRunning, !cancelled else {
            return end(code: nil, reason: loopRunning ? "closed before open" : "client loop shut down", loopRunning: loopRunning)
        }
        stage = .connecting
        return .nothing
    }

    /// The WebSocket handshake completed.
    public mutating func established() -> Decision {
        guard stage == .connecting else { return .nothing }
        stage = .open
        wasEstablished = true
        // A close asked for in the same breath (a too-large frame cannot come before open).
        return ourCloseCode == nil ? .nothing : .sendCloseAfterQueue
    }

    /// The caller asked to close with `code`.
    public mutating func closeRequested(code: UInt16) -> Decision {
        guard stage != .closed, ourCloseCode == nil else { return .nothing }
        switch stage {
        case .queued:
            cancelled = true
            return .nothing
        case .connecting:
            closeReason = "closed before open"
            return .dropSocket
        case .open, .closing:
            ourCloseCode = code
            stage = .closing
            return .sendCloseAfterQueue
        case .closed:
            return .nothing
        }
    }

    /// The caller asked to drop the socket without a close frame.
    public mutating func abortRequested() -> Decision {
        switch stage {
        case .closed: return .nothing
        case .queued:
            cancelled = true
            return .nothing
        case .connecting, .open, .closing:
            closeReason = "aborted"
            return .dropSocket
        }
    }

    /// The peer sent a message over the size limit: we close with 1009.
    public mutating func messageTooLarge() {
        ourCloseCode = CloseCode.tooLarge.rawValue
    }

    /// The peer's close frame (`code` nil: the frame had no status).
    public mutating func peerClosed(code: UInt16?, reason: String) {
        guard stage != .closed else { return }
        peerCloseCode = code ?? 1005
        if code != nil { closeReason = reason }
        if stage == .open { stage = .closing }
    }

    /// lws gave up on the connection (refused, handshake failed, timed out).
    public mutating func connectionError(_ message: String?) -> Decision {
        end(code: nil, reason: message ?? "connection error", loopRunning: true)
    }

    /// The socket is gone: the peer's code wins over ours.
    public mutating func socketClosed(loopRunning: Bool) -> Decision {
        end(code: peerCloseCode ?? ourCloseCode, reason: closeReason ?? "", loopRunning: loopRunning)
    }

    /// Ends the connection once; later calls decide nothing. An empty reason without a
    /// code is filled with what most likely happened.
    public mutating func end(code: UInt16?, reason: String, loopRunning: Bool) -> Decision {
        guard stage != .closed else { return .nothing }
        var reason = reason
        if reason.isEmpty && code == nil {
            reason = !loopRunning ? "client loop shut down"
                : wasEstablished ? "connection lost without a close frame" : "connect failed"
        }
        stage = .closed
        return .finish(code: code, reason: reason)
    }
}
