#if canImport(Glibc)
import Glibc
#endif
import TriglavConfig
import TriglavCore

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
                print("OK: \(profileDirectory)/\(name).toml (profile \(name): server \(profile.endpoint))")
            } catch {
                printToStandardError(error.description)
                valid = false
            }
        }
        return valid
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
            return "role server: listening on \(server.listen.map(\.description).joined(separator: ", ")), "
                + "tunnel \(prefixes.joined(separator: ", ")), \(clients)"
        }
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
