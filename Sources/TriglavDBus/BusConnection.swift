internal import CDBus
internal import CTriglavShims
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A private connection to a D-Bus bus, driven by its own event-loop thread.
///
/// Threading model (why: libdbus objects are not meant to be shared between threads): every libdbus
/// call on the connection happens on the loop thread. Public methods may be called from any thread
/// or task; they enqueue a job and wake the loop through an eventfd. Method handlers, property
/// setters and signal handlers run on the loop thread and must not block: they reply later through
/// `DBusMethodCall`, from any thread.
///
/// Lifetime: the loop thread keeps the connection alive until `close()` is called or the bus drops
/// the connection; after that every operation fails with `TriglavDBusError.disconnected`.
public final class BusConnection: Sendable {
    /// The address we connected to (for messages).
    public let address: String
    /// Our unique name on the bus (":1.42").
    public let uniqueName: String

    /// Loop-confined libdbus connection.
    nonisolated(unsafe) let raw: OpaquePointer
    /// Loop-confined bookkeeping.
    nonisolated(unsafe) let state = LoopState()
    private let wakeFD: Int32
    private let queue = Mutex(JobQueue())
    /// Paths claimed by `export` and not yet released by `unexport`, checked synchronously.
    let exportedPaths = Mutex<Set<DBusObjectPath>>([])

    struct JobQueue: ~Copyable {
        var jobs: [@Sendable () -> Void] = []
        var closed = false
        var stopRequested = false
    }

    /// The system bus: `DBUS_SYSTEM_BUS_ADDRESS` when set (as libdbus does), else the standard socket.
    public static var systemBusAddress: String {
        if let fromEnvironment = getenv("DBUS_SYSTEM_BUS_ADDRESS"), fromEnvironment.pointee != 0 {
            return String(cString: fromEnvironment)
        }
        return "unix:path=/run/dbus/system_bus_socket"
    }

    /// Connects to the system bus (see `systemBusAddress`).
    public static func system() throws(TriglavDBusError) -> BusConnection {
        try BusConnection(address: systemBusAddress)
    }

    /// Opens a private connection to `address`, registers with the bus (Hello) and starts the loop.
    /// Blocks for the registration round trip only.
    public init(address: String) throws(TriglavDBusError) {
        _ = dbus_threads_init_default()
        var error = DBusError()
        dbus_error_init(&error)
        defer { dbus_error_free(&error) }
        guard let connection = dbus_connection_open_private(address, &error) else {
            throw .connectionFailed(address: address, reason: BusConnection.message(of: &error))
        }
        dbus_connection_set_exit_on_disconnect(connection, 0)
        guard dbus_bus_register(connection, &error) != 0 else {
            let reason = BusConnection.message(of: &error)
            dbus_connection_close(connection)
            dbus_connection_unref(connection)
            throw .connectionFailed(address: address, reason: reason)
        }
        let wake = tg_dbus_wakeup_fd()
        guard wake >= 0 else {
            dbus_connection_close(connection)
            dbus_connection_unref(connection)
            throw .connectionFailed(address: address, reason: "eventfd failed (errno \(errno))")
        }
        self.address = address
        self.raw = connection
        self.wakeFD = wake
        self.uniqueName = dbus_bus_get_unique_name(connection).map { String(cString: $0) } ?? ""

        let filter: DBusHandleMessageFunction = { _, message, userData in
            guard let message, let userData else { return DBUS_HANDLER_RESULT_NOT_YET_HANDLED }
            let connection = Unmanaged<BusConnection>.fromOpaque(userData).takeUnretainedValue()
            return connection.handleIncoming(message) ? DBUS_HANDLER_RESULT_HANDLED : DBUS_HANDLER_RESULT_NOT_YET_HANDLED
        }
        // Unretained: the loop thread holds the strong reference for as long as the filter can run.
        _ = dbus_connection_add_filter(connection, filter, Unmanaged.passUnretained(self).toOpaque(), nil)
        startLoopThread()
    }

    static func message(of error: inout DBusError) -> String {
        if dbus_error_is_set(&error) != 0, let text = error.message { return String(cString: text) }
        return "unknown error"
    }

    /// Stops the loop and closes the connection. Pending calls fail with `.disconnected`.
    /// Safe to call more than once and from any thread, including handlers.
    public func close() {
        queue.withLock { $0.stopRequested = true }
        wake()
    }

    /// True until the loop has stopped.
    public var isOpen: Bool { queue.withLock { !$0.closed } }

    /// Registers `handler` to run (on the loop thread) once the connection is closed or lost.
    public func onDisconnect(_ handler: @escaping @Sendable () -> Void) {
        let accepted = enqueue { [self] in state.disconnectHandlers.append(handler) }
        if !accepted { handler() }
    }

    // MARK: Jobs

    /// Runs `job` on the loop thread. Returns false (and drops the job) once the loop has stopped.
    @discardableResult
    func enqueue(_ job: @escaping @Sendable () -> Void) -> Bool {
        let accepted = queue.withLock { queue -> Bool in
            guard !queue.closed else { return false }
            queue.jobs.append(job)
            return true
        }
        if accepted { wake() }
        return accepted
    }

    private func wake() {
        var one: UInt64 = 1
        _ = withUnsafePointer(to: &one) { write(wakeFD, $0, 8) }
    }

    // MARK: The loop

    private func startLoopThread() {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let result = pthread_create(&thread, nil, { argument in
            guard let argument else { return nil }
            let connection = Unmanaged<BusConnection>.fromOpaque(argument).takeRetainedValue()
            connection.runLoop()
            return nil
        }, context)
        precondition(result == 0, "pthread_create failed: \(result)")
        pthread_detach(thread)
    }

    private func runLoop() {
        var busFD: Int32 = -1
        _ = dbus_connection_get_unix_fd(raw, &busFD)
        while true {
            let (jobs, stop) = queue.withLock { queue -> ([@Sendable () -> Void], Bool) in
                let jobs = queue.jobs
                queue.jobs.removeAll(keepingCapacity: true)
                return (jobs, queue.stopRequested)
            }
            for job in jobs { job() }
            if stop { break }
            while dbus_connection_get_dispatch_status(raw) == DBUS_DISPATCH_DATA_REMAINS {
                _ = dbus_connection_dispatch(raw)
            }
            if state.lostConnection || dbus_connection_get_is_connected(raw) == 0 { break }
            fireExpired()
            var fds = [
                pollfd(fd: busFD, events: Int16(POLLIN) | (dbus_connection_has_messages_to_send(raw) != 0 ? Int16(POLLOUT) : 0), revents: 0),
                pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&fds, 2, nextTimeoutMilliseconds())
            if ready < 0 && errno != EINTR { break }
            if fds[1].revents != 0 {
                var counter: UInt64 = 0
                _ = withUnsafeMutablePointer(to: &counter) { read(wakeFD, $0, 8) }
            }
            if fds[0].revents != 0 || dbus_connection_has_messages_to_send(raw) != 0 {
                _ = dbus_connection_read_write(raw, 0)
            }
        }
        shutDown()
    }

    private func shutDown() {
        let leftover = queue.withLock { queue -> [@Sendable () -> Void] in
            queue.closed = true
            let jobs = queue.jobs
            queue.jobs.removeAll()
            return jobs
        }
        state.isClosed = true
        // Jobs check `state.isClosed` and fail their callers instead of touching the connection.
        for job in leftover { job() }
        let pending = state.pendingReplies
        state.pendingReplies.removeAll()
        for (_, reply) in pending { reply.complete(.failure(.disconnected)) }
        state.subscriptions.removeAll()
        state.timers.removeAll()
        let handlers = state.disconnectHandlers
        state.disconnectHandlers.removeAll()
        for handler in handlers { handler() }
        dbus_connection_close(raw)
        dbus_connection_unref(raw)
        Glibc.close(wakeFD)
    }

    private func nextTimeoutMilliseconds() -> Int32 {
        let deadlines = state.pendingReplies.values.map(\.deadline) + state.timers.map(\.deadline)
        guard let nearest = deadlines.min() else { return -1 }
        let remaining = ContinuousClock.now.duration(to: nearest)
        if remaining <= .zero { return 0 }
        let (seconds, attoseconds) = remaining.components
        let milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1
        return Int32(clamping: milliseconds)
    }

    private func fireExpired() {
        let now = ContinuousClock.now
        let expiredReplies = state.pendingReplies.filter { $0.value.deadline <= now }
        for (serial, reply) in expiredReplies {
            state.pendingReplies[serial] = nil
            reply.complete(.failure(.timeout(method: reply.method, seconds: reply.timeoutSeconds)))
        }
        let due = state.timers.filter { $0.deadline <= now }
        state.timers.removeAll { $0.deadline <= now }
        for timer in due { timer.action() }
    }

    /// Schedules `action` on the loop thread at `deadline`. Loop thread only.
    func scheduleTimer(at deadline: ContinuousClock.Instant, _ action: @escaping () -> Void) {
        state.timers.append(LoopState.Timer(deadline: deadline, action: action))
    }

    // MARK: Incoming messages (loop thread)

    private func handleIncoming(_ message: OpaquePointer) -> Bool {
        switch dbus_message_get_type(message) {
        case DBUS_MESSAGE_TYPE_METHOD_RETURN, DBUS_MESSAGE_TYPE_ERROR:
            let serial = dbus_message_get_reply_serial(message)
            guard let pending = state.pendingReplies.removeValue(forKey: serial) else { return false }
            let values = Marshalling.read(message)
            if dbus_message_get_type(message) == DBUS_MESSAGE_TYPE_ERROR {
                let name = dbus_message_get_error_name(message).map { String(cString: $0) } ?? DBusStandardError.failed
                pending.complete(.failure(.remote(name: name, message: values.first?.stringValue ?? "")))
            } else {
                pending.complete(.success(values))
            }
            return true
        case DBUS_MESSAGE_TYPE_SIGNAL:
            let signal = DBusSignal(message: message)
            if signal.interface == "org.freedesktop.DBus.Local" && signal.member == "Disconnected" {
                state.lostConnection = true
                return true
            }
            for subscription in state.subscriptions.values where subscription.rule.matches(signal) {
                subscription.handler(signal)
            }
            return false
        case DBUS_MESSAGE_TYPE_METHOD_CALL:
            return handleMethodCall(message)
        default:
            return false
        }
    }

    // MARK: Sending (loop thread)

    /// Sends `message` (not consumed). Loop thread only.
    @discardableResult
    func send(_ message: OpaquePointer) -> UInt32 {
        var serial: UInt32 = 0
        _ = dbus_connection_send(raw, message, &serial)
        return serial
    }
}

/// State touched only on the loop thread.
final class LoopState {
    struct PendingReply {
        let method: String
        let deadline: ContinuousClock.Instant
        let timeoutSeconds: Double
        let complete: (Result<[DBusValue], TriglavDBusError>) -> Void
    }

    struct Subscription {
        let rule: DBusMatchRule
        let handler: @Sendable (DBusSignal) -> Void
    }

    struct Timer {
        let deadline: ContinuousClock.Instant
        let action: () -> Void
    }

    var isClosed = false
    var lostConnection = false
    var pendingReplies: [UInt32: PendingReply] = [:]
    var subscriptions: [UInt64: Subscription] = [:]
    var nextSubscriptionID: UInt64 = 1
    var timers: [Timer] = []
    var disconnectHandlers: [@Sendable () -> Void] = []
    var objects: [DBusObjectPath: ObjectRecord] = [:]
    var objectManagers: Set<DBusObjectPath> = []
}
