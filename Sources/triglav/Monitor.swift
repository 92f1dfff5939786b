import ArgumentParser
import TriglavControlAPI
import TriglavControlBus
import TriglavDBus
#if canImport(Glibc)
import Glibc
#endif

/// Live view driven by PropertiesChanged / InterfacesAdded / InterfacesRemoved signals (no polling).
/// On a terminal it redraws the status screen; otherwise (or with --json) it prints one line per event.
struct Monitor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Watch the daemon live (updates come from D-Bus signals, not polling).")

    @OptionGroup var bus: BusOptions
    @Flag(help: "Print one JSON object per event.") var json = false
    @Option(help: "Exit after this many events (for scripts).") var events: Int?

    enum Event: Sendable {
        case signal(DBusSignal)
        case daemonGone
        case busLost
    }

    func run() async throws {
        try await withDaemon(bus) { daemon throws(CLIFailure) in
            let (stream, continuation) = AsyncStream<Event>.makeStream()
            let connection = daemon.connection
            connection.onDisconnect { continuation.yield(.busLost) }
            let root = DaemonClient.root
            // Subscribe first, then read the tree, so no change falls between the two.
            do throws(TriglavDBusError) {
                _ = try await connection.subscribe(DBusMatchRule(sender: TriglavBus.name, interface: DBusStandardInterface.properties,
                                                                 member: "PropertiesChanged", pathNamespace: root)) {
                    continuation.yield(.signal($0))
                }
                _ = try await connection.subscribe(DBusMatchRule(sender: TriglavBus.name, interface: DBusStandardInterface.objectManager,
                                                                 path: root)) {
                    continuation.yield(.signal($0))
                }
                _ = try await connection.subscribe(DBusMatchRule(sender: DBusStandardInterface.bus, interface: DBusStandardInterface.bus,
                                                                 member: "NameOwnerChanged", arg0: TriglavBus.name)) { signal in
                    if signal.arguments.count == 3, signal.arguments[2].stringValue == "" { continuation.yield(.daemonGone) }
                }
            } catch {
                throw failure(from: error)
            }
            var objects = try await daemon.objects()
            let style = Style.forStandardOutput
            let live = !json && style.colour
            let lineMode = !live
            if live { redraw(objects, style: style) }
            // Line mode starts from the current state too, so the first event line has a context.
            if lineMode && !json { print(Self.screen(objects, style: style) + "\n") }
            if json { print("{\"event\":\"Snapshot\",\"status\":\(Snapshot(objects: objects).statusJSON())}") }
            fflush(nil)
            var seen = 0
            for await event in stream {
                switch event {
                case .daemonGone:
                    throw CLIFailure(status: .daemonNotRunning, message: "triglavd stopped (\(TriglavBus.name) left the bus)")
                case .busLost:
                    throw CLIFailure(status: .busUnreachable, message: "lost the connection to the system bus")
                case .signal(let signal):
                    let line = lineMode ? describe(signal, before: objects) : nil
                    apply(signal, to: &objects)
                    if let line { print(line) } else { redraw(objects, style: style) }
                    fflush(nil)
                    seen += 1
                    if let events, seen >= events { return }
                }
            }
        }
    }

    private func apply(_ signal: DBusSignal, to objects: inout BusObjects) {
        switch signal.member {
        case "PropertiesChanged":
            guard let interface = signal.arguments.first?.stringValue,
                  let changed = signal.arguments.dropFirst().first?.stringKeyedDictionary else { return }
            objects[signal.path, default: [:]][interface, default: [:]].merge(changed) { _, new in new }
        case "InterfacesAdded":
            guard let path = signal.arguments.first?.objectPathValue,
                  case .dictionary(_, _, let entries)? = signal.arguments.dropFirst().first else { return }
            for entry in entries {
                if let name = entry.key.stringValue { objects[path, default: [:]][name] = entry.value.stringKeyedDictionary ?? [:] }
            }
        case "InterfacesRemoved":
            guard let path = signal.arguments.first?.objectPathValue else { return }
            for name in signal.arguments.dropFirst().first?.arrayValue?.compactMap(\.stringValue) ?? [] {
                objects[path]?[name] = nil
            }
            if objects[path]?.isEmpty == true { objects[path] = nil }
        default:
            break
        }
    }

    /// One line per signal; `before` is the state the signal changes (for the counters that moved).
    private func describe(_ signal: DBusSignal, before objects: BusObjects) -> String {
        if json {
            var fields = ["\"event\":" + JSON.string(signal.member), "\"path\":" + JSON.string(signal.path.rawValue)]
            switch signal.member {
            case "PropertiesChanged":
                fields.append("\"interface\":" + JSON.string(signal.arguments.first?.stringValue ?? ""))
                fields.append("\"changed\":" + (signal.arguments.dropFirst().first.map(JSON.value) ?? "{}"))
            case "InterfacesAdded":
                fields[1] = "\"path\":" + JSON.string(signal.arguments.first?.objectPathValue?.rawValue ?? "")
                fields.append("\"interfaces\":" + (signal.arguments.dropFirst().first.map(JSON.value) ?? "{}"))
            case "InterfacesRemoved":
                fields[1] = "\"path\":" + JSON.string(signal.arguments.first?.objectPathValue?.rawValue ?? "")
                fields.append("\"interfaces\":" + (signal.arguments.dropFirst().first.map(JSON.value) ?? "[]"))
            default:
                break
            }
            return "{" + fields.joined(separator: ",") + "}"
        }
        switch signal.member {
        case "PropertiesChanged":
            let changed = signal.arguments.dropFirst().first?.stringKeyedDictionary ?? [:]
            let previous = objects[signal.path]?[signal.arguments.first?.stringValue ?? ""] ?? [:]
            let text = changed.sorted { $0.key < $1.key }.map { key, value in
                // Two dozen counters, most unchanged: only those that moved since the last signal.
                key == "Counters" ? "Counters=" + Self.movedCounters(value, was: previous[key]) : "\(key)=\(JSON.value(value))"
            }.joined(separator: " ")
            let interface = signal.arguments.first?.stringValue?.split(separator: ".").last.map(String.init) ?? "?"
            return "\(signal.path) \(interface) \(text)"
        case "InterfacesAdded":
            return "added \(signal.arguments.first?.objectPathValue?.rawValue ?? "?")"
        case "InterfacesRemoved":
            return "removed \(signal.arguments.first?.objectPathValue?.rawValue ?? "?")"
        default:
            return "\(signal.interface).\(signal.member) \(signal.path)"
        }
    }

    /// `{name:count,…}` of the `a(st)` entries that differ from `previous` (new names included).
    static func movedCounters(_ value: DBusValue, was previous: DBusValue?) -> String {
        let before = Dictionary(NamedCounter.list(previous.flatMap(ControlValue.init)).map { ($0.name, $0.value) },
                                uniquingKeysWith: { _, last in last })
        let moved = NamedCounter.list(ControlValue(value)).filter { before[$0.name] != $0.value }
        return "{" + moved.map { "\($0.name):\($0.value)" }.joined(separator: ",") + "}"
    }

    private func redraw(_ objects: BusObjects, style: Style) {
        print("\u{1B}[H\u{1B}[2J" + Self.screen(objects, style: style) + "\n\n(live from D-Bus signals; Ctrl-C to quit)")
    }

    /// The status, then the uplink and client tables when there are any.
    static func screen(_ objects: BusObjects, style: Style) -> String {
        let snapshot = Snapshot(objects: objects)
        var screen = Render.status(snapshot, style: style)
        if !snapshot.uplinks.isEmpty { screen += "\n\n" + Render.uplinks(snapshot, style: style) }
        if !snapshot.clients.isEmpty { screen += "\n\n" + Render.clients(snapshot, style: style) }
        return screen
    }
}
