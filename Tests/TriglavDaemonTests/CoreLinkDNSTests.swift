import Foundation
import Synchronization
import Testing
@testable import TriglavConfig
import TriglavCore
import TriglavDataPlane
import struct TriglavProtocol.DNSOffer
import TriglavTestSupport
@testable import TriglavDaemon

/// A profile's `[dns]` reaching the system resolver for the TUN's link (docs/DAEMON.md, "DNS").
@Suite struct CoreLinkDNSTests {
    static func profile(defaultRoute: Bool? = nil) throws -> Profile {
        var profile = try Fixtures.profile()
        profile.dns = DNSSettings(servers: [try #require(IPAddress("10.77.0.1")), try #require(IPAddress("fd77::1"))],
                                  domains: [try DNSDomain("corp.example"), try DNSDomain("~lab.example")], defaultRoute: defaultRoute)
        return profile
    }

    @Test func connectHandsTheDNSToTheResolverAndDisconnectTakesItBackWhileTheLinkExists() throws {
        let dns = RecordingLinkDNS()
        let (manager, factory, _, _) = try Fixtures.clientManager(profiles: [try Self.profile()], linkDNS: dns)
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        guard case .apply(let applied, let interface) = try #require(dns.all.first) else { Issue.record("\(dns.all)"); return }
        #expect(interface == "triglav0")
        #expect(applied.servers.map(\.description) == ["10.77.0.1", "fd77::1"])
        // A full tunnel takes every query (~.), so none leaks to the other links' resolvers.
        #expect(applied.defaultRoute)
        #expect(applied.domains.map(\.description) == ["corp.example", "~lab.example", "~."])
        #expect(manager.status.dnsServers == ["10.77.0.1", "fd77::1"])
        #expect(manager.status.dnsDomains == ["corp.example", "~lab.example", "~."])
        #expect(manager.status.dnsError == "")
        let stoppedAtRevert = Mutex<Bool?>(nil)
        dns.onCall.withLock { $0 = { stoppedAtRevert.withLock { $0 = tunnel.isStopped } } }
        try manager.disconnect()
        #expect(dns.all.last == .revert("triglav0"))
        #expect(stoppedAtRevert.withLock { $0 } == false, "reverted after the TUN was gone")
        #expect(manager.status.dnsServers.isEmpty && manager.status.dnsDomains.isEmpty)
    }

    @Test func aSplitTunnelRoutesOnlyItsDomainsUnlessTheProfileSaysOtherwise() throws {
        let dns = RecordingLinkDNS()
        let (manager, _, _, store) = try Fixtures.clientManager(profiles: [try Self.profile()], linkDNS: dns)
        try manager.connect(profile: "home", options: ConnectionOptions(fullTunnel: false))
        guard case .apply(let split, _) = try #require(dns.all.first) else { return }
        #expect(!split.defaultRoute)
        #expect(split.domains.map(\.description) == ["corp.example", "~lab.example"])
        try manager.disconnect()
        store.set(try Self.profile(defaultRoute: true))
        try manager.connect(profile: "home", options: ConnectionOptions(fullTunnel: false))
        guard case .apply(let routed, _) = try #require(dns.all.last) else { return }
        #expect(routed.defaultRoute && routed.domains.last?.description == "~.")
        // A split tunnel whose profile lists no domains: the servers take every query (they would answer nothing else).
        let bare = try #require(LinkDNS(DNSSettings(servers: routed.servers), fullTunnel: false))
        #expect(bare.defaultRoute && bare.domains.map(\.description) == ["~."])
        #expect(LinkDNS(DNSSettings(servers: routed.servers, defaultRoute: false), fullTunnel: false)?.defaultRoute == false)
        // "~." in domains is the same request.
        let listed = DNSSettings(servers: routed.servers, domains: [try DNSDomain("~."), try DNSDomain("corp.example")])
        let fromDomains = try #require(LinkDNS(listed, fullTunnel: false))
        #expect(fromDomains.defaultRoute && fromDomains.domains.map(\.description) == ["corp.example", "~."])
    }

    @Test func aRefusedDNSKeepsTheTunnelAndSaysWhy() throws {
        let dns = RecordingLinkDNS()
        dns.failure.withLock { $0 = .failed(operation: "systemd-resolved SetLinkDNS for triglav0", reason: "systemd-resolved is not running") }
        let (manager, factory, _, _) = try Fixtures.clientManager(profiles: [try Self.profile()], linkDNS: dns)
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        #expect(!tunnel.isStopped)
        #expect(manager.status.state == .connecting)
        #expect(manager.status.dnsError.contains("systemd-resolved is not running"))
        #expect(manager.status.dnsServers == ["10.77.0.1", "fd77::1"])
        // Half-applied settings (servers set, domains refused) go too.
        try manager.disconnect()
        #expect(dns.all.last == .revert("triglav0"))
    }

    @Test func aFailedHandOverIsTriedAgainUntilTheResolverTakesIt() throws {
        let dns = RecordingLinkDNS()
        dns.failure.withLock { $0 = .failed(operation: "systemd-resolved SetLinkDNS for triglav0", reason: "systemd-resolved is not running") }
        let clock = CoreServerNameTests.VirtualClock()
        let manager = ClientManager(config: DaemonConfig(), configSource: FakeConfigSource(DaemonConfig()),
                                    profiles: FakeProfileStore([try Self.profile()]), tunnels: FakeClientTunnelFactory(),
                                    resolver: FixedResolver(), uptime: { clock.read }, linkDNS: dns)
        try manager.connect(profile: "home")
        #expect(dns.all.count == 1 && !manager.status.dnsError.isEmpty)
        // Not before the interval.
        clock.advance(ClientManager.dnsRetryInterval - .seconds(1))
        manager.refresh()
        manager.drainResolutions()
        #expect(dns.all.count == 1)
        // Still failing: tried again, and again one interval later.
        clock.advance(.seconds(1))
        manager.refresh()
        manager.drainResolutions()
        #expect(dns.all.count == 2 && !manager.status.dnsError.isEmpty)
        // resolved is there now: the next attempt takes, and then nothing more is sent.
        dns.failure.withLock { $0 = nil }
        clock.advance(ClientManager.dnsRetryInterval)
        manager.refresh()
        manager.drainResolutions()
        #expect(dns.all.count == 3 && manager.status.dnsError.isEmpty)
        clock.advance(ClientManager.dnsRetryInterval * 3)
        manager.refresh()
        manager.drainResolutions()
        #expect(dns.all.count == 3)
    }

    @Test func reloadChangesDNSInPlaceAndAProfileWithoutItTouchesNothing() throws {
        let dns = RecordingLinkDNS()
        let (manager, factory, _, store) = try Fixtures.clientManager(profiles: [try Fixtures.profile()], linkDNS: dns)
        try manager.connect(profile: "home")
        #expect(dns.all.isEmpty)
        #expect(manager.status.dnsServers.isEmpty)
        store.set(try Self.profile())
        try manager.reload()
        #expect(factory.count == 1, "the tunnel was rebuilt for a DNS change")
        #expect(dns.all.count == 1)
        #expect(manager.status.dnsServers == ["10.77.0.1", "fd77::1"])
        store.set(try Fixtures.profile())
        try manager.reload()
        #expect(factory.count == 1)
        #expect(dns.all.last == .revert("triglav0"))
        #expect(manager.status.dnsServers.isEmpty)
        try manager.disconnect()
        #expect(dns.all.count == 2, "\(dns.all)")
    }

    @Test func theConfiguredResolverIsPassedOnAndAReloadThatChangesItMovesTheDNSAtOnce() throws {
        let dns = RecordingLinkDNS()
        var config = DaemonConfig()
        config.dnsResolver = .file
        let (manager, _, source, store) = try Fixtures.clientManager(config: config, profiles: [try Self.profile()], linkDNS: dns)
        #expect(dns.chosen.withLock { $0 } == [.file])
        try manager.connect(profile: "home")
        #expect(dns.all.count == 1)
        try manager.reload()
        #expect(dns.all.count == 1, "the same resolver: nothing handed over again")
        config.dnsResolver = .resolvconf
        source.set(config)
        try manager.reload()
        #expect(dns.chosen.withLock { $0 } == [.file, .file, .resolvconf])
        guard case .apply(let moved, "triglav0")? = dns.all.last, dns.all.count == 2 else { Issue.record("\(dns.all)"); return }
        #expect(moved.servers.map(\.description) == ["10.77.0.1", "fd77::1"])
        // With a scheduler change in the same reload (the connection updated in place) it moves too.
        config.dnsResolver = .auto
        config.multipath.scheduler = .redundant
        source.set(config)
        try manager.reload()
        #expect(dns.all.count == 3, "\(dns.all)")
        // A reload that fails later (the profile's server name no longer resolves) has moved the DNS all the same.
        config.dnsResolver = .file
        source.set(config)
        var unresolvable = try Self.profile()
        unresolvable.endpoint = try RemoteEndpoint("unknown.example.net:7443")
        store.set(unresolvable)
        #expect(throws: TriglavDaemonError.self) { try manager.reload() }
        #expect(dns.all.count == 4, "\(dns.all)")
        try manager.disconnect()
        config.dnsResolver = .resolvconf
        source.set(config)
        store.set(try Self.profile())
        try manager.reload()
        #expect(dns.all.last == .revert("triglav0") && dns.all.count == 5, "nothing to move while disconnected: \(dns.all)")
    }

    @Test func serversOfAFamilyTheTunnelLacksAreLeftOutWhereTheRoutesSendThemIntoIt() throws {
        let dns = RecordingLinkDNS()
        let (manager, factory, _, store) = try Fixtures.clientManager(profiles: [try Self.profile()], linkDNS: dns)
        manager.handleDiscovery(.added(Fixtures.uplink("eth0", index: 2)))
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        // Before the assignment nothing is known: both go over.
        guard case .apply(let first, _)? = dns.all.last else { Issue.record("\(dns.all)"); return }
        #expect(first.servers.map(\.description) == ["10.77.0.1", "fd77::1"])
        let ipv4Only = try #require(TunnelAddresses(ipv4: try IPPrefix("10.77.0.2/24"), ipv6: nil))
        tunnel.establish("eth0", assignment: ipv4Only)
        manager.refresh()
        manager.drainResolutions()
        guard case .apply(let kept, _)? = dns.all.last else { Issue.record("\(dns.all)"); return }
        #expect(kept.servers.map(\.description) == ["10.77.0.1"] && dns.all.count == 2)
        #expect(manager.status.dnsServers == ["10.77.0.1"] && manager.status.dnsError == "")
        manager.refresh()
        manager.drainResolutions()
        #expect(dns.all.count == 2, "handed over again without a change: \(dns.all)")

        // Only an IPv6 server: nothing is left, the link's DNS is taken back, and DNSError says why.
        var ipv6Only = try Self.profile()
        ipv6Only.dns.servers = [try #require(IPAddress("fd77::1"))]
        store.set(ipv6Only)
        try manager.reload()
        manager.refresh()
        manager.drainResolutions()
        #expect(dns.all.last == .revert("triglav0"), "\(dns.all)")
        #expect(manager.status.dnsServers.isEmpty)
        #expect(manager.status.dnsError.contains("fd77::1 left out: the server assigned this tunnel no IPv6 address"),
                "\(manager.status.dnsError)")

        // A split tunnel whose routes don't cover it reaches it outside the tunnel: kept.
        let split = try #require(LinkDNS(ipv6Only.dns, fullTunnel: false))
        #expect(split.reachable(with: ipv4Only, routing: .split([try IPPrefix("10.0.0.0/8")])).dns == split)
        #expect(split.reachable(with: ipv4Only, routing: .split([try IPPrefix("fd00::/8")])).dns == nil)
        #expect(split.reachable(with: nil, routing: .fullTunnel).dns == split)
    }

    @Test func whatTheServerConfigAllowsFitsTheProtocolsOffer() throws {
        #expect(ConfigDefaults.offeredDNSMaximumBytes == DNSOffer.maximumBodyLength)
        #expect(ConfigDefaults.offeredDNSDomainsMaximum == DNSOffer.maximumDomains)
        #expect(ConfigDefaults.dnsServersMaximum == DNSOffer.maximumServers)
        let settings = DNSSettings(servers: [try #require(IPAddress("10.77.0.1")), try #require(IPAddress("fd77::1"))],
                                   domains: [try DNSDomain("corp.example"), try DNSDomain("~.")], defaultRoute: false)
        var config = DaemonConfig()
        config.server = ServerSettings()
        config.server?.dns = settings
        let offer = try #require(ServerTunnelPlan(config: config).dnsOffer)
        #expect(offer.bodyLength == settings.offerLength)
        #expect(offer.domains == ["corp.example", "~."] && offer.defaultRoute == false)
        #expect(ServerTunnelPlan(config: DaemonConfig()).dnsOffer == nil)
    }

    static func offer(_ server: String = "10.77.0.53", domains: [String] = ["corp.example"]) throws -> DNSOffer {
        let address = try #require(IPAddress(server))
        return try #require(DNSOffer(servers: [address], domains: domains))
    }

    @Test func aProfileWithoutDNSTakesTheServersOfferAndFollowsItsChanges() throws {
        let dns = RecordingLinkDNS()
        let (manager, factory, _, _) = try Fixtures.clientManager(profiles: [try Fixtures.profile()], linkDNS: dns)
        try manager.connect(profile: "home")
        let tunnel = try #require(factory.last)
        manager.refresh()
        manager.drainResolutions()
        #expect(dns.all.isEmpty && manager.status.dnsSource == "")
        tunnel.setDNSOffer(try Self.offer(domains: ["corp.example", "-bad.example"]))
        manager.refresh()
        manager.drainResolutions()
        guard case .apply(let applied, let interface)? = dns.all.last else { Issue.record("\(dns.all)"); return }
        #expect(interface == "triglav0" && dns.all.count == 1)
        #expect(applied.servers.map(\.description) == ["10.77.0.53"])
        // Decided as for a profile's [dns]: a full tunnel takes every query; a domain that is none is left out.
        #expect(applied.defaultRoute && applied.domains.map(\.description) == ["corp.example", "~."])
        #expect(manager.status.dnsServers == ["10.77.0.53"] && manager.status.dnsSource == "server")
        // The same offer again (every keepalive answer carries it) changes nothing; a new one replaces it.
        manager.refresh()
        manager.drainResolutions()
        #expect(dns.all.count == 1)
        tunnel.setDNSOffer(try Self.offer("10.77.0.54", domains: []))
        manager.refresh()
        manager.drainResolutions()
        guard case .apply(let replaced, _)? = dns.all.last else { Issue.record("\(dns.all)"); return }
        #expect(dns.all.count == 2 && replaced.servers.map(\.description) == ["10.77.0.54"])
        try manager.disconnect()
        #expect(dns.all.last == .revert("triglav0") && manager.status.dnsSource == "")
    }

    @Test func aProfilesOwnServersOrFromServerFalseDeclineTheOffer() throws {
        let dns = RecordingLinkDNS()
        var declining = try Fixtures.profile()
        declining.dns.acceptsServerOffer = false
        let (manager, factory, _, store) = try Fixtures.clientManager(profiles: [try Self.profile()], linkDNS: dns)
        try manager.connect(profile: "home")
        try #require(factory.last).setDNSOffer(try Self.offer())
        manager.refresh()
        manager.drainResolutions()
        #expect(dns.all.count == 1 && manager.status.dnsServers == ["10.77.0.1", "fd77::1"])
        #expect(manager.status.dnsSource == "profile")
        // Removing the profile's [dns] by a reload hands the link the server's offer instead.
        store.set(try Fixtures.profile())
        try manager.reload()
        guard case .apply(let offered, _)? = dns.all.last else { Issue.record("\(dns.all)"); return }
        #expect(offered.servers.map(\.description) == ["10.77.0.53"] && manager.status.dnsSource == "server")
        // from_server = false: the link's DNS is taken back, and later offers are not used.
        store.set(declining)
        try manager.reload()
        #expect(dns.all.last == .revert("triglav0") && manager.status.dnsServers.isEmpty && manager.status.dnsSource == "")
        let calls = dns.all.count
        try manager.disconnect()
        try manager.connect(profile: "home")
        try #require(factory.last).setDNSOffer(try Self.offer())
        manager.refresh()
        manager.drainResolutions()
        try manager.disconnect()
        #expect(dns.all.count == calls, "\(dns.all)")
    }
}

/// `ResolvedLinkDNS` against a stand-in for systemd-resolved on a private bus (the bus fixture's `--fake-resolved`):
/// the calls, their argument types and values, and the error without resolved.
@Suite(.serialized) struct ResolvedLinkDNSTests {
    static var loopback: InterfaceName { get throws { try InterfaceName("lo") } }

    /// The bus fixture's stand-in for systemd-resolved on `bus` (which needs `SystemLikeBus.resolvedPolicy`), ready;
    /// it logs each call to `log`.
    static func startFakeResolved(on bus: SystemLikeBus) async throws -> (process: BackgroundProcess, log: String) {
        let log = bus.directory + "/resolved.log"
        let resolved = try BackgroundProcess([BusTestPaths.fixture, "--address", bus.address, "--fake-resolved", log],
                                             outputPrefix: bus.directory + "/resolved")
        guard await resolved.waitForOutput("READY") else {
            resolved.stop()
            throw SubprocessError.spawnFailed(["fake resolved", resolved.errorOutput], 0)
        }
        return (resolved, log)
    }

    @Test func theFourCallsCarryTheLinkAndItsSettingsAsResolvedExpectsThem() async throws {
        let bus = try SystemLikeBus(triglavPolicy: false, extraPolicy: SystemLikeBus.resolvedPolicy)
        defer { bus.stop() }
        let (resolved, log) = try await Self.startFakeResolved(on: bus)
        defer { resolved.stop() }
        var settings = DNSSettings(servers: [try #require(IPAddress("10.77.0.1")), try #require(IPAddress("fd77::53"))])
        settings.domains = [try DNSDomain("corp.example")]
        let dns = try #require(LinkDNS(settings, fullTunnel: true))
        let configurator = ResolvedLinkDNS(busAddress: bus.address)
        try configurator.apply(dns, to: Self.loopback)
        try configurator.revert(Self.loopback)
        let index = if_nametoindex("lo")
        #expect(try String(contentsOfFile: log, encoding: .utf8) == """
            SetLinkDNS \(index) 10.77.0.1 fd77::53
            SetLinkDomains \(index) corp.example ~.
            SetLinkDefaultRoute \(index) true
            RevertLink \(index)

            """)
    }

    @Test func withoutResolvedTheErrorSaysSoAndWhatToDo() throws {
        let bus = try SystemLikeBus(triglavPolicy: false)
        defer { bus.stop() }
        let server = try #require(IPAddress("10.77.0.1"))
        let dns = try #require(LinkDNS(DNSSettings(servers: [server]), fullTunnel: true))
        #expect {
            try ResolvedLinkDNS(busAddress: bus.address).apply(dns, to: Self.loopback)
        } throws: { error in
            "\(error)".contains("systemd-resolved is not running") && "\(error)".contains("apt install systemd-resolved")
        }
        #expect(throws: TriglavDaemonError.self) {
            try ResolvedLinkDNS(busAddress: bus.address).apply(dns, to: try InterfaceName("tgnone0"))
        }
    }
}
