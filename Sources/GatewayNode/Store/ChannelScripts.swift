import GatewayRedis

/// Lua of channels: publishing, reading, history, and the outbox relay (Lua/*.lua).
enum ChannelScripts {
    private static let publishLibrary = PackageResources.lib_publish_lua
    static let publish = LuaScript.embedded("publish", PackageResources.publish_lua, libraries: [publishLibrary])
    static let read = LuaScript.embedded("read", PackageResources.read_lua, libraries: [PackageResources.lib_pages_lua])
    static let history = LuaScript.embedded("history", PackageResources.history_lua, libraries: [PackageResources.lib_pages_lua])
    static let relay = LuaScript.embedded("relay", PackageResources.relay_lua, libraries: [publishLibrary, PackageResources.lib_points_lua])
    /// The event entries of an outbox batch, to the event log (`{events}` slot).
    static let eventsRelay = LuaScript.embedded("events_relay", PackageResources.events_relay_lua,
                                                libraries: [publishLibrary, PackageResources.lib_event_lua])
    static let relayRegister = LuaScript.embedded("relay_register", PackageResources.relay_register_lua)
    static let relayDue = LuaScript.embedded("relay_due", PackageResources.relay_due_lua)
    static let relayDone = LuaScript.embedded("relay_done", PackageResources.relay_done_lua)
    static let relayDead = LuaScript.embedded("relay_dead", PackageResources.relay_dead_lua)

    static let all: [LuaScript] = [publish, read, history, relay, eventsRelay, relayRegister, relayDue, relayDone, relayDead]
}
