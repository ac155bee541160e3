/// A position in a channel's history, as clients send it back to resume.
public struct StreamPosition: Equatable, Sendable {
    public var offset: UInt64
    public var epoch: String
    public init(offset: UInt64, epoch: String) {
        self.offset = offset
        self.epoch = epoch
    }
}

/// Moderation actions of `moderate`.
public enum ModerationAction: String, Sendable {
    case mute, unmute, delete
}

/// A client command after validation: the node never looks at raw JSON again. Nested by
/// area so each area's handler switches over its own commands only, exhaustively.
public enum Command: Equatable, Sendable {
    case session(SessionCommand)
    case channel(ChannelCommand)
    case order(OrderCommand)
    case community(CommunityCommand)
    case sale(SaleCommand)

    /// The wire name, used for metrics labels.
    public var op: String {
        switch self {
        case .session(let c): c.op
        case .channel(let c): c.op
        case .order(let c): c.op
        case .community(let c): c.op
        case .sale(let c): c.op
        }
    }
}

/// The connection itself (PROTOCOL.md 2.1).
public enum SessionCommand: Equatable, Sendable {
    case connect(token: String, since: StreamPosition?)
    /// A fresh token for the same user, before the connection's token expires (contract 4.3).
    case refresh(token: String)
    case ping

    public var op: String {
        switch self {
        case .connect: "connect"
        case .refresh: "refresh"
        case .ping: "ping"
        }
    }
}

/// Subscriptions and history of any channel.
public enum ChannelCommand: Equatable, Sendable {
    case subscribe(Channel, since: StreamPosition?)
    case unsubscribe(Channel)
    case history(Channel, since: StreamPosition?, limit: Int)

    public var op: String {
        switch self {
        case .subscribe: "subscribe"
        case .unsubscribe: "unsubscribe"
        case .history: "history"
        }
    }
}

/// The order core's client commands.
public enum OrderCommand: Equatable, Sendable {
    case get(order: String)
    case giftClaim(code: String)
    case giftDecline(code: String)
    case friendpayView(code: String)

    public var op: String {
        switch self {
        case .get: "order.get"
        case .giftClaim: "gift.claim"
        case .giftDecline: "gift.decline"
        case .friendpayView: "friendpay.view"
        }
    }
}

/// Flash sales (contract 4.8).
public enum SaleCommand: Equatable, Sendable {
    /// `product`, when sent, must be the sale's (a client sure of what it buys).
    case buy(sale: String, quantity: Int, product: String?)

    public var op: String {
        switch self {
        case .buy: "sale.buy"
        }
    }
}

/// Buyer groups, presence, moderation and price watches.
public enum CommunityCommand: Equatable, Sendable {
    case publish(Channel, text: String, replyTo: UInt64?)
    case presence(Channel)
    case moderate(Channel, action: ModerationAction, user: String?, offset: UInt64?, seconds: Int64?)
    /// `restock`: also join the product's restock line (holds, contract 4.6).
    case watch(product: String, below: Int64?, restock: Bool = false)
    case unwatch(product: String)
    case watches
    /// What buyers of `product` also bought (contract 4.6), `limit` rows at most.
    case alsoBought(product: String, limit: Int)

    public var op: String {
        switch self {
        case .publish: "publish"
        case .presence: "presence"
        case .moderate: "moderate"
        case .watch: "watch"
        case .unwatch: "unwatch"
        case .watches: "watches"
        case .alsoBought: "also_bought"
        }
    }
}

/// One line of an inbound frame, decoded.
public enum DecodedLine: Equatable, Sendable {
    /// Not JSON, or not an object: counts toward the protocol-violation limit.
    case malformed(String)
    /// A JSON object without a usable `id`: answered without an id.
    case missingID(String)
    /// A command with an id that failed validation.
    case invalid(id: Int64, GatewayError)
    case command(id: Int64, Command)
}

/// Turns inbound frames into commands. Pure: no I/O, no state.
public enum CommandDecoder {
    public static let maxHistoryLimit = Int(Ranges.historyLimit.upperBound)
    public static let defaultHistoryLimit = 50
    public static let maxTextLength = 1000

    /// Splits a frame on `\n` and decodes every non-empty line.
    public static func decodeFrame(_ frame: UnsafeRawBufferPointer) -> [DecodedLine] {
        var lines: [DecodedLine] = []
        var start = 0
        let count = frame.count
        var i = 0
        while i <= count {
            if i == count || frame[i] == UInt8(ascii: "\n") {
                if i > start {
                    let slice = UnsafeRawBufferPointer(rebasing: frame[start..<i])
                    if !isBlank(slice) { lines.append(decodeLine(slice)) }
                }
                start = i + 1
            }
            i += 1
        }
        if lines.isEmpty { lines.append(.malformed("empty frame")) }
        return lines
    }

    public static func decodeFrame(_ text: String) -> [DecodedLine] {
        var bytes = Array(text.utf8)
        return bytes.withUnsafeMutableBytes { decodeFrame(UnsafeRawBufferPointer($0)) }
    }

    /// `text` without leading and trailing whitespace (group messages count after trimming).
    static func trimmed(_ text: String) -> String {
        guard let first = text.firstIndex(where: { !$0.isWhitespace }),
              let last = text.lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return String(text[first...last])
    }

    private static func isBlank(_ b: UnsafeRawBufferPointer) -> Bool {
        b.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
    }

    static func decodeLine(_ bytes: UnsafeRawBufferPointer) -> DecodedLine {
        let json: JSON
        do { json = try JSON.parse(bytes) } catch { return .malformed("invalid JSON: \(error.message)") }
        guard json.objectValue != nil else { return .malformed("a command must be a JSON object") }
        guard let idValue = json["id"] else { return .missingID("a command needs an \"id\"") }
        guard let id = idValue.intValue, id > 0, case .int = idValue else {
            return .missingID("\"id\" must be a positive integer")
        }
        switch decodeCommand(json) {
        case .success(let command): return .command(id: id, command)
        case .failure(let error): return .invalid(id: id, error)
        }
    }

    /// Validates one command object (its `id` already checked).
    public static func decodeCommand(_ json: JSON) -> Result<Command, GatewayError> {
        guard let op = json["op"]?.stringValue else { return .failure(.badRequest("\"op\" must be a string")) }
        do {
            let f = Fields(json)
            switch op {
            case "connect":
                return .success(.session(.connect(token: try f.string("token"), since: try f.since())))
            case "subscribe":
                return .success(.channel(.subscribe(try f.channel(), since: try f.since())))
            case "unsubscribe":
                return .success(.channel(.unsubscribe(try f.channel())))
            case "publish":
                let channel = try f.channel()
                guard channel.kind == .group else { throw GatewayError.badRequest("only group: channels take publish") }
                guard let data = json["data"], data.objectValue != nil else {
                    throw GatewayError.badRequest("\"data\" must be an object")
                }
                let d = Fields(data)
                let text = trimmed(try d.string("text"))
                guard (1...maxTextLength).contains(text.count) else {
                    throw GatewayError.badRequest("\"text\" must be 1 to \(maxTextLength) characters")
                }
                return .success(.community(.publish(channel, text: text, replyTo: try d.optionalOffset("reply_to"))))
            case "history":
                let limit = try f.optionalInt("limit", in: Ranges.historyLimit) ?? Int64(defaultHistoryLimit)
                return .success(.channel(.history(try f.channel(), since: try f.since(), limit: Int(limit))))
            case "presence":
                let channel = try f.channel()
                guard channel.kind == .group || channel.kind == .product else {
                    throw GatewayError.badRequest("presence is for group: and product: channels")
                }
                return .success(.community(.presence(channel)))
            case "watch":
                let below = try f.optionalInt("below", in: Ranges.below)
                let restock = try f.optionalBool("restock") ?? false
                return .success(.community(.watch(product: try f.id("product"), below: below, restock: restock)))
            case "unwatch":
                return .success(.community(.unwatch(product: try f.id("product"))))
            case "watches":
                return .success(.community(.watches))
            case "also_bought":
                let limit = try f.optionalInt("limit", in: Ranges.alsoBoughtLimit) ?? Int64(AlsoBoughtQuery.defaultLimit)
                return .success(.community(.alsoBought(product: try f.id("product"), limit: Int(limit))))
            case "order.get":
                return .success(.order(.get(order: try f.token("order"))))
            case "gift.claim":
                return .success(.order(.giftClaim(code: try f.token("code"))))
            case "gift.decline":
                return .success(.order(.giftDecline(code: try f.token("code"))))
            case "friendpay.view":
                return .success(.order(.friendpayView(code: try f.token("code"))))
            case "sale.buy":
                let quantity = try f.optionalInt("quantity", in: Ranges.saleQuantity) ?? 1
                return .success(.sale(.buy(sale: try f.id("sale"), quantity: Int(quantity), product: try f.optionalID("product"))))
            case "moderate":
                let channel = try f.channel()
                guard channel.kind == .group else { throw GatewayError.badRequest("moderate takes a group: channel") }
                guard let raw = json["action"]?.stringValue, let action = ModerationAction(rawValue: raw) else {
                    throw GatewayError.badRequest("\"action\" must be mute, unmute or delete")
                }
                let user = try f.optionalID("user")
                let offset = try f.optionalOffset("offset")
                // Checked for every action: the node computes the mute deadline from it.
                let seconds = try f.optionalInt("seconds", in: Ranges.moderateSeconds)
                switch action {
                case .mute, .unmute:
                    guard user != nil else { throw GatewayError.badRequest("\(raw) needs \"user\"") }
                case .delete:
                    guard offset != nil else { throw GatewayError.badRequest("delete needs \"offset\"") }
                }
                return .success(.community(.moderate(channel, action: action, user: user, offset: offset, seconds: seconds)))
            case "refresh":
                return .success(.session(.refresh(token: try f.string("token"))))
            case "ping":
                return .success(.session(.ping))
            default:
                return .failure(.badRequest("unknown op \"\(op)\""))
            }
        } catch let error as GatewayError {
            return .failure(error)
        } catch {
            return .failure(.badRequest("\(error)"))
        }
    }
}

/// Typed access to a command's fields with contract-worded errors.
struct Fields {
    let json: JSON
    init(_ json: JSON) { self.json = json }

    func string(_ key: String) throws -> String {
        guard let v = json[key]?.stringValue else { throw GatewayError.badRequest("\"\(key)\" must be a string") }
        return v
    }

    func id(_ key: String) throws -> String {
        let v = try string(key)
        guard Names.isValidID(v) else { throw GatewayError.badRequest("\"\(key)\" is not a valid id") }
        return v
    }

    func optionalID(_ key: String) throws -> String? {
        guard let v = json[key], !v.isNull else { return nil }
        return try id(key)
    }

    /// Opaque codes and order ids: printable ASCII, bounded length.
    func token(_ key: String) throws -> String {
        let v = try string(key)
        guard (1...128).contains(v.utf8.count), v.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw GatewayError.badRequest("\"\(key)\" is not a valid code")
        }
        return v
    }

    /// An integer within its documented range (`Ranges`); fractions, exponents and numbers
    /// beyond Int64 are not integers here.
    func optionalInt(_ key: String, in range: ClosedRange<Int64>) throws -> Int64? {
        guard let v = json[key], !v.isNull else { return nil }
        guard case .int(let i) = v, range.contains(i) else {
            throw GatewayError.badRequest("\"\(key)\" must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return i
    }

    func optionalBool(_ key: String) throws -> Bool? {
        guard let v = json[key], !v.isNull else { return nil }
        guard case .bool(let b) = v else { throw GatewayError.badRequest("\"\(key)\" must be true or false") }
        return b
    }

    /// A channel offset (from 1); `since.offset` passes `Ranges.sinceOffset` to allow 0.
    func optionalOffset(_ key: String, in range: ClosedRange<Int64> = Ranges.offset) throws -> UInt64? {
        guard let i = try optionalInt(key, in: range) else { return nil }
        return UInt64(i)
    }

    func channel() throws -> Channel {
        let name = try string("channel")
        guard let channel = Channel(name) else {
            throw GatewayError.badRequest("\"channel\" must be user:<id>, group:<id>, product:<id> or sale:<id>")
        }
        return channel
    }

    func since() throws -> StreamPosition? {
        guard let s = json["since"], !s.isNull else { return nil }
        guard s.objectValue != nil else { throw GatewayError.badRequest("\"since\" must be {offset, epoch}") }
        let f = Fields(s)
        guard let offset = try f.optionalOffset("offset", in: Ranges.sinceOffset) else { throw GatewayError.badRequest("\"since.offset\" is required") }
        let epoch = try f.string("epoch")
        guard epoch.utf8.count <= 64 else { throw GatewayError.badRequest("\"since.epoch\" is too long") }
        return StreamPosition(offset: offset, epoch: epoch)
    }
}
