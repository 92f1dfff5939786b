/// Errors of the daemon's managers. Each case maps to one documented D-Bus error
/// (`org.triglav.Error.*`, see `controlError`) and carries the offending value; the description says
/// what was wrong and what to do.
public enum TriglavDaemonError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A value given by the caller is not acceptable (`what` names the argument).
    case invalidArgument(what: String, reason: String)
    /// No profile, uplink or client with this name/path exists.
    case notFound(String)
    /// Connect while a connection is up or being set up.
    case alreadyConnected(profile: String)
    /// An operation that needs a connection while there is none.
    case notConnected(operation: String)
    /// The operation does not exist in this role (e.g. Connect on a server).
    case wrongRole(operation: String, role: String)
    /// Loading configuration, keys or starting the tunnel failed; `reason` is the underlying error.
    case failed(operation: String, reason: String)
    /// The server's host name (`endpoint`, as written: `host:port`) has no usable address; `reason` is the resolver's.
    case unresolvable(endpoint: String, reason: String)

    public var description: String {
        switch self {
        case .invalidArgument(let what, let reason):
            "invalid \(what): \(reason)"
        case .notFound(let what):
            "\(what) not found"
        case .alreadyConnected(let profile):
            "already connected (profile '\(profile)'); disconnect first"
        case .notConnected(let operation):
            "cannot \(operation): not connected; connect to a profile first"
        case .wrongRole(let operation, let role):
            "cannot \(operation): this daemon runs the \(role) role"
        case .failed(let operation, let reason):
            "\(operation) failed: \(reason)"
        case .unresolvable(let endpoint, let reason):
            "the server name in '\(endpoint)' does not resolve: \(reason); check the network and DNS, or use an IP address in the profile"
        }
    }
}
