import GatewayIO
import GatewayProtocol
import GatewayRedis

/// What a decision that pushes to other slots or writes events needs around it (commerce's
/// apply, the price-drop batches): register the outbox before, relay it after; and the
/// reading of the event log those events end in. `OutboxRelay` on Redis.
protocol EventStore: AnyObject {
    func register(_ outbox: String, _ done: @escaping (Bool) -> Void)
    func relay(_ outbox: String)
    /// `GET /api/v1/events`: the events after `after` (nil: from the oldest kept), oldest first.
    func events(after: String?, limit: Int, _ done: @escaping (StoreResult<[LoggedEvent]>) -> Void)
}

/// Relays pushes that a decision wrote to its slot's outbox stream (Redis Cluster only) to
/// their channels' slots: the channel's publish, guarded by the last entry id relayed from
/// that outbox (relay.lua), so nothing is lost or doubled whichever node relays and however
/// often. Events go the same way to the event log's slot (events_relay.lua, its own mark).
/// A batch sends each channel's entries in one call, and its events in one call, in outbox
/// order, and deletes the batch only once every call of it succeeded (and, under
/// `replicas:N`, was confirmed on replicas). Store/README.md has the whole story.
final class OutboxRelay: EventStore {
    let calls: RedisCalls
    let settings: StoreSettings
    /// Schedules the sweep; nil in tests that drive `sweep()` themselves.
    let schedule: ((Int, @escaping () -> Void) -> Void)?
    static let sweepEveryMs = 1_000
    /// Entries read from an outbox per round, and registrations taken per sweep.
    static let batch = 100
    /// Script errors of one entry (on this node) before it goes to the dead letters.
    static let strikesBeforeDeadLetter = 3
    /// The dead-letter stream keeps about this many entries per outbox.
    static let deadLetterCap = 10_000

    /// A registration comes due this long after the decision (then any node's sweep may
    /// relay it and take it away). The decision's own calls (apply, retries) may take up to
    /// `redis.timeout_s` each, so this is three of them: a sweep never takes a registration
    /// away while the decision it covers can still write to the outbox.
    var registrationDelayMs: Int { max(5_000, 3 * settings.redisTimeoutSeconds * 1_000) }

    /// Outboxes being relayed by this node, and whether another relay was asked meanwhile.
    private var running: [String: Bool] = [:]
    private var sweeping = false
    /// Where the next sweep page starts (the last due score of a full page); nil: the first.
    private var sweepAfter: Int64?
    /// The latest registration of an outbox by this node that no other decision shares
    /// (relay_register's `exclusive`): outbox -> due. Its own relay after the decision takes
    /// it back once the outbox is empty.
    private var exclusive: [String: Int64] = [:]
    /// Relays asked after a decision, waiting for a run that starts after the ask: outbox ->
    /// the registration to take back when that run empties the outbox (0: none).
    private var afterDecision: [String: Int64] = [:]
    /// Outboxes whose own relay failed and whose registration renewal failed too (Redis
    /// away): registered again on each tick until it works.
    private var unregistered: Set<String> = []
    /// Script errors per outbox entry (`<outbox> <id>`), on this node.
    private(set) var strikes: [String: Int] = [:]

    init(redis: any RedisLink, settings: StoreSettings, log: @escaping (String) -> Void,
         schedule: ((Int, @escaping () -> Void) -> Void)?) {
        calls = RedisCalls(redis: redis, log: log)
        self.settings = settings
        self.schedule = schedule
    }

    private var isCluster: Bool { calls.redis.isCluster }

    /// relay_register.lua's answer.
    struct Registration: RedisReplyDecodable {
        var due: Int64
        var exclusive: Bool

        init(redisReply: RedisReply) throws(RedisDecodingError) {
            var reader = try RedisArrayReader(redisReply)
            due = try reader.next()
            exclusive = try reader.next(Int64.self) == 1
        }
    }

    /// Cluster only (calls done(true) at once on one server): registers `outbox` in gw:relays
    /// before a decision that may write to it. done(false): Redis unavailable -> answer 503,
    /// do not apply.
    func register(_ outbox: String, _ done: @escaping (Bool) -> Void) {
        guard isCluster else { return done(true) }
        calls.run(ChannelScripts.relayRegister, keys: [StoreKeys.relays], args: [outbox, registrationDelayMs],
                  as: Registration.self) { [weak self] result in
            guard let self, case .success(let registration) = result else { return done(false) }
            if registration.exclusive {
                self.exclusive[outbox] = registration.due
            } else {
                self.exclusive[outbox] = nil
            }
            done(true)
        }
    }

    /// Cluster only: relays `outbox` after a decision wrote to it. Once the outbox is empty,
    /// the registration this node made for the decision is taken back (if nobody registered
    /// it again meanwhile); if the relay fails, the outbox is registered again so that a
    /// sweep relays it later.
    func relay(_ outbox: String) {
        guard isCluster else { return }
        afterDecision[outbox] = exclusive.removeValue(forKey: outbox) ?? 0
        relay(outbox) { _ in }
    }

    /// Relays `outbox` from its head, in order, then deletes what it relayed; `done(true)`
    /// once the outbox was seen empty (everything relayed). One relay per outbox at a time in
    /// a node: a call while one runs makes it run again after (and answers false).
    func relay(_ outbox: String, _ done: @escaping (Bool) -> Void) {
        guard isCluster else { return done(true) }
        if running[outbox] != nil {
            running[outbox] = true
            return done(false)
        }
        running[outbox] = false
        // Taken now: only a run that starts after the decision's ask saw its entries.
        let decisionDue = afterDecision.removeValue(forKey: outbox)
        round(outbox) { [weak self] emptied in
            guard let self else { return }
            if let decisionDue { self.settle(outbox, due: decisionDue, emptied: emptied) }
            let again = self.running.removeValue(forKey: outbox) ?? false
            if again { self.relay(outbox, done) } else { done(emptied) }
        }
    }

    /// After a decision's own relay: take its registration back (emptied), or renew it so a
    /// sweep finds the outbox (failed: a sweep may have taken the old one away already).
    private func settle(_ outbox: String, due: Int64, emptied: Bool) {
        if emptied {
            guard due > 0 else { return }
            calls.run(ChannelScripts.relayDone, keys: [StoreKeys.relays], args: [outbox, due], as: Int64.self) { _ in }
        } else {
            registerAgain(outbox)
        }
    }

    private func registerAgain(_ outbox: String) {
        calls.run(ChannelScripts.relayRegister, keys: [StoreKeys.relays], args: [outbox, registrationDelayMs],
                  as: Registration.self) { [weak self] result in
            guard let self else { return }
            if case .success = result {
                self.unregistered.remove(outbox)
            } else {
                self.unregistered.insert(outbox)
            }
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

        /// Also refuses what relay.lua could not publish cleanly (no channel name, a size
        /// that is not a count). Errors name fields only: the data may be anything.
        init(redisReply: RedisReply) throws(RedisDecodingError) {
            let (id, fields) = try OutboxRelay.fields(of: redisReply)
            try self.init(id: id, fields)
        }

        init(id: String, _ fields: OutboxFields) throws(RedisDecodingError) {
            self.id = id
            let map = fields.map
            guard let ch = map["ch"], let type = map["type"], let data = map["data"], let size = map["size"] else {
                throw .unexpected(expected: "an outbox entry (ch type data size)", got: "fields " + fields.names)
            }
            guard Channel(ch) != nil, !type.isEmpty, !data.isEmpty, let count = Int(size), count > 0 else {
                throw .unexpected(expected: "a channel name, a type, data and a size", got: "an entry that has not")
            }
            (channel, self.type, self.data, self.size) = (ch, type, data, size)
        }

        /// The id of an outbox entry, whatever its fields.
        static func id(of reply: RedisReply) -> String? {
            guard case .array(let parts) = reply, let first = parts.first else { return nil }
            return try? String(redisReply: first)
        }
    }

    /// An outbox entry's fields, by name (the names kept in order for error messages).
    struct OutboxFields {
        var map: [String: String] = [:]
        var names = ""

        /// From a stream entry's `[name, value, ...]`.
        init(_ list: [String]) {
            for i in stride(from: 0, to: list.count - 1, by: 2) { map[list[i]] = list[i + 1] }
            names = stride(from: 0, to: list.count - 1, by: 2).map { list[$0] }.joined(separator: " ")
        }
    }

    static func fields(of reply: RedisReply) throws(RedisDecodingError) -> (id: String, OutboxFields) {
        var reader = try RedisArrayReader(reply)
        let id: String = try reader.next()
        return (id, OutboxFields(try reader.next()))
    }

    /// An event for the event log (lib_emit's emitEvent): `ev <type> key <ordering key> at <ms> data <json>`.
    struct EventEntry: Equatable {
        var id: String
        var type: String
        var key: String
        var at: String
        var data: String

        init(id: String, _ fields: OutboxFields) throws(RedisDecodingError) {
            let map = fields.map
            guard let type = map["ev"], let key = map["key"], let at = map["at"], let data = map["data"] else {
                throw .unexpected(expected: "an event entry (ev key at data)", got: "fields " + fields.names)
            }
            guard !type.isEmpty, !key.isEmpty, Int64(at) != nil, !data.isEmpty else {
                throw .unexpected(expected: "a type, a key, a time and data", got: "an entry that has not")
            }
            (self.id, self.type, self.key, self.at, self.data) = (id, type, key, at, data)
        }
    }

    /// What a batch's entry is: a push for a channel, or an event for the log.
    enum Item {
        case push(Entry)
        case event(EventEntry)

        init(redisReply: RedisReply) throws(RedisDecodingError) {
            let (id, fields) = try OutboxRelay.fields(of: redisReply)
            self = fields.map["ev"] != nil ? .event(try EventEntry(id: id, fields)) : .push(try Entry(id: id, fields))
        }
    }

    /// relay.lua's or events_relay.lua's answer: per entry handled, the offset published (0: a repeat); then, if
    /// an entry failed, its error.
    struct Relayed: RedisReplyDecodable {
        var handled: Int
        var failure: String?

        init(redisReply: RedisReply) throws(RedisDecodingError) {
            var reader = try RedisArrayReader(redisReply)
            handled = 0
            while !reader.isAtEnd {
                let item: RedisReply = try reader.next()
                if case .integer = item {
                    handled += 1
                } else {
                    failure = (try? String(redisReply: item)) ?? "an error"
                    return
                }
            }
        }
    }

    /// One channel's part of a batch, in outbox order.
    private struct ChannelPart {
        var name: String
        var channel: Channel
        var entries: [Entry]
    }

    /// One call of a batch: a channel's pushes (relay.lua) or the batch's events
    /// (events_relay.lua), each entry named for the log if it fails.
    private struct Call {
        var entries: [(id: String, what: String)]
        /// A key on the master written to, for the WAIT under `replicas:N`.
        var written: String
        var script: LuaScript
        var keys: [String]
        var args: [RedisArgument]
    }

    /// Reads up to `batch` entries from the head; sends each channel's entries in one
    /// relay.lua call (pipelined); once every call succeeded (and replicas confirmed, under
    /// `replicas:N`) deletes the batch, and goes on while full batches come. Only then is the
    /// next batch read. `done(true)`: the outbox is empty.
    private func round(_ outbox: String, _ done: @escaping (Bool) -> Void) {
        calls.send(["XRANGE", outbox, "-", "+", "COUNT", Self.batch], key: outbox, as: [RedisReply].self) { [weak self] read in
            guard let self else { return }
            guard case .success(let items) = read else { return done(false) }
            if items.isEmpty { return done(true) }
            var parts: [ChannelPart] = []
            var partIndex: [String: Int] = [:]
            var events: [EventEntry] = []
            var undecodable: [(id: String, reason: String)] = []
            for item in items {
                do {
                    switch try Item(redisReply: item) {
                    case .event(let event):
                        events.append(event)
                    case .push(let entry):
                        let channel = Channel(entry.channel)!
                        if let i = partIndex[entry.channel] {
                            parts[i].entries.append(entry)
                        } else {
                            partIndex[entry.channel] = parts.count
                            parts.append(ChannelPart(name: entry.channel, channel: channel, entries: [entry]))
                        }
                    }
                } catch {
                    guard let id = Entry.id(of: item) else {
                        self.calls.log("outbox \(outbox): XRANGE answered something that is not an entry")
                        return done(false)
                    }
                    undecodable.append((id, "undecodable: \(error)"))
                }
            }
            // Undecodable entries go first; then the batch is read again without them.
            if !undecodable.isEmpty {
                return self.bury(outbox, undecodable) { ok in ok ? self.round(outbox, done) : done(false) }
            }
            let calls = self.calls(outbox, parts, events)
            let gather = Gather<Relayed>(calls.count) { result in
                // Lost or garbled answers: nothing deleted; re-sent entries that did get
                // published are true repeats and skipped.
                guard case .success(let answers) = result else { return done(false) }
                let failed = zip(calls, answers).compactMap { call, answer -> ((id: String, what: String), String)? in
                    guard let failure = answer.failure, answer.handled < call.entries.count else { return nil }
                    return (call.entries[answer.handled], failure)
                }
                if !failed.isEmpty { return self.struck(outbox, failed, done) }
                for item in items { if let id = Entry.id(of: item) { self.strikes["\(outbox) \(id)"] = nil } }
                self.confirm(calls.map(\.written)) { confirmed in
                    guard confirmed else {
                        self.calls.log("outbox \(outbox): replicas did not confirm the relayed pushes in time; kept for another relay")
                        return done(false)
                    }
                    let ids = items.compactMap { Entry.id(of: $0).map { $0 as RedisArgument } }
                    self.calls.send(["XDEL", outbox] + ids, key: outbox, as: Int64.self) { deleted in
                        guard case .success = deleted else { return done(false) }
                        if items.count < Self.batch { done(true) } else { self.round(outbox, done) }
                    }
                }
            }
            for (i, call) in calls.enumerated() {
                self.calls.run(call.script, keys: call.keys, args: call.args, as: Relayed.self) { gather.report(i, $0) }
            }
        }
    }

    /// The calls of a batch: one per channel (its pushes in outbox order), and one for the
    /// event log with every event of the batch in outbox order (so an order's events keep
    /// the order its decisions wrote them in).
    private func calls(_ outbox: String, _ parts: [ChannelPart], _ events: [EventEntry]) -> [Call] {
        var calls = parts.map { part -> Call in
            var args: [RedisArgument] = [outbox, part.name, settings.historyTTLSeconds, settings.newEpoch()]
            for entry in part.entries { args += [entry.id, entry.type, entry.data, entry.size] }
            return Call(entries: part.entries.map { ($0.id, "channel \($0.channel), type \($0.type)") },
                        written: StoreKeys.meta(part.channel), script: ChannelScripts.relay,
                        keys: [StoreKeys.meta(part.channel), StoreKeys.log(part.channel)]
                            // A user's channel may carry points moves (relay.lua), kept in its slot.
                            + (part.channel.kind == .user ? [StoreKeys.memberPoints(part.channel.id)] : []),
                        args: args)
        }
        if !events.isEmpty {
            var args: [RedisArgument] = [outbox, settings.eventRetentionMs]
            for e in events { args += [e.id, e.type, e.key, e.at, e.data] }
            calls.append(Call(entries: events.map { ($0.id, "event \($0.type), key \($0.key)") }, written: StoreKeys.eventsLog,
                              script: ChannelScripts.eventsRelay, keys: [StoreKeys.eventsLog, StoreKeys.eventsRelayed], args: args))
        }
        return calls
    }

    /// Entries whose relay failed with a script error: each gets a strike; one at its limit
    /// goes to the dead letters and the relay goes on, otherwise it stops for now.
    private func struck(_ outbox: String, _ failed: [((id: String, what: String), String)], _ done: @escaping (Bool) -> Void) {
        var dead: [(id: String, reason: String)] = []
        for (entry, failure) in failed {
            let key = "\(outbox) \(entry.id)"
            // Entries another node relayed or buried leave their count behind: bounded.
            if strikes.count >= 10_000 { strikes.removeAll() }
            let count = (strikes[key] ?? 0) + 1
            strikes[key] = count
            calls.log("outbox \(outbox): relaying entry \(entry.id) (\(entry.what)) failed \(count) time(s): \(failure.prefix(200))")
            if count >= Self.strikesBeforeDeadLetter { dead.append((entry.id, "script error: \(failure.prefix(200))")) }
        }
        guard !dead.isEmpty else { return done(false) }
        bury(outbox, dead) { [weak self] ok in
            guard let self else { return }
            for entry in dead { self.strikes["\(outbox) \(entry.id)"] = nil }
            ok ? self.round(outbox, done) : done(false)
        }
    }

    /// Moves entries to `<outbox>:dead` (relay_dead.lua), each with a log line naming its id.
    private func bury(_ outbox: String, _ entries: [(id: String, reason: String)], _ done: @escaping (Bool) -> Void) {
        let dead = StoreKeys.deadLetters(ofOutbox: outbox)
        let gather = Gather<Int64>(entries.count) { done((try? $0.get()) != nil) }
        for (i, entry) in entries.enumerated() {
            calls.log("outbox \(outbox): entry \(entry.id) moved to \(dead) (\(entry.reason))")
            calls.run(ChannelScripts.relayDead, keys: [outbox, dead], args: [entry.id, entry.reason, Self.deadLetterCap],
                      as: Int64.self) { gather.report(i, $0) }
        }
    }

    /// Under `redis.durability replicas:N`: WAIT on every master the batch published to
    /// (one per connection), so an outbox entry is deleted only once its push would survive
    /// that master failing over.
    private func confirm(_ metaKeys: [String], _ done: @escaping (Bool) -> Void) {
        guard case .replicas(let replicas) = settings.durability else { return done(true) }
        var masters: [String] = []
        for key in metaKeys where !masters.contains(where: { calls.redis.sameConnection($0, key) }) { masters.append(key) }
        let gather = Gather<Void>(masters.count) { done((try? $0.get()) != nil) }
        for (i, key) in masters.enumerated() {
            calls.redis.awaitReplicas(replicas, timeoutMs: settings.durabilityTimeoutMs, key: key) { ok in
                gather.report(i, ok ? .success(()) : .failure(.redisUnavailable))
            }
        }
    }

    /// Starts the 1 s sweep of due gw:relays registrations (cluster only).
    func start() {
        schedule?(Self.sweepEveryMs) { [weak self] in
            guard let self else { return }
            if self.isCluster && self.calls.redis.isReady {
                self.registerUnregistered()
                self.sweep()
            }
            self.start()
        }
    }

    /// Registers again the outboxes whose renewal failed while Redis was away.
    func registerUnregistered() {
        for outbox in unregistered { registerAgain(outbox) }
    }

    /// Relays a page of due registrations, removing each whose outbox was emptied unless it
    /// was registered again meanwhile. The next sweep goes on after a full page (so the ones
    /// it could not finish do not hide the rest), and starts over after a short one.
    func sweep(_ done: @escaping () -> Void = {}) {
        guard isCluster, !sweeping else { return done() }
        sweeping = true
        let after: RedisArgument = sweepAfter.map { "\($0)" } ?? ""
        calls.run(ChannelScripts.relayDue, keys: [StoreKeys.relays], args: [Self.batch, after], as: [String].self) { [weak self] due in
            guard let self else { return }
            let pairs = (try? due.get()) ?? []
            let registrations = stride(from: 0, to: pairs.count - 1, by: 2).map { (pairs[$0], pairs[$0 + 1]) }
            self.sweepAfter = registrations.count == Self.batch ? registrations.last.flatMap { Int64($0.1) } : nil
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
