import Testing
@testable import TriglavDataPlane
import TriglavCore
import TriglavNetlink

/// What the client installs (`RouteManager.tunnelRoutes`/`policyRules`), checked without a kernel: the
/// namespace tests (IntegrationTests.DataPlaneRoutingTests) check that the kernel gets exactly this.
@Suite("Client routing policy")
struct ClientRoutingPolicyTests {
    static let table: UInt32 = 29799
    static let tun: Int32 = 7

    static func prefix(_ text: String) -> IPPrefix {
        do { return try IPPrefix(text) } catch { preconditionFailure("\(text): \(error)") }
    }

    static let v4Only = TunnelAddresses(ipv4: prefix("10.77.0.2/24"))
    static let dualStack = TunnelAddresses(ipv4: prefix("10.77.0.2/24"), ipv6: prefix("fd77::2/64"))
    static let v6Only = TunnelAddresses(ipv6: prefix("fd77::2/64"))

    /// (destination, type, via the TUN) of each route, in order.
    static func summary(_ routes: [Route]) -> [String] {
        routes.map { route in
            #expect(route.table == table && route.protocol == RoutingConstants.routeProtocol)
            return "\(route.type) \(route.destination)" + (route.outputInterface == tun ? " tun" : "")
        }
    }

    @Test("full tunnel: both default routes unreachable before the assignment, via the TUN for each carried family")
    func fullTunnelRoutes() {
        let before = RouteManager.tunnelRoutes(routing: .fullTunnel, assignment: nil, tunIndex: Self.tun, table: Self.table)
        #expect(Self.summary(before) == ["unreachable 0.0.0.0/0", "unreachable ::/0"])
        let v4 = RouteManager.tunnelRoutes(routing: .fullTunnel, assignment: Self.v4Only, tunIndex: Self.tun, table: Self.table)
        #expect(Self.summary(v4) == ["unicast 0.0.0.0/0 tun", "unreachable ::/0"])
        let both = RouteManager.tunnelRoutes(routing: .fullTunnel, assignment: Self.dualStack, tunIndex: Self.tun, table: Self.table)
        #expect(Self.summary(both) == ["unicast 0.0.0.0/0 tun", "unicast ::/0 tun"])
        // An IPv6-only tunnel blocks IPv4 instead of letting it leave around the tunnel.
        let v6 = RouteManager.tunnelRoutes(routing: .fullTunnel, assignment: Self.v6Only, tunIndex: Self.tun, table: Self.table)
        #expect(Self.summary(v6) == ["unreachable 0.0.0.0/0", "unicast ::/0 tun"])
        // The same destinations every time, so each assignment replaces routes in place.
        #expect(before.map(\.destination) == both.map(\.destination))
    }

    @Test("a standing unreachable route at the largest metric beside each tunnel route (a default per family, each split prefix), for when the TUN is gone")
    func killSwitchRoutes() {
        let routes = RouteManager.killSwitchRoutes(routing: .fullTunnel, table: Self.table)
        #expect(Self.summary(routes) == ["unreachable 0.0.0.0/0", "unreachable ::/0"])
        #expect(routes.allSatisfy { $0.metric == UInt32.max })
        // A different metric from `tunnelRoutes`' defaults: replacing those with the route via the TUN keeps these.
        #expect(RouteManager.tunnelRoutes(routing: .fullTunnel, assignment: nil, tunIndex: nil, table: Self.table)
            .allSatisfy { $0.metric == nil })
        let split = RouteManager.killSwitchRoutes(routing: .split([Self.prefix("172.31.0.0/24"), Self.prefix("2001:db8:77::/48")]),
                                                  table: Self.table)
        #expect(Self.summary(split) == ["unreachable 172.31.0.0/24", "unreachable 2001:db8:77::/48"])
        #expect(split.allSatisfy { $0.metric == UInt32.max })
        #expect(RouteManager.killSwitchRoutes(routing: .none, table: Self.table).isEmpty)
    }

    @Test("split tunnel: one route per prefix, unreachable until its family is assigned; none for .none")
    func splitRoutes() {
        let routing = ClientRouting.split([Self.prefix("172.31.0.0/24"), Self.prefix("2001:db8:77::/48")])
        let v4 = RouteManager.tunnelRoutes(routing: routing, assignment: Self.v4Only, tunIndex: Self.tun, table: Self.table)
        #expect(Self.summary(v4) == ["unicast 172.31.0.0/24 tun", "unreachable 2001:db8:77::/48"])
        let before = RouteManager.tunnelRoutes(routing: routing, assignment: nil, tunIndex: Self.tun, table: Self.table)
        #expect(Self.summary(before) == ["unreachable 172.31.0.0/24", "unreachable 2001:db8:77::/48"])
        #expect(RouteManager.tunnelRoutes(routing: .none, assignment: Self.dualStack, tunIndex: Self.tun, table: Self.table).isEmpty)
        let v6 = RouteManager.tunnelRoutes(routing: routing, assignment: Self.v6Only, tunIndex: Self.tun, table: Self.table)
        #expect(Self.summary(v6) == ["unreachable 172.31.0.0/24", "unicast 2001:db8:77::/48 tun"])
    }

    @Test("tunnel addresses: at least one family; described IPv4 first")
    func tunnelAddresses() {
        #expect(TunnelAddresses(ipv4: nil, ipv6: nil) == nil)
        #expect(TunnelAddresses(ipv4: nil, ipv6: Self.prefix("fd77::2/64")) == Self.v6Only)
        #expect(Self.v6Only.description == "fd77::2/64")
        #expect(Self.dualStack.description == "10.77.0.2/24, fd77::2/64")
        #expect(Self.dualStack.all == [Self.prefix("10.77.0.2/24"), Self.prefix("fd77::2/64")])
    }

    @Test("rules: suppress + not-fwmark per family for a full tunnel, not-fwmark only for the split families, excludes first")
    func rules() {
        let policy = PolicyRouting(rulePriority: 5000, exclude: [Self.prefix("192.0.2.0/24")])
        let full = RouteManager.policyRules(routing: .fullTunnel, policy: policy, table: 1234, firewallMark: 0x7443)
        #expect(full.map { "\($0.family) \($0.priority ?? 0)" } == ["inet 5001", "inet 5002", "inet6 5001", "inet6 5002", "inet 5000"])
        #expect(full.allSatisfy { $0.protocol == RoutingConstants.routeProtocol })
        #expect(full.filter { $0.priority == 5002 }.allSatisfy { $0.invert && $0.firewallMark == 0x7443 && $0.table == 1234 })
        #expect(full.filter { $0.priority == 5001 }.allSatisfy { $0.suppressPrefixLength == 0 && $0.table == RouteTable.main })
        let split = RouteManager.policyRules(routing: .split([Self.prefix("172.31.0.0/24")]), policy: policy, table: 1234,
                                             firewallMark: 0x7443)
        #expect(split.map { "\($0.family) \($0.priority ?? 0)" } == ["inet 5002", "inet 5000"])
        #expect(RouteManager.policyRules(routing: .none, policy: PolicyRouting(), table: 1, firewallMark: 1).isEmpty)
    }
}
