#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization
import TriglavCore
import TriglavDataPlane

/// Keeps the data caps' period usage in a small text file in the daemon's state directory
/// (`$STATE_DIRECTORY`, which systemd's `StateDirectory=triglav` sets to /var/lib/triglav), so a restart or
/// reboot doesn't hand a capped uplink a fresh allowance.
///
/// Format (version 1), one line per capped interface after the header, written whole each time:
/// ```
/// triglav-data-caps 1
/// wwan0 672 1234567        # interface, billing period (months since 1970), bytes used both ways
/// ```
/// Writes are atomic (a temporary file in the same directory, fsync, rename), skipped when nothing changed,
/// and at most one per `writeInterval` unless forced (clean exit, disconnect). Failures are logged, never
/// fatal: a missing or read-only directory only costs the persistence. A file that doesn't parse is
/// logged and ignored (the period then counts from zero) and replaced by the next write.
///
/// Thread safety: `save` may be called from any thread; writes are serialized.
public final class DataCapStore: Sendable {
    /// Least time between two unforced writes, seconds: bounds the write rate while traffic flows
    /// (and what a crash can lose).
    public static let writeInterval: Int64 = 5
    static let header = "triglav-data-caps 1"
    /// A file larger than this isn't ours (one line per capped interface).
    static let maximumFileSize = 64 * 1024

    public let path: String
    private let logger: Logger
    private let written = Mutex<Written>(Written())

    private struct Written {
        var text: String?
        var at: Int64?
        /// The last write failed: the next failure is logged at debug level only.
        var failing = false
    }

    public init(path: String, logger: Logger = Logger(label: "triglav.daemon.datacaps")) {
        self.path = path
        self.logger = logger
    }

    /// The store in `directory`, the daemon's state directory.
    public convenience init(directory: String, logger: Logger = Logger(label: "triglav.daemon.datacaps")) {
        self.init(path: (directory.hasSuffix("/") ? directory : directory + "/") + "data-caps", logger: logger)
    }

    /// The daemon's state directory: the first entry of `$STATE_DIRECTORY` (systemd's `StateDirectory=`),
    /// else /var/lib/triglav.
    public static func stateDirectory(environment value: String?) -> String {
        DataPlaneStateDirectory.resolve(environment: value)
    }

    // MARK: Reading

    /// What the file holds; empty when it is missing, unreadable or corrupt (logged).
    func load() -> [String: DataCapLedger.Entry] {
        let text: String
        switch TextFile.read(path, maximumSize: Self.maximumFileSize) {
        case .success(let read): text = read
        case .failure(.missing): return [:]
        case .failure(.unreadable(let reason)):
            logger.warning("data cap usage in \(path) ignored: \(reason); capped uplinks count this period from zero")
            return [:]
        }
        guard let (entries, absurd) = Self.parse(text) else {
            logger.warning("data cap usage in \(path) ignored: not a \(Self.header) file; capped uplinks count this period from zero")
            return [:]
        }
        for line in absurd {
            logger.warning("data cap usage line '\(line)' in \(path) ignored: more than \(Self.maximumSpent) bytes can't be real; that uplink counts this period from zero")
        }
        written.withLock { $0.text = text }
        return entries
    }

    /// Usage above this (2^60 bytes, an exabyte) is no real count: a damaged or hand-edited file.
    static let maximumSpent: UInt64 = 1 << 60

    /// The entries of `text` and the lines skipped for an absurd usage (above `maximumSpent`), or nil when any
    /// line is malformed (a torn or foreign file is not half-trusted).
    static func parse(_ text: String) -> (entries: [String: DataCapLedger.Entry], absurd: [String])? {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        guard lines.first == Substring(header) else { return nil }
        lines.removeFirst()
        var entries: [String: DataCapLedger.Entry] = [:]
        var absurd: [String] = []
        for line in lines {
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count == 3, (try? InterfaceName(String(fields[0]))) != nil,
                  let period = Int(fields[1]), period >= 0, let spent = UInt64(fields[2]),
                  entries[String(fields[0])] == nil else { return nil }
            guard spent <= maximumSpent else {
                absurd.append(String(line))
                continue
            }
            entries[String(fields[0])] = DataCapLedger.Entry(period: period, spent: spent)
        }
        return (entries, absurd)
    }

    static func format(_ entries: [String: DataCapLedger.Entry]) -> String {
        entries.sorted { $0.key < $1.key }.reduce(header + "\n") { text, item in
            text + "\(item.key) \(item.value.period) \(item.value.spent)\n"
        }
    }

    // MARK: Writing

    /// Writes `entries` unless they are what the file already holds, or (unless `force`) the last write
    /// was less than `writeInterval` ago at wall-clock second `now`.
    func save(_ entries: [String: DataCapLedger.Entry], now: Int64, force: Bool = false) {
        let text = Self.format(entries)
        written.withLock { written in
            if written.text == text { return }
            if written.text == nil, entries.isEmpty { return }  // nothing counted yet: don't create a file
            if !force, let at = written.at, abs(now - at) < Self.writeInterval { return }
            written.at = now
            if let failure = TextFile.writeAtomically(text, to: path) {
                if written.failing {
                    logger.debug("writing data cap usage to \(path) failed again: \(failure)")
                } else {
                    logger.warning("can't write data cap usage to \(path): \(failure); it will count from zero after a restart")
                }
                written.failing = true
                return
            }
            written.failing = false
            written.text = text
        }
    }
}
