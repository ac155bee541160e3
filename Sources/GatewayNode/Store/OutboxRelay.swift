import GatewayIO
import GatewayProtocol
import GatewayRedis

/// What a decision that pushes to other slots needs around it (commerce's apply, the
/// price-drop batches): register the outbox before, relay it after. `OutboxRelay` on Redis.
protocol EventStore: AnyObject {
    func register(_ outbox: String, _ done: @escaping (Bool) -> Void)
    func relay(_ outbox: String)
}

/// Relays pushes that a decision wrote to its slot's outbox stream (Redis Cluster only) to
/// their channels' slots: the channel's publish, guarded by the last entry id relayed from
/// that outbox (relay.lua), so nothing is lost or doubled whichever node relays and however
/// often. Entries are sent in outbox order; per channel they are applied in that order (one
/// connection per master, pipelined). Store/README.md has the whole story.
final class OutboxRelay: EventStore {
    let calls: RedisCalls
    let settings: StoreSettings
    /// Schedules the sweep; nil in tests that drive `sweep()` themselves.
    let schedule: ((Int, @escaping () -> Void) -> Void)?
    /// A registration comes due this long after the decision (then any node relays it).
    static let registrationDelayMs = 5_000
    static let sweepEveryMs = 1_000
    /// Entries read from an outbox per round, and registrations taken per sweep.
    static let batch = 100

    /// Outboxes being relayed by this node, and whether another relay was asked meanwhile.
    private var running: [String: Bool] = [:]
    private var sweeping = false

    init(redis: any RedisLink, settings: StoreSettings, log: @escaping (String) -> Void,
         schedule: ((Int, @escaping () -> Void) -> Void)?) {
        calls = RedisCalls(redis: redis, log: log)
        self.settings = settings
        self.schedule = schedule
    }

    private var isCluster: Bool { calls.redis.isCluster }

    /// Cluster only (calls done(true) at once on one server): registers `outbox` in gw:relays
    /// before a decision that may write to it. done(false): Redis unavailable -> answer 503,
    /// do not apply.
    func register(_ outbox: String, _ done: @escaping (Bool) -> Void) {
        guard isCluster else { return done(true) }
        calls.run(ChannelScripts.relayRegister, keys: [StoreKeys.relays], args: [outbox, Self.registrationDelayMs],
                  as: Int64.self) { done((try? $0.get()) != nil) }
    }

    /// Cluster only: relays `outbox` from its head, in order, then XDELs what it relayed.
    /// One relay per outbox at a time in a node (a second call while one runs makes it run
    /// again after).
    func relay(_ outbox: String) {
        relay(outbox) { _ in }
    }

    /// As `relay(_:)`; `done(true)` once the outbox was seen empty (everything relayed).
    func relay(_ outbox: String, _ done: @escaping (Bool) -> Void) {
        guard isCluster else { return done(true) }
        if running[outbox] != nil {
            running[outbox] = true
            return done(false)
        }
        running[outbox] = false
        round(outbox) { [weak self] emptied in
            guard let self else { return }
            let again = self.running.removeValue(forKey: outbox) ?? false
            if again { self.relay(outbox, done) } else { done(emptied) }
        }
    }

    /// An outbox entry: `ch type data size` (lib_emit.lua).
    struct Entry: RedisReplyDecodable, Equatable {
        var id: String
        var channel: String
        var type: String
        var data: String
        var size: String

        init(id: String, channel: String, type: String, data: String, size: String) {
            self.id = id
            self.channel = channel
            self.type = type
            self.data = data
            self.size = size
        }

        init(redisReply: RedisReply) throws(RedisDecodingError) {
            var reader = try RedisArrayReader(redisReply)
            id = try reader.next()
            let fields: [String] = try reader.next()
            var map: [String: String] = [:]
            for i in stride(from: 0, to: fields.count - 1, by: 2) { map[fields[i]] = fields[i + 1] }
            guard let ch = map["ch"], let type = map["type"], let data = map["data"], let size = map["size"] else {
                throw .unexpected(expected: "an outbox entry (ch type data size)", got: fields.joined(separator: " "))
            }
            (channel, self.type, self.data, self.size) = (ch, type, data, size)
        }
    }

    /// Reads up to `batch` entries from the head, relays each (pipelined, in order), then
    /// deletes them; goes on while full batches come. `done(true)`: the outbox is empty.
    private func round(_ outbox: String, _ done: @escaping (Bool) -> Void) {
        calls.send(["XRANGE", outbox, "-", "+", "COUNT", Self.batch], key: outbox, as: [Entry].self) { [weak self] read in
            guard let self else { return }
            guard case .success(let entries) = read else { return done(false) }
            if entries.isEmpty { return done(true) }
            let gather = Gather<Int64>(entries.count) { relayed in
                // A failed entry stays (with every later one) for the next relay or sweep.
                guard case .success = relayed else { return done(false) }
                self.calls.send(["XDEL", outbox] + entries.map { $0.id as RedisArgument }, key: outbox, as: Int64.self) { deleted in
                    guard case .success = deleted else { return done(false) }
                    if entries.count < Self.batch { done(true) } else { self.round(outbox, done) }
                }
            }
            for (i, entry) in entries.enumerated() {
                guard let channel = Channel(entry.channel) else {
                    self.calls.log("outbox \(outbox): entry \(entry.id) names no channel; dropped")
                    gather.report(i, .success(0))
                    continue
                }
                let args: [RedisArgument] = [outbox, entry.id, entry.channel, entry.type, entry.data, entry.size,
                                             self.settings.historyTTLSeconds, self.settings.newEpoch()]
                self.calls.run(ChannelScripts.relay, keys: [StoreKeys.meta(channel), StoreKeys.log(channel)], args: args,
                               as: Int64.self) { gather.report(i, $0) }
            }
        }
    }

    /// Starts the 1 s sweep of due gw:relays registrations (cluster only).
    func start() {
        schedule?(Self.sweepEveryMs) { [weak self] in
            guard let self else { return }
            if self.isCluster && self.calls.redis.isReady { self.sweep() }
            self.start()
        }
    }

    /// Relays every due registration, then removes it if it was not registered again meanwhile.
    func sweep(_ done: @escaping () -> Void = {}) {
        guard isCluster, !sweeping else { return done() }
        sweeping = true
        calls.run(ChannelScripts.relayDue, keys: [StoreKeys.relays], args: [Self.batch], as: [String].self) { [weak self] due in
            guard let self else { return }
            let pairs = (try? due.get()) ?? []
            let registrations = stride(from: 0, to: pairs.count - 1, by: 2).map { (pairs[$0], pairs[$0 + 1]) }
            let gather = Gather<Void>(registrations.count) { _ in
                self.sweeping = false
                done()
            }
            for (i, (outbox, score)) in registrations.enumerated() {
                self.relay(outbox) { emptied in
                    guard emptied else { return gather.report(i, .success(())) }
                    self.calls.run(ChannelScripts.relayDone, keys: [StoreKeys.relays], args: [outbox, score],
                                   as: Int64.self) { _ in gather.report(i, .success(())) }
                }
            }
        }
    }
}
