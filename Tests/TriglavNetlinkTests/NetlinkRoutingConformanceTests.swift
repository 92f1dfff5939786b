import Testing
import TriglavCore
import TriglavNetlink

/// One scenario (what the data plane does for a full tunnel, then its crash cleanup), run against the
/// kernel and against `InMemoryNetlinkRouting`, so the fake keeps the kernel's rules.
private func exerciseFullTunnel(_ routing: any NetlinkRouting, tun: Int32) throws {
    let table: UInt32 = 0x7467, mark: UInt32 = 0x7467, proto: UInt8 = 77
    try routing.setLink(index: tun, up: true)
    try routing.setMTU(1380, index: tun)
    #expect(try routing.link(index: tun)?.mtu == 1380)
    #expect(try routing.link(index: tun)?.isUp == true)

    let v4 = try IPPrefix("10.77.0.2/24")
    try routing.addAddress(v4, interfaceIndex: tun)
    #expect(throws: NetlinkError.self) { try routing.addAddress(v4, interfaceIndex: tun) }
    try routing.addAddress(v4, interfaceIndex: tun, replace: true)
    try routing.addAddress(try IPPrefix("fd77::2/64"), interfaceIndex: tun, flags: .noDAD)
    #expect(try routing.addresses(interfaceIndex: tun).filter { $0.scope == Scope.universe }.count == 2)
    #expect(throws: NetlinkError.self) { try routing.addAddress(v4, interfaceIndex: 9999) }

    let defaultRoute = Route(destination: try IPPrefix("0.0.0.0/0"), outputInterface: tun, table: table, protocol: proto)
    try routing.addRoute(defaultRoute)
    do {
        try routing.addRoute(defaultRoute)
        Issue.record("duplicate route accepted")
    } catch {
        #expect(error.isAlreadyExists)
    }
    try routing.addRoute(defaultRoute, replace: true)
    try routing.addRoute(Route(destination: try IPPrefix("::/0"), table: table, type: .unreachable, protocol: proto))
    #expect(try routing.routes(table: table).count == 2)
    #expect(try routing.routes(family: .ipv6, table: table).first?.type == .unreachable)

    for family in AddressFamily.allCases {
        try routing.addRule(RoutingRule(family: family, priority: 29799, firewallMark: mark, table: table, invert: true, protocol: proto))
        try routing.addRule(RoutingRule(family: family, priority: 29798, table: RouteTable.main, suppressPrefixLength: 0, protocol: proto))
    }
    #expect(throws: NetlinkError.self) {
        try routing.addRule(RoutingRule(family: .ipv4, priority: 29799, firewallMark: mark, table: table, invert: true, protocol: proto))
    }
    #expect(try routing.rules(priority: 29799).count == 2)
    #expect(try routing.rules(family: .ipv4, table: RouteTable.main).map(\.priority) == [29798, 32766])

    // Crash cleanup: exactly what we installed goes, nothing else.
    #expect(try routing.deleteRules { $0.priority == 29799 || $0.priority == 29798 } == 4)
    #expect(try routing.deleteRoutes(table: table) == 2)
    #expect(try routing.deleteAddresses(interfaceIndex: tun) { $0.local == v4 } == 1)
    #expect(try routing.rules().contains { $0.priority == 32766 && $0.table == RouteTable.main })
    #expect(try routing.routes(table: table).isEmpty)
    do {
        try routing.deleteRoute(defaultRoute)
        Issue.record("deleting an absent route succeeded")
    } catch {
        #expect(error.isNotFound)
    }
}

@Suite("NetlinkRouting conformance")
struct NetlinkRoutingConformanceTests {
    @Test func inMemoryFakeFollowsKernelRules() throws {
        let fake = InMemoryNetlinkRouting()
        fake.addLink(LinkInfo(index: 7, name: "triglav0", flags: [], hasCarrier: false, kind: "tun", hardwareType: 65534))
        try exerciseFullTunnel(fake, tun: 7)
    }

    @Test(.enabled(if: runningAsRoot, "needs root to create network namespaces"))
    func kernelFollowsTheSameRules() throws {
        let ns = try TestNamespace()
        defer { ns.close() }
        try ns.ip(["tuntap", "add", "dev", "triglav0", "mode", "tun"])
        let socket = try NetlinkRouteSocket(networkNamespacePath: ns.path)
        let tun = try #require(try socket.link(named: "triglav0")).index
        try exerciseFullTunnel(socket, tun: tun)
    }
}
