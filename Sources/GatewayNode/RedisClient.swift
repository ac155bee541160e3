import Foundation
import GatewayIO

/// The node's two Redis connections — one pipelining commands and scripts, one for
/// pub/sub — kept alive with jittered exponential backoff. Either dropping counts as
/// Redis being away: both are closed and opened again together.
final class RedisClient {
    let loop: EventLoop
    let host: String
    let port: Int
    private(set) var commands: RedisConnection
    private(set) var subscriber: RedisConnection
    private(set) var isReady = false
    private var attempt = 0
    private var reconnectTimer: LoopTimer?
    private var stopped = false
    private var scriptSHA: [String: String] = [:]

    /// Both connections are up (again).
    var onReady: (() -> Void)?
    /// Redis went away; in-flight commands fail on their own.
    var onLost: ((String) -> Void)?
    var onPubSub: ((String, [UInt8], [UInt8]) -> Void)?
    private(set) var reconnects = 0
    private(set) var lastRoundTrip: Double = 0

    init(loop: EventLoop, host: String, port: Int) {
        self.loop = loop
        self.host = host
        self.port = port
        commands = RedisConnection(loop: loop, host: host, port: port)
        subscriber = RedisConnection(loop: loop, host: host, port: port)
    }

    func start() {
        open()
        measureRoundTrip()
    }

    func stop() {
        stopped = true
        reconnectTimer?.cancel()
        commands.disconnect()
        subscriber.disconnect()
    }

    private func open() {
        commands = RedisConnection(loop: loop, host: host, port: port)
        subscriber = RedisConnection(loop: loop, host: host, port: port)
        for conn in [commands, subscriber] {
            conn.onConnect = { [weak self] _ in self?.connectionUp() }
            conn.onDisconnect = { [weak self] c, reason in self?.connectionDown(c, reason) }
        }
        subscriber.onPubSub = { [weak self] kind, channel, payload in self?.onPubSub?(kind, channel, payload) }
        commands.connect()
        subscriber.connect()
    }

    private func connectionUp() {
        guard commands.isConnected, subscriber.isConnected, !isReady else { return }
        isReady = true
        attempt = 0
        onReady?()
    }

    private func connectionDown(_ conn: RedisConnection, _ reason: String) {
        guard conn === commands || conn === subscriber else { return }
        let wasReady = isReady
        isReady = false
        // Detach both before closing so their callbacks do not schedule twice.
        let old = [commands, subscriber]
        commands = RedisConnection(loop: loop, host: host, port: port)
        subscriber = RedisConnection(loop: loop, host: host, port: port)
        for c in old {
            c.onConnect = nil
            c.onDisconnect = nil
            c.disconnect()
        }
        if wasReady { onLost?(reason) }
        scheduleReconnect()
    }

    private func scheduleReconnect() {
        guard !stopped, reconnectTimer == nil else { return }
        attempt += 1
        let cap = min(5_000, 100 * (1 << min(attempt, 6)))
        let delay = Int.random(in: cap / 2...cap)
        reconnectTimer = loop.schedule(afterMs: delay) { [weak self] in
            guard let self else { return }
            self.reconnectTimer = nil
            self.reconnects += 1
            self.open()
        }
    }

    private func measureRoundTrip() {
        loop.schedule(afterMs: 2_000) { [weak self] in
            guard let self, !self.stopped else { return }
            let start = DispatchTime.now().uptimeNanoseconds
            self.send(["PING"]) { reply in
                if !reply.isFailure {
                    self.lastRoundTrip = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                }
            }
            self.measureRoundTrip()
        }
    }

    func send(_ args: [RedisArgument], _ callback: @escaping (RedisReply) -> Void) {
        commands.send(args, callback)
    }

    /// Runs a Lua script by its SHA, loading it on first use or after Redis lost it.
    func eval(_ script: String, keys: [String], args: [RedisArgument], _ callback: @escaping (RedisReply) -> Void) {
        let tail: [RedisArgument] = [keys.count] + keys.map { $0 as RedisArgument } + args
        if let sha = scriptSHA[script] {
            send(["EVALSHA", sha] + tail) { [weak self] reply in
                if case .error(let e) = reply, e.hasPrefix("NOSCRIPT") {
                    self?.scriptSHA[script] = nil
                    self?.eval(script, keys: keys, args: args, callback)
                    return
                }
                callback(reply)
            }
            return
        }
        send(["SCRIPT", "LOAD", script]) { [weak self] reply in
            guard let sha = reply.text, !reply.isFailure else {
                callback(reply)
                return
            }
            self?.scriptSHA[script] = sha
            self?.send(["EVALSHA", sha] + tail, callback)
        }
    }

    func subscribe(_ names: [String]) { subscriber.pubsub("SUBSCRIBE", names) }
    func unsubscribe(_ names: [String]) { subscriber.pubsub("UNSUBSCRIBE", names) }
}
