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

    public init(servers: [IPAddress] = [], domains: [DNSDomain] = [], defaultRoute: Bool? = nil) {
        self.servers = servers
        self.domains = domains
        self.defaultRoute = defaultRoute
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
