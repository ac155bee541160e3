import GatewayCrypto

/// A Lua script the store runs with EVALSHA. The source is the script's file with the
/// shared library files it uses put in front (Redis scripts cannot include each other),
/// so the SHA-1 is of exactly what `SCRIPT LOAD` and the `EVAL` fallback send.
public struct LuaScript: Sendable, Hashable, CustomStringConvertible {
    public let name: String
    public let source: String
    public let sha: String

    public init(name: String, source: String) {
        self.name = name
        self.source = source
        self.sha = Crypto.sha1Hex(source)
    }

    public var description: String { "\(name).lua" }
}
