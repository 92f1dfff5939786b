public import TriglavCore
public import TriglavMultipath

/// What kind of network an uplink is; drives default tier/metered and is shown to users.
public enum UplinkKind: String, Sendable, Hashable, CaseIterable {
    case ethernet, wifi, wwan, other
}

/// An interface that currently qualifies as an uplink, with everything the daemon needs to open a
/// socket on it and to set its policy.
public struct DiscoveredUplink: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var interfaceIndex: Int32
    public var kind: UplinkKind
    public var tier: UplinkTier
    public var isMetered: Bool
    /// Usable local addresses (IPv4 first, then IPv6; no link-local, tentative or DAD-failed ones).
    public var localAddresses: [IPAddress]
    public var mtu: UInt32

    public init(name: String, interfaceIndex: Int32, kind: UplinkKind, tier: UplinkTier, isMetered: Bool,
                localAddresses: [IPAddress], mtu: UInt32) {
        self.name = name
        self.interfaceIndex = interfaceIndex
        self.kind = kind
        self.tier = tier
        self.isMetered = isMetered
        self.localAddresses = localAddresses
        self.mtu = mtu
    }

    public var description: String {
        "\(name)#\(interfaceIndex) \(kind) \(tier)\(isMetered ? " metered" : "") [\(localAddresses.map(\.description).joined(separator: ", "))]"
    }
}

/// A change in the set of uplinks.
public enum DiscoveryEvent: Sendable, Hashable, CustomStringConvertible {
    case added(DiscoveredUplink)
    /// Same interface (index), something else changed: addresses, tier, metered, name, kind or MTU.
    case changed(DiscoveredUplink)
    case removed(DiscoveredUplink)
    /// The initial netlink dump has been applied: the set is complete (the moment for READY=1).
    case synchronized

    public var description: String {
        switch self {
        case .added(let uplink): "uplink added: \(uplink)"
        case .changed(let uplink): "uplink changed: \(uplink)"
        case .removed(let uplink): "uplink removed: \(uplink)"
        case .synchronized: "uplinks synchronized"
        }
    }
}

/// Which interfaces may become uplinks and with which settings. Independent of the config file
/// format: the daemon maps its configuration into this value (see `DiscoveryPolicy+Config.swift`).
///
/// Precedence, first match wins: loopback, enslaved ports and the tunnel itself are never uplinks;
/// `exclude`; not matching `include`; a `pins` entry (config) sets tier/metered and admits virtual
/// devices; udev TRIGLAV_UPLINK=ignore; virtual kinds (veth, bridge, tun, wireguard, ...) unless in
/// `virtualInterfaces`; then udev TRIGLAV_TIER/TRIGLAV_METERED; then the kind's defaults.
public struct DiscoveryPolicy: Sendable, Hashable {
    /// Per-interface settings (config `[uplinks.interface.NAME]`). A pin names the interface explicitly,
    /// so it also admits a virtual device.
    public struct Pin: Sendable, Hashable {
        /// fnmatch(3) glob or exact name; an exact name wins over globs.
        public var pattern: String
        public var tier: UplinkTier?
        public var isMetered: Bool?

        public init(pattern: String, tier: UplinkTier? = nil, isMetered: Bool? = nil) {
            self.pattern = pattern
            self.tier = tier
            self.isMetered = isMetered
        }
    }

    /// fnmatch(3) globs an interface must match one of.
    public var include: [String]
    /// fnmatch(3) globs that keep an interface out, whatever else says.
    public var exclude: [String]
    /// Globs of virtual interfaces (veth, tun, bridge, ...) that may nevertheless be uplinks.
    public var virtualInterfaces: [String]
    public var pins: [Pin]
    /// Triglav's own TUN: never an uplink.
    public var tunnelInterface: String
    /// Whether udev's TRIGLAV_* properties are consulted.
    public var usesUdevProperties: Bool

    public init(include: [String] = ["*"], exclude: [String] = [], virtualInterfaces: [String] = [], pins: [Pin] = [],
                tunnelInterface: String = "triglav0", usesUdevProperties: Bool = true) {
        self.include = include
        self.exclude = exclude
        self.virtualInterfaces = virtualInterfaces
        self.pins = pins
        self.tunnelInterface = tunnelInterface
        self.usesUdevProperties = usesUdevProperties
    }

    /// The pin for `name`: an exact pattern first, then the first matching glob.
    public func pin(for name: String) -> Pin? {
        pins.first { $0.pattern == name } ?? pins.first { InterfacePattern.matches($0.pattern, name) }
    }
}

/// What discovery needs from the system beyond netlink, behind a protocol so tests can fake it.
public protocol InterfaceEnvironment: Sendable {
    /// udev properties of the interface (empty when unknown). Must check the device really is
    /// `name` with `index` (sysfs may show another network namespace).
    func udevProperties(name: String, index: Int32) -> [String: String]
    /// Whether the interface is an 802.11 device (sysfs `wireless/` or `phy80211`).
    func isWireless(name: String, index: Int32) -> Bool
}
