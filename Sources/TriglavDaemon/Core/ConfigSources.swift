public import TriglavConfig

/// Where the daemon configuration comes from on start and on every reload.
public protocol DaemonConfigSource: Sendable {
    func load() throws(TriglavDaemonError) -> DaemonConfig
}

/// Where profiles come from (the profile directory, or a dictionary in tests).
public protocol ProfileStore: Sendable {
    func profile(named name: ProfileName) throws(TriglavDaemonError) -> Profile
}

/// The configuration file, loaded and validated by `ConfigLoader` each time.
public struct FileConfigSource: DaemonConfigSource {
    public let path: String
    /// Whether a missing file means built-in defaults (true only for the default path).
    public let missingIsEmpty: Bool
    public let roleOverride: Role?

    public init(path: String, missingIsEmpty: Bool, roleOverride: Role?) {
        self.path = path
        self.missingIsEmpty = missingIsEmpty
        self.roleOverride = roleOverride
    }

    public func load() throws(TriglavDaemonError) -> DaemonConfig {
        do {
            return try ConfigLoader.loadDaemonConfig(path: path, roleOverride: roleOverride, missingIsEmpty: missingIsEmpty)
        } catch {
            throw .failed(operation: "loading \(path)", reason: "\(error)")
        }
    }
}

/// `NAME.toml` files in a directory.
public struct DirectoryProfileStore: ProfileStore {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    public func profile(named name: ProfileName) throws(TriglavDaemonError) -> Profile {
        do {
            return try ConfigLoader.loadProfile(named: name.rawValue, directory: directory)
        } catch {
            if case .profileNotFound = error {
                throw .notFound("profile '\(name)' (\(directory)/\(name).toml)")
            }
            throw .failed(operation: "loading profile '\(name)'", reason: "\(error)")
        }
    }
}
