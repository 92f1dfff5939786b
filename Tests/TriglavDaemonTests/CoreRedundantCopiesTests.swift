import Foundation
import Logging
import Testing
import TriglavConfig
import TriglavCore
import TriglavCrypto
import TriglavDataPlane
@testable import TriglavDaemon

/// `[multipath] redundant_copies` travels from the configuration through the connection plan into the
/// multipath engine's configuration.
@Suite struct CoreRedundantCopiesTests {
    @Test func configuredCopiesReachThePlan() throws {
        var config = DaemonConfig()
        config.multipath.scheduler = .redundant
        config.multipath.redundantCopies = 2
        let (manager, factory, _, _) = try Fixtures.clientManager(config: config)
        try manager.connect(profile: "home")
        let plan = try #require(factory.last).plan
        #expect(plan.scheduler == .redundant && plan.redundantCopies == 2)
    }

    @Test func absentCopiesMeanEveryUplink() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        try manager.connect(profile: "home")
        #expect(try #require(factory.last).plan.redundantCopies == nil)
    }

    @Test func reloadWithOtherCopiesRebuildsTheTunnel() throws {
        var config = DaemonConfig()
        config.multipath.scheduler = .redundant
        let (manager, factory, source, _) = try Fixtures.clientManager(config: config)
        try manager.connect(profile: "home")
        let first = try #require(factory.last)
        config.multipath.redundantCopies = 3
        source.set(config)
        try manager.reload()
        #expect(factory.count == 2 && first.isStopped)
        #expect(try #require(factory.last).plan.redundantCopies == 3)
    }

    /// The live factory hands the value to the engine, which validates it: an out-of-range value (the
    /// config loader never produces one) is refused there, so it must have arrived.
    @Test func liveFactoryPassesCopiesToTheEngine() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("triglav-copies-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let keyPath = directory + "/private.key"
        try KeyFile.write(IdentityKey.generate(), to: keyPath, force: false)
        func plan(copies: Int?) throws -> ClientTunnelPlan {
            ClientTunnelPlan(profile: try ProfileName("home"), configuredEndpoint: try RemoteEndpoint("198.51.100.5:7443"),
                             server: try IPEndpoint("198.51.100.5:7443"), serverKey: Fixtures.serverKey,
                             privateKeyPath: keyPath, tunnelInterface: try InterfaceName("tgcopies0"),
                             scheduler: .redundant, redundantCopies: copies)
        }
        let factory = LiveClientTunnelFactory(logger: Logger(label: "test"))
        _ = try factory.makeTunnel(plan(copies: 2))
        _ = try factory.makeTunnel(plan(copies: nil))
        #expect { _ = try factory.makeTunnel(plan(copies: 17)) } throws: { error in
            "\(error)".contains("redundantCopies")
        }
    }
}
