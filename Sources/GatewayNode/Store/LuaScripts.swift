import GatewayRedis

extension LuaScript {
    /// A script from `Lua/<name>.lua` (embedded at build time), with the library files it
    /// uses (`lib_*.lua`) put in front in the order given.
    static func embedded(_ name: String, _ body: [UInt8], libraries: [[UInt8]] = []) -> LuaScript {
        let source = (libraries + [body]).map { String(decoding: $0, as: UTF8.self) }.joined(separator: "\n")
        return LuaScript(name: name, source: source)
    }
}

/// Every script the node runs: loaded with SCRIPT LOAD on each connection at connect.
enum LuaScripts {
    static var all: [LuaScript] { ChannelScripts.all + CommunityScripts.all + CommerceScripts.all + AdminScripts.all + WebhookScripts.all
        + RiskScripts.all + BuyerTrailScripts.all }
}
