import Foundation
import Logging
import TriglavCore
import TriglavNetlink

/// Numbers that tag everything the data plane installs, so shutdown removes exactly it and a restart after
/// a crash finds its leftovers.
public enum RoutingConstants {
    /// SO_MARK of uplink sockets and number of the client's routing table ("tg" = 0x7467 = 29799).
    public static let defaultFirewallMark: UInt32 = 0x7467
    /// Default first priority of the client's rules (`PolicyRouting`): the excludes' `to PREFIX lookup main`.
    public static let excludeRulePriority: UInt32 = 29797
    /// Default priority of `lookup main suppress_prefixlength 0` (must precede the next one).
    public static let suppressRulePriority = 29798
    /// Default priority of `not fwmark MARK lookup TABLE`.
    public static let tunnelRulePriority = 29799
    /// Routing protocol number (`proto` in `ip rule`/`ip route`) of every client rule and route, the tag by
    /// which cleanup finds them whatever table and priorities the run that left them used. 116 = "t";
    /// unassigned in iproute2's rt_protos.
    public static let routeProtocol: UInt8 = 116
    /// The server's nftables table (family inet).
    public static let serverNATTable = "triglav"
    /// Metric of the full tunnel's standing `unreachable default` routes (`RouteManager.killSwitchRoutes`): the
    /// largest, so the route via the TUN (metric 0 for IPv4, 1024 for IPv6) always wins while it exists.
    public static let killSwitchMetric = UInt32.max
}

/// Installs and removes addresses, routes, rules and NAT.
///
/// Links, addresses, routes and rules go through TriglavNetlink (libnl). NAT goes through `nft -f -`: libnftnl
/// is not a required library, and one atomic ruleset (one table, deleted as a whole) is easy to audit.
/// Forwarding is a write to /proc/sys of the current network namespace.
final class RouteManager: Sendable {
    private let logger: Logger

    init(logger: Logger) { self.logger = logger }

    /// A netlink socket per call: these are rare control-path operations, and a fresh socket never carries
    /// state (or a namespace) from an earlier one.
    private func netlink() throws(TriglavDataPlaneError) -> NetlinkRouteSocket {
        do {
            return try NetlinkRouteSocket(logger: logger)
        } catch {
            throw .routing(operation: "open a netlink socket", reason: "\(error)")
        }
    }

    private func interfaceIndex(_ name: InterfaceName, _ socket: NetlinkRouteSocket) throws(TriglavDataPlaneError) -> Int32 {
        do {
            guard let link = try socket.link(named: name.rawValue) else { throw TriglavDataPlaneError.noSuchInterface(name.rawValue) }
            return link.index
        } catch let error as TriglavDataPlaneError {
            throw error
        } catch {
            throw .routing(operation: "look up \(name)", reason: "\(error)")
        }
    }

    /// Runs a netlink operation, mapping its error to ours with what we were doing.
    private func apply(_ operation: @autoclosure () -> String, _ body: () throws(NetlinkError) -> Void) throws(TriglavDataPlaneError) {
        do {
            try body()
        } catch {
            throw .routing(operation: operation(), reason: "\(error)")
        }
    }

    // MARK: Client

    /// Removes every tagged rule and route (whatever table and priorities they used) and flushes our
    /// table: leftovers of a crashed (kill -9) run. The TUN device itself is not persistent, so the kernel
    /// removed it with the dead process.
    func removeClientLeftovers(_ policy: PolicyRouting, table: UInt32) throws(TriglavDataPlaneError) {
        try removeRulesAndRoutes(policy, table: table)
    }

    /// Of `interfaces`, those with a unicast route covering `destination` through them, in any table but
    /// `local` and `ignoredTable` (our own tunnel table). nil when netlink can't tell. An approximation of
    /// the kernel's lookup for a socket bound with SO_BINDTODEVICE (policy rules aren't evaluated): it
    /// exists to explain an uplink that can't reach the server (docs/DATAPLANE.md, "Sockets").
    func interfacesRouting(to destination: IPAddress, among interfaces: [InterfaceName], ignoredTable: UInt32) -> Set<InterfaceName>? {
        guard !interfaces.isEmpty, let socket = try? netlink(),
              let routes = try? socket.routes(family: destination.isIPv4 ? .ipv4 : .ipv6, table: nil, protocol: nil) else { return nil }
        var routed: Set<InterfaceName> = []
        for interface in interfaces {
            guard let index = (try? socket.link(named: interface.rawValue))??.index else { continue }
            if routes.contains(where: { route in
                route.type == .unicast && route.table != ignoredTable && route.nexthopInterfaces.contains(index)
                    && route.destination.contains(destination)
            }) {
                routed.insert(interface)
            }
        }
        return routed
    }

    /// Sets `interface`'s MTU (RTM_NEWLINK through libnl).
    func setMTU(_ mtu: Int, of interface: InterfaceName) throws(TriglavDataPlaneError) {
        let socket = try netlink()
        let index = try interfaceIndex(interface, socket)
        try apply("set the MTU of \(interface) to \(mtu)") { () throws(NetlinkError) in
            try socket.setMTU(UInt32(clamping: mtu), index: index)
        }
    }

    func bringUp(_ interface: InterfaceName) throws(TriglavDataPlaneError) {
        let socket = try netlink()
        let index = try interfaceIndex(interface, socket)
        try apply("set \(interface) up") { () throws(NetlinkError) in try socket.setLink(index: index, up: true) }
    }

    /// Installs the routing policy before the tunnel has addresses (from `ClientTunnel.start()`): the rules
    /// (see `PolicyRouting`) and the tunnel table's routes, all `unreachable` until the first handshake assigns
    /// addresses. Like a kill switch, nothing the tunnel is meant to carry leaves through an uplink in cleartext
    /// while the server can't be reached: it fails at once with ENETUNREACH instead. Nothing for `.none`.
    /// On failure, whatever was installed is removed again before the error is thrown.
    func installClientPolicy(routing: ClientRouting, policy: PolicyRouting, table: UInt32,
                             firewallMark: UInt32) throws(TriglavDataPlaneError) {
        try policy.validate()
        let socket = try netlink()
        do {
            for route in Self.tunnelRoutes(routing: routing, assignment: nil, tunIndex: nil, table: table)
                + Self.killSwitchRoutes(routing: routing, table: table) {
                try apply("\(route)") { () throws(NetlinkError) in try socket.addRoute(route, replace: true) }
            }
            for rule in Self.policyRules(routing: routing, policy: policy, table: table, firewallMark: firewallMark) {
                try apply("add rule \(rule)") { () throws(NetlinkError) in try socket.addRule(rule) }
            }
        } catch {
            try? removeRulesAndRoutes(policy, table: table)
            throw error
        }
    }

    /// Sets the tunnel addresses and points the tunnel table's routes at the TUN (`replace`: a route switches in
    /// place, never deleted and re-added, so there is no moment without it). Idempotent; call again with each
    /// new assignment. The rules are `installClientPolicy`'s and stay. A family or prefix the server doesn't
    /// carry stays `unreachable`. If this fails, the previous routes (unreachable, or via the TUN) remain.
    func applyClient(tun: InterfaceName, assignment: TunnelAddresses, routing: ClientRouting,
                     table: UInt32) throws(TriglavDataPlaneError) {
        let socket = try netlink()
        let index = try interfaceIndex(tun, socket)
        let assigned = assignment.all
        // A new IPv4 address in the old one's subnet is added as secondary, and deleting a primary deletes its
        // secondaries too unless they are promoted. Best effort: where /proc/sys is read-only (some containers)
        // the new addresses are added once more after the old ones went.
        var promoted = true
        do {
            try SysctlTree().write("net/ipv4/conf/\(tun.rawValue)/promote_secondaries", "1")
        } catch {
            promoted = false
            logger.warning("could not enable promote_secondaries on \(tun) (\(error)); re-adding the tunnel addresses after removing old ones")
        }
        let addAssigned = { () throws(TriglavDataPlaneError) in
            for address in assigned {
                // nodad: a tentative IPv6 address can't be used as a source for a second or more.
                try self.apply("add \(address) to \(tun)") { () throws(NetlinkError) in
                    try socket.addAddress(address, interfaceIndex: index, flags: address.address.isIPv4 ? [] : [.noDAD], replace: true)
                }
            }
        }
        try addAssigned()
        // Then the previous assignment's global addresses go (link-local ones stay).
        try apply("remove old addresses of \(tun)") { () throws(NetlinkError) in
            _ = try socket.deleteAddresses(interfaceIndex: index) { $0.scope == Scope.universe && !assigned.contains($0.local) }
        }
        if !promoted { try addAssigned() }
        for route in Self.tunnelRoutes(routing: routing, assignment: assignment, tunIndex: index, table: table) {
            try apply("\(route)") { () throws(NetlinkError) in try socket.addRoute(route, replace: true) }
        }
    }

    /// What the tunnel table routes: for `.fullTunnel` the default of each family, for `.split` its prefixes.
    static func tunnelDestinations(_ routing: ClientRouting) -> [IPPrefix] {
        switch routing {
        case .none: []
        case .split(let prefixes): prefixes
        case .fullTunnel: [IPAddress.v4(0), .v6(high: 0, low: 0)].compactMap { try? IPPrefix(address: $0, length: 0) }
        }
    }

    /// The tunnel table's routes: for `.fullTunnel` a default route per family, for `.split` one per prefix.
    /// Through the TUN (`tunIndex`) where the assignment carries the family, else `unreachable` (before the
    /// first assignment, or a family the server assigns no address of): blocked, never sent around the tunnel.
    static func tunnelRoutes(routing: ClientRouting, assignment: TunnelAddresses?, tunIndex: Int32?, table: UInt32) -> [Route] {
        let tag = RoutingConstants.routeProtocol
        return tunnelDestinations(routing).map { destination in
            let carried = destination.address.isIPv4 ? assignment?.ipv4 != nil : assignment?.ipv6 != nil
            if carried, let tunIndex {
                return Route(destination: destination, outputInterface: tunIndex, table: table, protocol: tag)
            }
            return Route(destination: destination, table: table, type: .unreachable, protocol: tag)
        }
    }

    /// Beside each route via the TUN (per family a default for `.fullTunnel`, each prefix for `.split`), the same
    /// destination `unreachable` at the largest metric. Why: when the process dies (kill -9) the kernel deletes the
    /// TUN and with it the routes via it, but the rules stay; without these routes the `not fwmark` rule would find
    /// nothing in the table and fall through to main, so what the tunnel carries would leave in cleartext until the
    /// next start. With them, it is refused (ENETUNREACH) while the daemon is dead. Tagged like the rest: the next
    /// start's cleanup and a clean stop remove them.
    static func killSwitchRoutes(routing: ClientRouting, table: UInt32) -> [Route] {
        tunnelDestinations(routing).map { destination in
            Route(destination: destination, table: table, metric: RoutingConstants.killSwitchMetric, type: .unreachable,
                  protocol: RoutingConstants.routeProtocol)
        }
    }

    /// The policy rules (see `PolicyRouting`): per family the tunnel table has routes of, `not fwmark MARK lookup
    /// TABLE`, and for a full tunnel `lookup main suppress_prefixlength 0`; plus one `to PREFIX lookup main` per
    /// excluded prefix.
    static func policyRules(routing: ClientRouting, policy: PolicyRouting, table: UInt32, firewallMark: UInt32) -> [RoutingRule] {
        let tag = RoutingConstants.routeProtocol
        let routes = tunnelRoutes(routing: routing, assignment: nil, tunIndex: nil, table: table)
        let families = [AddressFamily.ipv4, .ipv6].filter { family in routes.contains { $0.family == family } }
        var rules: [RoutingRule] = []
        for family in families {
            if routing == .fullTunnel {
                rules.append(RoutingRule(family: family, priority: policy.suppressPriority, table: RouteTable.main,
                                         suppressPrefixLength: 0, protocol: tag))
            }
            rules.append(RoutingRule(family: family, priority: policy.tunnelPriority, firewallMark: firewallMark,
                                     table: table, invert: true, protocol: tag))
        }
        for prefix in policy.exclude {
            rules.append(RoutingRule(family: prefix.address.isIPv4 ? .ipv4 : .ipv6, priority: policy.excludePriority,
                                     table: RouteTable.main, protocol: tag, destination: prefix))
        }
        return rules
    }

    /// Removes what `installClientPolicy` and `applyClient` installed (the TUN's own addresses go with the device).
    func removeClient(tun: InterfaceName, policy: PolicyRouting, table: UInt32) {
        do {
            try removeRulesAndRoutes(policy, table: table)
        } catch {
            logger.error("removing the tunnel's rules and routes failed: \(error)")
        }
    }

    /// Deletes every rule and route tagged with our protocol (however many crashed runs left, whatever table and
    /// priorities they used), and untagged rules of our own shapes at this policy's priorities (`isOwnRule`).
    /// Nothing else: a rule of the user's at one of our priorities, or a route of the user's in our table, stays.
    private func removeRulesAndRoutes(_ policy: PolicyRouting, table: UInt32) throws(TriglavDataPlaneError) {
        let socket = try netlink()
        for family in [AddressFamily.ipv4, .ipv6] {
            try apply("delete leftover rules (\(family))") { () throws(NetlinkError) in
                _ = try socket.deleteRules(family: family) { Self.isOwnRule($0, policy: policy, table: table) }
            }
        }
        // Routes always keep their tag (rtm_protocol is in every route message, on every kernel), so the tag
        // alone finds ours; routes via the TUN went with the device anyway.
        try apply("delete leftover routes") { () throws(NetlinkError) in
            _ = try socket.deleteRoutes { $0.protocol == RoutingConstants.routeProtocol }
        }
    }

    /// Whether `rule` is one the client installs: tagged with our protocol, or untagged but at one of this policy's
    /// priorities in one of `policyRules`' shapes: `lookup main suppress_prefixlength 0`, `not fwmark M lookup
    /// TABLE`, or `to PREFIX lookup main` for an excluded prefix. Untagged ones are ours on kernels before 4.17, which
    /// drop a rule's protocol (FRA_PROTOCOL); matching the shape, not just the priority, leaves a user's own rule at
    /// the same number alone. (An exclude an earlier run had and this policy lacks stays on such kernels: it only
    /// sends that prefix through the main table, as without the tunnel.)
    static func isOwnRule(_ rule: RoutingRule, policy: PolicyRouting, table: UInt32) -> Bool {
        if rule.protocol == RoutingConstants.routeProtocol { return true }
        guard rule.protocol ?? 0 == 0, let priority = rule.priority, rule.action == .lookup, rule.source == nil,
              rule.inputInterface == nil, rule.outputInterface == nil else { return false }
        let plain = rule.firewallMark == nil && !rule.invert
        switch priority {
        case policy.suppressPriority:
            return plain && rule.table == RouteTable.main && rule.suppressPrefixLength == 0 && rule.destination == nil
        case policy.tunnelPriority:
            return rule.invert && rule.firewallMark != nil && rule.table == table && rule.suppressPrefixLength == nil
                && rule.destination == nil
        case policy.excludePriority:
            return plain && rule.table == RouteTable.main && rule.suppressPrefixLength == nil
                && rule.destination.map(policy.exclude.contains) == true
        default:
            return false
        }
    }

    // MARK: Server

    /// Addresses the server's TUN device, enables forwarding in this namespace and installs NAT for the
    /// tunnel subnets in the `inet triglav` table (replacing a leftover one): masquerade out of
    /// `outboundInterface` only, or out of every interface but the TUN when it is nil. The sysctls it changes go
    /// through `sysctls`, so `restoreAll()` on stop (or `restoreLeftovers()` at the next start after a crash) puts
    /// them back; nil leaves forwarding alone (`configureNetwork` false). Forwarding already on is the admin's setup
    /// and stays untouched.
    func applyServer(tun: InterfaceName, addresses: [IPPrefix], masquerade: Bool, outboundInterface: InterfaceName? = nil,
                     sysctls: SysctlJournal?) throws(TriglavDataPlaneError) {
        let socket = try netlink()
        let index = try interfaceIndex(tun, socket)
        try apply("set \(tun) up") { () throws(NetlinkError) in try socket.setLink(index: index, up: true) }
        for address in addresses {
            try apply("add \(address) to \(tun)") { () throws(NetlinkError) in
                try socket.addAddress(address, interfaceIndex: index, flags: address.address.isIPv4 ? [] : [.noDAD], replace: true)
            }
        }
        do {
            if let sysctls {
                var forwarding = ["net/ipv4/ip_forward"]
                if addresses.contains(where: { !$0.address.isIPv4 }) { forwarding.append("net/ipv6/conf/all/forwarding") }
                for key in forwarding where (try? sysctls.sysctl.read(key)) != "1" {
                    if key.hasPrefix("net/ipv6/") { keepRouterAdvertisements(besides: tun, sysctls) }
                    try sysctls.write(key, "1")
                }
            }
            removeServerNAT()
            if masquerade { try installServerNAT(tun: tun, addresses: addresses, outboundInterface: outboundInterface) }
            warnAboutDroppingForwardChains(tun: tun)
        } catch {
            // Nothing half-applied stays behind: the caller won't call stop().
            removeServerNAT()
            sysctls?.restoreAll()
            throw error
        }
    }

    /// Sets `accept_ra` from 1 to 2 on every interface (and `default`, for interfaces that appear later) but the TUN,
    /// before IPv6 forwarding goes on, through `sysctls` (restored with it).
    /// Why: with forwarding on, the kernel ignores router advertisements where `accept_ra` is 1 (a router doesn't
    /// take them), and turning `conf/all/forwarding` on at once deletes the RA-learned default routes of every
    /// interface whose `accept_ra` isn't 2. A server configured by SLAAC would lose its IPv6 default route. 2 means
    /// "accept even when forwarding", which is what such a host had before. Values 0 and 2 are the admin's choice
    /// and stay. Best effort: an interface whose value can't be written is logged, forwarding still goes on.
    private func keepRouterAdvertisements(besides tun: InterfaceName, _ sysctls: SysctlJournal) {
        let root = "net/ipv6/conf"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: sysctls.sysctl.path(root)) else { return }
        var changed: [String] = []
        for name in names.sorted() where name != "all" && name != "lo" && name != tun.rawValue {
            let key = "\(root)/\(name)/accept_ra"
            guard (try? sysctls.sysctl.read(key)) == "1" else { continue }
            do throws(TriglavDataPlaneError) {
                try sysctls.write(key, "2")
                changed.append(name)
            } catch {
                logger.warning("could not set \(SysctlJournal.dotted(key)) to 2 (\(error)); with IPv6 forwarding on, \(name) ignores router advertisements")
            }
        }
        if !changed.isEmpty {
            logger.info("""
                IPv6 forwarding goes on: accept_ra set from 1 to 2 on \(changed.joined(separator: ", ")), so SLAAC (router \
                advertisements and the default route they give) keeps working; the kernel ignores them on a forwarding host \
                where accept_ra is 1. Restored on stop.
                """)
        }
    }

    private func installServerNAT(tun: InterfaceName, addresses: [IPPrefix],
                                  outboundInterface: InterfaceName?) throws(TriglavDataPlaneError) {
        let name = tun.rawValue
        var ruleset = "table inet \(RoutingConstants.serverNATTable) {\n"
        ruleset += "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n"
        for address in addresses {
            let network = networkPrefix(address)
            let family = address.address.isIPv4 ? "ip" : "ip6"
            let output = outboundInterface.map { "oifname \"\($0.rawValue)\"" } ?? "oifname != \"\(name)\""
            ruleset += "    \(family) saddr \(network) \(output) masquerade\n"
        }
        ruleset += "  }\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n"
        ruleset += "    iifname \"\(name)\" accept\n    oifname \"\(name)\" ct state established,related accept\n"
        ruleset += "  }\n}\n"
        try run(["nft", "-f", "-"], input: ruleset)
    }

    /// Logs a warning for each other table's forward base chain that drops by default and has no rule naming `tun`.
    /// Why: a packet is forwarded only if every base chain on the forward hook accepts it, so our table's accept
    /// doesn't help against Docker's, ufw's or firewalld's `policy drop`: the clients' traffic would vanish without a
    /// trace. We don't edit another program's firewall (it would rewrite it anyway); the warning says what to add.
    /// A table that names the TUN in any rule is taken as configured for it (ufw and Docker jump to sub-chains).
    /// Best effort: without `nft` JSON output (nftables before 0.9) there is no warning.
    private func warnAboutDroppingForwardChains(tun: InterfaceName) {
        let listing: String
        do {
            listing = try run(["nft", "-j", "list", "ruleset"], quiet: true)
        } catch {
            logger.debug("cannot list the nftables ruleset to look for forward chains that drop (\(error))")
            return
        }
        let chains: [ForwardDropChain]
        do {
            chains = try Self.droppingForwardChains(inRuleset: listing, tun: tun)
        } catch {
            logger.debug("\(error)")
            return
        }
        for chain in chains {
            logger.warning("""
                nftables chain '\(chain.family) \(chain.table) \(chain.name)' (forward hook, priority \(chain.priority)) drops \
                by default and has no rule for \(tun): it drops the clients' forwarded traffic, whatever table inet \
                \(RoutingConstants.serverNATTable) accepts. Allow the tunnel there: nft insert rule \(chain.family) \(chain.table) \
                \(chain.name) iifname "\(tun)" accept; nft insert rule \(chain.family) \(chain.table) \(chain.name) \
                oifname "\(tun)" ct state established,related accept (ufw: ufw route allow in on \(tun); Docker: the same rules \
                in chain DOCKER-USER; firewalld: put \(tun) in a zone that may forward). See docs/INSTALL.md, "Server role".
                """)
        }
    }

    /// A base chain on the forward hook whose policy is drop, in a table other than ours.
    struct ForwardDropChain: Equatable, Sendable {
        var family: String
        var table: String
        var name: String
        var priority: Int
    }

    /// The chains `warnAboutDroppingForwardChains` warns about, from `nft -j list ruleset` output: forward-hook base
    /// chains of the ip, ip6 and inet families with policy drop, outside our table, in tables with no rule whose
    /// expression names `tun`.
    static func droppingForwardChains(inRuleset json: String, tun: InterfaceName) throws(TriglavDataPlaneError) -> [ForwardDropChain] {
        guard let root = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
              let objects = root["nftables"] as? [[String: Any]] else {
            throw .routingCommand(command: "nft -j list ruleset", status: 0, output: "not the JSON ruleset expected: \(json.prefix(120))")
        }
        var chains: [ForwardDropChain] = []
        var tablesNamingTun: Set<String> = []
        let quotedTun = "\"\(tun.rawValue)\""
        for object in objects {
            if let chain = object["chain"] as? [String: Any] {
                guard let family = chain["family"] as? String, ["ip", "ip6", "inet"].contains(family),
                      let table = chain["table"] as? String, let name = chain["name"] as? String,
                      chain["hook"] as? String == "forward", chain["policy"] as? String == "drop",
                      !(family == "inet" && table == RoutingConstants.serverNATTable) else { continue }
                chains.append(ForwardDropChain(family: family, table: table, name: name, priority: chain["prio"] as? Int ?? 0))
            } else if let rule = object["rule"] as? [String: Any], let family = rule["family"] as? String,
                      let table = rule["table"] as? String, let expression = rule["expr"],
                      let data = try? JSONSerialization.data(withJSONObject: expression),
                      String(decoding: data, as: UTF8.self).contains(quotedTun) {
                tablesNamingTun.insert("\(family) \(table)")
            }
        }
        return chains.filter { !tablesNamingTun.contains("\($0.family) \($0.table)") }
    }

    /// Deletes the server's nftables table (no error when absent).
    func removeServerNAT() {
        _ = try? run(["nft", "delete", "table", "inet", RoutingConstants.serverNATTable], quiet: true)
    }

    private func networkPrefix(_ prefix: IPPrefix) -> String {
        let bytes = prefix.address.bytes
        var masked = bytes
        var remaining = prefix.length
        for index in 0..<masked.count {
            let bits = min(8, max(0, remaining))
            masked[index] = bytes[index] & UInt8(truncatingIfNeeded: 0xff << (8 - bits))
            remaining -= 8
        }
        guard let address = IPAddress(bytes: masked) else { return "\(prefix)" }
        return "\(address)/\(prefix.length)"
    }

    // MARK: Running tools

    @discardableResult
    private func run(_ arguments: [String], input: String? = nil, quiet: Bool = false) throws(TriglavDataPlaneError) -> String {
        let command = arguments.joined(separator: " ")
        let (status, text) = ExternalCommand.run(arguments, input: input)
        guard status == 0 else {
            if !quiet { logger.debug("\(command) failed: \(text)") }
            throw .routingCommand(command: command, status: status, output: text)
        }
        logger.trace("\(command)")
        return text
    }
}
