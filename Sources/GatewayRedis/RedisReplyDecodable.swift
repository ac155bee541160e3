/// A value the store reads out of a Redis reply. Every reply is decoded through this one
/// protocol (as RediStack's `RESPValueConvertible`), so no caller walks reply arrays by index
/// and a reply of the wrong shape is one clear error instead of a silent default.
public protocol RedisReplyDecodable {
    init(redisReply: RedisReply) throws(RedisDecodingError)
}

/// A reply that is not what the script or command promises: a bug, or a Redis problem.
public enum RedisDecodingError: Error, Equatable, CustomStringConvertible {
    /// Redis answered an error (a script error, OOM, a refused command).
    case server(String)
    /// The connection went away before the reply came.
    case disconnected
    /// The reply has another shape than expected.
    case unexpected(expected: String, got: String)

    public var description: String {
        switch self {
        case .server(let message): "redis error: \(message)"
        case .disconnected: "redis connection lost"
        case .unexpected(let expected, let got): "expected \(expected), got \(got)"
        }
    }

    static func check(_ reply: RedisReply, _ expected: String) -> RedisDecodingError {
        switch reply {
        case .error(let message): .server(message)
        case .disconnected: .disconnected
        default: .unexpected(expected: expected, got: reply.shape)
        }
    }
}

extension RedisReply {
    /// Decodes this reply as `T`.
    public func decode<T: RedisReplyDecodable>(as type: T.Type = T.self) throws(RedisDecodingError) -> T {
        try T(redisReply: self)
    }
}

extension RedisReply: RedisReplyDecodable {
    /// Any reply but an error or a lost connection.
    public init(redisReply: RedisReply) throws(RedisDecodingError) {
        if case .error(let message) = redisReply { throw .server(message) }
        if case .disconnected = redisReply { throw .disconnected }
        self = redisReply
    }
}

extension Int64: RedisReplyDecodable {
    public init(redisReply: RedisReply) throws(RedisDecodingError) {
        guard let value = redisReply.int else { throw .check(redisReply, "an integer") }
        self = value
    }
}

extension Int: RedisReplyDecodable {
    public init(redisReply: RedisReply) throws(RedisDecodingError) {
        guard let value = redisReply.int, let int = Int(exactly: value) else { throw .check(redisReply, "an integer") }
        self = int
    }
}

extension Bool: RedisReplyDecodable {
    /// Lua `true` comes back as 1, `false` as nil.
    public init(redisReply: RedisReply) throws(RedisDecodingError) {
        switch redisReply {
        case .integer(let i): self = i != 0
        case .null: self = false
        case .status: self = true
        default: throw .check(redisReply, "a boolean")
        }
    }
}

extension String: RedisReplyDecodable {
    public init(redisReply: RedisReply) throws(RedisDecodingError) {
        switch redisReply {
        case .string, .status: self = redisReply.text!
        case .integer(let i): self = String(i)
        default: throw .check(redisReply, "a string")
        }
    }
}

extension Array: RedisReplyDecodable where Element: RedisReplyDecodable {
    /// An array of one kind; nil (an absent key) is the empty array.
    public init(redisReply: RedisReply) throws(RedisDecodingError) {
        switch redisReply {
        case .array(let items):
            var out: [Element] = []
            out.reserveCapacity(items.count)
            for item in items { out.append(try Element(redisReply: item)) }
            self = out
        case .null: self = []
        default: throw .check(redisReply, "an array")
        }
    }
}

extension Optional: RedisReplyDecodable where Wrapped: RedisReplyDecodable {
    /// nil for a missing value (an absent key or field).
    public init(redisReply: RedisReply) throws(RedisDecodingError) {
        if case .null = redisReply { self = nil; return }
        self = try Wrapped(redisReply: redisReply)
    }
}

/// A hash read with HGETALL (a flat field/value array); empty when the key is absent.
public struct RedisHash: RedisReplyDecodable, Equatable, Sendable {
    public var fields: [String: String]

    public init(_ fields: [String: String] = [:]) { self.fields = fields }

    public init(redisReply: RedisReply) throws(RedisDecodingError) {
        // The reply's own array, not a checked copy of it: snapshots are read on every order call.
        let flat: [RedisReply]
        switch redisReply {
        case .array(let items): flat = items
        case .null: flat = []
        default: throw .check(redisReply, "an array")
        }
        guard flat.count % 2 == 0 else { throw .unexpected(expected: "field/value pairs", got: "\(flat.count) items") }
        var fields: [String: String] = [:]
        fields.reserveCapacity(flat.count / 2)
        var i = 0
        while i < flat.count {
            fields[try String(redisReply: flat[i])] = try String(redisReply: flat[i + 1])
            i += 2
        }
        self.fields = fields
    }

    public var isEmpty: Bool { fields.isEmpty }
    public subscript(_ field: String) -> String? { fields[field] }
}

/// Reads the items of an array reply one after the other, each as its own type: for scripts
/// that return a fixed-shape tuple (`{offset, epoch, recovered, ...}`).
public struct RedisArrayReader {
    private let items: [RedisReply]
    private var index = 0

    public init(_ reply: RedisReply) throws(RedisDecodingError) {
        switch reply {
        case .array(let items): self.items = items
        case .null: items = []
        default: throw .check(reply, "an array")
        }
    }

    public var isAtEnd: Bool { index >= items.count }
    public var remaining: Int { items.count - index }

    public mutating func next<T: RedisReplyDecodable>(_ type: T.Type = T.self) throws(RedisDecodingError) -> T {
        guard index < items.count else { throw .unexpected(expected: "\(items.count + 1)+ items", got: "\(items.count)") }
        defer { index += 1 }
        return try T(redisReply: items[index])
    }
}
