import Dispatch
import Synchronization
import Testing
import TriglavConfig
import TriglavControlAPI
import TriglavCore
import TriglavDataPlane
import TriglavMultipath
@testable import TriglavDaemon

/// Host-name endpoints: the start-time connection waits (and retries with backoff) for a name that doesn't resolve
/// yet, an explicit Connect fails at once, and a connected tunnel whose uplinks all lost the server resolves the name
/// again and follows it to a new address. A stub resolver and a virtual monotonic clock; no DNS, no sleeping.
@Suite("ClientManager server names (fakes, stub resolver, virtual clock)")
struct CoreServerNameTests {
    /// Answers only the names the test set; counts every call. With a gate set, a call waits for it (a slow DNS).
    final class StubResolver: EndpointResolving, Sendable {
        private let answers = Mutex<[String: IPAddress]>([:])
        private let calls = Mutex<[String]>([])
        private let gate = Mutex<DispatchSemaphore?>(nil)

        func set(_ host: String, _ address: String?) { answers.withLock { $0[host] = address.flatMap(IPAddress.init) } }
        func hold(_ semaphore: DispatchSemaphore?) { gate.withLock { $0 = semaphore } }
        var callCount: Int { calls.withLock { $0.count } }

        func resolve(_ endpoint: RemoteEndpoint) throws(TriglavDaemonError) -> IPEndpoint {
            switch endpoint {
            case .address(let address):
                return address
            case .hostname(let host, let port):
                calls.withLock { $0.append(host) }
                gate.withLock { $0 }?.wait()
                // Another error than `unresolvable` on purpose: the manager counts any resolver failure as one.
                guard let address = answers.withLock({ $0[host] }) else {
                    throw .failed(operation: "resolving '\(host)'", reason: "Temporary failure in name resolution")
                }
                return IPEndpoint(address: address, port: port)
            }
        }
    }

    final class VirtualClock: Sendable {
        private let now = Mutex<Duration>(.zero)
        var read: Duration { now.withLock { $0 } }
        func advance(_ by: Duration) { now.withLock { $0 += by } }
    }

    struct Setup {
        let manager: ClientManager
        let factory: FakeClientTunnelFactory
        let resolver: StubResolver
        let clock: VirtualClock

        /// Advances the clock, runs the daemon's tick and waits for the resolution it may have started.
        func tick(_ by: Duration = .seconds(1)) {
            clock.advance(by)
            manager.refresh()
            manager.drainResolutions()
        }
    }

    static let endpoint = "vpn.example.net:7000"

    static func setup(endpoint: String = endpoint, uplinks: [String] = ["eth0"]) throws -> Setup {
        let factory = FakeClientTunnelFactory()
        let resolver = StubResolver()
        let clock = VirtualClock()
        let manager = ClientManager(config: DaemonConfig(), configSource: FakeConfigSource(DaemonConfig()),
                                    profiles: FakeProfileStore([try Fixtures.profile(endpoint: endpoint)]), tunnels: factory,
                                    resolver: resolver, clock: { 1_768_435_200 }, uptime: { clock.read })
        for (index, name) in uplinks.enumerated() {
            manager.handleDiscovery(.added(Fixtures.uplink(name, index: Int32(index + 2))))
        }
        return Setup(manager: manager, factory: factory, resolver: resolver, clock: clock)
    }

    // MARK: Schedule

    @Test func retriesDoubleFromOneSecondAndStayAtThirty() {
        #expect((1...8).map(ServerNameSchedule.retryDelay(afterFailures:))
                == [1, 2, 4, 8, 16, 30, 30, 30].map { Duration.seconds($0) })
        #expect(ServerNameSchedule.retryDelay(afterFailures: 1_000_000) == .seconds(30))
    }

    @Test func theWatchWaitsThirtySecondsOfUnreachabilityAndThenResolvesAtMostEveryThirty() {
        var watch = ServerNameWatch(resolvedAt: .zero)
        /// (reachable, at second, then finish the resolution it started) → whether it was due.
        func observe(_ steps: [(Bool?, Int64, finish: Bool)]) -> [Bool] {
            steps.map { reachable, second, finish in
                let due = watch.observe(reachable: reachable, now: .seconds(second))
                if due && finish { watch.finishResolving(at: .seconds(second)) }
                return due
            }
        }
        #expect(observe([(false, 100, false), (false, 129, false), (false, 130, false), (false, 131, true)])
                == [false, false, true, false])  // one resolution at a time
        watch.finishResolving(at: .seconds(131))
        #expect(observe([(false, 160, true), (false, 161, true)]) == [false, true])
        // A working session (or nothing to judge by: no uplink tries) restarts the count.
        #expect(observe([(true, 200, true), (false, 201, true), (nil, 230, true), (false, 240, true), (false, 269, true),
                         (false, 270, true)]) == [false, false, false, false, false, true])
    }

    @Test func theSystemResolverPassesAddressesThroughAndResolvesFromTheHostsFile() throws {
        let resolver = SystemEndpointResolver()
        let address = try IPEndpoint("198.51.100.5:7443")
        #expect(try resolver.resolve(.address(address)) == address)
        // `localhost` comes from /etc/hosts (nsswitch `files` before `dns`): no DNS query leaves this test.
        let local = try resolver.resolve(try RemoteEndpoint("localhost:7443"))
        #expect(local.port == 7443)
        #expect(local.address == IPAddress("127.0.0.1") || local.address == IPAddress("::1"))
    }

    // MARK: Start-time connection

    @Test func autoconnectWaitsForTheNameWithBackoffAndConnectsOnceItResolves() throws {
        let setup = try Self.setup()
        try setup.manager.autoconnect(profile: "home")  // does not throw: the daemon start goes on
        var status = setup.manager.status
        #expect(status.state == .connecting)
        #expect(status.profile == "home" && status.server == Self.endpoint && status.tunnelInterface == "")
        #expect(setup.factory.count == 0)
        #expect(setup.manager.statusLine == "Connecting to home (vpn.example.net:7000): waiting for the server name "
                + "(resolving 'vpn.example.net' failed: Temporary failure in name resolution), 1 failed attempt, retrying")
        // The bus's Manager1.StateReason: the same reason.
        #expect(status.stateReason == "waiting for the server name "
                + "(resolving 'vpn.example.net' failed: Temporary failure in name resolution), 1 failed attempt, retrying")
        #expect(setup.manager.uplinks.map(\.state) == [.idle])

        // Attempts at 1, 3, 7, 15, 31, 61, 91 s: the delays double from 1 s and stop at 30 s.
        var attempts: [Int] = []
        for second in 1...100 {
            let before = setup.resolver.callCount
            setup.tick()
            if setup.resolver.callCount > before { attempts.append(second) }
        }
        #expect(attempts == [1, 3, 7, 15, 31, 61, 91])
        #expect(setup.manager.statusLine.hasSuffix("8 failed attempts, retrying"))
        #expect(setup.manager.status.stateReason.hasSuffix("8 failed attempts, retrying"))
        #expect(setup.factory.count == 0)
        #expect(setup.manager.status.state == .connecting)

        setup.resolver.set("vpn.example.net", "198.51.100.9")
        for _ in 0..<30 where setup.factory.count == 0 { setup.tick() }
        #expect(setup.clock.read == .seconds(121))  // the next attempt, not earlier
        let tunnel = try #require(setup.factory.last)
        #expect(tunnel.plan.server == (try IPEndpoint("198.51.100.9:7000")))
        #expect(tunnel.plan.configuredEndpoint == (try RemoteEndpoint(Self.endpoint)))
        #expect(tunnel.uplinks == ["eth0"])
        status = setup.manager.status
        #expect(status.state == .connecting && status.tunnelInterface == "triglav0" && status.server == Self.endpoint)
        tunnel.establish("eth0")
        setup.tick()
        #expect(setup.manager.status.state == .connected)
    }

    @Test func aNewNetworkBringsTheNextAttemptForward() throws {
        let setup = try Self.setup(uplinks: [])
        try setup.manager.autoconnect(profile: "home")
        for _ in 0..<40 { setup.tick() }  // attempts at 1, 3, 7, 15, 31 s; the next is due at 61 s
        let before = setup.resolver.callCount
        setup.tick()
        #expect(setup.resolver.callCount == before)
        setup.resolver.set("vpn.example.net", "198.51.100.9")
        setup.manager.handleDiscovery(.added(Fixtures.uplink("wlan0", index: 3, kind: .wifi)))
        setup.tick()
        #expect(setup.clock.read == .seconds(42))
        #expect(try #require(setup.factory.last).uplinks == ["wlan0"])
    }

    @Test func anExplicitConnectWithAnUnresolvableNameFailsAtOnce() throws {
        let setup = try Self.setup()
        do {
            try setup.manager.connect(profile: "home")
            Issue.record("connect succeeded without an address")
        } catch {
            guard case .unresolvable(let endpoint, let reason) = error else {
                Issue.record("wrong error: \(error)")
                return
            }
            #expect(endpoint == Self.endpoint && reason.contains("Temporary failure in name resolution"))
            #expect(error.controlError == .failed(error.description))
            #expect(error.description.contains("check the network and DNS, or use an IP address in the profile"))
        }
        #expect(setup.manager.status.state == .disconnected)
        setup.resolver.set("vpn.example.net", "198.51.100.9")
        setup.tick(.seconds(60))
        #expect(setup.factory.count == 0)  // nothing retries an explicit Connect
    }

    @Test func disconnectEndsTheWaitAndDropsAResolutionUnderWay() throws {
        let setup = try Self.setup()
        try setup.manager.autoconnect(profile: "home")
        #expect(throws: TriglavDaemonError.alreadyConnected(profile: "home")) { try setup.manager.connect(profile: "home") }
        // The next attempt is under way (a slow DNS answer) when Disconnect comes.
        let gate = DispatchSemaphore(value: 0)
        setup.resolver.hold(gate)
        setup.resolver.set("vpn.example.net", "198.51.100.9")
        setup.clock.advance(.seconds(1))
        setup.manager.refresh()
        try setup.manager.disconnect()
        #expect(setup.manager.status.state == .disconnected && setup.manager.status.server == "")
        gate.signal()
        setup.manager.drainResolutions()
        #expect(setup.factory.count == 0)
        #expect(setup.manager.status.state == .disconnected)
        #expect(throws: TriglavDaemonError.notConnected(operation: "disconnect")) { try setup.manager.disconnect() }
        setup.resolver.hold(nil)
        try setup.manager.connect(profile: "home")  // resolves now
        #expect(setup.factory.count == 1)
    }

    @Test func aProfileRemovedWhileWaitingEndsTheWait() throws {
        let factory = FakeClientTunnelFactory()
        let clock = VirtualClock()
        let profiles = FakeProfileStore([try Fixtures.profile(endpoint: Self.endpoint)])
        let manager = ClientManager(config: DaemonConfig(), configSource: FakeConfigSource(DaemonConfig()), profiles: profiles,
                                    tunnels: factory, resolver: StubResolver(), uptime: { clock.read })
        try manager.autoconnect(profile: "home")
        #expect(manager.status.state == .connecting)
        profiles.profiles.withLock { $0 = [:] }
        clock.advance(.seconds(1))
        manager.refresh()
        manager.drainResolutions()
        #expect(manager.status.state == .disconnected)
        #expect(factory.count == 0)
    }

    @Test func theDaemonStartsAndIsReadyWhileItsAutoconnectNameDoesNotResolve() throws {
        var config = DaemonConfig()
        config.autoconnect = try ProfileName("lab")
        let tunnels = FakeClientTunnelFactory()
        let notifier = RecordingNotifier()
        let environment = DaemonEnvironment(
            clientTunnels: tunnels, serverTunnels: FakeServerTunnelFactory(), resolver: FixedResolver(),
            makeUplinkSource: { policy in FakeUplinkSource(policy: policy, initial: [.added(Fixtures.uplink("eth0", index: 2)), .synchronized]) },
            notifier: notifier, synchronizationTimeout: .milliseconds(200))
        let daemon = Daemon(config: config, configSource: FakeConfigSource(config),
                            profiles: FakeProfileStore([try Fixtures.profile("lab", endpoint: "nowhere.example.net:7443")]),
                            environment: environment)
        try daemon.start()
        defer { daemon.shutdown() }
        let sent = notifier.messages.flatMap { $0.map(\.assignment) }
        let ready = try #require(sent.firstIndex(of: "READY=1"))
        #expect(sent[ready + 1] == "STATUS=Connecting to lab (nowhere.example.net:7443): waiting for the server name "
                + "(resolving 'nowhere.example.net' failed: unknown host), 1 failed attempt, retrying")
        #expect(daemon.client?.status.state == .connecting)
        #expect(tunnels.count == 0)
    }

    // MARK: Connected: the server moves

    /// Connects `home` (vpn.example.net → 198.51.100.9) and establishes eth0 and wwan0; returns the tunnel.
    static func connectBothUplinks(_ setup: Setup) throws -> FakeClientTunnel {
        setup.resolver.set("vpn.example.net", "198.51.100.9")
        try setup.manager.connect(profile: "home")
        let tunnel = try #require(setup.factory.last)
        tunnel.establish("eth0", "wwan0")
        setup.tick()
        return tunnel
    }

    @Test("a session key that outlives the server doesn't count as reaching it: a path the engine re-probes proves nothing")
    func reprobedPathsDontCountAsReachingTheServer() throws {
        let setup = try Self.setup(uplinks: ["eth0", "wwan0"])
        let tunnel = try Self.connectBothUplinks(setup)
        let resolved = setup.resolver.callCount
        // The server is gone; the sessions' keys remain ("established") while the engine probes the paths.
        tunnel.setPathState(.probing, "eth0")
        tunnel.setPathState(.down, "wwan0")
        for _ in 0..<31 { setup.tick() }
        #expect(setup.resolver.callCount == resolved + 1)
        // A path that carries data again does count.
        tunnel.setPathState(.ready, "eth0")
        for _ in 0..<40 { setup.tick() }
        #expect(setup.resolver.callCount == resolved + 1)
    }

    @Test func aTunnelWhoseUplinksAllLostTheServerFollowsItsNameToANewAddress() throws {
        let setup = try Self.setup(uplinks: ["eth0", "wwan0"])
        let first = try Self.connectBothUplinks(setup)
        #expect(setup.manager.status.state == .connected)
        let resolved = setup.resolver.callCount

        // Working sessions: the name is never resolved again, however long.
        for _ in 0..<90 { setup.tick() }
        #expect(setup.resolver.callCount == resolved)
        // One uplink losing the server is no reason either.
        first.lose("wwan0")
        for _ in 0..<60 { setup.tick() }
        #expect(setup.resolver.callCount == resolved)

        // Every uplink lost it, the name still leads to the same address: resolved after 30 s, then every 30 s; no rebuild.
        first.lose("eth0")
        var attempts: [Int] = []
        for second in 1...75 {
            let before = setup.resolver.callCount
            setup.tick()
            if setup.resolver.callCount > before { attempts.append(second) }
        }
        #expect(attempts == [31, 61])
        #expect(setup.factory.count == 1 && !first.isStopped)

        // A session comes back: the count starts over.
        first.establish("eth0")
        setup.tick()
        first.lose("eth0")
        for _ in 0..<29 { setup.tick() }
        #expect(setup.resolver.callCount == resolved + 2)

        // The server moved: the next resolution finds the new address and the tunnel is rebuilt towards it.
        setup.resolver.set("vpn.example.net", "203.0.113.44")
        for _ in 0..<5 where setup.factory.count == 1 { setup.tick() }
        #expect(setup.factory.count == 2)
        #expect(first.isStopped)
        let second = try #require(setup.factory.last)
        #expect(second.plan.server == (try IPEndpoint("203.0.113.44:7000")))
        #expect(second.plan.configuredEndpoint == first.plan.configuredEndpoint)
        #expect(second.uplinks.sorted() == ["eth0", "wwan0"])
        #expect(setup.manager.status.state == .connecting && setup.manager.status.server == Self.endpoint)
        second.establish("eth0", "wwan0")
        setup.tick()
        #expect(setup.manager.status.state == .connected)
    }

    @Test func aReloadWhileTheNameDoesNotResolveKeepsTheAddressUnlessTheEndpointChanged() throws {
        let setup = try Self.setup()
        setup.resolver.set("vpn.example.net", "198.51.100.9")
        try setup.manager.connect(profile: "home")
        setup.resolver.set("vpn.example.net", nil)
        try setup.manager.reload()  // unchanged profile: the tunnel stays, at its address
        #expect(setup.factory.count == 1 && setup.factory.last?.isStopped == false)
        #expect(setup.manager.status.state == .connecting && setup.manager.status.tunnelInterface == "triglav0")

        // Another name that doesn't resolve: the reload fails, the tunnel stays.
        let factory = FakeClientTunnelFactory()
        let resolver = StubResolver()
        resolver.set("vpn.example.net", "198.51.100.9")
        let profiles = FakeProfileStore([try Fixtures.profile(endpoint: Self.endpoint)])
        let manager = ClientManager(config: DaemonConfig(), configSource: FakeConfigSource(DaemonConfig()), profiles: profiles,
                                    tunnels: factory, resolver: resolver)
        try manager.connect(profile: "home")
        profiles.set(try Fixtures.profile(endpoint: "vpn2.example.net:7000"))
        #expect(throws: TriglavDaemonError.self) { try manager.reload() }
        #expect(factory.count == 1 && factory.last?.isStopped == false)
        resolver.set("vpn2.example.net", "203.0.113.7")
        try manager.reload()
        #expect(try factory.count == 2 && factory.last?.plan.server == IPEndpoint("203.0.113.7:7000"))
    }

    @Test func aFailedReresolutionKeepsTheTunnelAndAnAddressEndpointIsNeverResolved() throws {
        let setup = try Self.setup()
        setup.resolver.set("vpn.example.net", "198.51.100.9")
        try setup.manager.connect(profile: "home")
        let tunnel = try #require(setup.factory.last)
        setup.resolver.set("vpn.example.net", nil)
        for _ in 0..<40 { setup.tick() }
        #expect(setup.resolver.callCount == 2)  // connect, then once after 30 s unreachable
        #expect(setup.factory.count == 1 && !tunnel.isStopped)
        #expect(setup.manager.status.state == .connecting && setup.manager.status.tunnelInterface == "triglav0")

        let byAddress = try Self.setup(endpoint: "198.51.100.5:7443")
        try byAddress.manager.connect(profile: "home")
        for _ in 0..<90 { byAddress.tick() }
        #expect(byAddress.resolver.callCount == 0)
        #expect(byAddress.factory.count == 1)
    }
}
