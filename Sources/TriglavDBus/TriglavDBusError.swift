/// Everything that can go wrong in the D-Bus wrapper. Each case carries the offending value.
public enum TriglavDBusError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The bus could not be reached at `address`.
    case connectionFailed(address: String, reason: String)
    /// The connection was closed (by the bus, or by `close()`), so the operation can't complete.
    case disconnected
    /// The peer (or the bus) answered with a D-Bus error.
    case remote(name: String, message: String)
    /// No reply arrived within the timeout.
    case timeout(method: String, seconds: Double)
    /// A value cannot be marshalled as D-Bus (e.g. a NUL inside a string, mixed element types).
    case invalidValue(reason: String)
    /// A name, path or member that D-Bus would reject.
    case invalidName(String)
    /// RequestName did not make us the primary owner (code from the bus: 2 queued, 3 exists).
    case nameNotAcquired(name: String, code: UInt32)
    /// The path is already exported on this connection.
    case pathAlreadyExported(DBusObjectPath)
    /// A reply did not have the expected signature.
    case unexpectedReply(expected: String, got: String)

    public var description: String {
        switch self {
        case .connectionFailed(let address, let reason):
            return "cannot connect to the D-Bus bus at \(address): \(reason)"
        case .disconnected:
            return "the D-Bus connection is closed"
        case .remote(let name, let message):
            return message.isEmpty ? name : "\(name): \(message)"
        case .timeout(let method, let seconds):
            return "no reply to \(method) within \(seconds) s"
        case .invalidValue(let reason):
            return "value cannot be sent over D-Bus: \(reason)"
        case .invalidName(let name):
            return "not a valid D-Bus name or path: \(name)"
        case .nameNotAcquired(let name, let code):
            return "could not become owner of \(name) (RequestName returned \(code)); is another instance running?"
        case .pathAlreadyExported(let path):
            return "object path \(path) is already exported"
        case .unexpectedReply(let expected, let got):
            return "unexpected reply signature \(got), expected \(expected)"
        }
    }

    /// The D-Bus error name when this is a remote error.
    public var remoteName: String? {
        if case .remote(let name, _) = self { return name }
        return nil
    }
}

/// Well-known error names of the D-Bus specification.
public enum DBusStandardError {
    public static let failed = "org.freedesktop.DBus.Error.Failed"
    public static let invalidArgs = "org.freedesktop.DBus.Error.InvalidArgs"
    public static let unknownMethod = "org.freedesktop.DBus.Error.UnknownMethod"
    public static let unknownObject = "org.freedesktop.DBus.Error.UnknownObject"
    public static let unknownInterface = "org.freedesktop.DBus.Error.UnknownInterface"
    public static let unknownProperty = "org.freedesktop.DBus.Error.UnknownProperty"
    public static let propertyReadOnly = "org.freedesktop.DBus.Error.PropertyReadOnly"
    public static let accessDenied = "org.freedesktop.DBus.Error.AccessDenied"
    public static let serviceUnknown = "org.freedesktop.DBus.Error.ServiceUnknown"
    public static let nameHasNoOwner = "org.freedesktop.DBus.Error.NameHasNoOwner"
    public static let noReply = "org.freedesktop.DBus.Error.NoReply"
    public static let noServer = "org.freedesktop.DBus.Error.NoServer"
    public static let fileNotFound = "org.freedesktop.DBus.Error.FileNotFound"
    public static let disconnected = "org.freedesktop.DBus.Error.Disconnected"
    public static let timeout = "org.freedesktop.DBus.Error.Timeout"
}

/// Standard interface names.
public enum DBusStandardInterface {
    public static let properties = "org.freedesktop.DBus.Properties"
    public static let introspectable = "org.freedesktop.DBus.Introspectable"
    public static let peer = "org.freedesktop.DBus.Peer"
    public static let objectManager = "org.freedesktop.DBus.ObjectManager"
    public static let bus = "org.freedesktop.DBus"
}
