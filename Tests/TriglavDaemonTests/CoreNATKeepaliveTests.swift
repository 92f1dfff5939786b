import Foundation
import Logging
import Testing
import TriglavConfig
import TriglavCore
import TriglavCrypto
@testable import TriglavDataPlane
@testable import TriglavDaemon

/// `[uplinks] nat_keepalive_s` travels from the configuration text through the connection plan into the data
/// plane's `ClientTunnelConfiguration.keepaliveInterval` (docs/DATAPLANE.md, "Idle uplinks"); 0 turns it off,
/// which the data plane expresses as an interval that never fires.
@Suite struct CoreNATKeepaliveTests {
    /// The keepalive interval of the plan the manager makes from `toml`.
    private func planInterval(_ toml: String) throws -> Duration {
        let config = try ConfigLoader.parseDaemonConfig(toml, file: "test.toml", roleOverride: .client)
        let (manager, factory, _, _) = try Fixtures.clientManager(config: config)
        try manager.connect(profile: "home")
        return try #require(factory.last).plan.keepaliveInterval
    }

    @Test func configuredSecondsReachThePlan() throws {
        #expect(try planInterval("[uplinks]\nnat_keepalive_s = 7\n") == .seconds(7))
        #expect(try planInterval("[uplinks]\nnat_keepalive_s = 3600\n") == .seconds(3600))
    }

    @Test func absentMeansTwentyFiveSeconds() throws {
        #expect(try planInterval("") == .seconds(ConfigDefaults.natKeepaliveSeconds))
        #expect(ConfigDefaults.natKeepaliveSeconds == 25)
    }

    @Test func zeroTurnsTheKeepaliveOff() throws {
        let interval = try planInterval("[uplinks]\nnat_keepalive_s = 0\n")
        #expect(interval == ClientManager.keepaliveDisabled)
        #expect(interval >= .seconds(86_400), "an 'off' keepalive must be longer than any session lives")
    }

    @Test func outOfRangeIsRefused() {
        #expect(throws: TriglavConfigError.self) {
            _ = try ConfigLoader.parseDaemonConfig("[uplinks]\nnat_keepalive_s = 3601\n", file: "test.toml", roleOverride: .client)
        }
        #expect(throws: TriglavConfigError.self) {
            _ = try ConfigLoader.parseDaemonConfig("[uplinks]\nnat_keepalive_s = -1\n", file: "test.toml", roleOverride: .client)
        }
    }

    /// The live factory sets the data plane's keepalive from the plan (building a tunnel needs no privileges
    /// until it starts).
    @Test func liveFactoryPassesTheIntervalToTheDataPlane() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("triglav-keepalive-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let keyPath = directory + "/private.key"
        try KeyFile.write(IdentityKey.generate(), to: keyPath, force: false)
        let factory = LiveClientTunnelFactory(logger: Logger(label: "test"))
        for interval in [Duration.seconds(7), ClientManager.keepaliveDisabled] {
            let plan = ClientTunnelPlan(profile: try ProfileName("home"), configuredEndpoint: try RemoteEndpoint("198.51.100.5:7443"),
                                        server: try IPEndpoint("198.51.100.5:7443"), serverKey: Fixtures.serverKey,
                                        privateKeyPath: keyPath, tunnelInterface: try InterfaceName("tgkeep0"),
                                        keepaliveInterval: interval)
            let tunnel = try #require(try factory.makeTunnel(plan) as? ClientTunnel)
            #expect(tunnel.configuration.keepaliveInterval == interval)
        }
    }
}
