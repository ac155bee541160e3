import Foundation

/// The PEM files that turn the node's one port into `wss://` and `https://`
/// (`server.tls_cert`, `server.tls_key`).
public struct TLSFiles: Equatable {
    public var certificate: String
    public var privateKey: String

    public init(certificate: String, privateKey: String) {
        self.certificate = certificate
        self.privateKey = privateKey
    }

    /// Refuses files lws would reject with only a line on its own log: an unreadable path or
    /// one holding no PEM block of the right kind. Checked before listening, so a typo stops
    /// the start with the setting's name instead of a node that never answers a handshake.
    public func check() throws {
        try Self.requirePEM(at: certificate, setting: "server.tls_cert", kind: "CERTIFICATE", what: "certificate")
        try Self.requirePEM(at: privateKey, setting: "server.tls_key", kind: "PRIVATE KEY", what: "private key")
    }

    private static func requirePEM(at path: String, setting: String, kind: String, what: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw IOError("\(setting): cannot read \(path) (missing, or not readable by this user)")
        }
        guard pemHolds(kind, in: data) else {
            throw IOError("\(setting): \(path) holds no PEM \(what) (expected a \"-----BEGIN ...\(kind)-----\" block)")
        }
    }

    /// Whether `data` has a PEM block whose label ends in `kind` ("PRIVATE KEY" matches
    /// "RSA PRIVATE KEY" and "EC PRIVATE KEY" too).
    static func pemHolds(_ kind: String, in data: Data) -> Bool {
        let text = String(decoding: data, as: UTF8.self)
        var rest = text[...]
        while let begin = rest.range(of: "-----BEGIN ") {
            guard let close = rest[begin.upperBound...].range(of: "-----") else { return false }
            if rest[begin.upperBound..<close.lowerBound].hasSuffix(kind),
               rest[close.upperBound...].contains("-----END ") { return true }
            rest = rest[close.upperBound...]
        }
        return false
    }
}
