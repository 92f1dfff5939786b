public import TriglavCore

/// The request side of rtnetlink as a protocol, so route/address reconcilers can be tested against
/// `InMemoryNetlinkRouting` instead of a kernel. `NetlinkRouteSocket` is the real implementation.
/// Requirements take every parameter; the extension below adds the usual defaults and bulk helpers.
public protocol NetlinkRouting: Sendable {
    func links() throws(NetlinkError) -> [LinkInfo]
    func link(index: Int32) throws(NetlinkError) -> LinkInfo?
    func link(named name: String) throws(NetlinkError) -> LinkInfo?
    func setLink(index: Int32, up: Bool) throws(NetlinkError)
    func setMTU(_ mtu: UInt32, index: Int32) throws(NetlinkError)

    func addresses(family: AddressFamily?, interfaceIndex: Int32?) throws(NetlinkError) -> [AddressInfo]
    func addAddress(_ address: IPPrefix, interfaceIndex: Int32, peer: IPAddress?, flags: AddressFlags,
                    replace: Bool) throws(NetlinkError)
    func deleteAddress(_ address: IPPrefix, interfaceIndex: Int32) throws(NetlinkError)

    func routes(family: AddressFamily?, table: UInt32?, protocol: UInt8?) throws(NetlinkError) -> [Route]
    func addRoute(_ route: Route, replace: Bool) throws(NetlinkError)
    func deleteRoute(_ route: Route) throws(NetlinkError)

    func rules(family: AddressFamily?) throws(NetlinkError) -> [RoutingRule]
    func addRule(_ rule: RoutingRule) throws(NetlinkError)
    func deleteRule(_ rule: RoutingRule) throws(NetlinkError)
}

extension NetlinkRouting {
    /// Addresses, optionally only of one family and/or interface.
    public func addresses(family: AddressFamily? = nil, interfaceIndex: Int32? = nil) throws(NetlinkError) -> [AddressInfo] {
        try addresses(family: family, interfaceIndex: interfaceIndex)
    }

    /// Adds `address` to interface `interfaceIndex`. Use `.noDAD` for tunnel IPv6 addresses so they are
    /// usable at once; `replace` updates an existing address instead of failing with `.alreadyExists`.
    public func addAddress(_ address: IPPrefix, interfaceIndex: Int32, peer: IPAddress? = nil,
                           flags: AddressFlags = [], replace: Bool = false) throws(NetlinkError) {
        try addAddress(address, interfaceIndex: interfaceIndex, peer: peer, flags: flags, replace: replace)
    }

    /// Routes, optionally filtered; the `local` table only when asked for by `table: RouteTable.local`.
    public func routes(family: AddressFamily? = nil, table: UInt32? = nil, protocol: UInt8? = nil) throws(NetlinkError) -> [Route] {
        try routes(family: family, table: table, protocol: `protocol`)
    }

    /// Installs `route`; `replace` overwrites a route with the same key instead of failing.
    public func addRoute(_ route: Route, replace: Bool = false) throws(NetlinkError) {
        try addRoute(route, replace: replace)
    }

    /// Policy rules, optionally of one family and/or with one priority or table, in kernel order.
    public func rules(family: AddressFamily? = nil, priority: UInt32? = nil, table: UInt32? = nil) throws(NetlinkError) -> [RoutingRule] {
        try rules(family: family).filter {
            (priority == nil || $0.priority == priority) && (table == nil || $0.table == table)
        }
    }

    /// Deletes every route (of every table but `local`, or of `table`) for which `predicate` holds,
    /// e.g. everything in the tunnel's table after a crash. Routes that vanished meanwhile are skipped.
    /// Returns how many were deleted.
    @discardableResult
    public func deleteRoutes(table: UInt32? = nil, where predicate: (Route) -> Bool = { _ in true }) throws(NetlinkError) -> Int {
        var deleted = 0
        for route in try routes(family: nil, table: table, protocol: nil) where predicate(route) {
            do {
                try deleteRoute(route)
                deleted += 1
            } catch where error.isNotFound {
                continue
            }
        }
        return deleted
    }

    /// Deletes every address for which `predicate` holds (e.g. all IPv4 addresses of the TUN).
    @discardableResult
    public func deleteAddresses(family: AddressFamily? = nil, interfaceIndex: Int32? = nil,
                                where predicate: (AddressInfo) -> Bool = { _ in true }) throws(NetlinkError) -> Int {
        var deleted = 0
        for address in try addresses(family: family, interfaceIndex: interfaceIndex) where predicate(address) {
            do {
                try deleteAddress(address.local, interfaceIndex: address.interfaceIndex)
                deleted += 1
            } catch where error.isNotFound {
                continue
            }
        }
        return deleted
    }

    /// Deletes every rule for which `predicate` holds, e.g. `{ $0.priority == 29799 }` after a crash.
    /// Each is deleted exactly as listed. Returns how many were deleted.
    @discardableResult
    public func deleteRules(family: AddressFamily? = nil, where predicate: (RoutingRule) -> Bool) throws(NetlinkError) -> Int {
        var deleted = 0
        for rule in try rules(family: family) where predicate(rule) {
            do {
                try deleteRule(rule)
                deleted += 1
            } catch where error.isNotFound {
                continue
            }
        }
        return deleted
    }
}
