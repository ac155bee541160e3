import ArgumentParser
import Foundation
import GatewayAuth
import GatewayClient
import GatewayProtocol

/// One probe user's connection, under the child's lock.
final class ProbePeer: @unchecked Sendable {
    enum State { case connecting, connected, watching, online, closing, closed }
    let g: Int
    let user: String
    let channel: [UInt8]
    let node: Int
    let stays: Bool
    var state = State.connecting
    /// Next personal-channel offset wanted.
    var nextOffset: Int64 = 0
    var alerts = 0
    /// Closed on purpose after a failed watch (a failure, not an offline watcher).
    var watchFailed = false
    weak var conn: ClientConnection?

    init(g: Int, user: String, node: Int, stays: Bool) {
        self.g = g
        self.user = user
        channel = Array("user:\(user)".utf8)
        self.node = node
        self.stays = stays
    }
}

/// The child process behind `--probe-worker`: connects its users, watches or waits
/// for order pushes, and reports JSON lines on stdout (the process plumbing is `LoadChild`'s).
final class ProbeWorker: LoadChild, @unchecked Sendable {
    let spec: ProbeSpec
    private var status: ProbeStatus
    private var peers: [ProbePeer] = []
    private var keptPeers: [ProbePeer] = []
    private var keepaliveCursor = 0
    private var receipts: [ProbeReceipt] = []
    private var alertLatency = Latency()
    /// Alert receipts that came before the parent's PATCH time did.
    private var earlyAlerts: [Int64] = []
    private var t0: Int64?
    private var expectedPrice: Int64?
    private let minter: TokenMinter
    private let tokenExp: Int64
    private let watchFrame: String

    /// Reads the spec from stdin and runs until the parent lets go.
    static func main() throws -> Never {
        try ProbeWorker(spec: readSpec(ProbeSpec.self, "probe worker")).run()
    }

    init(spec: ProbeSpec) {
        self.spec = spec
        status = ProbeStatus(worker: spec.index)
        minter = TokenMinter(secret: spec.secret)
        tokenExp = Int64(Date().timeIntervalSince1970) + Int64(spec.tokenTTL)
        watchFrame = #"{"id":2,"op":"watch","product":"\#(spec.product)"}"#
        super.init()
    }

    func run() throws -> Never {
        let kept = spec.mode == .buyers ? spec.count : Int((Double(spec.count) * spec.onlineFraction).rounded(.up)) + 1
        status.fdLimit = try startLoop(needed: kept + spec.maxInFlight + 64,
                                       who: "probe worker \(spec.index) with \(kept) kept + \(spec.maxInFlight) in flight",
                                       rxBufferSize: spec.rxBufferSize, connectTimeout: spec.connectTimeout)
        handlers = ClientHandlers(
            onText: { [unowned self] conn, bytes in received(conn, bytes) },
            onClose: closeHandler)
        run(count: spec.count, rate: spec.rate, maxInFlight: spec.maxInFlight, reportEvery: 0.25, idleSleepMicros: 10_000)
    }

    override var unsettled: Int { status.settling }

    /// `t0 <micros> <price>`: when the PATCH went out and the price it set.
    override func command(_ line: String) {
        let f = line.split(separator: " ")
        if f.count == 3, f[0] == "t0", let t = Int64(f[1]), let p = Int64(f[2]) { setT0(t, price: p) }
    }

    override func afterReport(seconds: Double) { keepalive(seconds: seconds) }

    private func setT0(_ t: Int64, price: Int64) {
        lock.withLock {
            t0 = t
            expectedPrice = price
            for r in earlyAlerts { alertLatency.record(micros: r - t) }
            earlyAlerts = []
        }
    }

    override func open(_ i: Int) {
        let g = spec.first + i
        let stays = spec.mode == .buyers || ProbeSpec.isOnline(g, fraction: spec.onlineFraction)
        let peer = ProbePeer(g: g, user: "\(spec.userPrefix)\(g)", node: g % spec.urls.count, stays: stays)
        let token = minter.mint(Claims(sub: peer.user, exp: tokenExp))
        let source = Self.source(spec.sourceAddresses, i)
        lock.withLock {
            status.attempted += 1
            status.settling += 1
            peers.append(peer)
        }
        do {
            let conn = try loop.connect(url: spec.urls[peer.node], sourceAddress: source, userData: peer, handlers: handlers)
            peer.conn = conn
            conn.send(#"{"id":1,"op":"connect","token":"\#(token)"}"#)
        } catch {
            lock.withLock {
                guard peer.state == .connecting else { return }
                peer.state = .closed
                status.failed += 1
                status.settling -= 1
                status.failures["\(error)", default: 0] += 1
            }
        }
    }

    // MARK: Loop thread

    private func received(_ conn: ClientConnection, _ bytes: [UInt8]) {
        guard let peer = conn.userData as? ProbePeer else { return }
        let now = Clock.unixMicros()
        JSONLines.each(bytes) { json in lock.withLock { line(conn, peer, json, now) } }
    }

    /// One JSON object of a frame; called with the lock held.
    private func line(_ conn: ClientConnection, _ peer: ProbePeer, _ json: JSON?, _ now: Int64) {
        guard let json else {
            status.unexpected += 1
            return
        }
        if let type = json["push"]?.stringValue {
            push(peer, type, json, now)
            return
        }
        let error = json["error"]?["code"]?.stringValue
        switch json["id"]?.intValue {
        case 1?:
            guard peer.state == .connecting else { return }
            guard let offset = json["ok"]?["offset"]?.intValue else {
                // Counted failed here; `settling` drops when the close comes back.
                status.failed += 1
                status.failures["connect error: \(error ?? "?")", default: 0] += 1
                peer.state = .closing
                peer.watchFailed = true
                conn.close()
                return
            }
            status.connected += 1
            peer.nextOffset = offset + 1
            if spec.mode == .buyers {
                keepOnline(peer)
            } else {
                peer.state = .watching
                conn.send(watchFrame)
            }
        case 2?:
            guard peer.state == .watching else { return }
            if json["ok"] != nil {
                status.watched += 1
                if peer.stays {
                    keepOnline(peer)
                } else {
                    peer.state = .closing
                    conn.close()
                }
            } else {
                status.watchFailed += 1
                status.failures["watch error: \(error ?? "?")", default: 0] += 1
                peer.watchFailed = true
                peer.state = .closing
                conn.close()
            }
        case 3?:
            break   // keepalive ping answered
        default:
            status.unexpected += 1
        }
    }

    /// Set-up done, the socket stays: called with the lock held.
    private func keepOnline(_ peer: ProbePeer) {
        peer.state = .online
        keptPeers.append(peer)
        status.online += 1
        status.settling -= 1
    }

    /// Pings a share of the kept sockets so each gets one every `spec.keepalive` seconds,
    /// until the PATCH time is known: the node's liveness sweep then sees them as active.
    private func keepalive(seconds: Double) {
        guard spec.keepalive > 0 else { return }
        let batch: [ProbePeer] = lock.withLock {
            guard t0 == nil, !keptPeers.isEmpty else { return [] }
            let n = min(keptPeers.count, Int((Double(keptPeers.count) * seconds / Double(spec.keepalive)).rounded(.up)))
            var out: [ProbePeer] = []
            for _ in 0..<n {
                if keepaliveCursor >= keptPeers.count { keepaliveCursor = 0 }
                let p = keptPeers[keepaliveCursor]
                keepaliveCursor += 1
                if p.state == .online { out.append(p) }
            }
            return out
        }
        for p in batch { p.conn?.send(#"{"id":3,"op":"ping"}"#) }
    }

    private func push(_ peer: ProbePeer, _ type: String, _ json: JSON, _ now: Int64) {
        status.pushes[type, default: 0] += 1
        guard json["channel"]?.stringValue.map({ Array($0.utf8) == peer.channel }) == true,
              let offset = json["offset"]?.intValue else {
            status.unexpected += 1
            return
        }
        if offset == peer.nextOffset {
            peer.nextOffset += 1
        } else if offset > peer.nextOffset {
            status.gaps += Int(offset - peer.nextOffset)
            peer.nextOffset = offset + 1
        } else {
            status.repeats += 1
            return
        }
        let data = json["data"]
        switch type {
        case "order.status":
            guard let order = data?["order"]?.stringValue, let s = data?["status"]?.stringValue else {
                status.unexpected += 1
                return
            }
            if s != "pending_payment" { receipts.append(ProbeReceipt(o: order, s: s, t: now)) }
        case "price.drop":
            status.alerts += 1
            peer.alerts += 1
            if peer.alerts > 1 {
                status.alertDuplicates += 1
                return
            }
            status.alerted += 1
            if data?["product"]?.stringValue != spec.product
                || (expectedPrice != nil && data?["price"]?.intValue != expectedPrice) { status.alertWrong += 1 }
            if status.firstAlertMicros == nil { status.firstAlertMicros = now }
            status.lastAlertMicros = max(status.lastAlertMicros ?? 0, now)
            if let t0 { alertLatency.record(micros: now - t0) } else { earlyAlerts.append(now) }
        default:
            break
        }
    }

    override func closed(_ conn: ClientConnection, key: String) {
        guard let peer = conn.userData as? ProbePeer else { return }
        switch peer.state {
        case .connecting:
            status.failed += 1
            status.settling -= 1
            status.failures[key, default: 0] += 1
        case .connected, .watching:
            status.dropped += 1
            status.settling -= 1
            status.drops[key, default: 0] += 1
        case .online:
            status.dropped += 1
            status.online -= 1
            status.drops[key, default: 0] += 1
        case .closing:
            status.settling -= 1
            if !peer.watchFailed { status.closedOffline += 1 }
        case .closed:
            break
        }
        peer.state = .closed
    }

    // MARK: Reporting

    override func report(final: Bool) {
        var s: ProbeStatus
        lock.lock()
        s = status
        s.receipts = receipts.isEmpty ? nil : receipts
        receipts = []
        s.alertLatency = alertLatency.count > 0 ? alertLatency.sparse : nil
        alertLatency = Latency()
        lock.unlock()
        s.final = final
        s.rssBytes = Machine.rss(getpid()) ?? 0
        emit(s)
    }
}
