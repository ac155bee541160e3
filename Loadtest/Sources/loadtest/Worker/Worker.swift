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
        try Worker(spec: LoadChild.readSpec(WorkerSpec.self, "worker")).run()
    }
}

/// One client connection's view of its stream, under the child's lock.
final class Peer: @unchecked Sendable {
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

/// Opens its share of the connections (connect, subscribe), checks every push's offset
/// and records its latency; the process plumbing is `LoadChild`'s.
final class Worker: LoadChild, @unchecked Sendable {
    let spec: WorkerSpec
    private var status: WorkerStatus
    private var interval = Latency()
    private var connectLatency = Latency()
    private var peers: [Peer] = []
    private var pendingSubscribes = 0
    private let channelBytes: [[UInt8]]
    private let subscribeFrames: [String]
    private let minter: TokenMinter
    private let tokenExp: Int64

    init(spec: WorkerSpec) {
        self.spec = spec
        var initial = WorkerStatus(worker: spec.index)
        initial.connectedPerNode = Array(repeating: 0, count: spec.urls.count)
        status = initial
        // The closing quote makes "product:p1" not match "product:p10".
        channelBytes = spec.channels.map { Array($0.utf8) + [0x22] }
        subscribeFrames = spec.channels.map { #"{"id":2,"op":"subscribe","channel":"\#($0)"}"# }
        minter = TokenMinter(secret: spec.secret)
        tokenExp = Int64(Date().timeIntervalSince1970) + Int64(spec.tokenTTL)
        super.init()
    }

    func run() throws -> Never {
        status.fdLimit = try startLoop(needed: spec.count + 64, who: "worker \(spec.index) with \(spec.count) connections",
                                       rxBufferSize: spec.rxBufferSize, connectTimeout: spec.connectTimeout)
        handlers = ClientHandlers(
            onOpen: { [unowned self] conn in opened(conn) },
            onText: { [unowned self] conn, bytes in received(conn, bytes) },
            onClose: closeHandler)
        run(count: spec.count, rate: spec.rate, maxInFlight: spec.maxInFlight, reportEvery: 0.5, idleSleepMicros: 20_000)
    }

    override var unsettled: Int { status.inFlight }

    override func open(_ i: Int) {
        let g = spec.first + i
        let peer = Peer(node: g % spec.urls.count, channel: spec.channels.isEmpty ? -1 : g % spec.channels.count,
                        started: Clock.unixMicros())
        let source = Self.source(spec.sourceAddresses, i)
        lock.withLock {
            status.attempted += 1
            if status.firstAttemptMicros == nil { status.firstAttemptMicros = peer.started }
            peers.append(peer)
        }
        do {
            if spec.target == .nchan {
                // Nchan's subscriber location: the handshake is the subscription.
                _ = try loop.connect(url: "\(spec.urls[peer.node])/sub/\(spec.channels[peer.channel])", sourceAddress: source,
                                     userData: peer, handlers: handlers)
                return
            }
            let token = minter.mint(Claims(sub: "\(spec.userPrefix)\(g)", exp: tokenExp))
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

    private func opened(_ conn: ClientConnection) {
        lock.withLock {
            status.opened += 1
            // Nchan: subscribed once the handshake is done; its pushes start at sequence 1.
            guard spec.target == .nchan, let peer = conn.userData as? Peer, peer.state == .connecting else { return }
            let now = Clock.unixMicros()
            peer.state = .subscribed
            peer.expected = 1
            status.connected += 1
            status.connectedPerNode[peer.node] += 1
            status.lastConnectMicros = now
            connectLatency.record(micros: now - peer.started)
            status.subscribed += 1
        }
    }

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

    override func closed(_ conn: ClientConnection, key: String) {
        guard let peer = conn.userData as? Peer else { return }
        switch peer.state {
        case .connected, .subscribing, .subscribed:
            if peer.state == .subscribing { pendingSubscribes -= 1 }
            status.dropped += 1
            status.drops[key, default: 0] += 1
            status.connectedPerNode[peer.node] -= 1
            status.holesOpen -= peer.holes.count
        case .connecting:
            status.failed += 1
            status.failures[key, default: 0] += 1
        case .failed, .closed:
            break
        }
        peer.state = .closed
    }

    // MARK: Reporting

    override func report(final: Bool) {
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
        emit(s)
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
