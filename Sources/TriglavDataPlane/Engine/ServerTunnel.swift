internal import CTriglavShims
#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import Synchronization
import TriglavCore
import TriglavCrypto
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
    public var mtu: Int = MAX_PAYLOAD
    /// Masquerade tunnel traffic leaving through other interfaces (nftables table `inet triglav`).
    public var masquerade = true
    /// Enable forwarding and NAT at all (tests that only talk to the server itself can turn it off).
    public var configureNetwork = true
    /// A client uplink that was silent this long no longer gets packets (its client probes much more often).
    public var uplinkTimeout: Duration = .milliseconds(1200)
    /// A session silent this long is forgotten.
    public var sessionTimeout: Duration = .seconds(120)
    public var reorderHold: Duration = .milliseconds(30)

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

    public init(configuration: ServerTunnelConfiguration, logger: Logger = Logger(label: "triglav.dataplane.server")) throws(TriglavDataPlaneError) {
        self.configuration = configuration
        self.logger = logger
        tunPoller = try Poller()
        networkPoller = try Poller()
        routes = RouteManager(logger: logger)
        let authorized = configuration.clients.map { key, addresses in
            AuthorizedClient(publicKey: key, ipv4: addresses.ipv4, ipv6: addresses.ipv6)
        }
        state = Mutex(ServerState(responder: HandshakeResponder(identity: configuration.identity, authorizedClients: authorized)))
    }

    /// Opens the listeners and the TUN device, configures forwarding/NAT, starts the pumps.
    public func start() throws(TriglavDataPlaneError) {
        var sockets: [UDPSocket] = []
        for endpoint in configuration.listen {
            var options = UDPSocket.Options()
            options.localEndpoint = endpoint
            options.packetInfo = true
            options.bufferBytes = 16 << 20
            sockets.append(try UDPSocket(family: SocketFamily(of: endpoint.address), options: options, label: "listener \(endpoint)"))
        }
        let tun = try TunDevice(name: configuration.tunnelInterface, mtu: configuration.mtu)
        if configuration.configureNetwork {
            try routes.applyServer(tun: tun.name, addresses: configuration.tunnelAddresses, masquerade: configuration.masquerade)
        } else {
            try routes.applyServer(tun: tun.name, addresses: configuration.tunnelAddresses, masquerade: false)
        }
        for (index, socket) in sockets.enumerated() { try networkPoller.add(fd: socket.descriptor.raw, token: UInt64(index)) }
        try tunPoller.add(fd: tun.descriptor.raw, token: 0)
        state.withLock { state in
            state.sockets = sockets
            state.tun = tun
        }
        let tunPump = ServerTunPump(server: self, tun: tun, socketCount: sockets.count)
        let networkPump = ServerNetworkPump(server: self, tun: tun, sockets: sockets)
        let tunThread = PumpThread(name: "triglav-srv-tun", wake: { [tunPoller] in tunPoller.wake() }) { tunPump.iterate() }
        let networkThread = PumpThread(name: "triglav-srv-net", wake: { [networkPoller] in networkPoller.wake() }) {
            networkPump.iterate()
        }
        threads.withLock { $0 = [tunThread, networkThread] }
        logger.info("server tunnel \(tun.name) listening on \(configuration.listen.map(\.description).joined(separator: ", "))")
    }

    /// Stops the pumps, removes NAT, closes the TUN device and the listeners.
    public func stop() {
        let running = threads.withLock { threads in
            defer { threads = [] }
            return threads
        }
        for thread in running { thread.stop() }
        let (tun, sockets) = state.withLock { state in
            defer { state.tun = nil; state.sockets = []; state.sessions = [:] }
            return (state.tun, state.sockets)
        }
        if configuration.configureNetwork && configuration.masquerade { routes.removeServerNAT() }
        tun?.close()
        for socket in sockets { socket.close() }
        logger.info("server tunnel stopped")
    }

    /// Actual listening endpoints (port 0 in the configuration becomes the kernel's choice).
    public func listeningEndpoints() throws(TriglavDataPlaneError) -> [IPEndpoint] {
        let sockets = state.withLock { $0.sockets }
        var endpoints: [IPEndpoint] = []
        for socket in sockets { endpoints.append(try socket.localEndpoint()) }
        return endpoints
    }

    public func statistics() -> ServerTunnelStatistics {
        state.withLock { state in
            ServerTunnelStatistics(
                clients: state.tunnels.values.sorted { $0.key.base64 < $1.key.base64 }.map { tunnel in
                    ServerTunnelStatistics.Client(
                        publicKey: tunnel.key.base64, addresses: tunnel.addresses,
                        endpoints: tunnel.sessions.compactMap { index in
                            state.sessions[index].flatMap { session in
                                withUnsafePointer(to: session.address) { SocketAddress.read($0) }
                            }
                        },
                        receivedPackets: tunnel.receivedPackets, transmittedPackets: tunnel.transmittedPackets)
                },
                rejectedHandshakes: state.rejectedHandshakes, droppedUnknownDestination: state.droppedUnknownDestination)
        }
    }

    func withState<R>(_ body: (inout ServerState) -> R) -> R { state.withLock { body(&$0) } }
}

/// One client uplink's session on the server.
struct ServerSession {
    let tunnelID: UInt64
    var transport: TransportSession
    /// The session this one rekeys; retired when this one is confirmed.
    var replaces: UInt32?
    var socket: Int
    var address: sockaddr_storage
    var addressLength: socklen_t
    /// The server address the client sent to, so replies leave from it.
    var localAddress: sockaddr_storage
    var lastReceive: Nanoseconds
}

/// One client's tunnel on the server: its sessions (one or more per client uplink) and addresses.
struct ServerClientTunnel {
    let tunnelID: UInt64
    let key: IdentityPublicKey
    let addresses: TunnelAddresses
    var sessions: [UInt32] = []
    var transmitSequence: UInt32 = 0
    var cursor = 0
    var receivedPackets: UInt64 = 0
    var transmittedPackets: UInt64 = 0
}

struct ServerState: @unchecked Sendable {
    var responder: HandshakeResponder
    var tunnels: [UInt64: ServerClientTunnel] = [:]
    var byIPv4: [UInt32: UInt64] = [:]
    var byIPv6: [IPAddress: UInt64] = [:]
    var sessions: [UInt32: ServerSession] = [:]
    var sockets: [UDPSocket] = []
    var tun: TunDevice?
    var rejectedHandshakes: UInt64 = 0
    var droppedUnknownDestination: UInt64 = 0
    var droppedSpoofed: UInt64 = 0

    /// Tunnel owning the destination of `packet`.
    func tunnel(forDestinationOf packet: UnsafeRawBufferPointer) -> UInt64? {
        if let v4 = PacketClassifier.ipv4Destination(packet) { return byIPv4[v4] }
        if let v6 = PacketClassifier.ipv6Destination(packet) { return byIPv6[v6] }
        return nil
    }

    /// Whether `packet`'s inner source is one of the tunnel's addresses (anti-spoofing).
    func isSourceAllowed(_ packet: UnsafeRawBufferPointer, tunnel: ServerClientTunnel) -> Bool {
        if let v4 = PacketClassifier.ipv4Source(packet) {
            if case .v4(let assigned)? = tunnel.addresses.ipv4?.address { return v4 == assigned }
            return false
        }
        if let v6 = PacketClassifier.ipv6Source(packet) { return tunnel.addresses.ipv6?.address == v6 }
        return false
    }

    mutating func addTunnel(_ tunnel: ServerClientTunnel) {
        tunnels[tunnel.tunnelID] = tunnel
        if case .v4(let value)? = tunnel.addresses.ipv4?.address { byIPv4[value] = tunnel.tunnelID }
        if let ipv6 = tunnel.addresses.ipv6 { byIPv6[ipv6.address] = tunnel.tunnelID }
    }

    /// Removes a tunnel, its sessions and its address routes.
    mutating func removeTunnel(_ tunnelID: UInt64) {
        guard let tunnel = tunnels.removeValue(forKey: tunnelID) else { return }
        for index in tunnel.sessions {
            sessions.removeValue(forKey: index)
            responder.sessionEnded(localIndex: index)
        }
        if case .v4(let value)? = tunnel.addresses.ipv4?.address, byIPv4[value] == tunnelID { byIPv4[value] = nil }
        if let ipv6 = tunnel.addresses.ipv6, byIPv6[ipv6.address] == tunnelID { byIPv6[ipv6.address] = nil }
        responder.removeTunnel(tunnelID)
    }

    mutating func removeSession(_ index: UInt32) {
        guard let session = sessions.removeValue(forKey: index) else { return }
        tunnels[session.tunnelID]?.sessions.removeAll { $0 == index }
        responder.sessionEnded(localIndex: index)
    }
}

/// TUN → clients pump of the server.
final class ServerTunPump: @unchecked Sendable {
    private static let batchSize = 64
    private let server: ServerTunnel
    private let tun: TunDevice
    private let staging = DatagramBatch(capacity: ServerTunPump.batchSize, slotSize: 2048)
    private var stagingLengths = Array(repeating: 0, count: ServerTunPump.batchSize)
    private let outgoing: [DatagramBatch]
    private var sockets: [UDPSocket] = []

    init(server: ServerTunnel, tun: TunDevice, socketCount: Int) {
        self.server = server
        self.tun = tun
        outgoing = (0..<socketCount).map { _ in DatagramBatch(capacity: ServerTunPump.batchSize, slotSize: 2048) }
    }

    func iterate() {
        do {
            try server.tunPollerForPump.wait(timeoutMilliseconds: 200) { _ in }
        } catch {
            return
        }
        var rounds = 0
        while rounds < 16 {
            rounds += 1
            var count = 0
            while count < Self.batchSize {
                let slot = staging.slot(count)
                let payload = UnsafeMutableRawBufferPointer(rebasing: slot[WireLayout.bodyOffset..<(slot.count - WireLayout.tagSize)])
                guard let length = try? tun.read(into: payload), length > 0 else { break }
                stagingLengths[count] = length
                count += 1
            }
            if count == 0 { return }
            dispatch(count)
            if count < Self.batchSize { return }
        }
    }

    private func dispatch(_ count: Int) {
        let now = monotonicNow()
        let liveAfter = now &- server.configuration.uplinkTimeout.nanoseconds
        server.withState { state in
            if sockets.count != state.sockets.count { sockets = state.sockets }
            for index in 0..<count {
                let length = stagingLengths[index]
                let source = staging.slot(index)
                let packet = UnsafeRawBufferPointer(rebasing: source[WireLayout.bodyOffset..<(WireLayout.bodyOffset + length)])
                guard let tunnelID = state.tunnel(forDestinationOf: packet), var tunnel = state.tunnels[tunnelID],
                      !tunnel.sessions.isEmpty else {
                    state.droppedUnknownDestination &+= 1
                    continue
                }
                // Round robin over the tunnel's confirmed live sessions; if none is live, any confirmed one.
                var chosen: UInt32?
                var fallback: UInt32?
                for _ in 0..<tunnel.sessions.count {
                    tunnel.cursor = tunnel.cursor &+ 1
                    let candidate = tunnel.sessions[tunnel.cursor % tunnel.sessions.count]
                    guard let session = state.sessions[candidate], session.transport.isConfirmed else { continue }
                    if session.lastReceive >= liveAfter { chosen = candidate; break }
                    if fallback == nil { fallback = candidate }
                }
                guard let sessionIndex = chosen ?? fallback, var session = state.sessions[sessionIndex],
                      session.socket < outgoing.count else {
                    state.tunnels[tunnelID] = tunnel
                    continue
                }
                let batch = outgoing[session.socket]
                guard batch.count < batch.capacity else { state.tunnels[tunnelID] = tunnel; continue }
                let target = batch.slot(batch.count)
                UnsafeMutableRawBufferPointer(rebasing: target[WireLayout.bodyOffset...]).copyMemory(from: packet)
                guard let sealed = try? session.transport.seal(.data, tunnelSequence: tunnel.transmitSequence, bodyLength: length,
                                                               in: target, now: now) else {
                    state.tunnels[tunnelID] = tunnel
                    continue
                }
                tunnel.transmitSequence &+= 1
                tunnel.transmittedPackets &+= 1
                state.tunnels[tunnelID] = tunnel
                withUnsafePointer(to: &session.address) { address in
                    withUnsafePointer(to: &session.localAddress) { local in
                        batch.prepareSend(batch.count, length: sealed, address: address, addressLength: session.addressLength,
                                          localAddress: local.pointee.ss_family == 0 ? nil : local)
                    }
                }
                batch.count += 1
                state.sessions[sessionIndex] = session
            }
        }
        for (index, batch) in outgoing.enumerated() where batch.count > 0 {
            if index < sockets.count { sockets[index].send(batch) } else { batch.count = 0 }
        }
    }
}

extension ServerTunnel {
    var tunPollerForPump: Poller { tunPoller }
    var networkPollerForPump: Poller { networkPoller }
}
