import Foundation
import Logging
import Synchronization
import TriglavCore

/// Reads and writes sysctls under a root (`/proc/sys` of the current network namespace; a plain directory in
/// unit tests). Values are the trimmed file contents.
struct SysctlTree: Sendable {
    var root: String = "/proc/sys"

    func path(_ key: String) -> String { "\(root)/\(key)" }

    func read(_ key: String) throws(TriglavDataPlaneError) -> String {
        do {
            return try String(contentsOfFile: path(key), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            throw .sysctl(path: path(key), reason: "cannot read it: \(error.localizedDescription)")
        }
    }

    func readInteger(_ key: String) throws(TriglavDataPlaneError) -> Int {
        let text = try read(key)
        guard let value = Int(text) else { throw .sysctl(path: path(key), reason: "'\(text)' is not a number") }
        return value
    }

    func write(_ key: String, _ value: String) throws(TriglavDataPlaneError) {
        do {
            try value.write(toFile: path(key), atomically: false, encoding: .utf8)
        } catch {
            throw .sysctl(path: path(key), reason: "cannot write \(value): \(error.localizedDescription)")
        }
    }

    func exists(_ key: String) -> Bool { FileManager.default.fileExists(atPath: path(key)) }
}

/// Where the data plane keeps what must outlive a crash of the process: `$STATE_DIRECTORY` (set by systemd's
/// `StateDirectory=triglav`; the first entry if it lists several), else /var/lib/triglav, the daemon's state directory.
public enum DataPlaneStateDirectory {
    public static var `default`: String { resolve(environment: ProcessInfo.processInfo.environment["STATE_DIRECTORY"]) }

    /// The first entry of a `$STATE_DIRECTORY` value when it is an absolute path, else /var/lib/triglav (the daemon's
    /// data caps use the same rule, `DataCapStore.stateDirectory`).
    public static func resolve(environment value: String?) -> String {
        if let value, let first = value.split(separator: ":").first, first.hasPrefix("/") { return String(first) }
        return "/var/lib/triglav"
    }
}

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
/// Each change is written ahead to a state file (`stateFile`) before the sysctl, with the boot it was made in, so
/// the next start after a crash (kill -9) puts the previous values back (`restoreLeftovers`). A value someone else
/// changed since is left alone, and so is a file from an earlier boot (the kernel reset the sysctls then).
/// Thread-safe; the sysctl and file writes happen under one lock (they are rare and short).
final class ReversePathFilterGuard: Sendable {
    /// A change this guard made: `conf/interface/rp_filter` was `previous` and is now `written`.
    struct Change: Equatable, Sendable {
        var interface: String
        var previous: Int
        var written: Int
    }

    /// rp_filter values (Documentation/networking/ip-sysctl.rst): 1 strict, 2 loose.
    static let strict = 1
    static let loose = 2
    static let stateFileName = "rp_filter.state"

    let sysctl: SysctlTree
    /// The file the changes are recorded in; nil records nothing (a crash then leaves the uplinks loose).
    let stateFile: String?
    private let logger: Logger
    private let changes = Mutex<[String: Change]>([:])

    init(stateDirectory: String?, sysctl: SysctlTree = SysctlTree(), logger: Logger) {
        self.sysctl = sysctl
        self.stateFile = stateDirectory.map { "\($0)/\(Self.stateFileName)" }
        self.logger = logger
    }

    private static func key(_ interface: String) -> String { "net/ipv4/conf/\(interface)/rp_filter" }

    /// The changes in effect, by interface.
    var currentChanges: [String: Change] { changes.withLock { $0 } }

    /// Sets `interface` to loose mode if its effective mode is strict. Failures are logged, not thrown: the tunnel
    /// still works on an interface whose source check passes (and the log says why one doesn't).
    func loosen(_ interface: InterfaceName) {
        let name = interface.rawValue
        changes.withLock { changes in
            do throws(TriglavDataPlaneError) {
                let all = try sysctl.readInteger(Self.key("all"))
                let own = try sysctl.readInteger(Self.key(name))
                guard max(all, own) == Self.strict else { return }
                let known = changes[name]
                // An interface that vanished and came back starts from conf/default again; the value to restore is
                // still the first one seen.
                let change = Change(interface: name, previous: known?.previous ?? own, written: Self.loose)
                changes[name] = change
                persist(changes)
                do throws(TriglavDataPlaneError) {
                    try sysctl.write(Self.key(name), String(Self.loose))
                } catch {
                    // Nothing changed, so nothing to restore: forget it again unless an earlier write stands.
                    if known == nil {
                        changes[name] = nil
                        persist(changes)
                    }
                    throw error
                }
                if known == nil {
                    logger.info("""
                        uplink \(name): reverse-path filter is strict (net.ipv4.conf.all.rp_filter=\(all), \
                        net.ipv4.conf.\(name).rp_filter=\(own)), which drops the server's packets on every uplink but the one \
                        the route back to the server uses; set net.ipv4.conf.\(name).rp_filter=2 (loose) while the tunnel uses \
                        it, restored when the uplink goes
                        """)
                } else {
                    logger.debug("uplink \(name) is back with strict rp_filter; loose again")
                }
            } catch {
                logger.warning("uplink \(name): cannot check or loosen its reverse-path filter (\(error)); if it is strict, the server's replies on it are dropped")
            }
        }
    }

    /// Puts back what `loosen` changed on `interface` (nothing if it changed nothing).
    func restore(_ interface: InterfaceName) {
        changes.withLock { changes in
            guard let change = changes.removeValue(forKey: interface.rawValue) else { return }
            restore(change)
            persist(changes)
        }
    }

    /// Puts back every change (on stop).
    func restoreAll() {
        changes.withLock { changes in
            for change in changes.values.sorted(by: { $0.interface < $1.interface }) { restore(change) }
            changes = [:]
            persist(changes)
        }
    }

    /// Puts back the changes a crashed run recorded in the state file, then removes it. A missing file means there is
    /// nothing to do; a garbled one is reported and removed (its good lines are still restored).
    func restoreLeftovers() {
        guard let stateFile else { return }
        changes.withLock { _ in
            guard FileManager.default.fileExists(atPath: stateFile) else { return }
            defer { removeStateFile() }
            let text: String
            do {
                text = try String(contentsOfFile: stateFile, encoding: .utf8)
            } catch {
                logger.warning("cannot read \(stateFile) (\(error.localizedDescription)); rp_filter values a crashed run changed stay as they are")
                return
            }
            let parsed = Self.parse(text)
            for problem in parsed.problems { logger.warning("\(stateFile): \(problem); that line is ignored") }
            guard let recordedBoot = parsed.boot else {
                logger.warning("\(stateFile) names no boot; rp_filter values a crashed run changed stay as they are")
                return
            }
            guard recordedBoot == currentBootID() else {
                logger.info("\(stateFile) is from an earlier boot, whose rp_filter changes the reboot undid; removed")
                return
            }
            for change in parsed.changes {
                logger.info("restoring rp_filter of \(change.interface) changed by a run that did not stop cleanly")
                restore(change)
            }
        }
    }

    /// Writes `change.previous` back if the value is still the one we wrote (someone else's later change stays).
    private func restore(_ change: Change) {
        let key = Self.key(change.interface)
        guard sysctl.exists(key) else {
            logger.debug("\(change.interface) is gone; its rp_filter went with it")
            return
        }
        do throws(TriglavDataPlaneError) {
            let current = try sysctl.readInteger(key)
            guard current == change.written else {
                logger.info("rp_filter of \(change.interface) is \(current) now, not the \(change.written) we set; left as it is")
                return
            }
            try sysctl.write(key, String(change.previous))
            logger.info("net.ipv4.conf.\(change.interface).rp_filter restored to \(change.previous)")
        } catch {
            logger.error("restoring rp_filter of \(change.interface) to \(change.previous) failed: \(error)")
        }
    }

    private func currentBootID() -> String? { try? sysctl.read("kernel/random/boot_id") }

    /// Records `changes` in the state file (removes it when there are none). Written before the sysctl it covers, so
    /// a crash in between at worst restores a value that was never changed. A failure is logged: the tunnel works
    /// anyway, only a crash would then leave the uplinks loose.
    private func persist(_ changes: [String: Change]) {
        guard let stateFile else { return }
        guard !changes.isEmpty else { return removeStateFile() }
        do {
            let directory = (stateFile as NSString).deletingLastPathComponent
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            try Self.serialize(changes.values.sorted { $0.interface < $1.interface }, boot: currentBootID() ?? "unknown")
                .write(toFile: stateFile, atomically: true, encoding: .utf8)
        } catch {
            logger.warning("cannot record the rp_filter changes in \(stateFile) (\(error.localizedDescription)); after a crash they stay")
        }
    }

    private func removeStateFile() {
        guard let stateFile, FileManager.default.fileExists(atPath: stateFile) else { return }
        do {
            try FileManager.default.removeItem(atPath: stateFile)
        } catch {
            logger.warning("cannot remove \(stateFile): \(error.localizedDescription)")
        }
    }

    // MARK: State file format

    /// `# comment`, `boot BOOT_ID`, then one `INTERFACE PREVIOUS WRITTEN` line per change.
    static func serialize(_ changes: [Change], boot: String) -> String {
        var text = "# rp_filter values triglav changed on uplinks; the next start restores them after a crash\n"
        text += "boot \(boot)\n"
        for change in changes { text += "\(change.interface) \(change.previous) \(change.written)\n" }
        return text
    }

    /// The boot ID, the well-formed changes, and a description of every other line.
    static func parse(_ text: String) -> (boot: String?, changes: [Change], problems: [String]) {
        var boot: String?
        var changes: [Change] = []
        var problems: [String] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            if fields.isEmpty || fields[0].hasPrefix("#") { continue }
            if fields.count == 2, fields[0] == "boot" {
                boot = fields[1]
                continue
            }
            guard fields.count == 3, (try? InterfaceName(fields[0])) != nil,
                  let previous = Int(fields[1]), (0...2).contains(previous),
                  let written = Int(fields[2]), (0...2).contains(written) else {
                problems.append("line \(number + 1) ('\(line.prefix(80))') is not 'INTERFACE PREVIOUS WRITTEN' with values 0 to 2")
                continue
            }
            changes.append(Change(interface: fields[0], previous: previous, written: written))
        }
        return (boot, changes, problems)
    }
}
