/// Option keys of `Connect(s, a{sv})` and `AddUplink(s, a{sv})`, and their typed, validated form.
/// Unknown keys, wrong types and bad values are `ControlError.invalidArgument`.
public enum OptionKey {
    public static let scheduler = "scheduler"
    public static let server = "server"
    public static let tier = "tier"
    public static let metered = "metered"
    public static let enabled = "enabled"
    public static let transport = "transport"
    public static let fullTunnel = "full-tunnel"
}

/// Options of Manager1.Connect.
public struct ConnectOptions: Sendable, Equatable {
    /// Scheduler to start with (else the profile's).
    public var scheduler: String?
    /// Override of the profile's server endpoint, "host:port".
    public var server: String?
    /// Transport for all uplinks (else the profile's).
    public var transport: UplinkTransport?
    /// true: everything through the tunnel; false: only the configured `routes` (split tunnel). Else
    /// `[routing] full_tunnel` of the profile / triglavd.toml.
    public var fullTunnel: Bool?

    public init(scheduler: String? = nil, server: String? = nil, transport: UplinkTransport? = nil, fullTunnel: Bool? = nil) {
        self.scheduler = scheduler
        self.server = server
        self.transport = transport
        self.fullTunnel = fullTunnel
    }

    public static let allowedKeys: [String: String] = [OptionKey.scheduler: "s", OptionKey.server: "s", OptionKey.transport: "s",
                                                       OptionKey.fullTunnel: "b"]

    public init(options: [String: ControlValue]) throws(ControlError) {
        try checkOptions(options, allowed: ConnectOptions.allowedKeys, method: "Connect")
        self.init()
        if let name = options[OptionKey.scheduler]?.string {
            guard !name.isEmpty else { throw .invalidArgument("option scheduler must not be empty") }
            scheduler = name
        }
        if let endpoint = options[OptionKey.server]?.string {
            guard isValidEndpoint(endpoint) else {
                throw .invalidArgument("option server must be host:port with a port 1-65535, got \"\(endpoint)\"")
            }
            server = endpoint
        }
        if let raw = options[OptionKey.transport]?.string { transport = try parseEnum(raw, key: OptionKey.transport) }
        fullTunnel = options[OptionKey.fullTunnel]?.boolean
    }

    public var optionValues: [String: ControlValue] {
        var values: [String: ControlValue] = [:]
        if let scheduler { values[OptionKey.scheduler] = .string(scheduler) }
        if let server { values[OptionKey.server] = .string(server) }
        if let transport { values[OptionKey.transport] = .string(transport.rawValue) }
        if let fullTunnel { values[OptionKey.fullTunnel] = .boolean(fullTunnel) }
        return values
    }
}

/// Options of Manager1.AddUplink, and the writable Uplink1 settings.
public struct UplinkOptions: Sendable, Equatable {
    public var tier: UplinkTier?
    public var metered: Bool?
    public var enabled: Bool?
    public var transport: UplinkTransport?

    public init(tier: UplinkTier? = nil, metered: Bool? = nil, enabled: Bool? = nil, transport: UplinkTransport? = nil) {
        self.tier = tier
        self.metered = metered
        self.enabled = enabled
        self.transport = transport
    }

    public static let allowedKeys: [String: String] = [OptionKey.tier: "s", OptionKey.metered: "b", OptionKey.enabled: "b",
                                                       OptionKey.transport: "s"]

    public init(options: [String: ControlValue]) throws(ControlError) {
        try checkOptions(options, allowed: UplinkOptions.allowedKeys, method: "AddUplink")
        self.init()
        if let raw = options[OptionKey.tier]?.string { tier = try parseEnum(raw, key: OptionKey.tier) }
        metered = options[OptionKey.metered]?.boolean
        enabled = options[OptionKey.enabled]?.boolean
        if let raw = options[OptionKey.transport]?.string { transport = try parseEnum(raw, key: OptionKey.transport) }
    }

    public var optionValues: [String: ControlValue] {
        var values: [String: ControlValue] = [:]
        if let tier { values[OptionKey.tier] = .string(tier.rawValue) }
        if let metered { values[OptionKey.metered] = .boolean(metered) }
        if let enabled { values[OptionKey.enabled] = .boolean(enabled) }
        if let transport { values[OptionKey.transport] = .string(transport.rawValue) }
        return values
    }

    public var isEmpty: Bool { tier == nil && metered == nil && enabled == nil && transport == nil }
}

/// A valid interface name as the kernel accepts it (IFNAMSIZ 16 incl. NUL, no '/', ':' or spaces).
public func isValidInterfaceName(_ name: String) -> Bool {
    let bytes = Array(name.utf8)
    guard !bytes.isEmpty, bytes.count <= 15, name != ".", name != ".." else { return false }
    return bytes.allSatisfy { $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: ":") }
}

private func checkOptions(_ options: [String: ControlValue], allowed: [String: String], method: String) throws(ControlError) {
    for key in options.keys.sorted() {
        guard let signature = allowed[key] else {
            throw .invalidArgument("unknown \(method) option \"\(key)\"; known options: \(allowed.keys.sorted().joined(separator: ", "))")
        }
        let value = options[key]
        guard value?.signature == signature else {
            throw .invalidArgument("\(method) option \(key) must be of type \(signature), got \(value?.signature ?? "?")")
        }
    }
}

private func parseEnum<E: RawRepresentable & CaseIterable>(_ raw: String, key: String) throws(ControlError) -> E
where E.RawValue == String {
    guard let value = E(rawValue: raw) else {
        throw .invalidArgument("\(key) must be one of \(E.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(raw)\"")
    }
    return value
}

/// Parses a value of a string enum property ("Tier", …) with the same message as options.
public func parseControlEnum<E: RawRepresentable & CaseIterable>(_ raw: String, name: String) throws(ControlError) -> E
where E.RawValue == String {
    try parseEnum(raw, key: name)
}

private func isValidEndpoint(_ text: String) -> Bool {
    guard let colon = text.lastIndex(of: ":") else { return false }
    let host = text[..<colon]
    guard let port = UInt16(text[text.index(after: colon)...]), port > 0, !host.isEmpty else { return false }
    return !host.contains(where: { $0 == " " || $0 == "/" })
}
