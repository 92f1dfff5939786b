import ArgumentParser
import TriglavControlAPI
import TriglavControlBus
import TriglavDBus

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the tunnel, its uplinks and (server role) clients.")

    @OptionGroup var bus: BusOptions
    @Flag(help: "Print JSON; keys are the D-Bus property names.") var json = false
    @Flag(help: "Also list the data plane's counters: drops, repairs, reordering, offloads (Manager1/Server1.Counters).")
    var counters = false

    func run() async throws {
        try await withDaemon(bus) { daemon throws(CLIFailure) in
            let snapshot = Snapshot(objects: try await daemon.objects())
            if json {
                print(snapshot.statusJSON())
                return
            }
            let style = Style.forStandardOutput
            print(Render.status(snapshot, style: style))
            if !snapshot.uplinks.isEmpty { print("\n" + Render.uplinks(snapshot, style: style)) }
            if !snapshot.clients.isEmpty { print("\n" + Render.clients(snapshot, style: style)) }
            if counters { print("\n" + Render.counters(snapshot, style: style)) }
        }
    }
}

struct Uplinks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List uplinks: interface, kind, tier, state, RTT, loss, send capacity estimate, receive rate, tx/rx.")

    @OptionGroup var bus: BusOptions
    @Flag(help: "Print JSON; keys are the D-Bus property names.") var json = false

    func run() async throws {
        try await withDaemon(bus) { daemon throws(CLIFailure) in
            let snapshot = Snapshot(objects: try await daemon.objects())
            print(json ? snapshot.uplinksJSON() : Render.uplinks(snapshot, style: .forStandardOutput))
        }
    }
}

struct Connect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Bring the tunnel up with a profile.")

    @OptionGroup var bus: BusOptions
    @Argument(help: "Profile name (from the daemon's configuration).") var profile: String
    @Option(help: "Scheduler to start with.") var scheduler: String?
    @Option(help: "Server endpoint host:port, overriding the profile's.") var server: String?
    @Option(help: "Transport for all uplinks (udp or tcp).") var transport: UplinkTransport?
    @Option(help: "Send all traffic through the tunnel (yes) or only the configured routes (no).") var fullTunnel: Switch?

    func run() async throws {
        let options = ConnectOptions(scheduler: scheduler, server: server, transport: transport, fullTunnel: fullTunnel?.value)
        try await withDaemon(bus) { daemon throws(CLIFailure) in
            _ = try await daemon.call(TriglavBus.Method.connect, [.string(profile), vardict(options.optionValues)])
        }
    }
}

struct Disconnect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Take the tunnel down.")
    @OptionGroup var bus: BusOptions

    func run() async throws {
        try await withDaemon(bus) { daemon throws(CLIFailure) in
            _ = try await daemon.call(TriglavBus.Method.disconnect)
        }
    }
}

struct Reload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Make the daemon re-read its configuration.")
    @OptionGroup var bus: BusOptions

    func run() async throws {
        try await withDaemon(bus) { daemon throws(CLIFailure) in
            _ = try await daemon.call(TriglavBus.Method.reload)
        }
    }
}

struct Scheduler: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show or set the packet scheduler.")

    @OptionGroup var bus: BusOptions
    @Argument(help: "New scheduler name; omit to print the current one.") var name: String?
    @Flag(help: "Print JSON (when reading).") var json = false

    func run() async throws {
        try await withDaemon(bus) { daemon throws(CLIFailure) in
            if let name {
                try await daemon.setProperty("Scheduler", .string(name), interface: TriglavBus.managerInterface, path: DaemonClient.root)
                return
            }
            let reply = try await daemon.call("Get", interface: DBusStandardInterface.properties,
                                              [.string(TriglavBus.managerInterface), .string("Scheduler")])
            let current = reply.first?.stringValue ?? ""
            print(json ? "{" + JSON.string("Scheduler") + ":" + JSON.string(current) + "}" : current)
        }
    }
}

struct UplinkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "uplink", abstract: "Add, remove or configure an uplink.",
        subcommands: [Add.self, Remove.self, Set.self])

    struct Settings: ParsableArguments {
        @Option(help: "primary, secondary, backup or never.") var tier: UplinkTier?
        @Option(help: "Whether the link costs money per byte (yes/no).") var metered: Switch?
        @Option(help: "Whether the uplink may carry traffic (yes/no).") var enabled: Switch?
        @Option(help: "udp (with the TCP fallback) or tcp (TCP only).") var transport: UplinkTransport?
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Use a network interface as an uplink (a manual uplink).")
        @OptionGroup var bus: BusOptions
        @Argument(help: "Network interface, e.g. wlan0.") var interface: String
        @OptionGroup var settings: Settings

        func run() async throws {
            let options = UplinkOptions(tier: settings.tier, metered: settings.metered?.value, enabled: settings.enabled?.value,
                                        transport: settings.transport)
            try await withDaemon(bus) { daemon throws(CLIFailure) in
                let reply = try await daemon.call(TriglavBus.Method.addUplink, [.string(interface), vardict(options.optionValues)])
                print(reply.first?.objectPathValue?.rawValue ?? "")
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop using an uplink.")
        @OptionGroup var bus: BusOptions
        @Argument(help: "Interface name (or uplink object path).") var interface: String

        func run() async throws {
            try await withDaemon(bus) { daemon throws(CLIFailure) in
                let path = try daemon.uplinkPath(for: interface, in: try await daemon.objects())
                _ = try await daemon.call(TriglavBus.Method.removeUplink, [.objectPath(path)])
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change an uplink's tier, metered flag, enabled flag or transport.")
        @OptionGroup var bus: BusOptions
        @Argument(help: "Interface name (or uplink object path).") var interface: String
        @OptionGroup var settings: Settings

        func validate() throws {
            if settings.tier == nil && settings.metered == nil && settings.enabled == nil && settings.transport == nil {
                throw ValidationError("Nothing to change: give --tier, --metered, --enabled or --transport.")
            }
        }

        func run() async throws {
            try await withDaemon(bus) { daemon throws(CLIFailure) in
                let path = try daemon.uplinkPath(for: interface, in: try await daemon.objects())
                if let tier = settings.tier {
                    try await daemon.setProperty("Tier", .string(tier.rawValue), interface: TriglavBus.uplinkInterface, path: path)
                }
                if let metered = settings.metered {
                    try await daemon.setProperty("Metered", .boolean(metered.value), interface: TriglavBus.uplinkInterface, path: path)
                }
                if let enabled = settings.enabled {
                    try await daemon.setProperty("Enabled", .boolean(enabled.value), interface: TriglavBus.uplinkInterface, path: path)
                }
                if let transport = settings.transport {
                    try await daemon.setProperty("Transport", .string(transport.rawValue), interface: TriglavBus.uplinkInterface, path: path)
                }
            }
        }
    }
}

/// `a{sv}` from option values.
func vardict(_ values: [String: ControlValue]) -> DBusValue {
    .vardict(values.mapValues(\.dbusValue))
}
