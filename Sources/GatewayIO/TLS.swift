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
        let key = try Self.requirePEM(at: privateKey, setting: "server.tls_key", kind: "PRIVATE KEY", what: "private key")
        // OpenSSL would ask for the pass phrase on the terminal, and a service has none: the
        // node would hang before listening, or fail blaming the certificate.
        if Self.isEncrypted(key) {
            throw IOError("server.tls_key: \(privateKey) is encrypted with a pass phrase, which a service cannot type; give the key unencrypted (openssl pkey -in \(privateKey) -out plain.pem), readable only by the gateway's user")
        }
    }

    static func isEncrypted(_ pem: Data) -> Bool {
        let text = String(decoding: pem, as: UTF8.self)
        return text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || text.contains("Proc-Type: 4,ENCRYPTED")
    }

    @discardableResult
    private static func requirePEM(at path: String, setting: String, kind: String, what: String) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw IOError("\(setting): cannot read \(path) (missing, or not readable by this user)")
        }
        guard pemHolds(kind, in: data) else {
            throw IOError("\(setting): \(path) holds no PEM \(what) (expected a \"-----BEGIN ...\(kind)-----\" block)")
        }
        return data
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
