import GatewayCrypto
import GatewayProtocol

public enum Role: String, Sendable {
    case buyer, bot, merchant
}

/// What a verified connect token says about its holder (PROTOCOL.md section 2.1).
public struct Claims: Equatable, Sendable {
    public var sub: String
    /// Unix seconds.
    public var exp: Int64
    public var role: Role
    /// Product ids whose groups a bot or merchant may join.
    public var products: [String]
    /// Bots only.
    public var moderator: Bool
    public var name: String?

    public init(sub: String, exp: Int64, role: Role = .buyer, products: [String] = [],
                moderator: Bool = false, name: String? = nil) {
        self.sub = sub
        self.exp = exp
        self.role = role
        self.products = products
        self.moderator = moderator
        self.name = name
    }
}

public enum TokenError: Error, Equatable, Sendable {
    /// Not three base64url parts, bad JSON, bad header.
    case malformed(String)
    /// `alg` other than HS256 (`none` included), or a `typ` other than JWT.
    case unsupportedAlgorithm(String)
    case badSignature
    /// `exp` is at or before now.
    case expired
    /// A claim is missing, ill-typed or breaks a rule; the payload names which.
    case invalidClaim(String)

    /// 4003 tells the client a fresh token will do; 4002 tells it not to retry.
    public var closeCode: UInt16 {
        if case .expired = self { return CloseCode.tokenExpired.rawValue }
        return CloseCode.badToken.rawValue
    }

    public var message: String {
        switch self {
        case let .malformed(detail): return "malformed token: \(detail)"
        case let .unsupportedAlgorithm(alg): return "unsupported token algorithm: \(alg)"
        case .badSignature: return "bad token signature"
        case .expired: return "token expired"
        case let .invalidClaim(detail): return "invalid token claim: \(detail)"
        }
    }
}

enum TokenLimits {
    static let maxTokenBytes = 8192
    static let maxNameCharacters = 32
    /// Characters alone do not bound size: one letter with combining marks is one character.
    static let maxNameBytes = 128
    /// Claims are flat; deeper nesting is never legitimate.
    static let maxJSONDepth = 8
}

/// Verifies HS256 JWTs. The signature is checked before any payload byte is trusted.
public struct TokenVerifier: Sendable {
    private let secret: [UInt8]

    public init(secret: [UInt8]) { self.secret = secret }
    public init(secret: String) { self.secret = Array(secret.utf8) }

    public func verify(_ token: String, nowSeconds: Int64) -> Result<Claims, TokenError> {
        do throws(TokenError) {
            return .success(try verifyThrowing(token, nowSeconds: nowSeconds))
        } catch {
            return .failure(error)
        }
    }

    private func verifyThrowing(_ token: String, nowSeconds: Int64) throws(TokenError) -> Claims {
        let utf8 = token.utf8
        guard utf8.count <= TokenLimits.maxTokenBytes else { throw .malformed("token too long") }
        guard let dot1 = utf8.firstIndex(of: UInt8(ascii: ".")) else {
            throw .malformed("expected three parts")
        }
        let afterDot1 = utf8.index(after: dot1)
        guard let dot2 = utf8[afterDot1...].firstIndex(of: UInt8(ascii: ".")) else {
            throw .malformed("expected three parts")
        }
        let afterDot2 = utf8.index(after: dot2)
        guard !utf8[afterDot2...].contains(UInt8(ascii: ".")) else {
            throw .malformed("expected three parts")
        }

        guard let headerBytes = Base64URL.decode(token[..<dot1]),
              let payloadBytes = Base64URL.decode(token[afterDot1..<dot2]),
              let signature = Base64URL.decode(token[afterDot2...])
        else { throw .malformed("bad base64url") }

        try checkHeader(headerBytes)

        let expected = Crypto.hmacSHA256(key: secret, message: utf8[..<dot2])
        guard Crypto.constantTimeEquals(expected, signature) else { throw .badSignature }

        let payload: JSON
        do {
            payload = try JSON.parse(payloadBytes, maxDepth: TokenLimits.maxJSONDepth)
        } catch {
            throw .malformed("payload is not valid JSON")
        }
        guard let members = payload.objectValue else { throw .malformed("payload is not a JSON object") }
        if Self.hasDuplicateKey(members) { throw .malformed("payload repeats a claim") }

        let claims = try Self.claims(from: payload)
        guard claims.exp > nowSeconds else { throw .expired }
        return claims
    }

    private func checkHeader(_ bytes: [UInt8]) throws(TokenError) {
        let header: JSON
        do {
            header = try JSON.parse(bytes, maxDepth: TokenLimits.maxJSONDepth)
        } catch {
            throw .malformed("header is not valid JSON")
        }
        guard let members = header.objectValue else { throw .malformed("header is not a JSON object") }
        // Which `alg` counts when there are two depends on the library: accept neither.
        if Self.hasDuplicateKey(members) { throw .malformed("header repeats a member") }
        guard let alg = header["alg"]?.stringValue else { throw .malformed("header has no alg") }
        guard alg == "HS256" else { throw .unsupportedAlgorithm(alg) }
        if let typ = header["typ"] {
            guard typ.stringValue == "JWT" else {
                throw .unsupportedAlgorithm("typ \(typ.stringValue ?? typ.serialized())")
            }
        }
        // RFC 7515: extensions we do not understand must not be ignored.
        if header["crit"] != nil { throw .malformed("unsupported crit header") }
    }

    /// RFC 7515 4 / RFC 7519 4: member names must be unique; a parser may not just take one.
    private static func hasDuplicateKey(_ members: [(String, JSON)]) -> Bool {
        var seen = Set<String>(minimumCapacity: members.count)
        for (key, _) in members where !seen.insert(key).inserted { return true }
        return false
    }

    private static func claims(from payload: JSON) throws(TokenError) -> Claims {
        guard let sub = payload["sub"]?.stringValue else { throw .invalidClaim("sub missing or not a string") }
        guard Names.isValidID(sub) else { throw .invalidClaim("sub is not a valid id") }

        let exp: Int64
        switch payload["exp"] {
        case let .int(i)?:
            exp = i
        case let .double(d)?:
            // NumericDate may carry a fraction; whole seconds (rounded down) are enough here.
            // Done by hand because `rounded(.down)` needs libm's floor at link time.
            guard d >= -9_223_372_036_854_775_808.0, d < 9_223_372_036_854_775_808.0 else {
                throw .invalidClaim("exp out of range")
            }
            let truncated = Int64(d)
            exp = Double(truncated) > d ? truncated - 1 : truncated
        case nil:
            throw .invalidClaim("exp missing")
        default:
            throw .invalidClaim("exp is not a number")
        }

        var role = Role.buyer
        if let value = payload["role"] {
            guard let raw = value.stringValue, let r = Role(rawValue: raw) else {
                throw .invalidClaim("unknown role")
            }
            role = r
        }

        var products: [String] = []
        if let value = payload["products"] {
            guard let items = value.arrayValue else { throw .invalidClaim("products is not an array") }
            products.reserveCapacity(items.count)
            for item in items {
                guard let id = item.stringValue, Names.isValidID(id) else {
                    throw .invalidClaim("product is not a valid id")
                }
                products.append(id)
            }
        }

        var moderator = false
        if let value = payload["moderator"] {
            guard let b = value.boolValue else { throw .invalidClaim("moderator is not a boolean") }
            moderator = b
        }
        if moderator && role != .bot { throw .invalidClaim("only bots may be moderators") }

        var name: String? = nil
        if let value = payload["name"] {
            guard let s = value.stringValue else { throw .invalidClaim("name is not a string") }
            guard s.utf8.count <= TokenLimits.maxNameBytes else { throw .invalidClaim("name longer than 128 bytes") }
            guard s.count <= TokenLimits.maxNameCharacters else { throw .invalidClaim("name longer than 32 characters") }
            name = s
        }

        return Claims(sub: sub, exp: exp, role: role, products: products, moderator: moderator, name: name)
    }
}

/// Mints HS256 JWTs, for tests, bots and the load tester.
public struct TokenMinter: Sendable {
    private let secret: [UInt8]

    public init(secret: [UInt8]) { self.secret = secret }
    public init(secret: String) { self.secret = Array(secret.utf8) }

    /// base64url of `{"alg":"HS256","typ":"JWT"}`.
    private static let encodedHeader = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"

    public func mint(_ claims: Claims) -> String {
        var members: [(String, JSON)] = [("sub", .string(claims.sub)), ("exp", .int(claims.exp))]
        if claims.role != .buyer { members.append(("role", .string(claims.role.rawValue))) }
        if !claims.products.isEmpty { members.append(("products", .array(claims.products.map { .string($0) }))) }
        if claims.moderator { members.append(("moderator", .bool(true))) }
        if let name = claims.name { members.append(("name", .string(name))) }

        var payload: [UInt8] = []
        JSON.object(members).write(into: &payload)
        let signingInput = Self.encodedHeader + "." + Base64URL.encode(payload)
        let signature = Crypto.hmacSHA256(key: secret, message: signingInput.utf8)
        return signingInput + "." + Base64URL.encode(signature)
    }
}
