/// Error codes of the contract (PROTOCOL.md 2.2); the raw value is the wire form.
public enum ErrorCode: String, Sendable, CaseIterable {
    case badRequest = "bad_request"
    case unauthorized
    case forbidden
    case notFound = "not_found"
    case conflict
    case gone
    case rateLimited = "rate_limited"
    case tooLarge = "too_large"
    case unavailable
    case `internal`

    /// HTTP status used when the same error answers an HTTP call.
    public var httpStatus: Int {
        switch self {
        case .badRequest: 400
        case .unauthorized: 401
        case .forbidden: 403
        case .notFound: 404
        case .conflict: 409
        case .gone: 410
        case .rateLimited: 429
        case .tooLarge: 413
        case .unavailable: 503
        case .internal: 500
        }
    }
}

/// A refusal that travels back to the caller as `{"error":{...}}`.
public struct GatewayError: Error, Equatable, Sendable {
    public var code: ErrorCode
    public var message: String
    public var temporary: Bool
    public var retryAfterMs: Int64?

    public init(_ code: ErrorCode, _ message: String, temporary: Bool? = nil, retryAfterMs: Int64? = nil) {
        self.code = code
        self.message = message
        self.temporary = temporary ?? (code == .unavailable)
        self.retryAfterMs = retryAfterMs
    }

    public static func badRequest(_ m: String) -> GatewayError { GatewayError(.badRequest, m) }
    public static func forbidden(_ m: String) -> GatewayError { GatewayError(.forbidden, m) }
    public static func notFound(_ m: String) -> GatewayError { GatewayError(.notFound, m) }
    public static let redisUnavailable = GatewayError(.unavailable, "storage is unavailable, retry shortly")

    /// `{"code":..,"message":..,"temporary":..}` as a JSON value.
    public var json: JSON {
        var fields: [(String, JSON)] = [
            ("code", .string(code.rawValue)),
            ("message", .string(message)),
            ("temporary", .bool(temporary)),
        ]
        if let retryAfterMs { fields.append(("retry_after_ms", .int(retryAfterMs))) }
        return .object(fields)
    }

    /// `{"error":{...}}`: the one builder of HTTP error bodies (the node's and the I/O glue's),
    /// so they carry `temporary` and `retry_after_ms` exactly as WebSocket errors do.
    public var httpBody: [UInt8] {
        var out: [UInt8] = []
        JSON.object([("error", json)]).write(into: &out)
        return out
    }

    /// `Retry-After` in whole seconds (rounded up) when the error says when to retry.
    public var httpHeaders: [(String, String)] {
        guard let retryAfterMs else { return [] }
        return [("Retry-After", String(max(1, (retryAfterMs + 999) / 1000)))]
    }

    /// An error named by its wire code, as the I/O glue refuses requests.
    public init(wireCode: String, _ message: String, temporary: Bool? = nil, retryAfterMs: Int64? = nil) {
        self.init(ErrorCode(rawValue: wireCode) ?? .internal, message, temporary: temporary, retryAfterMs: retryAfterMs)
    }
}

/// WebSocket close codes of the contract (PROTOCOL.md 2.6).
public enum CloseCode: UInt16, Sendable {
    case normal = 1000
    case goingAway = 1001
    case tooLarge = 1009
    case connectTimeout = 4001
    case badToken = 4002
    case tokenExpired = 4003
    case slowConsumer = 4008
    case removed = 4010
    case protocolViolations = 4011
    /// Over `limits.conns_per_user` (PROTOCOL 4.1): reconnect later, with backoff.
    case tooManyConnections = 4029
}
