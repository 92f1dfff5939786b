import TriglavCore
import TriglavMultipath
public import TriglavNetlink

/// Turns netlink events into the desired set of uplinks, as diff events. Pure logic: no I/O besides
/// the `InterfaceEnvironment` lookups, time-free, testable with fake events.
///
/// An interface is an uplink while it is administratively up with carrier, has a usable address
/// (not link-local, not tentative) and at least one route through it (other than IPv6 link-local and
/// multicast routes), and the policy admits it. Owned by one thread or task (not Sendable); state is
/// bounded by the kernel's: everything about an interface is dropped when it disappears.
public struct UplinkDiscovery {
    public private(set) var policy: DiscoveryPolicy
    private let environment: any InterfaceEnvironment

    private var links: [Int32: LinkInfo] = [:]
    private var addresses: [Int32: Set<AddressInfo>] = [:]
    /// Per interface, the routes through it (by their identity) that make it routable.
    private var routes: [Int32: Set<RouteIdentity>] = [:]
    /// udev properties, read once per interface when it first becomes a candidate; re-read while udev
    /// has not finished with the device (no USEC_INITIALIZED yet) and after a rename.
    private var udevCache: [Int32: [String: String]] = [:]
    public private(set) var uplinks: [Int32: DiscoveredUplink] = [:]
    public private(set) var isSynchronized = false

    struct RouteIdentity: Hashable { let table: UInt32; let destination: IPPrefix; let metric: UInt32 }

    /// Kinds (IFLA_INFO_KIND) that are plumbing, not networks: skipped unless the policy names them.
    /// VLANs, bonds, macvlans and WWAN devices (kind "wwan") carry real uplinks and are not listed.
    public static let virtualKinds: Set<String> = [
        "veth", "bridge", "tun", "wireguard", "dummy", "ifb", "vxlan", "geneve", "gre", "gretap", "ip6gre",
        "ip6gretap", "ipip", "sit", "ip6tnl", "vti", "vti6", "xfrm", "vrf", "nlmon", "netdevsim", "team",
        "macvtap", "ipvtap", "bareudp", "amt", "gtp",
    ]

    static let ethernetHardwareType: UInt32 = 1

    public init(policy: DiscoveryPolicy, environment: any InterfaceEnvironment) {
        self.policy = policy
        self.environment = environment
    }

    /// Applies one monitor event and returns the resulting changes of the uplink set.
    public mutating func handle(_ event: NetlinkEvent) -> [DiscoveryEvent] {
        switch event {
        case .linkAdded(let link), .linkChanged(let link):
            if let old = links[link.index], old.name != link.name { udevCache[link.index] = nil }
            links[link.index] = link
            return evaluate(link.index)
        case .linkRemoved(let link):
            links[link.index] = nil
            addresses[link.index] = nil
            routes[link.index] = nil
            udevCache[link.index] = nil
            guard let gone = uplinks.removeValue(forKey: link.index) else { return [] }
            return [.removed(gone)]
        case .addressAdded(let address):
            addresses[address.interfaceIndex, default: []].insert(address)
            return evaluate(address.interfaceIndex)
        case .addressRemoved(let address):
            addresses[address.interfaceIndex]?.remove(address)
            if addresses[address.interfaceIndex]?.isEmpty == true { addresses[address.interfaceIndex] = nil }
            return evaluate(address.interfaceIndex)
        case .routeAdded(let route):
            guard Self.makesRoutable(route) else { return [] }
            var events: [DiscoveryEvent] = []
            for index in Set(route.nexthopInterfaces) where links[index] != nil {
                routes[index, default: []].insert(Self.identity(route))
                events += evaluate(index)
            }
            return events
        case .routeRemoved(let route):
            var events: [DiscoveryEvent] = []
            for index in Set(route.nexthopInterfaces) {
                routes[index]?.remove(Self.identity(route))
                if routes[index]?.isEmpty == true { routes[index] = nil }
                events += evaluate(index)
            }
            return events
        case .synchronized:
            let first = !isSynchronized
            isSynchronized = true
            return first ? [.synchronized] : []
        }
    }

    /// Applies what udev reported about an interface after running its rules (the sd-device monitor): the
    /// properties replace the cached ones, and the interface is evaluated again, so a TRIGLAV_* property set
    /// late (udev finishing after the link came up, `udevadm trigger`, a changed rule) takes effect.
    /// Events for interfaces netlink doesn't know, or whose index doesn't match, change nothing.
    public mutating func devicePropertiesChanged(name: String, index: Int32, properties: [String: String]) -> [DiscoveryEvent] {
        guard let link = links[index], link.name == name, properties["IFINDEX"].map({ $0 == String(index) }) ?? true else {
            return []
        }
        udevCache[index] = properties
        return evaluate(index)
    }

    /// Replaces the policy (config reload) and returns the changes it causes.
    public mutating func updatePolicy(_ newPolicy: DiscoveryPolicy) -> [DiscoveryEvent] {
        policy = newPolicy
        return links.keys.sorted().flatMap { evaluate($0) }
    }

    /// Number of interfaces with any tracked state (for tests of boundedness).
    var trackedInterfaceCount: Int {
        Set(links.keys).union(addresses.keys).union(routes.keys).union(udevCache.keys).union(uplinks.keys).count
    }

    // MARK: decisions

    static func identity(_ route: Route) -> RouteIdentity {
        RouteIdentity(table: route.table, destination: route.destination, metric: route.metric ?? 0)
    }

    /// Routes that show the interface leads somewhere: unicast, not IPv6 link-local or multicast.
    static func makesRoutable(_ route: Route) -> Bool {
        guard route.type == .unicast, route.table != RouteTable.local else { return false }
        let destination = route.destination
        if case .v6(let high, _) = destination.address {
            let linkLocal = high >> 54 == 0x3fa  // fe80::/10
            let multicast = high >> 56 == 0xff
            if (linkLocal && destination.length >= 10) || (multicast && destination.length >= 8) { return false }
        }
        return true
    }

    /// Addresses a socket can use: no IPv4 169.254/16, no IPv6 link-local, no tentative or failed DAD.
    static func isUsable(_ address: AddressInfo) -> Bool {
        if !address.flags.isDisjoint(with: [.tentative, .dadFailed]) { return false }
        switch address.local.address {
        case .v4(let value):
            return value >> 16 != 0xa9fe && value >> 24 != 127
        case .v6(let high, let low):
            if high >> 54 == 0x3fa { return false }  // fe80::/10
            return !(high == 0 && low == 1)  // ::1
        }
    }

    private mutating func evaluate(_ index: Int32) -> [DiscoveryEvent] {
        let desired = desiredUplink(index)
        let current = uplinks[index]
        switch (current, desired) {
        case (nil, nil):
            return []
        case (nil, let new?):
            uplinks[index] = new
            return [.added(new)]
        case (let old?, nil):
            uplinks[index] = nil
            return [.removed(old)]
        case (let old?, let new?):
            guard old != new else { return [] }
            uplinks[index] = new
            return [.changed(new)]
        }
    }

    private mutating func desiredUplink(_ index: Int32) -> DiscoveredUplink? {
        guard let link = links[index], link.isOperational, link.masterIndex == nil, !link.isLoopback,
              link.name != policy.tunnelInterface else { return nil }
        let usable = (addresses[index] ?? []).filter(Self.isUsable)
        guard !usable.isEmpty, routes[index]?.isEmpty == false else { return nil }
        let name = link.name
        guard InterfacePattern.matchesAny(policy.include, name), !InterfacePattern.matchesAny(policy.exclude, name) else {
            return nil
        }
        let pin = policy.pin(for: name)
        let udev = policy.usesUdevProperties ? udevProperties(for: link) : [:]
        if pin == nil {
            if udev["TRIGLAV_UPLINK"] == "ignore" { return nil }
            if let kind = link.kind, Self.virtualKinds.contains(kind),
               !InterfacePattern.matchesAny(policy.virtualInterfaces, name) { return nil }
        }
        let kind = classify(link, udev: udev)
        var tier = UplinkTier.primary
        var metered = kind == .wwan
        if let value = udev["TRIGLAV_TIER"], let parsed = UplinkTier(rawValue: value) { tier = parsed }
        if let value = udev["TRIGLAV_METERED"] { metered = ["1", "yes", "true"].contains(value.lowercased()) }
        if let pinnedTier = pin?.tier { tier = pinnedTier }
        if let pinnedMetered = pin?.isMetered { metered = pinnedMetered }
        let ordered = usable.sorted { lhs, rhs in
            if lhs.local.address.isIPv4 != rhs.local.address.isIPv4 { return lhs.local.address.isIPv4 }
            return lhs.local.address.bytes.lexicographicallyPrecedes(rhs.local.address.bytes)
        }
        return DiscoveredUplink(name: name, interfaceIndex: index, kind: kind, tier: tier, isMetered: metered,
                                localAddresses: ordered.map(\.local.address), mtu: link.mtu)
    }

    private mutating func udevProperties(for link: LinkInfo) -> [String: String] {
        if let cached = udevCache[link.index], cached["USEC_INITIALIZED"] != nil { return cached }
        let properties = environment.udevProperties(name: link.name, index: link.index)
        udevCache[link.index] = properties
        return properties
    }

    /// Drivers of mobile-broadband modems (udev ID_NET_DRIVER), for modems whose driver sets no DEVTYPE.
    static let wwanDrivers: Set<String> = ["qmi_wwan", "cdc_mbim", "huawei_cdc_ncm", "sierra_net", "mhi_net", "ipa"]

    /// wwan: DEVTYPE=wwan, link kind "wwan", a modem driver, or a "ww*" (predictable) name; wifi: DEVTYPE=wlan,
    /// sysfs wireless/phy80211, or a "wl*" predictable name; ethernet: ARPHRD_ETHER; else other.
    private func classify(_ link: LinkInfo, udev: [String: String]) -> UplinkKind {
        let devtype = udev["DEVTYPE"]
        // systemd's predictable name, also when the kernel name was kept (e.g. eth0 → ID_NET_NAME_PATH=enp3s0)
        let names = [link.name, udev["ID_NET_NAME"], udev["ID_NET_NAME_ONBOARD"], udev["ID_NET_NAME_SLOT"],
                     udev["ID_NET_NAME_PATH"]].compactMap { $0 }
        if devtype == "wwan" || link.kind == "wwan" || udev["ID_NET_DRIVER"].map(Self.wwanDrivers.contains) == true {
            return .wwan
        }
        if devtype == "wlan" || environment.isWireless(name: link.name, index: link.index) { return .wifi }
        if names.contains(where: { $0.hasPrefix("ww") }) { return .wwan }
        if names.contains(where: { $0.hasPrefix("wl") }) { return .wifi }
        if link.hardwareType == Self.ethernetHardwareType { return .ethernet }
        return .other
    }
}
