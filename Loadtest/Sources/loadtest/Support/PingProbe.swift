import Foundation
import GatewayAuth
import GatewayClient
import GatewayProtocol

/// One client per node sending `ping` every few milliseconds: the longest answer is
/// how long the node's loop kept a client waiting. The node's own stall gauge only
/// sees stalls that overlap its 250 ms tick, so this measures it from outside too.
/// Mutable state under `lock`.
final class PingProbe: @unchecked Sendable {
    private final class Peer: @unchecked Sendable {
        let node: Int
        var connected = false
        var pending: [Int64: Int64] = [:]
        var nextID: Int64 = 2
        var latency = Latency()
        var lost = 0
        init(node: Int) { self.node = node }
    }

    private let lock = NSLock()
    private let loop: ClientLoop
    private var conns: [(ClientConnection, Peer)] = []
    private var running = true
    private var thread: Thread?
    let names: [String]

    init?(endpoints: [Endpoint], secret: String, intervalMs: Int = 5) {
        names = endpoints.map(\.name)
        guard let loop = try? ClientLoop(rxBufferSize: 16384, epoll: true) else { return nil }
        self.loop = loop
        let minter = TokenMinter(secret: secret)
        let exp = Int64(Date().timeIntervalSince1970) + 86_400
        let lock = self.lock
        let handlers = ClientHandlers(onMessage: { conn, json in
            guard let peer = conn.userData as? Peer, let id = json["id"]?.intValue else { return }
            let now = Clock.unixMicros()
            lock.withLock {
                if id == 1 {
                    peer.connected = json["ok"] != nil
                } else if let sent = peer.pending.removeValue(forKey: id) {
                    peer.latency.record(micros: now - sent)
                }
            }
        })
        for (i, ep) in endpoints.enumerated() {
            let peer = Peer(node: i)
            guard let conn = try? loop.connect(url: ep.wsURL, userData: peer, handlers: handlers) else { continue }
            conn.send(#"{"id":1,"op":"connect","token":"\#(minter.mint(Claims(sub: "lt-ping-\(i)", exp: exp)))"}"#)
            conns.append((conn, peer))
        }
        let deadline = Clock.now() + 5
        while Clock.now() < deadline && !lock.withLock({ self.conns.allSatisfy { $0.1.connected } }) { usleep(10_000) }
        let all = conns
        thread = Thread {
            while lock.withLock({ self.running }) {
                let now = Clock.unixMicros()
                for (conn, peer) in all {
                    let id: Int64? = lock.withLock {
                        guard peer.connected else { return nil }
                        // A reply still missing after 10 s counts as lost, not as a latency.
                        for (k, t) in peer.pending where now - t > 10_000_000 {
                            peer.pending[k] = nil
                            peer.lost += 1
                        }
                        let id = peer.nextID
                        peer.nextID += 1
                        peer.pending[id] = now
                        return id
                    }
                    if let id { conn.send(#"{"id":\#(id),"op":"ping"}"#) }
                }
                usleep(UInt32(intervalMs * 1000))
            }
        }
        thread?.start()
    }

    var connectedCount: Int { lock.withLock { conns.filter { $0.1.connected }.count } }

    /// Per node: ping answer times since the last call, then starts over. Pings still
    /// unanswered count with their age so far, so a stall in progress shows.
    func take() -> [String: LatencySummary] {
        let now = Clock.unixMicros()
        return lock.withLock {
            var out: [String: LatencySummary] = [:]
            for (_, peer) in conns {
                var l = peer.latency
                for t in peer.pending.values { l.record(micros: now - t) }
                out[names[peer.node]] = l.summary
                peer.latency = Latency()
            }
            return out
        }
    }

    func stop() {
        lock.withLock { running = false }
        loop.shutdown()
    }
}
