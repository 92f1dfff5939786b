internal import CTriglavShims
public import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A swift-log handler that writes structured entries to the systemd journal (native protocol via
/// sd_journal_sendv). Metadata becomes journal fields: `uplink`, `interface`, `session` turn into
/// UPLINK=, INTERFACE=, SESSION= (INTERFACE= is what systemd-networkd uses too), so
/// `journalctl INTERFACE=wlan0` works. If the journal cannot be reached, the entry goes to stderr.
///
/// Value type, as swift-log requires; the sink is shared and thread-safe.
public struct JournalLogHandler: LogHandler {
    /// Sends one entry made of `KEY=value` fields; returns 0 or -errno.
    public typealias Sink = @Sendable ([String]) -> Int32

    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level
    public let label: String
    public let identifier: String
    private let sink: Sink

    /// `identifier` becomes SYSLOG_IDENTIFIER (what `journalctl -t` filters on), e.g. "triglavd".
    public init(label: String, identifier: String, logLevel: Logger.Level = .info,
                metadataProvider: Logger.MetadataProvider? = nil, sink: Sink? = nil) {
        self.label = label
        self.identifier = identifier
        self.logLevel = logLevel
        self.metadataProvider = metadataProvider
        self.sink = sink ?? JournalLogHandler.sendToJournal
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let fields = JournalLogHandler.fields(identifier: identifier, label: label, level: event.level,
                                              message: event.message.description, metadata: merged,
                                              file: event.file, function: event.function, line: event.line)
        // libsystemd drops entries silently when journald is not running; a negative result means the
        // entry itself was refused (e.g. too large), so it is not lost but written to stderr.
        if sink(fields) < 0 {
            JournalLogHandler.writeToStandardError(JournalLogHandler.fallbackLine(
                label: label, level: event.level, message: event.message.description, metadata: merged))
        }
    }

    /// Journal priorities (syslog levels) for swift-log levels.
    public static func priority(of level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// Fields the handler itself sets; metadata keys that map onto them get a TRIGLAV_ prefix instead.
    static let reservedFields: Set<String> = ["MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "CODE_FILE", "CODE_LINE",
                                              "CODE_FUNC", "TRIGLAV_LOGGER", "MESSAGE_ID", "ERRNO"]

    /// The journal field name for a metadata key: upper-cased, anything outside [A-Z0-9_] replaced by
    /// "_", prefixed with TRIGLAV_ when it would start with a digit or "_" (the journal reserves those
    /// for trusted fields) or collide with a field the handler sets; at most 64 characters.
    public static func fieldName(forMetadataKey key: String) -> String {
        var name = String(key.uppercased().map { character -> Character in
            character.isASCII && (character.isUppercase || character.isNumber || character == "_") ? character : "_"
        })
        if name.isEmpty || name.first == "_" || name.first!.isNumber || reservedFields.contains(name) {
            name = "TRIGLAV_" + name
        }
        return String(name.prefix(64))
    }

    /// The journal entry for one log call, in a stable order (fixed fields, then metadata sorted by key).
    public static func fields(identifier: String, label: String, level: Logger.Level, message: String,
                              metadata: Logger.Metadata, file: String, function: String, line: UInt) -> [String] {
        var fields = [
            "MESSAGE=\(message)",
            "PRIORITY=\(priority(of: level))",
            "SYSLOG_IDENTIFIER=\(identifier)",
            "TRIGLAV_LOGGER=\(label)",
            "CODE_FILE=\(file)",
            "CODE_LINE=\(line)",
            "CODE_FUNC=\(function)",
        ]
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            fields.append("\(fieldName(forMetadataKey: key))=\(render(value))")
        }
        return fields
    }

    static func render(_ value: Logger.MetadataValue) -> String {
        switch value {
        case .string(let text): text
        case .stringConvertible(let convertible): convertible.description
        default: value.description
        }
    }

    /// What goes to stderr when the journal is unreachable: "LEVEL label: message key=value ...".
    static func fallbackLine(label: String, level: Logger.Level, message: String, metadata: Logger.Metadata) -> String {
        var line = "\(level) \(label): \(message)"
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) { line += " \(key)=\(render(value))" }
        return line + "\n"
    }

    static let sendToJournal: Sink = { fields in
        guard !fields.isEmpty else { return -EINVAL }
        var pointers = fields.map { strdup($0) }
        defer { pointers.forEach { free($0) } }
        return pointers.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buffer.count) {
                tg_journal_send_fields($0, buffer.count)
            }
        }
    }

    static func writeToStandardError(_ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
    }
}

/// Chooses the log backend once, at daemon start.
public enum SystemdLogging {
    /// Whether to log to the journal: stderr is the journal stream systemd connected ($JOURNAL_STREAM
    /// holds "device:inode" of that stream and matches stderr), or the process runs in a systemd unit
    /// ($INVOCATION_ID set on a systemd-booted system) even with stderr redirected.
    public static func shouldUseJournal(environment: [String: String], standardErrorIdentity: (device: UInt64, inode: UInt64)?,
                                        systemdBooted: Bool) -> Bool {
        if let stream = environment["JOURNAL_STREAM"], let identity = standardErrorIdentity {
            let parts = stream.split(separator: ":")
            if parts.count == 2, UInt64(parts[0]) == identity.device, UInt64(parts[1]) == identity.inode { return true }
        }
        return systemdBooted && environment["INVOCATION_ID"] != nil
    }

    /// The decision for this process.
    public static var shouldUseJournal: Bool {
        var environment: [String: String] = [:]
        for key in ["JOURNAL_STREAM", "INVOCATION_ID"] {
            if let value = getenv(key) { environment[key] = String(cString: value) }
        }
        var status = stat()
        let identity: (device: UInt64, inode: UInt64)? = fstat(2, &status) == 0
            ? (UInt64(status.st_dev), UInt64(status.st_ino)) : nil
        return shouldUseJournal(environment: environment, standardErrorIdentity: identity,
                                systemdBooted: SystemdNotifier.isSystemdBooted)
    }

    /// A handler factory for `LoggingSystem.bootstrap`: journal under systemd, stderr otherwise.
    public static func handlerFactory(identifier: String, logLevel: Logger.Level = .info)
        -> @Sendable (String) -> any LogHandler {
        let useJournal = shouldUseJournal
        return { label in
            if useJournal {
                return JournalLogHandler(label: label, identifier: identifier, logLevel: logLevel)
            }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel
            return handler
        }
    }

    /// Bootstraps swift-log for an executable (call once, first thing in main).
    public static func bootstrap(identifier: String, logLevel: Logger.Level = .info) {
        LoggingSystem.bootstrap(handlerFactory(identifier: identifier, logLevel: logLevel))
    }
}
