public import Logging
public import TriglavNetlink
import Synchronization

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

    private struct State {
        var discovery: UplinkDiscovery
        var handler: (@Sendable (DiscoveryEvent) -> Void)?
        /// Finishes the stream handed out by `events()`.
        var onStop: (@Sendable () -> Void)?
    }

    /// `networkNamespacePath` watches another namespace (tests, the lab); nil watches our own.
    public init(policy: DiscoveryPolicy, environment: any InterfaceEnvironment = SystemInterfaceEnvironment(),
                networkNamespacePath: String? = nil,
                logger: Logger = Logger(label: "triglav.discovery")) {
        self.monitor = NetlinkMonitor(networkNamespacePath: networkNamespacePath, logger: logger)
        self.state = Mutex(State(discovery: UplinkDiscovery(policy: policy, environment: environment)))
        self.logger = logger
    }

    deinit { stop() }

    /// Starts watching; `handler` receives `.added/.changed/.removed` and one `.synchronized` after the
    /// initial dump. Throws when the netlink sockets cannot be opened or the service was started before.
    public func start(_ handler: @escaping @Sendable (DiscoveryEvent) -> Void) throws(NetlinkError) {
        state.withLock { $0.handler = handler }
        let logger = self.logger
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
