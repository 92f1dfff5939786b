/// An error of the org.triglav API. Each case is one D-Bus error name
/// (`org.triglav.Error.<Name>`) and carries the human-readable message sent with it.
public enum ControlError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A bad value, an unknown option, or an option of the wrong type.
    case invalidArgument(String)
    /// No such profile, interface, uplink or client.
    case notFound(String)
    /// Connect while connected or connecting.
    case alreadyConnected(String)
    /// Disconnect (or a tunnel-only operation) while disconnected.
    case notConnected(String)
    /// The caller may not do this (the bus policy normally stops them first).
    case accessDenied(String)
    /// Anything else; the message says what failed.
    case failed(String)

    public static let namePrefix = "org.triglav.Error."

    /// All error names, for documentation and tests.
    public static let allNames: [String] = ["InvalidArgument", "NotFound", "AlreadyConnected", "NotConnected",
                                            "AccessDenied", "Failed"].map { namePrefix + $0 }

    /// The D-Bus error name.
    public var busName: String {
        switch self {
        case .invalidArgument: return ControlError.namePrefix + "InvalidArgument"
        case .notFound: return ControlError.namePrefix + "NotFound"
        case .alreadyConnected: return ControlError.namePrefix + "AlreadyConnected"
        case .notConnected: return ControlError.namePrefix + "NotConnected"
        case .accessDenied: return ControlError.namePrefix + "AccessDenied"
        case .failed: return ControlError.namePrefix + "Failed"
        }
    }

    public var message: String {
        switch self {
        case .invalidArgument(let m), .notFound(let m), .alreadyConnected(let m), .notConnected(let m),
             .accessDenied(let m), .failed(let m):
            return m
        }
    }

    public var description: String { message }

    /// Maps an org.triglav.Error.* name back to the error; nil for foreign names.
    public init?(busName: String, message: String) {
        switch busName {
        case ControlError.namePrefix + "InvalidArgument": self = .invalidArgument(message)
        case ControlError.namePrefix + "NotFound": self = .notFound(message)
        case ControlError.namePrefix + "AlreadyConnected": self = .alreadyConnected(message)
        case ControlError.namePrefix + "NotConnected": self = .notConnected(message)
        case ControlError.namePrefix + "AccessDenied": self = .accessDenied(message)
        case ControlError.namePrefix + "Failed": self = .failed(message)
        default: return nil
        }
    }
}
