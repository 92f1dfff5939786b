import Foundation
import Synchronization
import Testing
import TriglavTestSupport
import TriglavControlAPI
import TriglavDBus

/// The org.triglav API driven with real busctl (and the triglav CLI) on a private system-like bus,
/// against the bus fixture (adaptor + fake controller) running as root.
@Suite("org.triglav over a private system-like bus", .serialized)
struct BusAPITests {
    static let root = "/org/triglav"
    static let manager = TriglavBus.managerInterface

    @Test func busctlIntrospectionMatchesTheContract() async throws {
        let environment = try await BusAPIEnvironment(clients: 1)
        defer { environment.tearDown() }
        var seen: Set<ContractMember> = []
        for path in [Self.root, "/org/triglav/uplink/1", "/org/triglav/client/1"] {
            let result = try environment.busctl(["introspect", "org.triglav", path])
            #expect(result.status == 0, "\(result)")
            seen.formUnion(Contract.members(fromBusctlTable: result.stdout))
            if path == Self.root {
                #expect(result.stdout.contains("org.freedesktop.DBus.ObjectManager"))
            }
        }
        let contract = Contract.members(fromXML: try String(contentsOfFile: BusTestPaths.contractXML, encoding: .utf8))
        #expect(seen == contract, "missing: \(contract.subtracting(seen)) extra: \(seen.subtracting(contract))")
        let tree = try environment.busctl(["tree", "--list", "org.triglav"])
        #expect(tree.stdout.contains("/org/triglav/uplink/2") && tree.stdout.contains("/org/triglav/client/1"), "\(tree)")
    }

    /// (busctl arguments after "call org.triglav", expected error name or nil for success, text in the message)
    static let calls: [([String], String?, String)] = [
        (["/org/triglav", manager, "Disconnect"], "org.triglav.Error.NotConnected", "not connected"),
        (["/org/triglav", manager, "Connect", "s", "home"], "org.freedesktop.DBus.Error.InvalidArgs", "takes (sa{sv})"),
        (["/org/triglav", manager, "Connect", "sa{sv}", "home", "1", "bogus", "s", "x"], "org.triglav.Error.InvalidArgument", "unknown Connect option"),
        (["/org/triglav", manager, "Connect", "sa{sv}", "home", "1", "server", "s", "no-port"], "org.triglav.Error.InvalidArgument", "host:port"),
        (["/org/triglav", manager, "Connect", "sa{sv}", "home", "1", "scheduler", "u", "7"], "org.triglav.Error.InvalidArgument", "must be of type s"),
        (["/org/triglav", manager, "Connect", "sa{sv}", "home", "1", "full-tunnel", "s", "no"], "org.triglav.Error.InvalidArgument", "full-tunnel must be of type b"),
        (["/org/triglav", manager, "Connect", "sa{sv}", "../etc", "0"], "org.triglav.Error.InvalidArgument", "profile name"),
        (["/org/triglav", manager, "Connect", "sa{sv}", "nowhere", "0"], "org.triglav.Error.NotFound", "no profile named nowhere"),
        (["/org/triglav", manager, "Connect", "sa{sv}", "home", "2", "scheduler", "s", "redundant", "full-tunnel", "b", "false"], nil, ""),
        (["/org/triglav", manager, "Connect", "sa{sv}", "office", "0"], "org.triglav.Error.AlreadyConnected", "already connected"),
        (["/org/triglav", manager, "AddUplink", "sa{sv}", "usb0", "2", "tier", "s", "backup", "metered", "b", "true"], nil, ""),
        (["/org/triglav", manager, "AddUplink", "sa{sv}", "usb0", "0"], "org.triglav.Error.InvalidArgument", "already uplink"),
        (["/org/triglav", manager, "AddUplink", "sa{sv}", "nope0", "0"], "org.triglav.Error.NotFound", "no network interface"),
        (["/org/triglav", manager, "AddUplink", "sa{sv}", "a/b", "0"], "org.triglav.Error.InvalidArgument", "not a valid interface name"),
        (["/org/triglav", manager, "AddUplink", "sa{sv}", "eth1", "1", "metered", "s", "yes"], "org.triglav.Error.InvalidArgument", "must be of type b"),
        (["/org/triglav", manager, "AddUplink", "sa{sv}", "eth1", "1", "tier", "s", "gold"], "org.triglav.Error.InvalidArgument", "tier must be one of"),
        (["/org/triglav", manager, "AddUplink", "s", "eth1"], "org.freedesktop.DBus.Error.InvalidArgs", "takes (sa{sv})"),
        (["/org/triglav", manager, "RemoveUplink", "o", "/org/triglav/uplink/999"], "org.triglav.Error.NotFound", "no uplink"),
        (["/org/triglav", manager, "RemoveUplink", "o", "/org/elsewhere"], "org.triglav.Error.NotFound", "is not an uplink"),
        (["/org/triglav", manager, "RemoveUplink", "s", "x"], "org.freedesktop.DBus.Error.InvalidArgs", "takes (o)"),
        (["/org/triglav", manager, "RemoveUplink", "o", "/org/triglav/uplink/3"], nil, ""),
        (["/org/triglav", manager, "Reload"], nil, ""),
        (["/org/triglav", manager, "Reload", "s", "now"], "org.freedesktop.DBus.Error.InvalidArgs", "takes ()"),
        (["/org/triglav", manager, "NoSuchMethod"], "org.freedesktop.DBus.Error.UnknownMethod", "no method NoSuchMethod"),
        (["/org/triglav", TriglavBus.serverInterface, "DisconnectClient", "o", "/org/triglav/client/42"], "org.triglav.Error.NotFound", "no client"),
        (["/org/triglav", TriglavBus.serverInterface, "DisconnectClient", "o", "/org/triglav/client/1"], nil, ""),
        (["/org/triglav", manager, "Disconnect"], nil, ""),
        (["/org/triglav/uplink/77", "org.triglav.Uplink1", "Anything"], "org.freedesktop.DBus.Error.UnknownObject", "no object"),
    ]

    @Test func everyMethodWithGoodAndBadArguments() async throws {
        let environment = try await BusAPIEnvironment(clients: 1)
        defer { environment.tearDown() }
        for (arguments, expectedError, text) in Self.calls {
            let result = try environment.busctl(["call", "org.triglav"] + arguments)
            let label = arguments.joined(separator: " ")
            if let expectedError {
                #expect(result.status != 0, "\(label) should fail")
                #expect(result.errorName == expectedError, "\(label): \(result)")
                #expect(result.failureLine.contains(text), "\(label): \(result)")
            } else {
                #expect(result.status == 0, "\(label): \(result)")
            }
        }
        // AddUplink returned the object path, and the manager lists it.
        let added = try environment.busctl(["call", "org.triglav", Self.root, Self.manager, "AddUplink", "sa{sv}", "wwan0", "0"])
        #expect(added.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "o \"/org/triglav/uplink/4\"", "\(added)")
        let uplinks = try environment.busctl(["get-property", "org.triglav", Self.root, Self.manager, "Uplinks"])
        #expect(uplinks.stdout.contains("\"/org/triglav/uplink/4\"") && !uplinks.stdout.contains("/uplink/3\""), "\(uplinks)")
        // The daemon survived every bad call.
        let ping = try environment.busctl(["call", "org.triglav", Self.root, "org.freedesktop.DBus.Peer", "Ping"])
        #expect(ping.status == 0)
    }

    @Test func propertiesReadableAndWritableAsSpecified() async throws {
        let environment = try await BusAPIEnvironment(clients: 1)
        defer { environment.tearDown() }
        func get(_ path: String, _ interface: String, _ name: String) throws -> String {
            try environment.busctl(["get-property", "org.triglav", path, interface, name]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func set(_ path: String, _ interface: String, _ name: String, _ type: String, _ value: String) throws -> BusctlResult {
            try environment.busctl(["set-property", "org.triglav", path, interface, name, type, value])
        }
        for spec in TriglavControlAPI.ManagerStatus.propertySpecs {
            let value = try get(Self.root, Self.manager, spec.name)
            #expect(value.hasPrefix(spec.signature + " "), "\(spec.name) = \(value)")
        }
        #expect(try get(Self.root, Self.manager, "State") == "s \"disconnected\"")
        #expect(try set(Self.root, Self.manager, "Scheduler", "s", "weighted").status == 0)
        #expect(try get(Self.root, Self.manager, "Scheduler") == "s \"weighted\"")
        let unknownScheduler = try set(Self.root, Self.manager, "Scheduler", "s", "fastest")
        #expect(unknownScheduler.errorName == "org.triglav.Error.InvalidArgument", "\(unknownScheduler)")
        let readOnly = try set(Self.root, Self.manager, "State", "s", "connected")
        #expect(readOnly.errorName == "org.freedesktop.DBus.Error.PropertyReadOnly", "\(readOnly)")
        let wrongType = try set(Self.root, Self.manager, "Scheduler", "u", "1")
        #expect(wrongType.errorName == "org.freedesktop.DBus.Error.InvalidArgs", "\(wrongType)")

        let uplink = "/org/triglav/uplink/1"
        let uplinkInterface = TriglavBus.uplinkInterface
        #expect(try get(uplink, uplinkInterface, "Interface") == "s \"eth0\"")
        #expect(try set(uplink, uplinkInterface, "Tier", "s", "secondary").status == 0)
        #expect(try set(uplink, uplinkInterface, "Metered", "b", "true").status == 0)
        #expect(try set(uplink, uplinkInterface, "Enabled", "b", "false").status == 0)
        #expect(try get(uplink, uplinkInterface, "Tier") == "s \"secondary\"")
        #expect(try get(uplink, uplinkInterface, "Metered") == "b true")
        #expect(try get(uplink, uplinkInterface, "State") == "s \"down\"")
        let badTier = try set(uplink, uplinkInterface, "Tier", "s", "gold")
        #expect(badTier.errorName == "org.triglav.Error.InvalidArgument", "\(badTier)")
        let readOnlyRtt = try set(uplink, uplinkInterface, "RttUsec", "t", "5")
        #expect(readOnlyRtt.errorName == "org.freedesktop.DBus.Error.PropertyReadOnly")
        let unknown = try environment.busctl(["get-property", "org.triglav", uplink, uplinkInterface, "Colour"])
        #expect(unknown.errorName == "org.freedesktop.DBus.Error.UnknownProperty", "\(unknown)")
        #expect(try get("/org/triglav/client/1", TriglavBus.clientInterface, "Endpoint") == "s \"203.0.113.5:40000\"")
        for spec in TriglavControlAPI.ClientStatus.propertySpecs {
            let value = try get("/org/triglav/client/1", TriglavBus.clientInterface, spec.name)
            #expect(value.hasPrefix(spec.signature + " "), "\(spec.name) = \(value)")
        }
        #expect(try get("/org/triglav/client/1", TriglavBus.clientInterface, "PathDetails")
                == "a(usssttdtt) 2 1 \"203.0.113.5:40000\" \"udp\" \"ready\" 20000 1500 0 4000 9000 2 \"198.51.100.6:5000\" \"tcp\" \"degraded\" 80000 0 0.125 0 0")
        #expect(try get(Self.root, TriglavBus.serverInterface, "Clients") == "ao 1 \"/org/triglav/client/1\"")
    }

    @Test func objectsComeAndGoWithInterfacesAddedAndRemoved() async throws {
        let environment = try await BusAPIEnvironment(clients: 0)
        defer { environment.tearDown() }
        let monitor = try BackgroundProcess(["busctl", "--address=\(environment.address)", "monitor", "org.triglav"],
                                            outputPrefix: environment.bus.directory + "/monitor")
        defer { monitor.stop() }
        // busctl says this once BecomeMonitor succeeded, so nothing after it can be missed.
        #expect(await monitor.waitForErrorOutput("Monitoring bus message stream."))
        let added = try environment.busctl(["call", "org.triglav", Self.root, Self.manager, "AddUplink", "sa{sv}", "usb0", "0"])
        #expect(added.status == 0, "\(added)")
        environment.fixture.signal(SIGUSR1)  // discovery: eth1 appears (uplink 4)
        #expect(await monitor.waitForOutput("/org/triglav/uplink/4"))
        let removed = try environment.busctl(["call", "org.triglav", Self.root, Self.manager, "RemoveUplink", "o", "/org/triglav/uplink/3"])
        #expect(removed.status == 0, "\(removed)")
        environment.fixture.signal(SIGUSR2)  // discovery: eth1 gone
        #expect(await monitor.waitForOutput("Member=InterfacesRemoved", occurrences: 2))
        try await Task.sleep(for: .milliseconds(300))  // room for a third, which must not come
        monitor.stop()
        let log = monitor.output
        let addedCount = log.components(separatedBy: "Member=InterfacesAdded").count - 1
        let removedCount = log.components(separatedBy: "Member=InterfacesRemoved").count - 1
        #expect(addedCount == 2 && removedCount == 2, "added \(addedCount), removed \(removedCount)\n\(log.suffix(3000))")
        #expect(log.contains("\"/org/triglav/uplink/3\"") && log.contains("\"/org/triglav/uplink/4\""))
        let tree = try environment.busctl(["tree", "--list", "org.triglav"])
        #expect(!tree.stdout.contains("/uplink/3") && !tree.stdout.contains("/uplink/4"), "\(tree)")
    }

    @Test("a path MTU blackhole on an uplink: Uplink1.PathMTU/PathMTUBlackhole, and a line in triglav status")
    func pathMTUBlackholeIsShown() async throws {
        let environment = try await BusAPIEnvironment(clients: 0, fixtureArguments: ["--blackhole", "wlan0:1396"])
        defer { environment.tearDown() }
        func property(_ path: String, _ name: String) throws -> String {
            try environment.busctl(["get-property", "org.triglav", path, TriglavBus.uplinkInterface, name]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(try property("/org/triglav/uplink/2", "PathMTU") == "u 1396")
        #expect(try property("/org/triglav/uplink/2", "PathMTUBlackhole") == "b true")
        #expect(try property("/org/triglav/uplink/1", "PathMTUBlackhole") == "b false")
        let status = try environment.cli(["status"]).stdout
        #expect(status.contains("Path MTU:  wlan0 1396 (a hop drops larger packets without ICMP"), "\(status)")
        #expect(!status.contains("eth0 0"), "only the uplink with a blackhole: \(status)")
    }

    @Test func routeToServerIsReadableSignalledAndShownByTheCLI() async throws {
        // eth0 (uplink 1) has a route to the server, wlan0 (uplink 2) none until SIGHUP.
        let environment = try await BusAPIEnvironment(clients: 0, fixtureArguments: ["--unrouted", "wlan0"])
        defer { environment.tearDown() }
        func routeToServer(_ path: String) throws -> String {
            let result = try environment.busctl(["get-property", "org.triglav", path, TriglavBus.uplinkInterface, "RouteToServer"])
            return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func stateColumn(_ interface: String) throws -> String? {
            let table = try environment.cli(["uplinks"]).stdout
            let row = table.split(separator: "\n").first { $0.hasPrefix(interface + " ") }
            return row.map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }.flatMap { $0.count > 3 ? $0[3] : nil }
        }
        #expect(try routeToServer("/org/triglav/uplink/1") == "b true")
        #expect(try routeToServer("/org/triglav/uplink/2") == "b false")
        // Columns: INTERFACE KIND TIER STATE… ("primary" has no "(metered)" suffix here).
        let table = try environment.cli(["uplinks"]).stdout
        #expect(try stateColumn("wlan0") == "no-route", "\(table)")
        #expect(try stateColumn("eth0") != "no-route")
        let json = try environment.cli(["uplinks", "--json"]).stdout
        #expect(json.contains("\"RouteToServer\":false") && json.contains("\"RouteToServer\":true"), "\(json)")

        let client = try BusConnection(address: environment.address)
        defer { client.close() }
        let changes = Mutex<[Bool]>([])
        _ = try await client.subscribe(DBusMatchRule(sender: TriglavBus.name, interface: DBusStandardInterface.properties,
                                                     member: "PropertiesChanged",
                                                     pathNamespace: DBusObjectPath(checked: "/org/triglav/uplink/2"))) { signal in
            guard signal.arguments.first?.stringValue == TriglavBus.uplinkInterface,
                  let value = signal.arguments[1].stringKeyedDictionary?["RouteToServer"]?.boolValue else { return }
            changes.withLock { $0.append(value) }
        }
        environment.fixture.signal(SIGHUP)  // the route appears
        let deadline = ContinuousClock.now + .seconds(15)
        while changes.withLock({ $0.isEmpty }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(changes.withLock { $0 } == [true])
        #expect(try routeToServer("/org/triglav/uplink/2") == "b true")
        #expect(try stateColumn("wlan0") != "no-route")
    }

    @Test func uplinksTableShowsBothDirections() async throws {
        let environment = try await BusAPIEnvironment(clients: 0, tickMilliseconds: 50)
        defer { environment.tearDown() }
        #expect(try environment.cli(["connect", "home"]).status == 0)
        // The fake reports 480 kbit/s received per active uplink on each tick, and a 50 Mbit/s send estimate.
        let deadline = ContinuousClock.now + .seconds(15)
        var rate = ""
        while ContinuousClock.now < deadline {
            rate = try environment.busctl(["get-property", "org.triglav", "/org/triglav/uplink/1", TriglavBus.uplinkInterface,
                                           "RxRateBps"]).stdout
            if rate.hasPrefix("t 480000") { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(rate.hasPrefix("t 480000"), "\(rate)")
        let table = try environment.cli(["uplinks"]).stdout
        let lines = table.split(separator: "\n").map(String.init)
        let header = lines.first?.split(separator: " ", omittingEmptySubsequences: true).map(String.init) ?? []
        #expect(header == ["INTERFACE", "KIND", "TIER", "STATE", "RTT", "LOSS", "TX-CAPACITY", "RX-RATE", "TX", "RX", "VIA",
                           "SEEN-AS"],
                "\(table)")
        let eth0 = lines.first { $0.hasPrefix("eth0 ") } ?? ""
        #expect(eth0.contains("50.0 Mbit/s") && eth0.contains("480.0 kbit/s"), "\(table)")
    }

    @Test("Manager1.Counters: the data plane's counters by name, over busctl and in triglav status --counters")
    func dataPlaneCountersAreReadableAndListedByTheCLI() async throws {
        let environment = try await BusAPIEnvironment(clients: 0, tickMilliseconds: 50)
        defer { environment.tearDown() }
        func counters() throws -> String {
            try environment.busctl(["get-property", "org.triglav", Self.root, Self.manager, "Counters"]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(try counters() == "a(st) 0")
        #expect(try environment.cli(["status", "--counters"]).stdout.contains("No counters: no tunnel is up."))
        #expect(try environment.cli(["connect", "home"]).status == 0)
        // The fake counts a packet read per tick while connected.
        let listed = try pollUntil(timeout: 10, every: 0.05, { try counters() }, isDone: {
            $0.hasPrefix("a(st) 2 \"read_packets\" ") && !$0.hasPrefix("a(st) 2 \"read_packets\" 0 ")
        })
        #expect(listed.hasSuffix("\"queue_dropped_packets\" 0"), "\(listed)")
        let status = try environment.cli(["status", "--counters"])
        #expect(status.status == 0)
        let lines = status.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.split(separator: " ").map(String.init) == ["COUNTER", "(tunnel)", "VALUE"] }, "\(status.stdout)")
        #expect(lines.contains { $0.hasPrefix("queue_dropped_packets ") && $0.hasSuffix(" 0") }, "\(status.stdout)")
        #expect(!(try environment.cli(["status"]).stdout.contains("COUNTER")))
        // `triglav monitor` lines name only the counters that moved (read_packets), not the unchanged ones.
        let monitor = try BackgroundProcess([BusTestPaths.cli, "monitor", "--events", "12", "--bus-address", environment.address],
                                            outputPrefix: environment.bus.directory + "/cli-monitor-counters")
        defer { monitor.stop() }
        #expect(await monitor.waitForOutput("Counters={read_packets:", occurrences: 2, timeout: .seconds(15)), "\(monitor.output)")
        let counterLines = monitor.output.split(separator: "\n").filter { $0.contains("Counters=") }
        #expect(counterLines.count >= 2 && counterLines.allSatisfy { !$0.contains("queue_dropped_packets") }, "\(monitor.output)")
        #expect(try environment.cli(["disconnect"]).status == 0)
        #expect(try counters() == "a(st) 0")
    }

    @Test func countersAreSignalledAtMostOncePerSecond() async throws {
        let environment = try await BusAPIEnvironment(clients: 0, tickMilliseconds: 50)
        defer { environment.tearDown() }
        let client = try BusConnection(address: environment.address)
        defer { client.close() }
        let counts = Mutex<[String: Int]>([:])
        _ = try await client.subscribe(DBusMatchRule(sender: TriglavBus.name, interface: DBusStandardInterface.properties,
                                                     member: "PropertiesChanged", pathNamespace: DBusObjectPath(checked: Self.root))) { signal in
            guard signal.arguments.first?.stringValue == TriglavBus.managerInterface,
                  signal.arguments[1].stringKeyedDictionary?["TxBytes"] != nil else { return }
            counts.withLock { $0["TxBytes", default: 0] += 1 }
        }
        let start = ContinuousClock.now
        try await Task.sleep(for: .milliseconds(2500))
        let seen = counts.withLock { $0["TxBytes"] ?? 0 }
        // A tick every 50 ms, but at most one signal per second (plus one at each window edge). The sleep
        // may last much longer than 2.5 s when the whole suite keeps the cooperative threads busy, so the
        // bound follows the time that really passed.
        let elapsedSeconds = Int(((ContinuousClock.now - start) / .seconds(1)).rounded(.up))
        #expect(seen >= 2 && seen <= elapsedSeconds + 2, "TxBytes signalled \(seen) times in \(elapsedSeconds) s")
        let tx = try await client.getProperty(destination: TriglavBus.name, path: DBusObjectPath(checked: Self.root),
                                              interface: Self.manager, name: "TxBytes")
        #expect((tx.uint64Value ?? 0) >= 1500 * 30)
    }

    @Test(.enabled(if: getuid() == 0, "creates users: needs root (CI runs as root)"))
    func accessControlFollowsTheBusPolicy() async throws {
        let users = try TestUsers.create()
        defer { users.remove() }
        let environment = try await BusAPIEnvironment(clients: 0)
        defer { environment.tearDown() }

        let outsiderRead = try environment.busctl(["get-property", "org.triglav", Self.root, Self.manager, "State"], as: TestUsers.outsider)
        #expect(outsiderRead.status == 0 && outsiderRead.stdout.contains("disconnected"), "\(outsiderRead)")
        let outsiderIntrospect = try environment.busctl(["introspect", "org.triglav", Self.root], as: TestUsers.outsider)
        #expect(outsiderIntrospect.status == 0, "\(outsiderIntrospect)")
        let outsiderConnect = try environment.busctl(["call", "org.triglav", Self.root, Self.manager, "Connect", "sa{sv}", "home", "0"],
                                                     as: TestUsers.outsider)
        #expect(outsiderConnect.errorName == "org.freedesktop.DBus.Error.AccessDenied", "\(outsiderConnect)")
        let outsiderSet = try environment.busctl(["set-property", "org.triglav", Self.root, Self.manager, "Scheduler", "s", "weighted"],
                                                 as: TestUsers.outsider)
        #expect(outsiderSet.errorName == "org.freedesktop.DBus.Error.AccessDenied", "\(outsiderSet)")
        let outsiderCLI = try environment.cli(["connect", "home"], as: TestUsers.outsider)
        #expect(outsiderCLI.status == 5 && outsiderCLI.stderr.contains("group triglav"), "\(outsiderCLI)")
        let outsiderStatus = try environment.cli(["status", "--json"], as: TestUsers.outsider)
        #expect(outsiderStatus.status == 0, "\(outsiderStatus)")

        let memberConnect = try environment.busctl(["call", "org.triglav", Self.root, Self.manager, "Connect", "sa{sv}", "home", "0"],
                                                   as: TestUsers.member)
        #expect(memberConnect.status == 0, "\(memberConnect)")
        let memberSet = try environment.busctl(["set-property", "org.triglav", Self.root, Self.manager, "Scheduler", "s", "weighted"],
                                               as: TestUsers.member)
        #expect(memberSet.status == 0, "\(memberSet)")
        let memberCLI = try environment.cli(["disconnect"], as: TestUsers.member)
        #expect(memberCLI.status == 0, "\(memberCLI)")
        let memberOwn = try environment.busctl(["call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                                "RequestName", "su", "org.triglav", "4"], as: TestUsers.member)
        #expect(memberOwn.errorName == "org.freedesktop.DBus.Error.AccessDenied", "\(memberOwn)")
    }

    @Test(.enabled(if: getuid() == 0, "creates users: needs root (CI runs as root)"))
    func daemonRefusesOutsidersEvenWithoutTheBusPolicy() async throws {
        let users = try TestUsers.create()
        defer { users.remove() }
        let environment = try await BusAPIEnvironment(clients: 0, triglavPolicy: false)
        defer { environment.tearDown() }
        let outsider = try environment.busctl(["call", "org.triglav", Self.root, Self.manager, "Connect", "sa{sv}", "home", "0"],
                                              as: TestUsers.outsider)
        #expect(outsider.errorName == "org.triglav.Error.AccessDenied", "\(outsider)")
        #expect(outsider.failureLine.contains("group triglav"), "\(outsider)")
        let outsiderSet = try environment.busctl(["set-property", "org.triglav", "/org/triglav/uplink/1", TriglavBus.uplinkInterface,
                                                  "Enabled", "b", "false"], as: TestUsers.outsider)
        #expect(outsiderSet.errorName == "org.triglav.Error.AccessDenied", "\(outsiderSet)")
        let outsiderCLI = try environment.cli(["disconnect"], as: TestUsers.outsider)
        #expect(outsiderCLI.status == 5 && outsiderCLI.stderr.contains("group triglav"), "\(outsiderCLI)")
        let member = try environment.busctl(["call", "org.triglav", Self.root, Self.manager, "Connect", "sa{sv}", "home", "0"],
                                            as: TestUsers.member)
        #expect(member.status == 0, "\(member)")
        let state = try environment.busctl(["get-property", "org.triglav", Self.root, Self.manager, "State"], as: TestUsers.outsider)
        #expect(state.stdout.contains("connected"), "\(state)")
    }

    @Test func cliStatusJSONEqualsTheBusData() async throws {
        let environment = try await BusAPIEnvironment(clients: 1)
        defer { environment.tearDown() }
        #expect(try environment.cli(["connect", "home"]).status == 0)
        let cli = try environment.cli(["status", "--json"])
        #expect(cli.status == 0, "\(cli)")
        let status = try #require(BusJSON.parse(cli.stdout) as? [String: Any], "not JSON: \(cli.stdout)")

        func busProperties(_ path: String, _ interface: String) throws -> [String: Any] {
            let result = try environment.busctl(["--json=short", "call", "org.triglav", path, DBusStandardInterface.properties, "GetAll", "s", interface])
            let parsed = BusJSON.parse(result.stdout) as? [String: Any]
            let dictionary = (parsed?["data"] as? [Any])?.first as? [String: Any] ?? [:]
            return dictionary.mapValues { BusJSON.plain($0) as Any }
        }
        func cliObject(_ object: Any?) -> [String: Any] {
            var copy = object as? [String: Any] ?? [:]
            copy["Path"] = nil
            return copy
        }
        let manager = try busProperties(Self.root, Self.manager)
        #expect(!manager.isEmpty)
        #expect(BusJSON.equal(cliObject(status["Manager"]), manager), "manager: \(String(describing: status["Manager"])) vs \(manager)")
        let server = try busProperties(Self.root, TriglavBus.serverInterface)
        #expect(BusJSON.equal(cliObject(status["Server"]), server))
        let uplinks = try #require(status["Uplinks"] as? [[String: Any]])
        #expect(uplinks.count == 2)
        for uplink in uplinks {
            let path = try #require(uplink["Path"] as? String)
            let bus = try busProperties(path, TriglavBus.uplinkInterface)
            #expect(BusJSON.equal(cliObject(uplink), bus), "\(path): \(uplink) vs \(bus)")
        }
        let clients = try #require(status["Clients"] as? [[String: Any]])
        #expect(clients.count == 1)
        #expect(BusJSON.equal(cliObject(clients.first), try busProperties("/org/triglav/client/1", TriglavBus.clientInterface)))

        let text = try environment.cli(["status"]).stdout
        #expect(text.contains("TRANSPORT") && text.contains("198.51.100.6:5000") && text.contains("12.5"), "\(text)")
        let table = try environment.cli(["uplinks"])
        #expect(table.status == 0 && table.stdout.contains("eth0") && table.stdout.contains("wlan0") && table.stdout.contains("active"), "\(table)")
        #expect(!table.stdout.contains("\u{1B}["), "no colours when not on a terminal")
        let uplinksJSON = try environment.cli(["uplinks", "--json"])
        #expect(BusJSON.equal(BusJSON.parse(uplinksJSON.stdout), status["Uplinks"]))
    }

    @Test func cliCommandsAndExitCodes() async throws {
        let environment = try await BusAPIEnvironment(clients: 0)
        defer { environment.tearDown() }
        let cases: [([String], Int32, String)] = [
            (["disconnect"], 4, "not connected"),
            (["connect", "nowhere"], 3, "no profile named nowhere"),
            (["connect", "home", "--server", "bad"], 2, "host:port"),
            (["connect", "home", "--scheduler", "redundant"], 0, ""),
            (["connect", "home"], 4, "already connected"),
            (["uplink", "add", "usb0", "--tier", "backup", "--metered", "yes"], 0, ""),
            (["uplink", "add", "nope0"], 3, "no network interface"),
            (["uplink", "set", "usb0", "--enabled", "no"], 0, ""),
            (["uplink", "set", "usb0"], 64, "Nothing to change"),
            (["uplink", "set", "nope0", "--tier", "never"], 3, "no uplink on interface nope0"),
            (["uplink", "remove", "usb0"], 0, ""),
            (["scheduler", "weighted"], 0, ""),
            (["scheduler", "fastest"], 2, "unknown scheduler"),
            (["reload"], 0, ""),
            (["disconnect"], 0, ""),
        ]
        for (arguments, status, text) in cases {
            let result = try environment.cli(arguments)
            #expect(result.status == status, "triglav \(arguments.joined(separator: " ")): \(result)")
            #expect(text.isEmpty || result.stderr.contains(text), "triglav \(arguments.joined(separator: " ")): \(result)")
        }
        let scheduler = try environment.cli(["scheduler"])
        #expect(scheduler.stdout == "weighted\n")
        let global = try runCommand([BusTestPaths.cli, "--bus-address", environment.address, "uplinks", "--json"])
        #expect(global.status == 0 && global.stdout.hasPrefix("["), "\(global)")

        // Monitor is driven by signals: it sees the uplink appear without polling.
        let monitor = try BackgroundProcess([BusTestPaths.cli, "monitor", "--json", "--events", "2", "--bus-address", environment.address],
                                            outputPrefix: environment.bus.directory + "/cli-monitor")
        defer { monitor.stop() }
        #expect(await monitor.waitForOutput("\"event\":\"Snapshot\""))
        #expect(try environment.cli(["uplink", "add", "wwan0"]).status == 0)
        let exit = await monitor.waitForExit(timeout: .seconds(15))
        #expect(exit == 0, "monitor: \(monitor.output) \(monitor.errorOutput)")
        #expect(monitor.output.contains("\"event\":\"InterfacesAdded\"") && monitor.output.contains("wwan0"), "\(monitor.output)")

        // Without a terminal or --json: the current status first, then one line per event.
        let lines = try BackgroundProcess([BusTestPaths.cli, "monitor", "--events", "1", "--bus-address", environment.address],
                                          outputPrefix: environment.bus.directory + "/cli-monitor-lines")
        defer { lines.stop() }
        #expect(await lines.waitForOutput("State:"), "\(lines.output) \(lines.errorOutput)")
        #expect(try environment.cli(["uplink", "remove", "wwan0"]).status == 0)
        #expect(await lines.waitForExit(timeout: .seconds(15)) == 0, "\(lines.output) \(lines.errorOutput)")
        #expect(lines.output.contains("wwan0"), "\(lines.output)")  // in the initial status
        #expect(lines.output.contains("removed /org/triglav/uplink/") || lines.output.contains("Uplinks="), "\(lines.output)")

        // Daemon gone: a clear message and exit status 6.
        environment.fixture.stop()
        let gone = try environment.cli(["status"])
        #expect(gone.status == 6 && gone.stderr.contains("triglavd is not running"), "\(gone)")
        // No bus at all: exit status 7.
        let noBus = try runCommand([BusTestPaths.cli, "status", "--bus-address", "unix:path=/nonexistent/bus"])
        #expect(noBus.status == 7 && noBus.stderr.contains("cannot reach the system D-Bus"), "\(noBus)")
    }
}
