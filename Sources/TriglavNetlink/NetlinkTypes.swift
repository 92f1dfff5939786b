public import TriglavCore

/// IPv4 or IPv6; maps to AF_INET / AF_INET6 at the libnl boundary.
public enum AddressFamily: Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case ipv4, ipv6

    public var description: String { self == .ipv4 ? "inet" : "inet6" }

    /// The family of `address`.
    public init(of address: IPAddress) { self = address.isIPv4 ? .ipv4 : .ipv6 }
}

/// Interface flags (IFF_* from <linux/if.h>; ABI values, stable since Linux 2.6).
public struct LinkFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let up = LinkFlags(rawValue: 0x1)
    public static let broadcast = LinkFlags(rawValue: 0x2)
    public static let loopback = LinkFlags(rawValue: 0x8)
    public static let pointToPoint = LinkFlags(rawValue: 0x10)
    public static let running = LinkFlags(rawValue: 0x40)
    public static let noARP = LinkFlags(rawValue: 0x80)
    public static let multicast = LinkFlags(rawValue: 0x1000)
    /// The driver reports the physical layer up (carrier).
    public static let lowerUp = LinkFlags(rawValue: 0x10000)
    public static let dormant = LinkFlags(rawValue: 0x20000)
}

/// A network interface as seen in one RTM_NEWLINK message. A snapshot: it does not follow later changes.
public struct LinkInfo: Sendable, Hashable, CustomStringConvertible {
    /// Kernel interface index (> 0); stable for the interface's lifetime, may be reused after deletion.
    public var index: Int32
    public var name: String
    public var flags: LinkFlags
    /// IFLA_CARRIER: the kernel's carrier state (false when administratively down as well).
    public var hasCarrier: Bool
    /// IFLA_OPERSTATE (RFC 2863: 0 unknown, 2 down, 5 dormant, 6 up, ...).
    public var operState: UInt8
    /// IFLA_INFO_KIND of virtual devices ("veth", "tun", "bridge", "wireguard", "dummy", ...); nil for
    /// physical devices, which have no link-info kind.
    public var kind: String?
    /// ARPHRD_* hardware type (1 ethernet, 772 loopback, 65534 none, e.g. TUN).
    public var hardwareType: UInt32
    public var mtu: UInt32
    /// Index of the master device (bridge, bond, VRF) if enslaved.
    public var masterIndex: Int32?
    /// Link-layer address (empty for TUN and loopback-less devices).
    public var hardwareAddress: [UInt8]

    public init(index: Int32, name: String, flags: LinkFlags, hasCarrier: Bool, operState: UInt8 = 0,
                kind: String? = nil, hardwareType: UInt32 = 1, mtu: UInt32 = 1500, masterIndex: Int32? = nil,
                hardwareAddress: [UInt8] = []) {
        self.index = index
        self.name = name
        self.flags = flags
        self.hasCarrier = hasCarrier
        self.operState = operState
        self.kind = kind
        self.hardwareType = hardwareType
        self.mtu = mtu
        self.masterIndex = masterIndex
        self.hardwareAddress = hardwareAddress
    }

    public var isUp: Bool { flags.contains(.up) }
    public var isLoopback: Bool { flags.contains(.loopback) }
    /// Administratively up with carrier: what an uplink needs at link level.
    public var isOperational: Bool { flags.contains(.up) && flags.contains(.lowerUp) && hasCarrier }

    public var description: String {
        "\(index): \(name) kind=\(kind ?? "-") mtu=\(mtu) \(isUp ? "UP" : "DOWN")\(hasCarrier ? " CARRIER" : "")"
    }
}

/// IFA_F_* address flags (ABI values).
public struct AddressFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let secondary = AddressFlags(rawValue: 0x01)
    /// Skip duplicate address detection: the IPv6 address is usable (bindable) at once.
    public static let noDAD = AddressFlags(rawValue: 0x02)
    public static let optimistic = AddressFlags(rawValue: 0x04)
    public static let dadFailed = AddressFlags(rawValue: 0x08)
    public static let deprecated = AddressFlags(rawValue: 0x20)
    public static let tentative = AddressFlags(rawValue: 0x40)
    public static let permanent = AddressFlags(rawValue: 0x80)
    /// Do not install the prefix route that normally comes with the address.
    public static let noPrefixRoute = AddressFlags(rawValue: 0x200)
}

/// RT_SCOPE_* values for addresses and routes.
public enum Scope {
    public static let universe: UInt8 = 0
    public static let site: UInt8 = 200
    public static let link: UInt8 = 253
    public static let host: UInt8 = 254
    public static let nowhere: UInt8 = 255
}

/// An address configured on an interface.
public struct AddressInfo: Sendable, Hashable, CustomStringConvertible {
    public var interfaceIndex: Int32
    /// The local address with its prefix length (e.g. 192.168.1.10/24).
    public var local: IPPrefix
    /// The peer of a point-to-point address, if any.
    public var peer: IPAddress?
    public var scope: UInt8
    public var flags: AddressFlags

    public init(interfaceIndex: Int32, local: IPPrefix, peer: IPAddress? = nil, scope: UInt8 = Scope.universe,
                flags: AddressFlags = []) {
        self.interfaceIndex = interfaceIndex
        self.local = local
        self.peer = peer
        self.scope = scope
        self.flags = flags
    }

    public var family: AddressFamily { AddressFamily(of: local.address) }

    public var description: String { "\(local) dev #\(interfaceIndex) scope \(scope)" }
}

/// Route type (RTN_*). An open set of raw values with names for the ones Triglav uses.
public struct RouteType: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let unicast = RouteType(rawValue: 1)
    public static let local = RouteType(rawValue: 2)
    public static let broadcast = RouteType(rawValue: 3)
    public static let multicast = RouteType(rawValue: 5)
    /// Silently drop.
    public static let blackhole = RouteType(rawValue: 6)
    /// Drop with ICMP unreachable (what full-tunnel uses to block IPv6 the server does not provide).
    public static let unreachable = RouteType(rawValue: 7)
    public static let prohibit = RouteType(rawValue: 8)
    /// Continue the rule lookup as if this table had no match.
    public static let `throw` = RouteType(rawValue: 9)

    public var description: String {
        switch rawValue {
        case 1: "unicast"
        case 2: "local"
        case 3: "broadcast"
        case 5: "multicast"
        case 6: "blackhole"
        case 7: "unreachable"
        case 8: "prohibit"
        case 9: "throw"
        default: "type\(rawValue)"
        }
    }
}

/// Well-known routing table numbers (RT_TABLE_*).
public enum RouteTable {
    public static let `default`: UInt32 = 253
    public static let main: UInt32 = 254
    public static let local: UInt32 = 255
}

/// Route origin (RTPROT_*). Routes and rules that Triglav installs carry a protocol so leftovers can be
/// found after a crash; the kernel stores it but never interprets it.
public enum RouteProtocol {
    public static let kernel: UInt8 = 2
    public static let boot: UInt8 = 3
    public static let `static`: UInt8 = 4
}

/// A route: what `addRoute`/`deleteRoute` take and `routes()` and the monitor return.
///
/// Identity in the kernel is (family, table, destination, metric) plus TOS for IPv4; deleting a route
/// matches on every field that is set here, so delete with the value you added (or one listed).
public struct Route: Sendable, Hashable, CustomStringConvertible {
    public var destination: IPPrefix
    public var gateway: IPAddress?
    /// Output interface index (the first nexthop's for multipath routes).
    public var outputInterface: Int32?
    /// Every nexthop's output interface (one element for ordinary routes; empty for blackhole & co).
    public var nexthopInterfaces: [Int32]
    public var table: UInt32
    /// Route priority ("metric"). nil = kernel default (0 for IPv4, 1024 for IPv6).
    public var metric: UInt32?
    public var type: RouteType
    public var `protocol`: UInt8
    /// nil = derived: host for local routes, link for unicast without gateway, universe otherwise.
    public var scope: UInt8?
    public var preferredSource: IPAddress?

    public init(destination: IPPrefix, gateway: IPAddress? = nil, outputInterface: Int32? = nil,
                table: UInt32 = RouteTable.main, metric: UInt32? = nil, type: RouteType = .unicast,
                protocol: UInt8 = RouteProtocol.static, scope: UInt8? = nil, preferredSource: IPAddress? = nil) {
        self.destination = destination
        self.gateway = gateway
        self.outputInterface = outputInterface
        self.nexthopInterfaces = outputInterface.map { [$0] } ?? []
        self.table = table
        self.metric = metric
        self.type = type
        self.protocol = `protocol`
        self.scope = scope
        self.preferredSource = preferredSource
    }

    public var family: AddressFamily { AddressFamily(of: destination.address) }

    /// The scope sent to the kernel: explicit, or the one `ip route` would pick.
    var effectiveScope: UInt8 {
        if let scope { return scope }
        if type == .local { return Scope.host }
        if type == .unicast && gateway == nil && outputInterface != nil { return Scope.link }
        return Scope.universe
    }

    public var description: String {
        var text = type == .unicast ? "" : "\(type) "
        text += "\(destination)"
        if let gateway { text += " via \(gateway)" }
        if let outputInterface { text += " dev #\(outputInterface)" }
        text += " table \(table)"
        if let metric { text += " metric \(metric)" }
        text += " proto \(`protocol`)"
        return text
    }
}

/// What a rule does when it matches (FR_ACT_*).
public enum RuleAction: UInt8, Sendable, Hashable {
    case lookup = 1
    case goto = 2
    case nop = 3
    case blackhole = 6
    case unreachable = 7
    case prohibit = 8
}

/// A policy routing rule (`ip rule`). Every optional field that is nil is left out of the request; the
/// kernel matches a delete on every field that is set, so delete with the value you added.
public struct RoutingRule: Sendable, Hashable, CustomStringConvertible {
    public var family: AddressFamily
    /// Rule priority (preference). nil on add lets the kernel pick (one below the lowest non-zero one).
    public var priority: UInt32?
    public var firewallMark: UInt32?
    /// Mask for `firewallMark`; nil = exact match (0xffffffff).
    public var firewallMask: UInt32?
    /// Table to look up for `.lookup` (RT_TABLE_MAIN = 254 for "lookup main").
    public var table: UInt32?
    public var action: RuleAction
    /// FRA_SUPPRESS_PREFIXLEN: reject lookups whose result has a prefix this short or shorter
    /// (0 = ignore default routes: `suppress_prefixlength 0`).
    public var suppressPrefixLength: UInt32?
    /// FIB_RULE_INVERT: the rule matches when the selector does NOT match (`not`).
    public var invert: Bool
    public var `protocol`: UInt8?
    public var source: IPPrefix?
    public var destination: IPPrefix?
    public var inputInterface: String?
    public var outputInterface: String?

    public init(family: AddressFamily, priority: UInt32? = nil, firewallMark: UInt32? = nil,
                firewallMask: UInt32? = nil, table: UInt32? = nil, action: RuleAction = .lookup,
                suppressPrefixLength: UInt32? = nil, invert: Bool = false, protocol: UInt8? = nil,
                source: IPPrefix? = nil, destination: IPPrefix? = nil,
                inputInterface: String? = nil, outputInterface: String? = nil) {
        self.family = family
        self.priority = priority
        self.firewallMark = firewallMark
        self.firewallMask = firewallMask
        self.table = table
        self.action = action
        self.suppressPrefixLength = suppressPrefixLength
        self.invert = invert
        self.protocol = `protocol`
        self.source = source
        self.destination = destination
        self.inputInterface = inputInterface
        self.outputInterface = outputInterface
    }

    public var description: String {
        var parts = ["\(family)"]
        if let priority { parts.append("pref \(priority)") }
        if invert { parts.append("not") }
        if let source { parts.append("from \(source)") }
        if let destination { parts.append("to \(destination)") }
        if let firewallMark {
            parts.append("fwmark 0x\(String(firewallMark, radix: 16))"
                         + (firewallMask.map { "/0x\(String($0, radix: 16))" } ?? ""))
        }
        if let inputInterface { parts.append("iif \(inputInterface)") }
        if let outputInterface { parts.append("oif \(outputInterface)") }
        switch action {
        case .lookup: parts.append("lookup \(table.map(String.init) ?? "?")")
        default: parts.append("\(action)")
        }
        if let suppressPrefixLength { parts.append("suppress_prefixlength \(suppressPrefixLength)") }
        if let p = `protocol` { parts.append("proto \(p)") }
        return parts.joined(separator: " ")
    }
}
