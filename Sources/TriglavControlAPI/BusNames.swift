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
}
