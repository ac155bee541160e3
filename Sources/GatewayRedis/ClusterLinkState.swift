/// The cluster client's bookkeeping, pure: the topology, which masters have a live link,
/// and the sharded subscriptions the node wants (and on which master each is placed).
/// Each event returns the actions the glue carries out, as valkey-swift's connection
/// state machines do.
public struct ClusterLinkState: Sendable {
    public enum Action: Sendable, Equatable {
        /// Open a link (command + subscriber connection, handshake) to a master.
        case open(RedisEndpoint)
        /// Close the link to a server that is no longer a master.
        case close(RedisEndpoint)
        case subscribe([String], on: RedisEndpoint)
        case unsubscribe([String], on: RedisEndpoint)
        /// These subscriptions were dropped by Redis (slot moved, failover, link lost): tell
        /// the node (as a `sunsubscribe`), so it fills the gap once they are back.
        case subscriptionsLost([String])
        /// The node unsubscribed channels that were not placed on any master (their owner was
        /// down): nothing to send, answer the node's `sunsubscribe` wait at once.
        case unsubscribedLocally([String])
        /// Ask `CLUSTER SLOTS` (again).
        case refreshTopology
        /// Readiness changed.
        case ready
        case notReady
    }

    public private(set) var topology: ClusterTopology?
    /// Masters whose link has finished its handshake.
    public private(set) var up: Set<RedisEndpoint> = []
    /// Every channel the node wants, with the master it is subscribed on (nil: waiting for
    /// its owner to be known and up).
    public private(set) var subscriptions: [String: RedisEndpoint?] = [:]
    public private(set) var isReady = false

    public init() {}

    /// The master that should get a command for `key` (nil: any master, e.g. no key).
    public func master(forKey key: String?) -> RedisEndpoint? {
        guard let topology else { return nil }
        guard let key else { return topology.masters.first }
        return topology.master(forKey: key)
    }

    /// A link to `endpoint` is usable for commands now.
    public func isUp(_ endpoint: RedisEndpoint) -> Bool { up.contains(endpoint) }

    // MARK: Events

    public mutating func topologyLoaded(_ new: ClusterTopology) -> [Action] {
        let old = topology?.masters ?? []
        topology = new
        var actions: [Action] = []
        for gone in old where !new.masters.contains(gone) {
            up.remove(gone)
            actions.append(.close(gone))
        }
        for master in new.masters where !old.contains(master) { actions.append(.open(master)) }
        // Subscriptions whose slot now lives elsewhere move there. Redis sends a
        // `sunsubscribe` from the old owner when a slot leaves it; one that did not (it is
        // gone) is covered the same way: the channel is lost until resubscribed.
        var lost: [String] = []
        var moved: [RedisEndpoint: [String]] = [:]
        for (channel, placed) in subscriptions {
            let owner = new.master(forKey: channel)
            guard placed != owner else { continue }
            if placed != nil { lost.append(channel) }
            subscriptions[channel] = .some(nil)
            if let owner, up.contains(owner) {
                subscriptions[channel] = owner
                moved[owner, default: []].append(channel)
            }
        }
        if !lost.isEmpty { actions.append(.subscriptionsLost(lost.sorted())) }
        for (owner, channels) in moved.sorted(by: { $0.key.description < $1.key.description }) {
            actions.append(.subscribe(channels.sorted(), on: owner))
        }
        actions.append(contentsOf: readiness())
        return actions
    }

    public mutating func masterUp(_ endpoint: RedisEndpoint) -> [Action] {
        guard let topology, topology.masters.contains(endpoint) else { return [] }
        up.insert(endpoint)
        var channels: [String] = []
        for (channel, placed) in subscriptions where placed == nil && topology.master(forKey: channel) == endpoint {
            subscriptions[channel] = endpoint
            channels.append(channel)
        }
        var actions: [Action] = channels.isEmpty ? [] : [.subscribe(channels.sorted(), on: endpoint)]
        actions.append(contentsOf: readiness())
        return actions
    }

    /// The link to a master was lost (its commands already failed): its subscriptions are
    /// lost and the topology is asked again (a failover may be promoting its replica).
    public mutating func masterDown(_ endpoint: RedisEndpoint) -> [Action] {
        let wasUp = up.remove(endpoint) != nil
        var lost: [String] = []
        for (channel, placed) in subscriptions where placed == endpoint {
            subscriptions[channel] = .some(nil)
            lost.append(channel)
        }
        var actions: [Action] = lost.isEmpty ? [] : [.subscriptionsLost(lost.sorted())]
        actions.append(contentsOf: readiness())
        if wasUp || topology?.masters.contains(endpoint) == true { actions.append(.refreshTopology) }
        return actions
    }

    /// Redis said `sunsubscribe` for `channel` on `endpoint`. Returns nil when the node asked
    /// for it (pass it on as is), else the recovery: the slot moved or its master changed.
    public mutating func unsubscribed(_ channel: String, on endpoint: RedisEndpoint) -> [Action]? {
        guard let placed = subscriptions[channel] else { return nil }
        guard placed == endpoint else { return [] }
        subscriptions[channel] = .some(nil)
        return [.subscriptionsLost([channel]), .refreshTopology]
    }

    /// A master refused an SSUBSCRIBE with `error` (MOVED or ASK: the slot is not, or no longer
    /// only, its own). The channels of that slot placed there wait for the topology to be asked
    /// again (shortly: an ASK lasts until the migration ends) and are placed anew then.
    public mutating func subscribeRefused(_ error: String, on endpoint: RedisEndpoint) -> [Action] {
        guard let redirect = ClusterRedirect(error: error, answeredBy: endpoint) else { return [] }
        let slot = switch redirect {
        case .moved(let slot, _), .ask(let slot, _): slot
        }
        for (channel, placed) in subscriptions where placed == endpoint && HashSlot.of(channel) == slot {
            subscriptions[channel] = .some(nil)
        }
        return [.refreshTopology]
    }

    /// The node wants these channels. Already placed ones are asked again too: the node
    /// waits for each `ssubscribe` answer (after a reconnect it re-asks all of them).
    public mutating func subscribe(_ channels: [String]) -> [Action] {
        var byOwner: [RedisEndpoint: [String]] = [:]
        for channel in channels {
            let owner = topology?.master(forKey: channel)
            if let owner, up.contains(owner) {
                subscriptions[channel] = owner
                byOwner[owner, default: []].append(channel)
            } else {
                subscriptions[channel] = .some(nil)
            }
        }
        return byOwner.sorted { $0.key.description < $1.key.description }.map { .subscribe($0.value, on: $0.key) }
    }

    public mutating func unsubscribe(_ channels: [String]) -> [Action] {
        var byOwner: [RedisEndpoint: [String]] = [:]
        var local: [String] = []
        for channel in channels {
            if case .some(.some(let placed)) = subscriptions.removeValue(forKey: channel), up.contains(placed) {
                byOwner[placed, default: []].append(channel)
            } else {
                local.append(channel)
            }
        }
        var actions: [Action] = byOwner.sorted { $0.key.description < $1.key.description }.map { .unsubscribe($0.value, on: $0.key) }
        if !local.isEmpty { actions.append(.unsubscribedLocally(local)) }
        return actions
    }

    private mutating func readiness() -> [Action] {
        let now = topology.map { $0.coversAllSlots && $0.masters.allSatisfy(up.contains) } ?? false
        guard now != isReady else { return [] }
        isReady = now
        return [now ? .ready : .notReady]
    }
}
