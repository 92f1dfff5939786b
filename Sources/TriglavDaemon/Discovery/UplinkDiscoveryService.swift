import Dispatch
public import Logging
public import TriglavNetlink
import Synchronization
import TriglavSystemd

/// Runs uplink discovery live: a `NetlinkMonitor` feeding an `UplinkDiscovery`, with the resulting
/// `DiscoveryEvent`s delivered to a handler on the monitor's thread (in order, without hops, so an
/// interface that comes up is reported within milliseconds).
///
/// Thread safety: `Sendable`; the discovery state sits behind a mutex, and the handler is called
/// with that mutex held so that events from netlink and from `updatePolicy` never interleave out of
/// order. Hence the handler must not call back into the service (use `events()` or hop to another
/// task if it needs to). Lifetime: `start` once, `stop()` ends delivery; a stopped service can't restart.
public final class UplinkDiscoveryService: Sendable {
    private let monitor: NetlinkMonitor
    private let state: Mutex<State>
    private let logger: Logger
    /// Whether udev's database describes our interfaces (see `SystemInterfaceEnvironment`), so its events
    /// (sd-device monitor) are worth watching.
    private let readsUdev: Bool

    private struct State {
        var discovery: UplinkDiscovery
        var handler: (@Sendable (DiscoveryEvent) -> Void)?
        /// Finishes the stream handed out by `events()`.
        var onStop: (@Sendable () -> Void)?
        var deviceMonitor: DeviceMonitor?
    }

    /// `networkNamespacePath` watches another namespace (tests, the lab); nil watches our own.
    public init(policy: DiscoveryPolicy, environment: any InterfaceEnvironment = SystemInterfaceEnvironment(),
                networkNamespacePath: String? = nil,
                logger: Logger = Logger(label: "triglav.discovery")) {
        self.monitor = NetlinkMonitor(networkNamespacePath: networkNamespacePath, logger: logger)
        self.state = Mutex(State(discovery: UplinkDiscovery(policy: policy, environment: environment)))
        self.logger = logger
        readsUdev = networkNamespacePath == nil && (environment as? SystemInterfaceEnvironment)?.trustsDeviceDatabase == true
    }

    /// Applies udev's view of an interface after its rules ran (from the sd-device monitor).
    func applyDeviceEvent(_ event: DeviceEvent) {
        guard event.action != "remove" else { return }  // netlink reports the link's removal
        let logger = self.logger
        state.withLock { state in
            for change in state.discovery.devicePropertiesChanged(name: event.interfaceName, index: event.interfaceIndex,
                                                                   properties: event.properties.values) {
                logger.debug("udev \(event.action): \(change)", metadata: ["interface": "\(event.interfaceName)"])
                state.handler?(change)
            }
        }
    }

    deinit { stop() }

    /// Starts watching; `handler` receives `.added/.changed/.removed` and one `.synchronized` after the
    /// initial dump. Throws when the netlink sockets cannot be opened or the service was started before.
    public func start(_ handler: @escaping @Sendable (DiscoveryEvent) -> Void) throws(NetlinkError) {
        state.withLock { $0.handler = handler }
        let logger = self.logger
        // Before the netlink dump, so no udev event about a dumped link can fall between the two. Without it
        // (no udevd, no permission) properties are still read when a link appears.
        if readsUdev {
            let deviceMonitor = DeviceMonitor(queue: DispatchQueue(label: "triglav.discovery.udev")) { [weak self] event in
                self?.applyDeviceEvent(event)
            }
            do throws(SystemdError) {
                try deviceMonitor.start()
                state.withLock { $0.deviceMonitor = deviceMonitor }
            } catch {
                logger.warning("\(error)")
            }
        }
        try monitor.start { [weak self] event in
            guard let self else { return }
            self.state.withLock { state in
                for change in state.discovery.handle(event) {
                    logger.debug("\(change)", metadata: change.uplink.map { ["interface": "\($0.name)"] } ?? [:])
                    state.handler?(change)
                }
            }
        }
    }

    /// Starts watching and returns the events as an async sequence; ending the iteration stops the
    /// service, and `stop()` (or releasing the service) ends the sequence.
    public func events() throws(NetlinkError) -> AsyncStream<DiscoveryEvent> {
        let (stream, continuation) = AsyncStream<DiscoveryEvent>.makeStream(bufferingPolicy: .unbounded)
        continuation.onTermination = { [weak self] _ in self?.stop() }
        state.withLock { $0.onStop = { continuation.finish() } }
        do {
            try start { continuation.yield($0) }
        } catch {
            continuation.finish()
            throw error
        }
        return stream
    }

    /// Applies a new policy (config reload); the resulting changes go to the handler before this returns.
    public func updatePolicy(_ policy: DiscoveryPolicy) {
        state.withLock { state in
            for change in state.discovery.updatePolicy(policy) { state.handler?(change) }
        }
    }

    /// The current uplinks, by interface index order.
    public var uplinks: [DiscoveredUplink] {
        state.withLock { $0.discovery.uplinks.values.sorted { $0.interfaceIndex < $1.interfaceIndex } }
    }

    /// Interfaces with any state inside discovery (bounded by the kernel's interfaces; for tests).
    var trackedInterfaceCount: Int { state.withLock { $0.discovery.trackedInterfaceCount } }

    /// Whether the initial dump has been applied.
    public var isSynchronized: Bool { state.withLock { $0.discovery.isSynchronized } }

    /// Stops the monitor; no handler call starts after this returns.
    public func stop() {
        // Outside the lock: stopping waits for the monitor's queue, whose handler takes the lock.
        state.withLock { state in defer { state.deviceMonitor = nil }; return state.deviceMonitor }?.stop()
        monitor.stop()
        let finish = state.withLock { state in
            let finish = state.onStop
            state.handler = nil
            state.onStop = nil
            return finish
        }
        finish?()
    }
}

extension DiscoveryEvent {
    /// The uplink an event is about (nil for `.synchronized`).
    public var uplink: DiscoveredUplink? {
        switch self {
        case .added(let uplink), .changed(let uplink), .removed(let uplink): uplink
        case .synchronized: nil
        }
    }
}
