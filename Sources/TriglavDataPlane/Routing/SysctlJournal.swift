import Foundation
import Logging
import Synchronization
import TriglavCore

/// Reads and writes sysctls under a root (`/proc/sys` of the current network namespace; a plain directory in
/// unit tests). Keys are paths below it (`net/ipv4/ip_forward`); values are the trimmed file contents.
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

/// Sysctl changes that must not outlive the process: each is written ahead to a state file, with the boot it was made
/// in, before the sysctl itself, so the next start after a crash (kill -9) puts the previous values back
/// (`restoreLeftovers`). A value someone else changed since is left alone, and so is a file from an earlier boot (the
/// kernel reset the sysctls then). Used for the client's loosened rp_filter (`ReversePathFilterGuard`) and the server's
/// forwarding and accept_ra (`RouteManager.applyServer`).
/// Thread-safe; the sysctl and file writes happen under one lock (they are rare and short).
final class SysctlJournal: Sendable {
    /// `key` was `previous` (the first value seen) and is now `written`.
    struct Change: Equatable, Sendable {
        var key: String
        var previous: String
        var written: String
    }

    let sysctl: SysctlTree
    /// The file the changes are recorded in; nil records nothing (a crash then leaves them).
    let stateFile: String?
    /// What the changes are, for log lines and the file's comment ("rp_filter values loosened on uplinks").
    private let subject: String
    private let logger: Logger
    private let changes = Mutex<[String: Change]>([:])

    init(stateFile: String?, subject: String, sysctl: SysctlTree = SysctlTree(), logger: Logger) {
        self.stateFile = stateFile
        self.subject = subject
        self.sysctl = sysctl
        self.logger = logger
    }

    /// The changes in effect, by key.
    var currentChanges: [String: Change] { changes.withLock { $0 } }

    /// Writes `value` to `key`, recorded ahead with the value found there first (a key written again keeps its first
    /// previous value, so a restore goes back to before this process touched it). A failed write records nothing
    /// new. Returns the value that was there before this write.
    @discardableResult
    func write(_ key: String, _ value: String) throws(TriglavDataPlaneError) -> String {
        try changes.withLock { changes throws(TriglavDataPlaneError) -> String in
            let current = try sysctl.read(key)
            let known = changes[key]
            changes[key] = Change(key: key, previous: known?.previous ?? current, written: value)
            persist(changes)
            do throws(TriglavDataPlaneError) {
                try sysctl.write(key, value)
            } catch {
                changes[key] = known
                persist(changes)
                throw error
            }
            return current
        }
    }

    /// Puts back what was written to `key` (nothing if nothing was).
    func restore(_ key: String) {
        changes.withLock { changes in
            guard let change = changes.removeValue(forKey: key) else { return }
            restore(change)
            persist(changes)
        }
    }

    /// Puts back every change, in key order (on stop).
    func restoreAll() {
        changes.withLock { changes in
            for change in changes.values.sorted(by: { $0.key < $1.key }) { restore(change) }
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
                logger.warning("cannot read \(stateFile) (\(error.localizedDescription)); \(subject) a crashed run changed stay as they are")
                return
            }
            let parsed = Self.parse(text)
            for problem in parsed.problems { logger.warning("\(stateFile): \(problem); that line is ignored") }
            guard let recordedBoot = parsed.boot else {
                logger.warning("\(stateFile) names no boot; \(subject) a crashed run changed stay as they are")
                return
            }
            guard recordedBoot == currentBootID() else {
                logger.info("\(stateFile) is from an earlier boot, whose changes the reboot undid; removed")
                return
            }
            for change in parsed.changes {
                logger.info("restoring \(Self.dotted(change.key)), changed by a run that did not stop cleanly")
                restore(change)
            }
        }
    }

    /// `net.ipv4.conf.eth0.rp_filter` for `net/ipv4/conf/eth0/rp_filter` (as sysctl(8) names it).
    static func dotted(_ key: String) -> String { key.replacingOccurrences(of: "/", with: ".") }

    /// Writes `change.previous` back if the value is still the one we wrote (someone else's later change stays).
    private func restore(_ change: Change) {
        let name = Self.dotted(change.key)
        guard sysctl.exists(change.key) else {
            logger.debug("\(name) is gone (its interface went); nothing to restore")
            return
        }
        do throws(TriglavDataPlaneError) {
            let current = try sysctl.read(change.key)
            guard current == change.written else {
                logger.info("\(name) is \(current) now, not the \(change.written) we set; left as it is")
                return
            }
            try sysctl.write(change.key, change.previous)
            logger.info("\(name) restored to \(change.previous)")
        } catch {
            logger.error("restoring \(name) to \(change.previous) failed: \(error)")
        }
    }

    private func currentBootID() -> String? { try? sysctl.read("kernel/random/boot_id") }

    /// Records `changes` in the state file (removes it when there are none). Written before the sysctl it covers, so
    /// a crash in between at worst restores a value that was never changed. A failure is logged: everything works
    /// anyway, only a crash would then leave the changes behind.
    private func persist(_ changes: [String: Change]) {
        guard let stateFile else { return }
        guard !changes.isEmpty else { return removeStateFile() }
        do {
            let directory = (stateFile as NSString).deletingLastPathComponent
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            try Self.serialize(changes.values.sorted { $0.key < $1.key }, boot: currentBootID() ?? "unknown", subject: subject)
                .write(toFile: stateFile, atomically: true, encoding: .utf8)
        } catch {
            logger.warning("cannot record the \(subject) in \(stateFile) (\(error.localizedDescription)); after a crash they stay")
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

    /// `# comment`, `boot BOOT_ID`, then one `KEY PREVIOUS WRITTEN` line per change.
    static func serialize(_ changes: [Change], boot: String, subject: String) -> String {
        var text = "# \(subject) triglav changed; the next start restores them after a crash\n"
        text += "boot \(boot)\n"
        for change in changes { text += "\(change.key) \(change.previous) \(change.written)\n" }
        return text
    }

    /// The boot ID, the well-formed changes, and a description of every other line. A key is a relative sysctl path
    /// (no `..`); a value one word of letters, digits and `-` (what these sysctls hold).
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
            guard fields.count == 3, isKey(fields[0]), isValue(fields[1]), isValue(fields[2]) else {
                problems.append("line \(number + 1) ('\(line.prefix(80))') is not 'KEY PREVIOUS WRITTEN' (a sysctl path and two values)")
                continue
            }
            changes.append(Change(key: fields[0], previous: fields[1], written: fields[2]))
        }
        return (boot, changes, problems)
    }

    private static func isKey(_ text: String) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        return parts.count >= 2 && parts.allSatisfy { part in
            !part.isEmpty && part != "." && part != ".."
                && part.unicodeScalars.allSatisfy { $0.properties.isAlphabetic && $0.isASCII || ("0"..."9").contains($0) || "._-@:".unicodeScalars.contains($0) }
        }
    }

    private static func isValue(_ text: String) -> Bool {
        (1...32).contains(text.count)
            && text.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-") }
    }
}
