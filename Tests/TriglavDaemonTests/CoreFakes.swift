import Synchronization
import TriglavConfig
import TriglavCore
import TriglavCrypto
import TriglavDataPlane
@testable import TriglavMultipath
import TriglavNetlink
import struct TriglavProtocol.DNSOffer
import TriglavSystemd
@testable import TriglavDaemon

/// A client tunnel that records calls; tests decide which uplinks have a session.
final class FakeClientTunnel: ClientTunnelDriving, Sendable {
    struct Record {
        var started = false
        var stopped = false
        var uplinks: [String] = []
        var scheduler: TriglavDataPlane.SchedulerKind
        var established: Set<String> = []
        var assignment: TunnelAddresses?
        var calls: [String] = []
        var policies: [String: UplinkPolicy] = [:]
        var uplinkLimit = ClientTunnel.maximumUplinks
        /// The engine's path state of established uplinks (nil: not reported, as before it existed).
        var pathStates: [String: TriglavMultipath.UplinkState] = [:]
        /// Uplinks the data plane found no route to the server for.
        var unrouted: Set<String> = []
        /// The kernel's refusal of the assigned addresses/routes, as the data plane reports it while retrying.
        var routingFailure: String?
        var dnsOffer: DNSOffer?
        /// Byte counters of established uplinks that aren't the default 1000 sent / 2000 received.
        var traffic: [String: (transmitted: UInt64, received: UInt64)] = [:]
        /// Receive rates of established uplinks that aren't the default 40 Mbit/s.
        var receiveRates: [String: UInt64] = [:]
        /// Uplinks the engine was told the system reports down.
        var linksDown: Set<String> = []
    }

    let plan: ClientTunnelPlan
    let record: Mutex<Record>
    let startError: TriglavDataPlaneError?

    init(plan: ClientTunnelPlan, startError: TriglavDataPlaneError? = nil) {
        self.plan = plan
        self.startError = startError
        record = Mutex(Record(scheduler: plan.scheduler))
    }

    func start() throws(TriglavDataPlaneError) {
        if let startError { throw startError }
        record.withLock { $0.started = true; $0.calls.append("start") }
    }

    func stop() { record.withLock { $0.stopped = true; $0.calls.append("stop") } }

    func addUplink(interface: InterfaceName, policy: UplinkPolicy, transport: UplinkTransportMode) throws(TriglavDataPlaneError) -> UplinkID {
        try record.withLock { record throws(TriglavDataPlaneError) -> UplinkID in
            guard !record.uplinks.contains(interface.rawValue) else { throw .duplicateUplink(interface.rawValue) }
            guard record.uplinks.count < record.uplinkLimit else { throw .invalidState("full") }
            record.uplinks.append(interface.rawValue)
            record.policies[interface.rawValue] = policy
            record.calls.append("add \(interface)" + (transport == .tcp ? " tcp" : ""))
            return UplinkID(UInt32(record.uplinks.count))
        }
    }

    func setUplinkPolicy(interface: InterfaceName, policy: UplinkPolicy) throws(TriglavDataPlaneError) {
        try record.withLock { record throws(TriglavDataPlaneError) in
            guard record.uplinks.contains(interface.rawValue) else { throw .unknownUplink(interface.rawValue) }
            record.policies[interface.rawValue] = policy
            record.calls.append("policy \(interface)")
        }
    }

    /// The multipath policy each attached uplink was last given.
    var policies: [String: UplinkPolicy] { record.withLock { $0.policies } }

    func removeUplink(interface: InterfaceName) throws(TriglavDataPlaneError) {
        try record.withLock { record throws(TriglavDataPlaneError) in
            guard record.uplinks.contains(interface.rawValue) else { throw .unknownUplink(interface.rawValue) }
            record.uplinks.removeAll { $0 == interface.rawValue }
            record.established.remove(interface.rawValue)
            record.calls.append("remove \(interface)")
        }
    }

    func setSystemLink(interface: InterfaceName, isUp: Bool) throws(TriglavDataPlaneError) {
        try record.withLock { record throws(TriglavDataPlaneError) in
            guard record.uplinks.contains(interface.rawValue) else { throw .unknownUplink(interface.rawValue) }
            if isUp { record.linksDown.remove(interface.rawValue) } else { record.linksDown.insert(interface.rawValue) }
            record.calls.append("link \(interface) \(isUp ? "up" : "down")")
        }
    }

    var linksDown: Set<String> { record.withLock { $0.linksDown } }

    /// What an established uplink reports as received per second from now on (default 40 Mbit/s).
    func setReceiveRate(_ interface: String, _ bitsPerSecond: UInt64) {
        record.withLock { $0.receiveRates[interface] = bitsPerSecond }
    }

    func setScheduler(_ kind: TriglavDataPlane.SchedulerKind) {
        record.withLock { $0.scheduler = kind; $0.calls.append("scheduler \(kind)") }
    }

    func snapshot() -> ClientTunnelSnapshot {
        record.withLock { record in
            var result = ClientTunnelSnapshot(assignment: record.assignment, uplinks: record.uplinks.map { name in
                let up = record.established.contains(name)
                var uplink = ClientTunnelSnapshot.Uplink(interface: name, state: up ? .established : .handshaking,
                             transmittedBytes: up ? record.traffic[name]?.transmitted ?? 1000 : 0,
                             receivedBytes: up ? record.traffic[name]?.received ?? 2000 : 0,
                             smoothedRTT: up ? .microseconds(1500) : nil, jitter: up ? .microseconds(250) : nil,
                             lossRatio: up ? 0.02 : 0, capacityBitsPerSecond: up ? 30_000_000 : 0,
                             transport: up && name.hasPrefix("wwan") ? "tcp" : "udp",
                             pathState: up ? record.pathStates[name] ?? .ready : nil,  // the real engine places an established path
                             routeToServer: up ? true : record.unrouted.contains(name) ? false : nil,
                             receiveRateBitsPerSecond: up ? record.receiveRates[name] ?? 40_000_000 : 0)
                // The fake's engine counts what its data plane does (the real one counts sealed datagrams).
                uplink.engineTransmittedBytes = uplink.transmittedBytes
                uplink.engineReceivedBytes = uplink.receivedBytes
                // Offloads as a kernel with UDP GSO/GRO reports them: fewer sends and receives than datagrams.
                (uplink.segmentedDatagrams, uplink.coalescedDatagrams) = up ? (30, 40) : (0, 0)
                return uplink
            }, routingFailure: record.routingFailure)
            result.dnsOffer = record.dnsOffer
            return result
        }
    }

    /// What the server offers as DNS from now on (its DNS-offer frame), or nil.
    func setDNSOffer(_ offer: DNSOffer?) {
        record.withLock { $0.dnsOffer = offer }
    }

    /// The data plane's routing report: the kernel refused the assignment (`message`), or it applied (nil).
    func setRoutingFailure(_ message: String?) {
        record.withLock { $0.routingFailure = message }
    }

    /// Marks uplinks as having (or not having) a session, as the data plane would after a handshake.
    func establish(_ interfaces: String..., assignment: TunnelAddresses? = nil) {
        record.withLock { record in
            record.established.formUnion(interfaces)
            if let assignment { record.assignment = assignment }
        }
    }

    /// What an established uplink reports as sent and received from now on.
    func setTraffic(_ interface: String, transmitted: UInt64, received: UInt64) {
        record.withLock { $0.traffic[interface] = (transmitted, received) }
    }

    func setPathState(_ state: TriglavMultipath.UplinkState, _ interface: String) {
        record.withLock { $0.pathStates[interface] = state }
    }

    /// The data plane's route check: no route to the server through these interfaces (or one again).
    func setRouteToServer(_ present: Bool, _ interfaces: String...) {
        record.withLock { record in
            if present { record.unrouted.subtract(interfaces) } else { record.unrouted.formUnion(interfaces) }
        }
    }

    func lose(_ interfaces: String...) {
        record.withLock { $0.established.subtract(interfaces) }
    }

    var uplinks: [String] { record.withLock { $0.uplinks } }
    var calls: [String] { record.withLock { $0.calls } }
    var isStopped: Bool { record.withLock { $0.stopped } }
}

final class FakeClientTunnelFactory: ClientTunnelFactory, Sendable {
    let made = Mutex<[FakeClientTunnel]>([])
    let startError = Mutex<TriglavDataPlaneError?>(nil)

    func makeTunnel(_ plan: ClientTunnelPlan) throws(TriglavDaemonError) -> any ClientTunnelDriving {
        let tunnel = FakeClientTunnel(plan: plan, startError: startError.withLock { $0 })
        made.withLock { $0.append(tunnel) }
        return tunnel
    }

    var last: FakeClientTunnel? { made.withLock { $0.last } }
    var count: Int { made.withLock { $0.count } }

    let leftoverCleanups = Mutex<[RoutingSettings]>([])
    func removeLeftovers(_ routing: RoutingSettings) throws(TriglavDaemonError) {
        leftoverCleanups.withLock { $0.append(routing) }
    }
}

final class FakeServerTunnel: ServerTunnelDriving, Sendable {
    let plan: ServerTunnelPlan
    let state = Mutex<(started: Bool, stopped: Bool, snapshot: ServerTunnelSnapshot)>((false, false, ServerTunnelSnapshot()))

    init(plan: ServerTunnelPlan) { self.plan = plan }

    func start() throws(TriglavDataPlaneError) { state.withLock { $0.started = true } }
    func stop() { state.withLock { $0.stopped = true } }
    func snapshot() -> ServerTunnelSnapshot { state.withLock { $0.snapshot } }
    func listeningEndpoints() throws(TriglavDataPlaneError) -> [IPEndpoint] { plan.listen }
    func disconnectClient(publicKey: IdentityPublicKey) -> Bool {
        state.withLock { state in
            let before = state.snapshot.clients.count
            state.snapshot.clients.removeAll { $0.publicKey == publicKey.base64 }
            return state.snapshot.clients.count < before
        }
    }

    func setClients(_ clients: [ServerTunnelSnapshot.Client]) { state.withLock { $0.snapshot.clients = clients } }
    var isStopped: Bool { state.withLock { $0.stopped } }
    var isStarted: Bool { state.withLock { $0.started } }
}

final class FakeServerTunnelFactory: ServerTunnelFactory, Sendable {
    let made = Mutex<[FakeServerTunnel]>([])

    func makeTunnel(_ plan: ServerTunnelPlan) throws(TriglavDaemonError) -> any ServerTunnelDriving {
        let tunnel = FakeServerTunnel(plan: plan)
        made.withLock { $0.append(tunnel) }
        return tunnel
    }

    var last: FakeServerTunnel? { made.withLock { $0.last } }
    var count: Int { made.withLock { $0.count } }
}

/// A configuration "file" the test rewrites between reloads.
final class FakeConfigSource: DaemonConfigSource, Sendable {
    let current: Mutex<Result<DaemonConfig, TriglavDaemonError>>

    init(_ config: DaemonConfig) { current = Mutex(.success(config)) }

    func load() throws(TriglavDaemonError) -> DaemonConfig { try current.withLock { $0 }.get() }
    func set(_ config: DaemonConfig) { current.withLock { $0 = .success(config) } }
    func fail(_ error: TriglavDaemonError) { current.withLock { $0 = .failure(error) } }
}

final class FakeProfileStore: ProfileStore, Sendable {
    let profiles: Mutex<[String: Profile]>

    init(_ profiles: [Profile]) {
        self.profiles = Mutex(Dictionary(uniqueKeysWithValues: profiles.map { ($0.name.rawValue, $0) }))
    }

    func profile(named name: ProfileName) throws(TriglavDaemonError) -> Profile {
        guard let profile = profiles.withLock({ $0[name.rawValue] }) else { throw .notFound("profile '\(name)'") }
        return profile
    }

    func set(_ profile: Profile) { profiles.withLock { $0[profile.name.rawValue] = profile } }
}

struct FixedResolver: EndpointResolving {
    func resolve(_ endpoint: RemoteEndpoint) throws(TriglavDaemonError) -> IPEndpoint {
        switch endpoint {
        case .address(let address): return address
        case .hostname(let host, let port):
            guard host == "vpn.example.net" else { throw .failed(operation: "resolving '\(host)'", reason: "unknown host") }
            return IPEndpoint(address: .v4(0xC633_6405), port: port)
        }
    }
}

/// An uplink source the test drives by hand.
final class FakeUplinkSource: UplinkSource, Sendable {
    let handler = Mutex<(@Sendable (DiscoveryEvent) -> Void)?>(nil)
    let policies = Mutex<[DiscoveryPolicy]>([])
    let stopped = Mutex(false)
    /// Events sent as soon as `start` is called (the "initial dump").
    let initial: [DiscoveryEvent]

    init(policy: DiscoveryPolicy, initial: [DiscoveryEvent]) {
        policies.withLock { $0 = [policy] }
        self.initial = initial
    }

    func start(_ handler: @escaping @Sendable (DiscoveryEvent) -> Void) throws(NetlinkError) {
        self.handler.withLock { $0 = handler }
        for event in initial { handler(event) }
    }

    func updatePolicy(_ policy: DiscoveryPolicy) { policies.withLock { $0.append(policy) } }
    func stop() { stopped.withLock { $0 = true }; handler.withLock { $0 = nil } }

    func send(_ event: DiscoveryEvent) { handler.withLock { $0 }?(event) }
}

/// Records what the manager hands the system resolver; `failure` makes `apply` throw it.
final class RecordingLinkDNS: LinkDNSConfiguring, Sendable {
    enum Call: Equatable {
        case apply(LinkDNS, String)
        case revert(String)
        case use(DNSResolverChoice)
    }
    let calls = Mutex<[Call]>([])
    let failure = Mutex<TriglavDaemonError?>(nil)
    /// Runs inside each call (to look at the tunnel at that moment).
    let onCall = Mutex<(@Sendable () -> Void)?>(nil)

    func apply(_ dns: LinkDNS, to interface: InterfaceName) throws(TriglavDaemonError) {
        onCall.withLock { $0 }?()
        calls.withLock { $0.append(.apply(dns, interface.rawValue)) }
        if let failure = failure.withLock({ $0 }) { throw failure }
    }

    func revert(_ interface: InterfaceName) throws(TriglavDaemonError) {
        onCall.withLock { $0 }?()
        calls.withLock { $0.append(.revert(interface.rawValue)) }
    }

    func use(_ choice: DNSResolverChoice) { chosen.withLock { $0.append(choice) } }
    /// Every `use` call, in order (kept apart from `calls`, which the tests count).
    let chosen = Mutex<[DNSResolverChoice]>([])

    var all: [Call] { calls.withLock { $0 } }
}

final class RecordingNotifier: ServiceNotifier, Sendable {
    let sent = Mutex<[[NotifyState]]>([])

    func notify(_ states: [NotifyState]) { sent.withLock { $0.append(states) } }

    var messages: [[NotifyState]] { sent.withLock { $0 } }
}

/// Collects manager events in order.
final class EventLog<Event: Sendable>: Sendable {
    let events = Mutex<[Event]>([])
    func append(_ event: Event) { events.withLock { $0.append(event) } }
    var all: [Event] { events.withLock { $0 } }
    func clear() { events.withLock { $0 = [] } }
}

enum Fixtures {
    static let serverKey = IdentityKey.generate().publicKey

    static func profile(_ name: String = "home", endpoint: String = "198.51.100.5:7443") throws -> Profile {
        try Profile(name: ProfileName(name), endpoint: RemoteEndpoint(endpoint), serverPublicKey: serverKey)
    }

    static func uplink(_ name: String, index: Int32, kind: UplinkKind = .ethernet, tier: TriglavMultipath.UplinkTier = .primary,
                       metered: Bool = false, address: String = "192.0.2.10") -> DiscoveredUplink {
        DiscoveredUplink(name: name, interfaceIndex: index, kind: kind, tier: tier, isMetered: metered,
                         localAddresses: IPAddress(address).map { [$0] } ?? [], mtu: 1500)
    }

    static func clientManager(config: DaemonConfig = DaemonConfig(), profiles: [Profile]? = nil,
                              clock: @escaping @Sendable () -> Int64 = { 1_768_435_200 }, dataCapStore: DataCapStore? = nil,
                              linkDNS: any LinkDNSConfiguring = RecordingLinkDNS())
        throws -> (ClientManager, FakeClientTunnelFactory, FakeConfigSource, FakeProfileStore) {
        let factory = FakeClientTunnelFactory()
        let source = FakeConfigSource(config)
        let store = FakeProfileStore(try profiles ?? [profile()])
        let manager = ClientManager(config: config, configSource: source, profiles: store, tunnels: factory,
                                    resolver: FixedResolver(), clock: clock, dataCapStore: dataCapStore, linkDNS: linkDNS)
        return (manager, factory, source, store)
    }
}

extension ServerTunnelStatistics.Path {
    /// Client uplink `uplink` in `state` from 198.51.100.7:(40000 + uplink), with the given figures.
    static func fake(_ uplink: UInt32, _ state: TriglavMultipath.UplinkState, rttMilliseconds: UInt64 = 0, lossPercent: Double? = nil,
                     rxBytes: UInt64 = 0, txBytes: UInt64 = 0, overTCP: Bool = false) -> ServerTunnelStatistics.Path {
        let rtt = rttMilliseconds * 1_000_000
        return ServerTunnelStatistics.Path(
            uplink: UplinkID(uplink), endpoint: IPEndpoint(address: .v4(0xc633_6407), port: UInt16(40000 + uplink)), overTCP: overTCP,
            statistics: UplinkStatistics(id: UplinkID(uplink), policy: UplinkPolicy(), state: state, stateSince: 0, smoothedRTT: rtt,
                                         rttVariance: 0, minimumRTT: rtt, jitter: rtt / 10, predictedRTT: rtt, lossPercent: lossPercent,
                                         capacityBitsPerSecond: 0, relativeOneWayDelay: nil, txPackets: 0, txBytes: txBytes,
                                         rxPackets: 0, rxBytes: rxBytes))
    }
}
