import ArgumentParser
import Foundation
import GatewayAuth
import GatewayClient
import GatewayProtocol

/// One flash-sale buyer's connection, under the child's lock.
final class SaleBuyer: @unchecked Sendable {
    enum State { case connecting, waiting, subscribing, subscribed, closed }
    let g: Int
    let user: String
    let node: Int
    var state = State.connecting
    /// Highest `sale:` offset applied, and the `remaining` it carried.
    var offset: Int64 = 0
    var remaining: Int64?
    var sawOpen = false
    /// An order was answered: the buyer never presses for another (but once, at once, to test `per_user`).
    var won = false
    /// The `sale.buy` in flight: its command id, send time (Unix µs), and whether `sale.open` triggered it.
    var buyID: Int?
    var buySentAt: Int64 = 0
    var buyFirstWave = false
    var secondPressID: Int?
    /// A temporary refusal's re-press is due (Unix µs), keeping the refused press's wave.
    var retryAt: Int64?
    var retryFirstWave = false
    var nextID = 10
    weak var conn: ClientConnection?
    /// A second connection of the same user on the other node (1 buyer in 20): it presses on
    /// `sale.open` too, so per_user is raced across nodes. Counted apart from the buyers.
    var twin: SaleBuyer?
    weak var primary: SaleBuyer?

    init(g: Int, user: String, node: Int) {
        self.g = g
        self.user = user
        self.node = node
    }
}

/// The child process behind `flash-sale --sale-worker`: connects its buyers, subscribes them
/// to the sale once the parent names it, presses `sale.buy` on `sale.open` (and again on a
/// `sale.stock` saying units came back, until it wins; with per_user 1 every buyer presses
/// twice on `sale.open`, and at most one may get an order; a temporary refusal is pressed again
/// after its `retry_after_ms`), and reports JSON lines on stdout.
final class SaleWorker: LoadChild, @unchecked Sendable {
    let spec: SaleWorkerSpec
    private var status: SaleWorkerStatus
    private var buyers: [SaleBuyer] = []
    private var wins: [SaleWin] = []
    private var firstWaveLatency = Latency(), resaleLatency = Latency(), openLatency = Latency()
    private var sale: String?
    private var startsAtMicros: Int64 = 0
    /// per_user 1: of a buyer's two presses at once only one may be served (with more both may).
    private var doubleClick = false
    private var channel = ""
    private let minter: TokenMinter
    private let tokenExp: Int64

    static func main() throws -> Never {
        try SaleWorker(spec: readSpec(SaleWorkerSpec.self, "sale worker")).run()
    }

    init(spec: SaleWorkerSpec) {
        self.spec = spec
        status = SaleWorkerStatus(worker: spec.index)
        minter = TokenMinter(secret: spec.secret)
        tokenExp = Int64(Date().timeIntervalSince1970) + Int64(spec.tokenTTL)
        super.init()
    }

    func run() throws -> Never {
        status.fdLimit = try startLoop(needed: spec.count + spec.count / Self.twinEvery + 64, who: "sale worker \(spec.index) with \(spec.count) buyers",
                                       rxBufferSize: spec.rxBufferSize, connectTimeout: spec.connectTimeout)
        handlers = ClientHandlers(
            onText: { [unowned self] conn, bytes in received(conn, bytes) },
            onClose: closeHandler)
        run(count: spec.count, rate: spec.rate, maxInFlight: spec.maxInFlight, reportEvery: 0.25, idleSleepMicros: 10_000)
    }

    override var unsettled: Int { status.settling }

    /// One buyer in this many also connects on the other node (with more than one node).
    static let twinEvery = 20

    /// `sale <id> <starts_at ms> <per_user>`: subscribe every waiting buyer (and later ones as they connect).
    override func command(_ line: String) {
        let f = line.split(separator: " ")
        guard f.count == 4, f[0] == "sale", let startsAt = Int64(f[2]), let perUser = Int(f[3]) else { return }
        lock.withLock {
            sale = String(f[1])
            doubleClick = perUser == 1
            channel = "sale:\(f[1])"
            startsAtMicros = startsAt * 1000
            for b in buyers where b.state == .waiting { subscribe(b) }
            for t in buyers.compactMap(\.twin) where t.state == .waiting { subscribeTwin(t) }
        }
    }

    override func open(_ i: Int) {
        let g = spec.first + i
        let b = SaleBuyer(g: g, user: "\(spec.userPrefix)\(g)", node: g % spec.urls.count)
        let token = minter.mint(Claims(sub: b.user, exp: tokenExp))
        lock.withLock {
            status.attempted += 1
            status.settling += 1
            buyers.append(b)
        }
        do {
            let conn = try loop.connect(url: spec.urls[b.node], sourceAddress: Self.source(spec.sourceAddresses, i), userData: b, handlers: handlers)
            b.conn = conn
            conn.send(#"{"id":1,"op":"connect","token":"\#(token)"}"#)
            if spec.urls.count > 1 && g % Self.twinEvery == 0 { openTwin(b, token: token, i) }
        } catch {
            lock.withLock {
                guard b.state == .connecting else { return }
                b.state = .closed
                status.failed += 1
                status.settling -= 1
                status.failures["\(error)", default: 0] += 1
            }
        }
    }

    private func openTwin(_ b: SaleBuyer, token: String, _ i: Int) {
        let t = SaleBuyer(g: b.g, user: b.user, node: (b.node + 1) % spec.urls.count)
        t.primary = b
        lock.withLock {
            b.twin = t
            status.twins += 1
        }
        guard let conn = try? loop.connect(url: spec.urls[t.node], sourceAddress: Self.source(spec.sourceAddresses, i), userData: t, handlers: handlers) else {
            lock.withLock { t.state = .closed }
            return
        }
        t.conn = conn
        conn.send(#"{"id":1,"op":"connect","token":"\#(token)"}"#)
    }

    /// With the lock held.
    private func subscribeTwin(_ t: SaleBuyer) {
        t.state = .subscribing
        t.conn?.send(#"{"id":2,"op":"subscribe","channel":"\#(channel)"}"#)
    }

    /// A twin's frame, with the lock held: connect, subscribe, one press on `sale.open`;
    /// an order it is answered with is its primary's.
    private func twinLine(_ t: SaleBuyer, _ b: SaleBuyer, _ json: JSON, _ now: Int64) {
        if json["push"]?.stringValue == "sale.open", json["channel"]?.stringValue == channel, !t.sawOpen {
            t.sawOpen = true
            guard let sale, t.state == .subscribed else { return }
            t.buyID = t.nextID
            t.nextID += 1
            status.twinPresses += 1
            t.conn?.send(#"{"id":\#(t.buyID!),"op":"sale.buy","sale":"\#(sale)"}"#)
            return
        }
        guard json["push"] == nil, let id = json["id"]?.intValue.map({ Int($0) }) else { return }
        switch id {
        case 1 where t.state == .connecting:
            guard json["ok"] != nil else {
                t.state = .closed
                return
            }
            t.state = .waiting
            if sale != nil { subscribeTwin(t) }
        case 2 where t.state == .subscribing:
            t.state = json["ok"] != nil ? .subscribed : .waiting
            if t.state == .subscribed { status.twinsSubscribed += 1 }
        case _ where id == t.buyID:
            t.buyID = nil
            if let order = json["ok"]?["id"]?.stringValue {
                status.twinWon += 1
                won(b, order, firstWave: true, now)
            } else {
                status.refusals["other node's press: \(json["error"]?["code"]?.stringValue ?? "?")", default: 0] += 1
            }
        default:
            break
        }
    }

    /// With the lock held.
    private func subscribe(_ b: SaleBuyer) {
        b.state = .subscribing
        status.settling += 1
        b.conn?.send(#"{"id":2,"op":"subscribe","channel":"\#(channel)"}"#)
    }

    /// With the lock held.
    private func buy(_ b: SaleBuyer, firstWave: Bool, now: Int64) {
        guard let sale, !b.won, b.buyID == nil, b.state == .subscribed else { return }
        let id = b.nextID
        b.nextID += 1
        b.buyID = id
        b.buySentAt = now
        b.buyFirstWave = firstWave
        if firstWave { status.firstWaveBuys += 1 } else { status.resaleBuys += 1 }
        b.conn?.send(#"{"id":\#(id),"op":"sale.buy","sale":"\#(sale)"}"#)
    }

    // MARK: Loop thread

    private func received(_ conn: ClientConnection, _ bytes: [UInt8]) {
        guard let b = conn.userData as? SaleBuyer else { return }
        let now = Clock.unixMicros()
        JSONLines.each(bytes) { json in lock.withLock { line(conn, b, json, now) } }
    }

    /// One JSON object of a frame; called with the lock held.
    private func line(_ conn: ClientConnection, _ b: SaleBuyer, _ json: JSON?, _ now: Int64) {
        guard let json else {
            status.unexpected += 1
            return
        }
        if let primary = b.primary { return twinLine(b, primary, json, now) }
        if let type = json["push"]?.stringValue {
            push(b, type, json, now)
            return
        }
        let error = json["error"]?["code"]?.stringValue
        guard let id = json["id"]?.intValue.map({ Int($0) }) else {
            status.unexpected += 1
            return
        }
        switch id {
        case 1:
            guard b.state == .connecting else { return }
            guard json["ok"] != nil else {
                status.failures["connect error: \(error ?? "?")", default: 0] += 1
                status.failed += 1
                b.state = .closed
                status.settling -= 1
                conn.close()
                return
            }
            status.connected += 1
            status.settling -= 1
            b.state = .waiting
            if sale != nil { subscribe(b) }
        case 2:
            guard b.state == .subscribing else { return }
            status.settling -= 1
            guard let ok = json["ok"] else {
                status.subscribeFailed += 1
                status.failures["subscribe error: \(error ?? "?")", default: 0] += 1
                b.state = .waiting
                return
            }
            status.subscribed += 1
            status.lastSubscribedMicros = max(status.lastSubscribedMicros ?? 0, now)
            b.state = .subscribed
            b.offset = ok["offset"]?.intValue ?? 0
        case _ where id == b.buyID:
            b.buyID = nil
            status.answered += 1
            if b.buyFirstWave { firstWaveLatency.record(micros: now - b.buySentAt) } else { resaleLatency.record(micros: now - b.buySentAt) }
            if let order = json["ok"]?["id"]?.stringValue {
                won(b, order, firstWave: b.buyFirstWave, now)
            } else {
                status.refusals[error ?? "?", default: 0] += 1
                retryLater(b, json, firstWave: b.buyFirstWave, now)
            }
        case _ where id == b.secondPressID:
            b.secondPressID = nil
            if let order = json["ok"]?["id"]?.stringValue {
                won(b, order, firstWave: true, now)
            } else {
                status.refusals["second press: \(error ?? "?")", default: 0] += 1
            }
        default:
            status.unexpected += 1
        }
    }

    /// An order answered to `b`: a second one for the same buyer breaks per_user 1.
    private func won(_ b: SaleBuyer, _ order: String, firstWave: Bool, _ now: Int64) {
        wins.append(SaleWin(g: b.g, order: order, t: now, firstWave: firstWave && !b.won))
        guard !b.won else {
            status.secondPressWon += 1
            return
        }
        b.won = true
        status.won += 1
        if firstWave {
            status.firstWaveWon += 1
            status.lastFirstWaveWinMicros = max(status.lastFirstWaveWinMicros ?? 0, now)
        }
    }

    /// A temporary refusal (busy door, Redis not ready): pressed again after its `retry_after_ms`.
    private func retryLater(_ b: SaleBuyer, _ json: JSON, firstWave: Bool, _ now: Int64) {
        guard let e = json["error"], e["temporary"]?.boolValue == true else { return }
        b.retryAt = now + (e["retry_after_ms"]?.intValue ?? 250) * 1000
        b.retryFirstWave = firstWave
    }

    /// With the lock held: the re-presses due (checked on the report tick, every 0.25 s).
    private func pressRetries(now: Int64) {
        for b in buyers {
            guard let at = b.retryAt, at <= now else { continue }
            b.retryAt = nil
            guard !b.won, b.buyID == nil, b.state == .subscribed else { continue }
            status.retries += 1
            buy(b, firstWave: b.retryFirstWave, now: now)
        }
    }

    private func push(_ b: SaleBuyer, _ type: String, _ json: JSON, _ now: Int64) {
        status.pushes[type, default: 0] += 1
        guard json["channel"]?.stringValue == channel else { return }   // order.status and the like
        guard let offset = json["offset"]?.intValue else {
            status.unexpected += 1
            return
        }
        if offset <= b.offset {
            status.repeats += 1
            return
        }
        if offset > b.offset + 1 && b.offset > 0 { status.gaps += Int(offset - b.offset - 1) }
        b.offset = offset
        let data = json["data"]
        if let r = data?["remaining"]?.intValue { b.remaining = r }
        switch type {
        case "sale.open":
            guard !b.sawOpen else {
                status.openRepeats += 1
                return
            }
            b.sawOpen = true
            status.opened += 1
            status.firstOpenMicros = min(status.firstOpenMicros ?? now, now)
            status.lastOpenMicros = max(status.lastOpenMicros ?? 0, now)
            openLatency.record(micros: now - startsAtMicros)
            buy(b, firstWave: true, now: now)
            // A double click at the same moment, before either is answered: per_user is
            // checked under contention, not after the first order is already counted.
            if doubleClick, b.buyID != nil, let sale {
                let second = b.nextID
                b.nextID += 1
                b.secondPressID = second
                status.secondPresses += 1
                b.conn?.send(#"{"id":\#(second),"op":"sale.buy","sale":"\#(sale)"}"#)
            }
        case "sale.stock":
            if !b.sawOpen { status.beforeOpen += 1 }
            if b.sawOpen, (b.remaining ?? 0) > 0, b.retryAt == nil { buy(b, firstWave: false, now: now) }
        case "sale.sold_out":
            if !b.sawOpen { status.beforeOpen += 1 }
            b.remaining = 0
            status.firstSoldOutMicros = min(status.firstSoldOutMicros ?? now, now)
        default:
            break
        }
    }

    override func closed(_ conn: ClientConnection, key: String) {
        guard let b = conn.userData as? SaleBuyer else { return }
        if b.primary != nil {
            b.state = .closed
            return
        }
        switch b.state {
        case .connecting:
            status.failed += 1
            status.settling -= 1
            status.failures[key, default: 0] += 1
        case .subscribing:
            status.dropped += 1
            status.settling -= 1
            status.drops[key, default: 0] += 1
        case .waiting, .subscribed:
            status.dropped += 1
            status.drops[key, default: 0] += 1
        case .closed:
            break
        }
        if b.state == .subscribed { status.subscribed -= 1 }
        b.state = .closed
    }

    // MARK: Reporting

    override func report(final: Bool) {
        var s: SaleWorkerStatus
        lock.lock()
        pressRetries(now: Clock.unixMicros())
        s = status
        s.remainingZero = 0
        s.remainingAbove = 0
        s.remainingUnknown = 0
        for b in buyers where b.state == .subscribed {
            guard let r = b.remaining else {
                s.remainingUnknown += 1
                continue
            }
            if r == 0 { s.remainingZero += 1 } else { s.remainingAbove += 1 }
            s.remainingMin = min(s.remainingMin ?? r, r)
            s.remainingMax = max(s.remainingMax ?? r, r)
        }
        s.wins = wins.isEmpty ? nil : wins
        wins = []
        s.firstWaveLatency = firstWaveLatency.count > 0 ? firstWaveLatency.sparse : nil
        s.resaleLatency = resaleLatency.count > 0 ? resaleLatency.sparse : nil
        s.openLatency = openLatency.count > 0 ? openLatency.sparse : nil
        firstWaveLatency = Latency()
        resaleLatency = Latency()
        openLatency = Latency()
        lock.unlock()
        s.final = final
        s.rssBytes = Machine.rss(getpid()) ?? 0
        emit(s)
    }
}
