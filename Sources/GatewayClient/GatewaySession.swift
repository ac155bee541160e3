import Foundation
import GatewayProtocol

/// A blocking gateway client for tests and scripts: request/reply by id, pushes in
/// arrival order. Never call its waiting methods on the loop thread.
public final class GatewaySession: Sendable {
    /// Where a channel's stream was last seen, for reconnecting with `since`.
    public typealias Position = (offset: Int64, epoch: String)

    public let connection: ClientConnection
    private let box: Box

    /// State shared with the loop thread's handlers: every field is read and written under
    /// `cond` (a condition variable, which a Mutex has not), hence unchecked.
    private final class Box: @unchecked Sendable {
        let cond = NSCondition()
        var opened = false
        var closed = false
        var closeCode: UInt16?
        var closeReason = ""
        var replies: [Int64: JSON] = [:]
        var pushes: [JSON] = []
        var pushHead = 0
        var positions: [String: Position] = [:]
        var nextID: Int64 = 2

        func record(_ channel: String?, _ offset: Int64?, _ epoch: String?) {
            guard let channel, let offset, let epoch else { return }
            if let old = positions[channel], old.epoch == epoch, old.offset >= offset { return }
            positions[channel] = (offset, epoch)
        }

        func recordReply(_ ok: JSON) {
            // connect and subscribe replies name a channel; history replies do not.
            guard let channel = ok["channel"]?.stringValue else { return }
            record(channel, ok["offset"]?.intValue, ok["epoch"]?.stringValue)
            for p in ok["publications"]?.arrayValue ?? [] {
                record(p["channel"]?.stringValue ?? channel, p["offset"]?.intValue,
                       p["epoch"]?.stringValue)
            }
        }

        func handle(_ message: JSON) {
            cond.lock()
            defer { cond.broadcast(); cond.unlock() }
            if message["push"] != nil {
                record(message["channel"]?.stringValue, message["offset"]?.intValue,
                       message["epoch"]?.stringValue)
                pushes.append(message)
            } else if let id = message["id"]?.intValue {
                if let ok = message["ok"] { recordReply(ok) }
                replies[id] = message
            } else {
                pushes.append(message)   // id-less error
            }
        }
    }

    private init(connection: ClientConnection, box: Box) {
        self.connection = connection
        self.box = box
    }

    deinit { connection.close() }

    /// Connects and sends `connect`; returns the session and the reply (which may be an
    /// error: the server closes afterwards). Throws if the socket fails or times out.
    public static func open(loop: ClientLoop, url: String, token: String?,
                            since: (offset: Int64, epoch: String)? = nil,
                            sourceAddress: String? = nil,
                            timeout: Double = 5) throws -> (GatewaySession, JSON) {
        precondition(!loop.isLoopThread, "GatewaySession blocks; not on the loop thread")
        let box = Box()
        let handlers = ClientHandlers(
            onOpen: { _ in
                box.cond.lock()
                box.opened = true
                box.cond.broadcast()
                box.cond.unlock()
            },
            onMessage: { _, message in box.handle(message) },
            onClose: { _, code, reason in
                box.cond.lock()
                box.closed = true
                box.closeCode = code
                box.closeReason = reason
                box.cond.broadcast()
                box.cond.unlock()
            })
        let conn = try loop.connect(url: url, sourceAddress: sourceAddress, handlers: handlers)
        let session = GatewaySession(connection: conn, box: box)
        let deadline = Date(timeIntervalSinceNow: timeout)

        box.cond.lock()
        while !box.opened && !box.closed {
            if !box.cond.wait(until: deadline) { break }
        }
        let opened = box.opened, closed = box.closed
        let code = box.closeCode, reason = box.closeReason
        box.cond.unlock()
        if !opened {
            conn.abort()
            if closed { throw GatewayClientError.closed(code: code, reason: reason) }
            throw GatewayClientError.timeout("WebSocket open")
        }

        var fields: [(String, JSON)] = [("id", .int(1)), ("op", .string("connect"))]
        if let token { fields.append(("token", .string(token))) }
        if let since {
            fields.append(("since", .object([("offset", .int(since.offset)), ("epoch", .string(since.epoch))])))
        }
        conn.send(JSON.object(fields).serialized())
        let reply = try session.waitReply(1, until: deadline, what: "connect reply")
        return (session, reply)
    }

    /// Sends `{"id":N,"op":op,...fields}` and returns the whole reply object (`ok` or
    /// `error`). Throws on timeout or if the connection closes first.
    public func command(_ op: String, _ fields: [(String, JSON)] = [],
                        timeout: Double = 5) throws -> JSON {
        let id: Int64 = box.cond.withLock {
            defer { box.nextID += 1 }
            return box.nextID
        }
        let message = JSON.object([("id", .int(id)), ("op", .string(op))] + fields)
        connection.send(message.serialized())
        return try waitReply(id, until: Date(timeIntervalSinceNow: timeout), what: "reply to \(op)")
    }

    /// For batched or malformed frames; take the replies with `reply(id:)`.
    public func sendRawText(_ s: String) {
        connection.send(s)
    }

    /// The reply with this id (e.g. to a command sent with `sendRawText`); nil on timeout
    /// or close.
    public func reply(id: Int64, timeout: Double = 5) -> JSON? {
        try? waitReply(id, until: Date(timeIntervalSinceNow: timeout), what: "reply")
    }

    private func waitReply(_ id: Int64, until deadline: Date, what: String) throws -> JSON {
        box.cond.lock()
        defer { box.cond.unlock() }
        while true {
            if let reply = box.replies.removeValue(forKey: id) { return reply }
            if box.closed {
                throw GatewayClientError.closed(code: box.closeCode, reason: box.closeReason)
            }
            if !box.cond.wait(until: deadline) {
                if let reply = box.replies.removeValue(forKey: id) { return reply }
                throw GatewayClientError.timeout(what)
            }
        }
    }

    /// The next push or id-less error; nil on timeout or once closed with none left.
    public func nextPush(timeout: Double = 5) -> JSON? {
        let deadline = Date(timeIntervalSinceNow: timeout)
        box.cond.lock()
        defer { box.cond.unlock() }
        while box.pushHead == box.pushes.count {
            if box.closed || !box.cond.wait(until: deadline) { break }
        }
        guard box.pushHead < box.pushes.count else { return nil }
        let push = box.pushes[box.pushHead]
        box.pushHead += 1
        if box.pushHead == box.pushes.count {
            box.pushes = []
            box.pushHead = 0
        }
        return push
    }

    /// Pushes received so far, without waiting.
    public func drainPushes() -> [JSON] {
        box.cond.withLock {
            defer { box.pushes = []; box.pushHead = 0 }
            return Array(box.pushes[box.pushHead...])
        }
    }

    /// The close code once closed (1006 if the socket ended without a close frame);
    /// nil on timeout.
    public func waitClosed(timeout: Double = 5) -> UInt16? {
        let deadline = Date(timeIntervalSinceNow: timeout)
        box.cond.lock()
        defer { box.cond.unlock() }
        while !box.closed {
            if !box.cond.wait(until: deadline) { break }
        }
        return box.closed ? (box.closeCode ?? 1006) : nil
    }

    public var isClosed: Bool { box.cond.withLock { box.closed } }

    /// Close reason text from the peer or the library (empty if none).
    public var closeReason: String { box.cond.withLock { box.closeReason } }

    /// What to do about the close, once closed (4029: reconnect later, with backoff).
    public var closeAdvice: CloseAdvice? {
        box.cond.withLock { box.closed ? CloseAdvice(closeCode: box.closeCode ?? 1006) : nil }
    }

    /// Last offset and epoch seen per channel, from pushes and connect/subscribe replies.
    public var positions: [String: Position] { box.cond.withLock { box.positions } }

    /// Where to resume `channel` from, for `since`.
    public func position(of channel: String) -> Position? {
        box.cond.withLock { box.positions[channel] }
    }

    public func close(code: UInt16 = 1000) { connection.close(code: code) }
}
