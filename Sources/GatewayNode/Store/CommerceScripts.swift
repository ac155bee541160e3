import GatewayRedis

/// The order core's scripts (`Lua/commerce_*.lua`, `Lua/keys_add.lua`, `Lua/legacy_*.lua`).
enum CommerceScripts {
    static let load = LuaScript.embedded("commerce_load", PackageResources.commerce_load_lua)
    /// The order program's libraries (lib_apply: its checks and ops, sale ops among them).
    static let programLibraries = [PackageResources.lib_publish_lua, PackageResources.lib_event_lua, PackageResources.lib_emit_lua,
                                   PackageResources.lib_points_lua, PackageResources.lib_sale_lua, PackageResources.lib_apply_lua]
    static let apply = LuaScript.embedded("commerce_apply", PackageResources.commerce_apply_lua, libraries: programLibraries)
    /// Flash sales (4.8): `Lua/sale_*.lua`.
    static let saleBuy = LuaScript.embedded("sale_buy", PackageResources.sale_buy_lua, libraries: programLibraries)
    static let saleCreate = LuaScript.embedded("sale_create", PackageResources.sale_create_lua,
                                               libraries: [PackageResources.lib_publish_lua, PackageResources.lib_sale_lua])
    static let saleTick = LuaScript.embedded("sale_tick", PackageResources.sale_tick_lua,
                                             libraries: [PackageResources.lib_publish_lua, PackageResources.lib_emit_lua,
                                                         PackageResources.lib_sale_lua])
    static let saleClose = LuaScript.embedded("sale_close", PackageResources.sale_close_lua,
                                              libraries: [PackageResources.lib_publish_lua, PackageResources.lib_emit_lua,
                                                          PackageResources.lib_sale_lua])
    static let timerDrop = LuaScript.embedded("timer_drop", PackageResources.timer_drop_lua)
    static let addKeys = LuaScript.embedded("keys_add", PackageResources.keys_add_lua,
                                            libraries: [PackageResources.lib_publish_lua, PackageResources.lib_event_lua,
                                                        PackageResources.lib_emit_lua])
    static let holdsRelease = LuaScript.embedded("holds_release", PackageResources.holds_release_lua)
    /// The v1 upgrade's steps (`LegacyCommerceMigration`).
    static let legacyLink = LuaScript.embedded("legacy_link", PackageResources.legacy_link_lua)
    static let legacyLookup = LuaScript.embedded("legacy_lookup", PackageResources.legacy_lookup_lua)
    static let legacyIdempotency = LuaScript.embedded("legacy_idempotency", PackageResources.legacy_idempotency_lua)
    static let all = [load, apply, saleBuy, saleCreate, saleTick, saleClose, addKeys, holdsRelease, timerDrop, legacyLink, legacyLookup, legacyIdempotency]
}
