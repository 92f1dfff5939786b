import Foundation
import Testing
import TriglavCore
@testable import TriglavNetlink

@Suite("NetlinkRouteSocket in a namespace", .enabled(if: runningAsRoot, "needs root to create network namespaces"))
struct NetlinkRouteSocketTests {
    @Test func listsLinksWithKindFlagsAndMTU() throws {
        let ns = try TestNamespace()
        defer { ns.close() }
        try ns.ip(["link", "add", "name", "tgv0", "type", "veth", "peer", "name", "tgv1"])
        try ns.ip(["link", "add", "name", "tgbr0", "type", "bridge"])
        try ns.ip(["link", "set", "tgv1", "master", "tgbr0"])
        let socket = try NetlinkRouteSocket(networkNamespacePath: ns.path)
        let links = try socket.links()
        let byName = Dictionary(links.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(Set(byName.keys) == ["lo", "tgv0", "tgv1", "tgbr0"])
        #expect(byName["lo"]?.isLoopback == true)
        #expect(byName["lo"]?.hardwareType == 772)
        #expect(byName["tgv0"]?.kind == "veth")
        #expect(byName["tgbr0"]?.kind == "bridge")
        #expect(byName["tgv1"]?.masterIndex == byName["tgbr0"]?.index)
        #expect(byName["tgv0"]?.isUp == false)

        let veth = try #require(byName["tgv0"])
        try socket.setLink(index: veth.index, up: true)
        try socket.setLink(index: byName["tgv1"]!.index, up: true)
        try socket.setMTU(1400, index: veth.index)
        let updated = try #require(try socket.link(named: "tgv0"))
        #expect(updated.isUp)
        #expect(updated.mtu == 1400)
        #expect(try ns.ip(["link", "show", "tgv0"]).contains("mtu 1400"))
        #expect(try socket.link(named: "nonexistent0") == nil)
        #expect(try socket.link(index: 9999) == nil)
        #expect(throws: NetlinkError.self) { try socket.setMTU(20, index: veth.index) }

        try socket.deleteLink(index: veth.index)
        #expect(try socket.link(named: "tgv0") == nil)
    }

    @Test func addsListsAndDeletesAddresses() throws {
        let ns = try TestNamespace()
        defer { ns.close() }
        try ns.ip(["link", "add", "name", "tgd0", "type", "veth", "peer", "name", "tgd1"])
        let socket = try NetlinkRouteSocket(networkNamespacePath: ns.path)
        let index = try #require(try socket.link(named: "tgd0")).index
        try socket.setLink(index: index, up: true)
        let v4 = try IPPrefix("10.77.0.2/24")
        let v6 = try IPPrefix("fd77::2/64")
        try socket.addAddress(v4, interfaceIndex: index)
        try socket.addAddress(v6, interfaceIndex: index, flags: [.noDAD])
        let listed = try socket.addresses(interfaceIndex: index)
        #expect(listed.contains { $0.local == v4 && $0.family == .ipv4 })
        let six = try #require(listed.first { $0.local == v6 })
        #expect(!six.flags.contains(.tentative))
        #expect(try ns.ip(["-4", "addr", "show", "dev", "tgd0"]).contains("10.77.0.2/24"))
        #expect(try socket.addresses(family: .ipv4, interfaceIndex: index).allSatisfy { $0.family == .ipv4 })

        do {
            try socket.addAddress(v4, interfaceIndex: index)
            Issue.record("adding an existing address must fail")
        } catch {
            #expect(error.isAlreadyExists, "\(error)")
            #expect(error.description.contains("10.77.0.2/24"))
        }
        try socket.addAddress(v4, interfaceIndex: index, replace: true)

        try socket.deleteAddress(v4, interfaceIndex: index)
        #expect(try socket.deleteAddresses(family: .ipv6, interfaceIndex: index) { $0.local == v6 } == 1)
        #expect(try socket.addresses(interfaceIndex: index).allSatisfy { $0.local != v4 && $0.local != v6 })
        #expect(throws: NetlinkError.self) { try socket.deleteAddress(v4, interfaceIndex: index) }
    }

    @Test func installsAndRemovesFullTunnelPolicy() throws {
        let ns = try TestNamespace()
        defer { ns.close() }
        try ns.ip(["tuntap", "add", "dev", "tgtun0", "mode", "tun"])
        let socket = try NetlinkRouteSocket(networkNamespacePath: ns.path)
        let tun = try #require(try socket.link(named: "tgtun0")).index
        try socket.setLink(index: tun, up: true)
        try socket.addAddress(try IPPrefix("10.77.0.2/24"), interfaceIndex: tun)
        try socket.addAddress(try IPPrefix("fd77::2/64"), interfaceIndex: tun, flags: .noDAD)

        let table: UInt32 = 51820, mark: UInt32 = 0xca6c, proto: UInt8 = 77
        let routes = [
            Route(destination: try IPPrefix("0.0.0.0/0"), outputInterface: tun, table: table, protocol: proto),
            Route(destination: try IPPrefix("::/0"), outputInterface: tun, table: table, protocol: proto),
            Route(destination: try IPPrefix("192.0.2.0/24"), table: table, type: .blackhole, protocol: proto),
            Route(destination: try IPPrefix("2001:db8::/32"), table: table, type: .unreachable, protocol: proto),
            Route(destination: try IPPrefix("198.51.100.0/24"), table: table, type: .throw, protocol: proto),
            Route(destination: try IPPrefix("203.0.113.0/24"), gateway: IPAddress("10.77.0.1"), table: table,
                  metric: 50, protocol: proto),
        ]
        for route in routes { try socket.addRoute(route) }
        #expect(throws: NetlinkError.self) { try socket.addRoute(routes[0]) }
        try socket.addRoute(routes[0], replace: true)

        let listed = try socket.routes(table: table)
        #expect(listed.count == routes.count, "\(listed)")
        for route in routes {
            #expect(listed.contains { $0.destination == route.destination && $0.type == route.type && $0.protocol == proto },
                    "missing \(route) in \(listed)")
        }
        let gatewayRoute = try #require(listed.first { $0.gateway != nil })
        #expect(gatewayRoute.gateway == IPAddress("10.77.0.1"))
        #expect(gatewayRoute.metric == 50)
        #expect(gatewayRoute.outputInterface == tun)  // resolved by the kernel from the gateway
        #expect(try socket.routes(protocol: proto).count == routes.count)
        #expect(try socket.routes(family: .ipv6, table: table).count == 2)
        #expect(try ns.ip(["route", "show", "table", "51820"]).contains("default dev tgtun0"))

        let rules = [
            RoutingRule(family: .ipv4, priority: 32000, firewallMark: mark, table: table, invert: true, protocol: proto),
            RoutingRule(family: .ipv4, priority: 31999, table: RouteTable.main, suppressPrefixLength: 0, protocol: proto),
            RoutingRule(family: .ipv6, priority: 32000, firewallMark: mark, table: table, invert: true, protocol: proto),
            RoutingRule(family: .ipv6, priority: 31999, table: RouteTable.main, suppressPrefixLength: 0, protocol: proto),
        ]
        for rule in rules { try socket.addRule(rule) }
        do {
            try socket.addRule(rules[0])
            Issue.record("a duplicate rule must be refused")
        } catch {
            #expect(error.isAlreadyExists, "\(error)")
        }
        let v4Rules = try ns.ip(["-4", "rule", "show"])
        #expect(v4Rules.contains("32000:\tnot from all fwmark 0xca6c lookup 51820 proto 77"), "\(v4Rules)")
        #expect(v4Rules.contains("31999:\tfrom all lookup main suppress_prefixlength 0 proto 77"), "\(v4Rules)")
        #expect(try ns.ip(["-6", "rule", "show"]).contains("not from all fwmark 0xca6c lookup 51820"))

        let ours = try socket.rules().filter { $0.protocol == proto }
        #expect(ours.count == 4, "\(ours)")
        let notRule = try #require(ours.first { $0.family == .ipv4 && $0.priority == 32000 })
        #expect(notRule.invert && notRule.firewallMark == mark && notRule.table == table && notRule.action == .lookup)
        let suppress = try #require(ours.first { $0.family == .ipv6 && $0.priority == 31999 })
        #expect(suppress.suppressPrefixLength == 0 && suppress.table == RouteTable.main && !suppress.invert)
        #expect(try socket.rules(family: .ipv6).allSatisfy { $0.family == .ipv6 })
        // Rules nobody installed keep their default shape (the kernel's "lookup main" at 32766).
        #expect(try socket.rules(family: .ipv4).contains { $0.priority == 32766 && $0.table == RouteTable.main && $0.suppressPrefixLength == nil })

        #expect(try socket.link(index: tun)?.kind == "tun")

        // Crash recovery: everything can be found again by priority/table and removed from the listing.
        #expect(try socket.deleteRules { $0.priority == 32000 || $0.priority == 31999 } == 4)
        #expect(try socket.deleteRoutes(table: table) == routes.count)
        #expect(try socket.deleteRoutes(table: table) == 0)
        #expect(try socket.rules().allSatisfy { $0.protocol != proto })
        #expect(try socket.routes(table: table).isEmpty)
        #expect(!(try ns.ip(["rule", "show"]).contains("51820")))
        do {
            try socket.deleteRoute(routes[0])
            Issue.record("deleting a missing route must fail")
        } catch {
            #expect(error.isNotFound, "\(error)")
        }
        #expect(throws: NetlinkError.self) { try socket.deleteRule(rules[0]) }
    }

    @Test func rejectsInvalidValuesBeforeTheKernel() throws {
        let ns = try TestNamespace()
        defer { ns.close() }
        let socket = try NetlinkRouteSocket(networkNamespacePath: ns.path)
        let noTarget = Route(destination: try IPPrefix("0.0.0.0/0"), table: 100)
        #expect(throws: NetlinkError.self) { try socket.addRoute(noTarget) }
        let mixed = Route(destination: try IPPrefix("0.0.0.0/0"), gateway: IPAddress("fd00::1"), table: 100)
        #expect(throws: NetlinkError.self) { try socket.addRoute(mixed) }
        let noTable = RoutingRule(family: .ipv4, priority: 100)
        #expect(throws: NetlinkError.self) { try socket.addRule(noTable) }
        let wrongFamily = RoutingRule(family: .ipv4, table: 100, source: try IPPrefix("fd00::/8"))
        #expect(throws: NetlinkError.self) { try socket.addRule(wrongFamily) }
    }

    @Test func missingNamespaceIsATypedError() {
        #expect(throws: NetlinkError.namespaceUnavailable(path: "/run/netns/tg-netlink-does-not-exist", errno: ENOENT)) {
            _ = try NetlinkRouteSocket(networkNamespacePath: "/run/netns/tg-netlink-does-not-exist")
        }
    }
}

@Suite("NetlinkError")
struct NetlinkErrorTests {
    @Test func mapsLibnlCodesAndKeepsTheirText() {
        let exists = Libnl.error(-6, operation: "adding", subject: "route x")  // NLE_EXIST
        #expect(exists.isAlreadyExists)
        #expect(exists.description.contains("adding route x failed"))
        let missing = Libnl.error(-12, operation: "deleting", subject: "rule y")  // NLE_OBJ_NOTFOUND
        #expect(missing.isNotFound)
        #expect(!Libnl.message(-12).isEmpty)
        if case .permissionDenied = Libnl.error(-28, operation: "a", subject: "b") {} else {  // NLE_PERM
            Issue.record("NLE_PERM must map to permissionDenied")
        }
        if case .failed(_, _, let code, let message) = Libnl.error(-7, operation: "a", subject: "b") {  // NLE_INVAL
            #expect(code == 7)
            #expect(message == Libnl.message(-7))
        } else {
            Issue.record("NLE_INVAL must map to failed")
        }
    }
}
