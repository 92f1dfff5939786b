/// The D-Bus contract shared by triglavd and the triglav CLI. No C imports, no logic:
/// names only, so both sides can't drift apart. dbus/org.triglav.xml is the full contract.
public enum TriglavBus {
    public static let name = "org.triglav"
    public static let managerPath = "/org/triglav"
    public static let managerInterface = "org.triglav.Manager1"
    public static let uplinkInterface = "org.triglav.Uplink1"
    public static let serverInterface = "org.triglav.Server1"
    public static let clientInterface = "org.triglav.Client1"
    public static let uplinkPathPrefix = "/org/triglav/uplink/"
    public static let clientPathPrefix = "/org/triglav/client/"
    /// Group whose members may call methods and set properties (see dbus/org.triglav.conf).
    public static let controlGroup = "triglav"

    /// `/org/triglav/uplink/<id>`
    public static func uplinkPath(_ id: UInt32) -> String { uplinkPathPrefix + String(id) }
    /// `/org/triglav/client/<id>`
    public static func clientPath(_ id: UInt32) -> String { clientPathPrefix + String(id) }

    /// The id in an uplink object path, or nil when `path` is not one.
    public static func uplinkID(fromPath path: String) -> UInt32? { id(path, prefix: uplinkPathPrefix) }
    /// The id in a client object path, or nil when `path` is not one.
    public static func clientID(fromPath path: String) -> UInt32? { id(path, prefix: clientPathPrefix) }

    private static func id(_ path: String, prefix: String) -> UInt32? {
        guard path.hasPrefix(prefix) else { return nil }
        let digits = path.dropFirst(prefix.count)
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
        return UInt32(digits)
    }

    /// Method names of org.triglav.Manager1 and org.triglav.Server1.
    public enum Method {
        public static let connect = "Connect"
        public static let disconnect = "Disconnect"
        public static let addUplink = "AddUplink"
        public static let removeUplink = "RemoveUplink"
        public static let reload = "Reload"
        public static let disconnectClient = "DisconnectClient"
    }

    /// How often counters and measurements (TxBytes, RttUsec, …) are announced at most.
    public static let counterSignalIntervalMilliseconds = 1000
}
