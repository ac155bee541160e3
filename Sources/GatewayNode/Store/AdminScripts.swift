import GatewayRedis

/// Lua of the operators' view: node stats and the index of muted groups (Lua/admin_*.lua).
enum AdminScripts {
    /// lib_publish for its `nowMs()`: one way to read the Redis clock.
    private static let clock = PackageResources.lib_publish_lua

    static let statsWrite = LuaScript.embedded("admin_stats_write", PackageResources.admin_stats_write_lua, libraries: [clock])
    static let board = LuaScript.embedded("admin_board", PackageResources.admin_board_lua, libraries: [clock])
    static let groupMutes = LuaScript.embedded("admin_group_mutes", PackageResources.admin_group_mutes_lua)
    static let mutedGroup = LuaScript.embedded("admin_muted_group", PackageResources.admin_muted_group_lua,
                                               libraries: [clock, PackageResources.lib_ending_lua])

    static let all: [LuaScript] = [statsWrite, board, groupMutes, mutedGroup]
}
