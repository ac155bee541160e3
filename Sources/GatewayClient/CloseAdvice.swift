import GatewayProtocol

/// What a client should do after the gateway closed its connection with `code`
/// (contract 2.6 and 4.1; Sources/GatewayProtocol/PROTOCOL.md "Closing").
public enum CloseAdvice: Equatable, Sendable {
    /// Reconnect (with `since` for every channel, so nothing is lost).
    case reconnect
    /// Reconnect later, with exponential backoff and jitter: the server or this user is
    /// over a limit (1001 draining, 4029 too many connections of the user, 429 or no
    /// close frame at all). Reconnecting at once would be refused again.
    case reconnectWithBackoff
    /// Get a new token first (4003).
    case newToken
    /// Reconnecting cannot help (4002 bad token, 4010 removed, 4011 protocol violations,
    /// 1009 frame too large: a client bug).
    case stop

    public init(closeCode code: UInt16?) {
        switch code {
        case CloseCode.tokenExpired.rawValue?: self = .newToken
        case CloseCode.badToken.rawValue?, CloseCode.removed.rawValue?, CloseCode.protocolViolations.rawValue?,
             CloseCode.tooLarge.rawValue?:
            self = .stop
        case CloseCode.connectTimeout.rawValue?, CloseCode.slowConsumer.rawValue?: self = .reconnect
        default: self = .reconnectWithBackoff
        }
    }
}
