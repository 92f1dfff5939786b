public import TriglavCore
public import TriglavCrypto

/// A server the client can connect to (`/etc/triglav/profiles/NAME.toml`): where it is, the public
/// key it must prove, and optional overrides of the daemon's `[multipath]` and `[routing]` settings, and its DNS (`[dns]`).
public struct Profile: Equatable, Sendable {
    public var name: ProfileName
    public var endpoint: RemoteEndpoint
    public var serverPublicKey: IdentityPublicKey
    /// Overrides; nil keeps the daemon configuration's value.
    public var scheduler: SchedulerKind?
    public var fullTunnel: Bool?
    public var routes: [IPPrefix]?
    public var exclude: [IPPrefix]?
    /// `[dns]`; no servers: DNS is left to the system.
    public var dns = DNSSettings()

    public init(name: ProfileName, endpoint: RemoteEndpoint, serverPublicKey: IdentityPublicKey) {
        self.name = name
        self.endpoint = endpoint
        self.serverPublicKey = serverPublicKey
    }
}

/// The settings a connection actually uses. Precedence: command line > profile > daemon file > defaults
/// (the command line is applied by the caller on top of this).
public struct ConnectionSettings: Equatable, Sendable {
    public var endpoint: RemoteEndpoint
    public var serverPublicKey: IdentityPublicKey
    public var multipath: MultipathSettings
    public var routing: RoutingSettings
    public var dns: DNSSettings

    public init(daemon: DaemonConfig, profile: Profile) {
        endpoint = profile.endpoint
        serverPublicKey = profile.serverPublicKey
        multipath = daemon.multipath
        routing = daemon.routing
        dns = profile.dns
        if let scheduler = profile.scheduler { multipath.scheduler = scheduler }
        if let fullTunnel = profile.fullTunnel { routing.fullTunnel = fullTunnel }
        if let routes = profile.routes { routing.routes = routes }
        if let exclude = profile.exclude { routing.exclude = exclude }
    }
}

/// A profile's name: its file name without `.toml`. Letters, digits, '.', '_', '-', starting with
/// a letter or digit, so it is always a safe file name and never a path.
public struct ProfileName: Hashable, Sendable, CustomStringConvertible, Comparable {
    static let rule = "use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    public let rawValue: String

    public init(_ name: String) throws(TriglavConfigError) {
        let scalars = Array(name.unicodeScalars)
        guard (1...ConfigDefaults.profileNameMaxLength).contains(scalars.count),
              let first = scalars.first, Self.isAlphanumeric(first),
              scalars.allSatisfy({ Self.isAlphanumeric($0) || $0 == "." || $0 == "_" || $0 == "-" }) else {
            throw .invalidProfileName(name)
        }
        rawValue = name
    }

    public var description: String { rawValue }
    public static func < (lhs: ProfileName, rhs: ProfileName) -> Bool { lhs.rawValue < rhs.rawValue }

    private static func isAlphanumeric(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
    }
}

/// Where a server is: an IP endpoint, or a DNS name resolved when connecting (so a server may move).
public enum RemoteEndpoint: Hashable, Sendable, CustomStringConvertible {
    case address(IPEndpoint)
    case hostname(String, port: UInt16)

    /// Parses `203.0.113.5:7443`, `[2001:db8::5]:7443`, `vpn.example.net:7443`, or any of them
    /// without a port (meaning `defaultPort`).
    public init(_ text: String, defaultPort: UInt16 = DEFAULT_PORT) throws(TriglavConfigValueError) {
        if let endpoint = try? IPEndpoint(text, defaultPort: defaultPort) {
            self = .address(endpoint)
            return
        }
        if text.hasPrefix("[") || text.filter({ $0 == ":" }).count > 1 {
            throw TriglavConfigValueError("invalid endpoint '\(text)': expected [IPv6]:PORT, e.g. [2001:db8::5]:7443")
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        let host = String(parts[0])
        var port = defaultPort
        if parts.count == 2 {
            guard let parsed = UInt16(parts[1]), parsed != 0 else {
                throw TriglavConfigValueError("invalid endpoint '\(text)': port must be 1 to 65535")
            }
            port = parsed
        }
        guard Self.isHostname(host) else {
            throw TriglavConfigValueError(
                "invalid endpoint '\(text)': expected IPv4:PORT, [IPv6]:PORT or HOSTNAME:PORT, e.g. vpn.example.net:\(DEFAULT_PORT)")
        }
        self = .hostname(host.lowercased(), port: port)
    }

    public var port: UInt16 {
        switch self {
        case .address(let endpoint): endpoint.port
        case .hostname(_, let port): port
        }
    }

    public var description: String {
        switch self {
        case .address(let endpoint): endpoint.description
        case .hostname(let host, let port): "\(host):\(port)"
        }
    }

    /// RFC 1123 host names: dot-separated labels of 1–63 letters, digits and inner hyphens, 253 at most,
    /// not all-numeric at the end (so a mistyped IPv4 address isn't taken for a name).
    private static func isHostname(_ host: String) -> Bool {
        let trimmed = host.hasSuffix(".") ? String(host.dropLast()) : host
        guard !trimmed.isEmpty, trimmed.utf8.count <= 253 else { return false }
        let labels = trimmed.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            guard (1...63).contains(label.utf8.count), label.first != "-", label.last != "-",
                  label.unicodeScalars.allSatisfy({
                      ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "-"
                  }) else { return false }
        }
        guard let last = labels.last, !last.allSatisfy({ $0.isASCII && $0.isNumber }) else { return false }
        return true
    }
}
