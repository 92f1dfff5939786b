internal import CNetlink
internal import CTriglavShims
public import Logging
public import TriglavCore
import Synchronization

/// Owns one libnl rtnetlink socket (`struct nl_sock`) and exposes request/acknowledge operations on
/// links, addresses, routes and policy rules. Never shells out to `ip`.
///
/// Thread safety: libnl sockets are not thread-safe, so every operation holds an internal mutex for the
/// duration of its request and reply; the object is `Sendable` and may be shared. Operations block for
/// one netlink round trip (microseconds); don't call them per packet.
///
/// Namespace: the socket belongs to the network namespace it was created in, for its whole lifetime.
/// `init(networkNamespacePath:)` creates it on a helper thread inside another namespace.
///
/// Lifetime: the socket is closed and freed when the object is deinitialised.
public final class NetlinkRouteSocket: NetlinkRouting {
    private let handle: Mutex<SocketHandle>
    private let logger: Logger

    /// Opens an rtnetlink socket in the calling thread's network namespace.
    public init(logger: Logger = Logger(label: "triglav.netlink")) throws(NetlinkError) {
        self.handle = Mutex(try SocketHandle.connect())
        self.logger = logger
    }

    /// Opens an rtnetlink socket inside the network namespace at `networkNamespacePath`
    /// (e.g. `NetworkNamespace.path(named: "tg-test-1")`); this process stays where it is.
    public init(networkNamespacePath: String, logger: Logger = Logger(label: "triglav.netlink")) throws(NetlinkError) {
        let pointer = try NetworkNamespace.run(in: networkNamespacePath) { () throws(NetlinkError) -> SendablePointer in
            let handle = try SocketHandle.connect()
            return handle.release()
        }
        self.handle = Mutex(SocketHandle(adopting: pointer.pointer))
        self.logger = logger
    }

    // MARK: links

    /// Every link in the namespace (bridge-port duplicates excluded).
    public func links() throws(NetlinkError) -> [LinkInfo] {
        try handle.withLock { (socket: inout SocketHandle) throws(NetlinkError) -> [LinkInfo] in
            try Libnl.dumpLinks(socket.pointer)
        }
    }

    /// The link with `index`, or nil when there is none.
    public func link(index: Int32) throws(NetlinkError) -> LinkInfo? {
        try fetchLink(index: index, name: nil)
    }

    /// The link called `name`, or nil when there is none.
    public func link(named name: String) throws(NetlinkError) -> LinkInfo? {
        try fetchLink(index: 0, name: name)
    }

    private func fetchLink(index: Int32, name: String?) throws(NetlinkError) -> LinkInfo? {
        try handle.withLock { (socket: inout SocketHandle) throws(NetlinkError) -> LinkInfo? in
            var object: OpaquePointer?
            let rc: Int32 = if let name { rtnl_link_get_kernel(socket.pointer, 0, name, &object) }
                            else { rtnl_link_get_kernel(socket.pointer, index, nil, &object) }
            if -rc == NLE_OBJ_NOTFOUND || -rc == NLE_NODEV { return nil }
            try Libnl.check(rc, "looking up", "link \(name ?? "#\(index)")")
            guard let object else { return nil }
            defer { rtnl_link_put(object) }
            return Libnl.link(object)
        }
    }

    /// Sets the link administratively up or down (`ip link set dev X up|down`).
    public func setLink(index: Int32, up: Bool) throws(NetlinkError) {
        try changeLink(index: index, what: up ? "setting up" : "setting down") { changes in
            if up { rtnl_link_set_flags(changes, LinkFlags.up.rawValue) }
            else { rtnl_link_unset_flags(changes, LinkFlags.up.rawValue) }
        }
    }

    /// Sets the link's MTU.
    public func setMTU(_ mtu: UInt32, index: Int32) throws(NetlinkError) {
        guard mtu >= 68 else {
            throw .invalidArgument(operation: "setting MTU of", subject: "link #\(index)", reason: "MTU \(mtu) is below 68")
        }
        try changeLink(index: index, what: "setting MTU \(mtu) of") { rtnl_link_set_mtu($0, mtu) }
    }

    private func changeLink(index: Int32, what: String, _ apply: (OpaquePointer) -> Void) throws(NetlinkError) {
        try handle.withLock { (socket: inout SocketHandle) throws(NetlinkError) in
            var original: OpaquePointer?
            try Libnl.check(rtnl_link_get_kernel(socket.pointer, index, nil, &original), what, "link #\(index)")
            defer { rtnl_link_put(original) }
            guard let changes = rtnl_link_alloc() else {
                throw .failed(operation: what, subject: "link #\(index)", code: NLE_NOMEM, message: Libnl.message(-NLE_NOMEM))
            }
            defer { rtnl_link_put(changes) }
            apply(changes)
            try Libnl.check(rtnl_link_change(socket.pointer, original, changes, 0), what, "link #\(index)")
        }
        logger.debug("netlink: \(what) link #\(index)")
    }

    /// Deletes a (virtual) link, e.g. a leftover TUN or a test veth.
    public func deleteLink(index: Int32) throws(NetlinkError) {
        try handle.withLock { (socket: inout SocketHandle) throws(NetlinkError) in
            guard let link = rtnl_link_alloc() else {
                throw .failed(operation: "deleting", subject: "link #\(index)", code: NLE_NOMEM, message: Libnl.message(-NLE_NOMEM))
            }
            defer { rtnl_link_put(link) }
            rtnl_link_set_ifindex(link, index)
            try Libnl.check(rtnl_link_delete(socket.pointer, link), "deleting", "link #\(index)")
        }
        logger.debug("netlink: deleted link #\(index)")
    }

    // MARK: addresses

    /// Addresses in the namespace, optionally only of one family and/or interface.
    public func addresses(family: AddressFamily?, interfaceIndex: Int32?) throws(NetlinkError) -> [AddressInfo] {
        try handle.withLock { (socket: inout SocketHandle) throws(NetlinkError) -> [AddressInfo] in
            try Libnl.dumpAddresses(socket.pointer).filter {
                (family == nil || $0.family == family) && (interfaceIndex == nil || $0.interfaceIndex == interfaceIndex)
            }
        }
    }

    /// Adds `address` (with its prefix length) to interface `interfaceIndex`. Use `.noDAD` for tunnel
    /// IPv6 addresses so they are usable at once. `replace` updates an existing address instead of failing.
    public func addAddress(_ address: IPPrefix, interfaceIndex: Int32, peer: IPAddress?,
                           flags: AddressFlags, replace: Bool) throws(NetlinkError) {
        let subject = "address \(address) on link #\(interfaceIndex)"
        try withAddressObject(address, interfaceIndex: interfaceIndex, peer: peer, subject: subject) { (socket, object) throws(NetlinkError) in
            if !flags.isEmpty { rtnl_addr_set_flags(object, flags.rawValue) }
            let requestFlags = replace ? Int32(NLM_F_REPLACE) : 0
            try Libnl.check(rtnl_addr_add(socket, object, requestFlags), "adding", subject)
        }
        logger.debug("netlink: added \(subject)")
    }

    /// Deletes `address` from interface `interfaceIndex`.
    public func deleteAddress(_ address: IPPrefix, interfaceIndex: Int32) throws(NetlinkError) {
        let subject = "address \(address) on link #\(interfaceIndex)"
        try withAddressObject(address, interfaceIndex: interfaceIndex, peer: nil, subject: subject) { (socket, object) throws(NetlinkError) in
            try Libnl.check(rtnl_addr_delete(socket, object, 0), "deleting", subject)
        }
        logger.debug("netlink: deleted \(subject)")
    }

    private func withAddressObject(
        _ address: IPPrefix, interfaceIndex: Int32, peer: IPAddress?, subject: String,
        _ body: (OpaquePointer, OpaquePointer) throws(NetlinkError) -> Void
    ) throws(NetlinkError) {
        if let peer, peer.isIPv4 != address.address.isIPv4 {
            throw .invalidArgument(operation: "building", subject: subject, reason: "peer family differs from the address's")
        }
        try handle.withLock { (socket: inout SocketHandle) throws(NetlinkError) in
            guard let object = rtnl_addr_alloc(),
                  let local = Libnl.makeAddress(address.address, prefixLength: address.length) else {
                throw .failed(operation: "allocating", subject: subject, code: NLE_NOMEM, message: Libnl.message(-NLE_NOMEM))
            }
            defer { rtnl_addr_put(object) }
            rtnl_addr_set_ifindex(object, interfaceIndex)
            rtnl_addr_set_family(object, AddressFamily(of: address.address).socketFamily)
            let rc = rtnl_addr_set_local(object, local)
            nl_addr_put(local)
            try Libnl.check(rc, "building", subject)
            if let peer, let peerAddress = Libnl.makeAddress(peer, prefixLength: address.length) {
                let peerRC = rtnl_addr_set_peer(object, peerAddress)
                nl_addr_put(peerAddress)
                try Libnl.check(peerRC, "building", subject)
            }
            rtnl_addr_set_prefixlen(object, Int32(address.length))
            try body(socket.pointer, object)
        }
    }

    // MARK: routes

    /// Routes, optionally filtered. Routes in the `local` table are included only when asked for by
    /// `table: RouteTable.local`. Cloned (cache) routes are never included.
    public func routes(family: AddressFamily?, table: UInt32?,
                       protocol: UInt8?) throws(NetlinkError) -> [Route] {
        try handle.withLock { (socket: inout SocketHandle) throws(NetlinkError) -> [Route] in
            try Libnl.dumpRoutes(socket.pointer, family: family).filter { route in
                let tableMatches = if let table { route.table == table } else { route.table != RouteTable.local }
                return tableMatches && (`protocol` == nil || route.protocol == `protocol`)
            }
        }
    }

    /// Installs `route`. `replace` overwrites an existing route with the same key instead of failing.
    public func addRoute(_ route: Route, replace: Bool) throws(NetlinkError) {
        let flags = Int32(NLM_F_CREATE) | (replace ? Int32(NLM_F_REPLACE) : Int32(NLM_F_EXCL))
        try handle.withLock { (socket: inout SocketHandle) throws(NetlinkError) in
            let object = try Libnl.makeRoute(route)
            defer { rtnl_route_put(object) }
            try Libnl.check(rtnl_route_add(socket.pointer, object, flags), "adding", "route \(route)")
        }
        logger.debug("netlink: added route \(route)")
    }

    /// Removes `route` (matched on destination, table, type, metric, nexthop and protocol).
    public func deleteRoute(_ route: Route) throws(NetlinkError) {
        try handle.withLock { (socket: inout SocketHandle) throws(NetlinkError) in
            let object = try Libnl.makeRoute(route)
            defer { rtnl_route_put(object) }
            try Libnl.check(rtnl_route_delete(socket.pointer, object, 0), "deleting", "route \(route)")
        }
        logger.debug("netlink: deleted route \(route)")
    }

    // MARK: rules

    /// Policy rules of both families (or one), in kernel order (by priority).
    public func rules(family: AddressFamily?) throws(NetlinkError) -> [RoutingRule] {
        try handle.withLock { (socket: inout SocketHandle) throws(NetlinkError) -> [RoutingRule] in
            try RuleMessages.dump(socket: socket.pointer, family: family)
        }
    }

    /// Installs a policy rule (`ip rule add ...`). Fails with `.alreadyExists` if an identical rule exists.
    public func addRule(_ rule: RoutingRule) throws(NetlinkError) {
        try handle.withLock { (socket: inout SocketHandle) throws(NetlinkError) in
            try RuleMessages.send(socket: socket.pointer, rule: rule, add: true)
        }
        logger.debug("netlink: added rule \(rule)")
    }

    /// Deletes the first rule matching every field set in `rule` (`ip rule del ...`).
    public func deleteRule(_ rule: RoutingRule) throws(NetlinkError) {
        try handle.withLock { (socket: inout SocketHandle) throws(NetlinkError) in
            try RuleMessages.send(socket: socket.pointer, rule: rule, add: false)
        }
        logger.debug("netlink: deleted rule \(rule)")
    }
}

let AF_UNSPEC_VALUE: Int32 = 0

/// A raw pointer that may cross a thread boundary because ownership moves with it.
struct SendablePointer: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// Owns an nl_sock connected to NETLINK_ROUTE; frees it on deinit.
struct SocketHandle: ~Copyable {
    let pointer: OpaquePointer

    init(adopting pointer: OpaquePointer) { self.pointer = pointer }

    static func connect() throws(NetlinkError) -> SocketHandle {
        guard let socket = nl_socket_alloc() else {
            throw .socketUnavailable(code: NLE_NOMEM, message: Libnl.message(-NLE_NOMEM))
        }
        let rc = nl_connect(socket, NETLINK_ROUTE)
        if rc < 0 {
            nl_socket_free(socket)
            throw .socketUnavailable(code: -rc, message: Libnl.message(rc))
        }
        return SocketHandle(adopting: socket)
    }

    /// Gives up ownership without closing.
    consuming func release() -> SendablePointer {
        let pointer = self.pointer
        discard self
        return SendablePointer(pointer: pointer)
    }

    deinit { nl_socket_free(pointer) }
}
