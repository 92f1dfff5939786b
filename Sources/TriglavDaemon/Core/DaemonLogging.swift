public import Logging
public import TriglavConfig
import TriglavSystemd

/// The daemon's log backend, chosen once at start: the journal with structured fields (uplink, interface,
/// profile, ...) when running under systemd, standard error otherwise.
public enum DaemonLogging {
    /// Call once, before the first `Logger` is made.
    public static func bootstrap(level: LogLevel) {
        SystemdLogging.bootstrap(identifier: "triglavd", logLevel: Logger.Level(level))
    }
}

extension Logger.Level {
    public init(_ level: LogLevel) {
        switch level {
        case .trace: self = .trace
        case .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error: self = .error
        case .critical: self = .critical
        }
    }
}
