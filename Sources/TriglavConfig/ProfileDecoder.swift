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
        let dns = reader.table("dns").map { DNSSettings.decode($0, of: .profile) }
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
}
