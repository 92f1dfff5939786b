import Testing
import TriglavConfig
import TriglavCore
import TriglavDataPlane
import TriglavMultipath
@testable import TriglavDaemon

/// A link the system reports down leaves service at once, manual uplinks included: discovery's removal of an
/// attached manual uplink's interface (carrier lost, interface gone) becomes the engine's system-link-down event,
/// and its return the system-link-up event, instead of waiting for blackhole detection.
@Suite struct CoreSystemLinkTests {
    @Test func aManualUplinksCarrierLossReachesTheEngineAtOnce() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.added(Fixtures.uplink("usb0", index: 3)))
        let usb = try manager.addUplink(interface: "usb0")
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        tunnel.establish("eth0", "usb0")
        manager.refresh()
        #expect(tunnel.linksDown.isEmpty)

        // Carrier lost: discovery drops the interface. The manual uplink stays attached (it waits for the link) but
        // the engine hears at once that it is down.
        manager.handleDiscovery(.removed(Fixtures.uplink("usb0", index: 3)))
        #expect(tunnel.linksDown == ["usb0"])
        #expect(tunnel.uplinks.sorted() == ["eth0", "usb0"])
        #expect(try manager.uplink(number: usb).state == .waiting)
        manager.refresh()
        #expect(tunnel.calls.filter { $0 == "link usb0 down" }.count == 1, "told once, not on every refresh")

        // The link is back: the engine probes it again at once.
        manager.handleDiscovery(.added(Fixtures.uplink("usb0", index: 3)))
        #expect(tunnel.linksDown.isEmpty)
        #expect(tunnel.calls.suffix(1) == ["link usb0 up"])
        #expect(try manager.uplink(number: usb).state != .waiting)
    }

    @Test func automaticUplinksLeaveTheTunnelAndRemovedManualOnesAreForgotten() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        let usb = try manager.addUplink(interface: "usb0")
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        // An automatic uplink's loss takes it out of the tunnel (the engine drops it with it).
        manager.handleDiscovery(.removed(Fixtures.uplink("eth0", index: 2)))
        #expect(tunnel.uplinks == ["usb0"])
        #expect(!tunnel.calls.contains("link eth0 down"))
        // A manual uplink that discovery never reported (its interface wasn't there yet) isn't reported down:
        // nothing changed for it. One removed while down doesn't come back as down.
        #expect(tunnel.linksDown.isEmpty)
        manager.handleDiscovery(.added(Fixtures.uplink("usb0", index: 3)))
        manager.handleDiscovery(.removed(Fixtures.uplink("usb0", index: 3)))
        #expect(tunnel.linksDown == ["usb0"])
        try manager.removeUplink(number: usb)
        #expect(tunnel.uplinks.isEmpty)
        _ = try manager.addUplink(interface: "usb0")
        #expect(tunnel.uplinks == ["usb0"])
        #expect(tunnel.calls.suffix(1) == ["add usb0"])
    }
}
