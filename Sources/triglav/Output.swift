import TriglavControlAPI
import TriglavControlBus
import TriglavDBus
#if canImport(Glibc)
import Glibc
#endif

// MARK: JSON (keys are the D-Bus property names, values the property values: one vocabulary)

enum JSON {
    static func string(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    static func value(_ input: DBusValue) -> String {
        switch input {
        case .byte(let v): return String(v)
        case .boolean(let v): return v ? "true" : "false"
        case .int16(let v): return String(v)
        case .uint16(let v): return String(v)
        case .int32(let v): return String(v)
        case .uint32(let v): return String(v)
        case .int64(let v): return String(v)
        case .uint64(let v): return String(v)
        case .double(let v): return v.isFinite ? "\(v)" : "null"
        case .string(let v): return string(v)
        case .objectPath(let v): return string(v.rawValue)
        case .signature(let v): return string(v.rawValue)
        case .array(_, let items): return "[" + items.map { JSON.value($0) }.joined(separator: ",") + "]"
        case .dictionary(_, _, let entries):
            return "{" + entries.map { string(keyText($0.key)) + ":" + JSON.value($0.value) }.joined(separator: ",") + "}"
        case .structure(let fields): return "[" + fields.map { JSON.value($0) }.joined(separator: ",") + "]"
        case .variant(let inner): return JSON.value(inner)
        }
    }

    private static func keyText(_ key: DBusValue) -> String {
        switch key {
        case .string(let s): return s
        case .objectPath(let p): return p.rawValue
        default: return JSON.value(key)
        }
    }

    /// `{"Path": …, <properties in spec order, then any others sorted>}`
    static func object(path: DBusObjectPath?, properties: [String: DBusValue], specs: [PropertySpec]) -> String {
        var fields: [String] = []
        if let path { fields.append(string("Path") + ":" + string(path.rawValue)) }
        let known = specs.map(\.name)
        for name in known {
            if let property = properties[name] { fields.append(string(name) + ":" + value(property)) }
        }
        for (name, property) in properties.sorted(by: { $0.key < $1.key }) where !known.contains(name) {
            fields.append(string(name) + ":" + value(property))
        }
        return "{" + fields.joined(separator: ",") + "}"
    }
}

// MARK: Reading the object tree

struct Snapshot {
    let objects: BusObjects

    var root: [String: [String: DBusValue]] { objects[DaemonClient.root] ?? [:] }
    var managerProperties: [String: DBusValue] { root[TriglavBus.managerInterface] ?? [:] }
    var serverProperties: [String: DBusValue] { root[TriglavBus.serverInterface] ?? [:] }

    /// Objects implementing `interface`, ordered by numeric id.
    func objects(implementing interface: String) -> [(path: DBusObjectPath, properties: [String: DBusValue])] {
        objects.compactMap { path, interfaces in interfaces[interface].map { (path, $0) } }
            .sorted { (UInt32($0.path.lastElement) ?? 0, $0.path) < (UInt32($1.path.lastElement) ?? 0, $1.path) }
    }

    static func controlValues(_ properties: [String: DBusValue]) -> [String: ControlValue] {
        properties.compactMapValues(ControlValue.init)
    }

    var manager: ManagerStatus { ManagerStatus(propertyValues: Snapshot.controlValues(managerProperties)) }
    var server: ServerStatus { ServerStatus(propertyValues: Snapshot.controlValues(serverProperties)) }
    var uplinks: [UplinkStatus] {
        objects(implementing: TriglavBus.uplinkInterface).map { entry in
            var uplink = UplinkStatus(propertyValues: Snapshot.controlValues(entry.properties))
            uplink.id = UInt32(entry.path.lastElement) ?? 0
            return uplink
        }
    }
    var clients: [ClientStatus] {
        objects(implementing: TriglavBus.clientInterface).map { entry in
            var client = ClientStatus(propertyValues: Snapshot.controlValues(entry.properties))
            client.id = UInt32(entry.path.lastElement) ?? 0
            return client
        }
    }

    func uplinksJSON() -> String {
        "[" + objects(implementing: TriglavBus.uplinkInterface)
            .map { JSON.object(path: $0.path, properties: $0.properties, specs: UplinkStatus.propertySpecs) }
            .joined(separator: ",") + "]"
    }

    func statusJSON() -> String {
        let clients = "[" + objects(implementing: TriglavBus.clientInterface)
            .map { JSON.object(path: $0.path, properties: $0.properties, specs: ClientStatus.propertySpecs) }
            .joined(separator: ",") + "]"
        return "{" + [
            JSON.string("Manager") + ":" + JSON.object(path: DaemonClient.root, properties: managerProperties, specs: ManagerStatus.propertySpecs),
            JSON.string("Server") + ":" + JSON.object(path: DaemonClient.root, properties: serverProperties, specs: ServerStatus.propertySpecs),
            JSON.string("Uplinks") + ":" + uplinksJSON(),
            JSON.string("Clients") + ":" + clients,
        ].joined(separator: ",") + "}"
    }
}

// MARK: Human output

struct Style {
    let colour: Bool

    /// Colours only when standard output is a terminal and NO_COLOR is unset.
    static var forStandardOutput: Style { Style(colour: isatty(STDOUT_FILENO) != 0 && getenv("NO_COLOR") == nil) }

    func paint(_ text: String, _ code: String) -> String { colour ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text }
    func bold(_ text: String) -> String { paint(text, "1") }

    func state(_ text: String) -> String {
        switch text {
        case "connected", "active", "ready": return paint(text, "32")
        case "connecting", "disconnecting", "waiting", "probing", "degraded", "standby", "handshaking": return paint(text, "33")
        case "disconnected", "down", "no-route": return paint(text, "31")
        default: return text
        }
    }
}

enum Format {
    static func bytes(_ value: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var amount = Double(value)
        var unit = 0
        while amount >= 1024 && unit < units.count - 1 {
            amount /= 1024
            unit += 1
        }
        return unit == 0 ? "\(value) B" : "\(oneDecimal(amount)) \(units[unit])"
    }

    static func bitrate(_ bitsPerSecond: UInt64) -> String {
        if bitsPerSecond == 0 { return "-" }
        let units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"]
        var amount = Double(bitsPerSecond)
        var unit = 0
        while amount >= 1000 && unit < units.count - 1 {
            amount /= 1000
            unit += 1
        }
        return "\(oneDecimal(amount)) \(units[unit])"
    }

    static func rtt(_ microseconds: UInt64) -> String {
        microseconds == 0 ? "-" : "\(oneDecimal(Double(microseconds) / 1000)) ms"
    }

    static func percent(_ ratio: Double) -> String { "\(oneDecimal(ratio * 100))%" }

    static func oneDecimal(_ value: Double) -> String {
        let tenths = (value * 10).rounded()
        let whole = Int(tenths / 10)
        let fraction = Int(abs(tenths.truncatingRemainder(dividingBy: 10)))
        return "\(whole).\(fraction)"
    }

    /// Left-aligned columns; `styled` may add escape codes, widths come from the plain text.
    static func table(header: [String], rows: [[String]], style: Style, styleCell: (Int, String) -> String = { $1 }) -> String {
        var widths = header.map(\.count)
        for row in rows {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        func line(_ cells: [String], styled: Bool) -> String {
            cells.enumerated().map { index, cell in
                let padding = String(repeating: " ", count: widths[index] - cell.count)
                let text = styled ? styleCell(index, cell) : cell
                return index == cells.count - 1 ? text : text + padding
            }.joined(separator: "  ")
        }
        return ([style.bold(line(header, styled: false))] + rows.map { line($0, styled: true) }).joined(separator: "\n")
    }
}

enum Render {
    static func status(_ snapshot: Snapshot, style: Style) -> String {
        let manager = snapshot.manager
        var lines: [String] = []
        func field(_ name: String, _ value: String) { lines.append(style.bold((name + ":").padding(11)) + value) }
        let server = snapshot.server
        // The server role has no client state, scheduler or uplinks: show what it does instead.
        if server.enabled && manager.profile.isEmpty && snapshot.uplinks.isEmpty {
            field("Role", "server")
            if !manager.tunnelInterface.isEmpty {
                field("Tunnel", ([manager.tunnelInterface] + manager.tunnelAddresses).joined(separator: " "))
            }
            let connected = snapshot.clients.filter { $0.state == .connected }.count
            let clients = connected == snapshot.clients.count ? "\(connected)" : "\(connected) of \(snapshot.clients.count)"
            field("Server", "listening on \(server.listenAddress), \(clients) client(s) connected")
            if !server.publicKey.isEmpty { field("Public key", server.publicKey) }
            if !server.offeredDNS.isEmpty { field("DNS offered", server.offeredDNS.joined(separator: " ")) }
            // Inner bytes to and from all clients since the server started.
            field("Traffic", "tx \(Format.bytes(server.txBytes)), rx \(Format.bytes(server.rxBytes))")
            field("Version", manager.version)
            return lines.joined(separator: "\n")
        }
        var state = style.state(manager.state.rawValue)
        if !manager.profile.isEmpty { state += " (profile \(manager.profile)" + (manager.server.isEmpty ? ")" : ", server \(manager.server))") }
        field("State", state)
        // `connecting` for minutes with no tunnel: say what it waits for (the server name doesn't resolve).
        if !manager.stateReason.isEmpty { field("Waiting", manager.stateReason) }
        if !manager.tunnelInterface.isEmpty {
            field("Tunnel", ([manager.tunnelInterface] + manager.tunnelAddresses).joined(separator: " ")
                  + (manager.tunnelMTU > 0 ? " (MTU \(manager.tunnelMTU))" : ""))
        }
        if !manager.dnsServers.isEmpty || !manager.dnsError.isEmpty {
            let scope = manager.dnsDomains.contains("~.") ? "all queries"
                : manager.dnsDomains.isEmpty ? "no domains" : manager.dnsDomains.joined(separator: " ")
            let source = manager.dnsSource == "server" ? ", offered by the server" : ""
            // Every server left out (unreachable through the tunnel): only the reason says anything.
            let via = manager.dnsResolver.isEmpty ? "" : " via \(manager.dnsResolver)"
            let wanted = manager.dnsServers.isEmpty ? [] : [manager.dnsServers.joined(separator: " ") + " (\(scope)\(source))\(via)"]
            let failure = manager.dnsError.isEmpty ? [] : [style.paint("NOT APPLIED", "31") + ": \(manager.dnsError)"]
            field("DNS", (wanted + failure).joined(separator: " "))
        }
        // Sessions may all be up while the kernel refuses the tunnel's routes: say so, or "degraded" is a riddle.
        if !manager.routingError.isEmpty {
            field("Routing", style.paint("FAILED", "31") + " (traffic blocked; triglavd retries): \(manager.routingError)")
        }
        // A hop that drops large packets silently explains a tunnel MTU below the links' (and stalls before it was found).
        let blackholed = snapshot.uplinks.filter(\.pathMTUBlackhole)
        if !blackholed.isEmpty {
            field("Path MTU", blackholed.map { "\($0.interface) \($0.pathMTU)" }.joined(separator: ", ")
                  + " (a hop drops larger packets without ICMP; found by probing)")
        }
        field("Scheduler", manager.scheduler.isEmpty ? "-" : manager.scheduler)
        field("Traffic", "tx \(Format.bytes(manager.txBytes)), rx \(Format.bytes(manager.rxBytes))")
        let uplinks = snapshot.uplinks
        let active = uplinks.filter { $0.state == .active }.count
        field("Uplinks", "\(uplinks.count) (\(active) active)" + (uplinks.isEmpty ? "" : ": " + uplinks.map(\.interface).joined(separator: ", ")))
        if server.enabled {
            field("Server", "listening on \(server.listenAddress), \(snapshot.clients.count) client(s)")
        }
        field("Version", manager.version)
        return lines.joined(separator: "\n")
    }

    /// Both roles' data-plane counters, a table per role that has them (names as in docs/DBUS.md, Manager1.Counters).
    static func counters(_ snapshot: Snapshot, style: Style) -> String {
        let tables = [("tunnel", snapshot.manager.counters), ("server", snapshot.server.counters)]
            .filter { !$0.1.isEmpty }
            .map { role, counters in
                Format.table(header: ["COUNTER (\(role))", "VALUE"], rows: counters.map { [$0.name, String($0.value)] }, style: style)
            }
        return tables.isEmpty ? "No counters: no tunnel is up." : tables.joined(separator: "\n\n")
    }

    static func uplinks(_ snapshot: Snapshot, style: Style) -> String {
        let uplinks = snapshot.uplinks
        if uplinks.isEmpty { return "No uplinks." }
        let rows = uplinks.map { uplink in
            [uplink.interface, uplink.kind.rawValue, uplink.tier.rawValue + (uplink.metered ? " (metered)" : ""),
             stateWord(uplink), Format.rtt(uplink.rttUsec), Format.percent(uplink.lossRatio),
             Format.bitrate(uplink.capacityBps), Format.bitrate(uplink.rxRateBps), Format.bytes(uplink.txBytes),
             Format.bytes(uplink.rxBytes), uplink.transport.rawValue,
             uplink.publicEndpoint.isEmpty ? "-" : uplink.publicEndpoint + (uplink.behindNAT ? " (NAT)" : "")]
        }
        // TX-CAPACITY is the engine's estimate for sending (a client's upload; it starts at 10 Mbit/s and only grows
        // when this host sends a lot), RX-RATE what arrived in the last second (a client's download, measured), VIA
        // how the uplink reaches the server (udp, or tcp: its fallback or a TCP-only uplink), SEEN-AS where the server
        // sees the uplink's packets come from (marked when a NAT translated them).
        return Format.table(header: ["INTERFACE", "KIND", "TIER", "STATE", "RTT", "LOSS", "TX-CAPACITY", "RX-RATE", "TX", "RX",
                                     "VIA", "SEEN-AS"],
                            rows: rows, style: style) { column, cell in column == 3 ? style.state(cell) : cell }
    }

    /// The STATE column: Uplink1.State, except `disabled` (Enabled false) and `no-route` (RouteToServer false:
    /// no route to the server leads through the interface, which says why the uplink never connects).
    static func stateWord(_ uplink: UplinkStatus) -> String {
        if !uplink.enabled { return "disabled" }
        if !uplink.routeToServer { return "no-route" }
        return uplink.state.rawValue
    }

    static func clients(_ snapshot: Snapshot, style: Style) -> String {
        let rows = snapshot.clients.map { client in
            [String(client.id), client.endpoint, client.tunnelAddresses.joined(separator: " "), client.state.rawValue,
             String(client.paths), Format.rtt(client.rttUsec), Format.bytes(client.txBytes), Format.bytes(client.rxBytes)]
        }
        let table = Format.table(header: ["CLIENT", "ENDPOINT", "ADDRESSES", "STATE", "PATHS", "RTT", "TX", "RX"],
                                 rows: rows, style: style) { column, cell in column == 3 ? style.state(cell) : cell }
        // Each client's paths (Client1.PathDetails): which of its uplinks carry it, from where, and how well. TX and RX
        // are this server's: sent to the client on the path, received from it.
        let paths = snapshot.clients.flatMap { client in
            client.pathDetails.map { path in
                [String(client.id), String(path.uplink), path.endpoint.isEmpty ? "-" : path.endpoint, path.transport.rawValue,
                 path.state.rawValue, Format.rtt(path.rttUsec), Format.percent(path.lossRatio), Format.bytes(path.txBytes),
                 Format.bytes(path.rxBytes)]
            }
        }
        if paths.isEmpty { return table }
        return table + "\n\n" + Format.table(header: ["CLIENT", "PATH", "ENDPOINT", "TRANSPORT", "STATE", "RTT", "LOSS", "TX", "RX"],
                                              rows: paths, style: style) { column, cell in column == 4 ? style.state(cell) : cell }
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self + " " : self + String(repeating: " ", count: width - count) }
}
