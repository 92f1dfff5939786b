public import TriglavConfig
public import TriglavCore
public import TriglavDataPlane
public import struct TriglavProtocol.DNSOffer

/// Where the tunnel link's DNS comes from (Manager1.DNSSource): the profile's `[dns]`, the server's offer, or nowhere.
public enum DNSSource: String, Sendable {
    case profile
    case server
    case none = ""
}

/// What the tunnel's link gets in the system resolver while connected: a profile's `[dns]` with its default route
/// decided: the profile's `default_route`, else on for a full tunnel, and for a split tunnel that lists no domains
/// (its servers would otherwise answer nothing).
public struct LinkDNS: Sendable, Equatable {
    public var servers: [IPAddress]
    /// The profile's domains, then `~.` when `defaultRoute` (resolved then sends every query not claimed by another
    /// link's longer domain here, and none to the other links' resolvers).
    public var domains: [DNSDomain]
    public var defaultRoute: Bool

    /// nil when the profile names no servers: DNS stays as the system has it.
    public init?(_ settings: DNSSettings, fullTunnel: Bool) {
        guard !settings.servers.isEmpty else { return nil }
        servers = settings.servers
        // A profile that lists `~.` asked for every query (the decoder refuses it next to default_route = false).
        defaultRoute = (settings.defaultRoute ?? (fullTunnel || settings.domains.isEmpty))
            || settings.domains.contains { $0.name == Self.root.name }
        domains = settings.domains.filter { $0.name != Self.root.name }
        if defaultRoute { domains.append(Self.root) }
    }

    /// The server's offer as the link gets it, its default route decided as for a profile's `[dns]` (on for a full
    /// tunnel unless the server says otherwise). Domains the offer carries that are no domain names are left out.
    public init?(offer: DNSOffer, fullTunnel: Bool) {
        self.init(DNSSettings(servers: offer.servers, domains: offer.domains.compactMap { try? DNSDomain($0) },
                              defaultRoute: offer.defaultRoute), fullTunnel: fullTunnel)
    }

    /// These settings without the servers the tunnel can't reach: one of a family the server assigned no address of,
    /// when the routes send it into the tunnel (a full tunnel, or a split route covering it), where that family is
    /// blocked. nil `assignment` (none yet): all are kept. `unreachable` lists what was left out; `dns` is nil when
    /// nothing is left.
    public func reachable(with assignment: TunnelAddresses?, routing: ClientRouting) -> (dns: LinkDNS?, unreachable: [IPAddress]) {
        guard let assignment else { return (self, []) }
        let unreachable = servers.filter { server in
            guard (server.isIPv4 ? assignment.ipv4 : assignment.ipv6) == nil else { return false }
            switch routing {
            case .fullTunnel: return true
            case .split(let routes): return routes.contains { $0.contains(server) }
            case .none: return false
            }
        }
        guard !unreachable.isEmpty else { return (self, []) }
        var kept = self
        kept.servers.removeAll { unreachable.contains($0) }
        return (kept.servers.isEmpty ? nil : kept, unreachable)
    }

    private static let root: DNSDomain = {
        do { return try DNSDomain("~.") } catch { preconditionFailure("~. is a routing domain: \(error)") }
    }()

    /// "10.77.0.1, fd77::1 (all queries)" or "… (corp.example, ~lab.example)" for status lines.
    public var summary: String {
        let servers = servers.map(\.description).joined(separator: ", ")
        if defaultRoute { return servers + " (all queries)" }
        return domains.isEmpty ? servers + " (default_route = false and no domains: asked for nothing)"
            : servers + " (" + domains.map(\.description).joined(separator: ", ") + ")"
    }
}

/// Hands a link's DNS to the system resolver and takes it back. `SystemLinkDNS` is systemd-resolved over D-Bus, or
/// /etc/resolv.conf without it; tests pass a fake.
public protocol LinkDNSConfiguring: Sendable {
    /// Replaces whatever the resolver had for `interface`. The error says why and what to do; the caller keeps the
    /// tunnel up either way.
    func apply(_ dns: LinkDNS, to interface: InterfaceName) throws(TriglavDaemonError)
    /// Forgets what `apply` set (the link's DNS as if the daemon had never touched it).
    func revert(_ interface: InterfaceName) throws(TriglavDaemonError)
    /// False when what `apply` set has since been overwritten by another program (the manager then applies it again).
    func isInPlace(_ interface: InterfaceName) -> Bool
    /// Takes back what a run that ended without `revert` (a crash) left behind; called once at start.
    func restoreLeftovers()
    /// Which resolver holds `interface`'s DNS since the last successful `apply` (Manager1.DNSResolver).
    func resolver(for interface: InterfaceName) -> String
    /// Which resolver the next `apply` uses (`[dns] resolver`); backends that are one resolver ignore it.
    func use(_ choice: DNSResolverChoice)
}

extension LinkDNSConfiguring {
    public func use(_ choice: DNSResolverChoice) {}
    public func isInPlace(_ interface: InterfaceName) -> Bool { true }
    public func resolver(for interface: InterfaceName) -> String { "" }
    public func restoreLeftovers() {}
}
