#if canImport(Glibc)
import Glibc
#endif
import TriglavConfig
import TriglavCore
import TriglavDaemon

/// `triglavd --check-config`: validates the daemon configuration, the private key it names, and the
/// requested profiles; prints `OK: FILE (summary)` for each good file and every problem of each bad
/// one as `FILE: key: reason` on standard error.
struct ConfigCheck {
    enum ProfileSelection {
        case named([String])
        case all
    }

    let configPath: String
    /// A path the user gave must exist; the default path may be absent (the daemon then uses defaults).
    let pathIsExplicit: Bool
    let roleOverride: Role?
    let profileDirectory: String
    let profiles: ProfileSelection

    /// Returns whether everything checked is valid.
    func run() -> Bool {
        var valid = true
        var info = stat()
        let absent = !pathIsExplicit && stat(configPath, &info) != 0 && errno == ENOENT
        let origin = absent ? "absent, so built-in defaults; " : ""
        do {
            let config = try ConfigLoader.loadDaemonConfig(path: configPath, roleOverride: roleOverride,
                                                           missingIsEmpty: !pathIsExplicit)
            if !checkMetricsListen(config) { valid = false }
            switch ConfigLoader.checkPrivateKey(of: config, file: configPath) {
            case .usable(let publicKey):
                print("OK: \(configPath) (\(origin)\(Self.summary(of: config)); public key \(publicKey))")
            case .missing:
                print("OK: \(configPath) (\(origin)\(Self.summary(of: config)))")
                print("note: private key \(config.privateKeyPath) does not exist yet; "
                    + "create it with 'triglav keygen \(config.privateKeyPath)'")
            case .unusable(let diagnostics):
                diagnostics.forEach { printToStandardError($0.description) }
                valid = false
            }
        } catch {
            printToStandardError(error.description)
            valid = false
        }
        for name in profileNames(&valid) {
            do {
                let profile = try ConfigLoader.loadProfile(named: name, directory: profileDirectory)
                let dns = profile.dns.servers.isEmpty ? (profile.dns.acceptsServerOffer ? "" : ", DNS declined from the server")
                    : ", DNS " + Self.listing(profile.dns)
                print("OK: \(profileDirectory)/\(name).toml (profile \(name): server \(profile.endpoint)\(dns))")
            } catch {
                printToStandardError(error.description)
                valid = false
            }
        }
        return valid
    }

    /// `[metrics] listen`: the address must be one of this machine's (what the daemon's bind would otherwise
    /// refuse at start); a port below 1024 and an address reachable from the network get a note. The port is not
    /// tried, since a running daemon holds it.
    private func checkMetricsListen(_ config: DaemonConfig) -> Bool {
        guard let listen = config.metricsListen else { return true }
        if let problem = MetricsServer.checkAddress(listen) {
            printToStandardError("\(configPath): metrics.listen: \(problem)")
            return false
        }
        if listen.port < 1024 {
            print("note: metrics.listen port \(listen.port) is below 1024: the packaged units grant no CAP_NET_BIND_SERVICE, "
                + "so the daemon can't bind it there; use a port from 1024 up, e.g. 9743")
        }
        if !Self.isLoopback(listen.address) {
            print("note: metrics.listen \(listen) is reachable from other hosts and has no authentication; "
                + "restrict it with a firewall, or listen on 127.0.0.1 or [::1]")
        }
        return true
    }

    static func isLoopback(_ address: IPAddress) -> Bool {
        let bytes = address.bytes
        return address.isIPv4 ? bytes.first == 127 : bytes == [UInt8](repeating: 0, count: 15) + [1]
    }

    private func profileNames(_ valid: inout Bool) -> [String] {
        switch profiles {
        case .named(let names):
            return names
        case .all:
            do {
                let names = try ConfigLoader.profileNames(in: profileDirectory)
                if names.isEmpty { print("note: no profiles (*.toml) in \(profileDirectory)") }
                return names
            } catch {
                printToStandardError(error.description)
                valid = false
                return []
            }
        }
    }

    static func summary(of config: DaemonConfig) -> String {
        switch config.role {
        case .client:
            let routing = config.routing.fullTunnel ? "full tunnel" : "split tunnel (\(config.routing.routes.count) routes)"
            return "role client: interface \(config.tunnel.interface), scheduler \(config.multipath.scheduler.rawValue), \(routing)"
        case .server:
            let server = config.server ?? ServerSettings()
            let prefixes = ([server.tunnelIPv4] + (server.tunnelIPv6.map { [$0] } ?? [])).map(\.description)
            let clients = server.clients.count == 1 ? "1 client" : "\(server.clients.count) clients"
            let dns = server.dns.servers.isEmpty ? "" : ", offering DNS " + listing(server.dns)
            return "role server: listening on \(server.listen.map(\.description).joined(separator: ", ")), "
                + "tunnel \(prefixes.joined(separator: ", ")), \(clients)\(dns)"
        }
    }

    /// "10.77.0.1 corp.example ~." for the OK lines.
    private static func listing(_ dns: DNSSettings) -> String {
        (dns.servers.map(\.description) + dns.domains.map(\.description)).joined(separator: " ")
    }
}

func printToStandardError(_ line: String) {
    // write(2) rather than the C stdio `stderr` global, which strict concurrency can't prove safe.
    var bytes = Array((line + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes[offset...].withUnsafeMutableBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        if written < 0 && errno == EINTR { continue }
        guard written > 0 else { return }
        offset += written
    }
    bytes.removeAll()
}
