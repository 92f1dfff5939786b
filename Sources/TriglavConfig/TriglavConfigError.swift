/// Where in a TOML file a syntax error was found (1-based, as editors count).
public struct SourceLocation: Hashable, Sendable {
    public let line: Int
    public let column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }
}

/// One problem found in a configuration file: the file, the key path inside it
/// (`server.clients[2].public_key`, empty for the file as a whole) and what is wrong.
public struct ConfigDiagnostic: Hashable, Sendable, CustomStringConvertible {
    public let file: String
    public let keyPath: String
    public let reason: String
    /// Set only for TOML syntax errors: TOMLKit reports positions for those alone.
    public let location: SourceLocation?

    public init(file: String, keyPath: String, reason: String, location: SourceLocation? = nil) {
        self.file = file
        self.keyPath = keyPath
        self.reason = reason
        self.location = location
    }

    /// `FILE: key: reason`, or `FILE:LINE:COLUMN: reason` for syntax errors (the form editors jump to).
    public var description: String {
        if let location {
            return "\(file):\(location.line):\(location.column): \(reason)"
        }
        if keyPath.isEmpty {
            return "\(file): \(reason)"
        }
        return "\(file): \(keyPath): \(reason)"
    }
}

/// Errors from loading configuration. Validation never stops at the first problem: `.invalid`
/// carries every diagnostic found in the file.
public enum TriglavConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file could not be read at all (missing, permissions, not UTF-8, too large).
    case unreadableFile(path: String, reason: String)
    /// The file was read but has problems; never empty.
    case invalid([ConfigDiagnostic])
    /// No profile file `NAME.toml` in the profile directory.
    case profileNotFound(name: String, directory: String)
    /// A profile name that can't be a file name in the profile directory.
    case invalidProfileName(String)

    /// The problems as diagnostics, one per line of `triglavd --check-config` output.
    public var diagnostics: [ConfigDiagnostic] {
        switch self {
        case .unreadableFile(let path, let reason):
            return [ConfigDiagnostic(file: path, keyPath: "", reason: "cannot read: \(reason)")]
        case .invalid(let diagnostics):
            return diagnostics
        case .profileNotFound(let name, let directory):
            return [ConfigDiagnostic(file: "\(directory)/\(name).toml", keyPath: "",
                                     reason: "no such profile '\(name)'; create the file or pick another with --profile")]
        case .invalidProfileName(let name):
            return [ConfigDiagnostic(file: name, keyPath: "",
                                     reason: "invalid profile name '\(name)': \(ProfileName.rule)")]
        }
    }

    public var description: String {
        diagnostics.map(\.description).joined(separator: "\n")
    }
}
