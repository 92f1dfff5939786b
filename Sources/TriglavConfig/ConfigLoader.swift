#if canImport(Glibc)
internal import Glibc
#endif
import TriglavCrypto

/// Reads and validates configuration files. Every entry point reports all problems at once
/// (`TriglavConfigError.invalid`) rather than stopping at the first.
public enum ConfigLoader {
    /// Larger files are refused: a configuration this size is a mistake, not a config.
    static let maximumFileSize = 1 << 20

    /// Validates daemon configuration text. `file` names the source in diagnostics;
    /// `roleOverride` (from `triglavd --server`) takes precedence over the file's `role`.
    public static func parseDaemonConfig(_ text: String, file: String, roleOverride: Role? = nil)
        throws(TriglavConfigError) -> DaemonConfig
    {
        let collector = DiagnosticCollector(file: file)
        let root = try parseTOML(text, file: file)
        let config = DaemonConfigDecoder(diagnostics: collector).decode(root, roleOverride: roleOverride)
        guard collector.diagnostics.isEmpty else { throw .invalid(collector.diagnostics) }
        return config
    }

    /// Loads the daemon configuration at `path`. With `missingIsEmpty`, a file that doesn't exist
    /// counts as empty (all defaults): the daemon's default path may legitimately be absent.
    public static func loadDaemonConfig(path: String, roleOverride: Role? = nil, missingIsEmpty: Bool = false)
        throws(TriglavConfigError) -> DaemonConfig
    {
        let text: String
        do throws(ReadError) {
            text = try readFile(path)
        } catch {
            switch error {
            case .fileMissing where missingIsEmpty:
                text = ""
            case .fileMissing(let reason), .unreadable(let reason):
                throw .unreadableFile(path: path, reason: reason)
            }
        }
        return try parseDaemonConfig(text, file: path, roleOverride: roleOverride)
    }

    /// Validates profile text.
    public static func parseProfile(_ text: String, name: ProfileName, file: String) throws(TriglavConfigError) -> Profile {
        let collector = DiagnosticCollector(file: file)
        let root = try parseTOML(text, file: file)
        let profile = ProfileDecoder(diagnostics: collector).decode(root, name: name)
        guard collector.diagnostics.isEmpty, let profile else { throw .invalid(collector.diagnostics) }
        return profile
    }

    /// Loads `directory/NAME.toml`.
    public static func loadProfile(named name: String, directory: String = ConfigDefaults.profileDirectory)
        throws(TriglavConfigError) -> Profile
    {
        let profileName = try ProfileName(name)
        let path = "\(directory)/\(profileName).toml"
        let text: String
        do throws(ReadError) {
            text = try readFile(path)
        } catch {
            switch error {
            case .fileMissing:
                throw .profileNotFound(name: name, directory: directory)
            case .unreadable(let reason):
                throw .unreadableFile(path: path, reason: reason)
            }
        }
        return try parseProfile(text, name: profileName, file: path)
    }

    /// Names of the profiles in `directory` (files ending in `.toml`, sorted). Files whose names aren't
    /// valid profile names are returned too, so checking them reports the problem instead of hiding it.
    public static func profileNames(in directory: String = ConfigDefaults.profileDirectory)
        throws(TriglavConfigError) -> [String]
    {
        guard let stream = opendir(directory) else {
            throw .unreadableFile(path: directory, reason: errnoText())
        }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let fileName = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard fileName.hasSuffix(".toml"), !fileName.hasPrefix(".") else { continue }
            names.append(String(fileName.dropLast(".toml".count)))
        }
        return names.sorted()
    }

    /// What `triglavd --check-config` can say about the configured private key.
    public enum PrivateKeyCheck: Sendable, Equatable {
        /// The key loads; its public half is what peers must list.
        case usable(IdentityPublicKey)
        /// No file yet (`triglav keygen PATH` creates one).
        case missing
        /// The file exists but can't be used (permissions, malformed), or clashes with a client's key.
        case unusable([ConfigDiagnostic])
    }

    /// Loads the private key named by `config` the way the daemon will, so permission and format
    /// problems show up in `--check-config` rather than at start.
    public static func checkPrivateKey(of config: DaemonConfig, file: String) -> PrivateKeyCheck {
        var info = stat()
        if stat(config.privateKeyPath, &info) != 0, errno == ENOENT {
            return .missing
        }
        let key: IdentityKey
        do {
            key = try KeyFile.load(path: config.privateKeyPath)
        } catch {
            return .unusable([ConfigDiagnostic(file: file, keyPath: "private_key", reason: error.description)])
        }
        let publicKey = key.publicKey
        let clashes = (config.server?.clients ?? []).enumerated().filter { $0.element.publicKey == publicKey }
        guard clashes.isEmpty else {
            return .unusable(clashes.map {
                ConfigDiagnostic(file: file, keyPath: "server.clients[\($0.offset)].public_key",
                                 reason: "is the server's own public key; clients need keys of their own")
            })
        }
        return .usable(publicKey)
    }

    // MARK: - Reading

    enum ReadError: Error {
        case fileMissing(String)
        case unreadable(String)
    }

    static func readFile(_ path: String) throws(ReadError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else {
            throw errno == ENOENT ? .fileMissing(errnoText()) : .unreadable(errnoText())
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .unreadable(errnoText()) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .unreadable("not a regular file") }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = read(fd, &chunk, chunk.count)
            if count < 0 {
                if errno == EINTR { continue }
                throw .unreadable(errnoText())
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            guard bytes.count <= maximumFileSize else {
                throw .unreadable("larger than \(maximumFileSize / 1024) KiB; this is not a Triglav configuration file")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw .unreadable("not valid UTF-8 text (TOML files must be UTF-8)")
        }
        return text
    }

    private static func parseTOML(_ text: String, file: String) throws(TriglavConfigError) -> [String: TOMLNode] {
        // TOMLKit hands toml++ a C string: a NUL would silently cut the document short.
        if let nul = text.utf8.firstIndex(of: 0) {
            let before = text.utf8[..<nul]
            let line = before.reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
            let column = before.count - (before.lastIndex(of: UInt8(ascii: "\n")).map { before.distance(from: before.startIndex, to: $0) + 1 } ?? 0) + 1
            throw .invalid([ConfigDiagnostic(file: file, keyPath: "", reason: "TOML syntax error: NUL character in file",
                                             location: SourceLocation(line: line, column: column))])
        }
        if let problem = TOMLPreflight.check(text) {
            throw .invalid([ConfigDiagnostic(file: file, keyPath: "", reason: "TOML syntax error: \(problem.message)",
                                             location: problem.location)])
        }
        do {
            return try TOMLNode.parseDocument(text)
        } catch {
            throw .invalid([ConfigDiagnostic(file: file, keyPath: "", reason: "TOML syntax error: \(error.message)",
                                             location: error.location)])
        }
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }
}
