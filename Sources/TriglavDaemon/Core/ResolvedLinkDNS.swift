#if canImport(Glibc)
import Glibc
#endif
public import TriglavCore
import TriglavConfig
import TriglavDBus

/// systemd-resolved's per-link DNS (`org.freedesktop.resolve1.Manager` `SetLinkDNS`, `SetLinkDomains`,
/// `SetLinkDefaultRoute`, `RevertLink`), as NetworkManager and wg-quick set it for a VPN link. Each apply or revert opens its
/// own connection to the bus: DNS changes are rare, and the daemon's org.triglav connection may be absent (`--no-bus`
/// still reaches resolved on the system bus) or busy. resolved keeps what it was given in /run across its own
/// restarts and drops it when the TUN device disappears, so a crashed daemon leaves nothing behind.
public struct ResolvedLinkDNS: LinkDNSConfiguring {
    public static let service = "org.freedesktop.resolve1"
    static let path = DBusObjectPath(checked: "/org/freedesktop/resolve1")
    static let interface = "org.freedesktop.resolve1.Manager"
    public let busAddress: String
    public let timeout: Duration

    /// `DBUS_SYSTEM_BUS_ADDRESS` when set, else the standard socket.
    public static var systemBusAddress: String { BusConnection.systemBusAddress }

    public init(busAddress: String = ResolvedLinkDNS.systemBusAddress, timeout: Duration = .seconds(5)) {
        self.busAddress = busAddress
        self.timeout = timeout
    }

    public func apply(_ dns: LinkDNS, to interface: InterfaceName) throws(TriglavDaemonError) {
        guard try applyIfRunning(dns, to: interface) else {
            throw .failed(operation: "setting DNS on \(interface)", reason: Self.notRunning)
        }
    }

    /// `apply`, or false when resolved is not there to take it (its name has no owner, or there is no system bus):
    /// the caller may then fall back to /etc/resolv.conf. Any other failure throws.
    public func applyIfRunning(_ dns: LinkDNS, to interface: InterfaceName) throws(TriglavDaemonError) -> Bool {
        let index = try Self.index(of: interface)
        let servers = DBusValue.array(elementSignature: "(iay)", dns.servers.map { address in
            .structure([.int32(address.isIPv4 ? Int32(AF_INET) : Int32(AF_INET6)),
                        .array(elementSignature: "y", address.bytes.map(DBusValue.byte))])
        })
        let domains = DBusValue.array(elementSignature: "(sb)", dns.domains.map { .structure([.string($0.name), .boolean($0.routingOnly)]) })
        return try withConnection(interface) { call throws(TriglavDaemonError) in
            try call("SetLinkDNS", [.int32(index), servers])
            try call("SetLinkDomains", [.int32(index), domains])
            try call("SetLinkDefaultRoute", [.int32(index), .boolean(dns.defaultRoute)])
        }
    }

    public func revert(_ interface: InterfaceName) throws(TriglavDaemonError) {
        let index = try Self.index(of: interface)
        let reached = try withConnection(interface) { call throws(TriglavDaemonError) in try call("RevertLink", [.int32(index)]) }
        if !reached { throw .failed(operation: "reverting DNS on \(interface)", reason: Self.notRunning) }
    }

    private static func index(of interface: InterfaceName) throws(TriglavDaemonError) -> Int32 {
        let index = if_nametoindex(interface.rawValue)
        guard index != 0, let signed = Int32(exactly: index) else {
            throw .failed(operation: "setting DNS on \(interface)", reason: "the interface does not exist (any more)")
        }
        return signed
    }

    /// Runs `body` with blocking calls to resolved on a connection of its own (the manager's callers are synchronous).
    /// False when resolved isn't there: no system bus, or its name has no owner at the first call.
    private func withConnection(_ interface: InterfaceName,
                                _ body: ((String, [DBusValue]) throws(TriglavDaemonError) -> Void) throws(TriglavDaemonError) -> Void)
        throws(TriglavDaemonError) -> Bool {
        let connection: BusConnection
        do { connection = try BusConnection(address: busAddress) } catch { return false }
        defer { connection.close() }
        var absent = false
        do throws(TriglavDaemonError) {
            try body { (member: String, arguments: [DBusValue]) throws(TriglavDaemonError) in
                do throws(TriglavDBusError) {
                    _ = try connection.callSynchronously(destination: Self.service, path: Self.path, interface: Self.interface,
                                                         member: member, arguments: arguments, timeout: timeout)
                } catch {
                    absent = Self.isAbsent(error.remoteName)
                    throw .failed(operation: "systemd-resolved \(member) for \(interface)", reason: Self.explain(error))
                }
            }
        } catch {
            if absent { return false }
            throw error
        }
        return true
    }

    /// No resolved to take the call: not running, or installed but disabled or masked (bus activation fails).
    static func isAbsent(_ errorName: String?) -> Bool {
        guard let errorName else { return false }
        return ["org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner",
                "org.freedesktop.systemd1.NoSuchUnit", "org.freedesktop.systemd1.UnitMasked"].contains(errorName)
            || errorName.hasPrefix("org.freedesktop.DBus.Error.Spawn.")
    }

    static let notRunning = "systemd-resolved is not running, so the tunnel's DNS can't be applied; install and start it "
        + "(apt install systemd-resolved), or remove [dns] and set resolvers by hand"

    static func explain(_ error: TriglavDBusError) -> String {
        switch error.remoteName {
        case let name where isAbsent(name):
            notRunning
        case "org.freedesktop.DBus.Error.AccessDenied", "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired":
            "\(error); triglavd needs CAP_NET_ADMIN (or polkit's org.freedesktop.resolve1.set-dns-servers) to set DNS"
        default:
            "\(error)"
        }
    }
}
