import Synchronization
import Testing
import TriglavConfig
import TriglavControlAPI
import TriglavCore
import TriglavDataPlane
import TriglavMultipath
@testable import TriglavDaemon

@Suite("ClientManager state machine (fakes)")
struct CoreClientManagerTests {
    // MARK: Connect / Disconnect

    @Test func connectBuildsTheTunnelFromConfigAndProfile() throws {
        var config = DaemonConfig()
        config.multipath.scheduler = .redundant
        config.routing.firewallMark = 0x1234
        let (manager, factory, _, _) = try Fixtures.clientManager(config: config)
        #expect(manager.status.state == .disconnected)
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        #expect(tunnel.calls == ["start"])
        #expect(tunnel.plan.server == (try IPEndpoint("198.51.100.5:7443")))
        #expect(tunnel.plan.serverKey == Fixtures.serverKey)
        #expect(tunnel.plan.scheduler == .redundant)
        #expect(tunnel.plan.routing == .fullTunnel)
        #expect(tunnel.plan.firewallMark == 0x1234)
        #expect(tunnel.plan.tunnelInterface.rawValue == "triglav0")
        let status = manager.status
        #expect(status.state == .connecting)
        #expect(status.profile == "home")
        #expect(status.server == "198.51.100.5:7443")
        #expect(status.tunnelInterface == "triglav0")
        #expect(status.scheduler == .redundant)
    }

    @Test func connectOptionsOverrideProfileAndFile() throws {
        var profile = try Fixtures.profile()
        profile.fullTunnel = true
        profile.routes = [try IPPrefix("10.0.0.0/8")]
        let (manager, factory, _, _) = try Fixtures.clientManager(profiles: [profile])
        try manager.connect(profile: "home", options: ConnectionOptions(scheduler: .flow, fullTunnel: false))
        let plan = try #require(factory.last).plan
        #expect(plan.scheduler == .flow)
        #expect(plan.routing == .split([try IPPrefix("10.0.0.0/8")]))
    }

    @Test func routingTablePriorityAndExcludesReachThePlan() throws {
        var config = DaemonConfig()
        config.routing.table = 1234
        config.routing.rulePriority = 5000
        config.routing.exclude = [try IPPrefix("192.0.2.0/24"), try IPPrefix("2001:db8::/32")]
        let (manager, factory, _, _) = try Fixtures.clientManager(config: config)
        try manager.connect(profile: "home")
        let plan = try #require(factory.last).plan
        #expect(plan.routingTable == 1234 && plan.rulePriority == 5000)
        #expect(plan.exclude.map(\.description) == ["192.0.2.0/24", "2001:db8::/32"])
        // The data plane gets exactly these (the mark stays the sockets' mark, no longer the table).
        #expect(plan.firewallMark == ConfigDefaults.firewallMark)
    }

    @Test func hostnameEndpointsAreResolvedButShownAsWritten() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager(profiles: [try Fixtures.profile(endpoint: "vpn.example.net:7000")])
        try manager.connect(profile: "home")
        #expect(try #require(factory.last).plan.server == (try IPEndpoint("198.51.100.5:7000")))
        #expect(manager.status.server == "vpn.example.net:7000")
    }

    @Test func connectInTheWrongStateOrWithBadNamesIsRefused() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        #expect(throws: TriglavDaemonError.notConnected(operation: "disconnect")) { try manager.disconnect() }
        #expect(throws: TriglavDaemonError.notFound("profile 'away'")) { try manager.connect(profile: "away") }
        #expect(manager.status.state == .disconnected)
        #expect(throws: TriglavDaemonError.self) { try manager.connect(profile: "../etc/passwd") }
        #expect(factory.count == 0)
        try manager.connect(profile: "home")
        #expect(throws: TriglavDaemonError.alreadyConnected(profile: "home")) { try manager.connect(profile: "home") }
        #expect(factory.count == 1)
    }

    @Test func aTunnelThatFailsToStartLeavesTheManagerDisconnected() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        factory.startError.withLock { $0 = .tunDevice(name: "triglav0", errno: 1) }
        #expect(throws: TriglavDaemonError.self) { try manager.connect(profile: "home") }
        #expect(manager.status.state == .disconnected)
        #expect(manager.status.profile == "")
        factory.startError.withLock { $0 = nil }
        try manager.connect(profile: "home")
        #expect(manager.status.state == .connecting)
    }

    @Test func lowestLatencyFromTheConfigReachesTheTunnel() throws {
        var config = DaemonConfig()
        config.multipath.scheduler = .lowestLatency
        let (manager, factory, _, _) = try Fixtures.clientManager(config: config)
        try manager.connect(profile: "home")
        #expect(try #require(factory.last).plan.scheduler == .lowestLatency)
        #expect(manager.status.scheduler == .lowestLatency)
    }

    @Test func engineLossPercentBecomesARatio() {
        #expect(ClientTunnel.lossRatio(percent: nil) == 0)
        #expect(ClientTunnel.lossRatio(percent: 2.5) == 0.025)
        #expect(ClientTunnel.lossRatio(percent: 250) == 1)
        #expect(ClientTunnel.lossRatio(percent: -1) == 0)
        #expect(ClientTunnel.lossRatio(percent: .nan) == 0)
        #expect(ClientManager.microseconds(.milliseconds(42) + .nanoseconds(500_700)) == 42_500)
        #expect(ClientManager.microseconds(.seconds(-1)) == 0)
    }

    @Test func everyConfigSchedulerHasItsDataPlaneNamesake() {
        for kind in TriglavConfig.SchedulerKind.allCases {
            #expect(ClientManager.dataPlaneScheduler(kind).rawValue == kind.rawValue)
        }
    }

    @Test func disconnectStopsTheTunnelAndReportsEveryState() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        let log = EventLog<ClientManagerEvent>()
        manager.observe { log.append($0) }
        try manager.connect(profile: "home")
        try manager.disconnect()
        manager.drainEvents()
        #expect(try #require(factory.last).isStopped)
        var states: [ConnectionState] = []
        for case .managerChanged(let status) in log.all where states.last != status.state { states.append(status.state) }
        #expect(states == [.disconnected, .connecting, .disconnecting, .disconnected])
        #expect(manager.status.profile == "")
        #expect(throws: TriglavDaemonError.notConnected(operation: "disconnect")) { try manager.disconnect() }
    }

    @Test func shutdownDisconnectsAndIsHarmlessWhenDisconnected() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        manager.shutdown()
        try manager.connect(profile: "home")
        manager.shutdown()
        #expect(try #require(factory.last).isStopped)
        #expect(manager.status.state == .disconnected)
    }

    // MARK: Uplinks and states

    @Test func discoveredUplinksJoinAndLeaveTheTunnel() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.synchronized)
        #expect(manager.uplinks.map(\.interface) == ["eth0"])
        #expect(manager.uplinks.first?.state == .idle)
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        #expect(tunnel.uplinks == ["eth0"])
        manager.handleDiscovery(.added(Fixtures.uplink("wlan0", index: 3, kind: .wifi)))
        #expect(tunnel.uplinks == ["eth0", "wlan0"])
        manager.handleDiscovery(.removed(Fixtures.uplink("eth0", index: 2)))
        #expect(tunnel.uplinks == ["wlan0"])
        #expect(manager.uplinks.map(\.interface) == ["wlan0"])
        #expect(manager.uplinks.first?.kind == .wifi)
        #expect(manager.uplinks.first?.number == 2)
    }

    @Test func connectionStateFollowsUplinkSessions() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.added(Fixtures.uplink("wlan0", index: 3)))
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        manager.refresh()
        #expect(manager.status.state == .connecting)
        tunnel.establish("eth0", assignment: TunnelAddresses(ipv4: try IPPrefix("10.77.0.0/24").withAddress("10.77.0.2")))
        manager.refresh()
        #expect(manager.status.state == .degraded)
        #expect(manager.status.tunnelAddresses == ["10.77.0.2/24"])
        #expect(manager.uplinks.map(\.state) == [.established, .connecting])
        #expect(manager.uplinks.first?.rttMicroseconds == 1500)
        // The engine's path estimates reach Uplink1 (JitterUsec, LossRatio, CapacityBps, Transport).
        let eth0 = try #require(manager.uplinks.first)
        #expect(eth0.jitterMicroseconds == 250 && eth0.lossRatio == 0.02 && eth0.capacityBitsPerSecond == 30_000_000)
        // Both directions: the engine's send estimate (CapacityBps) and the measured receive rate (RxRateBps).
        #expect(eth0.receiveRateBitsPerSecond == 40_000_000)
        #expect(Daemon.uplinkStatus(eth0).rxRateBps == 40_000_000 && Daemon.uplinkStatus(eth0).capacityBps == 30_000_000)
        #expect(manager.uplinks.last?.receiveRateBitsPerSecond == 0)
        #expect(eth0.transport == "udp")
        // The socket's offloads (Uplink1.GSODatagrams, GRODatagrams).
        #expect(Daemon.uplinkStatus(eth0).gsoDatagrams == 30 && Daemon.uplinkStatus(eth0).groDatagrams == 40)
        #expect(manager.uplinks.last?.capacityBitsPerSecond == 0 && manager.uplinks.last?.jitterMicroseconds == 0)
        tunnel.establish("wlan0")
        manager.refresh()
        #expect(manager.status.state == .connected)
        #expect(manager.statusLine.hasPrefix("Connected to home (198.51.100.5:7443): 2/2 uplinks established"))
        tunnel.lose("eth0", "wlan0")
        manager.refresh()
        #expect(manager.status.state == .connecting)
    }

    @Test func uplinkStateOnTheBusFollowsLinkSessionAndPath() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.added(Fixtures.uplink("wlan0", index: 3)))
        manager.handleDiscovery(.synchronized)
        func busStates() -> [String] { manager.uplinks.map { Daemon.uplinkStatus($0).state.rawValue } }
        #expect(busStates() == ["waiting", "waiting"])  // usable, disconnected
        try manager.updateUplink(number: 2, UplinkOverrides(isEnabled: false))
        #expect(busStates() == ["waiting", "down"])
        try manager.updateUplink(number: 2, UplinkOverrides(isEnabled: true))
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        manager.refresh()
        #expect(busStates() == ["waiting", "waiting"])  // handshaking
        tunnel.establish("eth0", "wlan0")
        tunnel.setPathState(.probing, "eth0")
        tunnel.setPathState(.degraded, "wlan0")
        manager.refresh()
        #expect(busStates() == ["probing", "degraded"])
        tunnel.setPathState(.ready, "eth0")
        tunnel.setPathState(.down, "wlan0")
        manager.refresh()
        #expect(busStates() == ["active", "probing"])
        manager.handleDiscovery(.removed(Fixtures.uplink("wlan0", index: 3)))
        #expect(busStates() == ["active"])
    }

    @Test func routeToServerAndTransportReachUplink1() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.added(Fixtures.uplink("wwan0", index: 3, kind: .wwan)))
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        func bus(_ interface: String) -> TriglavControlAPI.UplinkStatus? {
            manager.uplinks.first { $0.interface == interface }.map(Daemon.uplinkStatus)
        }
        manager.refresh()
        #expect(bus("eth0")?.routeToServer == true && bus("wwan0")?.routeToServer == true, "unknown counts as routed")
        tunnel.setRouteToServer(false, "wwan0")
        manager.refresh()
        #expect(bus("wwan0")?.routeToServer == false)
        #expect(bus("wwan0")?.state == .waiting)
        #expect(bus("eth0")?.routeToServer == true)
        // A route appeared and the uplink connected (over its TCP fallback, in this fake).
        tunnel.setRouteToServer(true, "wwan0")
        tunnel.establish("wwan0")
        manager.refresh()
        #expect(bus("wwan0")?.routeToServer == true)
        #expect(bus("wwan0")?.transport == .tcp)
        #expect(bus("eth0")?.transport == .udp)
    }

    /// Every tier keeps a session; the engine's tier rules decide what carries data. A backup that waited for a
    /// session until the primary's had timed out would leave the tunnel without any uplink for seconds.
    @Test func secondaryAndBackupUplinksKeepSessionsWhileThePrimaryWorks() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.added(Fixtures.uplink("wwan0", index: 3, kind: .wwan, tier: .secondary, metered: true)))
        manager.handleDiscovery(.added(Fixtures.uplink("wwan1", index: 4, kind: .wwan, tier: .backup)))
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        #expect(Set(tunnel.uplinks) == ["eth0", "wwan0", "wwan1"])
        tunnel.establish("eth0", "wwan0", "wwan1")
        tunnel.setPathState(.ready, "eth0")
        tunnel.setReceiveRate("wwan0", 0)
        tunnel.setReceiveRate("wwan1", 0)
        manager.refresh()
        #expect(Set(tunnel.uplinks) == ["eth0", "wwan0", "wwan1"], "a working primary keeps the other tiers attached")
        #expect(manager.status.state == .connected)
        let byName = { Dictionary(uniqueKeysWithValues: manager.uplinks.map { ($0.interface, $0) }) }
        #expect(byName()["eth0"]?.state == .established)
        #expect(byName()["wwan0"]?.state == .standby, "idle behind a working primary")
        #expect(byName()["wwan1"]?.state == .standby)
        #expect(byName()["wwan0"]?.isMetered == true && byName()["wwan0"]?.tier == .secondary)
        // The tiers reach the engine, secondaries and backups with the relaxed idle heartbeat.
        #expect(tunnel.policies["eth0"] == UplinkPolicy(tier: .primary, isMetered: false))
        #expect(tunnel.policies["wwan0"] == UplinkPolicy(tier: .secondary, isMetered: true, heartbeatInterval: 3_200_000_000))
        #expect(tunnel.policies["wwan1"] == UplinkPolicy(tier: .backup, isMetered: false, heartbeatInterval: 3_200_000_000))
        // The primaries fill up and the engine spills onto the secondary: it carries traffic, so it isn't standby.
        tunnel.setReceiveRate("wwan0", 5_000_000)
        manager.refresh()
        #expect(byName()["wwan0"]?.state == .established)
        // The primary fails: nothing is added or re-handshaken, the engine moves the traffic on its own.
        tunnel.lose("eth0")
        tunnel.setReceiveRate("wwan1", 2_000_000)
        manager.refresh()
        #expect(Set(tunnel.uplinks) == ["eth0", "wwan0", "wwan1"])
        #expect(tunnel.calls.filter { $0.hasPrefix("add ") }.count == 3 && !tunnel.calls.contains { $0.hasPrefix("remove ") })
        #expect(byName()["wwan1"]?.state == .established)
        #expect(manager.status.state == .degraded)
    }

    @Test func tierAndMeteredReachTheMultipathEngine() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.added(Fixtures.uplink("wwan0", index: 3, kind: .wwan, tier: .primary, metered: true)))
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        #expect(tunnel.policies["eth0"] == UplinkPolicy(tier: .primary, isMetered: false))
        // Metered: the relaxed idle heartbeat ([uplinks] metered_heartbeat_interval_ms, 3.2 s by default).
        #expect(tunnel.policies["wwan0"] == UplinkPolicy(tier: .primary, isMetered: true, heartbeatInterval: 3_200_000_000))
        // An Uplink1.Metered write reaches the attached uplink once, without re-adding it; unmetered, it takes the
        // tunnel's heartbeat again.
        let wwan = try #require(manager.uplinks.first { $0.interface == "wwan0" })
        try manager.updateUplink(number: wwan.number, UplinkOverrides(isMetered: false))
        #expect(tunnel.policies["wwan0"] == UplinkPolicy(tier: .primary, isMetered: false))
        manager.refresh()
        #expect(tunnel.calls.filter { $0 == "policy wwan0" }.count == 1)
        #expect(tunnel.calls.filter { $0 == "add wwan0" }.count == 1)
    }

    @Test func idleHeartbeatPerUplinkFollowsTheConfigurationAndItsReload() throws {
        var config = DaemonConfig()
        config.uplinks.meteredHeartbeatInterval = .milliseconds(6400)
        var pin = UplinkPin(match: try InterfaceGlob("eth1"))
        pin.heartbeatInterval = .milliseconds(400)
        config.uplinks.pins = [pin]
        let (manager, factory, source, _) = try Fixtures.clientManager(config: config)
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.added(Fixtures.uplink("eth1", index: 3)))
        manager.handleDiscovery(.added(Fixtures.uplink("wwan0", index: 4, kind: .wwan, tier: .primary, metered: true)))
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        #expect(tunnel.plan.probeInterval == .milliseconds(100))
        #expect(tunnel.policies["eth0"]?.heartbeatInterval == nil, "unmetered: the tunnel's heartbeat")
        #expect(tunnel.policies["eth1"]?.heartbeatInterval == 400_000_000, "the interface's own setting")
        #expect(tunnel.policies["wwan0"]?.heartbeatInterval == 6_400_000_000)
        // SIGHUP with another metered interval: the next refresh applies it to the attached uplink in place.
        config.uplinks.meteredHeartbeatInterval = .milliseconds(12_800)
        source.set(config)
        try manager.reload()
        manager.refresh()
        #expect(factory.count == 1)
        #expect(tunnel.policies["wwan0"]?.heartbeatInterval == 12_800_000_000)
        #expect(tunnel.calls.filter { $0 == "add wwan0" }.count == 1)
    }

    @Test func disabledAndNeverUplinksStayOut() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.added(Fixtures.uplink("eth1", index: 3, tier: .never)))
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        #expect(tunnel.uplinks == ["eth0"])
        let eth0 = try #require(manager.uplinks.first { $0.interface == "eth0" })
        try manager.updateUplink(number: eth0.number, UplinkOverrides(isEnabled: false))
        #expect(tunnel.uplinks == [])
        #expect(try manager.uplink(number: eth0.number).isEnabled == false)
        let eth1 = try #require(manager.uplinks.first { $0.interface == "eth1" })
        try manager.updateUplink(number: eth1.number, UplinkOverrides(tier: .backup))
        #expect(tunnel.uplinks == ["eth1"])
        #expect(throws: TriglavDaemonError.notFound("uplink 99")) { try manager.updateUplink(number: 99, UplinkOverrides(isEnabled: true)) }
    }

    @Test func manualUplinksWaitForTheirInterfaceAndCanBeRemoved() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        let number = try manager.addUplink(interface: "usb0", options: UplinkOverrides(tier: .secondary, isMetered: true))
        #expect(number == 1)
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        #expect(tunnel.uplinks == ["usb0"])
        let usb = try manager.uplink(number: number)
        #expect(usb.origin == .manual)
        #expect(usb.state == .waiting)
        #expect(usb.tier == .secondary)
        #expect(usb.isMetered)
        #expect(throws: TriglavDaemonError.self) { try manager.addUplink(interface: "usb0") }
        #expect(throws: TriglavDaemonError.self) { try manager.addUplink(interface: "bad/name") }
        #expect(throws: TriglavDaemonError.self) { try manager.addUplink(interface: "triglav0") }
        try manager.removeUplink(number: number)
        #expect(tunnel.uplinks == [])
        #expect(manager.uplinks.isEmpty)
        #expect(throws: TriglavDaemonError.notFound("uplink \(number)")) { try manager.removeUplink(number: number) }
        // Numbers are never reused.
        #expect(try manager.addUplink(interface: "usb0") == 2)
    }

    @Test func addingADiscoveredInterfacePinsItAndRemovingItUnpins() throws {
        let (manager, _, _, _) = try Fixtures.clientManager()
        manager.handleDiscovery(.added(Fixtures.uplink("wwan0", index: 5, kind: .wwan, tier: .backup)))
        let auto = try #require(manager.uplinks.first)
        #expect(auto.origin == .auto)
        #expect(throws: TriglavDaemonError.self) { try manager.removeUplink(number: auto.number) }
        #expect(try manager.addUplink(interface: "wwan0", options: UplinkOverrides(tier: .primary)) == auto.number)
        #expect(try manager.uplink(number: auto.number).origin == .manual)
        #expect(try manager.uplink(number: auto.number).tier == .primary)
        // Discovery losing it keeps a manual uplink.
        manager.handleDiscovery(.removed(Fixtures.uplink("wwan0", index: 5)))
        #expect(try manager.uplink(number: auto.number).interface == "wwan0")
        manager.handleDiscovery(.added(Fixtures.uplink("wwan0", index: 5, kind: .wwan, tier: .backup)))
        try manager.removeUplink(number: auto.number)
        let back = try manager.uplink(number: auto.number)
        #expect(back.origin == .auto)
        #expect(back.tier == .backup)
    }

    @Test func aRenamedInterfaceBecomesANewUplink() throws {
        let (manager, _, _, _) = try Fixtures.clientManager()
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 7)))
        manager.handleDiscovery(.changed(Fixtures.uplink("lan0", index: 7)))
        #expect(manager.uplinks.map(\.interface) == ["lan0"])
        #expect(manager.uplinks.map(\.number) == [2])
    }

    @Test func uplinksBeyondTheTunnelLimitJoinWhenThereIsRoom() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        tunnel.record.withLock { $0.uplinkLimit = 2 }
        for index in 1...3 { manager.handleDiscovery(.added(Fixtures.uplink("eth\(index)", index: Int32(index + 1)))) }
        #expect(tunnel.uplinks == ["eth1", "eth2"])
        manager.handleDiscovery(.removed(Fixtures.uplink("eth1", index: 2)))
        #expect(tunnel.uplinks == ["eth2", "eth3"])
    }

    @Test func countersNeverGoBackwardsWhenAnUplinkLeaves() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.added(Fixtures.uplink("eth1", index: 3)))
        try manager.connect(profile: "home")
        try #require(factory.last).establish("eth0", "eth1")
        manager.refresh()
        #expect(manager.status.transmittedBytes == 2000)
        #expect(manager.status.receivedBytes == 4000)
        manager.handleDiscovery(.removed(Fixtures.uplink("eth1", index: 3)))
        manager.refresh()
        #expect(manager.status.transmittedBytes == 2000)
        #expect(manager.status.receivedBytes == 4000)
    }

    // MARK: Scheduler and reload

    @Test func schedulerChangesApplyAtOnceAndPersist() throws {
        let (manager, factory, _, _) = try Fixtures.clientManager()
        try manager.setScheduler("failover")
        #expect(manager.status.scheduler == .failover)
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        #expect(tunnel.plan.scheduler == .failover)
        try manager.setScheduler("flow")
        #expect(tunnel.calls.last == "scheduler flow")
        #expect(manager.status.scheduler == .flow)
        #expect(throws: TriglavDaemonError.self) { try manager.setScheduler("fastest") }
        #expect(manager.status.scheduler == .flow)
        try manager.setScheduler("lowest-latency")
        #expect(tunnel.calls.last == "scheduler lowest-latency")
        #expect(tunnel.record.withLock { $0.scheduler } == .lowestLatency)
        #expect(manager.status.scheduler == .lowestLatency)
    }

    @Test func reloadAppliesSchedulerChangesInPlaceAndRebuildsForOthers() throws {
        let (manager, factory, source, store) = try Fixtures.clientManager()
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        try manager.connect(profile: "home")
        let first = try #require(factory.last)
        // Unchanged: nothing happens.
        try manager.reload()
        #expect(factory.count == 1)
        #expect(first.calls == ["start", "add eth0"])
        // Scheduler only: in place.
        var config = DaemonConfig()
        config.multipath.scheduler = .redundant
        source.set(config)
        try manager.reload()
        #expect(factory.count == 1)
        #expect(first.calls.last == "scheduler redundant")
        // The profile's server moved: a new tunnel with the same uplinks.
        store.set(try Fixtures.profile(endpoint: "198.51.100.9:7443"))
        try manager.reload()
        #expect(factory.count == 2)
        #expect(first.isStopped)
        let second = try #require(factory.last)
        #expect(second.plan.server == (try IPEndpoint("198.51.100.9:7443")))
        #expect(second.uplinks == ["eth0"])
        #expect(manager.status.state == .connecting)
        // A broken file changes nothing.
        source.fail(.failed(operation: "loading x", reason: "syntax"))
        #expect(throws: TriglavDaemonError.self) { try manager.reload() }
        #expect(!second.isStopped)
        #expect(manager.config.multipath.scheduler == .redundant)
    }

    @Test func observersSeeUplinkObjectsComeAndGo() throws {
        let (manager, _, _, _) = try Fixtures.clientManager()
        let log = EventLog<ClientManagerEvent>()
        manager.observe { log.append($0) }
        manager.drainEvents()
        log.clear()
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        manager.handleDiscovery(.changed(Fixtures.uplink("eth0", index: 2, address: "192.0.2.99")))
        manager.handleDiscovery(.removed(Fixtures.uplink("eth0", index: 2)))
        manager.drainEvents()
        let kinds = log.all.map { event -> String in
            switch event {
            case .managerChanged(let status): "manager \(status.uplinks)"
            case .uplinkAdded(let uplink): "added \(uplink.number) \(uplink.localAddress)"
            case .uplinkChanged(let uplink): "changed \(uplink.number) \(uplink.localAddress)"
            case .uplinkRemoved(let number, let interface): "removed \(number) \(interface)"
            }
        }
        #expect(kinds == ["manager [1]", "added 1 192.0.2.10", "changed 1 192.0.2.99", "manager []", "removed 1 eth0"])
    }
}

extension IPPrefix {
    /// The same prefix length with another address (test helper).
    func withAddress(_ text: String) throws -> IPPrefix {
        try IPPrefix(address: try #require(IPAddress(text)), length: length)
    }
}
