import TriglavCore
import TriglavCrypto

/// Turns the TOML tree of a profile into a `Profile`, reporting every problem.
struct ProfileDecoder {
    let diagnostics: DiagnosticCollector

    /// Returns nil when a required key is missing or invalid (already reported).
    func decode(_ root: [String: TOMLNode], name: ProfileName) -> Profile? {
        let reader = TableReader(path: .root, entries: root, diagnostics: diagnostics)
        var endpoint: RemoteEndpoint?
        var publicKey: IdentityPublicKey?
        if let server = reader.table("server") {
            endpoint = server.parsed("endpoint") { (text: String) throws(TriglavConfigValueError) in try RemoteEndpoint(text) }
            if server.entries["endpoint"] == nil {
                server.report("endpoint", "missing: where the server is, e.g. endpoint = \"vpn.example.net:7443\"")
            }
            publicKey = server.parsed("public_key", IdentityPublicKey.init(base64:))
            if server.entries["public_key"] == nil {
                server.report("public_key", "missing: the server's public key as printed by 'triglav pubkey' on the server")
            }
            server.finishReading()
        } else if reader.entries["server"] == nil {
            reader.report("server", "missing: a profile needs [server] with endpoint and public_key")
        }
        var scheduler: SchedulerKind?
        if let multipath = reader.table("multipath") {
            scheduler = multipath.choice("scheduler", as: SchedulerKind.self)
            multipath.finishReading()
        }
        var routing = RoutingOverrides()
        if let table = reader.table("routing") {
            routing = RoutingOverrides.decode(table)
            table.finishReading()
        }
        let dns = reader.table("dns").map(Self.decodeDNS)
        reader.finishReading()
        guard let endpoint, let publicKey else { return nil }
        var profile = Profile(name: name, endpoint: endpoint, serverPublicKey: publicKey)
        profile.scheduler = scheduler
        profile.fullTunnel = routing.fullTunnel
        profile.routes = routing.routes
        profile.exclude = routing.exclude
        profile.dns = dns ?? DNSSettings()
        return profile
    }

    /// `[dns]`: at least one server once the section is there (domains without a resolver would route names nowhere).
    private static func decodeDNS(_ reader: TableReader) -> DNSSettings {
        var dns = DNSSettings()
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
        } else if reader.entries["servers"] == nil {
            reader.report("servers", "missing: [dns] needs the resolvers reached through the tunnel, e.g. servers = [\"10.77.0.1\"]")
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
        reader.finishReading()
        return dns
    }
}
