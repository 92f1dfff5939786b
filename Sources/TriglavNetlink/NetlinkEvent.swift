import TriglavCore

/// A change in the kernel's link/address/route state, as the monitor delivers it.
///
/// The monitor keeps the current state and delivers only real differences: a link that is re-announced
/// unchanged yields nothing; a route replaced in place yields `routeRemoved(old)` then `routeAdded(new)`.
public enum NetlinkEvent: Sendable, Hashable, CustomStringConvertible {
    case linkAdded(LinkInfo)
    /// Anything in `LinkInfo` changed (flags, carrier, name, MTU, master...); carries the new state.
    case linkChanged(LinkInfo)
    case linkRemoved(LinkInfo)
    case addressAdded(AddressInfo)
    case addressRemoved(AddressInfo)
    /// Routes of every table except `local`.
    case routeAdded(Route)
    case routeRemoved(Route)
    /// The initial dump (links, then addresses, then routes) has been delivered and the monitor's view is
    /// complete; also sent after a resynchronisation that followed a receive-buffer overflow.
    case synchronized

    public var description: String {
        switch self {
        case .linkAdded(let link): "link added: \(link)"
        case .linkChanged(let link): "link changed: \(link)"
        case .linkRemoved(let link): "link removed: \(link)"
        case .addressAdded(let address): "address added: \(address)"
        case .addressRemoved(let address): "address removed: \(address)"
        case .routeAdded(let route): "route added: \(route)"
        case .routeRemoved(let route): "route removed: \(route)"
        case .synchronized: "synchronized"
        }
    }
}

/// One parsed rtnetlink notification, before it is compared with the known state.
enum KernelNotification: Sendable, Hashable {
    case newLink(LinkInfo)
    case deleteLink(LinkInfo)
    case newAddress(AddressInfo)
    case deleteAddress(AddressInfo)
    case newRoute(Route)
    case deleteRoute(Route)
}

/// The monitor's view of links, addresses and routes, and the diffing that turns kernel notifications
/// (which repeat, arrive stale after a dump, and omit implicit deletions) into `NetlinkEvent`s.
///
/// Pure value type, owned by the monitor thread. Bounded by what exists in the kernel: every entry is
/// removed when its object (or its link) goes away.
struct NetlinkStateTracker {
    struct AddressKey: Hashable { let interfaceIndex: Int32; let local: IPPrefix }
    /// The kernel's identity of a route: table, destination and metric (replace keeps the key).
    struct RouteKey: Hashable { let table: UInt32; let destination: IPPrefix; let metric: UInt32 }

    private(set) var links: [Int32: LinkInfo] = [:]
    private(set) var addresses: [AddressKey: AddressInfo] = [:]
    private(set) var routes: [RouteKey: Route] = [:]

    static func key(_ address: AddressInfo) -> AddressKey { AddressKey(interfaceIndex: address.interfaceIndex, local: address.local) }
    static func key(_ route: Route) -> RouteKey { RouteKey(table: route.table, destination: route.destination, metric: route.metric ?? 0) }

    /// Routes of the `local` table are noise for consumers (one per local address) and not tracked.
    static func isTracked(_ route: Route) -> Bool { route.table != RouteTable.local }

    mutating func apply(_ notification: KernelNotification) -> [NetlinkEvent] {
        switch notification {
        case .newLink(let link):
            guard let old = links[link.index] else {
                links[link.index] = link
                return [.linkAdded(link)]
            }
            guard old != link else { return [] }
            links[link.index] = link
            var events: [NetlinkEvent] = []
            // The kernel flushes IPv4 (and IPv6) routes of a device that goes administratively down
            // without sending RTM_DELROUTE for them, so forget them here.
            if old.isUp && !link.isUp { events += purgeRoutes(interfaceIndex: link.index) }
            events.append(.linkChanged(link))
            return events
        case .deleteLink(let link):
            guard let old = links.removeValue(forKey: link.index) else { return [] }
            var events = purgeAddresses(interfaceIndex: link.index)
            events += purgeRoutes(interfaceIndex: link.index)
            events.append(.linkRemoved(old))
            return events
        case .newAddress(let address):
            let key = Self.key(address)
            if addresses[key] == address { return [] }
            let old = addresses.updateValue(address, forKey: key)
            return old == nil ? [.addressAdded(address)] : [.addressRemoved(old!), .addressAdded(address)]
        case .deleteAddress(let address):
            guard let old = addresses.removeValue(forKey: Self.key(address)) else { return [] }
            return [.addressRemoved(old)]
        case .newRoute(let route):
            guard Self.isTracked(route) else { return [] }
            let key = Self.key(route)
            if routes[key] == route { return [] }
            if let old = routes.updateValue(route, forKey: key) { return [.routeRemoved(old), .routeAdded(route)] }
            return [.routeAdded(route)]
        case .deleteRoute(let route):
            guard let old = routes.removeValue(forKey: Self.key(route)) else { return [] }
            return [.routeRemoved(old)]
        }
    }

    /// Replaces the whole view with a fresh dump (after an overflow) and returns the differences,
    /// removals first so consumers never see two objects with one identity.
    mutating func resynchronize(links newLinks: [LinkInfo], addresses newAddresses: [AddressInfo],
                                routes newRoutes: [Route]) -> [NetlinkEvent] {
        var events: [NetlinkEvent] = []
        let linkIndexes = Set(newLinks.map(\.index))
        let addressKeys = Set(newAddresses.map(Self.key))
        let routeKeys = Set(newRoutes.filter(Self.isTracked).map(Self.key))
        for (key, route) in routes where !routeKeys.contains(key) {
            routes[key] = nil
            events.append(.routeRemoved(route))
        }
        for (key, address) in addresses where !addressKeys.contains(key) {
            addresses[key] = nil
            events.append(.addressRemoved(address))
        }
        for (index, link) in links where !linkIndexes.contains(index) {
            links[index] = nil
            events.append(.linkRemoved(link))
        }
        for link in newLinks { events += apply(.newLink(link)) }
        for address in newAddresses { events += apply(.newAddress(address)) }
        for route in newRoutes { events += apply(.newRoute(route)) }
        return events
    }

    private mutating func purgeAddresses(interfaceIndex: Int32) -> [NetlinkEvent] {
        let gone = addresses.filter { $0.key.interfaceIndex == interfaceIndex }
        for key in gone.keys { addresses[key] = nil }
        return gone.values.sorted { $0.local.description < $1.local.description }.map { .addressRemoved($0) }
    }

    private mutating func purgeRoutes(interfaceIndex: Int32) -> [NetlinkEvent] {
        let gone = routes.filter { $0.value.nexthopInterfaces.contains(interfaceIndex) }
        for key in gone.keys { routes[key] = nil }
        return gone.values.sorted { $0.description < $1.description }.map { .routeRemoved($0) }
    }
}
