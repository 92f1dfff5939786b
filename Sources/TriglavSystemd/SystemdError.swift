/// Errors from the systemd integration. Each case carries the value that failed and the errno.
public enum SystemdError: Error, Sendable, Equatable, CustomStringConvertible {
    /// sd_notify could not send to $NOTIFY_SOCKET.
    case notifyFailed(state: String, errno: Int32)
    /// The interface has no device in sysfs / the udev database (e.g. it lives in another network
    /// namespace than /sys was mounted for, or it just disappeared).
    case deviceNotFound(interface: String, errno: Int32)
    /// Reading the device's properties failed for another reason.
    case deviceQueryFailed(interface: String, errno: Int32)
    /// Setting up the udev device monitor failed at `operation`.
    case deviceMonitorFailed(operation: String, errno: Int32)

    public var description: String {
        switch self {
        case .notifyFailed(let state, let errno):
            return "cannot notify systemd of '\(state)' (errno \(errno)); check NOTIFY_SOCKET and the unit's NotifyAccess="
        case .deviceNotFound(let interface, let errno):
            return "no udev device for interface \(interface) (errno \(errno)); it may be gone or live in another network namespace"
        case .deviceQueryFailed(let interface, let errno):
            return "cannot read udev properties of interface \(interface) (errno \(errno))"
        case .deviceMonitorFailed(let operation, let errno):
            return "cannot watch udev events: \(operation) failed (errno \(errno)); udev properties are read only when a link appears"
        }
    }
}
