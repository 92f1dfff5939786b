import TriglavCore

/// Every configuration default and limit in one place. docs/CONFIG.md documents each one; a test
/// checks that an empty file yields exactly these.
public enum ConfigDefaults {
    /// Daemon configuration file read when `--config` is not given.
    public static let daemonConfigPath = "/etc/triglav/triglavd.toml"
    /// Directory of per-server profiles (`NAME.toml`).
    public static let profileDirectory = "/etc/triglav/profiles"
    /// The node's private key; `triglav keygen` writes it, StateDirectory= keeps it across upgrades.
    public static let privateKeyPath = "/var/lib/triglav/private.key"
    public static let logLevel = LogLevel.info

    /// Name of the TUN device the daemon creates.
    public static let tunnelInterface = "triglav0"
    /// Smallest tunnel MTU accepted: the IPv6 minimum link MTU (RFC 8200 §5).
    public static let minimumTunnelMTU = 1280
    /// Largest tunnel MTU accepted: what fits a `MAX_MTU` (1500-byte) uplink to an IPv4 server, 1500 − outer
    /// IPv4 20 − UDP 8 − Triglav's 40 = 1432 (docs/DATAPLANE.md, "TUN MTU"). The data plane's own default
    /// ceiling is this for an IPv4 server and `MAX_PAYLOAD` (1412) for an IPv6 one.
    public static let maximumTunnelMTU = MAX_MTU - WireOverhead.outerIPv4Header - WireOverhead.udpHeader - WireOverhead.protocolOverhead

    public static let scheduler = SchedulerKind.aggregate
    /// A profile's `[dns] servers`: more than a resolver would try in turn is a mistake.
    public static let dnsServersMaximum = 16
    /// What a `[server.dns]` may hold: the protocol's DNS offer fits one small datagram (`DNSOffer.maximumBodyLength`,
    /// `.maximumDomains`; a test keeps them equal).
    public static let offeredDNSMaximumBytes = 1024
    public static let offeredDNSDomainsMaximum = 32
    /// How long the reorder buffer holds a packet waiting for an earlier one before releasing it.
    /// Long enough for a repair: a request and the resend through the paced uplinks' queues (~20 ms each) take
    /// 60–120 ms in the lab, and a gap skipped before its repair arrives costs a loss-based TCP a halved window
    /// (50 ms before: CUBIC 39 % of the lab's links, 150 ms: 68–76 %; docs/BENCHMARKS.md).
    public static let reorderMaxHoldMilliseconds = 150
    public static let reorderMaxHoldRange = 0...5_000
    /// `redundant` scheduler: copies of each packet, on the best uplinks first. 0 (or absent) means every
    /// usable uplink; at most 16, the engine's uplink limit (`MultipathLimits.maxUplinks`).
    public static let redundantCopiesRange = 0...16

    /// Interfaces considered as uplinks. Globs in fnmatch(3) syntax.
    public static let uplinkInclude = ["*"]
    /// Interfaces never used as uplinks: loopback, tunnels (including our own), container and VM plumbing.
    public static let uplinkExclude = ["lo", "triglav*", "tun*", "tap*", "wg*", "docker*", "veth*", "br-*", "virbr*"]
    /// Per-uplink liveness probe interval; failover reacts within a few of these.
    public static let heartbeatIntervalMilliseconds = 100
    public static let heartbeatIntervalRange = 10...60_000
    /// Idle heartbeat of a metered uplink (never shorter than `heartbeat_interval_ms`). 3.2 s: 1/32 of the default
    /// heartbeat's traffic; a WAN health check's pace (a few seconds); inside the 25 s keepalive and the ~30 s UDP NAT
    /// timeouts of mobile carriers, so it keeps the mapping by itself; and exactly a heartbeat class (100 ms × 2⁵), so
    /// the server follows it to the millisecond. The cost: an idle metered uplink's blackhole is noticed after
    /// 7 × 3.2 s + the loss deadline (~23 s) instead of within 1 s; under traffic it fails over as fast as any.
    public static let meteredHeartbeatIntervalMilliseconds = 3_200
    /// Keepalive on idle uplinks so NAT mappings (often 30 s for UDP) don't expire; 0 disables.
    public static let natKeepaliveSeconds = 25
    public static let natKeepaliveRange = 0...3_600
    /// An uplink that fell back to TCP (UDP unanswered) tries UDP again after this long, and again after
    /// each further interval while UDP stays blocked.
    public static let udpRetrySeconds = 120
    public static let udpRetryRange = 1...86_400
    public static let tier = UplinkTier.primary
    /// Day of the month on which a data cap's counter starts again.
    public static let dataCapResetDay = 1
    public static let dataCapResetDayRange = 1...28
    /// Largest data cap accepted, in megabytes (1 EB: anything more is a typo).
    public static let dataCapMegabytesRange = 1...1_000_000_000_000

    /// Send everything through the tunnel unless `routing.full_tunnel = false`.
    public static let fullTunnel = true
    /// Firewall mark on the daemon's own uplink sockets, so their packets skip the tunnel's routes.
    /// Chosen to read as the default port in hex.
    public static let firewallMark: UInt32 = 0x7443
    /// Routing table holding the tunnel routes.
    public static let routeTable: UInt32 = 7443
    /// First of the three consecutive priorities of the client's policy rules (excluded prefixes, then
    /// `suppress_prefixlength 0`, then the rule selecting `routeTable`); all must sort before main's 32766.
    public static let rulePriority: UInt32 = 7443
    /// Tables with fixed meanings in the kernel: unspec (0), default (253), main (254), local (255).
    public static let reservedRouteTables: Set<UInt32> = [0, 253, 254, 255]
    /// Rule priorities the kernel's own rules use (0 local, 32766 main, 32767 default) lie outside this.
    public static let rulePriorityRange = 1...32_763

    /// Endpoints the server listens on (UDP and TCP).
    public static let serverListen = ["0.0.0.0:\(DEFAULT_PORT)", "[::]:\(DEFAULT_PORT)"]
    /// The server's tunnel address; its prefix is the pool client addresses come from.
    public static let serverTunnelIPv4 = "10.77.0.1/24"
    public static let serverTunnelIPv6 = "fd77::1/64"
    /// Shortest/longest pool prefixes: a /31 or /127 leaves no room for a client beside the server.
    public static let serverIPv4PrefixRange = 8...30
    public static let serverIPv6PrefixRange = 48...126
    public static let maxClients = 64
    public static let maxClientsRange = 1...65_535
    public static let natEnabled = true
    /// Longest client name; names appear in logs and `triglav status`.
    public static let clientNameMaxLength = 64
    /// Longest profile name (the file name without `.toml`).
    public static let profileNameMaxLength = 64
}
