import Foundation
import Logging
import Testing
import TriglavConfig
import TriglavCore
import TriglavCrypto
@testable import TriglavDataPlane
import TriglavMultipath
@testable import TriglavDaemon

/// What docs/CONFIG.md and docs/DBUS.md promise about schedulers and reordering is what the data plane does.
@Suite struct CoreDocumentedBehaviourTests {
    static func document(_ name: String) throws -> String {
        try String(contentsOfFile: BusTestPaths.repositoryRoot + "/docs/" + name, encoding: .utf8)
    }

    /// A real (unstarted) client tunnel from the live factory, for `plan`'s settings.
    static func liveTunnel(reorderHold: Duration = .milliseconds(30), copies: Int? = nil) throws -> (ClientTunnel, String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("triglav-docs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let keyPath = directory + "/private.key"
        try KeyFile.write(IdentityKey.generate(), to: keyPath, force: false)
        let plan = ClientTunnelPlan(profile: try ProfileName("home"), configuredEndpoint: try RemoteEndpoint("198.51.100.5:7443"),
                                    server: try IPEndpoint("198.51.100.5:7443"), serverKey: Fixtures.serverKey,
                                    privateKeyPath: keyPath, tunnelInterface: try InterfaceName("tgdocs0"),
                                    scheduler: .redundant, reorderHold: reorderHold, redundantCopies: copies)
        let tunnel = try #require(try LiveClientTunnelFactory(logger: Logger(label: "test")).makeTunnel(plan) as? ClientTunnel)
        return (tunnel, directory)
    }

    @Test func redundantCopiesSurviveARuntimeSchedulerSwitch() throws {
        let (tunnel, directory) = try Self.liveTunnel(copies: 2)
        defer { tunnel.stop(); try? FileManager.default.removeItem(atPath: directory) }
        let driving: any ClientTunnelDriving = tunnel
        driving.setScheduler(.aggregate)
        driving.setScheduler(.redundant)
        #expect(tunnel.withState { ($0.engine.scheduler, $0.engine.configuration.redundantCopies) } == (.redundant, 2))
        let config = try Self.document("CONFIG.md")
        #expect(!config.contains("Known limitation: a scheduler switch at runtime"))
    }

    /// CONFIG.md: "Values below 3 ms (`0` included) mean 3 ms, the shortest hold".
    @Test func aZeroReorderHoldIsTheShortestHoldAsDocumented() throws {
        let config = try Self.document("CONFIG.md")
        let row = try #require(config.split(separator: "\n").first { $0.hasPrefix("| `reorder_max_hold_ms`") })
        #expect(!row.contains("disables reordering"))
        let floor = ClientTunnelConfiguration.defaultMultipath.minReorderWait
        #expect(row.contains("Values below \(floor / 1_000_000) ms (`0` included) mean \(floor / 1_000_000) ms"))
        for hold: Duration in [.zero, .milliseconds(1)] {
            let (tunnel, directory) = try Self.liveTunnel(reorderHold: hold)
            defer { tunnel.stop(); try? FileManager.default.removeItem(atPath: directory) }
            #expect(tunnel.withState { $0.engine.configuration.maxReorderHold } == floor)
        }
    }

    @Test func everySchedulerNamedInTheBusExamplesExists() throws {
        let page = try Self.document("DBUS.md")
        let named = page.split(separator: "\n").compactMap { line -> String? in
            guard let range = line.range(of: "Scheduler s ") ?? line.range(of: "scheduler s ") else { return nil }
            return line[range.upperBound...].split(separator: " ").first.map(String.init)
        }
        #expect(!named.isEmpty)
        for name in named { #expect(SchedulerMode(rawValue: name) != nil, "DBUS.md names an unknown scheduler '\(name)'") }
    }
}
