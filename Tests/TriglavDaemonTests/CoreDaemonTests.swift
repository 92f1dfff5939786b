import Synchronization
import Testing
import TriglavConfig
import TriglavControlAPI
import TriglavCore
import TriglavCrypto
import TriglavDataPlane
import TriglavMultipath
import TriglavSystemd
@testable import TriglavDaemon

/// The composition root with every dependency faked: readiness ordering, reload, shutdown, bus mapping.
@Suite("Daemon lifecycle (fakes)")
struct CoreDaemonTests {
    final class Harness: Sendable {
        let clientTunnels = FakeClientTunnelFactory()
        let serverTunnels = FakeServerTunnelFactory()
        let notifier = RecordingNotifier()
        let sources = Mutex<[FakeUplinkSource]>([])
        let buses = Mutex<[RecordingBus]>([])
        let configSource: FakeConfigSource
        let initial: [DiscoveryEvent]

        init(config: DaemonConfig, initial: [DiscoveryEvent] = [.synchronized]) {
            configSource = FakeConfigSource(config)
            self.initial = initial
        }

        func daemon(connect: String? = nil, bus: Bool = false) throws -> Daemon {
            var environment = DaemonEnvironment(
                clientTunnels: clientTunnels, serverTunnels: serverTunnels, resolver: FixedResolver(),
                makeUplinkSource: { [self] policy in
                    let source = FakeUplinkSource(policy: policy, initial: initial)
                    sources.withLock { $0.append(source) }
                    return source
                },
                notifier: notifier, synchronizationTimeout: .milliseconds(200))
            if bus {
                environment.startBus = { [self] _ throws(TriglavDaemonError) -> any DaemonBus in
                    let bus = RecordingBus()
                    buses.withLock { $0.append(bus) }
                    return bus
                }
            }
            return Daemon(config: try configSource.load(), configSource: configSource,
                          profiles: FakeProfileStore([try Fixtures.profile("lab")]), environment: environment,
                          connectProfile: connect)
        }

        var source: FakeUplinkSource? { sources.withLock { $0.last } }
        var bus: RecordingBus? { buses.withLock { $0.last } }

        /// Flattened assignments, e.g. ["STATUS=Starting (client role)", "READY=1", ...].
        var sent: [String] { notifier.messages.flatMap { $0.map(\.assignment) } }
    }

    final class RecordingBus: DaemonBus {
        let published = Mutex<[TriglavStatus]>([])
        let closed = Mutex(false)
        func publish(_ status: TriglavStatus) { published.withLock { $0.append(status) } }
        func close() { closed.withLock { $0 = true } }
        var last: TriglavStatus? { published.withLock { $0.last } }
    }

    @Test func connectOptionFullTunnelChoosesFullOrSplitRouting() async throws {
        var config = DaemonConfig()
        config.routing.routes = [try IPPrefix("10.9.0.0/16")]
        let harness = Harness(config: config)
        let daemon = try harness.daemon()
        try daemon.start()
        try await daemon.connect(profile: "lab", options: TriglavControlAPI.ConnectOptions(fullTunnel: false))
        #expect(harness.clientTunnels.last?.plan.routing == .split([try IPPrefix("10.9.0.0/16")]))
        try await daemon.disconnect()
        try await daemon.connect(profile: "lab", options: TriglavControlAPI.ConnectOptions(fullTunnel: true))
        #expect(harness.clientTunnels.last?.plan.routing == .fullTunnel)
        try await daemon.disconnect()
        try await daemon.connect(profile: "lab", options: TriglavControlAPI.ConnectOptions())
        #expect(harness.clientTunnels.last?.plan.routing == .fullTunnel)  // the file's default
        daemon.shutdown()
    }

    @Test func clientIsReadyAfterTheInitialDumpAndTheAutoconnect() throws {
        let harness = Harness(config: DaemonConfig(), initial: [.added(Fixtures.uplink("eth0", index: 2)), .synchronized])
        let daemon = try harness.daemon(connect: "lab")
        try daemon.start()
        let tunnel = try #require(harness.clientTunnels.last)
        #expect(tunnel.uplinks == ["eth0"])
        #expect(harness.sent.first == "STATUS=Starting (client role)")
        let ready = try #require(harness.sent.firstIndex(of: "READY=1"))
        #expect(harness.sent[ready + 1].hasPrefix("STATUS=Connecting to lab (198.51.100.5:7443)"))
        #expect(daemon.client?.status.state == .connecting)
        // Leftovers of a crashed run are removed at start, with the configured routing numbers.
        #expect(harness.clientTunnels.leftoverCleanups.withLock { $0 } == [DaemonConfig().routing])

        daemon.shutdown()
        #expect(tunnel.isStopped)
        #expect(harness.source?.stopped.withLock { $0 } == true)
        #expect(harness.sent.contains("STOPPING=1"))
        #expect(harness.sent.last == "STATUS=Stopping: shutting down")
        let count = harness.sent.count
        daemon.shutdown()
        #expect(harness.sent.count == count)
    }

    @Test func configAutoconnectConnectsAtStartAndTheCommandLineWins() throws {
        var config = DaemonConfig()
        config.autoconnect = try ProfileName("lab")
        let harness = Harness(config: config, initial: [.added(Fixtures.uplink("eth0", index: 2)), .synchronized])
        let daemon = try harness.daemon()
        try daemon.start()
        #expect(daemon.client?.status.state == .connecting)
        #expect(harness.clientTunnels.last?.uplinks == ["eth0"])
        daemon.shutdown()

        config.autoconnect = try ProfileName("nowhere")
        let overridden = Harness(config: config, initial: [.synchronized])
        let commandLine = try overridden.daemon(connect: "lab")
        try commandLine.start()  // "nowhere" would fail the start: NotFound
        #expect(commandLine.client?.status.state == .connecting)
        commandLine.shutdown()

        #expect(Daemon.startupProfile(commandLine: nil, config: config) == "nowhere")
        #expect(Daemon.startupProfile(commandLine: "lab", config: config) == "lab")
        #expect(Daemon.startupProfile(commandLine: nil, config: DaemonConfig()) == nil)
        var server = config
        server.role = .server
        #expect(Daemon.startupProfile(commandLine: nil, config: server) == nil)
    }

    @Test func aMissingDumpDelaysReadinessOnlyUpToTheTimeout() throws {
        let harness = Harness(config: DaemonConfig(), initial: [])
        let daemon = try harness.daemon()
        let start = ContinuousClock.now
        try daemon.start()
        #expect(ContinuousClock.now - start >= .milliseconds(200))
        #expect(harness.sent.contains("READY=1"))
        daemon.shutdown()
    }

    @Test func aFailedAutoconnectIsNotReadyAndCleansUp() throws {
        let harness = Harness(config: DaemonConfig())
        let daemon = try harness.daemon(connect: "nowhere", bus: true)
        #expect(throws: TriglavDaemonError.notFound("profile 'nowhere'")) { try daemon.start() }
        #expect(!harness.sent.contains("READY=1"))
        #expect(harness.sent.contains("STOPPING=1"))
        #expect(harness.source?.stopped.withLock { $0 } == true)
        #expect(harness.bus?.closed.withLock { $0 } == true)
    }

    @Test func reloadSendsReloadingThenReadyAndUpdatesDiscovery() throws {
        let harness = Harness(config: DaemonConfig())
        let daemon = try harness.daemon()
        try daemon.start()
        var config = DaemonConfig()
        config.uplinks.exclude = []
        harness.configSource.set(config)
        daemon.reloadFromSignal()
        let reloading = try #require(harness.sent.lastIndex(of: "RELOADING=1"))
        #expect(harness.sent[reloading...].contains("READY=1"))
        #expect(harness.source?.policies.withLock { $0.last?.exclude } == [])

        harness.configSource.fail(.failed(operation: "loading triglavd.toml", reason: "syntax error"))
        #expect(throws: TriglavDaemonError.self) { try daemon.reloadConfiguration() }
        #expect(harness.sent.last?.hasPrefix("STATUS=Reload failed: loading triglavd.toml failed: syntax error") == true)
        #expect(harness.sent.last(where: { $0 == "READY=1" }) != nil)
        daemon.shutdown()
    }

    @Test func ticksSendStatusOnlyWhenItChanges() throws {
        let harness = Harness(config: DaemonConfig(), initial: [.added(Fixtures.uplink("eth0", index: 2)), .synchronized])
        let daemon = try harness.daemon(connect: "lab")
        try daemon.start()
        let before = harness.sent.count
        daemon.tick()
        #expect(harness.sent.count == before)
        harness.clientTunnels.last?.establish("eth0")
        daemon.tick()
        #expect(harness.sent.last?.hasPrefix("STATUS=Connected to lab") == true)
        daemon.shutdown()
    }

    @Test func theBusSeesTheClientAsTheAPIDescribesIt() async throws {
        let harness = Harness(config: DaemonConfig(), initial: [
            .added(Fixtures.uplink("eth0", index: 2)),
            .added(Fixtures.uplink("wwan0", index: 3, kind: .wwan, tier: .backup, metered: true)), .synchronized,
        ])
        let daemon = try harness.daemon(bus: true)
        try daemon.start()
        var status = await daemon.status()
        #expect(status.manager.state == .disconnected)
        #expect(status.manager.version == VERSION)
        #expect(status.uplinks.map(\.interface) == ["eth0", "wwan0"])
        // Carrier and address but nothing to join yet: waiting, not down.
        #expect(status.uplinks.map(\.state) == [.waiting, .waiting])
        #expect(status.uplinks[1].kind == .wwan)
        #expect(status.uplinks[1].tier == .backup)
        #expect(status.uplinks[1].metered)

        try await daemon.connect(profile: "lab", options: TriglavControlAPI.ConnectOptions(scheduler: "flow"))
        // The backup keeps a session, idle while the primary works: standby.
        harness.clientTunnels.last?.establish("eth0", "wwan0")
        harness.clientTunnels.last?.setReceiveRate("wwan0", 0)
        daemon.tick()
        status = await daemon.status()
        #expect(status.manager.state == .connected)
        #expect(status.manager.scheduler == "flow")
        #expect(status.uplinks.map(\.state) == [.active, .standby])
        daemon.client?.drainEvents()
        #expect(harness.bus?.last == status)

        await #expect(throws: ControlError.self) {
            try await daemon.connect(profile: "lab", options: TriglavControlAPI.ConnectOptions())
        }
        await #expect(throws: ControlError.invalidArgument("unknown scheduler \"fast\"; use one of aggregate, redundant, failover, flow, lowest-latency")) {
            try await daemon.connect(profile: "lab", options: TriglavControlAPI.ConnectOptions(scheduler: "fast"))
        }
        await #expect(throws: ControlError.self) { try await daemon.removeUplink(id: 1) }
        await #expect(throws: ControlError.self) {
            try await daemon.addUplink(interface: "tg-no-such-if0", options: TriglavControlAPI.UplinkOptions())
        }
        try await daemon.configureUplink(id: 2, settings: TriglavControlAPI.UplinkOptions(enabled: false))
        #expect(await daemon.status().uplinks[1].enabled == false)
        try await daemon.disconnect()
        await #expect(throws: ControlError.notConnected("cannot disconnect: not connected; connect to a profile first")) {
            try await daemon.disconnect()
        }
        daemon.shutdown()
        #expect(harness.bus?.closed.withLock { $0 } == true)
    }

    @Test func serverRoleIsReadyWithItsTunnelAndShowsItsClients() async throws {
        var config = DaemonConfig()
        config.role = .server
        var server = ServerSettings()
        let clientKey = IdentityKey.generate().publicKey
        server.clients = [AuthorizedClient(name: "laptop", publicKey: clientKey, tunnelIPv4: try #require(IPAddress("10.77.0.2")))]
        server.dns = DNSSettings(servers: [try #require(IPAddress("10.77.0.1"))], domains: [try DNSDomain("corp.example")])
        config.server = server
        let harness = Harness(config: config)
        let daemon = try harness.daemon(bus: true)
        try daemon.start()
        let tunnel = try #require(harness.serverTunnels.last)
        #expect(tunnel.isStarted)
        #expect(harness.sources.withLock { $0.isEmpty })
        #expect(harness.sent.contains("READY=1"))
        tunnel.setClients([ServerTunnelSnapshot.Client(
            publicKey: clientKey.base64, assignment: TunnelAddresses(ipv4: try IPPrefix("10.77.0.0/24").withAddress("10.77.0.2")),
            endpoints: [try IPEndpoint("192.0.2.7:40000")])])
        daemon.tick()
        let status = await daemon.status()
        #expect(status.server.enabled)
        #expect(status.server.offeredDNS == ["10.77.0.1", "corp.example"])
        #expect(status.clients.map(\.publicKey) == [clientKey.base64])
        #expect(status.clients.first?.endpoint == "192.0.2.7:40000")
        #expect(status.clients.first?.tunnelAddresses == ["10.77.0.2/24"])
        await #expect(throws: ControlError.self) { try await daemon.connect(profile: "lab", options: .init()) }
        daemon.shutdown()
        #expect(tunnel.isStopped)
    }
}

extension NotifyState {
    var assignment: String {
        switch self {
        case .ready: "READY=1"
        case .status(let text): "STATUS=" + text
        case .stopping: "STOPPING=1"
        case .reloading: "RELOADING=1"
        case .watchdog: "WATCHDOG=1"
        }
    }
}
