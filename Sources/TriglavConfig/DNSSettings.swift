public import TriglavCore

/// A profile's `[dns]`: the resolvers and domains the tunnel's link gets in systemd-resolved while connected.
public struct DNSSettings: Equatable, Sendable {
    /// Resolvers reached through the tunnel; empty: the daemon leaves DNS alone.
    public var servers: [IPAddress] = []
    /// Search domains, and routing-only domains written `~example.net` (queries for those names go to `servers`).
    public var domains: [DNSDomain] = []
    /// Whether every query not claimed by another link's domain goes to `servers` (resolved's `~.`: no lookups leak
    /// past the tunnel). nil: on for a full tunnel, and for a split tunnel without `domains`.
    public var defaultRoute: Bool?
    /// A profile's `from_server`: whether DNS the server offers (its `[server.dns]`) is used while the profile names
    /// no servers of its own (its servers always win).
    public var acceptsServerOffer = true

    public init(servers: [IPAddress] = [], domains: [DNSDomain] = [], defaultRoute: Bool? = nil) {
        self.servers = servers
        self.domains = domains
        self.defaultRoute = defaultRoute
    }

    /// Whose `[dns]` a table is: a profile's (may decline the server's offer) or the server's `[server.dns]` (offered
    /// to every client, so it must fit the protocol's offer).
    enum Section { case profile, server }

    /// At least one server once the section is there (domains without a resolver would route names nowhere), except
    /// in a profile that only says `from_server = false`.
    static func decode(_ reader: TableReader, of section: Section) -> DNSSettings {
        var dns = DNSSettings()
        if section == .profile, let fromServer = reader.bool("from_server") {
            dns.acceptsServerOffer = fromServer
            if fromServer, reader.entries["servers"] != nil {
                reader.report("from_server", "true, but the profile's own servers replace the server's DNS; remove one of them")
            }
        }
        let servers = reader.parsedArray("servers") { (text: String) throws(TriglavConfigValueError) -> IPAddress in
            guard let address = IPAddress(text) else {
                throw TriglavConfigValueError("'\(text)' is not an IP address; write the resolver's address, e.g. \"10.77.0.1\" or \"fd77::1\"")
            }
            guard address.bytes.contains(where: { $0 != 0 }) else {
                throw TriglavConfigValueError("\(address) is the unspecified address; write the resolver's own address")
            }
            return address
        }
        if let servers {
            if servers.count > ConfigDefaults.dnsServersMaximum {
                reader.report("servers", "\(servers.count) servers; at most \(ConfigDefaults.dnsServersMaximum) are used by a resolver")
            }
            for (index, server) in servers.enumerated() where servers[..<index].contains(server) {
                reader.report("servers", "\(server) is listed twice")
            }
            dns.servers = Array(servers.prefix(ConfigDefaults.dnsServersMaximum))
        } else if reader.entries["servers"] == nil && (section == .server || dns.acceptsServerOffer) {
            let optOut = section == .profile ? " (or from_server = false to keep the system's DNS)" : ""
            reader.report("servers", "missing: [dns] needs the resolvers reached through the tunnel, e.g. servers = [\"10.77.0.1\"]\(optOut)")
        }
        let domains = reader.parsedArray("domains", DNSDomain.init) ?? []
        for (index, domain) in domains.enumerated() where domains[..<index].contains(where: { $0.name == domain.name }) {
            reader.report("domains", "\(domain.name) is listed twice")
        }
        dns.domains = domains
        dns.defaultRoute = reader.bool("default_route")
        if dns.defaultRoute == false, domains.contains(where: { $0.name == "." }) {
            reader.report("default_route", "false, but domains lists \"~.\", which sends every query to the servers; remove one of them")
        }
        if section == .server {
            if domains.count > ConfigDefaults.offeredDNSDomainsMaximum {
                reader.report("domains", "\(domains.count) domains; at most \(ConfigDefaults.offeredDNSDomainsMaximum) can be offered to clients")
            } else if dns.offerLength > ConfigDefaults.offeredDNSMaximumBytes {
                reader.report("domains", "the servers and domains take \(dns.offerLength) bytes on the wire, more than the "
                    + "\(ConfigDefaults.offeredDNSMaximumBytes) a DNS offer may; list fewer or shorter domains")
            }
        }
        reader.finishReading()
        return dns
    }

    /// The length of the protocol's DNS offer carrying these settings (PROTOCOL.md §5.4).
    var offerLength: Int {
        4 + servers.count * 17 + domains.reduce(0) { $0 + 1 + $1.description.utf8.count }
    }
}

/// One `[dns] domains` entry: a domain name, marked `~` when it only routes queries and is not searched.
public struct DNSDomain: Hashable, Sendable, CustomStringConvertible {
    /// Without the `~` and without a trailing dot; "." is the root (only as a routing domain).
    public let name: String
    public let routingOnly: Bool

    static let rule = "a domain name such as \"corp.example\", or \"~corp.example\" to route its queries without searching it"

    public init(_ text: String) throws(TriglavConfigValueError) {
        routingOnly = text.hasPrefix("~")
        var name = routingOnly ? String(text.dropFirst()) : text
        if name == "." {
            guard routingOnly else { throw TriglavConfigValueError("\".\" can't be searched; write \"~.\" to send every query to the servers (or set default_route = true)") }
            self.name = name
            return
        }
        if name.hasSuffix(".") { name.removeLast() }
        guard Self.isDomainName(name) else { throw TriglavConfigValueError("'\(text)' is not \(Self.rule)") }
        self.name = name.lowercased()
    }

    public var description: String { (routingOnly ? "~" : "") + name }

    /// RFC 1035 lengths (labels 1–63, name ≤ 253) over letters, digits, '-' and '_' (as in SRV names); no label
    /// starts or ends with '-'.
    private static func isDomainName(_ name: String) -> Bool {
        guard (1...253).contains(name.utf8.count) else { return false }
        return name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            (1...63).contains(label.utf8.count) && label.first != "-" && label.last != "-"
                && label.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0)
                    || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" }
        }
    }
}
