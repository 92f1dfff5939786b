import TriglavCore
public import TriglavConfig
public import TriglavMultipath
public import enum TriglavDataPlane.UplinkTransportMode

/// The client connection's state, as `org.triglav.Manager1.State` shows it.
public enum ConnectionState: String, Sendable, CaseIterable {
    /// No tunnel.
    case disconnected
    /// The tunnel exists but no uplink has a session with the server yet (or none has any more).
    case connecting
    /// Every uplink that should carry traffic has a session.
    case connected
    /// Some uplinks that should carry traffic have a session, others don't; or uplinks have sessions but the
    /// tunnel's addresses and routes couldn't be applied (`ClientManagerStatus.routingError`).
    case degraded
    /// The tunnel is being torn down (routes, rules and TUN removed).
    case disconnecting
}

/// How an uplink came to be.
public enum UplinkProvenance: String, Sendable, CaseIterable {
    /// Found by netlink discovery; goes away with the interface.
    case auto
    /// Added with AddUplink; stays until RemoveUplink, waiting while its interface is missing.
    case manual
}

/// An uplink's state, as `org.triglav.Uplink1.State` shows it.
public enum UplinkActivity: String, Sendable, CaseIterable {
    /// Can't be used: disabled, tier `never`, or its interface is gone (bus `down`).
    case inactive
    /// Usable (carrier, address, route) while there is no tunnel to join: disconnected (bus `waiting`).
    case idle
    /// Could carry traffic (with a session ready, or not joined yet), held back by its tier while a better tier works.
    case standby
    /// Part of the tunnel, but its interface is missing or can't carry a socket yet (bus `down`).
    case waiting
    /// Part of the tunnel, handshaking with the server: no session yet (bus `waiting`).
    case connecting
    /// Session established; the multipath engine is still measuring the path (first probe replies, or
    /// recovering after a loss of contact), so it carries no data yet (bus `probing`).
    case measuring
    /// Session established and carrying traffic (bus `active`).
    case established
    /// Session established, carrying traffic with high loss (bus `degraded`).
    case lossy
}

/// Options of Connect (`a{sv}` on the bus). Each overrides the profile and the daemon file.
public struct ConnectionOptions: Sendable, Equatable {
    public var scheduler: SchedulerKind?
    public var fullTunnel: Bool?
    /// Another endpoint for the profile's server (same key).
    public var server: RemoteEndpoint?
    /// How every uplink of the connection reaches the server, unless AddUplink said otherwise for one.
    public var transport: UplinkTransportMode?

    public init(scheduler: SchedulerKind? = nil, fullTunnel: Bool? = nil, server: RemoteEndpoint? = nil,
                transport: UplinkTransportMode? = nil) {
        self.scheduler = scheduler
        self.fullTunnel = fullTunnel
        self.server = server
        self.transport = transport
    }
}

/// Options of AddUplink and the writable Uplink1 properties.
public struct UplinkOverrides: Sendable, Equatable {
    public var tier: TriglavMultipath.UplinkTier?
    public var isMetered: Bool?
    public var isEnabled: Bool?
    /// UDP with the TCP fallback, or TCP only (AddUplink's `transport`).
    public var transport: UplinkTransportMode?

    public init(tier: TriglavMultipath.UplinkTier? = nil, isMetered: Bool? = nil, isEnabled: Bool? = nil,
                transport: UplinkTransportMode? = nil) {
        self.tier = tier
        self.isMetered = isMetered
        self.isEnabled = isEnabled
        self.transport = transport
    }
}

/// A snapshot of one uplink (`/org/triglav/uplink/N`).
public struct UplinkSnapshot: Sendable, Equatable {
    /// N in the object path; never reused while the daemon runs.
    public var number: Int
    public var interface: String
    public var kind: UplinkKind
    public var origin: UplinkProvenance
    public var state: UplinkActivity
    public var tier: TriglavMultipath.UplinkTier
    public var isMetered: Bool
    public var isEnabled: Bool
    public var rttMicroseconds: UInt64
    /// Not measured by the data plane yet: 0.
    public var jitterMicroseconds: UInt64
    /// Not measured by the data plane yet: 0.
    public var lossRatio: Double
    /// The multipath engine's estimate of what this host can send on the uplink (Uplink1.CapacityBps).
    public var capacityBitsPerSecond: UInt64
    public var transmittedBytes: UInt64
    public var receivedBytes: UInt64
    /// The interface's first usable address ("" when unknown).
    public var localAddress: String
    /// "udp", or "tcp" while the uplink uses its TCP fallback.
    public var transport: String
    /// False when the data plane found no route to the server through the interface (Uplink1.RouteToServer):
    /// the uplink can't connect until one appears. True otherwise, including while unknown.
    public var hasRouteToServer: Bool = true
    /// What arrived on the uplink during the last second (Uplink1.RxRateBps): the download direction, measured.
    public var receiveRateBitsPerSecond: UInt64 = 0
    /// Where the server sees the uplink's packets come from ("203.0.113.7:40312"; "" before the server said so), and
    /// whether that isn't the uplink's own address and port: a NAT on the way (Uplink1.PublicEndpoint, BehindNAT).
    public var publicEndpoint: String = ""
    public var isBehindNAT: Bool = false
    /// The path MTU the tunnel counts for the uplink, 0 while unknown, and whether the client's probes lowered it
    /// below the kernel's (a hop that drops larger packets without ICMP) (Uplink1.PathMTU, PathMTUBlackhole).
    public var pathMTU: UInt32 = 0
    public var hasPathMTUBlackhole: Bool = false
    /// Datagrams the uplink's socket sent in UDP GSO messages and received in UDP GRO runs, this connection
    /// (Uplink1.GSODatagrams, GRODatagrams): whether the kernel's offloads carry its traffic.
    public var gsoDatagrams: UInt64 = 0
    public var groDatagrams: UInt64 = 0

    /// Whether the server seeing the uplink at `seen` means a NAT on the way: the port differs from the socket's, or
    /// the address is none of the interface's (nor the socket's own, when it is bound to one). Without anything to
    /// compare with, no.
    static func isTranslated(_ seen: IPEndpoint, local: IPEndpoint?, interfaceAddresses: [IPAddress]) -> Bool {
        if let local, local.port != seen.port { return true }
        var own = interfaceAddresses
        if let local, local.address != .v4(0), local.address != .v6(high: 0, low: 0) { own.append(local.address) }
        return !own.isEmpty && !own.contains(seen.address)
    }
}

/// A snapshot of the client manager (`/org/triglav`, `org.triglav.Manager1`).
public struct ClientManagerStatus: Sendable, Equatable {
    public var state: ConnectionState
    /// The connected profile's name ("" when disconnected).
    public var profile: String
    /// The server endpoint ("" when disconnected).
    public var server: String
    /// The TUN device ("" when disconnected).
    public var tunnelInterface: String
    /// Addresses the server assigned, e.g. ["10.77.0.2/24"] (empty before the first handshake).
    public var tunnelAddresses: [String]
    public var scheduler: SchedulerKind
    public var transmittedBytes: UInt64
    public var receivedBytes: UInt64
    /// Numbers of the uplink objects, ascending.
    public var uplinks: [Int]
    /// Why the tunnel's addresses, routes or rules couldn't be applied (the kernel refused them; retried, and
    /// the tunnel's traffic is blocked meanwhile); "" while they are applied, or when disconnected.
    public var routingError: String = ""
    /// Why the connection is `connecting` without a tunnel yet: waiting for its server name to resolve (the last
    /// resolver error and the failed attempts); "" otherwise.
    public var stateReason: String = ""
    /// The resolvers on the TUN's link (the profile's `[dns]`, else the server's offer), and its domains (`~`
    /// routing-only, `~.` every query); empty when disconnected or when DNS is left to the system.
    public var dnsServers: [String] = []
    public var dnsDomains: [String] = []
    /// Why those aren't in systemd-resolved (not running, refused); "" when they are.
    public var dnsError: String = ""
    /// `DNSSource.rawValue`: "profile", "server" or "".
    public var dnsSource: String = ""
    /// The resolver that took the link's DNS (`LinkDNSConfiguring.resolver(for:)`); "" while none has.
    public var dnsResolver: String = ""
    /// The TUN's current MTU (it follows the uplinks' path MTUs); 0 when disconnected or not set yet.
    public var tunnelMTU: Int = 0
}

/// A change the bus adaptor turns into signals. Delivered in order on one serial queue.
public enum ClientManagerEvent: Sendable, Equatable {
    /// Some Manager1 property changed; the snapshot has all of them.
    case managerChanged(ClientManagerStatus)
    case uplinkAdded(UplinkSnapshot)
    case uplinkChanged(UplinkSnapshot)
    case uplinkRemoved(number: Int, interface: String)
}
