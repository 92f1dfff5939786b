import Logging
import TriglavCore
import TriglavNetlink

/// What the kernel says, right now, about one uplink's way to the server (docs/DATAPLANE.md, "Sockets" and
/// "TUN MTU"). Looked up off the packet path, once a second and on events, by `UplinkPaths.lookUp`.
struct UplinkPath: Equatable, Sendable {
    /// The interface exists, is up and has carrier.
    var isOperational = false
    /// The interface's primary address of the server's family, which the uplink socket sends from; nil
    /// when it has none.
    var source: IPAddress?
    /// The path MTU towards the server for a socket bound like the uplink's (device, mark, `source`): the
    /// link MTU, a route's `mtu` attribute or what ICMP taught the kernel. nil when there is no route.
    var pathMTU: Int?
}

enum UplinkPaths {
    /// Looks up every interface of `interfaces`: one netlink link dump and one address dump for all of them,
    /// then per operational interface a throwaway UDP socket bound like the uplink's (SO_BINDTODEVICE, SO_MARK,
    /// the source address) connected to `server` — the kernel's own route lookup, policy rules included — whose
    /// IP_MTU is the path MTU. Interfaces netlink doesn't know are left out.
    static func lookUp(_ interfaces: [InterfaceName], server: IPEndpoint, mark: UInt32,
                       logger: Logger = Logger(label: "triglav.dataplane.paths")) -> [InterfaceName: UplinkPath] {
        guard !interfaces.isEmpty, let netlink = try? NetlinkRouteSocket(logger: logger),
              let links = try? netlink.links() else { return [:] }
        let family: AddressFamily = server.address.isIPv4 ? .ipv4 : .ipv6
        let addresses = (try? netlink.addresses(family: family, interfaceIndex: nil)) ?? []
        var paths: [InterfaceName: UplinkPath] = [:]
        for interface in interfaces {
            guard let link = links.first(where: { $0.name == interface.rawValue }) else { continue }
            var path = UplinkPath()
            path.isOperational = link.isOperational
            path.source = primaryAddress(among: addresses.filter { $0.interfaceIndex == link.index })
            if path.isOperational {
                path.pathMTU = pathMTU(interface: interface, source: path.source, server: server, mark: mark)
            }
            paths[interface] = path
        }
        return paths
    }

    /// The address an uplink sends from, of those configured on its interface (all of one family): usable ones
    /// only (not tentative, DAD-failed or deprecated; IPv6 global scope), global scope before narrower ones, and among IPv4 ones the
    /// primary (not secondary) first; otherwise in the kernel's order. nil when none is usable.
    static func primaryAddress(among addresses: [AddressInfo]) -> IPAddress? {
        // An IPv6 link-local source can't reach a server beyond the link (and can't be bound without a scope).
        let usable = addresses.filter { info in
            info.scope != Scope.host && info.scope != Scope.nowhere
                && (info.local.address.isIPv4 || info.scope == Scope.universe)
                && info.flags.isDisjoint(with: [.tentative, .dadFailed, .deprecated])
        }
        func rank(_ info: AddressInfo) -> Int {
            // Secondary is an IPv4 flag; IPv6 reuses the bit for temporary (privacy) addresses, which are fine.
            let secondary = info.local.address.isIPv4 && info.flags.contains(.secondary)
            return (info.scope == Scope.universe ? 0 : 2) + (secondary ? 1 : 0)
        }
        var best: AddressInfo?
        for info in usable where best.map({ rank(info) < rank($0) }) ?? true { best = info }
        return best?.local.address
    }

    /// The path MTU towards `server` for a socket on `interface` with `mark`, sending from `source`; nil when
    /// the kernel has no route (connect fails) or the address is gone meanwhile.
    static func pathMTU(interface: InterfaceName, source: IPAddress?, server: IPEndpoint, mark: UInt32) -> Int? {
        var options = UDPSocket.Options()
        options.device = interface
        options.mark = mark
        options.bufferBytes = 4096
        if let source { options.localEndpoint = IPEndpoint(address: source, port: 0) }
        guard let socket = try? UDPSocket(family: SocketFamily(of: server.address), options: options,
                                          label: "path-MTU probe on \(interface)") else { return nil }
        defer { socket.close() }
        guard (try? socket.connect(to: server)) != nil else { return nil }
        return try? socket.pathMTU()
    }
}
