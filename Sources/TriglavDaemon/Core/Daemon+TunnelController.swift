#if canImport(Glibc)
import Glibc
#endif
public import TriglavControlAPI
import TriglavConfig
import TriglavCore
import TriglavDataPlane
import TriglavMultipath

/// The org.triglav API's view of the daemon: the bus adaptor (`TriglavBusAdaptor`) calls these, and the
/// daemon publishes `controlStatus()` to it whenever a manager reports a change and on every tick.
extension Daemon: TunnelController {
    public func status() async -> TriglavStatus { controlStatus() }

    public func connect(profile: String, options: TriglavControlAPI.ConnectOptions) async throws(ControlError) {
        let client = try clientRole("Connect")
        var connection = ConnectionOptions()
        if let name = options.scheduler {
            guard let kind = TriglavConfig.SchedulerKind(rawValue: name) else {
                throw .invalidArgument("unknown scheduler \"\(name)\"; use one of "
                    + TriglavConfig.SchedulerKind.allCases.map(\.rawValue).joined(separator: ", "))
            }
            connection.scheduler = kind
        }
        if let server = options.server {
            do { connection.server = try RemoteEndpoint(server) } catch {
                throw .invalidArgument("option server: \(error)")
            }
        }
        connection.fullTunnel = options.fullTunnel
        connection.transport = options.transport.map(Self.transportMode)
        do throws(TriglavDaemonError) { try client.connect(profile: profile, options: connection) } catch {
            throw error.controlError
        }
    }

    public func disconnect() async throws(ControlError) {
        let client = try clientRole("Disconnect")
        do throws(TriglavDaemonError) { try client.disconnect() } catch { throw error.controlError }
    }

    public func addUplink(interface: String, options: TriglavControlAPI.UplinkOptions) async throws(ControlError) -> UInt32 {
        let client = try clientRole("AddUplink")
        guard if_nametoindex(interface) != 0 else {
            throw .notFound("no network interface named \"\(interface)\" (see `ip link`)")
        }
        let overrides = try Self.overrides(options)
        do throws(TriglavDaemonError) { return UInt32(try client.addUplink(interface: interface, options: overrides)) } catch {
            throw error.controlError
        }
    }

    public func removeUplink(id: UInt32) async throws(ControlError) {
        let client = try clientRole("RemoveUplink")
        do throws(TriglavDaemonError) { try client.removeUplink(number: Int(id)) } catch { throw error.controlError }
    }

    public func configureUplink(id: UInt32, settings: TriglavControlAPI.UplinkOptions) async throws(ControlError) {
        let client = try clientRole("setting uplink properties")
        let overrides = try Self.overrides(settings)
        do throws(TriglavDaemonError) { try client.updateUplink(number: Int(id), overrides) } catch { throw error.controlError }
    }

    public func setScheduler(_ name: String) async throws(ControlError) {
        let client = try clientRole("setting Scheduler")
        do throws(TriglavDaemonError) { try client.setScheduler(name) } catch { throw error.controlError }
    }

    public func reload() async throws(ControlError) {
        do throws(TriglavDaemonError) { try reloadConfiguration() } catch { throw error.controlError }
    }

    public func disconnectClient(id: UInt32) async throws(ControlError) {
        guard let server else { throw .notFound("no client \(id): this daemon runs the client role") }
        guard server.clients.contains(where: { $0.number == Int(id) }) else { throw .notFound("no client \(id)") }
        do throws(TriglavDaemonError) { try server.disconnectClient(number: Int(id)) } catch {
            // Gone between the check and the call (it timed out, or a reload restarted the server).
            throw error.controlError
        }
    }

    // MARK: Status

    /// Everything the bus shows, from the managers' snapshots.
    public func controlStatus() -> TriglavStatus {
        var status = TriglavStatus()
        status.manager.version = VERSION
        if let client {
            status.manager = Self.managerStatus(client.status, version: VERSION)
            status.manager.counters = client.tunnelStatistics?.counters.named ?? []
            status.uplinks = client.uplinks.map(Self.uplinkStatus)
        }
        if let server {
            let snapshot = server.status
            status.manager.tunnelInterface = snapshot.tunnelInterface
            status.manager.tunnelAddresses = snapshot.tunnelAddresses
            status.server = ServerStatus(enabled: snapshot.isRunning, listenAddress: snapshot.listen.joined(separator: ", "),
                                         publicKey: serverPublicKey ?? "", txBytes: snapshot.transmittedBytes,
                                         rxBytes: snapshot.receivedBytes, counters: snapshot.isRunning ? server.tunnelCounters.named : [],
                                         offeredDNS: snapshot.offeredDNS)
            status.clients = server.clients.map(Self.clientStatus)
        }
        return status
    }

    /// Manager1's properties from the client manager's status (`Uplinks` is filled by the bus adaptor).
    static func managerStatus(_ manager: ClientManagerStatus, version: String) -> ManagerStatus {
        ManagerStatus(state: TunnelState(rawValue: manager.state.rawValue) ?? .disconnected, profile: manager.profile,
                      server: manager.server, tunnelInterface: manager.tunnelInterface,
                      tunnelAddresses: manager.tunnelAddresses, scheduler: manager.scheduler.rawValue,
                      txBytes: manager.transmittedBytes, rxBytes: manager.receivedBytes, version: version,
                      routingError: manager.routingError, stateReason: manager.stateReason,
                      dnsServers: manager.dnsServers, dnsDomains: manager.dnsDomains, dnsError: manager.dnsError,
                      dnsSource: manager.dnsSource, dnsResolver: manager.dnsResolver, tunnelMTU: UInt32(clamping: manager.tunnelMTU))
    }

    static func clientStatus(_ client: ServerClientStatus) -> TriglavControlAPI.ClientStatus {
        let state: TriglavControlAPI.ClientState = switch client.state {
        case .handshaking: .handshaking
        case .connected: .connected
        case .degraded: .degraded
        }
        return ClientStatus(id: UInt32(client.number), publicKey: client.publicKey, endpoint: client.endpoints.first ?? "",
                            tunnelAddresses: client.tunnelAddresses, state: state, paths: UInt32(client.livePaths),
                            rttUsec: client.rttMicroseconds, txBytes: client.transmittedBytes, rxBytes: client.receivedBytes,
                            connectedSinceUsec: client.connectedSinceMicroseconds, pathDetails: client.paths.map(clientPathStatus))
    }

    static func clientPathStatus(_ path: ServerTunnelStatistics.Path) -> ClientPathStatus {
        let statistics = path.statistics
        let state: ClientPathState = switch statistics.state {
        case .probing: .probing
        case .ready: .ready
        case .degraded: .degraded
        case .down: .down
        }
        return ClientPathStatus(uplink: path.uplink.rawValue, endpoint: path.endpoint?.description ?? "",
                                transport: path.overTCP ? .tcp : .udp, state: state,
                                rttUsec: statistics.smoothedRTT / 1000, jitterUsec: statistics.jitter / 1000,
                                lossRatio: (statistics.lossPercent ?? 0) / 100, rxBytes: statistics.rxBytes, txBytes: statistics.txBytes)
    }

    static func uplinkStatus(_ uplink: UplinkSnapshot) -> TriglavControlAPI.UplinkStatus {
        let state: TriglavControlAPI.UplinkState = switch uplink.state {
        case .inactive, .waiting: .down
        case .idle, .connecting: .waiting
        case .standby: .standby
        case .measuring: .probing
        case .established: .active
        case .lossy: .degraded
        }
        return TriglavControlAPI.UplinkStatus(
            id: UInt32(uplink.number), interface: uplink.interface,
            kind: TriglavControlAPI.UplinkKind(rawValue: uplink.kind.rawValue) ?? .other,
            origin: uplink.origin == .manual ? .manual : .auto, state: state,
            tier: TriglavControlAPI.UplinkTier(rawValue: uplink.tier.rawValue) ?? .primary, metered: uplink.isMetered,
            enabled: uplink.isEnabled, rttUsec: uplink.rttMicroseconds, jitterUsec: uplink.jitterMicroseconds,
            lossRatio: uplink.lossRatio, capacityBps: uplink.capacityBitsPerSecond, txBytes: uplink.transmittedBytes,
            rxBytes: uplink.receivedBytes, localAddress: uplink.localAddress,
            transport: TriglavControlAPI.UplinkTransport(rawValue: uplink.transport) ?? .udp,
            routeToServer: uplink.hasRouteToServer, rxRateBps: uplink.receiveRateBitsPerSecond,
            publicEndpoint: uplink.publicEndpoint, behindNAT: uplink.isBehindNAT, pathMTU: uplink.pathMTU,
            pathMTUBlackhole: uplink.hasPathMTUBlackhole, gsoDatagrams: uplink.gsoDatagrams, groDatagrams: uplink.groDatagrams)
    }

    // MARK: Helpers

    private func clientRole(_ operation: String) throws(ControlError) -> ClientManager {
        guard let client else { throw .failed("\(operation): this daemon runs the server role") }
        return client
    }

    private static func transportMode(_ transport: UplinkTransport) -> UplinkTransportMode {
        switch transport {
        case .udp: .udp
        case .tcp: .tcp
        }
    }

    private static func overrides(_ options: TriglavControlAPI.UplinkOptions) throws(ControlError) -> UplinkOverrides {
        UplinkOverrides(tier: options.tier.flatMap { TriglavMultipath.UplinkTier(rawValue: $0.rawValue) },
                        isMetered: options.metered, isEnabled: options.enabled, transport: options.transport.map(transportMode))
    }
}

extension TriglavDaemonError {
    /// The API error with the same meaning (`org.triglav.Error.*`).
    public var controlError: ControlError {
        switch self {
        case .invalidArgument: .invalidArgument(description)
        case .notFound: .notFound(description)
        case .alreadyConnected: .alreadyConnected(description)
        case .notConnected: .notConnected(description)
        case .wrongRole, .failed, .unresolvable: .failed(description)
        }
    }
}
