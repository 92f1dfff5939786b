#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization
public import TriglavCore
import TriglavConfig
import TriglavDBus

/// systemd-resolved's per-link DNS (`org.freedesktop.resolve1.Manager` `SetLinkDNS`, `SetLinkDomains`,
/// `SetLinkDefaultRoute`, `RevertLink`), as NetworkManager and wg-quick set it for a VPN link. Each call opens its
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
        let index = try Self.index(of: interface)
        let servers = DBusValue.array(elementSignature: "(iay)", dns.servers.map { address in
            .structure([.int32(address.isIPv4 ? Int32(AF_INET) : Int32(AF_INET6)),
                        .array(elementSignature: "y", address.bytes.map(DBusValue.byte))])
        })
        let domains = DBusValue.array(elementSignature: "(sb)", dns.domains.map { .structure([.string($0.name), .boolean($0.routingOnly)]) })
        try call("SetLinkDNS", [.int32(index), servers], interface: interface)
        try call("SetLinkDomains", [.int32(index), domains], interface: interface)
        try call("SetLinkDefaultRoute", [.int32(index), .boolean(dns.defaultRoute)], interface: interface)
    }

    public func revert(_ interface: InterfaceName) throws(TriglavDaemonError) {
        try call("RevertLink", [.int32(try Self.index(of: interface))], interface: interface)
    }

    private static func index(of interface: InterfaceName) throws(TriglavDaemonError) -> Int32 {
        let index = if_nametoindex(interface.rawValue)
        guard index != 0, let signed = Int32(exactly: index) else {
            throw .failed(operation: "setting DNS on \(interface)", reason: "the interface does not exist (any more)")
        }
        return signed
    }

    /// One blocking method call on a connection of its own (the manager's callers are synchronous).
    private func call(_ member: String, _ arguments: [DBusValue], interface: InterfaceName) throws(TriglavDaemonError) {
        let operation = "systemd-resolved \(member) for \(interface)"
        let outcome = Mutex<Result<Void, TriglavDBusError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let address = busAddress, timeout = timeout
        Task {
            do throws(TriglavDBusError) {
                let connection = try BusConnection(address: address)
                defer { connection.close() }
                _ = try await connection.call(destination: Self.service, path: Self.path, interface: Self.interface,
                                              member: member, arguments: arguments, timeout: timeout)
                outcome.withLock { $0 = .success(()) }
            } catch {
                outcome.withLock { $0 = .failure(error) }
            }
            done.signal()
        }
        // The call's own timeout ends it; the margin covers connecting.
        _ = done.wait(timeout: .now() + .seconds(Int(timeout.components.seconds) + 2))
        switch outcome.withLock({ $0 }) {
        case .success: return
        case .failure(let error): throw .failed(operation: operation, reason: Self.explain(error))
        case nil: throw .failed(operation: operation, reason: "no answer from the bus at \(address)")
        }
    }

    static func explain(_ error: TriglavDBusError) -> String {
        switch error.remoteName {
        case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner":
            "systemd-resolved is not running, so the profile's [dns] can't be applied; install and start it "
                + "(apt install systemd-resolved), or remove [dns] and set resolvers by hand"
        case "org.freedesktop.DBus.Error.AccessDenied", "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired":
            "\(error); triglavd needs CAP_NET_ADMIN (or polkit's org.freedesktop.resolve1.set-dns-servers) to set DNS"
        default:
            "\(error)"
        }
    }
}
