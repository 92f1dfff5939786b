import Testing
import TriglavConfig
@testable import TriglavDaemon

/// `[uplinks] udp_retry_s` travels from the configuration into the connection plan.
@Suite struct CoreUDPRetryTests {
    @Test func configuredRetryIntervalReachesThePlan() throws {
        var config = DaemonConfig()
        config.uplinks.udpRetryInterval = .seconds(7)
        let (manager, factory, _, _) = try Fixtures.clientManager(config: config)
        try manager.connect(profile: "home")
        #expect(try #require(factory.last).plan.udpRetryInterval == .seconds(7))
    }

    @Test func defaultRetryIntervalIsTwoMinutes() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        try manager.connect(profile: "home")
        #expect(try #require(factory.last).plan.udpRetryInterval == .seconds(ConfigDefaults.udpRetrySeconds))
    }
}
