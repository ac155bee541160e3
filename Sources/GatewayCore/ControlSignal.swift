import GatewayProtocol

/// A message between nodes on the control shard channel (PROTOCOL 4.3): the shop's
/// `disconnect` and `ban` reach a user's connections on every node this way, and each node
/// reports back how many it closed so the node that took the HTTP call can answer `{closed}`.
/// One compact JSON object per message; a token, key or secret never goes in one.
public enum ControlSignal: Equatable, Sendable {
    /// Close every connection of `user` with 4010 and report to `request`.
    case disconnect(user: String, request: String, reason: String)
    /// One node's answer to `disconnect` `request`: it closed `closed` connections.
    case closed(request: String, closed: Int)
    /// `user` lost the right to `channel` (a refund took the last order that gave it): every
    /// node ends the subscriptions its buyer connections of `user` hold on it.
    case revoke(user: String, channel: Channel, reason: String)
    /// A price drop of `product` opened alert job `job`: every node claims pages of it.
    case alerts(product: String, job: String)

    public func encoded() -> String {
        switch self {
        case .disconnect(let user, let request, let reason):
            JSON.object([("t", .string("disconnect")), ("user", .string(user)), ("req", .string(request)),
                         ("reason", .string(reason))]).serialized()
        case .closed(let request, let closed):
            JSON.object([("t", .string("closed")), ("req", .string(request)), ("n", .int(Int64(closed)))]).serialized()
        case .revoke(let user, let channel, let reason):
            JSON.object([("t", .string("revoke")), ("user", .string(user)), ("channel", .string(channel.description)),
                         ("reason", .string(reason))]).serialized()
        case .alerts(let product, let job):
            JSON.object([("t", .string("alerts")), ("product", .string(product)), ("job", .string(job))]).serialized()
        }
    }

    /// Nil for anything this node does not understand (a newer node's signal, garbage):
    /// ignored, never a crash.
    public init?(_ bytes: [UInt8]) {
        guard let json = try? JSON.parse(bytes), let type = json["t"]?.stringValue else { return nil }
        if type == "revoke" {
            guard let user = json["user"]?.stringValue, Names.isValidID(user),
                  let name = json["channel"]?.stringValue, let channel = Channel(name) else { return nil }
            self = .revoke(user: user, channel: channel, reason: json["reason"]?.stringValue ?? "")
            return
        }
        if type == "alerts" {
            guard let product = json["product"]?.stringValue, Names.isValidID(product),
                  let job = json["job"]?.stringValue, Names.isValidID(job) else { return nil }
            self = .alerts(product: product, job: job)
            return
        }
        guard let request = json["req"]?.stringValue else { return nil }
        switch type {
        case "disconnect":
            guard let user = json["user"]?.stringValue, Names.isValidID(user) else { return nil }
            self = .disconnect(user: user, request: request, reason: json["reason"]?.stringValue ?? "")
        case "closed":
            guard let n = json["n"]?.intValue, n >= 0, n <= Int64(Int32.max) else { return nil }
            self = .closed(request: request, closed: Int(n))
        default:
            return nil
        }
    }
}

/// Adds up the nodes' `closed` reports for one `disconnect`. The number of nodes that got the
/// signal is the SPUBLISH reply, which may arrive before or after their reports (they come on
/// the subscriber connection), so the tally is done once both sides meet.
public struct DisconnectTally: Equatable, Sendable {
    public private(set) var closed = 0
    public private(set) var reports = 0
    /// Nodes that received the signal; nil until the SPUBLISH reply is in.
    public private(set) var expected: Int?

    /// `closedHere`: closed by the asking node itself before it signalled (its own report,
    /// when its signal comes back to it, finds them closing and counts 0).
    public init(closedHere: Int = 0) { closed = closedHere }

    public mutating func received(by nodes: Int) { expected = nodes }

    public mutating func report(_ closed: Int) {
        self.closed += closed
        reports += 1
    }

    /// Every node that received the signal has reported.
    public var isComplete: Bool {
        guard let expected else { return false }
        return reports >= expected
    }
}
