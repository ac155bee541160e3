import GatewayRedis

/// The webhook sender's scripts (`Lua/webhook_*.lua`), every key in the `{events}` slot.
enum WebhookScripts {
    private static let publishLibrary = PackageResources.lib_publish_lua
    static let dispatch = LuaScript.embedded("webhook_dispatch", PackageResources.webhook_dispatch_lua,
                                             libraries: [publishLibrary, PackageResources.lib_webhook_lua])
    static let settle = LuaScript.embedded("webhook_settle", PackageResources.webhook_settle_lua,
                                           libraries: [publishLibrary, PackageResources.lib_webhook_lua])
    static let stats = LuaScript.embedded("webhook_stats", PackageResources.webhook_stats_lua)
    static let retrying = LuaScript.embedded("webhook_retrying", PackageResources.webhook_retrying_lua,
                                             libraries: [PackageResources.lib_webhook_lua])
    static let all = [dispatch, settle, stats, retrying]

    /// KEYS of each script, in its order.
    static let dispatchKeys = [StoreKeys.eventsLog, StoreKeys.webhookDispatched, StoreKeys.webhookQueues, StoreKeys.webhookDue,
                               StoreKeys.webhookHeads, StoreKeys.webhookStats, StoreKeys.webhookDead]
    static let settleKeys = [StoreKeys.eventsLog, StoreKeys.webhookQueues, StoreKeys.webhookDue, StoreKeys.webhookLeases,
                             StoreKeys.webhookAttempts, StoreKeys.webhookHeads, StoreKeys.webhookStats, StoreKeys.webhookDead]
    static let statsKeys = [StoreKeys.eventsLog, StoreKeys.webhookDispatched, StoreKeys.webhookHeads, StoreKeys.webhookStats]
    static let retryingKeys = [StoreKeys.eventsLog, StoreKeys.webhookQueues, StoreKeys.webhookDue, StoreKeys.webhookLeases,
                               StoreKeys.webhookAttempts, StoreKeys.webhookHeads, StoreKeys.webhookStats]
    /// The admin read looks at this many of the oldest keys for ones being retried.
    static let retryingScan = 500
    /// The dead-letter stream keeps about this many given-up events.
    static let deadCap = 10_000
}
