import Testing
import TriglavConfig
import TriglavCore
import TriglavMultipath
import TriglavNetlink
@testable import TriglavDaemon

/// A fake system: udev properties and 802.11-ness per interface name.
struct FakeInterfaceEnvironment: InterfaceEnvironment {
    var udev: [String: [String: String]] = [:]
    var wireless: Set<String> = []

    func udevProperties(name: String, index: Int32) -> [String: String] {
        var properties = udev[name] ?? [:]
        if !properties.isEmpty { properties["USEC_INITIALIZED"] = "1" }
        return properties
    }

    func isWireless(name: String, index: Int32) -> Bool { wireless.contains(name) }
}

private func up(_ index: Int32, _ name: String, kind: String? = nil, hardwareType: UInt32 = 1, master: Int32? = nil,
                carrier: Bool = true, loopback: Bool = false) -> LinkInfo {
    var flags: LinkFlags = [.up]
    if carrier { flags.insert(.lowerUp) }
    if loopback { flags.insert(.loopback) }
    return LinkInfo(index: index, name: name, flags: flags, hasCarrier: carrier, kind: kind, hardwareType: hardwareType,
                    mtu: 1500, masterIndex: master)
}

private func address(_ index: Int32, _ text: String, flags: AddressFlags = []) throws -> AddressInfo {
    AddressInfo(interfaceIndex: index, local: try IPPrefix(text), flags: flags)
}

private func route(_ index: Int32, _ destination: String, table: UInt32 = RouteTable.main) throws -> Route {
    Route(destination: try IPPrefix(destination), outputInterface: index, table: table, protocol: RouteProtocol.kernel)
}

/// Feeds link + address + connected route for an interface; returns every discovery event produced.
private func bringUp(_ discovery: inout UplinkDiscovery, _ link: LinkInfo, _ cidr: String = "192.168.7.2/24",
                     network: String = "192.168.7.0/24") throws -> [DiscoveryEvent] {
    var events = discovery.handle(.linkAdded(link))
    events += discovery.handle(.addressAdded(try address(link.index, cidr)))
    events += discovery.handle(.routeAdded(try route(link.index, network)))
    return events
}

@Suite("Uplink discovery logic")
struct DiscoveryTests {
    let environment = FakeInterfaceEnvironment()

    @Test func ethernetWithCarrierAddressAndRouteBecomesAnUplink() throws {
        var discovery = UplinkDiscovery(policy: DiscoveryPolicy(), environment: environment)
        let eth = up(2, "eth0")
        #expect(discovery.handle(.linkAdded(eth)).isEmpty)
        #expect(discovery.handle(.addressAdded(try address(2, "192.168.7.2/24"))).isEmpty)  // no route yet
        let events = discovery.handle(.routeAdded(try route(2, "192.168.7.0/24")))
        let expected = DiscoveredUplink(name: "eth0", interfaceIndex: 2, kind: .ethernet, tier: .primary, isMetered: false,
                                        localAddresses: [IPAddress("192.168.7.2")!], mtu: 1500)
        #expect(events == [.added(expected)])
        #expect(discovery.handle(.synchronized) == [.synchronized])
        #expect(discovery.handle(.synchronized).isEmpty)

        // A second address: the uplink changes (the data plane re-binds); IPv4 listed first.
        let v6 = discovery.handle(.addressAdded(try address(2, "2001:db8::2/64")))
        #expect(v6.first?.uplink?.localAddresses == [IPAddress("192.168.7.2")!, IPAddress("2001:db8::2")!])
        if case .changed = v6.first {} else { Issue.record("expected .changed, got \(v6)") }

        // Carrier loss removes it; carrier back re-adds it (addresses and routes were kept).
        #expect(discovery.handle(.linkChanged(up(2, "eth0", carrier: false))).first == .removed(v6.first!.uplink!))
        #expect(discovery.handle(.linkChanged(eth)).first?.uplink?.name == "eth0")
        #expect(discovery.handle(.linkRemoved(eth)).count == 1)
        #expect(discovery.uplinks.isEmpty)
        #expect(discovery.trackedInterfaceCount == 0)
    }

    @Test func needsAUsableAddressAndARealRoute() throws {
        var discovery = UplinkDiscovery(policy: DiscoveryPolicy(), environment: environment)
        _ = discovery.handle(.linkAdded(up(3, "eth1")))
        _ = discovery.handle(.addressAdded(try address(3, "169.254.10.1/16")))
        _ = discovery.handle(.addressAdded(try address(3, "fe80::1/64")))
        _ = discovery.handle(.addressAdded(try address(3, "2001:db8::9/64", flags: .tentative)))
        #expect(discovery.handle(.routeAdded(try route(3, "169.254.0.0/16"))).isEmpty)
        // link-local and multicast IPv6 routes exist on every interface; they don't count
        #expect(discovery.handle(.routeAdded(try route(3, "fe80::/64"))).isEmpty)
        #expect(discovery.uplinks.isEmpty)
        let usable = discovery.handle(.addressAdded(try address(3, "2001:db8::9/64")))  // DAD finished
        #expect(usable.first?.uplink?.localAddresses == [IPAddress("2001:db8::9")!])
        // Removing the last countable route removes the uplink.
        _ = discovery.handle(.routeRemoved(try route(3, "169.254.0.0/16")))
        #expect(discovery.uplinks.isEmpty)
        // A default route in another table (e.g. NetworkManager's per-interface tables) counts.
        #expect(discovery.handle(.routeAdded(try route(3, "0.0.0.0/0", table: 1003))).count == 1)
        #expect(discovery.handle(.routeAdded(try route(3, "10.0.0.0/8", table: RouteTable.local))).isEmpty)
    }

    @Test func skipsLoopbackTunnelPortsAndVirtualDevicesUnlessAllowed() throws {
        var discovery = UplinkDiscovery(policy: DiscoveryPolicy(tunnelInterface: "triglav0"), environment: environment)
        #expect(try bringUp(&discovery, up(1, "lo", hardwareType: 772, loopback: true), "127.0.0.1/8", network: "127.0.0.0/8").isEmpty)
        #expect(try bringUp(&discovery, up(4, "triglav0", kind: "tun", hardwareType: 65534)).isEmpty)
        #expect(try bringUp(&discovery, up(5, "veth12", kind: "veth")).isEmpty)
        #expect(try bringUp(&discovery, up(6, "br0", kind: "bridge")).isEmpty)
        #expect(try bringUp(&discovery, up(7, "wg0", kind: "wireguard", hardwareType: 65534)).isEmpty)
        #expect(try bringUp(&discovery, up(8, "eth3", master: 6)).isEmpty)  // a bridge port
        // VLANs and bonds carry real networks
        #expect(try bringUp(&discovery, up(9, "bond0", kind: "bond")).count == 1)

        let allowing = DiscoveryPolicy(virtualInterfaces: ["veth*", "triglav*"], tunnelInterface: "triglav0")
        let events = discovery.updatePolicy(allowing)
        #expect(events.map(\.uplink?.name) == ["veth12"])
        #expect(discovery.uplinks[5]?.kind == .ethernet)
        #expect(discovery.uplinks[4] == nil)  // the tunnel, whatever the globs say
        #expect(discovery.updatePolicy(DiscoveryPolicy()).map(\.uplink?.name) == ["veth12"])  // removed again
    }

    @Test func classifiesKinds() throws {
        var env = FakeInterfaceEnvironment()
        env.wireless = ["wlp2s0"]
        env.udev = ["wwan0": ["DEVTYPE": "wwan"]]
        var discovery = UplinkDiscovery(policy: DiscoveryPolicy(), environment: env)
        _ = try bringUp(&discovery, up(2, "enp1s0"))
        _ = try bringUp(&discovery, up(3, "wlp2s0"), "192.168.8.2/24", network: "192.168.8.0/24")
        _ = try bringUp(&discovery, up(4, "wwan0", hardwareType: 65534), "100.64.1.2/30", network: "100.64.1.0/30")
        _ = try bringUp(&discovery, up(5, "mbim0", kind: "wwan", hardwareType: 65534), "100.64.2.2/30", network: "100.64.2.0/30")
        _ = try bringUp(&discovery, up(6, "ppp0", hardwareType: 512), "100.64.3.2/32", network: "0.0.0.0/0")
        #expect(discovery.uplinks[2]?.kind == .ethernet)
        #expect(discovery.uplinks[3]?.kind == .wifi)
        #expect(discovery.uplinks[4]?.kind == .wwan)
        #expect(discovery.uplinks[4]?.isMetered == true)  // mobile data is metered unless told otherwise
        #expect(discovery.uplinks[5]?.kind == .wwan)
        #expect(discovery.uplinks[6]?.kind == .other)
        #expect(discovery.uplinks[3]?.isMetered == false)
    }

    @Test func honoursUdevNameAndDriverHints() throws {
        var env = FakeInterfaceEnvironment()
        env.udev = [
            "usb0": ["ID_NET_DRIVER": "cdc_mbim"],
            "eth5": ["ID_NET_NAME_PATH": "wlp3s0"],
            "eth6": ["ID_NET_NAME_PATH": "enp4s0", "ID_NET_DRIVER": "r8169"],
        ]
        var discovery = UplinkDiscovery(policy: DiscoveryPolicy(), environment: env)
        _ = try bringUp(&discovery, up(2, "usb0"))
        _ = try bringUp(&discovery, up(3, "eth5"), "192.168.8.2/24", network: "192.168.8.0/24")
        _ = try bringUp(&discovery, up(4, "eth6"), "192.168.9.2/24", network: "192.168.9.0/24")
        #expect(discovery.uplinks[2]?.kind == .wwan)
        #expect(discovery.uplinks[2]?.isMetered == true)
        #expect(discovery.uplinks[3]?.kind == .wifi)
        #expect(discovery.uplinks[4]?.kind == .ethernet)
    }

    @Test func udevPropertiesAndPinsOverrideDefaults() throws {
        var env = FakeInterfaceEnvironment()
        env.udev = [
            "eth0": ["TRIGLAV_TIER": "backup", "TRIGLAV_METERED": "1"],
            "eth1": ["TRIGLAV_UPLINK": "ignore"],
            "veth0": ["TRIGLAV_UPLINK": "auto"],
            "eth2": ["TRIGLAV_TIER": "bogus"],
        ]
        var discovery = UplinkDiscovery(policy: DiscoveryPolicy(), environment: env)
        _ = try bringUp(&discovery, up(2, "eth0"))
        _ = try bringUp(&discovery, up(3, "eth1"), "192.168.9.2/24", network: "192.168.9.0/24")
        _ = try bringUp(&discovery, up(4, "veth0", kind: "veth"), "192.168.10.2/24", network: "192.168.10.0/24")
        _ = try bringUp(&discovery, up(5, "eth2"), "192.168.11.2/24", network: "192.168.11.0/24")
        #expect(discovery.uplinks[2]?.tier == .backup)
        #expect(discovery.uplinks[2]?.isMetered == true)
        #expect(discovery.uplinks[3] == nil)
        #expect(discovery.uplinks[4] == nil)  // "auto" keeps the default: veths are plumbing
        #expect(discovery.uplinks[5]?.tier == .primary)  // unknown values are ignored

        // Config pins beat udev: an ignored interface named in config comes back with the pinned tier.
        let pinned = DiscoveryPolicy(pins: [.init(pattern: "eth1", tier: .secondary),
                                            .init(pattern: "eth*", isMetered: false)])
        _ = discovery.updatePolicy(pinned)
        #expect(discovery.uplinks[3]?.tier == .secondary)
        #expect(discovery.uplinks[2]?.tier == .backup)  // the glob pin only sets metered
        #expect(discovery.uplinks[2]?.isMetered == false)

        // include/exclude globs
        _ = discovery.updatePolicy(DiscoveryPolicy(include: ["eth*"], exclude: ["eth2"]))
        #expect(Set(discovery.uplinks.values.map(\.name)) == ["eth0"])
        _ = discovery.updatePolicy(DiscoveryPolicy(usesUdevProperties: false))
        #expect(discovery.uplinks[3]?.tier == .primary)  // udev ignore no longer consulted
    }

    @Test func renameRereadsUdevAndReportsAChange() throws {
        var env = FakeInterfaceEnvironment()
        env.udev = ["wwan0": ["TRIGLAV_TIER": "backup"]]
        var discovery = UplinkDiscovery(policy: DiscoveryPolicy(), environment: env)
        _ = try bringUp(&discovery, up(2, "usb0"))
        #expect(discovery.uplinks[2]?.tier == .primary)
        let events = discovery.handle(.linkChanged(up(2, "wwan0")))
        #expect(events == [.changed(DiscoveredUplink(name: "wwan0", interfaceIndex: 2, kind: .wwan, tier: .backup,
                                                     isMetered: true, localAddresses: [IPAddress("192.168.7.2")!], mtu: 1500))])
    }

    @Test func udevEventsReplaceCachedPropertiesAndReevaluate() throws {
        var env = FakeInterfaceEnvironment()
        env.udev = ["eth0": ["TRIGLAV_TIER": "primary"]]
        var discovery = UplinkDiscovery(policy: DiscoveryPolicy(), environment: env)
        _ = try bringUp(&discovery, up(2, "eth0"))
        #expect(discovery.uplinks[2]?.tier == .primary)
        // The cached (initialised) properties would otherwise be kept for good.
        var events = discovery.devicePropertiesChanged(name: "eth0", index: 2, properties: [
            "IFINDEX": "2", "USEC_INITIALIZED": "5", "TRIGLAV_TIER": "secondary", "TRIGLAV_METERED": "1"])
        #expect(events.count == 1 && events.first?.uplink?.tier == .secondary && events.first?.uplink?.isMetered == true)
        // Another interface's event, or one for a stale name or index, changes nothing.
        #expect(discovery.devicePropertiesChanged(name: "eth1", index: 2, properties: ["TRIGLAV_UPLINK": "ignore"]).isEmpty)
        #expect(discovery.devicePropertiesChanged(name: "eth0", index: 2, properties: ["IFINDEX": "9", "TRIGLAV_UPLINK": "ignore"]).isEmpty)
        events = discovery.devicePropertiesChanged(name: "eth0", index: 2, properties: [
            "IFINDEX": "2", "USEC_INITIALIZED": "6", "TRIGLAV_UPLINK": "ignore"])
        #expect(events.count == 1 && { if case .removed = events[0] { true } else { false } }())
        #expect(discovery.uplinks.isEmpty)
    }

    @Test func stateStaysBoundedOverManyCycles() throws {
        var discovery = UplinkDiscovery(policy: DiscoveryPolicy(virtualInterfaces: ["v*"]), environment: environment)
        for cycle in 0..<200 {
            let index = Int32(100 + cycle)  // the kernel hands out new indexes
            let link = up(index, "v\(cycle % 7)", kind: "veth")
            #expect(try bringUp(&discovery, link).count == 1)
            var removal = discovery.handle(.addressRemoved(try address(index, "192.168.7.2/24")))
            removal += discovery.handle(.linkRemoved(link))
            #expect(removal.count == 1)
        }
        #expect(discovery.uplinks.isEmpty)
        #expect(discovery.trackedInterfaceCount == 0)
    }

    @Test func mapsTheDaemonConfiguration() throws {
        var settings = UplinkSettings()
        var pin = UplinkPin(match: try InterfaceGlob("wwan*"))
        pin.tier = .backup
        pin.metered = true
        settings.pins = [pin]
        settings.include = [try InterfaceGlob("*"), try InterfaceGlob("vethlab*")]
        let policy = DiscoveryPolicy(uplinks: settings, tunnelInterface: try InterfaceName("tg0"))
        #expect(policy.tunnelInterface == "tg0")
        #expect(policy.exclude.contains("veth*"))
        #expect(policy.virtualInterfaces == ["vethlab*"])
        #expect(policy.pin(for: "wwan0") == DiscoveryPolicy.Pin(pattern: "wwan*", tier: .backup, isMetered: true))
        #expect(policy.pin(for: "eth0") == nil)
    }
}
