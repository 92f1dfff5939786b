// Status records of the org.triglav API. Each maps one-to-one onto the properties of one D-Bus
// interface (property names are the D-Bus names, which are also the CLI's JSON keys).

/// Manager1.State
public enum TunnelState: String, Sendable, CaseIterable {
    case disconnected, connecting, connected, degraded, disconnecting
}

/// Uplink1.Kind
public enum UplinkKind: String, Sendable, CaseIterable {
    case ethernet, wifi, wwan, other
}

/// Uplink1.Origin: found by discovery, or added with AddUplink.
public enum UplinkOrigin: String, Sendable, CaseIterable {
    case auto, manual
}

/// Uplink1.State
public enum UplinkState: String, Sendable, CaseIterable {
    /// Can't be used: no carrier, no address or route, interface missing, disabled, or tier `never`.
    case down
    /// Usable locally (carrier and address) but no session with the server: disconnected, or handshaking.
    case waiting
    /// Session with the server; the path is being measured before it carries data.
    case probing
    /// Carrying traffic.
    case active
    /// Healthy but held back by its tier (backup).
    case standby
    /// Carrying traffic with high loss or latency.
    case degraded
}

/// Uplink1.Tier (writable)
public enum UplinkTier: String, Sendable, CaseIterable {
    case primary, secondary, backup, never
}

/// Uplink1.Transport
public enum UplinkTransport: String, Sendable, CaseIterable {
    case udp, tcp
}

/// Client1.State
public enum ClientState: String, Sendable, CaseIterable {
    case handshaking, connected, degraded
}

/// The server engine's state of one client path (an element of Client1.PathDetails).
public enum ClientPathState: String, Sendable, CaseIterable {
    case probing, ready, degraded, down
}

/// One path of a client, as the server sees it: an element of Client1.PathDetails, a structure `(usssttdtt)`.
public struct ClientPathStatus: Sendable, Hashable {
    /// The client's number for the uplink (the protocol's uplink ID, stable while the client runs).
    public var uplink: UInt32
    /// Where the path's packets come from ("203.0.113.7:40312"; the connection's peer over the TCP fallback).
    public var endpoint: String
    public var transport: UplinkTransport
    public var state: ClientPathState
    /// Smoothed RTT and jitter from the server's probes, µs; 0 before the first reply.
    public var rttUsec: UInt64
    public var jitterUsec: UInt64
    /// 0…1, over the last 2 s of probes and data feedback.
    public var lossRatio: Double
    /// Bytes of data frames (whole frames, as UDP payload) received on and sent over this path.
    public var rxBytes: UInt64
    public var txBytes: UInt64

    public static let fields = "usssttdtt"

    public init(uplink: UInt32, endpoint: String, transport: UplinkTransport = .udp, state: ClientPathState,
                rttUsec: UInt64 = 0, jitterUsec: UInt64 = 0, lossRatio: Double = 0, rxBytes: UInt64 = 0, txBytes: UInt64 = 0) {
        self.uplink = uplink
        self.endpoint = endpoint
        self.transport = transport
        self.state = state
        self.rttUsec = rttUsec
        self.jitterUsec = jitterUsec
        self.lossRatio = lossRatio
        self.rxBytes = rxBytes
        self.txBytes = txBytes
    }

    /// The structure's members in `fields` order.
    public var record: [ControlValue] {
        [.uint32(uplink), .string(endpoint), .string(transport.rawValue), .string(state.rawValue), .uint64(rttUsec),
         .uint64(jitterUsec), .double(lossRatio), .uint64(rxBytes), .uint64(txBytes)]
    }

    /// Nil unless `record` has `fields`' types (a daemon of another version may send another structure).
    public init?(record: [ControlValue]) {
        guard record.map(\.signature).joined() == Self.fields, case .uint32(let uplink) = record[0],
              let endpoint = record[1].string, let transport = record[2].string.flatMap(UplinkTransport.init(rawValue:)),
              let state = record[3].string.flatMap(ClientPathState.init(rawValue:)),
              let rtt = record[4].uint64, let jitter = record[5].uint64, let loss = record[6].double,
              let rx = record[7].uint64, let tx = record[8].uint64 else { return nil }
        self.init(uplink: uplink, endpoint: endpoint, transport: transport, state: state, rttUsec: rtt, jitterUsec: jitter,
                  lossRatio: loss, rxBytes: rx, txBytes: tx)
    }
}

extension PropertyRecord {
    /// Property values as a dictionary.
    public var propertyDictionary: [String: ControlValue] {
        Dictionary(uniqueKeysWithValues: propertyValues.map { ($0.name, $0.value) })
    }
}

private func enumValue<E: RawRepresentable>(_ values: [String: ControlValue], _ key: String, _ fallback: E) -> E
where E.RawValue == String {
    values[key]?.string.flatMap(E.init(rawValue:)) ?? fallback
}

/// org.triglav.Manager1 on /org/triglav.
public struct ManagerStatus: PropertyRecord {
    public var state: TunnelState
    /// Name of the connected (or last) profile; empty when none.
    public var profile: String
    /// Server endpoint "host:port" of the profile; empty when none.
    public var server: String
    /// Name of the TUN device ("tg0"); empty when down.
    public var tunnelInterface: String
    /// Addresses on the TUN in CIDR notation.
    public var tunnelAddresses: [String]
    /// Name of the active packet scheduler (writable).
    public var scheduler: String
    public var txBytes: UInt64
    public var rxBytes: UInt64
    /// Uplink ids; the bus adaptor fills this from `TriglavStatus.uplinks`, controllers may leave it empty.
    public var uplinks: [UInt32]
    public var version: String
    /// Why the client tunnel's addresses, routes or rules couldn't be applied (the kernel refused them; the
    /// daemon retries, and the tunnel's traffic is blocked meanwhile, `State` is `degraded`); "" otherwise.
    public var routingError: String
    /// Why the state is `connecting` with no tunnel yet: the start-time connection waits for its server name to
    /// resolve ("waiting for the server name (REASON), N failed attempts, retrying"); "" otherwise.
    public var stateReason: String
    /// The client tunnel's data-plane counters (drops, repairs, reordering, offloads) since it came up; empty when
    /// disconnected.
    public var counters: [NamedCounter]
    /// The resolvers on the TUN's link while connected (the profile's `[dns]`, else the server's offer); empty when
    /// DNS is left to the system.
    public var dnsServers: [String]
    /// Its domains: search domains, `~name` routing-only ones, `~.` when every query goes to `dnsServers`.
    public var dnsDomains: [String]
    /// Why `dnsServers` are not in systemd-resolved (not running, refused); "" when they are or there are none.
    public var dnsError: String
    /// Where `dnsServers` come from: "profile" (its `[dns]`), "server" (the server's `[server.dns]` offer), or "".
    public var dnsSource: String
    /// Which of the system's resolvers took them: "systemd-resolved", "resolvconf" or "/etc/resolv.conf"; "" while
    /// none has (none wanted, or `dnsError`).
    public var dnsResolver: String
    /// The TUN's current MTU (it follows the uplinks' path MTUs); 0 when disconnected.
    public var tunnelMTU: UInt32

    public init(state: TunnelState = .disconnected, profile: String = "", server: String = "", tunnelInterface: String = "",
                tunnelAddresses: [String] = [], scheduler: String = "", txBytes: UInt64 = 0, rxBytes: UInt64 = 0,
                uplinks: [UInt32] = [], version: String = "", routingError: String = "", stateReason: String = "",
                counters: [NamedCounter] = [], dnsServers: [String] = [], dnsDomains: [String] = [], dnsError: String = "",
                dnsSource: String = "", dnsResolver: String = "", tunnelMTU: UInt32 = 0) {
        self.tunnelMTU = tunnelMTU
        self.dnsSource = dnsSource
        self.dnsResolver = dnsResolver
        self.counters = counters
        self.dnsServers = dnsServers
        self.dnsDomains = dnsDomains
        self.dnsError = dnsError
        self.routingError = routingError
        self.stateReason = stateReason
        self.state = state
        self.profile = profile
        self.server = server
        self.tunnelInterface = tunnelInterface
        self.tunnelAddresses = tunnelAddresses
        self.scheduler = scheduler
        self.txBytes = txBytes
        self.rxBytes = rxBytes
        self.uplinks = uplinks
        self.version = version
    }

    public static let propertySpecs: [PropertySpec] = [
        PropertySpec("State", "s"), PropertySpec("Profile", "s"), PropertySpec("Server", "s"),
        PropertySpec("TunnelInterface", "s"), PropertySpec("TunnelAddresses", "as"),
        PropertySpec("Scheduler", "s", writable: true),
        PropertySpec("TxBytes", "t", rateLimited: true), PropertySpec("RxBytes", "t", rateLimited: true),
        PropertySpec("Uplinks", "ao"), PropertySpec("Version", "s"), PropertySpec("RoutingError", "s"),
        PropertySpec("StateReason", "s"), PropertySpec("Counters", "a(st)", rateLimited: true),
        PropertySpec("DNSServers", "as"), PropertySpec("DNSDomains", "as"), PropertySpec("DNSError", "s"),
        PropertySpec("DNSSource", "s"), PropertySpec("DNSResolver", "s"), PropertySpec("TunnelMTU", "u"),
    ]

    public var propertyValues: [(name: String, value: ControlValue)] {
        [("State", .string(state.rawValue)), ("Profile", .string(profile)), ("Server", .string(server)),
         ("TunnelInterface", .string(tunnelInterface)), ("TunnelAddresses", .strings(tunnelAddresses)),
         ("Scheduler", .string(scheduler)), ("TxBytes", .uint64(txBytes)), ("RxBytes", .uint64(rxBytes)),
         ("Uplinks", .objectPaths(uplinks.map(TriglavBus.uplinkPath))), ("Version", .string(version)),
         ("RoutingError", .string(routingError)), ("StateReason", .string(stateReason)),
         ("Counters", NamedCounter.value(counters)), ("DNSServers", .strings(dnsServers)),
         ("DNSDomains", .strings(dnsDomains)), ("DNSError", .string(dnsError)), ("DNSSource", .string(dnsSource)),
         ("DNSResolver", .string(dnsResolver)), ("TunnelMTU", .uint32(tunnelMTU))]
    }

    public init(propertyValues v: [String: ControlValue]) {
        self.init(state: enumValue(v, "State", TunnelState.disconnected), profile: v["Profile"]?.string ?? "",
                  server: v["Server"]?.string ?? "", tunnelInterface: v["TunnelInterface"]?.string ?? "",
                  tunnelAddresses: v["TunnelAddresses"]?.strings ?? [], scheduler: v["Scheduler"]?.string ?? "",
                  txBytes: v["TxBytes"]?.uint64 ?? 0, rxBytes: v["RxBytes"]?.uint64 ?? 0,
                  uplinks: (v["Uplinks"]?.strings ?? []).compactMap(TriglavBus.uplinkID(fromPath:)),
                  version: v["Version"]?.string ?? "", routingError: v["RoutingError"]?.string ?? "",
                  stateReason: v["StateReason"]?.string ?? "", counters: NamedCounter.list(v["Counters"]),
                  dnsServers: v["DNSServers"]?.strings ?? [], dnsDomains: v["DNSDomains"]?.strings ?? [],
                  dnsError: v["DNSError"]?.string ?? "", dnsSource: v["DNSSource"]?.string ?? "",
                  dnsResolver: v["DNSResolver"]?.string ?? "", tunnelMTU: v["TunnelMTU"]?.uint32 ?? 0)
    }
}

/// org.triglav.Uplink1 on /org/triglav/uplink/<id>.
public struct UplinkStatus: PropertyRecord, Identifiable {
    /// Stable for the uplink's lifetime; never reused while the daemon runs.
    public var id: UInt32
    public var interface: String
    public var kind: UplinkKind
    public var origin: UplinkOrigin
    public var state: UplinkState
    public var tier: UplinkTier
    public var metered: Bool
    public var enabled: Bool
    public var rttUsec: UInt64
    public var jitterUsec: UInt64
    /// 0…1
    public var lossRatio: Double
    /// The engine's estimate of what this host can send on the uplink, bit/s (on a client: the upload
    /// direction; the configured initial 10 Mbit/s until sending has measured more).
    public var capacityBps: UInt64
    /// What arrived on the uplink during the last second, bit/s (on a client: the download direction, measured).
    public var rxRateBps: UInt64
    public var txBytes: UInt64
    public var rxBytes: UInt64
    /// Local address used for the tunnel ("192.0.2.7"); empty when none.
    public var localAddress: String
    public var transport: UplinkTransport
    /// False when the daemon found no route to the server through this interface: it can't carry the tunnel
    /// until one appears (`triglav uplinks` shows `no-route`). True otherwise, also while not yet known.
    public var routeToServer: Bool
    /// Where the server sees this uplink's packets come from ("203.0.113.7:40312"), as it reports after every
    /// handshake and idle keepalive; empty before the first report.
    public var publicEndpoint: String
    /// Whether that differs from the uplink's own address or port: a NAT (or a firewall's port translation) on the
    /// way. False while `publicEndpoint` is empty.
    public var behindNAT: Bool
    /// The path MTU the tunnel counts for the uplink (IP bytes; 0 while unknown): the kernel's, or less when the
    /// client's probes found a hop that drops larger packets without ICMP (`pathMTUBlackhole`).
    public var pathMTU: UInt32
    public var pathMTUBlackhole: Bool
    /// Datagrams its socket sent in UDP GSO messages and received in UDP GRO runs this connection (0: no offload).
    public var gsoDatagrams: UInt64
    public var groDatagrams: UInt64

    public init(id: UInt32, interface: String, kind: UplinkKind = .other, origin: UplinkOrigin = .auto,
                state: UplinkState = .down, tier: UplinkTier = .primary, metered: Bool = false, enabled: Bool = true,
                rttUsec: UInt64 = 0, jitterUsec: UInt64 = 0, lossRatio: Double = 0, capacityBps: UInt64 = 0,
                txBytes: UInt64 = 0, rxBytes: UInt64 = 0, localAddress: String = "", transport: UplinkTransport = .udp,
                routeToServer: Bool = true, rxRateBps: UInt64 = 0, publicEndpoint: String = "", behindNAT: Bool = false,
                pathMTU: UInt32 = 0, pathMTUBlackhole: Bool = false, gsoDatagrams: UInt64 = 0, groDatagrams: UInt64 = 0) {
        self.gsoDatagrams = gsoDatagrams
        self.groDatagrams = groDatagrams
        self.pathMTU = pathMTU
        self.pathMTUBlackhole = pathMTUBlackhole
        self.publicEndpoint = publicEndpoint
        self.behindNAT = behindNAT
        self.id = id
        self.interface = interface
        self.kind = kind
        self.origin = origin
        self.state = state
        self.tier = tier
        self.metered = metered
        self.enabled = enabled
        self.rttUsec = rttUsec
        self.jitterUsec = jitterUsec
        self.lossRatio = lossRatio
        self.capacityBps = capacityBps
        self.txBytes = txBytes
        self.rxBytes = rxBytes
        self.localAddress = localAddress
        self.transport = transport
        self.routeToServer = routeToServer
        self.rxRateBps = rxRateBps
    }

    public static let propertySpecs: [PropertySpec] = [
        PropertySpec("Interface", "s"), PropertySpec("Kind", "s"), PropertySpec("Origin", "s"), PropertySpec("State", "s"),
        PropertySpec("Tier", "s", writable: true), PropertySpec("Metered", "b", writable: true),
        PropertySpec("Enabled", "b", writable: true),
        PropertySpec("RttUsec", "t", rateLimited: true), PropertySpec("JitterUsec", "t", rateLimited: true),
        PropertySpec("LossRatio", "d", rateLimited: true), PropertySpec("CapacityBps", "t", rateLimited: true),
        PropertySpec("RxRateBps", "t", rateLimited: true),
        PropertySpec("TxBytes", "t", rateLimited: true), PropertySpec("RxBytes", "t", rateLimited: true),
        PropertySpec("LocalAddress", "s"), PropertySpec("Transport", "s", writable: true), PropertySpec("RouteToServer", "b"),
        PropertySpec("PublicEndpoint", "s"), PropertySpec("BehindNAT", "b"), PropertySpec("PathMTU", "u"),
        PropertySpec("PathMTUBlackhole", "b"),
        PropertySpec("GSODatagrams", "t", rateLimited: true), PropertySpec("GRODatagrams", "t", rateLimited: true),
    ]

    public var propertyValues: [(name: String, value: ControlValue)] {
        [("Interface", .string(interface)), ("Kind", .string(kind.rawValue)), ("Origin", .string(origin.rawValue)),
         ("State", .string(state.rawValue)), ("Tier", .string(tier.rawValue)), ("Metered", .boolean(metered)),
         ("Enabled", .boolean(enabled)), ("RttUsec", .uint64(rttUsec)), ("JitterUsec", .uint64(jitterUsec)),
         ("LossRatio", .double(lossRatio)), ("CapacityBps", .uint64(capacityBps)), ("RxRateBps", .uint64(rxRateBps)),
         ("TxBytes", .uint64(txBytes)),
         ("RxBytes", .uint64(rxBytes)), ("LocalAddress", .string(localAddress)), ("Transport", .string(transport.rawValue)),
         ("RouteToServer", .boolean(routeToServer)), ("PublicEndpoint", .string(publicEndpoint)),
         ("BehindNAT", .boolean(behindNAT)), ("PathMTU", .uint32(pathMTU)), ("PathMTUBlackhole", .boolean(pathMTUBlackhole)),
         ("GSODatagrams", .uint64(gsoDatagrams)), ("GRODatagrams", .uint64(groDatagrams))]
    }

    /// `id` is not a property (it is in the object path); it is 0 here unless set afterwards.
    public init(propertyValues v: [String: ControlValue]) {
        self.init(id: 0, interface: v["Interface"]?.string ?? "", kind: enumValue(v, "Kind", UplinkKind.other),
                  origin: enumValue(v, "Origin", UplinkOrigin.auto), state: enumValue(v, "State", UplinkState.down),
                  tier: enumValue(v, "Tier", UplinkTier.primary), metered: v["Metered"]?.boolean ?? false,
                  enabled: v["Enabled"]?.boolean ?? true, rttUsec: v["RttUsec"]?.uint64 ?? 0,
                  jitterUsec: v["JitterUsec"]?.uint64 ?? 0, lossRatio: v["LossRatio"]?.double ?? 0,
                  capacityBps: v["CapacityBps"]?.uint64 ?? 0, txBytes: v["TxBytes"]?.uint64 ?? 0,
                  rxBytes: v["RxBytes"]?.uint64 ?? 0, localAddress: v["LocalAddress"]?.string ?? "",
                  transport: enumValue(v, "Transport", UplinkTransport.udp), routeToServer: v["RouteToServer"]?.boolean ?? true,
                  rxRateBps: v["RxRateBps"]?.uint64 ?? 0, publicEndpoint: v["PublicEndpoint"]?.string ?? "",
                  behindNAT: v["BehindNAT"]?.boolean ?? false, pathMTU: v["PathMTU"]?.uint32 ?? 0,
                  pathMTUBlackhole: v["PathMTUBlackhole"]?.boolean ?? false, gsoDatagrams: v["GSODatagrams"]?.uint64 ?? 0,
                  groDatagrams: v["GRODatagrams"]?.uint64 ?? 0)
    }
}

/// org.triglav.Server1 on /org/triglav (always present; `Enabled` false when not in server role).
public struct ServerStatus: PropertyRecord {
    public var enabled: Bool
    /// "0.0.0.0:51820"; empty when not listening.
    public var listenAddress: String
    /// Base64 public key clients pin; empty when not in server role.
    public var publicKey: String
    /// Client ids; filled by the bus adaptor from `TriglavStatus.clients`.
    public var clients: [UInt32]
    public var txBytes: UInt64
    public var rxBytes: UInt64
    /// The server tunnel's data-plane counters (drops, repairs, handshakes, offloads) since it started; empty when
    /// not running.
    public var counters: [NamedCounter]
    /// What `[server.dns]` offers every client: its servers, then its domains; empty when it offers none.
    public var offeredDNS: [String]

    public init(enabled: Bool = false, listenAddress: String = "", publicKey: String = "", clients: [UInt32] = [],
                txBytes: UInt64 = 0, rxBytes: UInt64 = 0, counters: [NamedCounter] = [], offeredDNS: [String] = []) {
        self.counters = counters
        self.offeredDNS = offeredDNS
        self.enabled = enabled
        self.listenAddress = listenAddress
        self.publicKey = publicKey
        self.clients = clients
        self.txBytes = txBytes
        self.rxBytes = rxBytes
    }

    public static let propertySpecs: [PropertySpec] = [
        PropertySpec("Enabled", "b"), PropertySpec("ListenAddress", "s"), PropertySpec("PublicKey", "s"),
        PropertySpec("Clients", "ao"),
        PropertySpec("TxBytes", "t", rateLimited: true), PropertySpec("RxBytes", "t", rateLimited: true),
        PropertySpec("Counters", "a(st)", rateLimited: true), PropertySpec("OfferedDNS", "as"),
    ]

    public var propertyValues: [(name: String, value: ControlValue)] {
        [("Enabled", .boolean(enabled)), ("ListenAddress", .string(listenAddress)), ("PublicKey", .string(publicKey)),
         ("Clients", .objectPaths(clients.map(TriglavBus.clientPath))),
         ("TxBytes", .uint64(txBytes)), ("RxBytes", .uint64(rxBytes)), ("Counters", NamedCounter.value(counters)),
         ("OfferedDNS", .strings(offeredDNS))]
    }

    public init(propertyValues v: [String: ControlValue]) {
        self.init(enabled: v["Enabled"]?.boolean ?? false, listenAddress: v["ListenAddress"]?.string ?? "",
                  publicKey: v["PublicKey"]?.string ?? "",
                  clients: (v["Clients"]?.strings ?? []).compactMap(TriglavBus.clientID(fromPath:)),
                  txBytes: v["TxBytes"]?.uint64 ?? 0, rxBytes: v["RxBytes"]?.uint64 ?? 0,
                  counters: NamedCounter.list(v["Counters"]), offeredDNS: v["OfferedDNS"]?.strings ?? [])
    }
}

/// One data-plane counter of Manager1.Counters / Server1.Counters (`a(st)`): a stable snake_case name and its count.
/// A list rather than one property each, so that a daemon can add counters without changing the interface.
public struct NamedCounter: Sendable, Equatable {
    public var name: String
    public var value: UInt64

    public init(_ name: String, _ value: UInt64) {
        self.name = name
        self.value = value
    }

    static func value(_ counters: [NamedCounter]) -> ControlValue {
        .records(fields: "st", counters.map { [.string($0.name), .uint64($0.value)] })
    }

    /// The entries of an `a(st)` value; others (another structure) are left out.
    public static func list(_ value: ControlValue?) -> [NamedCounter] {
        (value?.records ?? []).compactMap { record in
            guard record.count == 2, let name = record[0].string, case .uint64(let count) = record[1] else { return nil }
            return NamedCounter(name, count)
        }
    }
}

/// org.triglav.Client1 on /org/triglav/client/<id> (server role).
public struct ClientStatus: PropertyRecord, Identifiable {
    public var id: UInt32
    public var publicKey: String
    /// Remote endpoint of the most recent path, "203.0.113.5:40000".
    public var endpoint: String
    public var tunnelAddresses: [String]
    public var state: ClientState
    /// Number of live paths (the client's uplinks).
    public var paths: UInt32
    public var rttUsec: UInt64
    public var txBytes: UInt64
    public var rxBytes: UInt64
    /// CLOCK_REALTIME microseconds of the handshake.
    public var connectedSinceUsec: UInt64
    /// Each confirmed path (the client's uplinks the server engine knows), by uplink number.
    public var pathDetails: [ClientPathStatus]

    public init(id: UInt32, publicKey: String = "", endpoint: String = "", tunnelAddresses: [String] = [],
                state: ClientState = .handshaking, paths: UInt32 = 0, rttUsec: UInt64 = 0, txBytes: UInt64 = 0,
                rxBytes: UInt64 = 0, connectedSinceUsec: UInt64 = 0, pathDetails: [ClientPathStatus] = []) {
        self.id = id
        self.publicKey = publicKey
        self.endpoint = endpoint
        self.tunnelAddresses = tunnelAddresses
        self.state = state
        self.paths = paths
        self.rttUsec = rttUsec
        self.txBytes = txBytes
        self.rxBytes = rxBytes
        self.connectedSinceUsec = connectedSinceUsec
        self.pathDetails = pathDetails
    }

    public static let propertySpecs: [PropertySpec] = [
        PropertySpec("PublicKey", "s"), PropertySpec("Endpoint", "s"), PropertySpec("TunnelAddresses", "as"),
        PropertySpec("State", "s"), PropertySpec("Paths", "u"),
        PropertySpec("RttUsec", "t", rateLimited: true), PropertySpec("TxBytes", "t", rateLimited: true),
        PropertySpec("RxBytes", "t", rateLimited: true), PropertySpec("ConnectedSinceUsec", "t"),
        PropertySpec("PathDetails", "a(\(ClientPathStatus.fields))", rateLimited: true),
    ]

    public var propertyValues: [(name: String, value: ControlValue)] {
        [("PublicKey", .string(publicKey)), ("Endpoint", .string(endpoint)), ("TunnelAddresses", .strings(tunnelAddresses)),
         ("State", .string(state.rawValue)), ("Paths", .uint32(paths)), ("RttUsec", .uint64(rttUsec)),
         ("TxBytes", .uint64(txBytes)), ("RxBytes", .uint64(rxBytes)), ("ConnectedSinceUsec", .uint64(connectedSinceUsec)),
         ("PathDetails", .records(fields: ClientPathStatus.fields, pathDetails.map(\.record)))]
    }

    public init(propertyValues v: [String: ControlValue]) {
        self.init(id: 0, publicKey: v["PublicKey"]?.string ?? "", endpoint: v["Endpoint"]?.string ?? "",
                  tunnelAddresses: v["TunnelAddresses"]?.strings ?? [], state: enumValue(v, "State", ClientState.handshaking),
                  paths: v["Paths"]?.uint32 ?? 0, rttUsec: v["RttUsec"]?.uint64 ?? 0, txBytes: v["TxBytes"]?.uint64 ?? 0,
                  rxBytes: v["RxBytes"]?.uint64 ?? 0, connectedSinceUsec: v["ConnectedSinceUsec"]?.uint64 ?? 0,
                  pathDetails: v["PathDetails"]?.records?.compactMap(ClientPathStatus.init(record:)) ?? [])
    }
}

/// Everything the daemon exposes, as one snapshot. The controller produces it; the bus adaptor
/// diffs consecutive snapshots into exported objects and PropertiesChanged signals.
public struct TriglavStatus: Sendable, Equatable {
    public var manager: ManagerStatus
    public var uplinks: [UplinkStatus]
    public var server: ServerStatus
    public var clients: [ClientStatus]

    public init(manager: ManagerStatus = ManagerStatus(), uplinks: [UplinkStatus] = [], server: ServerStatus = ServerStatus(),
                clients: [ClientStatus] = []) {
        self.manager = manager
        self.uplinks = uplinks
        self.server = server
        self.clients = clients
    }

    /// Copies uplink and client ids into the manager/server lists (what the bus shows).
    public var normalized: TriglavStatus {
        var copy = self
        copy.manager.uplinks = uplinks.map(\.id).sorted()
        copy.server.clients = clients.map(\.id).sorted()
        return copy
    }
}
