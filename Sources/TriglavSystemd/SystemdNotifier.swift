internal import CSystemd
import Synchronization

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
/// says so — a daemon whose event loop is stuck should be restarted, not kept alive by a timer.
///
/// Runs as a task on the cooperative pool on purpose: if the pool is starved, pings stop and systemd
/// notices. Lifetime: pings from `start()` until `stop()` or deinit.
public final class WatchdogPinger: Sendable {
    private let interval: Duration
    private let isHealthy: @Sendable () -> Bool
    private let task = TaskBox()

    /// `timeout` is the watchdog timeout (usually `SystemdNotifier.watchdogTimeout`); pings go out at half of it.
    public init(timeout: Duration, isHealthy: @escaping @Sendable () -> Bool = { true }) {
        self.interval = timeout / 2
        self.isHealthy = isHealthy
    }

    /// A pinger for this process's configured watchdog, or nil when systemd configured none.
    public static func forConfiguredWatchdog(isHealthy: @escaping @Sendable () -> Bool = { true }) -> WatchdogPinger? {
        SystemdNotifier.watchdogTimeout.map { WatchdogPinger(timeout: $0, isHealthy: isHealthy) }
    }

    public func start() {
        let interval = self.interval, isHealthy = self.isHealthy
        task.replace(Task.detached {
            while !Task.isCancelled {
                if isHealthy() { _ = try? SystemdNotifier.watchdogPing() }
                try? await Task.sleep(for: interval)
            }
        })
    }

    public func stop() { task.replace(nil) }

    deinit { stop() }
}

/// Holds the running ping task; replacing it cancels the previous one.
private final class TaskBox: Sendable {
    private let current = Mutex<Task<Void, Never>?>(nil)

    func replace(_ task: Task<Void, Never>?) {
        let old = current.withLock { value in
            let old = value
            value = task
            return old
        }
        old?.cancel()
    }
}
