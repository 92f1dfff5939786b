import Dispatch
public import Logging
public import TriglavControlAPI
import Synchronization
import TriglavDBus

/// The daemon's presence on D-Bus: publishes status snapshots and releases the name on close.
public protocol DaemonBus: Sendable {
    func publish(_ status: TriglavStatus)
    func close()
}

/// `TriglavBusAdaptor` on a private connection to `address` (the system bus: `DBUS_SYSTEM_BUS_ADDRESS`
/// or /run/dbus/system_bus_socket). The initializer blocks until the objects are exported and
/// `org.triglav` is owned, so READY=1 after it is true to its word.
public final class LiveDaemonBus: DaemonBus {
    private let connection: BusConnection
    private let adaptor: TriglavBusAdaptor

    public init(address: String, controller: any TunnelController, logger: Logger,
                timeout: Duration = .seconds(10)) throws(TriglavDaemonError) {
        do { connection = try BusConnection(address: address) } catch {
            throw .failed(operation: "connecting to the bus at \(address)",
                          reason: "\(error); is dbus running? (run with --no-bus to do without the org.triglav API)")
        }
        adaptor = TriglavBusAdaptor(connection: connection, controller: controller, logger: logger)
        let outcome = Mutex<Result<Void, TriglavDBusError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let adaptor = self.adaptor
        Task {
            do throws(TriglavDBusError) {
                try await adaptor.start()
                outcome.withLock { $0 = .success(()) }
            } catch {
                outcome.withLock { $0 = .failure(error) }
            }
            done.signal()
        }
        let seconds = Int(timeout.components.seconds)
        if done.wait(timeout: .now() + .seconds(seconds)) == .timedOut {
            connection.close()
            throw .failed(operation: "taking the bus name \(TriglavBus.name)", reason: "no answer from the bus within \(seconds) s")
        }
        if case .failure(let error) = outcome.withLock({ $0 }) {
            connection.close()
            throw .failed(operation: "taking the bus name \(TriglavBus.name)",
                          reason: "\(error); is another triglavd running, and does the bus policy (dbus/org.triglav.conf) let root own it?")
        }
        connection.onDisconnect { logger.warning("lost the connection to the bus; the org.triglav API is gone until restart") }
    }

    /// The system bus: `DBUS_SYSTEM_BUS_ADDRESS` when set, else the standard socket.
    public static var systemBusAddress: String { BusConnection.systemBusAddress }

    public func publish(_ status: TriglavStatus) { adaptor.publish(status) }

    public func close() { connection.close() }
}
