import Testing
import TriglavConfig
import TriglavCore
import TriglavDataPlane
@testable import TriglavDaemon

/// Which transport each uplink is added with: AddUplink's option for it, else Connect's, else its
/// `[uplinks.interface.NAME] transport` pin, else UDP (with the TCP fallback); a change re-adds the uplink.
@Suite struct CoreUplinkTransportTests {
    static func config(pinning interface: String, to transport: UplinkTransportChoice) throws -> DaemonConfig {
        var config = DaemonConfig()
        var pin = UplinkPin(match: try InterfaceGlob(interface))
        pin.transport = transport
        config.uplinks.pins = [pin]
        return config
    }

    @Test func thePinDecidesUnlessConnectOrAddUplinkSaysOtherwise() throws {
        let (manager, factory, source, _) = try Fixtures.clientManager(config: try Self.config(pinning: "eth0", to: .tcp))
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.added(Fixtures.uplink("eth1", index: 3)))
        try manager.connect(profile: "home")
        var tunnel = try #require(factory.last)
        #expect(tunnel.calls.filter { $0.hasPrefix("add") }.sorted() == ["add eth0 tcp", "add eth1"])

        // A reload without the pin: eth0 leaves and joins again over UDP (a new session); eth1 is left alone.
        source.set(DaemonConfig())
        try manager.reload()
        manager.refresh()  // reconciles the uplinks with the new configuration, as the daemon's tick does
        #expect(Array(tunnel.calls.suffix(2)) == ["remove eth0", "add eth0"], "\(tunnel.calls)")

        // Connect's transport covers every uplink; AddUplink's covers its own.
        try manager.disconnect()
        try manager.connect(profile: "home", options: ConnectionOptions(transport: .tcp))
        tunnel = try #require(factory.last)
        #expect(tunnel.calls.filter { $0.hasPrefix("add") }.sorted() == ["add eth0 tcp", "add eth1 tcp"])
        _ = try manager.addUplink(interface: "eth2", options: UplinkOverrides(transport: .udp))
        #expect(tunnel.calls.last == "add eth2", "\(tunnel.calls)")
    }

    @Test func writingTransportMovesADiscoveredUplinkAndOnlyIt() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager(config: DaemonConfig())
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.added(Fixtures.uplink("eth1", index: 3)))
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        let number = try #require(manager.uplinks.first { $0.interface == "eth0" }?.number)
        try manager.updateUplink(number: number, UplinkOverrides(transport: .tcp))
        #expect(Array(tunnel.calls.suffix(2)) == ["remove eth0", "add eth0 tcp"], "\(tunnel.calls)")
        // The same value again changes nothing; back to UDP re-adds it once more.
        try manager.updateUplink(number: number, UplinkOverrides(transport: .tcp))
        #expect(tunnel.calls.last == "add eth0 tcp")
        try manager.updateUplink(number: number, UplinkOverrides(transport: .udp))
        #expect(Array(tunnel.calls.suffix(2)) == ["remove eth0", "add eth0"], "\(tunnel.calls)")
        #expect(!tunnel.calls.contains("remove eth1"))
        // It outlives a reconnect (as Tier and Metered do), until the interface goes.
        try manager.updateUplink(number: number, UplinkOverrides(transport: .tcp))
        try manager.disconnect()
        try manager.connect(profile: "home")
        #expect(try #require(factory.last).calls.filter { $0.hasPrefix("add") }.sorted() == ["add eth0 tcp", "add eth1"])
        manager.handleDiscovery(.removed(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.refresh()
        let calls = try #require(factory.last).calls
        #expect(calls.last == "add eth0", "\(calls)")
    }
}
