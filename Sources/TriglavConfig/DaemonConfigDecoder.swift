import TriglavCore
import TriglavCrypto

/// Turns the TOML tree of `triglavd.toml` into a `DaemonConfig`, reporting every problem.
/// Invalid values are reported and replaced by their defaults so decoding always reaches the end.
struct DaemonConfigDecoder {
    let diagnostics: DiagnosticCollector

    func decode(_ root: [String: TOMLNode], roleOverride: Role?) -> DaemonConfig {
        let reader = TableReader(path: .root, entries: root, diagnostics: diagnostics)
        var config = DaemonConfig()
        let fileRole = reader.choice("role", as: Role.self)
        config.role = roleOverride ?? fileRole ?? .client
        if let path = reader.string("private_key") {
            if path.hasPrefix("/") {
                config.privateKeyPath = path
            } else {
                reader.report("private_key", "'\(path)' is not an absolute path; the daemon does not run from a fixed directory")
            }
        }
        config.logLevel = reader.choice("log_level", as: LogLevel.self) ?? config.logLevel
        if let name = reader.string("autoconnect") {
            if config.role == .server {
                reader.report("autoconnect", "applies only to the client role; remove it from the server's configuration")
            } else if let profile = try? ProfileName(name) {
                config.autoconnect = profile
            } else {
                reader.report("autoconnect", "'\(name)' is not a profile name: \(ProfileName.rule)")
            }
        }
        if let table = reader.table("tunnel") { config.tunnel = decodeTunnel(table) }
        if let table = reader.table("multipath") { config.multipath = decodeMultipath(table) }
        if let table = reader.table("uplinks") { config.uplinks = decodeUplinks(table) }
        if let table = reader.table("routing") { config.routing = decodeRouting(table) }
        if let table = reader.table("metrics") { config.metricsListen = decodeMetrics(table) }
        if let table = reader.table("dns") {
            if config.role == .server {
                reader.report("dns", "[dns] applies only to the client role; a server offers DNS to its clients with [server.dns]")
            } else {
                config.dnsResolver = decodeDNS(table)
            }
        }
        let serverTable = reader.table("server")
        let server = serverTable.map(decodeServer) ?? ServerSettings()
        if config.role == .server {
            config.server = server
        } else if serverTable != nil, fileRole != nil || reader.entries["role"] == nil {
            // (With an invalid role the role diagnostic already covers it.)
            reader.report("server", "[server] applies only to role = \"server\"; set role = \"server\" "
                + "(or start triglavd --server), or remove the section")
        }
        reader.finishReading()
        return config
    }

    private func decodeTunnel(_ reader: TableReader) -> TunnelSettings {
        var tunnel = TunnelSettings()
        tunnel.interface = reader.parsed("interface", InterfaceName.init) ?? tunnel.interface
        tunnel.mtu = reader.integer("mtu", in: ConfigDefaults.minimumTunnelMTU...ConfigDefaults.maximumTunnelMTU, unit: "bytes")
        reader.finishReading()
        return tunnel
    }

    private func decodeMultipath(_ reader: TableReader) -> MultipathSettings {
        var multipath = MultipathSettings()
        multipath.scheduler = reader.choice("scheduler", as: SchedulerKind.self) ?? multipath.scheduler
        if let hold = reader.integer("reorder_max_hold_ms", in: ConfigDefaults.reorderMaxHoldRange, unit: "ms") {
            multipath.reorderMaxHold = .milliseconds(hold)
        }
        if let copies = reader.integer("redundant_copies", in: ConfigDefaults.redundantCopiesRange, unit: "copies") {
            multipath.redundantCopies = copies == 0 ? nil : copies
        }
        multipath.resendRequests = reader.bool("resend_requests") ?? multipath.resendRequests
        multipath.pacing = reader.bool("pacing") ?? multipath.pacing
        reader.finishReading()
        return multipath
    }

    private func decodeUplinks(_ reader: TableReader) -> UplinkSettings {
        var uplinks = UplinkSettings()
        if let include = reader.parsedArray("include", InterfaceGlob.init) {
            if include.isEmpty, case .array(let raw)? = reader.entries["include"], raw.isEmpty {
                reader.report("include", "an empty list admits no interface at all; use [\"*\"] for every interface")
            }
            uplinks.include = include
        }
        uplinks.exclude = reader.parsedArray("exclude", InterfaceGlob.init) ?? uplinks.exclude
        if let interval = reader.integer("heartbeat_interval_ms", in: ConfigDefaults.heartbeatIntervalRange, unit: "ms") {
            uplinks.heartbeatInterval = .milliseconds(interval)
        }
        if let interval = reader.integer("metered_heartbeat_interval_ms", in: ConfigDefaults.heartbeatIntervalRange, unit: "ms") {
            uplinks.meteredHeartbeatInterval = .milliseconds(interval)
        }
        if let keepalive = reader.integer("nat_keepalive_s", in: ConfigDefaults.natKeepaliveRange, unit: "s") {
            uplinks.natKeepalive = keepalive == 0 ? nil : .seconds(keepalive)
        }
        if let retry = reader.integer("udp_retry_s", in: ConfigDefaults.udpRetryRange, unit: "s") {
            uplinks.udpRetryInterval = .seconds(retry)
        }
        if let interfaces = reader.table("interface") {
            for key in interfaces.entries.keys.sorted() {
                guard let table = interfaces.table(key) else { continue }
                let pin: UplinkPin?
                do {
                    pin = UplinkPin(match: try InterfaceGlob(key))
                } catch {
                    interfaces.report(key, "not an interface name or pattern: \(error.description)")
                    pin = nil
                }
                let decoded = decodePin(table, into: pin ?? UplinkPin(match: InterfaceGlob.matchAll))
                if pin != nil { uplinks.pins.append(decoded) }
            }
            interfaces.finishReading()
        }
        reader.finishReading()
        return uplinks
    }

    private func decodePin(_ reader: TableReader, into initial: UplinkPin) -> UplinkPin {
        var pin = initial
        pin.tier = reader.choice("tier", as: UplinkTier.self) ?? pin.tier
        pin.metered = reader.bool("metered") ?? pin.metered
        pin.dataCapMegabytes = reader.integer("data_cap_mb", in: ConfigDefaults.dataCapMegabytesRange, unit: "MB")
        pin.dataCapResetDay = reader.integer("data_cap_reset_day", in: ConfigDefaults.dataCapResetDayRange)
            ?? pin.dataCapResetDay
        if let interval = reader.integer("heartbeat_interval_ms", in: ConfigDefaults.heartbeatIntervalRange, unit: "ms") {
            pin.heartbeatInterval = .milliseconds(interval)
        }
        pin.transport = reader.choice("transport", as: UplinkTransportChoice.self) ?? pin.transport
        if pin.dataCapMegabytes == nil, reader.entries["data_cap_reset_day"] != nil, reader.entries["data_cap_mb"] == nil {
            reader.report("data_cap_reset_day", "has no effect without data_cap_mb")
        }
        reader.finishReading()
        return pin
    }

    private func decodeRouting(_ reader: TableReader) -> RoutingSettings {
        var routing = RoutingSettings()
        let shared = RoutingOverrides.decode(reader)
        routing.fullTunnel = shared.fullTunnel ?? routing.fullTunnel
        routing.routes = shared.routes ?? routing.routes
        routing.exclude = shared.exclude ?? routing.exclude
        if let mark = reader.integer("fwmark", in: 1...Int(UInt32.max)) {
            routing.firewallMark = UInt32(mark)
        }
        if let table = reader.integer("table", in: 1...Int(UInt32.max)) {
            if ConfigDefaults.reservedRouteTables.contains(UInt32(table)) {
                reader.report("table", "\(table) is reserved by the kernel (253 default, 254 main, 255 local); "
                    + "pick another number such as \(ConfigDefaults.routeTable)")
            } else {
                routing.table = UInt32(table)
            }
        }
        if let priority = reader.integer("rule_priority", in: ConfigDefaults.rulePriorityRange) {
            routing.rulePriority = UInt32(priority)
        }
        reader.finishReading()
        return routing
    }

    private func decodeDNS(_ reader: TableReader) -> DNSResolverChoice {
        defer { reader.finishReading() }
        for key in ["servers", "domains", "default_route", "from_server"] where reader.entries[key] != nil {
            reader.report(key, "belongs in a profile's [dns] (/etc/triglav/profiles/NAME.toml): the servers depend on the server you connect to")
            _ = reader.node(key)  // reported here, not again as unknown
        }
        return reader.choice("resolver", as: DNSResolverChoice.self) ?? .auto
    }

    private func decodeMetrics(_ reader: TableReader) -> IPEndpoint? {
        defer { reader.finishReading() }
        guard let endpoint = reader.parsed("listen", { (text: String) throws(TriglavCoreError) in
            try IPEndpoint(text, defaultPort: 0)
        }) else { return nil }
        guard endpoint.port != 0 else {
            reader.report("listen", "give a port too, e.g. \"127.0.0.1:9743\"")
            return nil
        }
        return endpoint
    }

    private func decodeServer(_ reader: TableReader) -> ServerSettings {
        var server = ServerSettings()
        if let listen = reader.parsedArray("listen", { (text: String) throws(TriglavCoreError) in try IPEndpoint(text) }) {
            if listen.isEmpty, case .array(let raw)? = reader.entries["listen"], raw.isEmpty {
                reader.report("listen", "the server must listen somewhere, e.g. [\"0.0.0.0:\(DEFAULT_PORT)\", \"[::]:\(DEFAULT_PORT)\"]")
            } else {
                for (index, endpoint) in listen.enumerated() where listen[..<index].contains(endpoint) {
                    reader.report("listen", "\(endpoint) is listed twice")
                }
                server.listen = listen
            }
        }
        if let prefix = poolPrefix(reader, "tunnel_ipv4", ipv4: true) { server.tunnelIPv4 = prefix }
        if let prefix = poolPrefix(reader, "tunnel_ipv6", ipv4: false) { server.tunnelIPv6 = prefix }
        if let maxClients = reader.integer("max_clients", in: ConfigDefaults.maxClientsRange) {
            server.maxClients = maxClients
            let capacity = server.tunnelIPv4.hostCapacity - 1
            if maxClients > capacity {
                reader.report("max_clients", "\(maxClients) clients don't fit in \(server.tunnelIPv4) "
                    + "(room for \(capacity) besides the server); use a shorter prefix or fewer clients")
            }
        }
        if let interval = reader.integer("heartbeat_interval_ms", in: ConfigDefaults.heartbeatIntervalRange, unit: "ms") {
            server.heartbeatInterval = .milliseconds(interval)
        }
        if let nat = reader.table("nat") {
            server.nat.enabled = nat.bool("enabled") ?? server.nat.enabled
            server.nat.outboundInterface = nat.parsed("outbound_interface", InterfaceName.init)
            nat.finishReading()
        }
        if let dns = reader.table("dns") { server.dns = DNSSettings.decode(dns, of: .server) }
        if let clients = reader.tableArray("clients") {
            server.clients = decodeClients(clients, server: server)
            if clients.count > server.maxClients {
                reader.report("clients", "\(clients.count) clients are authorized but max_clients is \(server.maxClients)")
            }
        }
        reader.finishReading()
        return server
    }

    /// The server's own address in the client pool, e.g. 10.77.0.1/24.
    private func poolPrefix(_ reader: TableReader, _ key: String, ipv4: Bool) -> IPPrefix? {
        guard let prefix = reader.parsed(key, IPPrefix.init) else { return nil }
        let family = ipv4 ? "IPv4" : "IPv6"
        let example = ipv4 ? ConfigDefaults.serverTunnelIPv4 : ConfigDefaults.serverTunnelIPv6
        let range = ipv4 ? ConfigDefaults.serverIPv4PrefixRange : ConfigDefaults.serverIPv6PrefixRange
        guard prefix.address.isIPv4 == ipv4 else {
            reader.report(key, "\(prefix) is not an \(family) prefix; expected the server's address and pool, e.g. \(example)")
            return nil
        }
        guard range.contains(prefix.length) else {
            reader.report(key, "prefix length /\(prefix.length) must be /\(range.lowerBound) to /\(range.upperBound) "
                + "so the pool has room for clients, e.g. \(example)")
            return nil
        }
        guard !prefix.isNetworkAddress(prefix.address), !prefix.isBroadcastAddress(prefix.address) else {
            reader.report(key, "\(prefix.address) is the network or broadcast address of \(prefix.network); "
                + "give the server's own address with the pool's length, e.g. \(example)")
            return nil
        }
        return prefix
    }

    private func decodeClients(_ entries: [(index: Int, reader: TableReader)], server: ServerSettings) -> [AuthorizedClient] {
        var clients: [AuthorizedClient] = []
        var seenNames: [String: Int] = [:]
        var seenKeys: [IdentityPublicKey: Int] = [:]
        var seenAddresses: [IPAddress: Int] = [:]
        let listPath = ConfigKeyPath.root.appending("server").appending("clients")
        func duplicate(of index: Int) -> String { "\(listPath.appending(index: index))" }

        for (index, reader) in entries {
            let name = reader.string("name")
            if let name {
                if !Self.isValidClientName(name) {
                    reader.report("name", "'\(name)' is not a valid client name: use 1 to \(ConfigDefaults.clientNameMaxLength) "
                        + "letters, digits, '.', '_', '-' or '@'")
                } else if let first = seenNames[name] {
                    reader.report("name", "'\(name)' is already the name of \(duplicate(of: first))")
                } else {
                    seenNames[name] = index
                }
            } else if reader.entries["name"] == nil {
                reader.report("name", "missing: every client needs a name, e.g. name = \"laptop\"")
            }

            let key = reader.parsed("public_key", IdentityPublicKey.init(base64:))
            if let key {
                if let first = seenKeys[key] {
                    reader.report("public_key", "same key as \(duplicate(of: first)); each client needs its own key (triglav keygen)")
                } else {
                    seenKeys[key] = index
                }
            } else if reader.entries["public_key"] == nil {
                reader.report("public_key", "missing: the client's public key as printed by 'triglav pubkey'")
            }

            let ipv4 = clientAddress(reader, "tunnel_ipv4", pool: server.tunnelIPv4, seen: &seenAddresses,
                                     index: index, duplicate: duplicate)
            var ipv6: IPAddress?
            if reader.node("tunnel_ipv6") != nil, let pool = server.tunnelIPv6 {
                ipv6 = clientAddress(reader, "tunnel_ipv6", pool: pool, seen: &seenAddresses, index: index, duplicate: duplicate)
            }
            // Either family alone makes a tunnel: an IPv6-only client leaves tunnel_ipv4 out.
            if reader.entries["tunnel_ipv4"] == nil, reader.entries["tunnel_ipv6"] == nil {
                let v6Example = server.tunnelIPv6.map { " and/or tunnel_ipv6 = \"\(Self.exampleClientAddress($0))\"" } ?? ""
                reader.report("tunnel_ipv4", "missing: the client's tunnel address inside \(server.tunnelIPv4.network), "
                    + "e.g. tunnel_ipv4 = \"\(Self.exampleClientAddress(server.tunnelIPv4))\"\(v6Example)")
            }
            reader.finishReading()
            if let name, let key, ipv4 != nil || ipv6 != nil {
                clients.append(AuthorizedClient(name: name, publicKey: key, tunnelIPv4: ipv4, tunnelIPv6: ipv6))
            }
        }
        return clients
    }

    private func clientAddress(
        _ reader: TableReader, _ key: String, pool: IPPrefix, seen: inout [IPAddress: Int],
        index: Int, duplicate: (Int) -> String
    ) -> IPAddress? {
        guard let text = reader.string(key) else { return nil }
        let family = pool.address.isIPv4 ? "IPv4" : "IPv6"
        guard let address = IPAddress(text), address.isIPv4 == pool.address.isIPv4 else {
            reader.report(key, "'\(text)' is not an \(family) address; give a bare address inside \(pool.network), "
                + "e.g. \"\(Self.exampleClientAddress(pool))\"")
            return nil
        }
        guard pool.contains(address) else {
            reader.report(key, "\(address) is outside the server's tunnel prefix \(pool.network)")
            return nil
        }
        guard address != pool.address else {
            reader.report(key, "\(address) is the server's own tunnel address")
            return nil
        }
        guard !pool.isNetworkAddress(address), !pool.isBroadcastAddress(address) else {
            reader.report(key, "\(address) is the network or broadcast address of \(pool.network)")
            return nil
        }
        if let first = seen[address] {
            reader.report(key, "\(address) is already assigned to \(duplicate(first))")
            return nil
        }
        seen[address] = index
        return address
    }

    private static func isValidClientName(_ name: String) -> Bool {
        (1...ConfigDefaults.clientNameMaxLength).contains(name.unicodeScalars.count)
            && name.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
                    || $0 == "." || $0 == "_" || $0 == "-" || $0 == "@"
            }
    }

    /// The first address after the server's, as an example in messages.
    private static func exampleClientAddress(_ pool: IPPrefix) -> String {
        var bytes = pool.address.bytes
        var index = bytes.count - 1
        while index >= 0 {
            if bytes[index] < 0xfe { bytes[index] += 1; break }
            index -= 1
        }
        return IPAddress(bytes: bytes).map(\.description) ?? pool.address.description
    }
}

/// The `[routing]` keys a profile may override too: `full_tunnel`, `routes`, `exclude`.
struct RoutingOverrides {
    var fullTunnel: Bool?
    var routes: [IPPrefix]?
    var exclude: [IPPrefix]?

    /// Reads the shared keys; the caller reads its own keys and calls `finishReading()`.
    static func decode(_ reader: TableReader) -> RoutingOverrides {
        var overrides = RoutingOverrides()
        overrides.fullTunnel = reader.bool("full_tunnel")
        overrides.routes = prefixes(reader, "routes")
        overrides.exclude = prefixes(reader, "exclude")
        if let routes = overrides.routes, let exclude = overrides.exclude {
            for prefix in routes where exclude.contains(prefix) {
                reader.report("exclude", "\(prefix) is also in routes; a prefix is either routed or excluded")
            }
        }
        return overrides
    }

    /// Prefixes as `ip route` accepts them: host bits must be clear (10.0.0.0/8, not 10.1.2.3/8).
    private static func prefixes(_ reader: TableReader, _ key: String) -> [IPPrefix]? {
        reader.parsedArray(key) { (text: String) throws(TriglavConfigValueError) -> IPPrefix in
            let prefix: IPPrefix
            do throws(TriglavCoreError) { prefix = try IPPrefix(text) } catch { throw TriglavConfigValueError(error.description) }
            guard !prefix.hasHostBits else {
                throw TriglavConfigValueError("\(prefix) has host bits set; did you mean \(prefix.network)?")
            }
            return prefix
        }
    }
}

extension InterfaceGlob {
    static let matchAll: InterfaceGlob = {
        do { return try InterfaceGlob("*") } catch { preconditionFailure("'*' is a valid glob: \(error)") }
    }()
}
