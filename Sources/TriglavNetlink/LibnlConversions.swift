// Conversions between libnl objects (all opaque pointers to Swift) and the public value types.
// Nothing here sends messages; callers own every pointer they pass in.
internal import CNetlink
import TriglavCore
#if canImport(Glibc)
import Glibc
#endif

let AF_INET_VALUE: Int32 = 2
let AF_INET6_VALUE: Int32 = 10
let AF_BRIDGE_VALUE: Int32 = 7

extension AddressFamily {
    var socketFamily: Int32 { self == .ipv4 ? AF_INET_VALUE : AF_INET6_VALUE }

    init?(socketFamily: Int32) {
        switch socketFamily {
        case AF_INET_VALUE: self = .ipv4
        case AF_INET6_VALUE: self = .ipv6
        default: return nil
        }
    }
}

enum Libnl {
    /// libnl's text for a (negative) NLE_* code.
    static func message(_ code: Int32) -> String {
        String(cString: nl_geterror(code))
    }

    /// Maps a failed libnl call to a typed error.
    static func error(_ code: Int32, operation: String, subject: String) -> NetlinkError {
        let positive = code < 0 ? -code : code
        let text = message(code)
        switch positive {
        case NLE_EXIST: return .alreadyExists(operation: operation, subject: subject, message: text)
        case NLE_OBJ_NOTFOUND, NLE_NODEV, NLE_NOADDR:
            return .notFound(operation: operation, subject: subject, message: text)
        case NLE_PERM, NLE_NOACCESS: return .permissionDenied(operation: operation, subject: subject, message: text)
        default: return .failed(operation: operation, subject: subject, code: positive, message: text)
        }
    }

    static func check(_ code: Int32, _ operation: String, _ subject: @autoclosure () -> String) throws(NetlinkError) {
        if code < 0 { throw error(code, operation: operation, subject: subject()) }
    }

    /// A new nl_addr holding `address` with `prefixLength`; the caller must `nl_addr_put` it.
    static func makeAddress(_ address: IPAddress, prefixLength: Int) -> OpaquePointer? {
        var bytes = address.bytes
        let family = AddressFamily(of: address).socketFamily
        guard let result = bytes.withUnsafeMutableBytes({ nl_addr_build(family, $0.baseAddress, $0.count) }) else {
            return nil
        }
        nl_addr_set_prefixlen(result, Int32(prefixLength))
        return result
    }

    /// Reads an nl_addr; a zero-length one (how libnl stores an absent RTA_DST) is the zero address.
    static func address(_ pointer: OpaquePointer?, family: AddressFamily? = nil) -> IPAddress? {
        guard let pointer else { return nil }
        let length = Int(nl_addr_get_len(pointer))
        if length == 0 {
            guard let family = family ?? AddressFamily(socketFamily: nl_addr_get_family(pointer)) else { return nil }
            return family == .ipv4 ? .v4(0) : .v6(high: 0, low: 0)
        }
        guard let raw = nl_addr_get_binary_addr(pointer) else { return nil }
        return IPAddress(bytes: UnsafeRawBufferPointer(start: raw, count: length))
    }

    static func prefix(_ pointer: OpaquePointer?, family: AddressFamily? = nil) -> IPPrefix? {
        guard let pointer, let address = address(pointer, family: family) else { return nil }
        return try? IPPrefix(address: address, length: Int(nl_addr_get_prefixlen(pointer)))
    }

    // MARK: objects -> values

    static func link(_ link: OpaquePointer) -> LinkInfo? {
        let index = rtnl_link_get_ifindex(link)
        guard index > 0 else { return nil }
        let name = rtnl_link_get_name(link).map { String(cString: $0) } ?? "if\(index)"
        let master = rtnl_link_get_master(link)
        var hardwareAddress: [UInt8] = []
        if let addr = rtnl_link_get_addr(link), let raw = nl_addr_get_binary_addr(addr) {
            hardwareAddress = Array(UnsafeRawBufferPointer(start: raw, count: Int(nl_addr_get_len(addr))))
        }
        return LinkInfo(
            index: index,
            name: name,
            flags: LinkFlags(rawValue: rtnl_link_get_flags(link)),
            hasCarrier: rtnl_link_get_carrier(link) != 0,
            operState: rtnl_link_get_operstate(link),
            kind: rtnl_link_get_type(link).map { String(cString: $0) },
            hardwareType: UInt32(rtnl_link_get_arptype(link)),
            mtu: rtnl_link_get_mtu(link),
            masterIndex: master > 0 ? master : nil,
            hardwareAddress: hardwareAddress)
    }

    static func address(object addr: OpaquePointer) -> AddressInfo? {
        guard let family = AddressFamily(socketFamily: rtnl_addr_get_family(addr)),
              let localAddress = address(rtnl_addr_get_local(addr), family: family),
              let local = try? IPPrefix(address: localAddress, length: Int(rtnl_addr_get_prefixlen(addr)))
        else { return nil }
        var peer = address(rtnl_addr_get_peer(addr), family: family)
        if peer == localAddress { peer = nil }
        return AddressInfo(
            interfaceIndex: rtnl_addr_get_ifindex(addr),
            local: local,
            peer: peer,
            scope: UInt8(truncatingIfNeeded: rtnl_addr_get_scope(addr)),
            flags: AddressFlags(rawValue: rtnl_addr_get_flags(addr)))
    }

    static func route(_ route: OpaquePointer) -> Route? {
        guard let family = AddressFamily(socketFamily: Int32(rtnl_route_get_family(route))),
              let destination = prefix(rtnl_route_get_dst(route), family: family) else { return nil }
        var interfaces: [Int32] = []
        var gateway: IPAddress?
        let count = rtnl_route_get_nnexthops(route)
        for position in 0..<max(count, 0) {
            guard let nexthop = rtnl_route_nexthop_n(route, position) else { continue }
            let index = rtnl_route_nh_get_ifindex(nexthop)
            if index > 0 { interfaces.append(index) }
            if gateway == nil { gateway = address(rtnl_route_nh_get_gateway(nexthop), family: family) }
        }
        var value = Route(
            destination: destination,
            gateway: gateway,
            outputInterface: interfaces.first,
            table: rtnl_route_get_table(route),
            metric: rtnl_route_get_priority(route),
            type: RouteType(rawValue: rtnl_route_get_type(route)),
            protocol: rtnl_route_get_protocol(route),
            scope: rtnl_route_get_scope(route),
            preferredSource: address(rtnl_route_get_pref_src(route), family: family))
        value.nexthopInterfaces = interfaces
        return value
    }

    // MARK: values -> objects

    /// A new rtnl_route for `route` (caller must `rtnl_route_put`).
    static func makeRoute(_ route: Route) throws(NetlinkError) -> OpaquePointer {
        let subject = "route \(route)"
        if let gateway = route.gateway, gateway.isIPv4 != route.destination.address.isIPv4 {
            throw .invalidArgument(operation: "building", subject: subject,
                                   reason: "gateway family differs from the destination's")
        }
        if route.type == .unicast && route.gateway == nil && route.outputInterface == nil {
            throw .invalidArgument(operation: "building", subject: subject,
                                   reason: "a unicast route needs a gateway or an output interface")
        }
        guard let object = rtnl_route_alloc() else { throw .failed(operation: "allocating", subject: subject, code: NLE_NOMEM, message: message(-NLE_NOMEM)) }
        var ok = false
        defer { if !ok { rtnl_route_put(object) } }
        _ = rtnl_route_set_family(object, UInt8(route.family.socketFamily))
        guard let dst = makeAddress(route.destination.address, prefixLength: route.destination.length) else {
            throw .failed(operation: "allocating", subject: subject, code: NLE_NOMEM, message: message(-NLE_NOMEM))
        }
        let dstResult = rtnl_route_set_dst(object, dst)
        nl_addr_put(dst)
        try check(dstResult, "building", subject)
        rtnl_route_set_table(object, route.table)
        _ = rtnl_route_set_type(object, route.type.rawValue)
        rtnl_route_set_protocol(object, route.protocol)
        rtnl_route_set_scope(object, route.effectiveScope)
        if let metric = route.metric { rtnl_route_set_priority(object, metric) }
        if let source = route.preferredSource {
            guard let src = makeAddress(source, prefixLength: source.bitWidth) else {
                throw .failed(operation: "allocating", subject: subject, code: NLE_NOMEM, message: message(-NLE_NOMEM))
            }
            let rc = rtnl_route_set_pref_src(object, src)
            nl_addr_put(src)
            try check(rc, "building", subject)
        }
        if route.gateway != nil || route.outputInterface != nil {
            guard let nexthop = rtnl_route_nh_alloc() else {
                throw .failed(operation: "allocating", subject: subject, code: NLE_NOMEM, message: message(-NLE_NOMEM))
            }
            if let index = route.outputInterface { rtnl_route_nh_set_ifindex(nexthop, index) }
            if let gateway = route.gateway, let gw = makeAddress(gateway, prefixLength: gateway.bitWidth) {
                rtnl_route_nh_set_gateway(nexthop, gw)
                nl_addr_put(gw)
            }
            rtnl_route_add_nexthop(object, nexthop)  // the route owns the nexthop now
        }
        ok = true
        return object
    }
}

// MARK: dumps

extension Libnl {
    /// Walks every object of a freshly allocated cache, then frees it.
    private static func collect<T>(_ cache: OpaquePointer?, _ convert: (OpaquePointer) -> T?) -> [T] {
        defer { nl_cache_free(cache) }
        var result: [T] = []
        var object = nl_cache_get_first(cache)
        while let current = object {
            if let value = convert(current) { result.append(value) }
            object = nl_cache_get_next(current)
        }
        return result
    }

    static func dumpLinks(_ socket: OpaquePointer) throws(NetlinkError) -> [LinkInfo] {
        var cache: OpaquePointer?
        try check(rtnl_link_alloc_cache(socket, AF_UNSPEC_VALUE, &cache), "listing", "links")
        return collect(cache) { link($0) }
    }

    static func dumpAddresses(_ socket: OpaquePointer) throws(NetlinkError) -> [AddressInfo] {
        var cache: OpaquePointer?
        try check(rtnl_addr_alloc_cache(socket, &cache), "listing", "addresses")
        return collect(cache) { address(object: $0) }
    }

    /// Every route of every table (cloned cache entries excluded by libnl).
    static func dumpRoutes(_ socket: OpaquePointer, family: AddressFamily? = nil) throws(NetlinkError) -> [Route] {
        var cache: OpaquePointer?
        try check(rtnl_route_alloc_cache(socket, family?.socketFamily ?? AF_UNSPEC_VALUE, 0, &cache), "listing", "routes")
        return collect(cache) { route($0) }
    }
}
