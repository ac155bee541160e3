import ArgumentParser
import Foundation
import GatewayAuth
import GatewayClient
import GatewayProtocol

/// `loadtest worker`: a child process that opens its share of the connections and
/// reports counters as JSON lines. Started by the scenarios, not by people.
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Internal: one load-generator process (reads its spec on stdin).",
        shouldDisplay: false)

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        guard let line = readLine(), let spec = try? JSONDecoder().decode(WorkerSpec.self, from: Data(line.utf8)) else {
            throw ValidationError("worker: expected a WorkerSpec JSON line on stdin")
        }
        try Worker(spec: spec).run()
    }
}

/// One client connection's view of its stream.
final class Peer {
    enum State { case connecting, connected, subscribing, subscribed, failed, closed }
    let node: Int
    let channel: Int
    let started: Int64
    var state = State.connecting
    /// Next offset wanted on the subscribed channel.
    var expected: Int64 = 0
    var holes: Set<Int64> = []

    init(node: Int, channel: Int, started: Int64) {
        self.node = node
        self.channel = channel
        self.started = started
    }
}

final class Worker {
    let spec: WorkerSpec
    private let lock = NSLock()
    private var status: WorkerStatus
    private var interval = Latency()
    private var connectLatency = Latency()
    private var peers: [Peer] = []
    private var pendingSubscribes = 0
    private var closing = false
    private var finishRequested = false
    private var parentGone = false
    private let channelBytes: [[UInt8]]
    private let subscribeFrames: [String]
    private let minter: TokenMinter
    private let tokenExp: Int64
    private var loop: ClientLoop!
    private var handlers: ClientHandlers!

    init(spec: WorkerSpec) {
        self.spec = spec
        status = WorkerStatus(worker: spec.index)
        status.connectedPerNode = Array(repeating: 0, count: spec.urls.count)
        // The closing quote makes "product:p1" not match "product:p10".
        channelBytes = spec.channels.map { Array($0.utf8) + [0x22] }
        subscribeFrames = spec.channels.map { #"{"id":2,"op":"subscribe","channel":"\#($0)"}"# }
        minter = TokenMinter(secret: spec.secret)
        tokenExp = Int64(Date().timeIntervalSince1970) + Int64(spec.tokenTTL)
    }

    func run() throws {
        status.fdLimit = ClientLoop.raiseOpenFileLimit()
        // No maxConnections: an fd table smaller than the ulimit makes lws look every
        // descriptor up by linear search (wsi_from_fd), O(connections) per event.
        guard status.fdLimit >= spec.count + 64 else {
            throw ValidationError("worker \(spec.index): \(spec.count) connections need \(spec.count + 64) descriptors, the limit is \(status.fdLimit)")
        }
        loop = try ClientLoop(rxBufferSize: spec.rxBufferSize, connectTimeout: UInt32(spec.connectTimeout),
                              timeout: UInt32(spec.connectTimeout))
        handlers = ClientHandlers(
            onOpen: { [unowned self] _ in lock.withLock { status.opened += 1 } },
            onText: { [unowned self] conn, bytes in received(conn, bytes) },
            onClose: { [unowned self] conn, code, reason in closed(conn, code, reason) })

        let stdinThread = Thread { [unowned self] in
            while let line = readLine() {
                if line == "finish" { lock.withLock { finishRequested = true } }
                if line == "exit" { break }
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
            if next < spec.count {
                let due = min(spec.count, Int((now - start) * spec.rate) + 1)
                while next < due, lock.withLock({ status.inFlight }) < spec.maxInFlight {
                    open(next)
                    next += 1
                }
            }
            if now - lastReport >= 0.5 {
                report(final: false)
                lastReport = now
            }
            usleep(next < spec.count ? 2_000 : 20_000)
        }
        report(final: true)
        // Keep the sockets until the parent has stopped the nodes (they close first).
        let deadline = Clock.now() + 120
        while !lock.withLock({ parentGone }) && Clock.now() < deadline { usleep(20_000) }
        lock.withLock { closing = true }
        exit(0)
    }

    private func open(_ i: Int) {
        let g = spec.first + i
        let peer = Peer(node: g % spec.urls.count, channel: spec.channels.isEmpty ? -1 : g % spec.channels.count,
                        started: Clock.unixMicros())
        let token = minter.mint(Claims(sub: "\(spec.userPrefix)\(g)", exp: tokenExp))
        let source = spec.sourceAddresses.isEmpty ? nil : spec.sourceAddresses[i % spec.sourceAddresses.count]
        lock.withLock {
            status.attempted += 1
            if status.firstAttemptMicros == nil { status.firstAttemptMicros = peer.started }
            peers.append(peer)
        }
        do {
            let conn = try loop.connect(url: spec.urls[peer.node], sourceAddress: source, userData: peer, handlers: handlers)
            conn.send(#"{"id":1,"op":"connect","token":"\#(token)"}"#)
        } catch {
            lock.withLock {
                if peer.state == .connecting {
                    peer.state = .failed
                    status.failed += 1
                    status.failures["\(error)", default: 0] += 1
                }
            }
        }
    }

    // MARK: Loop thread

    private static let pushPrefix = Array(#"{"push":"#.utf8)
    private static let channelKey = Array(#""channel":""#.utf8)
    private static let offsetKey = Array(#""offset":"#.utf8)
    private static let timeKey = Array(#""t":"#.utf8)

    private func received(_ conn: ClientConnection, _ bytes: [UInt8]) {
        guard let peer = conn.userData as? Peer else { return }
        let now = Clock.unixMicros()
        bytes.withUnsafeBufferPointer { buf in
            lock.lock()
            defer { lock.unlock() }
            var start = 0
            while start < buf.count {
                var end = start
                while end < buf.count && buf[end] != 0x0A { end += 1 }
                if end > start { line(conn, peer, buf, start, end, now) }
                start = end + 1
            }
        }
    }

    /// One JSON object of a frame; called with the lock held.
    private func line(_ conn: ClientConnection, _ peer: Peer, _ buf: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ now: Int64) {
        if Self.has(Self.pushPrefix, buf, at: start, end) {
            push(peer, buf, start, end, now)
            return
        }
        guard let json = try? JSON.parse(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buf)[start..<end])) else {
            status.unexpected += 1
            return
        }
        let errorCode = json["error"]?["code"]?.stringValue
        switch json["id"]?.intValue {
        case 1?:
            guard peer.state == .connecting else { return }
            if json["ok"] != nil {
                peer.state = .connected
                status.connected += 1
                status.connectedPerNode[peer.node] += 1
                status.lastConnectMicros = now
                connectLatency.record(micros: now - peer.started)
                if peer.channel >= 0 {
                    peer.state = .subscribing
                    pendingSubscribes += 1
                    conn.send(subscribeFrames[peer.channel])
                }
            } else {
                peer.state = .failed
                status.failed += 1
                status.failures["connect error: \(errorCode ?? "?")", default: 0] += 1
            }
        case 2?:
            guard peer.state == .subscribing else { return }
            pendingSubscribes -= 1
            if let offset = json["ok"]?["offset"]?.intValue {
                peer.state = .subscribed
                peer.expected = offset + 1
                status.subscribed += 1
            } else {
                peer.state = .connected
                status.subscribeFailed += 1
                status.failures["subscribe error: \(errorCode ?? "?")", default: 0] += 1
            }
        default:
            status.unexpected += 1
        }
    }

    private func push(_ peer: Peer, _ buf: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ now: Int64) {
        guard peer.state == .subscribed, peer.channel >= 0,
              let c = Self.find(Self.channelKey, buf, start, end),
              Self.has(channelBytes[peer.channel], buf, at: c, end),
              let o = Self.find(Self.offsetKey, buf, c, end),
              let (offset, afterOffset) = Self.integer(buf, o, end)
        else {
            status.unexpected += 1
            return
        }
        if offset == peer.expected {
            peer.expected += 1
        } else if offset > peer.expected {
            let gap = offset - peer.expected
            if peer.holes.count + Int(gap) <= 1_000_000 {
                for missing in peer.expected..<offset { peer.holes.insert(missing) }
                status.holesOpen += Int(gap)
            }
            peer.expected = offset + 1
        } else if peer.holes.remove(offset) != nil {
            status.outOfOrder += 1
            status.holesOpen -= 1
        } else {
            status.duplicates += 1
            return
        }
        status.deliveries += 1
        if status.firstDeliveryMicros == nil { status.firstDeliveryMicros = now }
        status.lastDeliveryMicros = now
        if let t = Self.find(Self.timeKey, buf, afterOffset, end), let (sent, _) = Self.integer(buf, t, end) {
            interval.record(micros: now - sent)
        }
    }

    private func closed(_ conn: ClientConnection, _ code: UInt16?, _ reason: String) {
        guard let peer = conn.userData as? Peer else { return }
        let key = String((code.map { "close \($0): " } ?? "") + (reason.isEmpty ? "no reason" : reason)).prefix(100)
        lock.withLock {
            if closing { return }
            switch peer.state {
            case .connected, .subscribing, .subscribed:
                if peer.state == .subscribing { pendingSubscribes -= 1 }
                status.dropped += 1
                status.drops[String(key), default: 0] += 1
                status.connectedPerNode[peer.node] -= 1
                status.holesOpen -= peer.holes.count
            case .connecting:
                status.failed += 1
                status.failures[String(key), default: 0] += 1
            case .failed, .closed:
                break
            }
            peer.state = .closed
        }
    }

    // MARK: Reporting

    private func report(final: Bool) {
        var s: WorkerStatus
        var lat: Latency
        var tallies: [ChannelTally]?
        lock.lock()
        s = status
        lat = interval
        interval = Latency()
        let settled = s.attempted == spec.count && s.inFlight == 0 && pendingSubscribes == 0
        if !spec.channels.isEmpty && (settled || final) {
            var t = spec.channels.indices.map { ChannelTally(channel: $0, subscribers: 0, contiguousSum: 0, holes: 0) }
            for p in peers where p.state == .subscribed {
                t[p.channel].subscribers += 1
                t[p.channel].contiguousSum += p.expected - 1
                t[p.channel].holes += p.holes.count
            }
            tallies = t.filter { $0.subscribers > 0 }
        }
        let connectLat = final ? connectLatency : nil
        lock.unlock()

        s.final = final
        s.latency = lat.count > 0 ? lat.sparse : nil
        s.connectLatency = connectLat?.sparse
        s.channels = tallies
        s.rssBytes = Machine.rss(getpid()) ?? 0
        guard var data = try? JSONEncoder().encode(s) else { return }
        data.append(0x0A)
        FileHandle.standardOutput.write(data)
    }

    // MARK: Byte scanning (pushes are hot: no JSON tree for them)

    private static func has(_ needle: [UInt8], _ buf: UnsafeBufferPointer<UInt8>, at i: Int, _ end: Int) -> Bool {
        guard i + needle.count <= end else { return false }
        for k in 0..<needle.count where buf[i + k] != needle[k] { return false }
        return true
    }

    /// Index just past the first `needle` in buf[from..<end].
    private static func find(_ needle: [UInt8], _ buf: UnsafeBufferPointer<UInt8>, _ from: Int, _ end: Int) -> Int? {
        guard let first = needle.first, end - from >= needle.count else { return nil }
        var i = from
        while i <= end - needle.count {
            if buf[i] == first && has(needle, buf, at: i, end) { return i + needle.count }
            i += 1
        }
        return nil
    }

    private static func integer(_ buf: UnsafeBufferPointer<UInt8>, _ at: Int, _ end: Int) -> (Int64, Int)? {
        var i = at
        var v: Int64 = 0
        while i < end, buf[i] >= 0x30, buf[i] <= 0x39 {
            v = v &* 10 &+ Int64(buf[i] - 0x30)
            i += 1
        }
        return i > at ? (v, i) : nil
    }
}
