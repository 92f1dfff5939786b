import Testing
@testable import TriglavDataPlane
import TriglavCore
import TriglavNetlink

/// Which rules the client's cleanup (start, stop, after a crash) deletes: `RouteManager.isOwnRule`. The namespace
/// test IntegrationTests.DataPlaneRouteCleanupTests checks the same against a kernel.
@Suite("Route cleanup: only Triglav's own rules")
struct RouteCleanupTests {
    static let table: UInt32 = 29799
    static let mark: UInt32 = 0x7467
    static let policy = PolicyRouting(rulePriority: 29797, exclude: [ClientRoutingPolicyTests.prefix("192.0.2.0/24")])

    static func own(_ rule: RoutingRule) -> Bool { RouteManager.isOwnRule(rule, policy: policy, table: table) }

    @Test("every rule the client installs is its own, tagged or with the tag dropped (kernels before 4.17)")
    func ownRules() {
        for routing in [ClientRouting.fullTunnel, .split([ClientRoutingPolicyTests.prefix("172.31.0.0/24")])] {
            for var rule in RouteManager.policyRules(routing: routing, policy: Self.policy, table: Self.table, firewallMark: Self.mark) {
                #expect(Self.own(rule), "\(rule)")
                rule.protocol = nil
                #expect(Self.own(rule), "untagged \(rule)")
                rule.protocol = 0
                #expect(Self.own(rule), "proto unspec \(rule)")
            }
        }
        // Tagged: whatever table, priority or shape an earlier run (another configuration) used.
        #expect(Self.own(RoutingRule(family: .ipv4, priority: 100, table: 7, protocol: RoutingConstants.routeProtocol)))
    }

    @Test("a user's rules at the same priorities stay: other selectors, tables, actions or protocols")
    func userRules() throws {
        let user: [RoutingRule] = [
            RoutingRule(family: .ipv4, priority: 29799, table: 100, source: try IPPrefix("192.0.2.0/24")),
            RoutingRule(family: .ipv4, priority: 29799, firewallMark: 0x1, table: Self.table),  // not inverted
            RoutingRule(family: .ipv4, priority: 29799, firewallMark: Self.mark, table: 100, invert: true),
            RoutingRule(family: .ipv4, priority: 29799, firewallMark: Self.mark, table: Self.table, invert: true, inputInterface: "eth0"),
            RoutingRule(family: .ipv4, priority: 29798, table: RouteTable.main),
            RoutingRule(family: .ipv4, priority: 29798, table: RouteTable.main, suppressPrefixLength: 8),
            RoutingRule(family: .ipv4, priority: 29798, table: 100, suppressPrefixLength: 0),
            RoutingRule(family: .ipv6, priority: 29798, table: RouteTable.main, suppressPrefixLength: 0, destination: try IPPrefix("2001:db8::/32")),
            RoutingRule(family: .ipv4, priority: 29797, table: RouteTable.main, destination: try IPPrefix("198.51.100.0/24")),
            RoutingRule(family: .ipv4, priority: 29797, table: 100, destination: try IPPrefix("192.0.2.0/24")),
            RoutingRule(family: .ipv4, priority: 29797, action: .blackhole, destination: try IPPrefix("192.0.2.0/24")),
            RoutingRule(family: .ipv4, priority: 29798, table: RouteTable.main, suppressPrefixLength: 0, protocol: 4),  // proto static
            RoutingRule(family: .ipv4, priority: 29796, table: RouteTable.main, suppressPrefixLength: 0),  // other priority
        ]
        for rule in user { #expect(!Self.own(rule), "\(rule)") }
    }
}
