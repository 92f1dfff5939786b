public import Logging
public import TriglavSystemd

/// Where readiness and status go: systemd's notify socket, or a recorder in tests.
public protocol ServiceNotifier: Sendable {
    func notify(_ states: [NotifyState])
}

/// sd_notify(3) through `SystemdNotifier`: a no-op without $NOTIFY_SOCKET. A failed send is logged,
/// never fatal: the service manager will notice a missing READY by itself.
public struct SystemdServiceNotifier: ServiceNotifier {
    private let logger: Logger

    public init(logger: Logger) { self.logger = logger }

    public func notify(_ states: [NotifyState]) {
        do { try SystemdNotifier.notify(states) } catch {
            logger.warning("sd_notify failed: \(error)")
        }
    }
}
