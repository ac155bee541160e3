import GatewayProtocol

/// Connections are named by a small integer the I/O layer hands out.
public typealias ConnectionID = UInt32

/// The bytes of one publication as pushed to clients, shared by every local subscriber
/// so that a publication is encoded once per node whatever its fan-out.
public final class Payload: @unchecked Sendable {
    public let bytes: [UInt8]
    /// The publication's `ts` (ms since the epoch) for a push, 0 for a reply: the socket write
    /// measures push latency from it.
    public let publishedAtMs: Int64
    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        publishedAtMs = 0
    }

    /// A push as the publish script encodes it, its `ts` read once here for every subscriber.
    public init(push bytes: [UInt8]) {
        self.bytes = bytes
        publishedAtMs = Self.timestamp(ofPush: bytes)
    }

    /// The number after the first `,"ts":` of a push (`{"push":T,"channel":C,"offset":N,
    /// "epoch":E,"ts":MS,...}`: names and epochs hold no quotes, so the first is the field); 0 if none.
    static func timestamp(ofPush bytes: [UInt8]) -> Int64 {
        bytes.withUnsafeBufferPointer { b in
            // `,"ts":` is 6 bytes: 2C 22 74 73 22 3A.
            let end = min(b.count, 512) - 6
            var i = 0
            while i < end {
                if b[i] == 0x2C && b[i + 1] == 0x22 && b[i + 2] == 0x74 && b[i + 3] == 0x73 && b[i + 4] == 0x22 && b[i + 5] == 0x3A {
                    var value: Int64 = 0
                    var j = i + 6
                    while j < b.count && j < i + 24 && b[j] >= 0x30 && b[j] <= 0x39 {
                        value = value * 10 + Int64(b[j] - 0x30)
                        j += 1
                    }
                    return value
                }
                i += 1
            }
            return 0
        }
    }
}

/// A publication as the node sees it: its place in the channel's history and its bytes.
public struct Publication: Sendable {
    public var offset: UInt64
    public var epoch: String
    public var payload: Payload
    public init(offset: UInt64, epoch: String, payload: Payload) {
        self.offset = offset
        self.epoch = epoch
        self.payload = payload
    }
}

/// What a read of a channel's state and history returned.
public struct ReadResult: Sendable {
    /// The channel's latest offset at the time of the read.
    public var offset: UInt64
    public var epoch: String
    /// True when `since` matched the epoch, nothing after it was trimmed, and (for a
    /// subscriber) everything after it fits one reply (`history.max_reply_bytes`,
    /// `history.max_recover`).
    public var recovered: Bool
    /// Publications after `since`, in order. For a subscriber: all of them when
    /// recovered; past a reply cap, the newest that fit (`recovered` false); else none.
    /// For a gap fill: a page from `since + 1` on, which may end before `offset`
    /// (read the next page from its last offset).
    public var publications: [Publication]
    public init(offset: UInt64, epoch: String, recovered: Bool, publications: [Publication]) {
        self.offset = offset
        self.epoch = epoch
        self.recovered = recovered
        self.publications = publications
    }
}

/// Why a read was asked for, so its answer finds its way back.
public enum ReadPurpose: Equatable, Sendable {
    /// A connection subscribing; `request` is the command id to answer.
    case subscriber(ConnectionID, request: Int64)
    /// The node noticed missing offsets on a live channel.
    case gapFill
}

/// What the hub asks the I/O layer to do.
public enum HubAction: Sendable {
    case redisSubscribe(Channel)
    case redisUnsubscribe(Channel)
    /// Read the channel's offset and epoch, and history after `since` if given.
    case read(Channel, since: StreamPosition?, purpose: ReadPurpose)
    /// Queue the same bytes to each of these connections (subscribers of `channel`).
    case deliver(Payload, to: [ConnectionID], Channel)
    /// Answer a subscribe: the connection now receives every later publication.
    case subscribed(ConnectionID, request: Int64, Channel, ReadResult)
    case subscribeFailed(ConnectionID, request: Int64, Channel, GatewayError)
    /// History could not fill a gap: the connection must reconnect and resume with `since`.
    case resync(ConnectionID, Channel)
}

/// Per-node bookkeeping of channels: which local connections listen, the Redis
/// pub/sub subscription each channel needs (reference counted), and the offset order
/// of what has been pushed. It guarantees every subscriber sees each publication
/// once, in offset order, with no gap, whatever order Redis replies and pub/sub
/// messages arrive in. Pure: it returns actions and does no I/O.
public final class ChannelHub {
    enum RedisState { case subscribing, active, unsubscribing }

    struct Pending {
        var request: Int64
        var since: StreamPosition?
        var reading: Bool
        var buffer: [Publication] = []
    }

    /// A class so that delivering to thousands of subscribers mutates in place
    /// instead of copying the channel's table.
    final class Subscriber {
        var delivered: UInt64 = 0
        var pending: Pending?
        /// `membershipVersion` when this subscription began.
        let since: UInt64
        init(pending: Pending?, since: UInt64) {
            self.pending = pending
            self.since = since
        }
    }

    final class State {
        var redis: RedisState = .subscribing
        var lastOffset: UInt64?
        var epoch = ""
        var filling = false
        var buffered: [Publication] = []
        var subscribers: [ConnectionID: Subscriber] = [:]
    }

    private var channels: [Channel: State] = [:]
    /// The group: and product: channels of `channels`, so the operators' view ranks them
    /// without walking every personal user: channel (one per connected user).
    private var sharedChannels: [Channel: State] = [:]
    public private(set) var redisReady = false
    /// Grows at every subscribe and every subscriber removed, so a delivery carried out later
    /// (`FanoutScheduler`) can tell whether its targets are still the subscriptions it was
    /// decided for.
    public private(set) var membershipVersion: UInt64 = 0

    public init() {}

    public var channelCount: Int { channels.count }
    public var subscriptionCount: Int { channels.values.reduce(0) { $0 + $1.subscribers.count } }

    public func isSubscribed(_ conn: ConnectionID, to channel: Channel) -> Bool {
        channels[channel]?.subscribers[conn] != nil
    }

    public func subscriberCount(_ channel: Channel) -> Int { channels[channel]?.subscribers.count ?? 0 }

    /// Whether a delivery to `channel` decided at `membershipVersion` == `version` may still go
    /// to `conn`: the subscription it was decided for goes on. False once the connection
    /// unsubscribed or closed, and for a subscription begun since (a re-subscribe, or a reused
    /// connection id), whose subscribe reply or recovery carries that publication instead.
    public func stillReceives(_ conn: ConnectionID, _ channel: Channel, decidedAt version: UInt64) -> Bool {
        guard let sub = channels[channel]?.subscribers[conn] else { return false }
        return sub.since <= version && sub.pending == nil
    }

    /// Every group: and product: channel with its number of local subscribers, in no order
    /// (the operators' view ranks them); personal user: channels are not visited.
    public func forEachSharedSubscriberCount(_ body: (Channel, Int) -> Void) {
        for (channel, state) in sharedChannels { body(channel, state.subscribers.count) }
    }

    private func add(_ channel: Channel, _ state: State) {
        channels[channel] = state
        if channel.kind != .user { sharedChannels[channel] = state }
    }

    private func forget(_ channel: Channel) {
        channels[channel] = nil
        if channel.kind != .user { sharedChannels[channel] = nil }
    }

    // MARK: Events from connections

    /// A connection asks for a channel. Answered later by `.subscribed` or `.subscribeFailed`.
    public func subscribe(_ conn: ConnectionID, to channel: Channel, since: StreamPosition?, request: Int64) -> [HubAction] {
        var actions: [HubAction] = []
        let state: State
        if let existing = channels[channel] {
            state = existing
            if state.subscribers[conn] != nil {
                return [.subscribeFailed(conn, request: request, channel, GatewayError(.conflict, "already subscribed to \(channel)"))]
            }
        } else {
            state = State()
            add(channel, state)
            if redisReady { actions.append(.redisSubscribe(channel)) }
        }
        var pending = Pending(request: request, since: since, reading: false)
        if state.redis == .active && redisReady {
            pending.reading = true
            actions.append(.read(channel, since: since, purpose: .subscriber(conn, request: request)))
        }
        membershipVersion += 1
        state.subscribers[conn] = Subscriber(pending: pending, since: membershipVersion)
        return actions
    }

    public func unsubscribe(_ conn: ConnectionID, from channel: Channel) -> [HubAction] {
        guard let state = channels[channel], state.subscribers.removeValue(forKey: conn) != nil else { return [] }
        membershipVersion += 1
        return releaseIfIdle(channel, state)
    }

    private func releaseIfIdle(_ channel: Channel, _ state: State) -> [HubAction] {
        guard state.subscribers.isEmpty else { return [] }
        switch state.redis {
        case .unsubscribing:
            return []
        case .subscribing where !redisReady:
            forget(channel)
            return []
        case .subscribing, .active:
            state.redis = .unsubscribing
            return [.redisUnsubscribe(channel)]
        }
    }

    // MARK: Events from Redis

    /// The pub/sub connection is (again) up: every channel needs its subscription.
    public func redisConnected() -> [HubAction] {
        redisReady = true
        var actions: [HubAction] = []
        for (channel, state) in channels {
            if state.subscribers.isEmpty {
                forget(channel)
                continue
            }
            state.redis = .subscribing
            actions.append(.redisSubscribe(channel))
        }
        return actions
    }

    /// The pub/sub connection is gone: in-flight reads fail on their own; channels wait.
    public func redisDisconnected() {
        redisReady = false
        for state in channels.values {
            state.redis = .subscribing
            state.filling = false
            for sub in state.subscribers.values where sub.pending != nil {
                sub.pending!.reading = false
            }
        }
    }

    /// Redis confirmed a SUBSCRIBE: from now on every publication reaches this node,
    /// so reads issued now cannot miss one.
    public func redisSubscribed(_ channel: Channel) -> [HubAction] {
        guard let state = channels[channel], state.redis == .subscribing else { return [] }
        state.redis = .active
        var actions: [HubAction] = []
        if let last = state.lastOffset, !state.filling {
            state.filling = true
            actions.append(.read(channel, since: StreamPosition(offset: last, epoch: state.epoch), purpose: .gapFill))
        }
        for (conn, sub) in state.subscribers {
            guard let pending = sub.pending, !pending.reading else { continue }
            sub.pending!.reading = true
            actions.append(.read(channel, since: pending.since, purpose: .subscriber(conn, request: pending.request)))
        }
        return actions
    }

    /// Redis ended a subscription: the answer to our `.redisUnsubscribe`, or (Redis Cluster)
    /// one Redis dropped on its own when the channel's slot moved or its master failed over.
    public func redisUnsubscribed(_ channel: Channel) -> [HubAction] {
        guard let state = channels[channel] else { return [] }
        if state.redis == .active {
            // Dropped by Redis: the link subscribes again on the slot's new owner by itself.
            // What is published until then is missed here; the `redisSubscribed` that follows
            // reads it from the stream (gap fill from the last delivered offset).
            state.redis = .subscribing
            state.filling = false
            return []
        }
        guard state.redis == .unsubscribing else { return [] }
        if state.subscribers.isEmpty {
            forget(channel)
            return []
        }
        state.redis = .subscribing
        state.lastOffset = nil
        state.filling = false
        state.buffered.removeAll()
        return redisReady ? [.redisSubscribe(channel)] : []
    }

    /// A pub/sub message.
    public func message(_ channel: Channel, _ publication: Publication) -> [HubAction] {
        guard let state = channels[channel], state.redis == .active else { return [] }
        guard let last = state.lastOffset, !state.filling else {
            state.buffered.append(publication)
            return []
        }
        if publication.epoch != state.epoch {
            // History was recreated: offsets restarted, nobody can be resumed in order.
            var actions = resyncAll(channel, state)
            state.epoch = publication.epoch
            state.lastOffset = publication.offset
            actions.append(contentsOf: deliver(channel, state, publication))
            return actions
        }
        if publication.offset <= last { return [] }
        if publication.offset == last + 1 {
            state.lastOffset = publication.offset
            return deliver(channel, state, publication)
        }
        state.buffered.append(publication)
        state.filling = true
        return [.read(channel, since: StreamPosition(offset: last, epoch: state.epoch), purpose: .gapFill)]
    }

    /// The answer to a `.read`.
    public func readCompleted(_ channel: Channel, purpose: ReadPurpose, _ result: ReadResult) -> [HubAction] {
        guard let state = channels[channel] else { return [] }
        var actions: [HubAction] = []
        switch purpose {
        case .gapFill:
            guard state.filling else { return [] }
            state.filling = false
            let before = state.lastOffset ?? 0
            if result.recovered && result.epoch == state.epoch {
                for p in result.publications where p.offset > (state.lastOffset ?? 0) {
                    state.lastOffset = p.offset
                    actions.append(contentsOf: deliver(channel, state, p))
                }
                if state.lastOffset == before && before < result.offset {
                    // "Recovered" yet nothing to fill the gap with: it can never close in order.
                    actions.append(contentsOf: resyncAll(channel, state))
                    adopt(state, result)
                }
            } else {
                actions.append(contentsOf: resyncAll(channel, state))
                adopt(state, result)
            }
            actions.append(contentsOf: drainBuffered(channel, state))
            // Reads are capped per reply (history.max_reply_bytes, max_recover), so a long
            // gap comes in pages. After a Redis reconnect no newer message may come to
            // notice what is still missing: read the next page now.
            if !state.filling, let last = state.lastOffset, last < result.offset {
                state.filling = true
                actions.append(.read(channel, since: StreamPosition(offset: last, epoch: state.epoch), purpose: .gapFill))
            }
            return actions
        case .subscriber(let conn, let request):
            guard let sub = state.subscribers[conn], let pending = sub.pending, pending.request == request else {
                return []
            }
            if state.lastOffset == nil || result.epoch != state.epoch {
                if state.lastOffset != nil { actions.append(contentsOf: resyncAll(channel, state, except: conn)) }
                adopt(state, result)
            }
            let recoveredUpTo = result.publications.last?.offset ?? result.offset
            sub.delivered = max(result.offset, recoveredUpTo)
            sub.pending = nil
            actions.append(.subscribed(conn, request: request, channel, result))
            for p in pending.buffer where p.offset > sub.delivered && p.epoch == result.epoch {
                actions.append(.deliver(p.payload, to: [conn], channel))
                sub.delivered = p.offset
            }
        }
        actions.append(contentsOf: drainBuffered(channel, state))
        return actions
    }

    /// A read failed (Redis away or an error): subscribers learn it, gap fills retry on reconnect.
    public func readFailed(_ channel: Channel, purpose: ReadPurpose, _ error: GatewayError) -> [HubAction] {
        guard let state = channels[channel] else { return [] }
        switch purpose {
        case .gapFill:
            state.filling = false
            return []
        case .subscriber(let conn, let request):
            guard let sub = state.subscribers[conn], sub.pending?.request == request else { return [] }
            state.subscribers[conn] = nil
            membershipVersion += 1
            var actions: [HubAction] = [.subscribeFailed(conn, request: request, channel, error)]
            actions.append(contentsOf: releaseIfIdle(channel, state))
            return actions
        }
    }

    // MARK: Internals

    /// A read found the channel at `result`: it becomes the reference. Publications
    /// buffered from another epoch can never be pushed in order, so they are dropped.
    private func adopt(_ state: State, _ result: ReadResult) {
        state.buffered.removeAll { $0.epoch != result.epoch }
        state.epoch = result.epoch
        state.lastOffset = result.offset
    }

    private func drainBuffered(_ channel: Channel, _ state: State) -> [HubAction] {
        guard !state.buffered.isEmpty, !state.filling, state.lastOffset != nil else { return [] }
        let buffered = state.buffered.sorted { $0.offset < $1.offset }
        state.buffered.removeAll()
        var actions: [HubAction] = []
        for p in buffered {
            actions.append(contentsOf: message(channel, p))
        }
        return actions
    }

    private func deliver(_ channel: Channel, _ state: State, _ p: Publication) -> [HubAction] {
        var targets: [ConnectionID] = []
        targets.reserveCapacity(state.subscribers.count)
        for (conn, sub) in state.subscribers {
            if sub.pending != nil {
                sub.pending!.buffer.append(p)
            } else if p.offset > sub.delivered {
                targets.append(conn)
                sub.delivered = p.offset
            }
        }
        return targets.isEmpty ? [] : [.deliver(p.payload, to: targets, channel)]
    }

    private func resyncAll(_ channel: Channel, _ state: State, except: ConnectionID? = nil) -> [HubAction] {
        var actions: [HubAction] = []
        for (conn, sub) in state.subscribers where sub.pending == nil && conn != except {
            actions.append(.resync(conn, channel))
            sub.delivered = 0
        }
        return actions
    }
}
