public import TriglavCore
public import TriglavCrypto

/// Which side of the tunnel this daemon is.
public enum Role: String, CaseIterable, Sendable {
    case client
    case server
}

/// Log verbosity, in swift-log's level names.
public enum LogLevel: String, CaseIterable, Sendable {
    case trace, debug, info, notice, warning, error, critical
}

/// Which of the system's resolvers takes the tunnel's DNS (`[dns] resolver`, client role), as NetworkManager's
/// `rc-manager`: `auto` picks systemd-resolved when it runs, else resolvconf(8) when it manages /etc/resolv.conf, else
/// the file itself; the others use that one only and report why when it can't take the DNS.
public enum DNSResolverChoice: String, CaseIterable, Sendable {
    case auto
    case systemdResolved = "systemd-resolved"
    case resolvconf
    case file
}

/// How the multipath engine spreads tunnel packets over the uplinks.
public enum SchedulerKind: String, CaseIterable, Sendable {
    /// Spread packets over all usable uplinks in proportion to their capacity (bonding).
    case aggregate
    /// Send every packet over every usable uplink; the receiver keeps the first copy.
    case redundant
    /// Use the best uplink only; switch when it fails.
    case failover
    /// Keep each flow (5-tuple) on one uplink, spreading flows across uplinks.
    case flow
    /// Send each packet over the uplink with the lowest current latency.
    case lowestLatency = "lowest-latency"
}

/// How an uplink reaches the server (`[uplinks.interface.NAME] transport`).
public enum UplinkTransportChoice: String, CaseIterable, Sendable {
    /// UDP, falling back to TCP while UDP goes unanswered.
    case udp
    /// TCP only.
    case tcp
}

/// How eagerly an uplink is used.
public enum UplinkTier: String, CaseIterable, Sendable {
    /// Carries traffic whenever it is usable.
    case primary
    /// Adds capacity when the primary uplinks can't carry the load (or none is usable).
    case secondary
    /// Carries traffic only while no primary or secondary uplink is usable.
    case backup
    /// Never carries tunnel traffic.
    case never
}

/// The daemon's configuration (`/etc/triglav/triglavd.toml`). Every field has a default, so the
/// empty file is a working client. Values are already validated: a `DaemonConfig` is never invalid.
public struct DaemonConfig: Equatable, Sendable {
    public var role: Role = .client
    public var privateKeyPath: String = ConfigDefaults.privateKeyPath
    public var logLevel: LogLevel = ConfigDefaults.logLevel
    public var tunnel = TunnelSettings()
    public var multipath = MultipathSettings()
    public var uplinks = UplinkSettings()
    public var routing = RoutingSettings()
    /// Where to serve Prometheus metrics; nil disables the endpoint.
    public var metricsListen: IPEndpoint?
    /// Client role: the resolver that takes the tunnel's DNS (`[dns] resolver`).
    public var dnsResolver: DNSResolverChoice = .auto
    /// The server's settings; present exactly when `role == .server`.
    public var server: ServerSettings?
    /// Client role: the profile to connect to when the daemon starts (`triglavd --connect` wins).
    public var autoconnect: ProfileName?

    public init() {}
}

/// The TUN device.
public struct TunnelSettings: Equatable, Sendable {
    public var interface: InterfaceName = Self.defaultInterface
    /// nil means derived from the uplinks' MTUs (at most 1500 minus the overhead to the server's family).
    public var mtu: Int?

    static let defaultInterface: InterfaceName = {
        do { return try InterfaceName(ConfigDefaults.tunnelInterface) } catch {
            preconditionFailure("the default tunnel interface name is valid: \(error)")
        }
    }()

    public init() {}
}

/// The multipath engine.
public struct MultipathSettings: Equatable, Sendable {
    public var scheduler: SchedulerKind = ConfigDefaults.scheduler
    public var reorderMaxHold: Duration = .milliseconds(ConfigDefaults.reorderMaxHoldMilliseconds)
    /// `redundant` scheduler: copies per packet on the best uplinks; nil sends one on every usable uplink.
    public var redundantCopies: Int?
    /// `resend_requests`: this side's receiver asks the peer to resend packets lost on an uplink (loss repair,
    /// docs/DATAPLANE.md "Resend requests"). Either way it answers the peer's requests.
    public var resendRequests = true
    /// `pacing`: this side paces what it sends to what each uplink carries, keeping the uplinks' buffers short
    /// (docs/DATAPLANE.md "Sender-side pacing"); on a server, every client's downloads.
    public var pacing = true

    public init() {}
}

/// Which interfaces become uplinks and how each is probed and used.
public struct UplinkSettings: Equatable, Sendable {
    public var include: [InterfaceGlob] = Self.globs(ConfigDefaults.uplinkInclude)
    public var exclude: [InterfaceGlob] = Self.globs(ConfigDefaults.uplinkExclude)
    public var heartbeatInterval: Duration = .milliseconds(ConfigDefaults.heartbeatIntervalMilliseconds)
    /// Idle heartbeat of metered uplinks (`metered_heartbeat_interval_ms`); `heartbeatInterval(forMetered:pin:)`
    /// says which interval an uplink gets.
    public var meteredHeartbeatInterval: Duration = .milliseconds(ConfigDefaults.meteredHeartbeatIntervalMilliseconds)
    /// nil disables NAT keepalives.
    public var natKeepalive: Duration? = .seconds(ConfigDefaults.natKeepaliveSeconds)
    /// How long an uplink stays on its TCP fallback before trying UDP again.
    public var udpRetryInterval: Duration = .seconds(ConfigDefaults.udpRetrySeconds)
    /// Per-interface settings, sorted by pattern (TOML tables have no order).
    public var pins: [UplinkPin] = []

    public init() {}

    /// Whether `interface` may become an uplink: it matches an include glob and no exclude glob.
    /// The tunnel's own interface is never an uplink, whatever the globs say.
    public func admits(_ interface: String, tunnelInterface: InterfaceName) -> Bool {
        interface != tunnelInterface.rawValue
            && include.contains { $0.matches(interface) }
            && !exclude.contains { $0.matches(interface) }
    }

    /// The idle heartbeat of an uplink: its pin's `heartbeat_interval_ms` if set, else for a metered uplink the
    /// longer of `metered_heartbeat_interval_ms` and `heartbeat_interval_ms` (metered never probes more often than
    /// unmetered), else `heartbeat_interval_ms`.
    public func heartbeatInterval(forMetered isMetered: Bool, pin: UplinkPin?) -> Duration {
        if let pinned = pin?.heartbeatInterval { return pinned }
        return isMetered ? max(meteredHeartbeatInterval, heartbeatInterval) : heartbeatInterval
    }

    /// Settings for `interface`: the first pin whose pattern matches; exact names win over globs.
    public func pin(for interface: String) -> UplinkPin? {
        pins.first { $0.match.pattern == interface } ?? pins.first { $0.match.matches(interface) }
    }

    static func globs(_ patterns: [String]) -> [InterfaceGlob] {
        patterns.map {
            do { return try InterfaceGlob($0) } catch {
                preconditionFailure("default interface globs are valid: \(error)")
            }
        }
    }
}

/// Settings for the interfaces matching one name or glob (`[uplinks.interface.NAME]`).
public struct UplinkPin: Equatable, Sendable {
    public var match: InterfaceGlob
    public var tier: UplinkTier = ConfigDefaults.tier
    /// Pay-per-byte link: the daemon keeps probe traffic on it to a minimum (a relaxed idle heartbeat).
    public var metered = false
    /// Megabytes (10^6 bytes) per month after which the uplink is treated as `never`; nil = no cap.
    public var dataCapMegabytes: Int?
    public var dataCapResetDay: Int = ConfigDefaults.dataCapResetDay
    /// This interface's idle heartbeat, metered or not; nil: `[uplinks]`'s rule (`UplinkSettings.heartbeatInterval(forMetered:pin:)`).
    public var heartbeatInterval: Duration?
    /// TCP only, or UDP with the TCP fallback; nil: the connection's (Connect's `transport`, else UDP).
    public var transport: UplinkTransportChoice?

    public init(match: InterfaceGlob) {
        self.match = match
    }
}

/// Policy routing on the client.
public struct RoutingSettings: Equatable, Sendable {
    /// Route all traffic (0.0.0.0/0 and ::/0) through the tunnel.
    public var fullTunnel = ConfigDefaults.fullTunnel
    /// Prefixes routed through the tunnel (in addition to the defaults when `fullTunnel`).
    public var routes: [IPPrefix] = []
    /// Prefixes that never go through the tunnel (the local LAN, say).
    public var exclude: [IPPrefix] = []
    public var firewallMark: UInt32 = ConfigDefaults.firewallMark
    public var table: UInt32 = ConfigDefaults.routeTable
    public var rulePriority: UInt32 = ConfigDefaults.rulePriority

    public init() {}
}

/// The server role: where it listens, its tunnel addresses, NAT, and who may connect.
public struct ServerSettings: Equatable, Sendable {
    public var listen: [IPEndpoint] = ConfigDefaults.serverListen.map(Self.endpoint)
    /// The server's own tunnel address; the prefix is the pool clients' addresses come from.
    public var tunnelIPv4: IPPrefix = Self.prefix(ConfigDefaults.serverTunnelIPv4)
    public var tunnelIPv6: IPPrefix? = Self.prefix(ConfigDefaults.serverTunnelIPv6)
    public var nat = NATSettings()
    public var maxClients = ConfigDefaults.maxClients
    public var clients: [AuthorizedClient] = []
    /// The server's own idle probe interval on each client uplink; a client uplink probed less often by its client
    /// (metered, or the client's `[uplinks] heartbeat_interval_ms`) is probed as rarely as the client probes it.
    public var heartbeatInterval: Duration = .milliseconds(ConfigDefaults.heartbeatIntervalMilliseconds)
    /// `[server.dns]`: resolvers and domains offered to every client; no servers: none offered.
    public var dns = DNSSettings()

    public init() {}

    private static func endpoint(_ text: String) -> IPEndpoint {
        do { return try IPEndpoint(text) } catch { preconditionFailure("default endpoint is valid: \(error)") }
    }

    private static func prefix(_ text: String) -> IPPrefix {
        do { return try IPPrefix(text) } catch { preconditionFailure("default prefix is valid: \(error)") }
    }
}

/// Source NAT of client traffic leaving the server.
public struct NATSettings: Equatable, Sendable {
    public var enabled = ConfigDefaults.natEnabled
    /// The only interface client traffic is masqueraded out of; nil means every interface but the tunnel's.
    public var outboundInterface: InterfaceName?

    public init() {}
}

/// A client allowed to connect, identified by its public key, with fixed tunnel addresses.
public struct AuthorizedClient: Equatable, Sendable {
    public var name: String
    public var publicKey: IdentityPublicKey
    /// The client's tunnel addresses inside the server's pools; at least one is set (nil IPv4: an IPv6-only client).
    public var tunnelIPv4: IPAddress?
    public var tunnelIPv6: IPAddress?

    public init(name: String, publicKey: IdentityPublicKey, tunnelIPv4: IPAddress?, tunnelIPv6: IPAddress? = nil) {
        self.name = name
        self.publicKey = publicKey
        self.tunnelIPv4 = tunnelIPv4
        self.tunnelIPv6 = tunnelIPv6
    }
}
