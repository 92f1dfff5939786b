import Synchronization
import Testing
import TriglavConfig
import TriglavControlAPI
import TriglavCore
import TriglavCrypto
import TriglavDataPlane
import TriglavMultipath
@testable import TriglavDaemon

@Suite("ServerManager (fakes)")
struct CoreServerManagerTests {
    static func config(clients: Int = 2, listen: String = "192.0.2.1:7443") throws -> (DaemonConfig, [IdentityPublicKey]) {
        var config = DaemonConfig()
        config.role = .server
        var server = ServerSettings()
        server.listen = [try IPEndpoint(listen)]
        let keys = (0..<clients).map { _ in IdentityKey.generate().publicKey }
        server.clients = try keys.enumerated().map { index, key in
            AuthorizedClient(name: "client\(index)", publicKey: key, tunnelIPv4: try #require(IPAddress("10.77.0.\(index + 2)")),
                             tunnelIPv6: IPAddress("fd77::\(index + 2)"))
        }
        config.server = server
        return (config, keys)
    }

    @Test func theTunnelPlanFollowsTheConfiguration() throws {
        var (config, keys) = try Self.config()
        config.server?.nat.enabled = false
        config.server?.heartbeatInterval = .milliseconds(2500)
        let plan = ServerTunnelPlan(config: config)
        #expect(plan.listen == [try IPEndpoint("192.0.2.1:7443")])
        #expect(plan.heartbeatInterval == .milliseconds(2500))
        #expect(plan.tunnelAddresses.map(\.description) == ["10.77.0.1/24", "fd77::1/64"])
        #expect(!plan.masquerade)
        let client = try #require(config.server?.clients.first)
        let assignment = try #require(plan.assignment(of: client))
        #expect(assignment.ipv4?.description == "10.77.0.2/24")
        #expect(assignment.ipv6?.description == "fd77::2/64")
        #expect(plan.clients.map(\.publicKey) == keys)
        // An IPv6-only client gets only the IPv6 address.
        let ipv6Only = AuthorizedClient(name: "v6", publicKey: client.publicKey, tunnelIPv4: nil, tunnelIPv6: IPAddress("fd77::9"))
        #expect(plan.assignment(of: ipv6Only)?.description == "fd77::9/64")
    }

    @Test func clientsGetStableNumbersWhileConnected() throws {
        let (config, keys) = try Self.config()
        let factory = FakeServerTunnelFactory()
        let manager = ServerManager(config: config, configSource: FakeConfigSource(config), tunnels: factory)
        let log = EventLog<ServerManagerEvent>()
        manager.observe { log.append($0) }
        try manager.start()
        let tunnel = try #require(factory.last)
        #expect(manager.status.isRunning)
        #expect(manager.status.listen == ["192.0.2.1:7443"])
        let first = ServerTunnelSnapshot.Client(publicKey: keys[0].base64,
                                                assignment: TunnelAddresses(ipv4: try IPPrefix("10.77.0.2/32")))
        let second = ServerTunnelSnapshot.Client(publicKey: keys[1].base64,
                                                 assignment: TunnelAddresses(ipv4: try IPPrefix("10.77.0.3/32")))
        tunnel.setClients([first])
        manager.refresh()
        tunnel.setClients([first, second])
        manager.refresh()
        #expect(manager.clients.map(\.number) == [1, 2])
        #expect(manager.clients.map(\.name) == ["client0", "client1"])
        tunnel.setClients([second])
        manager.refresh()
        tunnel.setClients([second, first])
        manager.refresh()
        #expect(manager.clients.map { "\($0.number) \($0.name)" } == ["2 client1", "3 client0"])
        #expect(manager.statusLine == "Serving on 192.0.2.1:7443: 2 of 2 clients connected")
        manager.drainEvents()
        let removed = log.all.compactMap { event -> String? in
            if case .clientRemoved(let number, let name) = event { return "\(number) \(name)" }
            return nil
        }
        #expect(removed == ["1 client0"])
        manager.stop()
        #expect(tunnel.isStopped)
        #expect(manager.statusLine == "Stopped")
        #expect(manager.clients.isEmpty)
    }

    @Test("Client1.State and Paths follow the server engine's paths: none confirmed, all usable, one down")
    func clientStateFollowsThePaths() throws {
        #expect(ServerClientState(paths: []) == .handshaking)
        #expect(ServerClientState(paths: [.ready, .probing]) == .connected)
        #expect(ServerClientState(paths: [.ready, .degraded]) == .degraded)
        #expect(ServerClientState(paths: [.down]) == .degraded)

        let (config, keys) = try Self.config()
        let factory = FakeServerTunnelFactory()
        let manager = ServerManager(config: config, configSource: FakeConfigSource(config), tunnels: factory)
        let log = EventLog<ServerManagerEvent>()
        manager.observe { log.append($0) }
        try manager.start()
        let tunnel = try #require(factory.last)
        var client = ServerTunnelSnapshot.Client(publicKey: keys[0].base64, assignment: TunnelAddresses(ipv4: try IPPrefix("10.77.0.2/32")))
        func bus() -> TriglavControlAPI.ClientStatus? { manager.clients.first.map(Daemon.clientStatus) }
        tunnel.setClients([client])
        manager.refresh()
        #expect(bus()?.state == .handshaking && bus()?.paths == 0)
        client.paths = [.fake(1, .probing), .fake(2, .ready, rttMilliseconds: 30, lossPercent: 2.5, rxBytes: 1000, txBytes: 2000)]
        tunnel.setClients([client])
        manager.refresh()
        #expect(bus()?.state == .connected && bus()?.paths == 2)
        // Each path with its figures (Client1.PathDetails).
        #expect(bus()?.pathDetails == [
            ClientPathStatus(uplink: 1, endpoint: "198.51.100.7:40001", state: .probing),
            ClientPathStatus(uplink: 2, endpoint: "198.51.100.7:40002", state: .ready, rttUsec: 30_000, jitterUsec: 3_000,
                             lossRatio: 0.025, rxBytes: 1000, txBytes: 2000),
        ])
        client.paths = [.fake(1, .down, overTCP: true), .fake(2, .ready)]
        tunnel.setClients([client])
        manager.refresh()
        #expect(bus()?.state == .degraded && bus()?.paths == 1)
        #expect(bus()?.pathDetails.map(\.state) == [.down, .ready] && bus()?.pathDetails.map(\.transport) == [.tcp, .udp])
        // Each change is an event (PropertiesChanged on the bus).
        manager.drainEvents()
        let states = log.all.compactMap { event -> ServerClientState? in
            switch event {
            case .clientAdded(let status), .clientChanged(let status): status.state
            default: nil
            }
        }
        #expect(states == [.handshaking, .connected, .degraded])
        manager.stop()
    }

    @Test func disconnectClientDropsItAtOnceAndTotalsKeepItsBytes() throws {
        let (config, keys) = try Self.config()
        let factory = FakeServerTunnelFactory()
        let manager = ServerManager(config: config, configSource: FakeConfigSource(config), tunnels: factory)
        let log = EventLog<ServerManagerEvent>()
        manager.observe { log.append($0) }
        try manager.start()
        let tunnel = try #require(factory.last)
        let assignment = TunnelAddresses(ipv4: try IPPrefix("10.77.0.2/32"))
        tunnel.setClients([ServerTunnelSnapshot.Client(publicKey: keys[0].base64, assignment: assignment, receivedBytes: 700,
                                                       transmittedBytes: 900, smoothedRTT: .microseconds(2500))])
        manager.refresh()
        #expect(manager.clients.map { "\($0.number) \($0.transmittedBytes) \($0.receivedBytes) \($0.rttMicroseconds)" }
                == ["1 900 700 2500"])
        #expect(throws: TriglavDaemonError.notFound("client 7")) { try manager.disconnectClient(number: 7) }
        try manager.disconnectClient(number: 1)
        // Gone from the data plane and from the bus before any refresh.
        #expect(tunnel.snapshot().clients.isEmpty)
        #expect(manager.clients.isEmpty)
        #expect(log.all.contains(.clientRemoved(number: 1, name: "client0")))
        #expect(manager.status.transmittedBytes == 900 && manager.status.receivedBytes == 700)
        // It comes back (still authorized) with a fresh tunnel: a new number, and the totals add up.
        tunnel.setClients([ServerTunnelSnapshot.Client(publicKey: keys[0].base64, assignment: assignment, receivedBytes: 10,
                                                       transmittedBytes: 20)])
        manager.refresh()
        #expect(manager.clients.map(\.number) == [2])
        #expect(manager.status.transmittedBytes == 920 && manager.status.receivedBytes == 710)
        manager.stop()
    }

    @Test func reloadRestartsTheTunnelOnlyWhenItsPlanChanged() throws {
        let (config, _) = try Self.config()
        let source = FakeConfigSource(config)
        let factory = FakeServerTunnelFactory()
        let manager = ServerManager(config: config, configSource: source, tunnels: factory)
        try manager.start()
        try manager.reload()
        #expect(factory.count == 1)
        var changed = config
        changed.server?.listen = [try IPEndpoint("192.0.2.1:7444")]
        source.set(changed)
        try manager.reload()
        #expect(factory.count == 2)
        #expect(factory.made.withLock { $0[0].isStopped })
        #expect(manager.status.listen == ["192.0.2.1:7444"])
        var client = changed
        client.role = .client
        client.server = nil
        source.set(client)
        #expect(throws: TriglavDaemonError.self) { try manager.reload() }
        #expect(factory.count == 2)
        manager.stop()
    }
}
