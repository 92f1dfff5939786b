public import TriglavControlAPI
import Synchronization

/// An in-memory `TunnelController` for tests and the bus fixture: it keeps a `TriglavStatus`, applies
/// commands with the same rules the real core must follow (states, not-found, validation) and tells
/// `onChange` about changes it makes by itself (`tick`, `simulate…`).
public final class FakeTunnelController: TunnelController {
    public static let defaultProfiles = ["home", "office"]
    public static let defaultInterfaces = ["eth0", "wlan0", "wwan0", "usb0", "eth1"]
    public static let schedulers = ["lowest-rtt", "weighted", "redundant", "round-robin", "backup"]

    private struct State {
        var status: TriglavControlAPI.TriglavStatus
        var nextUplinkID: UInt32 = 1
        var nextClientID: UInt32 = 1
        var reloads = 0
        /// The kernel's refusal the data plane would report while connected (`simulateRoutingFailure`).
        var routingFailure: String?
        var onChange: (@Sendable (TriglavControlAPI.TriglavStatus) -> Void)?
    }

    private let state: Mutex<State>
    public let profiles: [String]
    public let interfaces: [String]

    public init(profiles: [String] = FakeTunnelController.defaultProfiles,
                interfaces: [String] = FakeTunnelController.defaultInterfaces, version: String = "0.0.0-fake") {
        self.profiles = profiles
        self.interfaces = interfaces
        let manager = TriglavControlAPI.ManagerStatus(scheduler: "lowest-rtt", version: version)
        state = Mutex(State(status: TriglavControlAPI.TriglavStatus(manager: manager)))
    }

    /// Called after changes the fake makes on its own (wire it to `TriglavBusAdaptor.publish`).
    public func setOnChange(_ handler: @escaping @Sendable (TriglavControlAPI.TriglavStatus) -> Void) {
        state.withLock { $0.onChange = handler }
    }

    public var reloadCount: Int { state.withLock { $0.reloads } }

    private func mutate<T>(_ body: (inout State) throws(ControlError) -> T) throws(ControlError) -> T {
        try state.withLock { (state: inout State) throws(ControlError) -> T in try body(&state) }
    }

    private func notify() {
        let (status, handler) = state.withLock { ($0.status, $0.onChange) }
        handler?(status)
    }

    // MARK: TunnelController

    public func status() async -> TriglavControlAPI.TriglavStatus { state.withLock { $0.status } }

    public func connect(profile: String, options: TriglavControlAPI.ConnectOptions) async throws(ControlError) {
        let profiles = self.profiles
        try mutate { state throws(ControlError) in
            guard state.status.manager.state == .disconnected else {
                throw .alreadyConnected("already \(state.status.manager.state.rawValue) to profile \(state.status.manager.profile); disconnect first")
            }
            guard profiles.contains(profile) else {
                throw .notFound("no profile named \(profile) (known: \(profiles.joined(separator: ", ")))")
            }
            if let scheduler = options.scheduler, !FakeTunnelController.schedulers.contains(scheduler) {
                throw .invalidArgument("unknown scheduler \(scheduler) (known: \(FakeTunnelController.schedulers.joined(separator: ", ")))")
            }
            state.status.manager.state = state.routingFailure == nil ? .connected : .degraded
            state.status.manager.routingError = state.routingFailure ?? ""
            state.status.manager.profile = profile
            state.status.manager.server = options.server ?? "\(profile).vpn.example.net:7443"
            state.status.manager.tunnelInterface = "tg0"
            state.status.manager.tunnelAddresses = ["10.77.0.2/24", "fd77::2/64"]
            if let scheduler = options.scheduler { state.status.manager.scheduler = scheduler }
            for index in state.status.uplinks.indices where state.status.uplinks[index].enabled {
                state.status.uplinks[index].state = .active
                if let transport = options.transport { state.status.uplinks[index].transport = transport }
            }
        }
    }

    public func disconnect() async throws(ControlError) {
        try mutate { state throws(ControlError) in
            guard state.status.manager.state != .disconnected else { throw .notConnected("not connected") }
            state.status.manager.state = .disconnected
            state.status.manager.routingError = ""
            state.status.manager.tunnelInterface = ""
            state.status.manager.tunnelAddresses = []
            state.status.manager.counters = []
            for index in state.status.uplinks.indices where state.status.uplinks[index].state != .down {
                state.status.uplinks[index].state = .probing
            }
        }
    }

    public func addUplink(interface: String, options: TriglavControlAPI.UplinkOptions) async throws(ControlError) -> UInt32 {
        let interfaces = self.interfaces
        return try mutate { state throws(ControlError) in
            guard interfaces.contains(interface) else { throw .notFound("no network interface named \(interface)") }
            if let existing = state.status.uplinks.first(where: { $0.interface == interface }) {
                throw .invalidArgument("\(interface) is already uplink \(TriglavBus.uplinkPath(existing.id))")
            }
            let id = state.nextUplinkID
            state.nextUplinkID += 1
            var uplink = FakeTunnelController.uplink(id: id, interface: interface, origin: .manual)
            if let tier = options.tier { uplink.tier = tier }
            if let metered = options.metered { uplink.metered = metered }
            if let enabled = options.enabled { uplink.enabled = enabled }
            if let transport = options.transport { uplink.transport = transport }
            uplink.state = !uplink.enabled ? .down : (state.status.manager.state == .connected ? .active : .waiting)
            state.status.uplinks.append(uplink)
            return id
        }
    }

    public func removeUplink(id: UInt32) async throws(ControlError) {
        try mutate { state throws(ControlError) in
            guard let index = state.status.uplinks.firstIndex(where: { $0.id == id }) else {
                throw .notFound("no uplink \(TriglavBus.uplinkPath(id))")
            }
            state.status.uplinks.remove(at: index)
        }
    }

    public func configureUplink(id: UInt32, settings: TriglavControlAPI.UplinkOptions) async throws(ControlError) {
        try mutate { state throws(ControlError) in
            guard let index = state.status.uplinks.firstIndex(where: { $0.id == id }) else {
                throw .notFound("no uplink \(TriglavBus.uplinkPath(id))")
            }
            if let tier = settings.tier { state.status.uplinks[index].tier = tier }
            if let metered = settings.metered { state.status.uplinks[index].metered = metered }
            if let enabled = settings.enabled {
                state.status.uplinks[index].enabled = enabled
                state.status.uplinks[index].state = !enabled ? .down : (state.status.manager.state == .connected ? .active : .waiting)
            }
        }
    }

    public func setScheduler(_ name: String) async throws(ControlError) {
        try mutate { state throws(ControlError) in
            guard FakeTunnelController.schedulers.contains(name) else {
                throw .invalidArgument("unknown scheduler \(name) (known: \(FakeTunnelController.schedulers.joined(separator: ", ")))")
            }
            state.status.manager.scheduler = name
        }
    }

    public func reload() async throws(ControlError) {
        state.withLock { $0.reloads += 1 }
    }

    public func disconnectClient(id: UInt32) async throws(ControlError) {
        try mutate { state throws(ControlError) in
            guard let index = state.status.clients.firstIndex(where: { $0.id == id }) else {
                throw .notFound("no client \(TriglavBus.clientPath(id))")
            }
            state.status.clients.remove(at: index)
        }
    }

    // MARK: Simulation (what discovery, the data plane and the server would do)

    private static func kind(of interface: String) -> TriglavControlAPI.UplinkKind {
        if interface.hasPrefix("wl") { return .wifi }
        if interface.hasPrefix("wwan") || interface.hasPrefix("usb") { return .wwan }
        if interface.hasPrefix("eth") || interface.hasPrefix("en") { return .ethernet }
        return .other
    }

    private static func uplink(id: UInt32, interface: String, origin: TriglavControlAPI.UplinkOrigin) -> TriglavControlAPI.UplinkStatus {
        let octet = UInt64(id % 250) + 2
        return TriglavControlAPI.UplinkStatus(id: id, interface: interface, kind: kind(of: interface), origin: origin, state: .probing,
                            tier: kind(of: interface) == .wwan ? .backup : .primary, metered: kind(of: interface) == .wwan,
                            rttUsec: 10_000 * octet, jitterUsec: 500 * octet, lossRatio: 0, capacityBps: 50_000_000,
                            localAddress: "192.0.2.\(octet)")
    }

    /// Discovery found `interface`: adds an automatic uplink and returns its id.
    @discardableResult
    public func simulateUplinkAppeared(interface: String) -> UInt32 {
        let id = state.withLock { state -> UInt32 in
            let id = state.nextUplinkID
            state.nextUplinkID += 1
            var uplink = FakeTunnelController.uplink(id: id, interface: interface, origin: .auto)
            if state.status.manager.state == .connected { uplink.state = .active }
            state.status.uplinks.append(uplink)
            return id
        }
        notify()
        return id
    }

    /// Discovery lost `interface`.
    public func simulateUplinkGone(interface: String) {
        state.withLock { $0.status.uplinks.removeAll { $0.interface == interface } }
        notify()
    }

    /// The data plane found no route to the server through `interface` (`present` false: the uplink waits, and
    /// Uplink1.RouteToServer is false), or one appeared (true: the uplink gets a session, as in a connect).
    public func simulateRouteToServer(interface: String, present: Bool) {
        state.withLock { state in
            let connected = state.status.manager.state == .connected
            for index in state.status.uplinks.indices where state.status.uplinks[index].interface == interface {
                state.status.uplinks[index].routeToServer = present
                state.status.uplinks[index].state = present ? (connected ? .active : .probing) : .waiting
            }
        }
        notify()
    }

    /// The client's probes found a hop on `interface`'s way that drops packets above `pathMTU` bytes without ICMP
    /// (Uplink1.PathMTU, PathMTUBlackhole).
    public func simulatePathMTUBlackhole(interface: String, pathMTU: UInt32) {
        state.withLock { state in
            for index in state.status.uplinks.indices where state.status.uplinks[index].interface == interface {
                state.status.uplinks[index].pathMTU = pathMTU
                state.status.uplinks[index].pathMTUBlackhole = true
            }
        }
        notify()
    }

    /// The kernel refuses the tunnel's addresses or routes (`message`), as the data plane reports while it retries,
    /// or (nil) they finally apply. While connected: Manager1.RoutingError is the message and State `degraded`
    /// (the tunnel's traffic is blocked), then "" and `connected` again. Remembered for the next Connect.
    public func simulateRoutingFailure(_ message: String?) {
        state.withLock { state in
            state.routingFailure = message
            let manager = state.status.manager
            guard manager.state == .connected || manager.state == .degraded else { return }
            state.status.manager.routingError = message ?? ""
            state.status.manager.state = message == nil ? .connected : .degraded
        }
        notify()
    }

    /// A client connected to the server role; returns its id.
    @discardableResult
    public func simulateClientConnected(publicKey: String, endpoint: String) -> UInt32 {
        let id = state.withLock { state -> UInt32 in
            let id = state.nextClientID
            state.nextClientID += 1
            state.status.server.enabled = true
            state.status.server.listenAddress = "0.0.0.0:7443"
            state.status.clients.append(TriglavControlAPI.ClientStatus(id: id, publicKey: publicKey, endpoint: endpoint,
                                                     tunnelAddresses: ["10.77.0.\(id + 10)/32"], state: .connected,
                                                     paths: 2, rttUsec: 20_000, connectedSinceUsec: 1_700_000_000_000_000,
                                                     pathDetails: [
                                                         ClientPathStatus(uplink: 1, endpoint: endpoint, state: .ready, rttUsec: 20_000,
                                                                          jitterUsec: 1_500, rxBytes: 4_000, txBytes: 9_000),
                                                         ClientPathStatus(uplink: 2, endpoint: "198.51.100.\(id + 5):5000", transport: .tcp,
                                                                          state: .degraded, rttUsec: 80_000, lossRatio: 0.125),
                                                     ]))
            return id
        }
        notify()
        return id
    }

    /// Traffic flowed: counters and measurements move (as the data plane reports every packet batch).
    public func tick(bytes: UInt64 = 1500) {
        state.withLock { state in
            state.status.manager.txBytes += bytes
            state.status.manager.rxBytes += bytes * 2
            if state.status.manager.state != .disconnected {
                // One packet read per tick; nothing dropped.
                let read = state.status.manager.counters.first { $0.name == "read_packets" }?.value ?? 0
                state.status.manager.counters = [NamedCounter("read_packets", read + 1), NamedCounter("queue_dropped_packets", 0)]
            }
            for index in state.status.uplinks.indices where state.status.uplinks[index].state == .active {
                state.status.uplinks[index].txBytes += bytes
                state.status.uplinks[index].rxBytes += bytes * 2
                state.status.uplinks[index].rttUsec += 1
                state.status.uplinks[index].rxRateBps = bytes * 2 * 8 * 20
            }
            for index in state.status.clients.indices {
                state.status.clients[index].txBytes += bytes
                state.status.clients[index].rxBytes += bytes
            }
            state.status.server.txBytes += bytes
        }
        notify()
    }
}
