public import TriglavCore
import Synchronization

/// A kernel stand-in for tests of code that installs addresses, routes and rules: keeps them in
/// memory with the kernel's identity and error rules (duplicate adds fail with `.alreadyExists` unless
/// replacing, deletes of absent objects with `.notFound`, deletes match on the fields that are set).
/// Starts with the kernel's three default rules per family (0 local, 32766 main, 32767 default).
/// Thread-safe. Not a model of forwarding: it never resolves a route.
public final class InMemoryNetlinkRouting: NetlinkRouting {
    private struct State {
        var links: [LinkInfo]
        var addresses: [AddressInfo] = []
        var routes: [Route] = []
        var rules: [RoutingRule]
    }

    private let state: Mutex<State>

    public init(links: [LinkInfo] = [LinkInfo(index: 1, name: "lo", flags: [.up, .lowerUp, .loopback], hasCarrier: true,
                                              hardwareType: 772, mtu: 65536)]) {
        var rules: [RoutingRule] = []
        for family in AddressFamily.allCases {
            rules.append(RoutingRule(family: family, priority: 0, table: RouteTable.local, protocol: RouteProtocol.kernel))
            rules.append(RoutingRule(family: family, priority: 32766, table: RouteTable.main, protocol: RouteProtocol.kernel))
            if family == .ipv4 {
                rules.append(RoutingRule(family: family, priority: 32767, table: RouteTable.default, protocol: RouteProtocol.kernel))
            }
        }
        state = Mutex(State(links: links, rules: rules))
    }

    /// Adds a link as if a device appeared (e.g. the TUN after open).
    public func addLink(_ link: LinkInfo) { state.withLock { $0.links.append(link) } }

    // MARK: links

    public func links() throws(NetlinkError) -> [LinkInfo] { state.withLock { $0.links } }

    public func link(index: Int32) throws(NetlinkError) -> LinkInfo? {
        state.withLock { $0.links.first { $0.index == index } }
    }

    public func link(named name: String) throws(NetlinkError) -> LinkInfo? {
        state.withLock { $0.links.first { $0.name == name } }
    }

    public func setLink(index: Int32, up: Bool) throws(NetlinkError) {
        try modifyLink(index: index, operation: up ? "setting up" : "setting down") { link in
            if up { link.flags.insert(.up) } else { link.flags.remove(.up) }
        }
    }

    public func setMTU(_ mtu: UInt32, index: Int32) throws(NetlinkError) {
        guard mtu >= 68 else {
            throw .invalidArgument(operation: "setting MTU of", subject: "link #\(index)", reason: "MTU \(mtu) is below 68")
        }
        try modifyLink(index: index, operation: "setting MTU \(mtu) of") { $0.mtu = mtu }
    }

    private func modifyLink(index: Int32, operation: String, _ change: (inout LinkInfo) -> Void) throws(NetlinkError) {
        try state.withLock { (state: inout State) throws(NetlinkError) in
            guard let position = state.links.firstIndex(where: { $0.index == index }) else {
                throw .notFound(operation: operation, subject: "link #\(index)", message: "No such device")
            }
            change(&state.links[position])
        }
    }

    // MARK: addresses

    public func addresses(family: AddressFamily?, interfaceIndex: Int32?) throws(NetlinkError) -> [AddressInfo] {
        state.withLock { state in
            state.addresses.filter {
                (family == nil || $0.family == family) && (interfaceIndex == nil || $0.interfaceIndex == interfaceIndex)
            }
        }
    }

    public func addAddress(_ address: IPPrefix, interfaceIndex: Int32, peer: IPAddress?, flags: AddressFlags,
                           replace: Bool) throws(NetlinkError) {
        let subject = "address \(address) on link #\(interfaceIndex)"
        try state.withLock { (state: inout State) throws(NetlinkError) in
            guard state.links.contains(where: { $0.index == interfaceIndex }) else {
                throw .notFound(operation: "adding", subject: subject, message: "No such device")
            }
            let new = AddressInfo(interfaceIndex: interfaceIndex, local: address, peer: peer,
                                  scope: Scope.universe, flags: flags.union(.permanent))
            if let position = state.addresses.firstIndex(where: { $0.interfaceIndex == interfaceIndex && $0.local == address }) {
                guard replace else { throw .alreadyExists(operation: "adding", subject: subject, message: "Object exists") }
                state.addresses[position] = new
            } else {
                state.addresses.append(new)
            }
        }
    }

    public func deleteAddress(_ address: IPPrefix, interfaceIndex: Int32) throws(NetlinkError) {
        try state.withLock { (state: inout State) throws(NetlinkError) in
            guard let position = state.addresses.firstIndex(where: { $0.interfaceIndex == interfaceIndex && $0.local == address }) else {
                throw .notFound(operation: "deleting", subject: "address \(address) on link #\(interfaceIndex)",
                                message: "Cannot assign requested address")
            }
            state.addresses.remove(at: position)
        }
    }

    // MARK: routes

    private static func key(_ route: Route) -> (UInt32, IPPrefix, UInt32) {
        (route.table, route.destination, route.metric ?? (route.destination.address.isIPv4 ? 0 : 1024))
    }

    public func routes(family: AddressFamily?, table: UInt32?, protocol: UInt8?) throws(NetlinkError) -> [Route] {
        state.withLock { state in
            state.routes.filter { route in
                let tableMatches = if let table { route.table == table } else { route.table != RouteTable.local }
                return tableMatches && (family == nil || route.family == family) && (`protocol` == nil || route.protocol == `protocol`)
            }
        }
    }

    public func addRoute(_ route: Route, replace: Bool) throws(NetlinkError) {
        let subject = "route \(route)"
        if route.type == .unicast && route.gateway == nil && route.outputInterface == nil {
            throw .invalidArgument(operation: "building", subject: subject, reason: "a unicast route needs a gateway or an output interface")
        }
        try state.withLock { (state: inout State) throws(NetlinkError) in
            if let index = route.outputInterface, !state.links.contains(where: { $0.index == index }) {
                throw .notFound(operation: "adding", subject: subject, message: "No such device")
            }
            var stored = route
            stored.metric = Self.key(route).2
            if let position = state.routes.firstIndex(where: { Self.key($0) == Self.key(route) }) {
                guard replace else { throw .alreadyExists(operation: "adding", subject: subject, message: "Object exists") }
                state.routes[position] = stored
            } else {
                state.routes.append(stored)
            }
        }
    }

    public func deleteRoute(_ route: Route) throws(NetlinkError) {
        try state.withLock { (state: inout State) throws(NetlinkError) in
            guard let position = state.routes.firstIndex(where: {
                $0.table == route.table && $0.destination == route.destination && $0.type == route.type
                    && (route.metric == nil || Self.key($0).2 == route.metric)
                    && (route.outputInterface == nil || $0.outputInterface == route.outputInterface)
            }) else {
                throw .notFound(operation: "deleting", subject: "route \(route)", message: "No such process")
            }
            state.routes.remove(at: position)
        }
    }

    // MARK: rules

    public func rules(family: AddressFamily?) throws(NetlinkError) -> [RoutingRule] {
        state.withLock { state in
            state.rules.filter { family == nil || $0.family == family }.sorted { ($0.priority ?? 0) < ($1.priority ?? 0) }
        }
    }

    public func addRule(_ rule: RoutingRule) throws(NetlinkError) {
        if rule.action == .lookup && rule.table == nil {
            throw .invalidArgument(operation: "adding", subject: "rule \(rule)", reason: "a lookup rule needs a table")
        }
        try state.withLock { (state: inout State) throws(NetlinkError) in
            var stored = rule
            if stored.priority == nil {
                // The kernel picks one below the lowest non-zero priority of the family.
                let lowest = state.rules.filter { $0.family == rule.family }.compactMap(\.priority).filter { $0 > 0 }.min() ?? 1
                stored.priority = max(lowest - 1, 1)
            }
            if state.rules.contains(stored) {
                throw .alreadyExists(operation: "adding", subject: "rule \(rule)", message: "Object exists")
            }
            state.rules.append(stored)
        }
    }

    public func deleteRule(_ rule: RoutingRule) throws(NetlinkError) {
        try state.withLock { (state: inout State) throws(NetlinkError) in
            // Like the kernel: every field that is set must match; flags ("not") are not compared.
            guard let position = state.rules.firstIndex(where: { candidate in
                candidate.family == rule.family && candidate.action == rule.action
                    && (rule.priority == nil || candidate.priority == rule.priority)
                    && (rule.table == nil || candidate.table == rule.table)
                    && (rule.firewallMark == nil || candidate.firewallMark == rule.firewallMark)
                    && (rule.firewallMask == nil || candidate.firewallMask == rule.firewallMask)
                    && (rule.suppressPrefixLength == nil || candidate.suppressPrefixLength == rule.suppressPrefixLength)
                    && (rule.protocol == nil || candidate.protocol == rule.protocol)
                    && (rule.source == nil || candidate.source == rule.source)
                    && (rule.destination == nil || candidate.destination == rule.destination)
                    && (rule.inputInterface == nil || candidate.inputInterface == rule.inputInterface)
                    && (rule.outputInterface == nil || candidate.outputInterface == rule.outputInterface)
            }) else {
                throw .notFound(operation: "deleting", subject: "rule \(rule)", message: "No such file or directory")
            }
            state.rules.remove(at: position)
        }
    }
}
