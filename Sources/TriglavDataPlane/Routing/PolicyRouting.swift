public import Logging
import TriglavCore

/// Where a client tunnel's policy routing lives: its routing table, its three consecutive rule priorities,
/// and the prefixes that bypass the tunnel. Everything installed from it carries the protocol tag
/// `RoutingConstants.routeProtocol`, so a later run finds the leftovers of a crashed one even when the
/// table or priorities were changed in between.
///
/// Rules, in the order the kernel consults them (like wg-quick's, plus the excludes ahead of them):
/// - `rulePriority`: `to PREFIX lookup main`, one per excluded prefix;
/// - `rulePriority + 1`: `lookup main suppress_prefixlength 0` (full tunnel only: the main table's
///   specific routes, such as the uplinks' own subnets, still win over the tunnel's default route);
/// - `rulePriority + 2`: `not fwmark MARK lookup TABLE` (the uplink sockets carry MARK, so the tunnel's
///   own packets never enter it).
public struct PolicyRouting: Sendable, Equatable {
    /// Routing table of the tunnel routes; nil uses the firewall mark's number (the data plane's default).
    public var table: UInt32?
    /// The first of the three priorities above; at most `highestRulePriority`.
    public var rulePriority: UInt32
    /// Prefixes that never enter the tunnel: they are looked up in the main table first. A prefix the main
    /// table has no route for falls through to the tunnel, as with wg-quick.
    public var exclude: [IPPrefix]

    /// The last priority used is `rulePriority + 2`, which must sort before the kernel's main rule (32766).
    public static let highestRulePriority: UInt32 = 32_763

    public init(table: UInt32? = nil, rulePriority: UInt32 = RoutingConstants.excludeRulePriority, exclude: [IPPrefix] = []) {
        self.table = table
        self.rulePriority = rulePriority
        self.exclude = exclude
    }

    var excludePriority: UInt32 { rulePriority }
    var suppressPriority: UInt32 { rulePriority + 1 }
    var tunnelPriority: UInt32 { rulePriority + 2 }
    var priorities: Set<UInt32> { [excludePriority, suppressPriority, tunnelPriority] }

    /// Checks what the kernel can't be trusted to refuse clearly.
    func validate() throws(TriglavDataPlaneError) {
        guard rulePriority >= 1, rulePriority <= Self.highestRulePriority else {
            throw .invalidConfiguration("rule priority \(rulePriority) must be 1 to \(Self.highestRulePriority): "
                + "the tunnel uses it and the next two, all before the kernel's main rule (32766)")
        }
        if let table, [0, 253, 254, 255].contains(table) {
            throw .invalidConfiguration("routing table \(table) is reserved by the kernel; pick another number")
        }
    }
}

extension PolicyRouting {
    /// Removes the rules and routes a crashed (kill -9) client left, found by their protocol tag whatever
    /// table and priorities that run used, before any tunnel exists. `ClientTunnel.start()` does the same;
    /// this is for a daemon that starts without connecting, so the leftovers don't wait for a Connect.
    /// Also puts back the uplinks' rp_filter values that run loosened (recorded in `stateDirectory`).
    public func removeLeftovers(firewallMark: UInt32, stateDirectory: String? = DataPlaneStateDirectory.default,
                                logger: Logger) throws(TriglavDataPlaneError) {
        ReversePathFilterGuard(stateDirectory: stateDirectory, logger: logger).restoreLeftovers()
        try RouteManager(logger: logger).removeClientLeftovers(self, table: table ?? firewallMark)
    }
}

extension ClientTunnelConfiguration {
    /// `policyRouting` plus the server's own address as an exclude (`to SERVER lookup main`) whenever the client
    /// installs rules (full and split tunnel). Why: with reverse-path filtering on (`rp_filter` 1 or 2: systemd's
    /// default is 2), the kernel checks every packet from the server by looking up the route back to the server
    /// without the uplinks' mark, which otherwise ends in the tunnel table. Before the first handshake that holds
    /// `unreachable`, so the check drops the handshake response itself and the tunnel never comes up (afterwards the
    /// route via the TUN fails strict mode). Through the main table the check finds the uplink route to the server.
    /// Traffic to the server's address from other programs then leaves outside the tunnel too, as with OpenVPN's
    /// host route to its server (docs/DATAPLANE.md, "Reverse-path filtering").
    var installedPolicyRouting: PolicyRouting {
        var policy = policyRouting
        guard routing != .none, let host = try? IPPrefix(address: server.address, length: server.address.isIPv4 ? 32 : 128),
              !policy.exclude.contains(host) else { return policy }
        policy.exclude.append(host)
        return policy
    }
}
