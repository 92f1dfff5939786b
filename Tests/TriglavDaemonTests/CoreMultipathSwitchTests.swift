import Foundation
import Logging
import Testing
import TriglavConfig
import TriglavCore
import TriglavCrypto
@testable import TriglavDataPlane
import TriglavMultipath
@testable import TriglavDaemon

/// `[multipath] resend_requests` and `pacing` travel from the configuration through the plans into the engine
/// configuration of a real (unstarted) client tunnel and server tunnel: `false` turns each off, `true` keeps the
/// data plane's default (on unless TRIGLAV_RESEND_REQUESTS=0 / TRIGLAV_PACING=0).
@Suite struct CoreMultipathSwitchTests {
    struct Switches: Equatable, CustomStringConvertible {
        var resendRequests: Bool
        var pacing: Bool
        var description: String { "resend_requests = \(resendRequests), pacing = \(pacing)" }

        /// What the engine ends up with for these settings in this process's environment.
        var expected: Switches {
            Switches(resendRequests: resendRequests && ResendRequestSwitch.enabledByEnvironment,
                     pacing: pacing && PacingSwitch.enabledByEnvironment)
        }

        init(resendRequests: Bool, pacing: Bool) {
            self.resendRequests = resendRequests
            self.pacing = pacing
        }

        init(_ configuration: MultipathConfiguration) {
            self.init(resendRequests: configuration.requestsResends, pacing: configuration.pacingQueueAllowance != nil)
        }
    }

    static let cases = [Switches(resendRequests: false, pacing: true), Switches(resendRequests: true, pacing: false),
                        Switches(resendRequests: true, pacing: true), Switches(resendRequests: false, pacing: false)]

    static func withKeyFile<T>(_ body: (String) throws -> T) throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("triglav-switches-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let keyPath = directory + "/private.key"
        try KeyFile.write(IdentityKey.generate(), to: keyPath, force: false)
        return try body(keyPath)
    }

    @Test(arguments: cases)
    func clientSettingsReachTheEngine(switches: Switches) throws {
        var config = DaemonConfig()
        config.multipath.resendRequests = switches.resendRequests
        config.multipath.pacing = switches.pacing
        let (manager, factory, _, _) = try Fixtures.clientManager(config: config)
        try manager.connect(profile: "home")
        var plan = try #require(factory.last).plan
        #expect(Switches(resendRequests: plan.resendRequests, pacing: plan.pacing) == switches)
        let engine = try Self.withKeyFile { keyPath in
            plan.privateKeyPath = keyPath
            plan.tunnelInterface = try InterfaceName("tgswitch0")
            let tunnel = try #require(try LiveClientTunnelFactory(logger: Logger(label: "test")).makeTunnel(plan) as? ClientTunnel)
            defer { tunnel.stop() }
            return tunnel.withState { Switches($0.engine.configuration) }
        }
        #expect(engine == switches.expected)
    }

    @Test(arguments: cases)
    func serverSettingsReachEveryClientEngine(switches: Switches) throws {
        var (config, _) = try CoreServerManagerTests.config()
        config.multipath.resendRequests = switches.resendRequests
        config.multipath.pacing = switches.pacing
        var plan = ServerTunnelPlan(config: config)
        #expect(Switches(resendRequests: plan.resendRequests, pacing: plan.pacing) == switches)
        let engine = try Self.withKeyFile { keyPath in
            plan.privateKeyPath = keyPath
            let tunnel = try #require(try LiveServerTunnelFactory(logger: Logger(label: "test")).makeTunnel(plan) as? ServerTunnel)
            return Switches(tunnel.configuration.multipath)
        }
        #expect(engine == switches.expected)
    }
}
