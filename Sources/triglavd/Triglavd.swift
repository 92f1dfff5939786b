import ArgumentParser
import Logging
import TriglavDaemon
import TriglavConfig
import TriglavCore

/// The privileged daemon. Thin: parses arguments, loads and validates the configuration, and hands
/// over to TriglavDaemon. Precedence: command line > configuration file > built-in defaults.
@main
struct Triglavd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "triglavd",
        abstract: "Triglav multipath VPN daemon.",
        discussion: """
            Runs the client role by default (bonding the uplinks into one tunnel to a server named by a \
            profile in the profile directory), or the server role with --server or role = "server" in the \
            configuration file. See docs/CONFIG.md for every configuration key.

            Check a configuration without running: triglavd --check-config [FILE] [--profile NAME | --all-profiles]
            """,
        version: VERSION
    )

    @Option(name: .customLong("config"), help: ArgumentHelp(
        "Daemon configuration file (default: \(ConfigDefaults.daemonConfigPath)); if the default file is absent, "
            + "built-in defaults apply.",
        valueName: "FILE"))
    var configPath: String?

    @Flag(help: "Run the server role, whatever the configuration file's role says.")
    var server = false

    @Option(name: .customLong("profile-dir"), help: ArgumentHelp("Directory of server profiles (NAME.toml).",
                                                                  valueName: "DIR"))
    var profileDirectory: String = ConfigDefaults.profileDirectory

    @Flag(name: .customLong("check-config"), help: """
        Validate the configuration (FILE, or --config, or the default path) and exit: status 0 and an OK line \
        when valid, otherwise every problem as 'FILE: key: reason' and status 1.
        """)
    var checkConfig = false

    @Argument(help: ArgumentHelp("With --check-config: the configuration file to check.", valueName: "FILE"))
    var checkedFile: String?

    @Option(name: .customLong("profile"), help: ArgumentHelp(
        "With --check-config: also check this profile from the profile directory (repeatable).", valueName: "NAME"))
    var profiles: [String] = []

    @Flag(name: .customLong("all-profiles"), help: "With --check-config: also check every profile in the profile directory.")
    var allProfiles = false

    @Option(name: .customLong("connect"), help: ArgumentHelp(
        "Client role: connect to this profile at start (before signalling readiness), as `triglav connect NAME` would.",
        valueName: "PROFILE"))
    var connectProfile: String?

    @Flag(name: .customLong("no-bus"), help: """
        Run without D-Bus: no org.triglav API, so the triglav CLI can't reach this daemon. Otherwise the daemon \
        owns org.triglav on the system bus ($DBUS_SYSTEM_BUS_ADDRESS, else /run/dbus/system_bus_socket) and \
        refuses to start without it.
        """)
    var noBus = false

    func validate() throws {
        if !checkConfig {
            if let checkedFile {
                throw ValidationError("unexpected argument '\(checkedFile)': a FILE argument only goes with --check-config; "
                    + "to run with a configuration file use --config \(checkedFile)")
            }
            if !profiles.isEmpty || allProfiles {
                throw ValidationError("--profile and --all-profiles only apply to --check-config")
            }
        }
        if connectProfile != nil && (server || checkConfig) {
            throw ValidationError("--connect only applies to the client role; it can't go with --server or --check-config")
        }
        if let checkedFile, let configPath, checkedFile != configPath {
            throw ValidationError("two configuration files given ('\(configPath)' with --config and '\(checkedFile)' "
                + "after --check-config); give just one")
        }
    }

    func run() throws {
        if checkConfig {
            let check = ConfigCheck(configPath: checkedFile ?? configPath ?? ConfigDefaults.daemonConfigPath,
                                    pathIsExplicit: checkedFile != nil || configPath != nil,
                                    roleOverride: server ? .server : nil,
                                    profileDirectory: profileDirectory,
                                    profiles: allProfiles ? .all : .named(profiles))
            guard check.run() else { throw ExitCode.failure }
            return
        }
        let path = configPath ?? ConfigDefaults.daemonConfigPath
        let config: DaemonConfig
        do {
            config = try ConfigLoader.loadDaemonConfig(path: path, roleOverride: server ? .server : nil,
                                                       missingIsEmpty: configPath == nil)
        } catch {
            printToStandardError(error.description)
            throw ExitCode.failure
        }
        if connectProfile != nil && config.role == .server {
            printToStandardError("\(path): role is \"server\"; --connect only applies to the client role")
            throw ExitCode.failure
        }
        DaemonLogging.bootstrap(level: config.logLevel)
        let logger = Logger(label: "triglav.daemon")
        let daemon = Daemon(config: config,
                            configSource: FileConfigSource(path: path, missingIsEmpty: configPath == nil,
                                                           roleOverride: server ? .server : nil),
                            profiles: DirectoryProfileStore(directory: profileDirectory),
                            environment: .live(logger: logger, busAddress: noBus ? nil : LiveDaemonBus.systemBusAddress), connectProfile: connectProfile, logger: logger)
        do {
            try daemon.run()
        } catch {
            logger.critical("triglavd could not start: \(error)")
            throw ExitCode.failure
        }
    }
}
