import Foundation
import Synchronization
import Testing
import TriglavConfig
import TriglavControlAPI
import TriglavCore
import TriglavDataPlane
import TriglavMultipath
@testable import TriglavDaemon

/// `data_cap_mb`: both directions counted, the engine's send allowance, a spent cap taking the uplink out of
/// the tunnel, billing periods, and the usage surviving a restart (`DataCapStore`).
@Suite("Data caps (fakes)")
struct CoreDataCapTests {
    /// 2026-01-15 00:00 UTC and 2026-02-01 00:00 UTC.
    static let midJanuary: Int64 = 1_768_435_200
    static let firstOfFebruary: Int64 = 1_769_904_000

    /// A client manager on `cappedConfig()` (eth0 capped at 1 MB), connected to "home" over eth0 (and an uncapped
    /// wlan0 with `withWlan`), its sessions established; returns the manager, the fake tunnel and its factory.
    static func connectedCapped(withWlan: Bool = false, clock: @escaping @Sendable () -> Int64 = { midJanuary },
                                store: DataCapStore? = nil) throws -> (ClientManager, FakeClientTunnel, FakeClientTunnelFactory) {
        let (manager, factory, _, _) = try Fixtures.clientManager(config: try cappedConfig(), clock: clock,
                                                                 dataCapStore: store)
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        if withWlan { manager.handleDiscovery(.added(Fixtures.uplink("wlan0", index: 3))) }
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        if withWlan { tunnel.establish("eth0", "wlan0") } else { tunnel.establish("eth0") }
        return (manager, tunnel, factory)
    }

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
        first.establish("eth0", "wlan0")  // the fake reports 1000 bytes sent and 2000 received per uplink
        manager.refresh()
        // What arrived shrinks what may still be sent.
        #expect(first.policies["eth0"]?.dataCapBytes == 998_000)
        try manager.disconnect()
        try manager.connect(profile: "home")
        let second = try #require(factory.last)
        #expect(second.policies["eth0"]?.dataCapBytes == 997_000)
        #expect(second.policies["wlan0"]?.dataCapBytes == nil)
        manager.shutdown()
    }

    @Test func aNewBillingPeriodRaisesTheAllowanceOfAnAttachedUplink() throws {
        let now = Mutex<Int64>(Self.midJanuary)
        let (manager, tunnel, _) = try Self.connectedCapped(clock: { now.withLock { $0 } })
        manager.refresh()
        #expect(tunnel.policies["eth0"]?.dataCapBytes == 998_000)
        #expect(tunnel.calls.filter { $0 == "policy eth0" }.count == 1)
        now.withLock { $0 = Self.firstOfFebruary }
        manager.refresh()
        // 1000 bytes were sent and 2000 received in January; February allows a full cap on top of that.
        #expect(tunnel.policies["eth0"]?.dataCapBytes == 1_001_000)
        #expect(tunnel.calls.filter { $0 == "policy eth0" }.count == 2)
        manager.refresh()
        #expect(tunnel.calls.filter { $0 == "policy eth0" }.count == 2)
        manager.shutdown()
    }

    @Test func anUplinkReturningInANewPeriodGetsAFullCap() throws {
        let now = Mutex<Int64>(Self.midJanuary)
        let (manager, tunnel, _) = try Self.connectedCapped(withWlan: true, clock: { now.withLock { $0 } })
        manager.refresh()
        manager.handleDiscovery(.removed(Fixtures.uplink("eth0", index: 2)))  // 1000 bytes spent in January
        now.withLock { $0 = Self.firstOfFebruary }
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))   // back before any tick
        #expect(tunnel.policies["eth0"]?.dataCapBytes == 1_000_000)
        manager.shutdown()
    }

    // MARK: Ledger

    @Test func usageCountsBothDirectionsSinceTheBaseline() {
        let baseline = DataCapLedger.Baseline(transmitted: 100, received: 1000)
        #expect(baseline.used(transmitted: 150, received: 1300) == 350)
        #expect(baseline.used(transmitted: 50, received: 900) == 0)  // counters never count backwards
        var ledger = DataCapLedger()
        ledger.spend("eth0", bytes: 600, period: 672)
        #expect(ledger.remaining("eth0", cap: 1000) == 400)
        #expect(ledger.remaining("eth0", cap: 1000, live: 350) == 50)
        #expect(ledger.remaining("eth0", cap: 1000, live: 400) == 0)
        #expect(ledger.remaining("eth0", cap: 1000, live: 5000) == 0)
        #expect(ledger.remaining("wlan0", cap: 1000) == 1000)
    }

    @Test func theEnginesCountsAreTheCapsOnlyUnit() {
        var uplink = ClientTunnelSnapshot.Uplink(interface: "eth0", state: .established, transmittedBytes: 100, receivedBytes: 200)
        // Out of the engine the data plane's counters (another unit) never stand in for the engine's.
        #expect(uplink.dataCapTransmittedBytes == 0 && uplink.dataCapReceivedBytes == 0)
        uplink.engineTransmittedBytes = 130
        uplink.engineReceivedBytes = 260
        #expect(uplink.dataCapTransmittedBytes == 130 && uplink.dataCapReceivedBytes == 260)
    }

    @Test func aSessionResetKeepsThePeriodsUsage() throws {
        let (manager, tunnel, _) = try Self.connectedCapped()  // 1000 sent, 2000 received
        manager.refresh()
        #expect(tunnel.policies["eth0"]?.dataCapBytes == 998_000)
        tunnel.lose("eth0")  // the session resets: the counters restart
        manager.refresh()
        tunnel.setTraffic("eth0", transmitted: 300, received: 400)
        tunnel.establish("eth0")
        manager.refresh()
        // 3000 before the reset and 700 after are spent; the allowance counts from the new counters' zero.
        #expect(tunnel.policies["eth0"]?.dataCapBytes == 1_000_000 - 3000 - 400)
        manager.shutdown()
    }

    @Test func aNewPeriodRestartsTheCount() {
        var ledger = DataCapLedger()
        let first = ledger.enter("eth0", period: 672)
        #expect(!first)
        ledger.spend("eth0", bytes: 900, period: 672)
        let same = ledger.enter("eth0", period: 672)
        #expect(!same)
        #expect(ledger.spent("eth0") == 900)
        let next = ledger.enter("eth0", period: 673)
        #expect(next)
        #expect(ledger.spent("eth0") == 0)
        #expect(ledger.entries["eth0"]?.period == 673)
    }

    // MARK: Store

    static func temporaryDirectory() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("triglav-caps-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }

    @Test func theStoreRoundTripsAtomicallyAndAtMostEveryFewSeconds() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = DataCapStore(directory: directory)
        #expect(store.path == directory + "/data-caps")
        #expect(store.load().isEmpty)
        store.save([:], now: 100)
        #expect(!FileManager.default.fileExists(atPath: store.path), "nothing counted: no file")
        let usage = ["wwan0": DataCapLedger.Entry(period: 672, spent: 1_234_567), "eth0": DataCapLedger.Entry(period: 671, spent: 0)]
        store.save(usage, now: 100)
        #expect(try String(contentsOfFile: store.path, encoding: .utf8) == "triglav-data-caps 1\neth0 671 0\nwwan0 672 1234567\n")
        #expect(!FileManager.default.fileExists(atPath: store.path + ".tmp"))
        #expect(DataCapStore(directory: directory).load() == usage)
        let attributes = try FileManager.default.attributesOfItem(atPath: store.path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)

        var more = usage
        more["wwan0"]?.spent = 2_000_000
        store.save(more, now: 102)  // within the write interval: skipped
        #expect(DataCapStore(directory: directory).load() == usage)
        store.save(more, now: 102, force: true)  // clean exit, disconnect
        #expect(DataCapStore(directory: directory).load() == more)
        more["wwan0"]?.spent = 3_000_000
        store.save(more, now: 102 + DataCapStore.writeInterval)
        #expect(DataCapStore(directory: directory).load() == more)
    }

    @Test func hugeCountsSaturateInsteadOfWrappingAndAbsurdLinesAreIgnored() throws {
        var ledger = DataCapLedger(entries: ["eth0": DataCapLedger.Entry(period: 672, spent: .max - 10)])
        #expect(ledger.remaining("eth0", cap: 1_000_000, live: 100) == 0)
        ledger.spend("eth0", bytes: 100, period: 672)
        #expect(ledger.spent("eth0") == .max)
        #expect(DataCapLedger.Baseline().used(transmitted: .max, received: 5) == .max)

        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/data-caps"
        let absurd = DataCapStore.maximumSpent + 1
        try "triglav-data-caps 1\neth0 672 \(absurd)\nwlan0 672 \(DataCapStore.maximumSpent)\n"
            .write(toFile: path, atomically: false, encoding: .utf8)
        #expect(DataCapStore(path: path).load() == ["wlan0": DataCapLedger.Entry(period: 672, spent: DataCapStore.maximumSpent)])
    }

    @Test func aStaleTemporaryFileIsReplacedNotFollowed() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/data-caps"
        let elsewhere = directory + "/elsewhere"
        try "keep\n".write(toFile: elsewhere, atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: path + ".tmp", withDestinationPath: elsewhere)
        let store = DataCapStore(path: path)
        store.save(["eth0": DataCapLedger.Entry(period: 672, spent: 7)], now: 1)
        #expect(DataCapStore(path: path).load() == ["eth0": DataCapLedger.Entry(period: 672, spent: 7)])
        #expect(try String(contentsOfFile: elsewhere, encoding: .utf8) == "keep\n")
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
    }

    @Test func aCorruptOrForeignFileIsIgnoredAndReplaced() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/data-caps"
        for corrupt in ["", "garbage", "triglav-data-caps 2\neth0 672 5\n", "triglav-data-caps 1\neth0 672\n",
                        "triglav-data-caps 1\neth0 672 -5\n", "triglav-data-caps 1\neth0 672 5\neth0 672 6\n",
                        "triglav-data-caps 1\nthis/is-no-interface 672 5\n", "triglav-data-caps 1\neth0 x 5\n"] {
            try corrupt.write(toFile: path, atomically: false, encoding: .utf8)
            #expect(DataCapStore(path: path).load().isEmpty, "\(corrupt.debugDescription)")
        }
        try Data([0x74, 0xff, 0xfe, 0x00]).write(to: URL(fileURLWithPath: path))
        let store = DataCapStore(path: path)
        #expect(store.load().isEmpty)
        store.save(["eth0": DataCapLedger.Entry(period: 672, spent: 7)], now: 1)
        #expect(DataCapStore(path: path).load() == ["eth0": DataCapLedger.Entry(period: 672, spent: 7)])
    }

    @Test func anUnwritableStateDirectoryCostsOnlyThePersistence() throws {
        let store = DataCapStore(path: "/nonexistent-triglav-\(UUID().uuidString)/data-caps")
        #expect(store.load().isEmpty)
        store.save(["eth0": DataCapLedger.Entry(period: 672, spent: 7)], now: 1, force: true)
        #expect(!FileManager.default.fileExists(atPath: store.path))
    }

    @Test func theStateDirectoryComesFromSystemd() {
        #expect(DataCapStore.stateDirectory(environment: "/var/lib/triglav") == "/var/lib/triglav")
        #expect(DataCapStore.stateDirectory(environment: "/srv/a:/srv/b") == "/srv/a")
        #expect(DataCapStore.stateDirectory(environment: nil) == "/var/lib/triglav")
        #expect(DataCapStore.stateDirectory(environment: "relative") == "/var/lib/triglav")
    }

    // MARK: Manager

    @Test func downloadsCountAndASpentCapTakesTheUplinkOutUntilTheNextPeriod() throws {
        let now = Mutex<Int64>(Self.midJanuary)
        let (manager, tunnel, factory) = try Self.connectedCapped(withWlan: true, clock: { now.withLock { $0 } })
        tunnel.setTraffic("eth0", transmitted: 100_000, received: 400_000)
        manager.refresh()
        // 400 kB downloaded: the engine may send 600 kB in all (100 kB of it already sent).
        #expect(tunnel.policies["eth0"]?.dataCapBytes == 600_000)
        #expect(manager.uplinks.first { $0.interface == "eth0" }?.state == .established)

        tunnel.setTraffic("eth0", transmitted: 250_000, received: 750_000)  // 1 MB both ways: spent
        manager.refresh()
        #expect(tunnel.calls.contains("remove eth0"))
        #expect(tunnel.uplinks == ["wlan0"])
        #expect(manager.uplinks.first { $0.interface == "eth0" }?.state == .inactive)
        #expect(manager.status.state == .connected)
        manager.refresh()
        #expect(tunnel.calls.filter { $0 == "add eth0" }.count == 1, "stays out for the rest of the period")

        try manager.disconnect()
        #expect(manager.uplinks.first { $0.interface == "eth0" }?.state == .inactive)
        try manager.connect(profile: "home")
        let next = try #require(factory.last)
        #expect(next.uplinks == ["wlan0"], "a reconnect doesn't bring it back either")

        now.withLock { $0 = Self.firstOfFebruary }
        manager.refresh()
        #expect(next.uplinks.sorted() == ["eth0", "wlan0"])
        #expect(next.policies["eth0"]?.dataCapBytes == 1_000_000)
        manager.shutdown()
    }

    @Test func aSpentPrimaryLeavesTheSecondaryTier() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager(config: try Self.cappedConfig())
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.added(Fixtures.uplink("wwan0", index: 3, kind: .wwan, tier: .secondary)))
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        tunnel.establish("eth0")
        manager.refresh()
        #expect(tunnel.uplinks.sorted() == ["eth0", "wwan0"])
        tunnel.setTraffic("eth0", transmitted: 10, received: 999_990)
        manager.refresh()
        #expect(tunnel.uplinks == ["wwan0"])
        manager.shutdown()
    }

    @Test func aDisconnectWritesTheLiveUsageOnce() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (manager, tunnel, _) = try Self.connectedCapped(store: DataCapStore(directory: directory))
        tunnel.setTraffic("eth0", transmitted: 100_000, received: 150_000)
        manager.refresh()
        tunnel.setTraffic("eth0", transmitted: 300_000, received: 200_000)
        try manager.disconnect()
        #expect(DataCapStore(directory: directory).load() == ["eth0": DataCapLedger.Entry(period: 672, spent: 500_000)])
        manager.shutdown()
        #expect(DataCapStore(directory: directory).load() == ["eth0": DataCapLedger.Entry(period: 672, spent: 500_000)])
    }

    @Test func anUplinkLeavingCountsItsUsageUpToNow() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (manager, tunnel, _) = try Self.connectedCapped(store: DataCapStore(directory: directory))
        manager.refresh()  // 1000 sent, 2000 received
        tunnel.setTraffic("eth0", transmitted: 5000, received: 6000)
        manager.handleDiscovery(.removed(Fixtures.uplink("eth0", index: 2)))  // before the next refresh
        #expect(tunnel.uplinks.isEmpty)
        manager.shutdown()
        #expect(DataCapStore(directory: directory).load() == ["eth0": DataCapLedger.Entry(period: 672, spent: 11_000)])
    }

    @Test func aRestartKeepsThePeriodsUsageButNotLastPeriods() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let (manager, tunnel, _) = try Self.connectedCapped(store: DataCapStore(directory: directory))
            tunnel.setTraffic("eth0", transmitted: 100_000, received: 150_000)
            manager.refresh()
            // Written while connected (the first write isn't held back), so a crash keeps it too.
            #expect(DataCapStore(directory: directory).load() == ["eth0": DataCapLedger.Entry(period: 672, spent: 250_000)])
            manager.shutdown()
        }
        do {
            let (manager, factory, _, _) = try Fixtures.clientManager(config: try Self.cappedConfig(),
                                                                     dataCapStore: DataCapStore(directory: directory))
            manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
            try manager.connect(profile: "home")
            #expect(factory.last?.policies["eth0"]?.dataCapBytes == 750_000)
            manager.shutdown()
        }
        do {
            let (manager, factory, _, _) = try Fixtures.clientManager(config: try Self.cappedConfig(),
                                                                     clock: { Self.firstOfFebruary },
                                                                     dataCapStore: DataCapStore(directory: directory))
            manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
            try manager.connect(profile: "home")
            #expect(factory.last?.policies["eth0"]?.dataCapBytes == 1_000_000)
            manager.shutdown()
        }
        #expect(DataCapStore(directory: directory).load() == ["eth0": DataCapLedger.Entry(period: 673, spent: 0)])
    }

    // MARK: Daemon

    @Test func theDaemonShowsASpentUplinkDownOnTheBusAndKeepsItOutAfterARestart() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = try Self.cappedConfig()
        let tunnels = FakeClientTunnelFactory()
        func daemon() throws -> (Daemon, CoreDaemonTests.RecordingBus) {
            let bus = CoreDaemonTests.RecordingBus()
            var environment = DaemonEnvironment(
                clientTunnels: tunnels, serverTunnels: FakeServerTunnelFactory(), resolver: FixedResolver(),
                makeUplinkSource: { policy in
                    FakeUplinkSource(policy: policy, initial: [.added(Fixtures.uplink("eth0", index: 2)),
                                                               .added(Fixtures.uplink("wlan0", index: 3)), .synchronized])
                },
                notifier: RecordingNotifier(), synchronizationTimeout: .milliseconds(200))
            environment.startBus = { _ throws(TriglavDaemonError) -> any DaemonBus in bus }
            environment.dataCapStore = DataCapStore(directory: directory)
            let daemon = Daemon(config: config, configSource: FakeConfigSource(config),
                                profiles: FakeProfileStore([try Fixtures.profile("lab")]), environment: environment,
                                connectProfile: "lab")
            return (daemon, bus)
        }
        func busState(_ bus: CoreDaemonTests.RecordingBus, _ interface: String) -> TriglavControlAPI.UplinkState? {
            bus.last?.uplinks.first { $0.interface == interface }?.state
        }

        let (first, firstBus) = try daemon()
        try first.start()
        let tunnel = try #require(tunnels.last)
        tunnel.establish("eth0", "wlan0")
        first.tick()
        #expect(busState(firstBus, "eth0") == .active)
        tunnel.setTraffic("eth0", transmitted: 400_000, received: 600_000)
        first.tick()
        #expect(busState(firstBus, "eth0") == .down)
        #expect(busState(firstBus, "wlan0") == .active)
        #expect(tunnel.uplinks == ["wlan0"])
        first.shutdown()

        let (second, secondBus) = try daemon()
        try second.start()
        let again = try #require(tunnels.last)
        #expect(again !== tunnel)
        #expect(again.uplinks == ["wlan0"], "the cap stays spent across the restart")
        second.tick()
        #expect(busState(secondBus, "eth0") == .down)
        second.shutdown()
    }
}
