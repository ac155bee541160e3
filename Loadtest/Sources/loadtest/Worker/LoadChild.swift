import ArgumentParser
import Foundation
import GatewayClient

/// What every load-generator child process does around its own connections: reads its
/// spec, opens connections at its rate without too many half-open ones, reports on stdout,
/// obeys `finish` and `exit` on stdin, and keeps its sockets until the parent lets go.
/// Subclasses (`Worker`, `ProbeWorker`) open connections, handle their frames and say
/// what a status line holds.
class LoadChild: @unchecked Sendable {
    /// Guards the subclass's counters too: frames arrive on the lws thread, reports go
    /// out from the main thread.
    let lock = NSLock()
    /// Set once the parent has let go: closes after that are ours, not failures.
    var closing = false
    private var finishRequested = false
    private var parentGone = false
    private(set) var loop: ClientLoop!
    /// The subclass's event handlers, set before `run`.
    var handlers: ClientHandlers!

    /// The spec on the first stdin line.
    static func readSpec<Spec: Decodable>(_ type: Spec.Type, _ what: String) throws -> Spec {
        signal(SIGPIPE, SIG_IGN)
        guard let line = readLine(), let spec = try? JSONDecoder().decode(Spec.self, from: Data(line.utf8)) else {
            throw ValidationError("\(what): expected a \(Spec.self) JSON line on stdin")
        }
        return spec
    }

    /// Raises the descriptor limit, checks that `needed` fit, and starts the client loop.
    /// Returns the limit (for the status line).
    func startLoop(needed: Int, who: String, rxBufferSize: Int, connectTimeout: Int) throws -> Int {
        let limit = ClientLoop.raiseOpenFileLimit()
        // No maxConnections: an fd table smaller than the ulimit makes lws look every
        // descriptor up by linear search (wsi_from_fd), O(connections) per event.
        guard limit >= needed else {
            throw ValidationError("\(who): \(needed) descriptors needed, the limit is \(limit)")
        }
        loop = try ClientLoop(rxBufferSize: rxBufferSize, connectTimeout: UInt32(connectTimeout), timeout: UInt32(connectTimeout), epoll: true)
        return limit
    }

    // MARK: What a kind of child fills in

    /// Opens local connection `i` (0-based within this child).
    func open(_ i: Int) {}

    /// Connections not settled yet; called with `lock` held.
    var unsettled: Int { 0 }

    /// Writes one status line (see `emit`).
    func report(final: Bool) {}

    /// A stdin line other than `finish` and `exit`.
    func command(_ line: String) {}

    /// Called after each periodic report with the seconds since the previous one.
    func afterReport(seconds: Double) {}

    /// A connection closed, with `lock` held; not called once the run closes on purpose.
    /// `key` names the close for the failure and drop counters.
    func closed(_ conn: ClientConnection, key: String) {}

    /// The `onClose` handler: routes closes to `closed(_:key:)`.
    var closeHandler: @Sendable (ClientConnection, UInt16?, String) -> Void {
        { [unowned self] conn, code, reason in
            let key = Self.closeKey(code, reason)
            lock.withLock { if !closing { closed(conn, key: key) } }
        }
    }

    // MARK: The run

    /// Opens `count` connections at `rate` per second (at most `maxInFlight` unsettled),
    /// reports every `reportEvery` seconds until the parent says `finish`, reports once
    /// more and holds the sockets until it says `exit` (or two minutes pass).
    func run(count: Int, rate: Double, maxInFlight: Int, reportEvery: Double, idleSleepMicros: UInt32) -> Never {
        let stdinThread = Thread { [unowned self] in
            while let line = readLine() {
                if line == "finish" { lock.withLock { finishRequested = true } }
                else if line == "exit" { break }
                else { command(line) }
            }
            lock.withLock { parentGone = true }
        }
        stdinThread.start()

        let start = Clock.now()
        var next = 0
        var lastReport = 0.0
        while true {
            let (gone, finish) = lock.withLock { (parentGone, finishRequested) }
            if gone { exit(0) }
            if finish { break }
            let now = Clock.now()
            if next < count {
                let due = min(count, Int((now - start) * rate) + 1)
                while next < due, lock.withLock({ unsettled }) < maxInFlight {
                    open(next)
                    next += 1
                }
            }
            if now - lastReport >= reportEvery {
                report(final: false)
                afterReport(seconds: now - lastReport)
                lastReport = now
            }
            usleep(next < count ? 2_000 : idleSleepMicros)
        }
        report(final: true)
        // Keep the sockets until the parent has stopped the nodes (they close first).
        let deadline = Clock.now() + 120
        while !lock.withLock({ parentGone }) && Clock.now() < deadline { usleep(20_000) }
        lock.withLock { closing = true }
        exit(0)
    }

    /// One status as a JSON line on stdout.
    func emit<Status: Encodable>(_ status: Status) {
        guard var data = try? JSONEncoder().encode(status) else { return }
        data.append(0x0A)
        FileHandle.standardOutput.write(data)
    }

    /// The counter key of a close: code and reason, bounded.
    static func closeKey(_ code: UInt16?, _ reason: String) -> String {
        String(String((code.map { "close \($0): " } ?? "") + (reason.isEmpty ? "no reason" : reason)).prefix(100))
    }

    /// The local address connection `i` binds (nil: the kernel's choice).
    static func source(_ addresses: [String], _ i: Int) -> String? {
        addresses.isEmpty ? nil : addresses[i % addresses.count]
    }
}
