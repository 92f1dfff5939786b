internal import CTriglavShims
#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import Synchronization
import TriglavCore
import TriglavCrypto

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
    public var clients: [IdentityPublicKey: TunnelAssignment]
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
                clients: [IdentityPublicKey: TunnelAssignment]) {
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
        var clients: [ServerClient] = []
        var byIPv4: [UInt32: Int] = [:]
        var byIPv6: [IPAddress: Int] = [:]
        for (key, assignment) in configuration.clients.sorted(by: { $0.key.base64 < $1.key.base64 }) {
            if case .v4(let value) = assignment.ipv4.address { byIPv4[value] = clients.count }
            if let ipv6 = assignment.ipv6 { byIPv6[ipv6.address] = clients.count }
            clients.append(ServerClient(key: key, assignment: assignment))
        }
        state = Mutex(ServerState(clients: clients, byIPv4: byIPv4, byIPv6: byIPv6))
    }

    /// Opens the listeners and the TUN device, configures forwarding/NAT, starts the pumps.
    public func start() throws(TriglavDataPlaneError) {
        var sockets: [UDPSocket] = []
        for endpoint in configuration.listen {
            var options = UDPSocket.Options()
            options.localEndpoint = endpoint
            options.packetInfo = true
            options.bufferBytes = 16 << 20
            sockets.append(try UDPSocket(family: AddressFamily(of: endpoint.address), options: options, label: "listener \(endpoint)"))
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
                clients: state.clients.compactMap { client in
                    guard !client.sessions.isEmpty else { return nil }
                    return ServerTunnelStatistics.Client(
                        publicKey: client.key.base64, assignment: client.assignment,
                        endpoints: client.sessions.compactMap { index in
                            state.sessions[index].flatMap { session in
                                withUnsafePointer(to: session.address) { SocketAddress.read($0) }
                            }
                        },
                        receivedPackets: client.receivedPackets, transmittedPackets: client.transmittedPackets)
                },
                rejectedHandshakes: state.rejectedHandshakes, droppedUnknownDestination: state.droppedUnknownDestination)
        }
    }

    func withState<R>(_ body: (inout ServerState) -> R) -> R { state.withLock { body(&$0) } }
}

/// One client uplink's session on the server.
struct ServerSession {
    let client: Int
    var transport: TransportSession
    var socket: Int
    var address: sockaddr_storage
    var addressLength: socklen_t
    /// The server address the client sent to, so replies leave from it.
    var localAddress: sockaddr_storage
    var lastReceive: Nanoseconds
}

/// One authorized client.
struct ServerClient {
    let key: IdentityPublicKey
    let assignment: TunnelAssignment
    /// The client process instance whose sessions these are; a new instance replaces them all.
    var instance: UInt64 = 0
    var sessions: [UInt32] = []
    var transmitSequence: UInt32 = 0
    var cursor = 0
    var receivedPackets: UInt64 = 0
    var transmittedPackets: UInt64 = 0
    /// Set when the client restarted, so the network pump resets its reorder buffer.
    var reorderGeneration: UInt64 = 0
}

struct ServerState: @unchecked Sendable {
    var clients: [ServerClient]
    var byIPv4: [UInt32: Int]
    var byIPv6: [IPAddress: Int]
    var sessions: [UInt32: ServerSession] = [:]
    var sockets: [UDPSocket] = []
    var tun: TunDevice?
    var rejectedHandshakes: UInt64 = 0
    var droppedUnknownDestination: UInt64 = 0
    var droppedSpoofed: UInt64 = 0

    /// Client index owning the destination of `packet`.
    func client(forDestinationOf packet: UnsafeRawBufferPointer) -> Int? {
        if let v4 = PacketClassifier.ipv4Destination(packet) { return byIPv4[v4] }
        if let v6 = PacketClassifier.ipv6Destination(packet) { return byIPv6[v6] }
        return nil
    }

    /// Whether `packet`'s inner source is one of `client`'s assigned addresses (anti-spoofing).
    func isSourceAllowed(_ packet: UnsafeRawBufferPointer, client: Int) -> Bool {
        let assignment = clients[client].assignment
        if let v4 = PacketClassifier.ipv4Source(packet) {
            if case .v4(let assigned) = assignment.ipv4.address { return v4 == assigned }
            return false
        }
        if let v6 = PacketClassifier.ipv6Source(packet) { return assignment.ipv6?.address == v6 }
        return false
    }

    mutating func removeSession(_ index: UInt32) {
        guard let session = sessions.removeValue(forKey: index) else { return }
        clients[session.client].sessions.removeAll { $0 == index }
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
                let payload = UnsafeMutableRawBufferPointer(rebasing: slot[TransportSession.payloadOffset...])
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
                let packet = UnsafeRawBufferPointer(rebasing: source[TransportSession.payloadOffset..<(TransportSession.payloadOffset + length)])
                guard let clientIndex = state.client(forDestinationOf: packet) else {
                    state.droppedUnknownDestination &+= 1
                    continue
                }
                // Round robin over the client's live sessions; if none is live, over all of them.
                let sessions = state.clients[clientIndex].sessions
                guard !sessions.isEmpty else {
                    state.droppedUnknownDestination &+= 1
                    continue
                }
                var chosen: UInt32?
                var cursor = state.clients[clientIndex].cursor
                for _ in 0..<sessions.count {
                    cursor = cursor &+ 1
                    let candidate = sessions[cursor % sessions.count]
                    if let session = state.sessions[candidate], session.lastReceive >= liveAfter {
                        chosen = candidate
                        break
                    }
                }
                state.clients[clientIndex].cursor = cursor
                guard let sessionIndex = chosen ?? sessions.first, var session = state.sessions[sessionIndex] else { continue }
                let batch = outgoing[session.socket]
                guard batch.count < batch.capacity else { continue }
                let sequence = state.clients[clientIndex].transmitSequence
                state.clients[clientIndex].transmitSequence &+= 1
                state.clients[clientIndex].transmittedPackets &+= 1
                let target = batch.slot(batch.count)
                UnsafeMutableRawBufferPointer(rebasing: target[TransportSession.payloadOffset...]).copyMemory(from: packet)
                let sealed = session.transport.seal(target, payloadLength: length, kind: .data, sequence: sequence)
                withUnsafePointer(to: &session.address) { address in
                    withUnsafePointer(to: &session.localAddress) { local in
                        batch.prepareSend(batch.count, length: sealed, address: address, addressLength: session.addressLength,
                                          localAddress: local)
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
