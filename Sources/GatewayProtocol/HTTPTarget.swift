/// Where outbound HTTP requests go (`webhooks.url`), parsed once when the setting is read
/// so the sending side never meets a surprise: only `http`/`https`, a host, an optional
/// port and a path with query. Credentials in the URL (`user:pass@`) are refused because
/// they would be sent nowhere and logged everywhere; a fragment because it means nothing
/// to a server.
public struct HTTPTarget: Equatable, Sendable {
    public let isTLS: Bool
    /// Lowercased; an IPv6 literal without its brackets.
    public let host: String
    public let port: Int
    /// The path and query as sent on the request line, at least `/`.
    public let requestTarget: String

    public struct Invalid: Error, Equatable, Sendable, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    public init(_ url: String) throws(Invalid) {
        guard url.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw Invalid("a URL has no spaces, control characters or non-ASCII characters (percent-encode them)")
        }
        let lower = url.lowercased()
        let rest: Substring
        if lower.hasPrefix("https://") {
            isTLS = true
            rest = url.dropFirst(8)
        } else if lower.hasPrefix("http://") {
            isTLS = false
            rest = url.dropFirst(7)
        } else {
            throw Invalid("expected an http:// or https:// URL")
        }
        guard !rest.contains("#") else { throw Invalid("a URL to POST to has no #fragment") }
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        guard !authority.contains("@") else { throw Invalid("credentials in the URL (user@host) are not supported") }

        var hostPart: Substring
        var portPart: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw Invalid("an IPv6 host needs its closing ]") }
            hostPart = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw Invalid("expected :port after the IPv6 host") }
                portPart = after.dropFirst()
            }
            guard hostPart.contains(":"), hostPart.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else {
                throw Invalid("not an IPv6 address between the brackets")
            }
        } else {
            if let colon = authority.firstIndex(of: ":") {
                hostPart = authority[..<colon]
                portPart = authority[authority.index(after: colon)...]
            } else {
                hostPart = authority
            }
            try Self.checkHostName(hostPart)
        }
        host = hostPart.lowercased()
        if let portPart {
            guard !portPart.isEmpty, portPart.count <= 5, portPart.allSatisfy({ $0.isASCII && $0.isNumber }), let p = Int(portPart), (1...65_535).contains(p) else {
                throw Invalid("the port must be a number from 1 to 65535")
            }
            port = p
        } else {
            port = isTLS ? 443 : 80
        }
        let path = rest[authorityEnd...]
        requestTarget = path.isEmpty ? "/" : path.hasPrefix("?") ? "/" + path : String(path)
    }

    /// A DNS name or an IPv4 address: dot-separated labels of letters, digits, hyphens and
    /// underscores (container and service names have them).
    private static func checkHostName(_ name: Substring) throws(Invalid) {
        guard !name.isEmpty else { throw Invalid("the URL has no host") }
        guard name.count <= 253 else { throw Invalid("the host name is too long") }
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            guard !label.isEmpty, label.count <= 63, !label.hasPrefix("-"), !label.hasSuffix("-"),
                  label.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
                throw Invalid("the host must be a name like hooks.example.com, an IPv4 address or [an IPv6 address]")
            }
        }
    }

    /// The `Host` header: the port only when it is not the scheme's own.
    public var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == (isTLS ? 443 : 80) ? h : "\(h):\(port)"
    }

    /// Scheme, host and port: what logs may show (a query can carry a shop's token).
    public var origin: String { "\(isTLS ? "https" : "http")://\(hostHeader)" }
}
