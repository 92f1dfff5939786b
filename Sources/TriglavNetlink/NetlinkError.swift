/// Errors from the netlink layer. Kernel and libnl failures carry libnl's `nl_geterror` text, the
/// operation that failed and the object it was about, so a log line says what to fix.
public enum NetlinkError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The rtnetlink socket could not be created or connected (`code` is libnl's NLE_* value).
    case socketUnavailable(code: Int32, message: String)
    /// The network namespace file could not be opened or entered (`errno` is the errno value).
    case namespaceUnavailable(path: String, errno: Int32)
    /// The object already exists (EEXIST): e.g. adding an address or route that is installed.
    case alreadyExists(operation: String, subject: String, message: String)
    /// The object does not exist (ENOENT/ESRCH/ENODEV): e.g. deleting a route that is gone.
    case notFound(operation: String, subject: String, message: String)
    /// The kernel refused for lack of privilege (EPERM/EACCES); CAP_NET_ADMIN is needed.
    case permissionDenied(operation: String, subject: String, message: String)
    /// A value was rejected before reaching the kernel.
    case invalidArgument(operation: String, subject: String, reason: String)
    /// Any other libnl or kernel failure.
    case failed(operation: String, subject: String, code: Int32, message: String)
    /// A monitor was started twice, or used after `stop()`.
    case monitorMisuse(reason: String)

    public var description: String {
        switch self {
        case .socketUnavailable(let code, let message):
            return "cannot open an rtnetlink socket: \(message) (libnl error \(code)); is this Linux with netlink available?"
        case .namespaceUnavailable(let path, let errno):
            return "cannot enter network namespace '\(path)' (errno \(errno)); check that it exists and that we have CAP_SYS_ADMIN"
        case .alreadyExists(let operation, let subject, let message):
            return "\(operation) \(subject) failed: \(message); it is already installed (delete it first or use replace)"
        case .notFound(let operation, let subject, let message):
            return "\(operation) \(subject) failed: \(message); no such object (it may already be gone)"
        case .permissionDenied(let operation, let subject, let message):
            return "\(operation) \(subject) failed: \(message); run with CAP_NET_ADMIN"
        case .invalidArgument(let operation, let subject, let reason):
            return "\(operation) \(subject): \(reason)"
        case .failed(let operation, let subject, let code, let message):
            return "\(operation) \(subject) failed: \(message) (libnl error \(code))"
        case .monitorMisuse(let reason):
            return "netlink monitor misuse: \(reason)"
        }
    }

    /// Whether this error means "the object was already there".
    public var isAlreadyExists: Bool { if case .alreadyExists = self { true } else { false } }
    /// Whether this error means "the object was not there".
    public var isNotFound: Bool { if case .notFound = self { true } else { false } }
}
