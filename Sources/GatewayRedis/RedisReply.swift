/// A reply from Redis, copied out of hiredis so it outlives the callback.
public enum RedisReply: Sendable, Equatable, CustomStringConvertible {
    case string([UInt8])
    case status(String)
    case integer(Int64)
    case array([RedisReply])
    case null
    case error(String)
    /// The connection went away before the reply came.
    case disconnected

    public var isFailure: Bool {
        switch self {
        case .error, .disconnected: true
        default: false
        }
    }

    public var int: Int64? {
        switch self {
        case .integer(let i): i
        case .string(let b): Int64(String(decoding: b, as: UTF8.self))
        default: nil
        }
    }

    public var bytes: [UInt8]? {
        if case .string(let b) = self { return b }
        if case .status(let s) = self { return Array(s.utf8) }
        return nil
    }

    public var text: String? { bytes.map { String(decoding: $0, as: UTF8.self) } }
    public var array: [RedisReply]? { if case .array(let a) = self { a } else { nil } }

    /// The reply's types and sizes, never its content: what a decoding error may log, since
    /// stored records hold gift and pay codes.
    public var shape: String {
        switch self {
        case .string(let b): "string(\(b.count) bytes)"
        case .status: "status"
        case .integer: "integer"
        case .array(let a): "array[\(a.prefix(8).map(\.shape).joined(separator: ", "))\(a.count > 8 ? ", ... \(a.count) in all" : "")]"
        case .null: "nil"
        case .error: "error"
        case .disconnected: "disconnected"
        }
    }

    public var description: String {
        switch self {
        case .string(let b): "\"\(String(decoding: b, as: UTF8.self))\""
        case .status(let s): s
        case .integer(let i): "\(i)"
        case .array(let a): "[\(a.map(\.description).joined(separator: ", "))]"
        case .null: "nil"
        case .error(let e): "ERR(\(e))"
        case .disconnected: "disconnected"
        }
    }
}
