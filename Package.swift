// swift-tools-version:6.1
// Triglav: multipath VPN for Linux. The folder layout is the architecture (see docs/ARCHITECTURE.md):
// system-library targets wrap C libraries, sans-IO cores sit in the middle, Linux I/O and the daemon outside.
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

// The multipath engine and its simulator are optimised in debug builds too: the simulator's seeded scenarios are
// CPU-bound (about 22 CPU-minutes unoptimised, most of `make test`'s time). Swift takes the last -O flag.
// In release builds its generic engine is also made available to other modules for specialisation: the data plane's
// `MultipathEngine<Int>` otherwise runs unspecialised, looking up generic metadata for every packet.
let simulatedSettings: [SwiftSetting] = strictSettings + [
    .unsafeFlags(["-O"], .when(configuration: .debug)),
    .unsafeFlags(["-cross-module-optimization"], .when(configuration: .release)),
]

let package = Package(
    name: "Triglav",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "triglavd", targets: ["triglavd"]),
        .executable(name: "triglav", targets: ["triglav"]),
        .executable(name: "triglav-linkemu", targets: ["triglav-linkemu"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // C libraries, each imported by exactly one Swift wrapper.
        .systemLibrary(name: "CSodium", path: "Sources/CSodium", pkgConfig: "libsodium",
                       providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(name: "CDBus", path: "Sources/CDBus", pkgConfig: "dbus-1",
                       providers: [.apt(["libdbus-1-dev"])]),
        .systemLibrary(name: "CNetlink", path: "Sources/CNetlink", pkgConfig: "libnl-route-3.0",
                       providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]),
        .systemLibrary(name: "CSystemd", path: "Sources/CSystemd", pkgConfig: "libsystemd",
                       providers: [.apt(["libsystemd-dev"])]),
        .target(name: "CTriglavShims", dependencies: ["CDBus", "CNetlink", "CSystemd"], path: "Sources/CTriglavShims"),

        // Foundation-free cores.
        .target(name: "TriglavCore", swiftSettings: strictSettings),
        .target(name: "TriglavCrypto", dependencies: ["CSodium", "TriglavCore"], swiftSettings: strictSettings),
        .target(name: "TriglavProtocol", dependencies: ["TriglavCrypto", "TriglavCore"], swiftSettings: strictSettings),
        .target(name: "TriglavMultipath", dependencies: ["TriglavCore"], swiftSettings: simulatedSettings),
        .target(name: "TriglavConfig", dependencies: ["TriglavCore", "TriglavCrypto", "TOMLKit"], swiftSettings: strictSettings),
        .target(name: "TriglavControlAPI", swiftSettings: strictSettings),
        .target(name: "TriglavMetrics", swiftSettings: strictSettings),

        // Wrappers of system services.
        .target(name: "TriglavNetlink", dependencies: ["CNetlink", "CTriglavShims", "TriglavCore",
                                                       .product(name: "Logging", package: "swift-log")],
                swiftSettings: strictSettings),
        .target(name: "TriglavDBus", dependencies: ["CDBus", "CTriglavShims"], swiftSettings: strictSettings),
        // The control API's values on the bus: one conversion for the daemon and the CLI.
        .target(name: "TriglavControlBus", dependencies: ["TriglavControlAPI", "TriglavDBus"], swiftSettings: strictSettings),
        .target(name: "TriglavSystemd", dependencies: ["CSystemd", "CTriglavShims",
                                                       .product(name: "Logging", package: "swift-log")],
                swiftSettings: strictSettings),

        // Linux I/O and composition.
        .target(name: "TriglavDataPlane", dependencies: ["CTriglavShims", "TriglavCore", "TriglavProtocol",
                                                         "TriglavMultipath", "TriglavNetlink", "TriglavCrypto",
                                                         .product(name: "Logging", package: "swift-log")],
                swiftSettings: strictSettings),
        .target(name: "TriglavLinkEmulator", dependencies: ["CTriglavShims", "TriglavCore"], swiftSettings: strictSettings),
        .target(name: "TriglavDaemon", dependencies: ["TriglavCore", "TriglavConfig", "TriglavCrypto", "TriglavDataPlane", "TriglavProtocol",
                                                      "TriglavNetlink", "TriglavDBus", "TriglavSystemd", "TriglavControlAPI", "TriglavControlBus", "TriglavMetrics",
                                                      .product(name: "Logging", package: "swift-log")],
                swiftSettings: strictSettings),

        // Thin executables.
        .executableTarget(name: "triglavd", dependencies: ["TriglavDaemon", "TriglavConfig", "TriglavCore",
                                                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                                           .product(name: "Logging", package: "swift-log")],
                          swiftSettings: strictSettings),
        .executableTarget(name: "triglav", dependencies: ["TriglavControlAPI", "TriglavControlBus", "TriglavDBus", "TriglavCrypto", "TriglavCore",
                                                          .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: strictSettings),
        .executableTarget(name: "triglav-dataplane-dev", dependencies: ["TriglavDataPlane", "TriglavCore", "TriglavCrypto", "TriglavMultipath", "TriglavProtocol",
                                                                       .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                                                       .product(name: "Logging", package: "swift-log")],
                          swiftSettings: strictSettings),
        .executableTarget(name: "triglav-bus-fixture", dependencies: ["TriglavDaemon", "TriglavDBus", "TriglavControlAPI",
                                                                      .product(name: "Logging", package: "swift-log")],
                          swiftSettings: strictSettings),
        .executableTarget(name: "triglav-linkemu", dependencies: ["TriglavLinkEmulator",
                                                                 .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: strictSettings),

        // Tests.
        .testTarget(name: "TriglavCoreTests", dependencies: ["TriglavCore"], swiftSettings: strictSettings),
        .testTarget(name: "TriglavCryptoTests", dependencies: ["TriglavCrypto"], swiftSettings: strictSettings),
        .testTarget(name: "TriglavProtocolTests", dependencies: ["TriglavProtocol", "TriglavCrypto"], swiftSettings: strictSettings),
        .testTarget(name: "TriglavMultipathTests", dependencies: ["TriglavMultipath"], swiftSettings: simulatedSettings),
        .testTarget(name: "TriglavMetricsTests", dependencies: ["TriglavMetrics"], swiftSettings: strictSettings),
        .testTarget(name: "TriglavConfigTests", dependencies: ["TriglavConfig"], swiftSettings: strictSettings),
        .testTarget(name: "TriglavNetlinkTests", dependencies: ["TriglavNetlink"], swiftSettings: strictSettings),
        .target(name: "TriglavTestSupport", path: "Tests/TriglavTestSupport", swiftSettings: strictSettings),
        .testTarget(name: "TriglavDBusTests", dependencies: ["TriglavDBus", "TriglavTestSupport"], swiftSettings: strictSettings),
        .testTarget(name: "TriglavSystemdTests", dependencies: ["TriglavSystemd", "TriglavTestSupport"], swiftSettings: strictSettings),
        .testTarget(name: "TriglavLinkEmulatorTests", dependencies: ["TriglavLinkEmulator"], swiftSettings: strictSettings),
        .testTarget(name: "TriglavDataPlaneTests", dependencies: ["TriglavDataPlane"], swiftSettings: strictSettings),
        .testTarget(name: "TriglavDaemonTests", dependencies: ["TriglavDaemon", "TriglavControlBus", "TriglavTestSupport"], swiftSettings: strictSettings),
        .testTarget(name: "IntegrationTests", dependencies: ["TriglavCore", "TriglavTestSupport"], swiftSettings: strictSettings),
    ]
)
