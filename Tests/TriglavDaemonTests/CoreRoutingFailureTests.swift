import Logging
import Synchronization
import Testing
import TriglavConfig
import TriglavControlAPI
import TriglavCore
import TriglavDataPlane
@testable import TriglavDaemon

/// Keeps every log record (level and message) for assertions.
private final class LogRecords: Sendable {
    let entries = Mutex<[(level: Logger.Level, message: String)]>([])

    var logger: Logger {
        Logger(label: "test.routing") { _ in Handler(records: self) }
    }

    func messages(at level: Logger.Level) -> [String] {
        entries.withLock { $0.filter { $0.level == level }.map(\.message) }
    }

    struct Handler: LogHandler {
        let records: LogRecords
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            records.entries.withLock { $0.append((event.level, "\(event.message)")) }
        }
    }
}

@Suite("ClientManager: routing failures reach Manager1 (fakes)")
struct CoreRoutingFailureTests {
    static let refusal = "adding route 0.0.0.0/0 dev triglav0 table 51820: Operation not permitted (EPERM)"

    private static func connectedManager() throws -> (ClientManager, FakeClientTunnel, LogRecords) {
        let records = LogRecords()
        let config = DaemonConfig()
        let factory = FakeClientTunnelFactory()
        let manager = ClientManager(config: config, configSource: FakeConfigSource(config),
                                    profiles: FakeProfileStore([try Fixtures.profile()]), tunnels: factory,
                                    resolver: FixedResolver(), logger: records.logger, clock: { 1_768_435_200 })
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.added(Fixtures.uplink("wlan0", index: 3, kind: .wifi)))
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        tunnel.establish("eth0", "wlan0", assignment: TunnelAddresses(ipv4: try IPPrefix("10.77.0.2/24")))
        manager.refresh()
        return (manager, tunnel, records)
    }

    @Test func aRefusedAssignmentShowsAsDegradedWithTheKernelsReasonUntilItApplies() throws {
        let (manager, tunnel, _) = try Self.connectedManager()
        #expect(manager.status.state == .connected)
        #expect(manager.status.routingError == "")

        tunnel.setRoutingFailure(Self.refusal)
        manager.refresh()
        // Every uplink has its session, but the tunnel's traffic is blocked: not "connected".
        #expect(manager.status.state == .degraded)
        #expect(manager.status.routingError == Self.refusal)
        #expect(manager.statusLine.contains("routing failed (retrying): \(Self.refusal)"), "\(manager.statusLine)")
        let bus = Daemon.managerStatus(manager.status, version: "test")
        #expect(bus.state == .degraded && bus.routingError == Self.refusal)
        #expect(bus.propertyDictionary["RoutingError"] == .string(Self.refusal))

        tunnel.setRoutingFailure(nil)
        manager.refresh()
        #expect(manager.status.state == .connected)
        #expect(manager.status.routingError == "")
        #expect(!manager.statusLine.contains("routing"))
        #expect(Daemon.managerStatus(manager.status, version: "test").propertyDictionary["RoutingError"] == .string(""))
    }

    @Test func eachFailureEpisodeIsLoggedOnceAtErrorLevel() throws {
        let (manager, tunnel, records) = try Self.connectedManager()
        tunnel.setRoutingFailure(Self.refusal)
        for _ in 0..<5 { manager.refresh() }  // the daemon refreshes every second while the data plane retries
        tunnel.setRoutingFailure("adding address 10.77.0.2/24: File exists (EEXIST)")  // same episode, new reason
        manager.refresh()
        #expect(manager.status.routingError == "adding address 10.77.0.2/24: File exists (EEXIST)")
        var errors = records.messages(at: .error).filter { $0.contains("could not be applied") }
        #expect(errors.count == 1, "\(errors)")
        #expect(errors.first?.contains(Self.refusal) == true)

        tunnel.setRoutingFailure(nil)
        manager.refresh()
        manager.refresh()
        #expect(records.messages(at: .notice).filter { $0.contains("routing failure is over") }.count == 1)

        tunnel.setRoutingFailure(Self.refusal)  // a second episode
        manager.refresh()
        errors = records.messages(at: .error).filter { $0.contains("could not be applied") }
        #expect(errors.count == 2, "\(errors)")
    }

    @Test func disconnectClearsTheRoutingError() throws {
        let (manager, tunnel, _) = try Self.connectedManager()
        tunnel.setRoutingFailure(Self.refusal)
        manager.refresh()
        #expect(manager.status.routingError == Self.refusal)
        try manager.disconnect()
        #expect(manager.status.state == .disconnected)
        #expect(manager.status.routingError == "")
    }

    @Test func aFailureBeforeAnySessionKeepsConnecting() throws {
        let (manager, tunnel, _) = try Self.connectedManager()
        tunnel.lose("eth0", "wlan0")
        tunnel.setRoutingFailure(Self.refusal)
        manager.refresh()
        #expect(manager.status.state == .connecting)
        #expect(manager.status.routingError == Self.refusal)
    }
}
