internal import CSystemd
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One assignment of the sd_notify(3) protocol.
public enum NotifyState: Sendable, Hashable {
    /// Startup finished (for `Type=notify`): the bus name is owned and the initial state applied.
    case ready
    /// A single line a human can read in `systemctl status` (newlines are replaced by spaces).
    case status(String)
    /// Shutdown has begun.
    case stopping
    /// Configuration reload has begun; send `.ready` when done.
    case reloading
    /// Keep-alive for `WatchdogSec=`.
    case watchdog

    var assignment: String {
        switch self {
        case .ready: "READY=1"
        case .status(let text):
            "STATUS=" + String(text.map { $0.isNewline ? " " : $0 })
        case .stopping: "STOPPING=1"
        case .reloading: "RELOADING=1"
        case .watchdog: "WATCHDOG=1"
        }
    }
}

/// sd_notify(3) wrapper. Without $NOTIFY_SOCKET (not started by systemd) every call is a no-op that
/// returns false, so the daemon never has to ask whether it runs under systemd.
public enum SystemdNotifier {
    /// Sends the states in one datagram. Returns true when sent, false when not under systemd.
    @discardableResult
    public static func notify(_ states: [NotifyState]) throws(SystemdError) -> Bool {
        let message = states.map(\.assignment).joined(separator: "\n")
        let rc = sd_notify(0, message)
        if rc < 0 { throw .notifyFailed(state: message, errno: -rc) }
        return rc > 0
    }

    @discardableResult
    public static func ready(status: String? = nil) throws(SystemdError) -> Bool {
        try notify([.ready] + (status.map { [.status($0)] } ?? []))
    }

    @discardableResult
    public static func status(_ text: String) throws(SystemdError) -> Bool { try notify([.status(text)]) }

    @discardableResult
    public static func stopping(status: String? = nil) throws(SystemdError) -> Bool {
        try notify([.stopping] + (status.map { [.status($0)] } ?? []))
    }

    @discardableResult
    public static func watchdogPing() throws(SystemdError) -> Bool { try notify([.watchdog]) }

    /// The watchdog timeout systemd expects (WatchdogSec=, from $WATCHDOG_USEC and $WATCHDOG_PID), or nil
    /// when no watchdog is configured for this process.
    public static var watchdogTimeout: Duration? {
        var microseconds: UInt64 = 0
        guard sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        return .microseconds(Int64(clamping: microseconds))
    }

    /// Whether the system was booted with systemd (sd_booted(3)).
    public static var isSystemdBooted: Bool { sd_booted() > 0 }
}

/// Sends WATCHDOG=1 at half the watchdog timeout for as long as it runs, but only while `isHealthy`
/// says so — a daemon whose event loop is stuck should be restarted, not kept alive by a timer. Give it
/// a check that proves progress (e.g. "the main loop ran within the last timeout").
///
/// Runs on its own OS thread (blocked in poll(2) between pings), so neither a busy cooperative pool nor
/// a slow handler delays the ping. Lifetime: pings from `start()` until `stop()` or deinit.
public final class WatchdogPinger: Sendable {
    private let interval: Duration
    private let isHealthy: @Sendable () -> Bool
    /// Write end of the stop pipe while the thread runs; closing it wakes and ends the thread.
    private let stopFD = Mutex<Int32?>(nil)

    /// `timeout` is the watchdog timeout (usually `SystemdNotifier.watchdogTimeout`); pings go out at half of it.
    public init(timeout: Duration, isHealthy: @escaping @Sendable () -> Bool = { true }) {
        self.interval = timeout / 2
        self.isHealthy = isHealthy
    }

    /// A pinger for this process's configured watchdog, or nil when systemd configured none.
    public static func forConfiguredWatchdog(isHealthy: @escaping @Sendable () -> Bool = { true }) -> WatchdogPinger? {
        SystemdNotifier.watchdogTimeout.map { WatchdogPinger(timeout: $0, isHealthy: isHealthy) }
    }

    /// Starts pinging (the first ping goes out at once). Calling it while running does nothing.
    public func start() {
        stopFD.withLock { stopFD in
            guard stopFD == nil else { return }
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else { return }
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
            stopFD = fds[1]
            let readFD = fds[0]
            let milliseconds = Int32(clamping: interval.components.seconds * 1000
                                     + interval.components.attoseconds / 1_000_000_000_000_000)
            let isHealthy = self.isHealthy
            PingThread.start {
                defer { close(readFD) }
                var wake = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
                while true {
                    if isHealthy() { _ = try? SystemdNotifier.watchdogPing() }
                    let ready = poll(&wake, 1, max(milliseconds, 1))
                    if ready > 0 || (ready < 0 && errno != EINTR) { return }
                }
            }
        }
    }

    /// Stops pinging; the thread ends within microseconds.
    public func stop() {
        stopFD.withLock { stopFD in
            if let fd = stopFD { close(fd) }
            stopFD = nil
        }
    }

    deinit { stop() }
}

/// Starts a detached pthread running a closure.
private enum PingThread {
    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    static func start(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<Box>.fromOpaque(raw).takeRetainedValue().body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed with \(rc) for the watchdog pinger")
        pthread_detach(thread)
    }
}
