import GatewayRedis

/// Lua of buyer groups, presence, moderation, products and price watches (Lua/*.lua).
enum CommunityScripts {
    private static let publishLibrary = PackageResources.lib_publish_lua
    private static func presence(_ name: String, _ body: [UInt8]) -> LuaScript {
        LuaScript.embedded(name, body, libraries: [PackageResources.lib_presence_lua])
    }

    static let groupPublish = LuaScript.embedded("group_publish", PackageResources.group_publish_lua, libraries: [publishLibrary])
    static let moderate = LuaScript.embedded("moderate", PackageResources.moderate_lua,
                                             libraries: [publishLibrary, PackageResources.lib_ending_lua])
    static let presenceJoin = presence("presence_join", PackageResources.presence_join_lua)
    static let presenceLeave = presence("presence_leave", PackageResources.presence_leave_lua)
    static let presenceRenew = presence("presence_renew", PackageResources.presence_renew_lua)
    static let presenceReap = presence("presence_reap", PackageResources.presence_reap_lua)
    static let presenceSync = presence("presence_sync", PackageResources.presence_sync_lua)
    static let presenceRead = presence("presence_read", PackageResources.presence_read_lua)
    static let watch = LuaScript.embedded("watch", PackageResources.watch_lua)
    static let unwatch = LuaScript.embedded("unwatch", PackageResources.unwatch_lua)
    static let userWatches = LuaScript.embedded("user_watches", PackageResources.user_watches_lua)
    static let watches = LuaScript.embedded("watches", PackageResources.watches_lua)
    static let productCreate = LuaScript.embedded("product_create", PackageResources.product_create_lua)
    static let productView = LuaScript.embedded("product_view", PackageResources.product_view_lua)
    static let productUpdate = LuaScript.embedded("product_update", PackageResources.product_update_lua, libraries: [publishLibrary])
    static let watchersBelow = LuaScript.embedded("watchers_below", PackageResources.watchers_below_lua,
                                                  libraries: [PackageResources.lib_watchers_lua])
    static let alertOpen = LuaScript.embedded("alert_open", PackageResources.alert_open_lua, libraries: [publishLibrary])
    static let alertClaim = LuaScript.embedded("alert_claim", PackageResources.alert_claim_lua,
                                               libraries: [publishLibrary, PackageResources.lib_watchers_lua])
    static let alertDone = LuaScript.embedded("alert_done", PackageResources.alert_done_lua)
    static let sendAlerts = LuaScript.embedded("send_alerts", PackageResources.send_alerts_lua,
                                               libraries: [publishLibrary, PackageResources.lib_emit_lua])
    static let restockLine = LuaScript.embedded("restock_line", PackageResources.restock_line_lua)
    static let restockNotify = LuaScript.embedded("restock_notify", PackageResources.restock_notify_lua,
                                                  libraries: [publishLibrary, PackageResources.lib_emit_lua])
    static let botLease = LuaScript.embedded("bot_lease", PackageResources.bot_lease_lua)

    static let all: [LuaScript] = [
        groupPublish, moderate, presenceJoin, presenceLeave, presenceRenew, presenceReap, presenceSync, presenceRead,
        watch, unwatch, userWatches, watches, productCreate, productView, productUpdate, watchersBelow, alertOpen, alertClaim, alertDone, sendAlerts, restockLine, restockNotify, botLease,
    ]
}
