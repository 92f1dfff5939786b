import Synchronization
import Testing
import TriglavConfig
import TriglavCore
import TriglavDataPlane
import TriglavMultipath
@testable import TriglavDaemon

/// `data_cap_mb` reaching the multipath engine as a byte allowance, across reconnects and billing periods.
@Suite("Data caps (fakes)")
struct CoreDataCapTests {
    /// 2026-01-15 00:00 UTC and 2026-02-01 00:00 UTC.
    static let midJanuary: Int64 = 1_768_435_200
    static let firstOfFebruary: Int64 = 1_769_904_000

    static func cappedConfig(resetDay: Int = 1) throws -> DaemonConfig {
        var config = DaemonConfig()
        var pin = UplinkPin(match: try InterfaceGlob("eth0"))
        pin.dataCapMegabytes = 1
        pin.dataCapResetDay = resetDay
        config.uplinks.pins = [pin]
        return config
    }

    @Test func billingPeriodsStartOnTheResetDay() {
        // January 2026 is month 672 since 1970.
        #expect(DataCapLedger.period(at: Self.midJanuary, resetDay: 1) == 672)
        #expect(DataCapLedger.period(at: Self.midJanuary, resetDay: 15) == 672)
        #expect(DataCapLedger.period(at: Self.midJanuary - 1, resetDay: 15) == 671)
        #expect(DataCapLedger.period(at: Self.firstOfFebruary, resetDay: 1) == 673)
        #expect(DataCapLedger.period(at: Self.firstOfFebruary, resetDay: 2) == 672)
    }

    @Test func theCapReachesTheEngineAndWhatWasSentCountsAcrossReconnects() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager(config: try Self.cappedConfig())
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.added(Fixtures.uplink("wlan0", index: 3)))
        try manager.connect(profile: "home")
        let first = try #require(factory.last)
        #expect(first.policies["eth0"]?.dataCapBytes == 1_000_000)
        #expect(first.policies["wlan0"]?.dataCapBytes == nil)
        first.establish("eth0", "wlan0")  // the fake reports 1000 bytes sent per established uplink
        manager.refresh()
        try manager.disconnect()
        try manager.connect(profile: "home")
        let second = try #require(factory.last)
        #expect(second.policies["eth0"]?.dataCapBytes == 999_000)
        #expect(second.policies["wlan0"]?.dataCapBytes == nil)
        manager.shutdown()
    }

    @Test func aNewBillingPeriodRaisesTheAllowanceOfAnAttachedUplink() throws {
        let now = Mutex<Int64>(Self.midJanuary)
        let (manager, factory, _, _) = try Fixtures.clientManager(config: try Self.cappedConfig(),
                                                                 clock: { now.withLock { $0 } })
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        tunnel.establish("eth0")
        manager.refresh()
        #expect(tunnel.policies["eth0"]?.dataCapBytes == 1_000_000)
        #expect(!tunnel.calls.contains("policy eth0"))
        now.withLock { $0 = Self.firstOfFebruary }
        manager.refresh()
        // 1000 bytes were sent in January; February allows a full cap on top of that.
        #expect(tunnel.policies["eth0"]?.dataCapBytes == 1_001_000)
        #expect(tunnel.calls.filter { $0 == "policy eth0" }.count == 1)
        manager.refresh()
        #expect(tunnel.calls.filter { $0 == "policy eth0" }.count == 1)
        manager.shutdown()
    }

    @Test func anUplinkReturningInANewPeriodGetsAFullCap() throws {
        let now = Mutex<Int64>(Self.midJanuary)
        let (manager, factory, _, _) = try Fixtures.clientManager(config: try Self.cappedConfig(),
                                                                 clock: { now.withLock { $0 } })
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.added(Fixtures.uplink("wlan0", index: 3)))
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        tunnel.establish("eth0", "wlan0")
        manager.refresh()
        manager.handleDiscovery(.removed(Fixtures.uplink("eth0", index: 2)))  // 1000 bytes spent in January
        now.withLock { $0 = Self.firstOfFebruary }
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))   // back before any tick
        #expect(tunnel.policies["eth0"]?.dataCapBytes == 1_000_000)
        manager.shutdown()
    }
}
