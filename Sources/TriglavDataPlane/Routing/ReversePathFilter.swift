import Foundation
import Logging
import TriglavCore

/// Keeps strict reverse-path filtering from dropping what the server sends to the client's uplinks.
///
/// Why: with `rp_filter=1` (strict; CIS-hardened hosts, some distributions) the kernel accepts a packet only if the
/// route back to its source leaves through the interface it arrived on. A multipath client receives from the same
/// server address on every uplink, yet at most one of them is the route back: the main table's default route goes
/// through one uplink, and in full-tunnel mode the lookup (unmarked: `src_valid_mark` is 0) even ends at the tunnel
/// table's default route via the TUN. So every uplink but one (all of them, in full-tunnel mode) drops the server's
/// replies. Loose mode (2) accepts a source any route leads to, which still drops unroutable (spoofed, martian)
/// sources; `src_valid_mark` would not help, since incoming packets carry no mark and a marked lookup still picks
/// one uplink. The effective mode is the larger of `conf/all` and `conf/IFACE`, so writing 2 to `conf/IFACE` is
/// enough and leaves every other interface alone.
///
/// The changes go through a `SysctlJournal` (state file `rp_filter.state`), so the next start after a crash (kill -9)
/// puts the previous values back (`restoreLeftovers`). Thread-safe.
final class ReversePathFilterGuard: Sendable {
    /// rp_filter values (Documentation/networking/ip-sysctl.rst): 1 strict, 2 loose.
    static let strict = 1
    static let loose = 2
    static let stateFileName = "rp_filter.state"

    let journal: SysctlJournal
    private let logger: Logger

    init(stateDirectory: String?, sysctl: SysctlTree = SysctlTree(), logger: Logger) {
        journal = SysctlJournal(stateFile: stateDirectory.map { "\($0)/\(Self.stateFileName)" },
                                subject: "rp_filter values loosened on uplinks", sysctl: sysctl, logger: logger)
        self.logger = logger
    }

    static func key(_ interface: String) -> String { "net/ipv4/conf/\(interface)/rp_filter" }

    /// The uplinks loosened now, sorted.
    var loosenedInterfaces: [String] {
        journal.currentChanges.keys.compactMap { key in
            let parts = key.split(separator: "/")
            return parts.count == 5 ? String(parts[3]) : nil
        }.sorted()
    }

    /// Sets `interface` to loose mode if its effective mode is strict. Failures are logged, not thrown: the tunnel
    /// still works on an interface whose source check passes (and the log says why one doesn't).
    func loosen(_ interface: InterfaceName) {
        let name = interface.rawValue
        let sysctl = journal.sysctl
        do throws(TriglavDataPlaneError) {
            let all = try sysctl.readInteger(Self.key("all"))
            let own = try sysctl.readInteger(Self.key(name))
            guard max(all, own) == Self.strict else { return }
            // An interface that vanished and came back starts from conf/default again; the journal keeps the first
            // value it saw as the one to restore.
            let known = journal.currentChanges[Self.key(name)] != nil
            try journal.write(Self.key(name), String(Self.loose))
            if known {
                logger.debug("uplink \(name) is back with strict rp_filter; loose again")
            } else {
                logger.info("""
                    uplink \(name): reverse-path filter is strict (net.ipv4.conf.all.rp_filter=\(all), \
                    net.ipv4.conf.\(name).rp_filter=\(own)), which drops the server's packets on every uplink but the one \
                    the route back to the server uses; set net.ipv4.conf.\(name).rp_filter=2 (loose) while the tunnel uses \
                    it, restored when the uplink goes
                    """)
            }
        } catch {
            logger.warning("uplink \(name): cannot check or loosen its reverse-path filter (\(error)); if it is strict, the server's replies on it are dropped")
        }
    }

    /// Puts back what `loosen` changed on `interface` (nothing if it changed nothing).
    func restore(_ interface: InterfaceName) { journal.restore(Self.key(interface.rawValue)) }

    /// Puts back every change (on stop).
    func restoreAll() { journal.restoreAll() }

    /// Puts back the changes a crashed run recorded, then removes the record.
    func restoreLeftovers() { journal.restoreLeftovers() }
}
