internal import CTriglavShims
import Dispatch
import Logging
import Synchronization
import TriglavCore
import TriglavCrypto
import TriglavMultipath
import TriglavProtocol

/// Everything a client tunnel needs to run. Defaults follow docs/DATAPLANE.md.
public struct ClientTunnelConfiguration: Sendable {
    public var identity: IdentityKey
    /// The server's identity public key, pinned: responses signed by anyone else are ignored.
    public var serverKey: IdentityPublicKey
    public var server: IPEndpoint
    /// Name of the TUN device to create.
    public var tunnelInterface: InterfaceName
    /// Largest inner MTU of the TUN device. The device starts with it and follows the smallest path MTU to
    /// the server of the uplinks that carry traffic, minus the real overhead (outer IP + UDP + Triglav
    /// framing), never above this value and never below 1280 while the tunnel carries IPv6 (576 without;
    /// docs/DATAPLANE.md, "TUN MTU"). nil: a 1500-byte uplink's worth for the server's family,
    /// 1432 to an IPv4 server, 1412 to an IPv6 one (`TunnelMTU.defaultCeiling`).
    public var mtu: Int?
    /// The ceiling actually used: `mtu`, or the default for the server's address family.
    public var mtuCeiling: Int { mtu ?? TunnelMTU.defaultCeiling(outerIPv4: server.address.isIPv4) }
    /// SO_MARK of the uplink sockets; the full-tunnel rules exempt it. Also the routing table number.
    public var firewallMark: UInt32 = RoutingConstants.defaultFirewallMark
    public var routing: ClientRouting = .none
    /// Table, rule priorities and excluded prefixes of `routing` (default: the mark's table, 29797–29799).
    public var policyRouting = PolicyRouting()
    /// Where changes that must be undone after a crash are recorded (the uplinks' loosened rp_filter,
    /// `ReversePathFilterGuard`); nil records nothing. Default: `$STATE_DIRECTORY` or /var/lib/triglav.
    public var stateDirectory: String? = DataPlaneStateDirectory.default
    /// The routing table actually used.
    var routingTable: UInt32 { policyRouting.table ?? firewallMark }
    /// Scheduler, probing, reordering and failover settings (TriglavMultipath). The engine's probes
    /// (every 100 ms by default) are also the uplinks' liveness checks.
    public var multipath = ClientTunnelConfiguration.defaultMultipath
    /// Longest silence on an uplink before a keepalive is sent (keeps NAT mappings open).
    public var keepaliveInterval: Duration = .seconds(25)
    /// An established uplink that hears nothing for this long (or three of its idle heartbeats, if longer: a metered
    /// uplink's) is considered dead and handshakes again (the multipath engine stops scheduling on it much earlier).
    public var uplinkTimeout: Duration = .seconds(3)
    /// Interval between handshake attempts of an uplink that is not established.
    public var handshakeRetryInterval: Duration = .seconds(1)
    /// Fall back to TCP (same server address and port) on uplinks whose UDP handshakes go unanswered.
    public var tcpFallback = true
    /// How long an uplink stays on its TCP fallback before it checks (with a handshake over UDP, while TCP
    /// keeps carrying traffic) whether UDP works again; checked again after each such interval.
    public var udpRetryInterval: Duration = .seconds(120)
    /// TUN offloads: read TCP super-packets and cut them here, join a flow's segments into super-packets on writes
    /// (`TunDevice.offloads`).
    public var tunOffloads = TunDevice.offloadsByDefault

    /// Receivers equalise path delays (see `DelayEqualizer`), holding a packet up to this long: the lab's
    /// 5 ms vs 45 ms (± 10 ms) uplinks need about 50 ms; more would only hide a broken estimate.
    public static let defaultMaxEqualizationDelay: UInt64 = 100 * Nanoseconds.millisecond

    /// Multipath defaults for the data plane. The sender re-sends packets that were in flight on a dying
    /// uplink (from its `RetransmitStore`); receivers request resends of lost packets unless
    /// `TRIGLAV_RESEND_REQUESTS=0` is set (`ResendRequestSwitch`, docs/DATAPLANE.md "Resend requests"); both sides
    /// answer the peer's requests either way.
    ///
    /// The engine's ingress queue target (refusing packets whose modelled arrival is more than 80 ms late) is
    /// off: with the capacity estimate starting at 10 Mbit/s, refusing at the estimate keeps the delivery
    /// rate, and so the estimate, from ever growing (measured: a single veth uplink stuck at 4–9 Mbit/s
    /// instead of hundreds). The uplink sockets' buffers and the inner TCP handle congestion instead.
    ///
    /// Receivers equalise the uplinks' path delays (`maxEqualizationDelay`), so a TCP flow striped over
    /// them measures the RTT of the slow paths it fills, not of the fastest (docs/MULTIPATH.md). Capacity
    /// estimates catch up with links their probes show to be faster (`capacityCatchUp`, docs/LAB.md).
    public static var defaultMultipath: MultipathConfiguration {
        var configuration = MultipathConfiguration()
        configuration.requestsResends = ResendRequestSwitch.enabledByEnvironment
        configuration.ingressQueueTarget = nil
        configuration.maxEqualizationDelay = defaultMaxEqualizationDelay
        // Experiment knob (not configuration): `TRIGLAV_EQUALIZATION_MS` replaces the longest equalisation hold; 0 turns
        // equalisation off (docs/DATAPLANE.md, "Sender-side pacing").
        if let value = getenv("TRIGLAV_EQUALIZATION_MS"), let milliseconds = UInt64(String(cString: value)) {
            configuration.maxEqualizationDelay = milliseconds * Nanoseconds.millisecond
        }
        configuration.capacityCatchUp = true
        // Sender-side pacing with late binding, both roles, unless `TRIGLAV_PACING=0` (docs/DATAPLANE.md, "Sender-side pacing").
        if PacingSwitch.enabledByEnvironment { PacingSwitch.enable(in: &configuration) }
        return configuration
    }

    public init(identity: IdentityKey, serverKey: IdentityPublicKey, server: IPEndpoint, tunnelInterface: InterfaceName) {
        self.identity = identity
        self.serverKey = serverKey
        self.server = server
        self.tunnelInterface = tunnelInterface
    }
}

/// How an uplink reaches the server.
public enum UplinkTransportMode: String, Sendable, Equatable, CaseIterable {
    /// UDP, falling back to TCP on the server's port when UDP goes unanswered (a network that blocks it), and trying
    /// UDP again every `udpRetryInterval` while on TCP.
    case udp
    /// TCP only, from the start (a network known to block or throttle UDP): not one UDP datagram is sent.
    case tcp
}

/// Which traffic the client sends into the tunnel.
public enum ClientRouting: Sendable, Equatable {
    /// Only the tunnel subnet (the TUN address's prefix); no routes or rules besides it.
    case none
    /// Everything, like wg-quick with AllowedIPs 0/0: own table, `not fwmark` rule, `suppress_prefixlength 0`.
    /// IPv6 is blackholed when the server assigns no IPv6 address.
    case fullTunnel
    /// Only these prefixes (plus the tunnel subnet), through the same dedicated table and rule.
    case split([IPPrefix])
}

/// The client side of a tunnel: a TUN device, one bound UDP socket per uplink, and two pump threads
/// (TUN → uplinks, uplinks → TUN). Uplinks can be added and removed at any time; each handshakes on its
/// own, and reconnects by itself after silence (server restart, link loss). The routing policy is installed
/// by `start()` with its routes unreachable, pointed at the TUN when a handshake assigns addresses, and
/// removed on `stop()`.
///
/// Lifetime: `start()` once, `stop()` once (also on deinit is NOT automatic: call `stop()`).
/// Thread-safety: all public methods may be called from any thread.
public final class ClientTunnel: Sendable {
    public static let maximumUplinks = 8
    /// Poller tokens of the uplinks' TCP fallback connections (UDP sockets use their slot number).
    static let tcpTokenBase: UInt64 = 100
    /// Unanswered UDP handshake attempts after which an uplink falls back to TCP.
    static let udpAttemptsBeforeTCP = 3

    let configuration: ClientTunnelConfiguration
    let logger: Logger
    private let state: Mutex<ClientState>
    private let tunPoller: Poller
    private let networkPoller: Poller
    private let threads = Mutex<[PumpThread]>([])
    private let control = DispatchQueue(label: "triglav.client.control")
    private let routes: RouteManager
    private let reversePathFilter: ReversePathFilterGuard

    public init(configuration: ClientTunnelConfiguration, logger: Logger = Logger(label: "triglav.dataplane.client")) throws(TriglavDataPlaneError) {
        self.configuration = configuration
        self.logger = logger
        tunPoller = try Poller()
        networkPoller = try Poller()
        routes = RouteManager(logger: logger)
        reversePathFilter = ReversePathFilterGuard(stateDirectory: configuration.stateDirectory, logger: logger)
        var serverAddress = sockaddr_storage()
        let serverAddressLength = SocketAddress.write(configuration.server, into: &serverAddress)
        let engine: MultipathEngine<Int>
        do {
            engine = try MultipathEngine(configuration: configuration.multipath)
        } catch {
            throw .invalidConfiguration("multipath: \(error)")
        }
        var initial = ClientState(engine: engine, retransmit: RetransmitStore(capacity: 4096),
                                  serverAddress: serverAddress, serverAddressLength: serverAddressLength)
        if configuration.multipath.pacingQueueAllowance != nil {
            initial.paced = PacedSendQueue(slotSize: max(configuration.mtuCeiling, 1500))
        }
        state = Mutex(initial)
    }

    // MARK: Lifecycle

    /// Removes leftovers of a crashed run, creates the TUN device, installs the routing policy (its routes
    /// `unreachable` until the first handshake assigns addresses, so nothing leaks while the server is away)
    /// and starts both pumps. On failure nothing stays installed and the tunnel can't be started again.
    public func start() throws(TriglavDataPlaneError) {
        let alreadyStarted = state.withLock { state in
            defer { state.started = true }
            return state.started
        }
        guard !alreadyStarted else { throw .invalidState("client tunnel already started") }
        let policy = configuration.installedPolicyRouting, table = configuration.routingTable
        try policy.validate()
        try routes.removeClientLeftovers(policy, table: table)
        reversePathFilter.restoreLeftovers()
        let tun = try TunDevice(name: configuration.tunnelInterface, mtu: configuration.mtuCeiling,
                                offloads: configuration.tunOffloads)
        do {
            try routes.installClientPolicy(routing: configuration.routing, policy: policy, table: table,
                                           firewallMark: configuration.firewallMark)
            try tunPoller.add(fd: tun.descriptor.raw, token: 0)
            try routes.bringUp(tun.name)
        } catch {
            routes.removeClient(tun: tun.name, policy: policy, table: table)
            tunPoller.remove(fd: tun.descriptor.raw)
            tun.close()
            throw error
        }
        state.withLock { $0.tun = tun }
        let tunPump = ClientTunPump(tunnel: self, tun: tun)
        let networkPump = ClientNetworkPump(tunnel: self, tun: tun)
        let tunThread = PumpThread(name: "triglav-tun-rx", wake: { [tunPoller] in tunPoller.wake() }) { tunPump.iterate() }
        let networkThread = PumpThread(name: "triglav-net-rx", wake: { [networkPoller] in networkPoller.wake() }) {
            networkPump.iterate()
        }
        threads.withLock { $0 = [tunThread, networkThread] }
        logger.info("client tunnel \(tun.name) started", metadata: ["server": "\(configuration.server)"])
    }

    /// Sends a close on every established uplink, stops the pumps, removes routes and the TUN device.
    public func stop() {
        let running = threads.withLock { threads in
            defer { threads = [] }
            return threads
        }
        for thread in running { thread.stop() }
        sendCloseOnAllUplinks()
        let tun = state.withLock { state in
            defer { state.tun = nil; state.uplinks = Array(repeating: nil, count: ClientTunnel.maximumUplinks) }
            return state.tun
        }
        // After the TUN left the state, so a routing retry still queued finds no tunnel and does nothing.
        control.sync {}
        if let tun {
            routes.removeClient(tun: tun.name, policy: configuration.installedPolicyRouting, table: configuration.routingTable)
            tun.close()
        }
        reversePathFilter.restoreAll()
        logger.info("client tunnel stopped")
    }

    // MARK: Uplinks

    /// Adds an uplink bound to `interface`. If the interface doesn't exist yet, the uplink waits for it and
    /// retries every handshake interval. Returns its ID.
    @discardableResult
    public func addUplink(interface: InterfaceName) throws(TriglavDataPlaneError) -> UplinkID {
        try addUplink(interface: interface, policy: UplinkPolicy())
    }

    /// Adds an uplink with a multipath policy (tier primary/secondary/backup/never, metered, data cap) and how it
    /// reaches the server (`.tcp` needs the configuration's `tcpFallback`).
    @discardableResult
    public func addUplink(interface: InterfaceName, policy: UplinkPolicy,
                          transport: UplinkTransportMode = .udp) throws(TriglavDataPlaneError) -> UplinkID {
        if transport == .tcp && !configuration.tcpFallback {
            throw .invalidConfiguration("uplink \(interface): transport tcp needs the TCP transport, which this tunnel has off")
        }
        let result: Result<(UplinkID, Int), TriglavDataPlaneError> = state.withLock { state in
            if state.uplinks.contains(where: { $0?.interface == interface }) {
                return .failure(.duplicateUplink(interface.rawValue))
            }
            guard let slot = state.uplinks.firstIndex(where: { $0 == nil }) else {
                return .failure(.invalidState("a tunnel carries at most \(ClientTunnel.maximumUplinks) uplinks"))
            }
            state.nextUplinkID += 1
            let id = UplinkID(state.nextUplinkID)
            var uplink = ClientUplink(id: id, interface: interface, policy: policy)
            uplink.transport = transport
            uplink.keyring.tunnelFlags = state.schedulerFlags
            // The interface's session from before it went away (link down: its close never left), replaced by the
            // first join, so the server doesn't keep it as a dead path of this tunnel.
            uplink.abandonedRemoteIndex = state.abandonedSessions.removeValue(forKey: interface)
            state.uplinks[slot] = uplink
            return .success((id, slot))
        }
        let (id, slot) = try result.get()
        openSocket(slot: slot)
        networkPoller.wake()
        logger.info("uplink \(interface) added\(transport == .tcp ? " (TCP only)" : "")", metadata: ["uplink": "\(id)"])
        return id
    }

    /// Removes the uplink bound to `interface`; its traffic moves to the others at once.
    public func removeUplink(interface: InterfaceName) throws(TriglavDataPlaneError) {
        // Removed under the lock, so the pumps never seal with this uplink's sessions again; the close
        // below is then the session's last use.
        let removed: ClientUplink? = state.withLock { state in
            guard let slot = state.uplinks.firstIndex(where: { $0?.interface == interface }) else { return nil }
            guard var uplink = state.uplinks[slot] else { return nil }
            state.uplinks[slot] = nil
            if state.creatingSlot == slot { state.creatingSlot = nil }
            try? state.engine.removeUplink(uplink.id, now: state.clock.advance(to: monotonicNow()))
            if let remoteIndex = uplink.keyring.current?.remoteIndex ?? uplink.abandonedRemoteIndex {
                // Bounded by the uplink limit: interfaces that never come back don't pile up.
                if state.abandonedSessions.count >= ClientTunnel.maximumUplinks { state.abandonedSessions.removeAll() }
                state.abandonedSessions[interface] = remoteIndex
            }
            sendClose(&uplink, state: &state)
            return uplink
        }
        guard let removed else { throw .unknownUplink(interface.rawValue) }
        if let socket = removed.socket { networkPoller.remove(fd: socket.descriptor.raw) }
        if let connection = removed.tcp {
            networkPoller.remove(fd: connection.descriptor.raw)
            connection.close()
        }
        scheduleMTUUpdate()
        control.async { [reversePathFilter] in reversePathFilter.restore(interface) }
        logger.info("uplink \(interface) removed", metadata: ["uplink": "\(removed.id)"])
    }

    /// Changes an uplink's multipath policy at runtime (tier, metered, data cap).
    public func setUplinkPolicy(interface: InterfaceName, policy: UplinkPolicy) throws(TriglavDataPlaneError) {
        let result: TriglavDataPlaneError? = state.withLock { state in
            guard let slot = state.uplinks.firstIndex(where: { $0?.interface == interface }), let id = state.uplinks[slot]?.id else {
                return .unknownUplink(interface.rawValue)
            }
            state.uplinks[slot]?.policy = policy
            guard state.engine.uplinkIDs.contains(id) else { return nil }  // applied when it is admitted
            do throws(MultipathError) {
                try state.engine.updatePolicy(state.uplinks[slot]?.enginePolicy ?? policy, for: id)
                return nil
            } catch {
                return .invalidConfiguration("policy of \(interface): \(error)")
            }
        }
        if let result { throw result }
        scheduleMTUUpdate()  // a `never` uplink doesn't count towards the TUN MTU
    }

    /// The system (netlink, via the daemon's discovery) reports `interface`'s link down (carrier lost, interface
    /// gone) or up again. Down: the multipath engine takes the uplink out of service at once (its in-flight packets
    /// are re-sent on the others) instead of waiting for blackhole detection; up: it probes the path again at once.
    /// The uplink itself stays (its socket and session wait for the link). An uplink the engine hasn't admitted yet
    /// (no session) is unaffected: it can't carry data anyway, and a handshake over a dead link doesn't complete.
    public func setSystemLink(interface: InterfaceName, isUp: Bool) throws(TriglavDataPlaneError) {
        let found: Bool = state.withLock { state in
            guard let slot = state.uplinks.firstIndex(where: { $0?.interface == interface }), let id = state.uplinks[slot]?.id else {
                return false
            }
            let now = state.clock.advance(to: monotonicNow())
            state.engine.handle(isUp ? .systemLinkUp(id, at: now) : .systemLinkDown(id, at: now))
            return true
        }
        guard found else { throw .unknownUplink(interface.rawValue) }
        scheduleMTUUpdate()  // a carrier-down uplink doesn't count towards the TUN MTU
        networkPoller.wake()  // the engine's duties changed (resends now, or probes of a link that is back)
        logger.info("uplink \(interface): system reports its link \(isUp ? "up" : "down")")
    }

    /// Interfaces of the current uplinks.
    public var uplinkInterfaces: [InterfaceName] {
        state.withLock { $0.uplinks.compactMap { $0?.interface } }
    }

    /// Switches the scheduler; takes effect with the next packet, in both directions: every frame on every uplink
    /// carries it to the server (`SchedulerFlags`), which schedules this tunnel's downloads alike. (A bare mode change
    /// always validates; if the engine ever refuses one, the old scheduler stays and the refusal is logged.)
    public func setScheduler(_ mode: SchedulerMode) {
        let refusal: MultipathError? = state.withLock { state in
            do throws(MultipathError) {
                try state.engine.setScheduler(mode)
                state.announceScheduler()
                return nil
            } catch {
                return error
            }
        }
        if let refusal {
            logger.error("scheduler \(mode.rawValue) refused: \(refusal)")
        } else {
            logger.info("scheduler set to \(mode.rawValue)")
        }
    }

    /// The addresses the server assigned, nil before the first handshake completes.
    public var addresses: TunnelAddresses? { state.withLock { $0.assignment } }

    /// Whether at least one uplink has an established session.
    public var isConnected: Bool {
        state.withLock { $0.uplinks.contains { $0?.keyring.current != nil } }
    }

    public func statistics() -> ClientTunnelStatistics {
        state.withLock { state in
            var statistics = ClientTunnelStatistics(
                tunnelInterface: state.tun?.name, addresses: state.assignment, scheduler: state.engine.scheduler,
                uplinks: state.uplinks.compactMap { uplink in
                    guard let uplink else { return nil }
                    var status = uplink.status
                    status.state = uplink.socket == nil ? "no-socket" : uplink.keyring.current == nil ? "connecting" : "established"
                    status.transport = uplink.tcp == nil && uplink.transport == .udp ? "udp" : "tcp"
                    status.sendErrors = UInt64(uplink.socket?.sendErrors ?? 0)
                    status.segmentedDatagrams = uplink.socket?.segmentedDatagrams ?? 0
                    status.segmentationOffload = uplink.socket?.segmentationOffload ?? false
                    status.receiveCoalescing = uplink.socket?.coalescesReceives ?? false
                    status.routeToServer = uplink.isEstablished ? true : uplink.routeToServer
                    status.path = state.engine.statistics(for: uplink.id)
                    (status.engineTransmittedBytes, status.engineReceivedBytes) = uplink.engineCounts(
                        transmitted: status.path?.txBytes ?? 0, received: status.path?.rxBytes ?? 0)
                    return status
                },
                droppedNoUplink: state.droppedNoUplink, resentPackets: state.resentPackets, readPackets: state.readPackets,
                tunOffload: state.tunOffload.withJoinedWrites(state.tunJoinedWrites), queueDrops: state.pacedDrops, congestionMarks: state.engine.congestionMarks,
                ecnDecapsulation: state.ecnDecapsulation,
                requestedResends: state.retransmit.requestedResends,
                reorder: state.engine.reorderStatistics, routingFailure: state.routingFailure)
            statistics.tunnelMTU = state.appliedMTU
            statistics.mssClamped = state.mssClamped
            statistics.dnsOffer = state.dnsOffer
            return statistics
        }
    }

    // MARK: Internals shared with the pumps

    func withState<R>(_ body: (inout ClientState) -> R) -> R { state.withLock { body(&$0) } }

    /// Opens the uplink's socket if its interface exists now. Called on add and from the timer. The socket
    /// sends from the interface's current address from its first datagram on (looked up here, then refreshed
    /// by `scheduleMTUUpdate`'s pass, and at once when a send from it fails).
    func openSocket(slot: Int) {
        guard let interface = state.withLock({ $0.uplinks[slot]?.socket == nil ? $0.uplinks[slot]?.interface : nil }) else { return }
        do {
            var options = UDPSocket.Options()
            options.device = interface
            options.mark = configuration.firewallMark
            options.sourceRejected = { [weak self] in self?.scheduleMTUUpdate() }
            options.coalescesReceives = true  // read by `ClientNetworkPump`, whose batch has room for runs
            let socket = try UDPSocket(family: SocketFamily(of: configuration.server.address), options: options,
                                       label: "uplink \(interface)")
            let path = UplinkPaths.lookUp([interface], server: configuration.server, mark: configuration.firewallMark, logger: logger)
            socket.setSource(path[interface]?.source)
            let installed = state.withLock { state in
                guard state.uplinks[slot]?.interface == interface, state.uplinks[slot]?.socket == nil else { return false }
                state.uplinks[slot]?.socket = socket
                return true
            }
            if installed {
                // Off the pump thread; the queue keeps it ordered with the restore on removal.
                control.async { [reversePathFilter] in reversePathFilter.loosen(interface) }
                try networkPoller.add(fd: socket.descriptor.raw, token: UInt64(slot))
                scheduleMTUUpdate()
            }
        } catch {
            logger.debug("uplink \(interface) has no socket yet: \(error)")
        }
    }

    /// Refreshes the uplinks' paths off the packet path (on the control queue, which serialises the updates):
    /// the source address each uplink socket sends from, and the TUN MTU from their path MTUs.
    /// Called when an uplink's socket opens or closes, when an uplink is removed, changes tier or its link state,
    /// when a send from a stale source fails, and every `ClientNetworkPump.mtuCheckInterval` from the pump's
    /// timers, which catches address, route and MTU changes whoever made them.
    /// Also checks, for uplinks without a session, whether a route to the server leads through them.
    func scheduleMTUUpdate() {
        control.async { [self] in
            updateMTU()
            checkRoutesToServer()
        }
    }

    /// Marks uplinks that have a socket but no session, and no route to the server through their interface:
    /// their socket (SO_BINDTODEVICE, wildcard address) can't reach it — IPv6 sends fail with ENETUNREACH,
    /// IPv4 ones ARP for the server's address on the link and go nowhere. Warns once per change.
    private func checkRoutesToServer() {
        let candidates = state.withLock { state in
            state.uplinks.compactMap { uplink in uplink.flatMap { $0.socket != nil && !$0.isEstablished ? $0.interface : nil } }
        }
        guard !candidates.isEmpty,
              let routed = routes.interfacesRouting(to: configuration.server.address, among: candidates,
                                                    ignoredTable: configuration.routingTable) else { return }
        let newlyUnrouted: [InterfaceName] = state.withLock { state in
            var changed: [InterfaceName] = []
            for slot in state.uplinks.indices {
                guard let interface = state.uplinks[slot]?.interface, candidates.contains(interface) else { continue }
                let hasRoute = routed.contains(interface)
                if state.uplinks[slot]?.routeToServer != hasRoute, !hasRoute { changed.append(interface) }
                state.uplinks[slot]?.routeToServer = hasRoute
            }
            return changed
        }
        for interface in newlyUnrouted {
            logger.warning("""
                uplink \(interface) has no route to the server \(configuration.server.address) through it; it can't carry \
                the tunnel until one exists (e.g. a default route via its gateway, with a higher metric than the main one)
                """)
        }
    }

    /// Outer bytes around an inner packet: IP header of the server's family, UDP header, Triglav transport
    /// header, inner header and AEAD tag (docs/DATAPLANE.md, "TUN MTU").
    var tunnelOverhead: Int { TunnelMTU.overhead(outerIPv4: configuration.server.address.isIPv4) }

    /// Hands each uplink's path MTU from the kernel to its blackhole search (as the largest datagram: minus the outer IP
    /// and UDP headers) and returns the path MTU that counts for each operational uplink: the kernel's, or less where
    /// a search found a hop that drops larger datagrams silently (logged when a finding is new). The multipath engine
    /// learns each uplink's largest datagram from it (`setLargestDatagram`).
    private func followPathMTUs(_ paths: [InterfaceName: UplinkPath]) -> [InterfaceName: Int] {
        let outerHeaders = tunnelOverhead - WireLayout.transportOverhead
        let isIPv6 = !configuration.server.address.isIPv4
        // Nothing above the largest datagram the tunnel sends is searched (a jumbo-frame link's 9000 bytes): it would
        // never be used, and it wouldn't fit the peer's receive buffers.
        let largestSent = configuration.mtuCeiling + WireLayout.transportOverhead
        let (effective, newlyFound) = state.withLock { state -> ([InterfaceName: Int], [(InterfaceName, Int)]) in
            let now = state.clock.advance(to: monotonicNow())
            var effective: [InterfaceName: Int] = [:], limits: [InterfaceName: Int] = [:]
            for slot in state.uplinks.indices {
                guard let interface = state.uplinks[slot]?.interface else { continue }
                let kernel = paths[interface].flatMap { $0.isOperational ? $0.pathMTU : nil }
                if state.uplinks[slot]?.mtuSearch == nil {
                    state.uplinks[slot]?.mtuSearch = PathMTUSearch(configuration: .forServer(ipv6: isIPv6))
                }
                state.uplinks[slot]?.mtuSearch?.setUpperBound(kernel.map { min($0 - outerHeaders, largestSent) }, now: now)
                let limit = state.uplinks[slot]?.mtuSearch?.blackholeLimit
                if let limit { limits[interface] = limit }
                let pathMTU = kernel.map { min($0, (limit ?? $0) + outerHeaders) }
                effective[interface] = pathMTU
                // The scheduler keeps datagrams this path can't carry off it (while the IPv6 floor holds the TUN above it).
                if let id = state.uplinks[slot]?.id { try? state.engine.setLargestDatagram(pathMTU.map { $0 - outerHeaders }, for: id) }
                state.uplinks[slot]?.status.pathMTU = pathMTU
                state.uplinks[slot]?.status.pathMTUBlackhole = limit != nil
            }
            let found = limits.filter { state.loggedBlackholeLimits[$0.key] != $0.value }.map { ($0.key, $0.value) }
            state.loggedBlackholeLimits = limits
            return (effective, found)
        }
        for (interface, limit) in newlyFound {
            logger.warning("""
                uplink \(interface): datagrams above \(limit) bytes don't reach the server and nothing says so (no ICMP \
                "fragmentation needed"): a path MTU blackhole, found by probing; its path MTU counts as \(limit + outerHeaders)
                """)
        }
        return effective
    }

    /// Points every uplink socket at its interface's current address, then sets the TUN MTU from the smallest
    /// path MTU of the uplinks that carry traffic (a socket, tier other than `never`, link up with carrier)
    /// minus the overhead: lowered as soon as a path shrinks, raised again when the small one leaves.
    /// Control queue only.
    private func updateMTU() {
        let (uplinks, tun, applied, carriesIPv6) = state.withLock { state in
            (state.uplinks.compactMap { $0 }.map { (interface: $0.interface, counts: $0.socket != nil && $0.policy.tier != .never) },
             state.tun, state.appliedMTU, state.assignment?.ipv6 != nil)
        }
        let paths = UplinkPaths.lookUp(uplinks.map(\.interface), server: configuration.server,
                                       mark: configuration.firewallMark, logger: logger)
        let moved: [(InterfaceName, IPAddress?)] = state.withLock { state in
            var moved: [(InterfaceName, IPAddress?)] = []
            for slot in state.uplinks.indices {
                guard let uplink = state.uplinks[slot], let socket = uplink.socket, let path = paths[uplink.interface] else { continue }
                if socket.sourceAddress != path.source {
                    moved.append((uplink.interface, path.source))
                    // Another address is often another network (roaming): its path MTU is searched again.
                    state.uplinks[slot]?.mtuSearch?.searchAgain(now: state.clock.advance(to: monotonicNow()))
                }
                socket.setSource(path.source)
            }
            return moved
        }
        for (interface, source) in moved {
            logger.info("uplink \(interface) sends from \(source.map { "\($0)" } ?? "the address the kernel picks (none usable on it)")")
        }
        guard let tun else { return }
        let pathMTUs = followPathMTUs(paths)
        let counted = uplinks.filter(\.counts).compactMap { uplink in pathMTUs[uplink.interface].map { (uplink.interface, $0) } }
        let floor = carriesIPv6 ? TunnelMTU.ipv6Floor : TunnelMTU.ipv4Floor
        let target = TunnelMTU.forUplinks(linkMTUs: counted.map(\.1), overhead: tunnelOverhead, maximum: configuration.mtuCeiling,
                                          minimum: floor)
        let belowFloor = Set(counted.filter { $0.1 - tunnelOverhead < floor }.map(\.0))
        let newlyBelow: Set<InterfaceName> = state.withLock { state in
            defer { state.uplinksBelowMTUFloor = belowFloor }
            return belowFloor.subtracting(state.uplinksBelowMTUFloor)
        }
        for (interface, pathMTU) in counted where newlyBelow.contains(interface) {
            logger.warning("""
                uplink \(interface): path MTU \(pathMTU) to the server leaves room for \(pathMTU - tunnelOverhead)-byte inner packets, \
                below the tunnel's floor of \(floor)\(carriesIPv6 ? " (IPv6 inside needs 1280)" : ""); larger packets scheduled \
                on it are refused (EMSGSIZE, counted as send errors), never fragmented
                """)
        }
        guard target != applied else { return }
        do {
            try routes.setMTU(target, of: tun.name)
            state.withLock { $0.appliedMTU = target }
            let described = counted.map { "\($0.0) \($0.1)" }.joined(separator: ", ")
            logger.info("tunnel MTU \(target) (uplink path MTUs: \(described.isEmpty ? "none known" : described); overhead \(tunnelOverhead))")
        } catch {
            logger.error("setting the tunnel MTU to \(target) failed: \(error)")
        }
    }

    /// Drops the socket of an uplink whose interface vanished, so the timer reopens it when it is back.
    func dropSocket(slot: Int) {
        let socket: UDPSocket? = state.withLock { state in
            defer { state.uplinks[slot]?.socket = nil; state.resetUplink(slot, now: state.clock.advance(to: monotonicNow())) }
            return state.uplinks[slot]?.socket
        }
        if let socket {
            networkPoller.remove(fd: socket.descriptor.raw)
            scheduleMTUUpdate()
        }
    }

    func makeInitiator(request: TunnelRequest) -> HandshakeInitiator? {
        do {
            return try HandshakeInitiator(configuration: InitiatorConfiguration(
                identity: configuration.identity, serverPublicKey: configuration.serverKey, request: request))
        } catch {
            logger.error("cannot start a handshake: \(error)")
            return nil
        }
    }

    /// Applies a (new) assignment: addresses and routes, off the packet path.
    func assignmentChanged(_ assignment: TunnelAddresses, tun: InterfaceName) {
        logger.info("server assigned \(assignment)")
        control.async { [self] in
            // The floor first: an assignment with IPv6 needs a TUN MTU of at least 1280 before its address goes on.
            updateMTU()
            applyAssignment(assignment, tun: tun, attempt: 1)
        }
    }

    /// Longest wait between attempts to apply an assignment that failed (the first retry is after 1 s).
    static let routingRetryLimit: Duration = .seconds(10)

    /// Sets the assigned addresses and switches the tunnel routes to the TUN; on failure, reports it (error
    /// log, `ClientTunnelStatistics.routingFailure`) and retries with growing intervals until it succeeds, a
    /// newer assignment supersedes it, or the tunnel stops. Meanwhile the routes installed at start (or by the
    /// previous assignment) stay: traffic is blocked or still uses the old addresses, it never leaks.
    /// Control queue only.
    private func applyAssignment(_ assignment: TunnelAddresses, tun: InterfaceName, attempt: Int) {
        let current = state.withLock { $0.tun?.name == tun && $0.assignment == assignment }
        guard current else { return }
        do {
            try routes.applyClient(tun: tun, assignment: assignment, routing: configuration.routing,
                                   table: configuration.routingTable)
            let hadFailed = state.withLock { state in
                defer { state.routingFailure = nil }
                return state.routingFailure != nil
            }
            if hadFailed { logger.notice("tunnel addresses and routes applied at attempt \(attempt)") }
        } catch {
            let delay = min(Duration.seconds(attempt), Self.routingRetryLimit)
            let repeated = state.withLock { state in
                defer { state.routingFailure = error.description }
                return state.routingFailure == error.description
            }
            let message: Logger.Message = """
                applying tunnel addresses/routes failed (attempt \(attempt)); the previous routes stay (unreachable \
                before the first assignment), retrying in \(delay): \(error)
                """
            if repeated { logger.debug(message) } else { logger.error(message) }
            let seconds = Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
            control.asyncAfter(deadline: .now() + seconds) { [self] in applyAssignment(assignment, tun: tun, attempt: attempt + 1) }
        }
    }

    /// Sends an authenticated close on every established uplink. Call only after the pumps stopped: the
    /// close is sealed with the live session, so no other thread may seal with it concurrently.
    private func sendCloseOnAllUplinks() {
        state.withLock { state in
            for slot in state.uplinks.indices {
                guard var uplink = state.uplinks[slot] else { continue }
                sendClose(&uplink, state: &state)
                state.uplinks[slot] = uplink
            }
        }
    }

    /// Seals and sends a close with the uplink's current session (which then refuses further use).
    private func sendClose(_ uplink: inout ClientUplink, state: inout ClientState) {
        guard uplink.keyring.current != nil, let socket = uplink.socket else { return }
        var buffer = [UInt8](repeating: 0, count: 64)
        let now = monotonicNow()
        guard let length = try? buffer.withUnsafeMutableBytes({ (raw) throws(ProtocolError) in
            try uplink.keyring.sealControl(.close(.shutdown), in: raw, now: now)
        }) else { return }
        if let connection = uplink.tcp {
            buffer.withUnsafeBytes { _ = connection.send(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
            return
        }
        withUnsafePointer(to: &state.serverAddress) { address in
            buffer.withUnsafeBytes { socket.sendOne(UnsafeRawBufferPointer(rebasing: $0[0..<length]), to: address, length: state.serverAddressLength) }
        }
    }
}

/// One uplink's state, owned by `ClientState`.
struct ClientUplink {
    let id: UplinkID
    let interface: InterfaceName
    var socket: UDPSocket?
    /// The uplink's sessions across rekeys; `current` seals.
    var keyring = UplinkKeyring()
    /// The handshake in flight, if any, and whether it creates the tunnel.
    var initiator: HandshakeInitiator?
    var initiatorCreates = false
    /// The handshake in flight is a UDP retry while the uplink runs over TCP.
    var initiatorOverUDP = false
    /// UDP with the TCP fallback, or TCP only.
    var transport = UplinkTransportMode.udp
    /// The TCP fallback connection, when UDP didn't work on this uplink (or the uplink is TCP only); `tcpSince` is when
    /// it started.
    var tcp: TCPConnection?
    var tcpSince: Nanoseconds = 0
    /// When a TCP-only uplink last tried to connect (its attempts are paced by the handshake retry interval).
    var lastTCPConnect: Nanoseconds = 0
    /// Handshake messages sent over UDP since the server last answered on this uplink.
    var unansweredUDP = 0
    var lastReceive: Nanoseconds = 0
    var lastSend: Nanoseconds = 0
    var lastProbe: Nanoseconds = 0
    /// When the socket was last (re)opened or a handshake last started, for retry pacing.
    var lastAttempt: Nanoseconds = 0
    var status: UplinkStatus
    /// Tier, metered flag and data cap, handed to the multipath engine when the uplink is admitted. The cap
    /// counts from when the uplink was added (`enginePolicy` converts it to the engine's current path).
    var policy: UplinkPolicy
    /// What the engine counted on this uplink's earlier paths: a reset takes the path out of the engine, whose
    /// counters restart at re-admission, so these keep the exported counts (and the cap) cumulative.
    var engineTransmittedBefore: UInt64 = 0
    var engineReceivedBefore: UInt64 = 0
    /// Probing for a hop that drops large datagrams silently (a PMTU blackhole); started by the control queue's pass
    /// once the kernel's path MTU for the uplink is known.
    var mtuSearch: PathMTUSearch?

    /// The policy for the engine's current path: the cap less what earlier paths already sent.
    var enginePolicy: UplinkPolicy {
        var engine = policy
        engine.dataCapBytes = policy.dataCapBytes.map { $0 > engineTransmittedBefore ? $0 - engineTransmittedBefore : 0 }
        return engine
    }

    /// Adds what the engine counted on the path being removed (its last `txBytes`/`rxBytes`).
    mutating func retirePath(transmitted: UInt64, received: UInt64) {
        (engineTransmittedBefore, engineReceivedBefore) = engineCounts(transmitted: transmitted, received: received)
    }

    /// Engine counts since the uplink was added, given its current path's (0 while out of the engine).
    func engineCounts(transmitted: UInt64, received: UInt64) -> (transmitted: UInt64, received: UInt64) {
        (Self.saturatingSum(engineTransmittedBefore, transmitted), Self.saturatingSum(engineReceivedBefore, received))
    }

    static func saturatingSum(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : sum
    }
    /// Whether a route to the server leads through the interface (checked while not established; nil: unknown).
    var routeToServer: Bool?
    /// Start of the current receive-rate window and `status.receivedBytes` then.
    private var rateWindowStart: Nanoseconds?
    private var rateWindowBytes: UInt64 = 0

    /// Length of the window `status.receiveRateBitsPerSecond` is measured over.
    static let rateInterval: Nanoseconds = Nanoseconds.second

    /// Closes the receive-rate window when it is `rateInterval` old: the rate is the bytes received in it over
    /// its real length. Called from the pump's timers (every 100 ms), so the figure is at most 1.1 s old.
    mutating func updateReceiveRate(now: Nanoseconds) {
        guard let start = rateWindowStart else {
            rateWindowStart = now
            rateWindowBytes = status.receivedBytes
            return
        }
        let elapsed = now &- start
        guard elapsed >= Self.rateInterval else { return }
        let bits = Double(status.receivedBytes &- rateWindowBytes) * 8
        status.receiveRateBitsPerSecond = UInt64(bits * Double(Nanoseconds.second) / Double(elapsed))
        rateWindowStart = now
        rateWindowBytes = status.receivedBytes
    }

    init(id: UplinkID, interface: InterfaceName, policy: UplinkPolicy = UplinkPolicy()) {
        self.id = id
        self.interface = interface
        self.policy = policy
        status = UplinkStatus(id: id, interface: interface, state: "connecting")
    }

    /// The server's index of the session this uplink dropped (silence, a closed TCP fallback, a close); the next
    /// join names it as replaced, so the server moves the uplink's identity (and its place in the client's
    /// engine) to the new session at once instead of keeping a dead path until its session timeout. The server
    /// ignores it when that session is gone or belongs to another tunnel.
    var abandonedRemoteIndex: UInt32?

    /// Forgets sessions and any handshake in flight (the uplink will handshake again).
    mutating func resetSessions() {
        if let current = keyring.current { abandonedRemoteIndex = current.remoteIndex }
        keyring = UplinkKeyring(tunnelFlags: keyring.tunnelFlags)
        initiator = nil
        initiatorCreates = false
        initiatorOverUDP = false
    }

    var isEstablished: Bool { keyring.current != nil }
}

/// Everything the pumps share, behind the tunnel's mutex. Locked once per batch, never per packet.
struct ClientState: @unchecked Sendable {
    var started = false
    var tun: TunDevice?
    var uplinks: [ClientUplink?] = Array(repeating: nil, count: ClientTunnel.maximumUplinks)
    var nextUplinkID: UInt32 = 0
    /// The tunnel's multipath engine: scheduler, per-uplink quality, reorder buffer. Its reorder buffer
    /// holds slots of the network pump's `PacketPool`.
    var engine: MultipathEngine<Int>
    /// Recently sent packets, for the engine's resend duties.
    let retransmit: RetransmitStore
    var serverAddress: sockaddr_storage
    var serverAddressLength: socklen_t
    var assignment: TunnelAddresses?
    /// The server's DNS offer, as it last answered a keepalive with one (it answers each while it has one).
    var dnsOffer: DNSOffer?
    /// Why the current assignment's addresses and routes couldn't be applied (retried); nil once applied.
    var routingFailure: String?
    /// The tunnel this client belongs to on the server, and the token later uplinks and rekeys present.
    var tunnelID: UInt64?
    var joinToken: JoinToken?
    /// Slot of the uplink whose handshake is creating the tunnel (only one at a time: a create replaces
    /// the server's previous tunnel of this identity).
    var creatingSlot: Int?
    var transmitSequence: UInt32 = 0
    var droppedNoUplink: UInt64 = 0
    var resentPackets: UInt64 = 0
    /// Packets taken from the TUN device.
    var readPackets: UInt64 = 0
    /// TCP SYNs and SYN-ACKs whose MSS option the clamp lowered, both directions (`MSSClamp`).
    var mssClamped: UInt64 = 0
    var tunOffload = TunOffloadCounters()
    /// `TunDevice.joinedWrites` as the network pump last saw it.
    var tunJoinedWrites: (superPackets: UInt64, segments: UInt64) = (0, 0)
    /// Sender-side pacing (the configuration paces): the shared queue of unnumbered packets and the resend lanes.
    var paced: PacedSendQueue?
    /// Pacing: when the queue may send again (0 = now; nil: nothing queued). The TUN pump sleeps until then; the
    /// network pump sets 0 and wakes it when it queues resends.
    var pacingDeadline: Nanoseconds?
    /// Pacing: packets refused by the AQM or a full queue, and shed at its head.
    var pacedDrops: UInt64 = 0
    /// The outer ECN field of received data frames, applied to their inner packets (RFC 6040).
    var ecnDecapsulation = ECNDecapsulationCounters()
    var clock = EngineClock()
    var appliedMTU = 0
    /// Uplinks whose path MTU is below the TUN MTU's floor plus the overhead (warned about once each time).
    var uplinksBelowMTUFloor: Set<InterfaceName> = []
    /// The blackhole limit last logged per uplink (datagram bytes), so a finding is logged when it changes.
    var loggedBlackholeLimits: [InterfaceName: Int] = [:]
    /// The server's index of the last session of each removed uplink, by interface (see `addUplink`).
    var abandonedSessions: [InterfaceName: UInt32] = [:]

    /// The engine's scheduler as the tunnel flags every frame carries to the server (`SchedulerFlags`).
    var schedulerFlags: UInt8 { SchedulerFlags.encode(engine.scheduler, redundantCopies: engine.configuration.redundantCopies) }

    /// Puts the engine's (new) scheduler into every uplink's frames from the next one on.
    mutating func announceScheduler() {
        let flags = schedulerFlags
        for slot in uplinks.indices { uplinks[slot]?.keyring.tunnelFlags = flags }
    }

    /// Slot of the uplink with this ID.
    func slot(of id: UplinkID) -> Int? {
        for slot in uplinks.indices where uplinks[slot]?.id == id { return slot }
        return nil
    }

    /// Forgets an uplink's sessions and takes it out of the multipath engine until it handshakes again.
    mutating func resetUplink(_ slot: Int, now: UInt64) {
        guard let id = uplinks[slot]?.id else { return }
        uplinks[slot]?.resetSessions()
        uplinks[slot]?.lastAttempt = 0
        // The next session may take another way (the path went silent, the server restarted): search its MTU again.
        uplinks[slot]?.mtuSearch?.searchAgain(now: now)
        if let path = engine.statistics(for: id) { uplinks[slot]?.retirePath(transmitted: path.txBytes, received: path.rxBytes) }
        try? engine.removeUplink(id, now: now)
        if creatingSlot == slot { creatingSlot = nil }
    }

    /// Puts a freshly established uplink into the multipath engine (probing first).
    mutating func admitUplink(_ slot: Int, now: UInt64) {
        guard let id = uplinks[slot]?.id, let policy = uplinks[slot]?.enginePolicy, !engine.uplinkIDs.contains(id) else { return }
        try? engine.addUplink(id, policy: policy, now: now)
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// The TUN → uplinks pump: reads a batch of packets, picks an uplink for each, seals them into that
/// uplink's send batch, and sends every batch with one sendmmsg.
final class ClientTunPump: @unchecked Sendable {
    private let tunnel: ClientTunnel
    private let tun: TunDevice
    private let poller: Poller
    private let staging = TunReadBatch()
    private let outgoing: [DatagramBatch]
    private var sockets: [UDPSocket?]
    private static let batchSize = 64
    private static let idleWait = 200 * Nanoseconds.millisecond
    /// Packets released per service at most (the rest at the next wake-up, at once).
    private static let releaseBudget = 256
    private let pacing: Bool
    /// `ClientState.pacingDeadline` as of the last service.
    private var nextPacingWake: Nanoseconds?

    init(tunnel: ClientTunnel, tun: TunDevice) {
        self.tunnel = tunnel
        self.tun = tun
        poller = tunnel.tunPollerForPump
        outgoing = (0..<ClientTunnel.maximumUplinks).map { _ in DatagramBatch(capacity: Self.batchSize, slotSize: TunnelMTU.largestDatagram) }
        sockets = Array(repeating: nil, count: ClientTunnel.maximumUplinks)
        pacing = tunnel.configuration.multipath.pacingQueueAllowance != nil
    }

    func iterate() {
        do {
            if pacing {
                let now = monotonicNow()
                let wait = nextPacingWake.map { $0 > now ? min($0 - now, Self.idleWait) : 0 } ?? Self.idleWait
                var woken = false
                try poller.wait(timeoutNanoseconds: wait) { token in if token == Poller.wakeToken { woken = true } }
                if woken || nextPacingWake.map({ $0 <= monotonicNow() }) ?? false { servicePaced() }
            } else {
                try poller.wait(timeoutMilliseconds: 200) { _ in }
            }
        } catch {
            return
        }
        staging.drain(tun, dispatch: dispatch)
    }

    private func dispatch(_ count: Int) {
        let now = monotonicNow()
        tunnel.withState { state in
            // The engine needs one non-decreasing clock across both pump threads.
            let now = state.clock.advance(to: now)
            state.readPackets &+= UInt64(count)
            state.tunOffload = staging.offloadCounters
            for slot in 0..<ClientTunnel.maximumUplinks { sockets[slot] = state.uplinks[slot]?.socket }
            for index in 0..<count {
                let length = staging.length(index)
                let source = staging.slot(index)
                let body = UnsafeMutableRawBufferPointer(rebasing: source[WireLayout.bodyOffset..<(WireLayout.bodyOffset + length)])
                let packet = UnsafeRawBufferPointer(body)
                let tcp = PacketClassifier.tcpHeader(packet)  // once per packet, for the clamp and the ACK test
                // A SYN of a host the client routes for advertises its own link's MSS: lowered to what the tunnel carries.
                if let tcp, state.appliedMTU > 0, MSSClamp.clamp(body, tcp: tcp, mtu: state.appliedMTU) { state.mssClamped &+= 1 }
                let isAcknowledgement = tcp.map { PacketClassifier.isPureTCPAck(packet, tcp: $0) } ?? false
                // Paced (aggregate mode): queued unnumbered, sent below or later as an uplink can take it. A download's
                // pure ACKs are not: they are its feedback, small, and go at once on the uplink fastest in our direction.
                if let paced = state.paced, !isAcknowledgement, state.engine.scheduler == .aggregate {
                    if paced.admit(packet, wireLength: length + WireLayout.transportOverhead, engine: &state.engine, now: now) {
                        state.pacingDeadline = 0
                    } else {
                        state.pacedDrops &+= 1
                    }
                    continue
                }
                // A download's ACKs stay on the uplink that is fastest in our direction (see `schedule`).
                let selection = state.engine.schedule(packetLength: length + WireLayout.transportOverhead,
                                                      flowKey: FlowKey(packet: packet), now: now,
                                                      isAcknowledgement: isAcknowledgement)
                guard !selection.isEmpty else {
                    state.droppedNoUplink &+= 1
                    continue
                }
                let sequence = state.transmitSequence
                state.transmitSequence &+= 1
                state.retransmit.store(sequence: sequence, packet: packet, sentOn: selection.first)
                for id in selection { send(packet, sequence: sequence, on: id, now: now, state: &state) }
            }
            if pacing { serviceDue(now: now, state: &state) }
        }
        flush()
    }

    /// Sends what the pacer lets go now, if the queue's deadline has come.
    private func servicePaced() {
        let now = monotonicNow()
        tunnel.withState { state in
            let now = state.clock.advance(to: now)
            for slot in 0..<ClientTunnel.maximumUplinks { sockets[slot] = state.uplinks[slot]?.socket }
            serviceDue(now: now, state: &state)
        }
        flush()
    }

    /// The paced queue's releases at `now` (`PacedSendQueue.next`) into the uplinks' batches; its next deadline.
    private func serviceDue(now: Nanoseconds, state: inout ClientState) {
        guard let paced = state.paced, let due = state.pacingDeadline, due <= now else {
            nextPacingWake = state.pacingDeadline
            return
        }
        var budget = Self.releaseBudget
        while budget > 0, let release = paced.next(engine: &state.engine, now: now) {
            budget -= 1
            switch release {
            case .shed:
                state.pacedDrops &+= 1
            case .data(let id, let slot):
                let packet = paced.packet(slot)
                // Numbered only now: a packet shed or dropped before this point leaves the receiver no gap.
                let sequence = state.transmitSequence
                state.transmitSequence &+= 1
                state.retransmit.store(sequence: sequence, packet: packet, sentOn: id)
                send(packet, sequence: sequence, on: id, now: now, state: &state)
                paced.release(slot)
            case .resend(let id, let sequence):
                guard let packet = state.retransmit.packet(sequence: sequence) else { continue }
                if send(packet, sequence: sequence, on: id, now: now, state: &state, countAsNew: false) { state.resentPackets &+= 1 }
            }
        }
        if budget == 0 {
            state.pacingDeadline = now
        } else {
            state.pacingDeadline = paced.nextWake(engine: state.engine, uplinks: state.uplinks.lazy.compactMap { $0?.id.rawValue },
                                                  now: now)
        }
        nextPacingWake = state.pacingDeadline
    }

    /// Seals `packet` with `sequence` for uplink `id` into its batch (sending a full one first) or onto its
    /// fallback connection, and reports it to the engine. False when the uplink can't send.
    @discardableResult
    private func send(_ packet: UnsafeRawBufferPointer, sequence: UInt32, on id: UplinkID, now: Nanoseconds,
                      state: inout ClientState, countAsNew: Bool = true) -> Bool {
        guard let slot = state.slot(of: id), let socket = state.uplinks[slot]?.socket else { return false }
        let batch = outgoing[slot]
        if batch.count == batch.capacity { socket.send(batch) }  // a paced round after a stall: send it now
        guard let counter = state.uplinks[slot]?.keyring.current?.nextSendCounter else { return false }
        let target = batch.slot(batch.count)
        UnsafeMutableRawBufferPointer(rebasing: target[WireLayout.bodyOffset...]).copyMemory(from: packet)
        // Sealed in place: the session must not be copied per packet.
        guard let sealed = try? state.uplinks[slot]?.keyring.seal(.data, tunnelSequence: sequence, bodyLength: packet.count,
                                                                  in: target, now: now) else { return false }
        if let connection = state.uplinks[slot]?.tcp {
            // TCP fallback: framed onto the connection; the batch slot is reused.
            connection.send(UnsafeRawBufferPointer(rebasing: target[0..<sealed]))
        } else {
            withUnsafePointer(to: &state.serverAddress) { address in
                socket.withSource { source in
                    batch.prepareSend(batch.count, length: sealed, address: address,
                                      addressLength: state.serverAddressLength, localAddress: source,
                                      ecn: PacketClassifier.outerECN(for: packet))
                }
            }
            batch.count += 1
        }
        state.uplinks[slot]?.lastSend = now
        if countAsNew {
            state.uplinks[slot]?.status.transmittedPackets &+= 1
            state.uplinks[slot]?.status.transmittedBytes &+= UInt64(packet.count)
        }
        state.engine.handle(.packetSent(id, counter: counter, sequence: sequence, bytes: sealed, at: now))
        return true
    }

    private func flush() {
        for slot in 0..<ClientTunnel.maximumUplinks where outgoing[slot].count > 0 {
            if let socket = sockets[slot] { socket.send(outgoing[slot]) } else { outgoing[slot].count = 0 }
        }
        for slot in 0..<ClientTunnel.maximumUplinks { sockets[slot] = nil }
    }
}

extension ClientTunnel {
    var tunPollerForPump: Poller { tunPoller }
    var networkPollerForPump: Poller { networkPoller }
}

extension UplinkKeyring {
    /// Seals a control frame with the current session.
    mutating func sealControl(_ frame: ControlFrame, flags: UInt8 = 0, in buffer: UnsafeMutableRawBufferPointer,
                              now: UInt64) throws(ProtocolError) -> Int {
        frame.serialize(into: UnsafeMutableRawBufferPointer(rebasing: buffer[WireLayout.bodyOffset...]))
        return try seal(frame.frameType, flags: flags, bodyLength: frame.bodyLength, in: buffer, now: now)
    }
}
