public import Logging
public import TriglavConfig
public import TriglavCore
public import TriglavCrypto
public import TriglavDataPlane
public import TriglavMultipath
public import TriglavNetlink
public import struct TriglavProtocol.DNSOffer

/// A client tunnel's own counters, from its statistics (monotonic while the tunnel lives).
public struct ClientTunnelCounters: Sendable, Equatable {
    /// Packets read from the TUN device that no uplink could carry.
    public var droppedNoUplink: UInt64 = 0
    /// Packets sent again because the uplink they were in flight on went down.
    public var resentPackets: UInt64 = 0
    /// Packets taken from the TUN device, dropped ones included.
    public var readPackets: UInt64 = 0
    /// TCP SYNs and SYN-ACKs whose MSS the client clamped to the tunnel's MTU, both directions.
    public var mssClamped: UInt64 = 0
    /// Packets the sender-side pacing queue dropped (its AQM, a full queue, or shed at its head).
    public var queueDrops: UInt64 = 0
    /// ECN-capable packets the pacing queue's AQM marked Congestion Experienced instead of dropping.
    public var congestionMarks: UInt64 = 0
    /// Received data frames whose outer ECN field changed their inner packet: CE from the path, or dropped (RFC 6040).
    public var ecnDecapsulation = ECNDecapsulationCounters()
    /// The server's resend requests this client answered, in sequences.
    public var requestedResends = RequestedResendCounters()
    /// The receiving reorder buffer's counters (what went to the TUN device, and what it skipped or asked for).
    public var reorder = ReorderStatistics()
    /// The TUN device's offloads: super-packets read and written (docs/DATAPLANE.md, "Offloads").
    public var tunOffload = TunOffloadCounters()

    public init() {}
}

/// What the client manager needs from a client tunnel: the `ClientTunnel` façade's lifecycle, uplink and
/// statistics calls, behind a protocol so the manager's state machine is tested with a fake (no root, no TUN).
public protocol ClientTunnelDriving: AnyObject, Sendable {
    func start() throws(TriglavDataPlaneError)
    func stop()
    /// Adds an uplink with its multipath policy (tier, metered), which the engine's schedulers honour, and how it
    /// reaches the server (UDP with the TCP fallback, or TCP only).
    @discardableResult
    func addUplink(interface: InterfaceName, policy: UplinkPolicy, transport: UplinkTransportMode) throws(TriglavDataPlaneError) -> UplinkID
    /// Changes an attached uplink's policy (Uplink1.Tier / Metered writes) without re-handshaking it.
    func setUplinkPolicy(interface: InterfaceName, policy: UplinkPolicy) throws(TriglavDataPlaneError)
    func removeUplink(interface: InterfaceName) throws(TriglavDataPlaneError)
    /// The system reports the attached uplink's link down (carrier lost, interface gone) or up again: the engine
    /// takes it out of service at once, or probes it again at once (`ClientTunnel.setSystemLink`).
    func setSystemLink(interface: InterfaceName, isUp: Bool) throws(TriglavDataPlaneError)
    func setScheduler(_ kind: TriglavDataPlane.SchedulerKind)
    func snapshot() -> ClientTunnelSnapshot
}

/// What the manager reads from a client tunnel's statistics: the assignment and, per uplink, its
/// session state and counters.
public struct ClientTunnelSnapshot: Sendable, Equatable {
    public struct Uplink: Sendable, Equatable {
        public enum SessionState: Sendable, Equatable {
            /// The interface is missing or can't carry a socket yet.
            case waiting
            case handshaking
            case established
        }

        public var interface: String
        public var state: SessionState
        public var transmittedBytes: UInt64
        public var receivedBytes: UInt64
        public var smoothedRTT: Duration?
        /// Mean deviation between consecutive RTT samples; nil before the first samples.
        public var jitter: Duration?
        /// Recent loss, 0...1 (0 while the engine has too few samples).
        public var lossRatio: Double
        /// Estimated delivery rate; 0 when unknown.
        public var capacityBitsPerSecond: UInt64
        /// "udp", or "tcp" while the uplink uses the TCP fallback.
        public var transport: String
        /// The multipath engine's view of an established uplink's path; nil while not established.
        public var pathState: TriglavMultipath.UplinkState?
        /// Whether a route to the server leads through the interface: false when the data plane looked and found
        /// none (the uplink can't connect until one appears); nil while unknown. True once established.
        public var routeToServer: Bool?
        /// Inner bytes received per second over the last second, as bits/s (the download direction, measured).
        public var receiveRateBitsPerSecond: UInt64
        /// What the multipath engine has counted as sent and received on the uplink since it joined the tunnel
        /// (sealed data packets: the datagrams without UDP/IP headers), cumulative across the session resets that
        /// take it out of the engine; the sent count is the unit of its data cap allowance.
        public var engineTransmittedBytes: UInt64 = 0
        public var engineReceivedBytes: UInt64 = 0
        /// The data plane's datagram counts of the uplink (the metrics endpoint shows them; the bus does not).
        public var transmittedPackets: UInt64 = 0
        public var receivedPackets: UInt64 = 0
        /// Handshakes the uplink started, and sends the kernel refused.
        public var handshakes: UInt64 = 0
        public var sendErrors: UInt64 = 0
        /// Datagrams sent in UDP GSO messages, and received in UDP_GRO runs, in the current connection.
        public var segmentedDatagrams: UInt64 = 0
        public var coalescedDatagrams: UInt64 = 0
        /// The engine's minimum RTT over its window (the path's propagation delay); nil while not measured.
        public var minimumRTT: Duration?
        /// Where the server last saw the uplink's packets come from, and the socket's own endpoint then
        /// (`UplinkStatus.publicEndpoint`); nil before the first report.
        public var publicEndpoint: IPEndpoint?
        public var localEndpoint: IPEndpoint?
        /// The path MTU the tunnel counts for the uplink, and whether probing lowered it (`UplinkStatus.pathMTU`).
        public var pathMTU: Int?
        public var pathMTUBlackhole = false

        /// The bytes that count against a data cap: always the engine's counts (never the data plane's, which
        /// are another unit), so that when the engine stops at its allowance the daemon's count reached the cap.
        public var dataCapTransmittedBytes: UInt64 { engineTransmittedBytes }
        public var dataCapReceivedBytes: UInt64 { engineReceivedBytes }

        public init(interface: String, state: SessionState, transmittedBytes: UInt64 = 0, receivedBytes: UInt64 = 0,
                    smoothedRTT: Duration? = nil, jitter: Duration? = nil, lossRatio: Double = 0,
                    capacityBitsPerSecond: UInt64 = 0, transport: String = "udp",
                    pathState: TriglavMultipath.UplinkState? = nil, routeToServer: Bool? = nil,
                    receiveRateBitsPerSecond: UInt64 = 0) {
            self.pathState = pathState
            self.receiveRateBitsPerSecond = receiveRateBitsPerSecond
            self.routeToServer = routeToServer
            self.interface = interface
            self.state = state
            self.transmittedBytes = transmittedBytes
            self.receivedBytes = receivedBytes
            self.smoothedRTT = smoothedRTT
            self.jitter = jitter
            self.lossRatio = lossRatio
            self.capacityBitsPerSecond = capacityBitsPerSecond
            self.transport = transport
        }
    }

    public var assignment: TunnelAddresses?
    public var uplinks: [Uplink]
    /// Why the kernel refused the assigned addresses, routes or rules (the data plane retries; the tunnel's
    /// traffic stays blocked meanwhile); nil while they are applied or no assignment came yet.
    public var routingFailure: String?
    /// Tunnel-wide counters of the data plane (the metrics endpoint shows them; the bus does not).
    public var counters = ClientTunnelCounters()
    /// The TUN's current MTU (0 until the data plane set it).
    public var tunnelMTU = 0
    /// The resolvers and domains the server offers (its `[server.dns]`); nil while it offered none.
    public var dnsOffer: DNSOffer?

    public init(assignment: TunnelAddresses? = nil, uplinks: [Uplink] = [], routingFailure: String? = nil) {
        self.assignment = assignment
        self.uplinks = uplinks
        self.routingFailure = routingFailure
    }
}

extension ClientTunnel: ClientTunnelDriving {
    /// The engine's loss percentage as a 0...1 ratio (Uplink1.LossRatio); 0 while unknown.
    static func lossRatio(percent: Double?) -> Double {
        guard let percent, percent.isFinite else { return 0 }
        return min(max(percent / 100, 0), 1)
    }

    public func snapshot() -> ClientTunnelSnapshot {
        let statistics = statistics()
        var result = ClientTunnelSnapshot(assignment: statistics.addresses, uplinks: statistics.uplinks.map { uplink in
            let state: ClientTunnelSnapshot.Uplink.SessionState = switch uplink.state {
            case "established": .established
            case "no-socket": .waiting
            default: .handshaking
            }
            let path = uplink.path
            var snapshot = ClientTunnelSnapshot.Uplink(
                interface: uplink.interface.rawValue, state: state, transmittedBytes: uplink.transmittedBytes,
                receivedBytes: uplink.receivedBytes, smoothedRTT: uplink.smoothedRTT,
                jitter: path.flatMap { $0.jitter > 0 ? .nanoseconds(Int64(clamping: $0.jitter)) : nil },
                lossRatio: Self.lossRatio(percent: path?.lossPercent),
                capacityBitsPerSecond: path?.capacityBitsPerSecond ?? 0, transport: uplink.transport,
                pathState: state == .established ? path?.state : nil, routeToServer: uplink.routeToServer,
                receiveRateBitsPerSecond: uplink.receiveRateBitsPerSecond)
            snapshot.engineTransmittedBytes = uplink.engineTransmittedBytes
            snapshot.engineReceivedBytes = uplink.engineReceivedBytes
            snapshot.transmittedPackets = uplink.transmittedPackets
            snapshot.receivedPackets = uplink.receivedPackets
            snapshot.handshakes = uplink.handshakes
            snapshot.sendErrors = uplink.sendErrors
            snapshot.segmentedDatagrams = uplink.segmentedDatagrams
            snapshot.coalescedDatagrams = uplink.coalescedDatagrams
            snapshot.minimumRTT = path.flatMap { $0.minimumRTT > 0 ? .nanoseconds(Int64(clamping: $0.minimumRTT)) : nil }
            snapshot.publicEndpoint = uplink.publicEndpoint
            snapshot.localEndpoint = uplink.localEndpoint
            snapshot.pathMTU = uplink.pathMTU
            snapshot.pathMTUBlackhole = uplink.pathMTUBlackhole
            return snapshot
        }, routingFailure: statistics.routingFailure)
        result.tunnelMTU = statistics.tunnelMTU
        result.dnsOffer = statistics.dnsOffer
        result.counters.droppedNoUplink = statistics.droppedNoUplink
        result.counters.resentPackets = statistics.resentPackets
        result.counters.readPackets = statistics.readPackets
        result.counters.mssClamped = statistics.mssClamped
        result.counters.queueDrops = statistics.queueDrops
        result.counters.congestionMarks = statistics.congestionMarks
        result.counters.ecnDecapsulation = statistics.ecnDecapsulation
        result.counters.requestedResends = statistics.requestedResends
        result.counters.reorder = statistics.reorder
        result.counters.tunOffload = statistics.tunOffload
        return result
    }
}

/// What the server manager needs from a server tunnel (`ServerTunnel`).
public protocol ServerTunnelDriving: AnyObject, Sendable {
    func start() throws(TriglavDataPlaneError)
    func stop()
    func snapshot() -> ServerTunnelSnapshot
    func listeningEndpoints() throws(TriglavDataPlaneError) -> [IPEndpoint]
    /// Drops the client's tunnel (sessions, endpoints) after telling it so; false when it has none.
    @discardableResult
    func disconnectClient(publicKey: IdentityPublicKey) -> Bool
}

/// What the server manager reads from a server tunnel's statistics.
public struct ServerTunnelSnapshot: Sendable, Equatable {
    public struct Client: Sendable, Equatable {
        /// Base64, as in the configuration.
        public var publicKey: String
        public var assignment: TunnelAddresses
        public var endpoints: [IPEndpoint]
        public var receivedPackets: UInt64
        public var transmittedPackets: UInt64
        /// Inner (IP packet) bytes from and to the client.
        public var receivedBytes: UInt64
        public var transmittedBytes: UInt64
        /// Smallest smoothed RTT of the client's paths; nil before the first probe reply.
        public var smoothedRTT: Duration?
        /// Each confirmed path (client uplink) as the server engine sees it; empty before the first is confirmed.
        public var paths: [ServerTunnelStatistics.Path]
        public var pathStates: [TriglavMultipath.UplinkState] { paths.map(\.statistics.state) }

        public init(publicKey: String, assignment: TunnelAddresses, endpoints: [IPEndpoint] = [],
                    receivedPackets: UInt64 = 0, transmittedPackets: UInt64 = 0, receivedBytes: UInt64 = 0,
                    transmittedBytes: UInt64 = 0, smoothedRTT: Duration? = nil,
                    paths: [ServerTunnelStatistics.Path] = []) {
            self.paths = paths
            self.publicKey = publicKey
            self.assignment = assignment
            self.endpoints = endpoints
            self.receivedPackets = receivedPackets
            self.transmittedPackets = transmittedPackets
            self.receivedBytes = receivedBytes
            self.transmittedBytes = transmittedBytes
            self.smoothedRTT = smoothedRTT
        }
    }

    public var clients: [Client]
    public var rejectedHandshakes: UInt64
    /// The server tunnel's other counters (the metrics endpoint shows them; the bus does not).
    public var counters = ServerTunnelCounters()

    public init(clients: [Client] = [], rejectedHandshakes: UInt64 = 0) {
        self.clients = clients
        self.rejectedHandshakes = rejectedHandshakes
    }
}

/// A server tunnel's counters besides the per-client ones (monotonic while the tunnel lives).
public struct ServerTunnelCounters: Sendable, Equatable {
    /// Packets from the TUN device addressed to no connected client.
    public var droppedUnknownDestination: UInt64 = 0
    /// Packets sent again because the client uplink they were in flight on went down.
    public var resentPackets: UInt64 = 0
    /// Uplink sessions refused because their client already had the most uplinks a tunnel may have.
    public var refusedUplinks: UInt64 = 0
    /// Handshakes answered: a client's new tunnel, a further uplink, or a rekey.
    public var answeredHandshakes: UInt64 = 0
    /// Packets the sender-side pacing queues dropped (the AQM, a full queue, or shed at the head).
    public var queueDrops: UInt64 = 0
    /// ECN-capable packets the pacing queue's AQM marked Congestion Experienced instead of dropping.
    public var congestionMarks: UInt64 = 0
    /// Received data frames whose outer ECN field changed their inner packet: CE from the path, or dropped (RFC 6040).
    public var ecnDecapsulation = ECNDecapsulationCounters()
    /// The clients' resend requests the server answered, in sequences, departed clients' included.
    public var requestedResends = RequestedResendCounters()
    /// The TUN device's offloads, and datagrams the listeners sent in UDP GSO messages (docs/DATAPLANE.md, "Offloads").
    public var tunOffload = TunOffloadCounters()
    public var segmentedDatagrams: UInt64 = 0
    /// Datagrams the listeners received in UDP_GRO runs.
    public var coalescedDatagrams: UInt64 = 0

    public init() {}
}

extension ServerTunnel: ServerTunnelDriving {
    public func snapshot() -> ServerTunnelSnapshot {
        let statistics = statistics()
        var result = ServerTunnelSnapshot(clients: statistics.clients.map {
            ServerTunnelSnapshot.Client(publicKey: $0.publicKey, assignment: $0.addresses, endpoints: $0.endpoints,
                                        receivedPackets: $0.receivedPackets, transmittedPackets: $0.transmittedPackets,
                                        receivedBytes: $0.receivedBytes, transmittedBytes: $0.transmittedBytes,
                                        smoothedRTT: $0.smoothedRTT.map { .nanoseconds(Int64(clamping: $0)) },
                                        paths: $0.paths)
        }, rejectedHandshakes: statistics.rejectedHandshakes)
        result.counters.droppedUnknownDestination = statistics.droppedUnknownDestination
        result.counters.resentPackets = statistics.resentPackets
        result.counters.refusedUplinks = statistics.refusedUplinks
        result.counters.answeredHandshakes = statistics.answeredHandshakes
        result.counters.queueDrops = statistics.queueDrops
        result.counters.congestionMarks = statistics.congestionMarks
        result.counters.ecnDecapsulation = statistics.ecnDecapsulation
        result.counters.requestedResends = statistics.requestedResends
        result.counters.tunOffload = statistics.tunOffload
        result.counters.segmentedDatagrams = statistics.segmentedDatagrams
        result.counters.coalescedDatagrams = statistics.coalescedDatagrams
        return result
    }
}

/// Where uplinks come from: the netlink-driven `UplinkDiscoveryService`, or a fake in tests.
public protocol UplinkSource: AnyObject, Sendable {
    /// Starts delivering events; one `.synchronized` follows the initial dump.
    func start(_ handler: @escaping @Sendable (DiscoveryEvent) -> Void) throws(NetlinkError)
    /// Applies a new policy (config reload); resulting events reach the handler before this returns.
    func updatePolicy(_ policy: DiscoveryPolicy)
    func stop()
}

extension UplinkDiscoveryService: UplinkSource {}

/// Everything a client connection is built from, resolved from the daemon configuration, the profile,
/// the Connect options and runtime overrides (in increasing precedence). Two plans that are equal need
/// no reconnect on reload.
public struct ClientTunnelPlan: Sendable, Equatable {
    public var profile: ProfileName
    /// The endpoint as written in the profile (may be a host name); `server` is what it resolved to.
    public var configuredEndpoint: RemoteEndpoint
    public var server: IPEndpoint
    public var serverKey: IdentityPublicKey
    public var privateKeyPath: String
    public var tunnelInterface: InterfaceName
    /// nil keeps the data plane's default MTU.
    public var mtu: Int?
    public var routing: ClientRouting
    public var scheduler: TriglavDataPlane.SchedulerKind
    /// SO_MARK of the uplink sockets (the tunnel rule exempts it).
    public var firewallMark: UInt32
    /// `[routing] table`, `rule_priority` and `exclude` (see `PolicyRouting`).
    public var routingTable: UInt32
    public var rulePriority: UInt32
    public var exclude: [IPPrefix]
    public var keepaliveInterval: Duration
    /// How long an uplink on its TCP fallback waits before trying UDP again (`[uplinks] udp_retry_s`).
    public var udpRetryInterval: Duration
    public var probeInterval: Duration
    public var reorderHold: Duration
    /// `redundant` scheduler: copies per packet on the best uplinks (nil: every usable uplink).
    public var redundantCopies: Int?
    /// `[multipath] resend_requests`: the client's receiver asks the server to resend lost packets.
    public var resendRequests: Bool
    /// `[multipath] pacing`: the client paces its uploads.
    public var pacing: Bool
    /// The profile's `[dns]` for the TUN's link (the manager hands it to systemd-resolved; the data plane ignores it).
    public var dns: LinkDNS?
    /// Whether the server's DNS offer goes to the link instead: the profile names no servers and doesn't say
    /// `from_server = false`.
    public var acceptsServerDNS: Bool

    public init(profile: ProfileName, configuredEndpoint: RemoteEndpoint, server: IPEndpoint,
                serverKey: IdentityPublicKey, privateKeyPath: String, tunnelInterface: InterfaceName,
                mtu: Int? = nil, routing: ClientRouting = .none, scheduler: TriglavDataPlane.SchedulerKind = .aggregate,
                firewallMark: UInt32 = ConfigDefaults.firewallMark, routingTable: UInt32 = ConfigDefaults.routeTable,
                rulePriority: UInt32 = ConfigDefaults.rulePriority, exclude: [IPPrefix] = [],
                keepaliveInterval: Duration = .seconds(25),
                probeInterval: Duration = .seconds(1), reorderHold: Duration = .milliseconds(30),
                redundantCopies: Int? = nil, udpRetryInterval: Duration = .seconds(120), resendRequests: Bool = true,
                pacing: Bool = true, dns: LinkDNS? = nil, acceptsServerDNS: Bool = false) {
        self.dns = dns
        self.acceptsServerDNS = acceptsServerDNS
        self.routingTable = routingTable
        self.rulePriority = rulePriority
        self.exclude = exclude
        self.profile = profile
        self.configuredEndpoint = configuredEndpoint
        self.server = server
        self.serverKey = serverKey
        self.privateKeyPath = privateKeyPath
        self.tunnelInterface = tunnelInterface
        self.mtu = mtu
        self.routing = routing
        self.scheduler = scheduler
        self.firewallMark = firewallMark
        self.keepaliveInterval = keepaliveInterval
        self.udpRetryInterval = udpRetryInterval
        self.probeInterval = probeInterval
        self.reorderHold = reorderHold
        self.redundantCopies = redundantCopies
        self.resendRequests = resendRequests
        self.pacing = pacing
    }
}

/// Builds client tunnels from plans. The live factory loads the private key each time, so a key
/// replaced on disk is picked up by the next connect or reload.
public protocol ClientTunnelFactory: Sendable {
    func makeTunnel(_ plan: ClientTunnelPlan) throws(TriglavDaemonError) -> any ClientTunnelDriving
    /// Removes policy rules and routes a crashed run left (found by their tag, whatever numbers it used).
    func removeLeftovers(_ routing: RoutingSettings) throws(TriglavDaemonError)
}

/// The server's tunnel as the configuration describes it.
public struct ServerTunnelPlan: Sendable, Equatable {
    public var privateKeyPath: String
    public var listen: [IPEndpoint]
    public var tunnelInterface: InterfaceName
    public var tunnelAddresses: [IPPrefix]
    public var clients: [AuthorizedClient]
    public var masquerade: Bool
    /// `[server.nat] outbound_interface`: the only interface masqueraded out of; nil: every one but the TUN.
    public var outboundInterface: InterfaceName?
    public var mtu: Int?
    /// `[server] heartbeat_interval_ms`: the server's own idle probe interval (a client may ask for less on an uplink).
    public var heartbeatInterval: Duration
    /// `[multipath] resend_requests`: the server's receiver (per client) asks for resends of lost upload packets.
    public var resendRequests: Bool
    /// `[multipath] pacing`: the server paces every client's downloads.
    public var pacing: Bool
    /// `[server.dns]` as the protocol offers it to every client; nil: none.
    public var dnsOffer: DNSOffer?

    public init(config: DaemonConfig) {
        let server = config.server ?? ServerSettings()
        privateKeyPath = config.privateKeyPath
        listen = server.listen
        tunnelInterface = config.tunnel.interface
        tunnelAddresses = [server.tunnelIPv4] + (server.tunnelIPv6.map { [$0] } ?? [])
        clients = server.clients
        masquerade = server.nat.enabled
        outboundInterface = server.nat.outboundInterface
        mtu = config.tunnel.mtu
        heartbeatInterval = server.heartbeatInterval
        resendRequests = config.multipath.resendRequests
        pacing = config.multipath.pacing
        dnsOffer = DNSOffer(servers: server.dns.servers, domains: server.dns.domains.map(\.description),
                            defaultRoute: server.dns.defaultRoute)
    }

    /// The addresses a client gets: its configured addresses with the length of the server's prefixes.
    public func assignment(of client: AuthorizedClient) -> TunnelAddresses? {
        func inPool(_ address: IPAddress?) -> IPPrefix? {
            address.flatMap { address in
                tunnelAddresses.first { $0.address.isIPv4 == address.isIPv4 }.flatMap { try? IPPrefix(address: address, length: $0.length) }
            }
        }
        return TunnelAddresses(ipv4: inPool(client.tunnelIPv4), ipv6: inPool(client.tunnelIPv6))
    }
}

public protocol ServerTunnelFactory: Sendable {
    func makeTunnel(_ plan: ServerTunnelPlan) throws(TriglavDaemonError) -> any ServerTunnelDriving
}

/// Builds real `ClientTunnel`s.
public struct LiveClientTunnelFactory: ClientTunnelFactory {
    private let logger: Logger

    public init(logger: Logger) { self.logger = logger }

    public func makeTunnel(_ plan: ClientTunnelPlan) throws(TriglavDaemonError) -> any ClientTunnelDriving {
        let identity: IdentityKey
        do { identity = try KeyFile.load(path: plan.privateKeyPath) } catch {
            throw .failed(operation: "loading the private key \(plan.privateKeyPath)",
                          reason: "\(error); create it with 'triglav keygen \(plan.privateKeyPath)'")
        }
        var configuration = ClientTunnelConfiguration(identity: identity, serverKey: plan.serverKey, server: plan.server,
                                                      tunnelInterface: plan.tunnelInterface)
        if let mtu = plan.mtu { configuration.mtu = mtu }
        configuration.routing = plan.routing
        configuration.scheduler = plan.scheduler
        configuration.firewallMark = plan.firewallMark
        configuration.policyRouting = PolicyRouting(table: plan.routingTable, rulePriority: plan.rulePriority, exclude: plan.exclude)
        configuration.keepaliveInterval = plan.keepaliveInterval
        configuration.udpRetryInterval = plan.udpRetryInterval
        configuration.probeInterval = plan.probeInterval
        configuration.reorderHold = plan.reorderHold
        configuration.multipath.redundantCopies = plan.redundantCopies
        // Off in the file wins; on leaves the data plane's default (TRIGLAV_RESEND_REQUESTS=0 can still turn it off).
        if !plan.resendRequests { configuration.multipath.requestsResends = false }
        if !plan.pacing { configuration.pacing = false }
        do { return try ClientTunnel(configuration: configuration, logger: logger) } catch {
            throw .failed(operation: "creating the client tunnel", reason: error.description)
        }
    }

    public func removeLeftovers(_ routing: RoutingSettings) throws(TriglavDaemonError) {
        let policy = PolicyRouting(table: routing.table, rulePriority: routing.rulePriority, exclude: routing.exclude)
        do { try policy.removeLeftovers(firewallMark: routing.firewallMark, logger: logger) } catch {
            throw .failed(operation: "removing leftover policy rules and routes", reason: error.description)
        }
    }
}

/// Builds real `ServerTunnel`s.
public struct LiveServerTunnelFactory: ServerTunnelFactory {
    private let logger: Logger

    public init(logger: Logger) { self.logger = logger }

    public func makeTunnel(_ plan: ServerTunnelPlan) throws(TriglavDaemonError) -> any ServerTunnelDriving {
        let identity: IdentityKey
        do { identity = try KeyFile.load(path: plan.privateKeyPath) } catch {
            throw .failed(operation: "loading the private key \(plan.privateKeyPath)",
                          reason: "\(error); create it with 'triglav keygen \(plan.privateKeyPath)'")
        }
        var clients: [IdentityPublicKey: TunnelAddresses] = [:]
        for client in plan.clients {
            guard let assignment = plan.assignment(of: client) else {
                throw .invalidArgument(what: "client \(client.name)", reason: "its tunnel address fits no server prefix")
            }
            clients[client.publicKey] = assignment
        }
        var configuration = ServerTunnelConfiguration(identity: identity, tunnelInterface: plan.tunnelInterface,
                                                      tunnelAddresses: plan.tunnelAddresses, clients: clients)
        configuration.listen = plan.listen
        configuration.masquerade = plan.masquerade
        configuration.outboundInterface = plan.outboundInterface
        configuration.heartbeatInterval = plan.heartbeatInterval
        configuration.dnsOffer = plan.dnsOffer
        if !plan.resendRequests { configuration.multipath.requestsResends = false }
        if !plan.pacing { configuration.pacing = false }
        if let mtu = plan.mtu { configuration.mtu = mtu }
        do { return try ServerTunnel(configuration: configuration, logger: logger) } catch {
            throw .failed(operation: "creating the server tunnel", reason: error.description)
        }
    }
}
