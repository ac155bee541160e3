// swift-tools-version: 6.1
import PackageDescription

/// Swift 5 language mode only where lws and hiredis callbacks force it: GatewayIO and
/// GatewayNode (with the node's own test targets) own state
/// confined to the one event-loop thread, which the compiler cannot follow through C callbacks.
/// Everything else compiles in Swift 6 mode, GatewayClient included: it runs its own lws loop
/// thread, and what callers share with that thread is behind a Mutex.
let glue: [SwiftSetting] = [.swiftLanguageMode(.v5)]

let package = Package(
    name: "cardshop-gateway",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "gateway", targets: ["gateway"]),
        .executable(name: "loadtest", targets: ["loadtest"]),
        .library(name: "GatewayClient", targets: ["GatewayClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    ],
    targets: [
        // C libraries from Debian, reached through tiny shims.
        .systemLibrary(name: "CLws", pkgConfig: "libwebsockets",
                       providers: [.apt(["libwebsockets-dev"])]),
        .systemLibrary(name: "CHiredis", pkgConfig: "hiredis",
                       providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto",
                       providers: [.apt(["libssl-dev"])]),
        // libev: the epoll loop under lws' evlib_ev plugin (libwebsockets-evlib-ev); no pkg-config file.
        .systemLibrary(name: "CLibev", providers: [.apt(["libev-dev"])]),

        // Child processes that die with the gateway (prctl between fork and exec needs C).
        .target(name: "CProcess"),

        // Pure code: no I/O.
        .target(name: "GatewayProtocol", exclude: ["PROTOCOL.md"]),
        .target(name: "GatewayCrypto", dependencies: ["COpenSSL"]),
        .target(name: "GatewayAuth", dependencies: ["GatewayProtocol", "GatewayCrypto"]),
        .target(name: "GatewayCore", dependencies: ["GatewayProtocol"]),
        .target(name: "OrderCore", dependencies: ["GatewayProtocol"]),
        .target(name: "CommunityCore", dependencies: ["GatewayProtocol"]),
        // Payment providers' notifies (Alipay, WeChat Pay v3, 易支付): parsed and verified, no I/O.
        .target(name: "GatewayPayments", dependencies: ["GatewayProtocol", "GatewayCrypto"]),
        // Redis values, replies, scripts and cluster slot routing: no I/O.
        .target(name: "GatewayRedis", dependencies: ["GatewayCrypto"]),
        // JSON-lines logs (swift-log handler): ids as fields, never a secret.
        .target(name: "GatewayLog", dependencies: [
            "GatewayProtocol", .product(name: "Logging", package: "swift-log"),
        ]),
        // OrderCore: `members.levels` is checked by the ladder the order core prices with.
        .target(name: "GatewayConfig", dependencies: [
            "GatewayProtocol", "OrderCore",
            .product(name: "Configuration", package: "swift-configuration"),
        ]),

        // I/O glue: lws event loop and hiredis on it, and the outbound HTTP(S) client for
        // webhooks (OpenSSL's headers come with libwebsockets.h; libssl is linked here).
        .target(name: "GatewayIO", dependencies: ["CLws", "CLibev", "CHiredis", "GatewayCore", "GatewayProtocol", "GatewayRedis", .product(name: "Logging", package: "swift-log")],
                swiftSettings: glue, linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),

        // The node: connections, commands, HTTP API, Redis scripts.
        .target(name: "GatewayNode", dependencies: [
            "GatewayProtocol", "GatewayAuth", "GatewayCore", "GatewayConfig", "GatewayIO",
            "GatewayCrypto", "GatewayRedis", "CLws", "OrderCore", "CommunityCore", "CProcess", "GatewayLog", "GatewayPayments",
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Logging", package: "swift-log"),
        ], exclude: ["Store/README.md"], resources: [.copy("Web"), .embedInCode("Lua")], swiftSettings: glue),

        // Client library on lws: tests, load tester and bots use it.
        .target(name: "GatewayClient", dependencies: ["GatewayProtocol", "CLws", "CLibev"]),

        // Test infrastructure shared by the tests and the load tester: one Redis launcher (single
        // server and local Cluster), free ports, a RESP probe, a blocking HTTP client. No XCTest.
        .target(name: "GatewayTestSupport", dependencies: ["GatewayProtocol", "GatewayRedis", "GatewayCrypto", "COpenSSL", "CProcess"]),

        // `serve --dev` and the single-machine setup: the /dev endpoints, the demo page and its
        // bot, and the private redis-server. Swift 6 mode: the bot and the Redis supervisor run
        // on threads of their own.
        .target(name: "GatewayDev", dependencies: [
            "GatewayNode", "GatewayIO", "GatewayProtocol", "GatewayAuth", "GatewayCrypto", "OrderCore", "CommunityCore",
            "GatewayClient", "GatewayTestSupport", "CProcess", .product(name: "Logging", package: "swift-log"),
        ], resources: [.copy("Web")]),

        .executableTarget(name: "gateway", dependencies: [
            "GatewayNode", "GatewayDev", "GatewayConfig", "GatewayAuth", "OrderCore", "CommunityCore", "GatewayClient", "GatewayProtocol",
            "GatewayLog", .product(name: "Logging", package: "swift-log"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "loadtest", dependencies: [
            "GatewayClient", "GatewayProtocol", "GatewayAuth", "GatewayTestSupport",
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Loadtest/Sources/loadtest"),

        .testTarget(name: "GatewayProtocolTests", dependencies: ["GatewayProtocol"]),
        .testTarget(name: "GatewayClientTests", dependencies: ["GatewayClient"]),
        .testTarget(name: "GatewayAuthTests", dependencies: ["GatewayAuth", "GatewayCrypto"]),
        .testTarget(name: "GatewayCoreTests", dependencies: ["GatewayCore", "GatewayProtocol"]),
        .testTarget(name: "GatewayRedisTests", dependencies: ["GatewayRedis"]),
        // Node code against the in-memory store twins; each Lua script against a real redis-server.
        .testTarget(name: "GatewayNodeTests", dependencies: ["GatewayNode", "GatewayRedis", "OrderCore", "GatewayProtocol", "GatewayConfig", "GatewayCore", "GatewayPayments"], swiftSettings: glue),
        // The loop's cross-thread `post` and the outbound HTTP client against real sockets.
        .testTarget(name: "GatewayIOTests", dependencies: ["GatewayIO", "GatewayProtocol", "CLws", "GatewayTestSupport"], swiftSettings: glue),
        .testTarget(name: "GatewayLogTests", dependencies: ["GatewayLog", "GatewayProtocol", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "ScriptTests", dependencies: ["GatewayNode", "GatewayIO", "GatewayRedis", "GatewayTestSupport", "CHiredis", "OrderCore", "GatewayProtocol"],
                    swiftSettings: glue),
        .testTarget(name: "GatewayConfigTests", dependencies: ["GatewayConfig", "OrderCore"]),
        .testTarget(name: "OrderCoreTests", dependencies: ["OrderCore", "GatewayProtocol"]),
        .testTarget(name: "CommunityCoreTests", dependencies: ["CommunityCore", "GatewayProtocol"]),
        .testTarget(name: "GatewayPaymentsTests", dependencies: ["GatewayPayments", "GatewayCrypto", "GatewayProtocol", "GatewayTestSupport"]),
        .testTarget(name: "IntegrationTests", dependencies: [
            "GatewayClient", "GatewayProtocol", "GatewayAuth", "GatewayCrypto", "GatewayRedis", "GatewayTestSupport",
        ]),
    ]
)
