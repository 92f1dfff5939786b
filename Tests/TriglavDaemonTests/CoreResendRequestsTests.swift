import Foundation
import Logging
import Testing
import TriglavConfig
import TriglavCore
import TriglavCrypto
@testable import TriglavDataPlane
import TriglavMultipath
@testable import TriglavDaemon

/// `[multipath] resend_requests` travels from the configuration through the plans into the engine configuration of
/// a real (unstarted) client tunnel and server tunnel: `false` turns the receiver's requests off, `true` keeps the
/// data plane's default (on unless TRIGLAV_RESEND_REQUESTS=0).
@Suite struct CoreResendRequestsTests {
    static func withKeyFile<T>(_ body: (String) throws -> T) throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("triglav-resend-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let keyPath = directory + "/private.key"
        try KeyFile.write(IdentityKey.generate(), to: keyPath, force: false)
        return try body(keyPath)
    }

    @Test(arguments: [false, true])
    func clientSettingReachesTheEngine(enabled: Bool) throws {
        var config = DaemonConfig()
        config.multipath.resendRequests = enabled
        let (manager, factory, _, _) = try Fixtures.clientManager(config: config)
        try manager.connect(profile: "home")
        var plan = try #require(factory.last).plan
        #expect(plan.resendRequests == enabled)
        let requests = try Self.withKeyFile { keyPath in
            plan.privateKeyPath = keyPath
            plan.tunnelInterface = try InterfaceName("tgresend0")
            let tunnel = try #require(try LiveClientTunnelFactory(logger: Logger(label: "test")).makeTunnel(plan) as? ClientTunnel)
            defer { tunnel.stop() }
            return tunnel.withState { $0.engine.configuration.requestsResends }
        }
        #expect(requests == (enabled && ResendRequestSwitch.enabledByEnvironment))
    }

    @Test(arguments: [false, true])
    func serverSettingReachesEveryClientEngine(enabled: Bool) throws {
        var (config, _) = try CoreServerManagerTests.config()
        config.multipath.resendRequests = enabled
        var plan = ServerTunnelPlan(config: config)
        #expect(plan.resendRequests == enabled)
        let requests = try Self.withKeyFile { keyPath in
            plan.privateKeyPath = keyPath
            let tunnel = try #require(try LiveServerTunnelFactory(logger: Logger(label: "test")).makeTunnel(plan) as? ServerTunnel)
            return tunnel.configuration.multipath.requestsResends
        }
        #expect(requests == (enabled && ResendRequestSwitch.enabledByEnvironment))
    }
}
