#if canImport(Glibc)
import Glibc
#endif
import Dispatch
public import Logging
import Synchronization
public import TriglavConfig
import TriglavCore
import TriglavCrypto
public import TriglavDataPlane
public import TriglavMultipath
import struct TriglavProtocol.DNSOffer

/// A client's tunnel as `org.triglav.Client1.State` shows it, from the server engine's view of its paths.
public enum ServerClientState: String, Sendable, CaseIterable {
    /// The tunnel exists (a handshake was answered) but no uplink session is confirmed yet.
    case handshaking
    /// Every confirmed path is usable (ready, or being measured after it joined).
    case connected
    /// Some path is down or lossy (all of them, when the client vanished without a close).
    case degraded

    /// The state of a tunnel whose confirmed paths are in `paths`.
    public init(paths: [TriglavMultipath.UplinkState]) {
        if paths.isEmpty {
            self = .handshaking
        } else if paths.contains(where: { $0 == .down || $0 == .degraded }) {
            self = .degraded
        } else {
            self = .connected
        }
    }
}

/// A connected client as `org.triglav.Server1` shows it (`/org/triglav/client/N`).
public struct ServerClientStatus: Sendable, Equatable {
    /// N in the object path; kept while the client stays connected, never reused.
    public var number: Int
    /// The name from `[[server.clients]]`.
    public var name: String
    public var publicKey: String
    public var tunnelAddresses: [String]
    /// Current endpoint of each of the client's uplink sessions.
    public var endpoints: [String]
    /// From the server engine's path states (Client1.State).
    public var state: ServerClientState = .handshaking
    /// Confirmed paths that aren't down (Client1.Paths).
    public var livePaths: Int = 0
    /// Each confirmed path (Client1.PathDetails).
    public var paths: [ServerTunnelStatistics.Path] = []
    public var receivedPackets: UInt64
    public var transmittedPackets: UInt64
    /// Inner (IP packet) bytes from and to the client.
    public var receivedBytes: UInt64 = 0
    public var transmittedBytes: UInt64 = 0
    /// Smallest smoothed RTT of the client's paths, in microseconds; 0 before the first measurement.
    public var rttMicroseconds: UInt64 = 0
    /// CLOCK_REALTIME microseconds when the daemon first saw the client's session.
    public var connectedSinceMicroseconds: UInt64
}

/// A snapshot of the server role (`org.triglav.Server1` on `/org/triglav`).
public struct ServerManagerStatus: Sendable, Equatable {
    public var isRunning: Bool
    /// The endpoints actually bound (port 0 in the configuration shows the kernel's choice).
    public var listen: [String]
    public var tunnelInterface: String
    public var tunnelAddresses: [String]
    public var authorizedClients: Int
    /// Numbers of the connected clients' objects, ascending.
    public var clients: [Int]
    public var rejectedHandshakes: UInt64
    /// Inner bytes sent to / received from all clients since the server started (Server1.TxBytes/RxBytes).
    public var transmittedBytes: UInt64 = 0
    public var receivedBytes: UInt64 = 0
    /// `[server.dns]` as offered to every client: servers, then domains (Server1.OfferedDNS); empty when none.
    public var offeredDNS: [String] = []
}

extension DNSOffer {
    /// Servers, then domains, as text (the start log line, Server1.OfferedDNS).
    var listing: [String] { servers.map(\.description) + domains }
}

public enum ServerManagerEvent: Sendable, Equatable {
    case serverChanged(ServerManagerStatus)
    case clientAdded(ServerClientStatus)
    case clientChanged(ServerClientStatus)
    case clientRemoved(number: Int, name: String)
}

/// The server role: one `ServerTunnel` built from `[server]`, its connected clients as numbered objects,
/// and reload (a changed `[server]`/`[tunnel]` section restarts the tunnel; clients reconnect by themselves).
///
/// Thread safety: all methods may be called from any thread; lifecycle calls are serialized, events are
/// delivered in order on a private serial queue.
public final class ServerManager: Sendable {
    private let tunnels: any ServerTunnelFactory
    private let configSource: any DaemonConfigSource
    private let logger: Logger
    private let lifecycle = Mutex<Void>(())
    private let state: Mutex<State>
    private let events = DispatchQueue(label: "triglav.server-manager.events")

    public init(config: DaemonConfig, configSource: any DaemonConfigSource, tunnels: any ServerTunnelFactory,
                logger: Logger = Logger(label: "triglav.daemon.server")) {
        self.tunnels = tunnels
        self.configSource = configSource
        self.logger = logger
        state = Mutex(State(config: config))
    }

    public func observe(_ observer: @escaping @Sendable (ServerManagerEvent) -> Void) {
        state.withLock { state in
            state.observer = observer
            let status = state.status()
            let clients = state.clientStatuses()
            events.async {
                observer(.serverChanged(status))
                for client in clients { observer(.clientAdded(client)) }
            }
        }
    }

    public func drainEvents() { events.sync {} }

    public var status: ServerManagerStatus { state.withLock { $0.status() } }
    public var clients: [ServerClientStatus] { state.withLock { $0.clientStatuses() } }
    /// The server tunnel's latest counters (taken by `refresh()`); zero while stopped, restarting with the tunnel.
    public var tunnelCounters: ServerTunnelCounters { state.withLock { $0.tunnel == nil ? ServerTunnelCounters() : $0.counters } }
    public var config: DaemonConfig { state.withLock { $0.config } }

    public var statusLine: String {
        state.withLock { state in
            let status = state.status()
            guard status.isRunning else { return "Stopped" }
            return "Serving on \(status.listen.joined(separator: ", ")): \(status.clients.count) of "
                + "\(status.authorizedClients) clients connected"
        }
    }

    /// Opens the listeners and the TUN device, sets up forwarding and NAT.
    public func start() throws(TriglavDaemonError) {
        try lifecycle.withLock { _ throws(TriglavDaemonError) in
            let config = state.withLock { $0.config }
            try startTunnel(ServerTunnelPlan(config: config))
        }
    }

    /// Stops the tunnel: NAT, TUN device and listeners are removed. Idempotent.
    public func stop() {
        lifecycle.withLock { _ in stopTunnel() }
        drainEvents()
    }

    /// Reloads the configuration; restarts the tunnel when its plan changed. On a load error nothing changes.
    @discardableResult
    public func reload() throws(TriglavDaemonError) -> DaemonConfig {
        try lifecycle.withLock { _ throws(TriglavDaemonError) -> DaemonConfig in
            let config = try configSource.load()
            guard config.role == .server else {
                throw .failed(operation: "reload", reason: "the configuration now says role = \"\(config.role.rawValue)\"; "
                    + "restart the daemon to change roles")
            }
            let (oldPlan, running) = state.withLock { state in
                defer { state.config = config }
                return (ServerTunnelPlan(config: state.config), state.tunnel != nil)
            }
            let plan = ServerTunnelPlan(config: config)
            guard plan != oldPlan || !running else {
                logger.info("configuration reloaded; server unchanged")
                return config
            }
            logger.notice("configuration reloaded; server settings changed, restarting the server tunnel")
            stopTunnel()
            try startTunnel(plan)
            return config
        }
    }

    /// Polls the tunnel's statistics and publishes connected/disconnected clients and changed counters.
    public func refresh() {
        state.withLock { state in
            guard let tunnel = state.tunnel else { return }
            state.update(with: tunnel.snapshot())
            publish(&state)
        }
    }

    /// Drops a connected client's tunnel in the data plane and its object at once (InterfacesRemoved), without
    /// waiting for the next refresh. The client stays authorized: when it handshakes again (it is told to with
    /// a close, so at once) it comes back as a new object with a new number.
    public func disconnectClient(number: Int) throws(TriglavDaemonError) {
        try lifecycle.withLock { _ throws(TriglavDaemonError) in
            try state.withLock { state throws(TriglavDaemonError) in
                guard let tunnel = state.tunnel,
                      let (key, _) = state.connected.first(where: { $0.value.number == number }) else {
                    throw .notFound("client \(number)")
                }
                guard let publicKey = try? IdentityPublicKey(base64: key) else {
                    throw .failed(operation: "disconnecting client \(number)", reason: "its key \(key) does not parse")
                }
                tunnel.disconnectClient(publicKey: publicKey)
                if let gone = state.connected.removeValue(forKey: key) { state.retire(gone.statistics) }
                publish(&state)
                logger.notice("client \(number) disconnected by request", metadata: ["client": "\(key)"])
            }
        }
        drainEvents()
    }

    private func startTunnel(_ plan: ServerTunnelPlan) throws(TriglavDaemonError) {
        let tunnel = try tunnels.makeTunnel(plan)
        do { try tunnel.start() } catch {
            throw .failed(operation: "starting the server tunnel \(plan.tunnelInterface)", reason: error.description)
        }
        let listen = (try? tunnel.listeningEndpoints()) ?? plan.listen
        state.withLock { state in
            state.tunnel = tunnel
            state.listening = listen
            state.update(with: tunnel.snapshot())
            publish(&state)
        }
        let dns = plan.dnsOffer.map { "; offering DNS " + $0.listing.joined(separator: " ") } ?? ""
        logger.info("server listening on \(listen.map(\.description).joined(separator: ", "))\(dns)")
    }

    private func stopTunnel() {
        let tunnel = state.withLock { state in
            defer { state.tunnel = nil }
            return state.tunnel
        }
        guard let tunnel else { return }
        tunnel.stop()
        state.withLock { state in
            state.listening = []
            state.connected = [:]
            publish(&state)
        }
        logger.info("server tunnel stopped")
    }

    private func publish(_ state: inout State) {
        let status = state.status()
        let clients = state.clientStatuses()
        var pending: [ServerManagerEvent] = []
        if status != state.published { pending.append(.serverChanged(status)) }
        let current = Dictionary(uniqueKeysWithValues: clients.map { ($0.number, $0) })
        for (number, old) in state.publishedClients.sorted(by: { $0.key < $1.key }) where current[number] == nil {
            pending.append(.clientRemoved(number: number, name: old.name))
        }
        for client in clients {
            if let old = state.publishedClients[client.number] {
                if old != client { pending.append(.clientChanged(client)) }
            } else {
                pending.append(.clientAdded(client))
            }
        }
        state.published = status
        state.publishedClients = current
        guard !pending.isEmpty, let observer = state.observer else { return }
        let batch = pending
        events.async { for event in batch { observer(event) } }
    }

    struct State {
        var config: DaemonConfig
        var tunnel: (any ServerTunnelDriving)?
        var listening: [IPEndpoint] = []
        /// Connected clients by public key (base64), with their object number.
        var connected: [String: ConnectedClient] = [:]
        var nextClientNumber = 1
        var rejectedHandshakes: UInt64 = 0
        var counters = ServerTunnelCounters()
        var retiredTransmittedBytes: UInt64 = 0
        var retiredReceivedBytes: UInt64 = 0
        var observer: (@Sendable (ServerManagerEvent) -> Void)?
        var published: ServerManagerStatus?
        var publishedClients: [Int: ServerClientStatus] = [:]

        init(config: DaemonConfig) { self.config = config }

        struct ConnectedClient {
            let number: Int
            let since: UInt64
            var statistics: ServerTunnelSnapshot.Client
        }

        mutating func update(with statistics: ServerTunnelSnapshot) {
            rejectedHandshakes = statistics.rejectedHandshakes
            counters = statistics.counters
            var next: [String: ConnectedClient] = [:]
            for client in statistics.clients {
                if var known = connected[client.publicKey] {
                    // Counters that went back belong to a new tunnel of the same client (it restarted).
                    if client.transmittedBytes < known.statistics.transmittedBytes
                        || client.receivedBytes < known.statistics.receivedBytes {
                        retire(known.statistics)
                    }
                    known.statistics = client
                    next[client.publicKey] = known
                } else {
                    next[client.publicKey] = ConnectedClient(number: nextClientNumber, since: Self.realtimeMicroseconds(),
                                                             statistics: client)
                    nextClientNumber += 1
                }
            }
            for (key, gone) in connected where next[key] == nil { retire(gone.statistics) }
            connected = next
        }

        /// Keeps a finished tunnel's bytes in the server's totals (Server1.TxBytes/RxBytes never go back).
        mutating func retire(_ client: ServerTunnelSnapshot.Client) {
            retiredTransmittedBytes &+= client.transmittedBytes
            retiredReceivedBytes &+= client.receivedBytes
        }

        /// Bytes sent to / received from all clients since the server started, including departed ones.
        var totalTransmittedBytes: UInt64 {
            connected.values.reduce(retiredTransmittedBytes) { $0 &+ $1.statistics.transmittedBytes }
        }
        var totalReceivedBytes: UInt64 {
            connected.values.reduce(retiredReceivedBytes) { $0 &+ $1.statistics.receivedBytes }
        }

        static func realtimeMicroseconds() -> UInt64 {
            var spec = timespec()
            clock_gettime(CLOCK_REALTIME, &spec)
            return UInt64(max(0, spec.tv_sec)) &* 1_000_000 &+ UInt64(max(0, spec.tv_nsec) / 1000)
        }

        func status() -> ServerManagerStatus {
            let plan = ServerTunnelPlan(config: config)
            return ServerManagerStatus(
                isRunning: tunnel != nil, listen: listening.map(\.description),
                tunnelInterface: tunnel == nil ? "" : plan.tunnelInterface.rawValue,
                tunnelAddresses: tunnel == nil ? [] : plan.tunnelAddresses.map(\.description),
                authorizedClients: plan.clients.count, clients: connected.values.map(\.number).sorted(),
                rejectedHandshakes: rejectedHandshakes, transmittedBytes: totalTransmittedBytes,
                receivedBytes: totalReceivedBytes, offeredDNS: plan.dnsOffer?.listing ?? [])
        }

        func clientStatuses() -> [ServerClientStatus] {
            let names = Dictionary((config.server?.clients ?? []).map { ($0.publicKey.base64, $0.name) },
                                   uniquingKeysWith: { first, _ in first })
            return connected.map { key, entry in
                let assignment = entry.statistics.assignment
                return ServerClientStatus(
                    number: entry.number, name: names[key] ?? "", publicKey: key,
                    tunnelAddresses: [assignment.ipv4, assignment.ipv6].compactMap { $0?.description },
                    endpoints: entry.statistics.endpoints.map(\.description),
                    state: ServerClientState(paths: entry.statistics.pathStates),
                    livePaths: entry.statistics.pathStates.filter { $0 != .down }.count, paths: entry.statistics.paths,
                    receivedPackets: entry.statistics.receivedPackets,
                    transmittedPackets: entry.statistics.transmittedPackets,
                    receivedBytes: entry.statistics.receivedBytes, transmittedBytes: entry.statistics.transmittedBytes,
                    rttMicroseconds: entry.statistics.smoothedRTT.map(ClientManager.microseconds) ?? 0,
                    connectedSinceMicroseconds: entry.since)
            }.sorted { $0.number < $1.number }
        }
    }
}
