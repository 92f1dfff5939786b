internal import CTriglavShims
#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import Synchronization
import TriglavCore
import TriglavCrypto
import TriglavMultipath
import TriglavProtocol

/// Everything a server tunnel needs to run.
public struct ServerTunnelConfiguration: Sendable {
    public var identity: IdentityKey
    /// UDP endpoints to listen on. Wildcard addresses are fine: replies leave from the address each
    /// client talked to (IP_PKTINFO).
    public var listen: [IPEndpoint] = [IPEndpoint(address: .v4(0), port: DEFAULT_PORT)]
    public var tunnelInterface: InterfaceName
    /// The server's own addresses on the TUN device; their prefixes are the tunnel subnets that get NAT.
    public var tunnelAddresses: [IPPrefix]
    /// Authorized clients and the addresses each gets. Anyone else gets no session and no reply.
    public var clients: [IdentityPublicKey: TunnelAddresses]
    /// MTU of the server's TUN device. nil: the largest a client can use (`TunnelMTU.defaultServerCeiling`:
    /// 1432 when listening on IPv4 at all, 1412 when only on IPv6).
    public var mtu: Int?
    /// The MTU actually used.
    public var effectiveMTU: Int { mtu ?? TunnelMTU.defaultServerCeiling(listen: listen) }
    /// Masquerade tunnel traffic leaving through other interfaces (nftables table `inet triglav`).
    public var masquerade = true
    /// The only interface whose outgoing tunnel traffic is masqueraded; nil: every interface but the TUN.
    /// Traffic to the tunnel subnets leaving through any other interface keeps its tunnel source address.
    public var outboundInterface: InterfaceName?
    /// UDP sockets per listen endpoint: a SO_REUSEPORT group whose BPF program gives each client source address one
    /// socket of the group (a hash of the address, modulo the size), read round-robin by the network pump. One
    /// client sending faster than the server can take fills its own socket's receive buffer, not the others'
    /// (docs/DATAPLANE.md, "Isolation of clients flooding valid data"). 1: one socket per endpoint.
    public var listenerGroupSize = 8
    var effectiveListenerGroupSize: Int { max(1, listenerGroupSize) }
    /// Queues of the server's TUN device: each has its own ring, packets are queued by destination address (so
    /// per client, modulo the count), and the TUN pump reads them round-robin. 1: a single-queue device.
    public var tunQueues = 8
    /// TUN offloads: read TCP super-packets and cut them here, join a flow's segments into super-packets on writes
    /// (`TunDevice.offloads`).
    public var tunOffloads = TunDevice.offloadsByDefault
    /// Also accept the TCP fallback transport on every listen endpoint (same address and port).
    public var tcpFallback = true
    /// Enable forwarding and NAT at all (tests that only talk to the server itself can turn it off: then no sysctl
    /// is touched and nothing is recorded).
    public var configureNetwork = true
    /// Where the forwarding and accept_ra values the server changed are recorded, so a start after a crash puts them
    /// back (`SysctlJournal`); nil records nothing. One server per state directory.
    public var stateDirectory: String? = DataPlaneStateDirectory.default
    /// Resolvers and domains offered to every client (`[server.dns]`), sent answering each client keepalive; nil:
    /// none offered.
    public var dnsOffer: DNSOffer?
    /// A session silent this long is forgotten.
    public var sessionTimeout: Duration = .seconds(120)
    /// Multipath settings of every client tunnel (the server schedules the download direction). The
    /// reorder buffer is smaller than a client's: the server holds one per client.
    public var multipath: MultipathConfiguration = {
        var configuration = ClientTunnelConfiguration.defaultMultipath
        configuration.reorderCapacity = 512
        // Sender-side pacing with late binding of the download direction comes with `defaultMultipath`
        // (docs/DATAPLANE.md, "Sender-side pacing"): `pacingQueueAllowance` set makes the TUN pump queue each
        // client's packets in its `PacedSendQueue` and release them as the engine's pacer allows.
        return configuration
    }()

    /// The default `multipath` with pacing on, whatever the environment says (tests).
    static var pacedMultipathForTests: MultipathConfiguration {
        var configuration = ClientTunnelConfiguration.defaultMultipath
        configuration.reorderCapacity = 512
        PacingSwitch.enable(in: &configuration)
        return configuration
    }

    /// The server's own idle probe interval on each client uplink (`multipath.heartbeatInterval`). A client uplink
    /// whose control frames ask for a longer one (a metered uplink) is probed at that, that uplink only
    /// (docs/DATAPLANE.md, "Idle uplinks").
    public var heartbeatInterval: Duration {
        get { .nanoseconds(Int64(clamping: multipath.heartbeatInterval)) }
        set { multipath.heartbeatInterval = max(1, newValue.nanoseconds) }
    }

    public init(identity: IdentityKey, tunnelInterface: InterfaceName, tunnelAddresses: [IPPrefix],
                clients: [IdentityPublicKey: TunnelAddresses]) {
        self.identity = identity
        self.tunnelInterface = tunnelInterface
        self.tunnelAddresses = tunnelAddresses
        self.clients = clients
    }
}

/// The server side: UDP listeners, a TUN device, and two pump threads. Each authorized client has one
/// tunnel made of one session per client uplink; packets from the TUN device go to the client owning the
/// destination address, spread over that client's live sessions. A session's endpoint follows the source
/// of its last authenticated packet (roaming, NAT rebinding). Clients are isolated: a client can only use
/// its own sessions and its own inner source addresses, and its reorder buffer is its own.
///
/// Lifetime: `start()` once, `stop()` once. Thread-safety: public methods may be called from any thread.
public final class ServerTunnel: Sendable {
    let configuration: ServerTunnelConfiguration
    let logger: Logger
    private let state: Mutex<ServerState>
    private let tunPoller: Poller
    private let networkPoller: Poller
    private let threads = Mutex<[PumpThread]>([])
    private let routes: RouteManager
    /// Forwarding and accept_ra values `start()` changed, restored by `stop()` or after a crash by the next `start()`;
    /// nil when `configureNetwork` is off (no sysctl is touched then).
    private let sysctls: SysctlJournal?
    static let sysctlStateFileName = "server-sysctl.state"

    public init(configuration: ServerTunnelConfiguration, logger: Logger = Logger(label: "triglav.dataplane.server")) throws(TriglavDataPlaneError) {
        self.configuration = configuration
        self.logger = logger
        tunPoller = try Poller()
        networkPoller = try Poller()
        routes = RouteManager(logger: logger)
        sysctls = configuration.configureNetwork
            ? SysctlJournal(stateFile: configuration.stateDirectory.map { "\($0)/\(Self.sysctlStateFileName)" },
                            subject: "forwarding and accept_ra values of the server", logger: logger)
            : nil
        let authorized = configuration.clients.map { key, addresses in
            AuthorizedClient(publicKey: key, ipv4: addresses.ipv4, ipv6: addresses.ipv6)
        }
        state = Mutex(ServerState(responder: HandshakeResponder(identity: configuration.identity, authorizedClients: authorized)))
    }

    /// Opens the listeners and the TUN device, configures forwarding/NAT, starts the pumps.
    public func start() throws(TriglavDataPlaneError) {
        if let outbound = configuration.outboundInterface, outbound == configuration.tunnelInterface {
            throw .invalidConfiguration("NAT outbound interface \(outbound) is the tunnel's own interface; "
                + "name the interface towards the internet, or leave it out to masquerade on every other one")
        }
        let sockets = try Self.openListeners(configuration: configuration, logger: logger)
        let tun = try TunDevice(name: configuration.tunnelInterface, mtu: configuration.effectiveMTU,
                                queueCount: configuration.tunQueues, steerByDestination: true,
                                offloads: configuration.tunOffloads)
        if tun.steeringError != 0 {
            logger.warning("""
                \(tun.name): can't load the BPF program that gives each client its own TUN queue (\(String(cString: strerror(tun.steeringError)))); \
                the kernel spreads \
                packets over the \(tun.queues.count) queues by flow hash instead, so a download flood to one client can \
                slow the clients whose flows share its queue
                """)
        }
        let nat = configuration.configureNetwork && configuration.masquerade
        // A crashed run's forwarding first, so what this run records as previous is the host's own value.
        sysctls?.restoreLeftovers()
        try routes.applyServer(tun: tun.name, addresses: configuration.tunnelAddresses, masquerade: nat,
                               outboundInterface: configuration.outboundInterface, sysctls: sysctls)
        var listeners: [TCPListener] = []
        do {
            if configuration.tcpFallback {
                for (index, endpoint) in configuration.listen.enumerated() {
                    // Port 0 means "any": use the port the UDP socket got, so both transports share it.
                    let port = endpoint.port != 0 ? endpoint.port
                        : try sockets[index * configuration.effectiveListenerGroupSize].localEndpoint().port
                    listeners.append(try TCPListener(endpoint: IPEndpoint(address: endpoint.address, port: port),
                                                     label: "TCP listener \(endpoint.address):\(port)"))
                }
            }
            for (index, socket) in sockets.enumerated() { try networkPoller.add(fd: socket.descriptor.raw, token: UInt64(index)) }
            for (index, listener) in listeners.enumerated() {
                try networkPoller.add(fd: listener.descriptor.raw, token: ServerNetworkPump.listenerTokenBase + UInt64(index))
            }
            for (index, queue) in tun.queues.enumerated() { try tunPoller.add(fd: queue.raw, token: UInt64(index)) }
        } catch {
            // The caller doesn't call stop() after a failed start: undo NAT and forwarding here.
            for socket in sockets { networkPoller.remove(fd: socket.descriptor.raw) }
            for listener in listeners { networkPoller.remove(fd: listener.descriptor.raw) }
            if nat { routes.removeServerNAT() }
            sysctls?.restoreAll()
            tun.close()
            throw error
        }
        state.withLock { state in
            state.sockets = sockets
            state.tun = tun
        }
        let tunPump = ServerTunPump(server: self, tun: tun, socketCount: sockets.count)
        let networkPump = ServerNetworkPump(server: self, tun: tun, sockets: sockets, listeners: listeners)
        let tunThread = PumpThread(name: "triglav-srv-tun", wake: { [tunPoller] in tunPoller.wake() }) { tunPump.iterate() }
        let networkThread = PumpThread(name: "triglav-srv-net", wake: { [networkPoller] in networkPoller.wake() }) {
            networkPump.iterate()
        }
        threads.withLock { $0 = [tunThread, networkThread] }
        logger.info("server tunnel \(tun.name) listening on \(configuration.listen.map(\.description).joined(separator: ", "))")
    }

    /// Stops the pumps, removes NAT, turns forwarding back off if `start()` turned it on, closes the TUN device
    /// and the listeners.
    public func stop() {
        let running = threads.withLock { threads in
            defer { threads = [] }
            return threads
        }
        for thread in running { thread.stop() }
        let (tun, sockets, connections) = state.withLock { state in
            defer { state.tun = nil; state.sockets = []; state.sessions = [:]; state.connections = [:] }
            return (state.tun, state.sockets, Array(state.connections.values))
        }
        for connection in connections { connection.close() }
        if configuration.configureNetwork && configuration.masquerade { routes.removeServerNAT() }
        sysctls?.restoreAll()
        tun?.close()
        for socket in sockets { socket.close() }
        logger.info("server tunnel stopped")
    }

    /// Receive buffer of each listener socket: a client flooding its socket builds a standing queue of at most this
    /// much (what a full group holds is `listenerGroupSize` times it).
    static let listenerBufferBytes: Int32 = 8 << 20

    /// The UDP listener sockets, `listenerGroupSize` per endpoint in endpoint order; a group shares its endpoint's
    /// address and port (SO_REUSEPORT) and steers datagrams by their source address. Every socket gets the
    /// options any listener has (PKTINFO, no fragmentation, buffers).
    static func openListeners(configuration: ServerTunnelConfiguration,
                              logger: Logger = Logger(label: "triglav.dataplane.server")) throws(TriglavDataPlaneError) -> [UDPSocket] {
        let groupSize = configuration.effectiveListenerGroupSize
        var sockets: [UDPSocket] = []
        for endpoint in configuration.listen {
            var options = UDPSocket.Options()
            options.localEndpoint = endpoint
            options.packetInfo = true
            options.coalescesReceives = true  // read by `ServerNetworkPump`, whose batch has room for runs
            options.bufferBytes = groupSize > 1 ? listenerBufferBytes : 16 << 20
            options.reusePort = groupSize > 1
            let family = SocketFamily(of: endpoint.address)
            let first = try UDPSocket(family: family, options: options, label: "listener \(endpoint)")
            sockets.append(first)
            guard groupSize > 1 else { continue }
            // Port 0: the group joins the port the first socket got.
            let bound = endpoint.port != 0 ? endpoint : IPEndpoint(address: endpoint.address, port: try first.localEndpoint().port)
            options.localEndpoint = bound
            for member in 1..<groupSize {
                sockets.append(try UDPSocket(family: family, options: options, label: "listener \(bound) #\(member)"))
            }
            do {
                try Syscall.shim("steer the reuseport group of \(bound) by source address") {
                    tg_socket_steer_reuseport_by_source(first.descriptor.raw, family == .v4 ? AF_INET : AF_INET6, UInt32(groupSize))
                }
            } catch {
                // Without the program the kernel spreads by a hash of addresses and ports: still split, less predictably.
                logger.warning("listener \(bound): \(error); datagrams are spread over its \(groupSize) sockets by the kernel's hash instead")
            }
        }
        return sockets
    }

    /// Actual listening endpoints (port 0 in the configuration becomes the kernel's choice).
    public func listeningEndpoints() throws(TriglavDataPlaneError) -> [IPEndpoint] {
        let sockets = state.withLock { $0.sockets }
        var endpoints: [IPEndpoint] = []
        // One endpoint per reuseport group (its sockets share address and port).
        for socket in stride(from: 0, to: sockets.count, by: configuration.effectiveListenerGroupSize).map({ sockets[$0] }) {
            endpoints.append(try socket.localEndpoint())
        }
        return endpoints
    }

    public func statistics() -> ServerTunnelStatistics {
        state.withLock { state in
            ServerTunnelStatistics(
                clients: state.tunnels.values.sorted { $0.key.base64 < $1.key.base64 }.map { tunnel in
                    ServerTunnelStatistics.Client(
                        publicKey: tunnel.key.base64, addresses: tunnel.addresses,
                        endpoints: tunnel.sessions.compactMap { state.sessions[$0]?.endpoint },
                        receivedPackets: tunnel.receivedPackets, transmittedPackets: tunnel.transmittedPackets,
                        receivedBytes: tunnel.receivedBytes, transmittedBytes: tunnel.transmittedBytes,
                        smoothedRTT: Self.bestRTT(of: tunnel.engine),
                        paths: tunnel.engine.allStatistics().map { path in
                            let session = tunnel.uplinkSessions[path.id.rawValue].flatMap { state.sessions[$0] }
                            let connection = session?.connection.flatMap { state.connections[$0] }
                            let endpoint = connection.flatMap { SocketBinding.peerEndpoint(of: $0.descriptor.raw) }
                                ?? session?.endpoint
                            return ServerTunnelStatistics.Path(uplink: path.id, endpoint: endpoint, overTCP: connection != nil,
                                                               statistics: path)
                        })
                },
                rejectedHandshakes: state.rejectedHandshakes, droppedUnknownDestination: state.droppedUnknownDestination,
                resentPackets: state.resentPackets, refusedUplinks: state.refusedUplinks,
                answeredHandshakes: state.answeredHandshakes, queueDrops: state.pacedDrops,
                congestionMarks: state.tunnels.values.reduce(state.departedCongestionMarks) { $0 &+ $1.engine.congestionMarks },
                ecnDecapsulation: state.ecnDecapsulation,
                requestedResends: state.tunnels.values.reduce(state.departedRequestedResends) { $0 + $1.retransmit.requestedResends },
                tunOffload: state.tunOffload.withJoinedWrites(state.tunJoinedWrites),
                segmentedDatagrams: state.sockets.reduce(0) { $0 &+ $1.segmentedDatagrams },
                coalescedDatagrams: state.coalescedDatagrams)
        }
    }

    /// Forgets a client: every session of its tunnel, its endpoints, its reorder buffer and its address
    /// routes. Each session is told first with an authenticated close (`tunnelRemoved`), so the client's
    /// uplinks don't wait for a timeout: the client is still authorized, so it handshakes again at once and
    /// gets a new tunnel (revoking it takes removing it from the configuration). Returns whether the client
    /// had a tunnel. Control path: allocates, takes the state lock once.
    @discardableResult
    public func disconnectClient(publicKey: IdentityPublicKey) -> Bool {
        let closeBatch = DatagramBatch(capacity: 1, slotSize: 256)
        return state.withLock { state in
            let tunnelIDs = state.tunnels.values.filter { $0.key == publicKey }.map(\.tunnelID)
            guard !tunnelIDs.isEmpty else { return false }
            let now = state.clock.advance(to: monotonicNow())
            for tunnelID in tunnelIDs {
                for index in state.tunnels[tunnelID]?.sessions ?? [] {
                    sendClose(session: index, batch: closeBatch, now: now, state: &state)
                }
                state.removeTunnel(tunnelID)
            }
            logger.info("client \(publicKey) disconnected by request")
            return true
        }
    }

    /// Seals a close with session `index` and sends it to the session's endpoint (UDP or its fallback connection).
    private func sendClose(session index: UInt32, batch: DatagramBatch, now: Nanoseconds, state: inout ServerState) {
        guard let length = try? state.sessions[index]?.transport.seal(.close(.tunnelRemoved), in: batch.slot(0), now: now),
              let socketIndex = state.sessions[index]?.socket else { return }
        if let connection = state.sessions[index]?.connection {
            _ = state.connections[connection]?.send(UnsafeRawBufferPointer(rebasing: batch.slot(0)[0..<length]))
            return
        }
        guard socketIndex < state.sockets.count else { return }
        state.sessions[index]?.withReplyTarget { address, addressLength, local in
            batch.prepareSend(0, length: length, address: address, addressLength: addressLength, localAddress: local)
        }
        batch.count = 1
        state.sockets[socketIndex].send(batch)
    }

    /// The client's round-trip time as the server measures it: the smallest smoothed RTT of its paths
    /// (the path the download direction prefers), nil before the first probe reply.
    static func bestRTT(of engine: MultipathEngine<Int>) -> Nanoseconds? {
        engine.allStatistics().map(\.smoothedRTT).filter { $0 > 0 }.min()
    }

    func withState<R>(_ body: (inout ServerState) -> R) -> R { state.withLock { body(&$0) } }
}

/// One client uplink's session on the server.
struct ServerSession {
    let tunnelID: UInt64
    /// The client uplink this session serves (kept across rekeys), as the tunnel's multipath engine knows it.
    let uplink: UplinkID
    var transport: TransportSession
    /// The session this one rekeys; retired when this one is confirmed.
    var replaces: UInt32?
    var socket: Int
    var address: sockaddr_storage
    var addressLength: socklen_t
    /// `address` as an endpoint, for the statistics (the packet path works on `address` itself).
    var endpoint: IPEndpoint? { withUnsafePointer(to: address) { SocketAddress.read($0) } }
    /// The server address the client sent to, so replies leave from it.
    var localAddress: sockaddr_storage
    var lastReceive: Nanoseconds
    /// The client's policy flags last applied to this session's uplink (see `UplinkPolicyFlags`); nil until its first
    /// control frame (an uplink new to the engine is a backup until then: `UplinkPolicyFlags.unannounced`).
    var policyFlags: UInt8? = nil
    /// The TCP fallback connection the session's last packet came on; nil for UDP.
    var connection: UInt32? = nil
}

/// One client's tunnel on the server: its sessions (one or more per client uplink) and addresses. A class: the
/// pumps reach it through `state.tunnels[id]?.…` for every packet, and a struct there would be copied out of the
/// dictionary, every reference in its engine retained and released, at each read (14 % of the network pump's CPU).
final class ServerClientTunnel {
    let tunnelID: UInt64
    let key: IdentityPublicKey
    let addresses: TunnelAddresses
    var sessions: [UInt32] = []
    /// Scheduler, uplink quality and reorder buffer of this client's tunnel.
    var engine: MultipathEngine<Int>
    /// Sender-side pacing (when the configuration paces): the shared queue of unnumbered packets and the per-uplink
    /// resend lanes. A class, so mutating it never copies this tunnel's arrays.
    var paced: PacedSendQueue? = nil
    /// Recently sent packets, for the engine's resend duties and the client's resend requests: 1024 × 2 KiB, about
    /// 200 ms of a 60 Mbit/s download (a request comes a reorder wait plus a one-way delay after the loss).
    let retransmit = RetransmitStore(capacity: 1024)
    /// The confirmed session that currently carries each uplink (engine uplink raw value → session index).
    var uplinkSessions: [UInt32: UInt32] = [:]
    var transmitSequence: UInt32 = 0
    var cursor = 0
    var receivedPackets: UInt64 = 0
    var transmittedPackets: UInt64 = 0
    /// Inner (IP packet) bytes from and to the client, counted by the pumps under the state lock they hold anyway.
    var receivedBytes: UInt64 = 0
    var transmittedBytes: UInt64 = 0
    /// `transmittedPackets` at the last paced log line (the network pump's 2 s report, only when it moved).
    var reportedTransmittedPackets: UInt64 = 0
    /// The tunnel flags last seen from the client (`SchedulerFlags`; 0 while it announced nothing), so only a
    /// change reaches the engine.
    var schedulerFlags: UInt8 = 0
    /// Scheduler switches not yet logged, and when the next may be: a client flipping its announcement (or old
    /// frames still arriving on a slow uplink after a runtime switch) must not flood the server's log.
    var unloggedSchedulerSwitches = 0
    var nextSchedulerLogAt: UInt64 = 0

    init(tunnelID: UInt64, key: IdentityPublicKey, addresses: TunnelAddresses, engine: MultipathEngine<Int>) {
        self.tunnelID = tunnelID
        self.key = key
        self.addresses = addresses
        self.engine = engine
    }

    /// Follows the scheduler the client announced in `flags` (its frames' tunnel flags): this tunnel's downloads are
    /// scheduled as its uploads are. Returns the mode when the engine switched; nil when `flags` says nothing
    /// (an older client: the server's own scheduler stays), names no known mode, or repeats the last announcement.
    /// Counts a switch and says whether to log it now (at most once per `schedulerLogInterval`), with how many
    /// switches the line stands for.
    func shouldLogSchedulerSwitch(at now: UInt64) -> Int? {
        unloggedSchedulerSwitches += 1
        guard now >= nextSchedulerLogAt else { return nil }
        nextSchedulerLogAt = now &+ Self.schedulerLogInterval
        defer { unloggedSchedulerSwitches = 0 }
        return unloggedSchedulerSwitches
    }

    static let schedulerLogInterval: UInt64 = 10 * Nanoseconds.second

    /// Pacing: queues a packet for the download direction (`PacedSendQueue.admit`); false: dropped.
    func admitPaced(_ packet: UnsafeRawBufferPointer, wireLength: Int, now: UInt64) -> Bool {
        paced?.admit(packet, wireLength: wireLength, engine: &engine, now: now) ?? false
    }

    /// Pacing: what to send now (`PacedSendQueue.next`); nil: wait until `pacedWake`.
    func nextPacedRelease(now: UInt64) -> PacedRelease? {
        paced?.next(engine: &engine, now: now)
    }

    /// Pacing: when the queue has something to send again; nil: it is empty.
    func pacedWake(now: UInt64) -> UInt64? {
        paced?.nextWake(engine: engine, uplinks: uplinkSessions.keys, now: now)
    }

    func followClientScheduler(_ flags: UInt8) -> SchedulerMode? {
        guard flags != schedulerFlags else { return nil }
        schedulerFlags = flags
        guard let (mode, copies) = SchedulerFlags.decode(flags) else { return nil }
        guard engine.scheduler != mode || engine.configuration.redundantCopies != copies else { return nil }
        do throws(MultipathError) {
            try engine.setScheduler(mode, redundantCopies: copies)
            return mode
        } catch {
            return nil  // can't happen: SchedulerFlags decodes copies of 1–15 only, which always validate
        }
    }
}

struct ServerState: @unchecked Sendable {
    var responder: HandshakeResponder
    var tunnels: [UInt64: ServerClientTunnel] = [:]
    /// When each tunnel's engine next has a duty (its `nextDeadline()`, cached by the network pump after
    /// asking it; 0 = ask now). Whoever changes an engine in a way that may bring a duty forward sets 0:
    /// received frames, sent packets, uplinks added or removed. One entry per tunnel.
    var dutyDeadlines: [UInt64: Nanoseconds] = [:]
    /// Pacing: when each tunnel with queued packets may send again (`ServerClientTunnel.pacedWake`; 0 = now). Only
    /// tunnels with something queued have an entry; the TUN pump, which sends paced packets, sleeps until the
    /// earliest. The network pump sets 0 (and wakes the TUN pump) when it queues resends.
    var pacingDeadlines: [UInt64: Nanoseconds] = [:]
    /// Pacing: packets dropped at ingress (the engine's AQM or a full shared queue) and shed at the queue's head.
    var pacedDrops: UInt64 = 0
    /// The outer ECN field of received data frames, applied to their inner packets (RFC 6040), every client's.
    var ecnDecapsulation = ECNDecapsulationCounters()
    var byIPv4: [UInt32: UInt64] = [:]
    var byIPv6: [IPAddress: UInt64] = [:]
    var sessions: [UInt32: ServerSession] = [:]
    var sockets: [UDPSocket] = []
    /// TCP fallback connections by ID; `send` on them only under this lock.
    var connections: [UInt32: TCPConnection] = [:]
    var tun: TunDevice?
    var rejectedHandshakes: UInt64 = 0
    var droppedUnknownDestination: UInt64 = 0
    var tunOffload = TunOffloadCounters()
    /// Datagrams that arrived at the listeners in UDP_GRO runs.
    var coalescedDatagrams: UInt64 = 0
    /// `TunDevice.joinedWrites` as the network pump last saw it.
    var tunJoinedWrites: (superPackets: UInt64, segments: UInt64) = (0, 0)
    var droppedSpoofed: UInt64 = 0
    var resentPackets: UInt64 = 0
    /// Uplink sessions refused because their client already had `MultipathLimits.maxUplinks` uplinks.
    var refusedUplinks: UInt64 = 0
    /// Handshakes answered (a new tunnel, a further uplink, a rekey).
    var answeredHandshakes: UInt64 = 0
    /// The resend requests removed tunnels had answered, so the server-wide figure only grows.
    var departedRequestedResends = RequestedResendCounters()
    /// The ECN marks removed tunnels' paced AQMs had set, likewise.
    var departedCongestionMarks: UInt64 = 0
    var nextUplinkID: UInt32 = 0
    var clock = EngineClock()
    /// Where each client's last removed tunnel left its transmit sequence; its next tunnel continues there.
    /// This client starts fresh receive state with every new tunnel (`ClientNetworkPump.startFreshReceiveState`), so
    /// either start works for it; continuing keeps a peer that kept its reorder buffer across a dropped tunnel
    /// (DisconnectClient) from taking the new sequences as duplicates. One entry per authorized key.
    var resumeSequences: [IdentityPublicKey: UInt32] = [:]

    /// Tunnel owning the destination of `packet`.
    func tunnel(forDestinationOf packet: UnsafeRawBufferPointer) -> UInt64? {
        if let v4 = PacketClassifier.ipv4Destination(packet) { return byIPv4[v4] }
        if let v6 = PacketClassifier.ipv6Destination(packet) { return byIPv6[v6] }
        return nil
    }

    /// Whether `packet`'s inner source is one of a tunnel's `addresses` (anti-spoofing); nil (no such tunnel): no.
    /// Takes the addresses, not the tunnel: the caller reads them with `state.tunnels[id]?.addresses`, so no copy of
    /// the tunnel is alive when its engine is mutated next (a copy would make that mutation copy the engine's
    /// arrays, reorder buffer included, for every data packet).
    func isSourceAllowed(_ packet: UnsafeRawBufferPointer, addresses: TunnelAddresses?) -> Bool {
        guard let addresses else { return false }
        if let v4 = PacketClassifier.ipv4Source(packet) {
            if case .v4(let assigned) = addresses.ipv4?.address { return v4 == assigned }
            return false
        }
        if let v6 = PacketClassifier.ipv6Source(packet) { return addresses.ipv6?.address == v6 }
        return false
    }

    mutating func addTunnel(_ tunnel: ServerClientTunnel) {
        tunnels[tunnel.tunnelID] = tunnel
        dutyDeadlines[tunnel.tunnelID] = 0
        if case .v4(let value) = tunnel.addresses.ipv4?.address { byIPv4[value] = tunnel.tunnelID }
        if let ipv6 = tunnel.addresses.ipv6 { byIPv6[ipv6.address] = tunnel.tunnelID }
    }

    /// Removes a tunnel, its sessions and its address routes.
    mutating func removeTunnel(_ tunnelID: UInt64) {
        guard let tunnel = tunnels.removeValue(forKey: tunnelID) else { return }
        departedRequestedResends = departedRequestedResends + tunnel.retransmit.requestedResends
        departedCongestionMarks &+= tunnel.engine.congestionMarks
        dutyDeadlines[tunnelID] = nil
        pacingDeadlines[tunnelID] = nil
        resumeSequences[tunnel.key] = tunnel.transmitSequence
        for index in tunnel.sessions {
            sessions.removeValue(forKey: index)
            responder.sessionEnded(localIndex: index)
        }
        if case .v4(let value) = tunnel.addresses.ipv4?.address, byIPv4[value] == tunnelID { byIPv4[value] = nil }
        if let ipv6 = tunnel.addresses.ipv6, byIPv6[ipv6.address] == tunnelID { byIPv6[ipv6.address] = nil }
        responder.removeTunnel(tunnelID)
    }

    /// Removes a session; its uplink leaves the multipath engine unless another session carries it now.
    mutating func removeSession(_ index: UInt32, now: UInt64) {
        guard let session = sessions.removeValue(forKey: index) else { return }
        tunnels[session.tunnelID]?.sessions.removeAll { $0 == index }
        if tunnels[session.tunnelID]?.uplinkSessions[session.uplink.rawValue] == index {
            tunnels[session.tunnelID]?.uplinkSessions[session.uplink.rawValue] = nil
            try? tunnels[session.tunnelID]?.engine.removeUplink(session.uplink, now: now)
            if tunnels[session.tunnelID] != nil { dutyDeadlines[session.tunnelID] = 0 }
        }
        responder.sessionEnded(localIndex: index)
    }
}

/// TUN → clients pump of the server. With pacing (`configuration.multipath.pacingQueueAllowance` set) it also
/// sends everything paced: each client's packets wait in its tunnel's `PacedSendQueue` and leave as the engine's
/// pacer allows (docs/DATAPLANE.md, "Sender-side pacing"); the pump sleeps until the earliest tunnel's release time
/// (`ServerState.pacingDeadlines`, nanosecond wait) and sends what is due then in one `sendmmsg` per socket.
final class ServerTunPump: @unchecked Sendable {
    private static let batchSize = 64
    /// Longest wait when nothing is paced.
    private static let idleWait = 200 * Nanoseconds.millisecond
    /// Packets one tunnel may release per service (the rest at the next wake-up, at once): bounds the time one
    /// client holds the lock after a long stall.
    private static let releaseBudget = 256
    private let server: ServerTunnel
    private let tun: TunDevice
    private let staging = TunReadBatch()
    private let outgoing: [DatagramBatch]
    private var sockets: [UDPSocket] = []
    /// TUN queues the poller reported readable and not yet found empty.
    private var readyQueues: [Bool]
    private let pacing: Bool
    /// Earliest `pacingDeadlines` entry, as of the last service (nil: nothing paced waits).
    private var nextPacingWake: Nanoseconds?
    /// Tunnels to service this round (reused).
    private var dueTunnels: [UInt64] = []

    init(server: ServerTunnel, tun: TunDevice, socketCount: Int) {
        self.server = server
        self.tun = tun
        outgoing = (0..<socketCount).map { _ in DatagramBatch(capacity: ServerTunPump.batchSize, slotSize: TunnelMTU.largestDatagram) }
        readyQueues = Array(repeating: false, count: tun.queues.count)
        pacing = server.configuration.multipath.pacingQueueAllowance != nil
        dueTunnels.reserveCapacity(64)
    }

    func iterate() {
        do {
            if pacing {
                let now = monotonicNow()
                let wait = nextPacingWake.map { $0 > now ? min($0 - now, Self.idleWait) : 0 } ?? Self.idleWait
                var woken = false
                try server.tunPollerForPump.wait(timeoutNanoseconds: wait) { token in
                    if token < UInt64(readyQueues.count) { readyQueues[Int(token)] = true }
                    if token == Poller.wakeToken { woken = true }
                }
                // Due releases first (their time has come), then what the TUN has (queued behind them).
                if woken || nextPacingWake.map({ $0 <= monotonicNow() }) ?? false { servicePaced() }
            } else {
                try server.tunPollerForPump.wait(timeoutMilliseconds: 200) { token in
                    if token < UInt64(readyQueues.count) { readyQueues[Int(token)] = true }
                }
            }
        } catch {
            return
        }
        // Round-robin over the queues (one per client address when steered), one batch per wake-up: a flood to one
        // client waits and is dropped in its own queue, and the others' packets are read at their next turn.
        staging.drainOneBatch(tun, ready: &readyQueues, dispatch: dispatch)
    }

    private func dispatch(_ count: Int) {
        let now = monotonicNow()
        server.withState { state in
            // The engine needs one non-decreasing clock across both pump threads.
            let now = state.clock.advance(to: now)
            if sockets.count != state.sockets.count { sockets = state.sockets }
            state.tunOffload = staging.offloadCounters
            for index in 0..<count {
                let length = staging.length(index)
                let source = staging.slot(index)
                let packet = UnsafeRawBufferPointer(rebasing: source[WireLayout.bodyOffset..<(WireLayout.bodyOffset + length)])
                guard let tunnelID = state.tunnel(forDestinationOf: packet) else {
                    state.droppedUnknownDestination &+= 1
                    continue
                }
                if pacing, state.tunnels[tunnelID]?.engine.scheduler == .aggregate {
                    // Late binding: queued unnumbered; sent below (or later) when an uplink can take it.
                    if state.tunnels[tunnelID]?.admitPaced(packet, wireLength: length + WireLayout.transportOverhead, now: now) == true {
                        state.pacingDeadlines[tunnelID] = 0
                    } else {
                        state.pacedDrops &+= 1
                    }
                    continue
                }
                // Tunnels are mutated in place (`?.`): a copy would copy the engine and the sessions' windows.
                guard let selection = state.tunnels[tunnelID]?.engine.schedule(
                        packetLength: length + WireLayout.transportOverhead, flowKey: FlowKey(packet: packet), now: now),
                      !selection.isEmpty, let sequence = state.tunnels[tunnelID]?.transmitSequence else {
                    state.droppedUnknownDestination &+= 1
                    continue
                }
                state.tunnels[tunnelID]?.transmitSequence &+= 1
                state.tunnels[tunnelID]?.retransmit.store(sequence: sequence, packet: packet, sentOn: selection.first)
                for uplink in selection {
                    sendData(packet, sequence: sequence, tunnel: tunnelID, uplink: uplink, now: now, state: &state)
                }
            }
            if pacing { serviceDue(now: now, state: &state) }
        }
        flush()
    }

    /// Sends what every tunnel whose pacing deadline has come may send now.
    private func servicePaced() {
        let now = monotonicNow()
        server.withState { state in
            let now = state.clock.advance(to: now)
            if sockets.count != state.sockets.count { sockets = state.sockets }
            serviceDue(now: now, state: &state)
        }
        flush()
    }

    /// The tunnels due at `now`: each sends what its pacer lets go (`PacedSendQueue.next`) into the socket batches,
    /// then gets its next deadline, or none when its queue is empty. Recomputes `nextPacingWake`.
    private func serviceDue(now: Nanoseconds, state: inout ServerState) {
        dueTunnels.removeAll(keepingCapacity: true)
        for (tunnelID, due) in state.pacingDeadlines where due <= now { dueTunnels.append(tunnelID) }
        for tunnelID in dueTunnels {
            var budget = Self.releaseBudget
            while budget > 0, let release = state.tunnels[tunnelID]?.nextPacedRelease(now: now) {
                budget -= 1
                switch release {
                case .shed:
                    state.pacedDrops &+= 1
                case .data(let uplink, let slot):
                    guard let paced = state.tunnels[tunnelID]?.paced, let sequence = state.tunnels[tunnelID]?.transmitSequence else { continue }
                    let packet = paced.packet(slot)
                    // Numbered only now: a packet shed or dropped before this point leaves the receiver no gap.
                    state.tunnels[tunnelID]?.transmitSequence &+= 1
                    state.tunnels[tunnelID]?.retransmit.store(sequence: sequence, packet: packet, sentOn: uplink)
                    sendData(packet, sequence: sequence, tunnel: tunnelID, uplink: uplink, now: now, state: &state)
                    paced.release(slot)
                case .resend(let uplink, let sequence):
                    guard let store = state.tunnels[tunnelID]?.retransmit, let packet = store.packet(sequence: sequence) else { continue }
                    if sendData(packet, sequence: sequence, tunnel: tunnelID, uplink: uplink, now: now, state: &state, countAsNew: false) {
                        state.resentPackets &+= 1
                    }
                }
            }
            if budget == 0 {
                state.pacingDeadlines[tunnelID] = now
            } else if let wake = state.tunnels[tunnelID]?.pacedWake(now: now) {
                state.pacingDeadlines[tunnelID] = wake
            } else {
                state.pacingDeadlines[tunnelID] = nil
            }
        }
        nextPacingWake = state.pacingDeadlines.values.min()
    }

    /// Seals `packet` with `sequence` for `uplink`'s session into its socket's batch (sending a full batch first) or
    /// onto its fallback connection, and reports it to the engine. False when the uplink has no usable session.
    @discardableResult
    private func sendData(_ packet: UnsafeRawBufferPointer, sequence: UInt32, tunnel tunnelID: UInt64, uplink: UplinkID,
                          now: Nanoseconds, state: inout ServerState, countAsNew: Bool = true) -> Bool {
        guard let sessionIndex = state.tunnels[tunnelID]?.uplinkSessions[uplink.rawValue],
              let socketIndex = state.sessions[sessionIndex]?.socket, socketIndex < outgoing.count,
              let counter = state.sessions[sessionIndex]?.transport.nextSendCounter else { return false }
        let batch = outgoing[socketIndex]
        if batch.count == batch.capacity {
            // Full (a paced round after a long stall, or many clients on one socket): send it now, under the lock.
            if socketIndex < sockets.count { sockets[socketIndex].send(batch) } else { batch.count = 0 }
        }
        let target = batch.slot(batch.count)
        UnsafeMutableRawBufferPointer(rebasing: target[WireLayout.bodyOffset...]).copyMemory(from: packet)
        guard let sealed = try? state.sessions[sessionIndex]?.transport.seal(
            .data, tunnelSequence: sequence, bodyLength: packet.count, in: target, now: now) else { return false }
        if let connection = state.sessions[sessionIndex]?.connection {
            // TCP fallback: framed onto the client's connection; the batch slot is reused.
            state.connections[connection]?.send(UnsafeRawBufferPointer(rebasing: target[0..<sealed]))
        } else {
            state.sessions[sessionIndex]?.withReplyTarget { address, addressLength, local in
                batch.prepareSend(batch.count, length: sealed, address: address, addressLength: addressLength, localAddress: local,
                                  ecn: PacketClassifier.outerECN(for: packet))
            }
            batch.count += 1
        }
        if countAsNew {
            state.tunnels[tunnelID]?.transmittedPackets &+= 1
            state.tunnels[tunnelID]?.transmittedBytes &+= UInt64(packet.count)
        }
        state.dutyDeadlines[tunnelID] = 0  // sending may bring its probes forward (active probing)
        state.tunnels[tunnelID]?.engine.handle(.packetSent(uplink, counter: counter, sequence: sequence, bytes: sealed, at: now))
        return true
    }

    private func flush() {
        for (index, batch) in outgoing.enumerated() where batch.count > 0 {
            if index < sockets.count { sockets[index].send(batch) } else { batch.count = 0 }
        }
    }
}

extension ServerSession {
    /// Calls `body` with the peer address and the local address to send from (nil when unknown).
    mutating func withReplyTarget(_ body: (UnsafePointer<sockaddr_storage>, socklen_t, UnsafePointer<sockaddr_storage>?) -> Void) {
        let length = addressLength
        let hasLocal = localAddress.ss_family != 0
        withUnsafePointer(to: &address) { peer in
            withUnsafePointer(to: &localAddress) { local in body(peer, length, hasLocal ? local : nil) }
        }
    }
}

extension ServerTunnel {
    var tunPollerForPump: Poller { tunPoller }
    var networkPollerForPump: Poller { networkPoller }
}
