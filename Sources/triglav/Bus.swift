import ArgumentParser
import TriglavControlAPI
import TriglavDBus
#if canImport(Glibc)
import Glibc
#endif

/// Exit statuses scripts can rely on (documented in docs/DBUS.md and `triglav --help`).
enum ExitStatus: Int32 {
    case success = 0
    case failed = 1
    case invalidArgument = 2
    case notFound = 3
    case wrongState = 4
    case accessDenied = 5
    case daemonNotRunning = 6
    case busUnreachable = 7
    case timeout = 8
}

/// A failure the CLI reports with a message and an exit status.
struct CLIFailure: Error {
    let status: ExitStatus
    let message: String
}

/// Options every daemon command takes.
struct BusOptions: ParsableArguments {
    @Option(name: .customLong("bus-address"),
            help: ArgumentHelp("D-Bus address of the system bus.", discussion: "Default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket.",
                               valueName: "address"))
    var busAddress: String?

    @Option(help: "Seconds to wait for the daemon's reply.")
    var timeout: Double = 25

    var replyTimeout: Duration { .milliseconds(Int64(max(0.05, min(timeout, 3600)) * 1000)) }

    func connect() throws(CLIFailure) -> BusConnection {
        let address = busAddress ?? BusConnection.systemBusAddress
        do {
            return try BusConnection(address: address)
        } catch {
            throw CLIFailure(status: .busUnreachable,
                             message: "cannot reach the system D-Bus at \(address): \(error.description). Is dbus running? (--bus-address overrides the address)")
        }
    }
}

/// Runs a daemon command: connects, runs `body`, maps every error to a message and exit status.
func withDaemon(_ options: BusOptions, _ body: (DaemonClient) async throws(CLIFailure) -> Void) async throws {
    do throws(CLIFailure) {
        let connection = try options.connect()
        defer { connection.close() }
        try await body(DaemonClient(connection: connection, timeout: options.replyTimeout))
    } catch {
        printError(error.message)
        throw ExitCode(error.status.rawValue)
    }
}

func printError(_ message: String) {
    let line = "triglav: " + message + "\n"
    _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
}

/// Turns a bus error into what a user should read and the documented exit status.
func failure(from error: TriglavDBusError) -> CLIFailure {
    switch error {
    case .remote(let name, let message):
        if let control = ControlError(busName: name, message: message) {
            switch control {
            case .invalidArgument: return CLIFailure(status: .invalidArgument, message: message)
            case .notFound: return CLIFailure(status: .notFound, message: message)
            case .alreadyConnected, .notConnected: return CLIFailure(status: .wrongState, message: message)
            case .accessDenied: return accessDenied
            case .failed: return CLIFailure(status: .failed, message: message)
            }
        }
        switch name {
        case DBusStandardError.accessDenied:
            return accessDenied
        case DBusStandardError.serviceUnknown, DBusStandardError.nameHasNoOwner:
            return CLIFailure(status: .daemonNotRunning,
                              message: "triglavd is not running (nobody owns \(TriglavBus.name) on the system bus); start it with: systemctl start triglavd")
        case DBusStandardError.noReply, DBusStandardError.timeout:
            return CLIFailure(status: .timeout, message: "triglavd did not answer in time (\(message))")
        case DBusStandardError.invalidArgs, DBusStandardError.propertyReadOnly, DBusStandardError.unknownProperty:
            return CLIFailure(status: .invalidArgument, message: message)
        case DBusStandardError.unknownObject:
            return CLIFailure(status: .notFound, message: message)
        default:
            return CLIFailure(status: .failed, message: "\(name): \(message)")
        }
    case .timeout:
        return CLIFailure(status: .timeout, message: "triglavd did not answer in time: \(error.description)")
    case .disconnected, .connectionFailed:
        return CLIFailure(status: .busUnreachable, message: error.description)
    default:
        return CLIFailure(status: .failed, message: error.description)
    }
}

let accessDenied = CLIFailure(
    status: .accessDenied,
    message: "permission denied: only root and members of group \(TriglavBus.controlGroup) may control triglavd. "
        + "Add yourself to group \(TriglavBus.controlGroup) (sudo usermod -aG \(TriglavBus.controlGroup) $USER) and log in again.")

/// Every object of the daemon with its properties: path → interface → property → value.
typealias BusObjects = [DBusObjectPath: [String: [String: DBusValue]]]

/// The CLI's view of triglavd.
struct DaemonClient {
    let connection: BusConnection
    let timeout: Duration

    static let root = DBusObjectPath(checked: TriglavBus.managerPath)

    func call(_ member: String, interface: String = TriglavBus.managerInterface, path: DBusObjectPath = DaemonClient.root,
              _ arguments: [DBusValue] = []) async throws(CLIFailure) -> [DBusValue] {
        do {
            return try await connection.call(destination: TriglavBus.name, path: path, interface: interface, member: member,
                                             arguments: arguments, timeout: timeout)
        } catch {
            throw failure(from: error)
        }
    }

    func setProperty(_ name: String, _ value: DBusValue, interface: String, path: DBusObjectPath) async throws(CLIFailure) {
        _ = try await call("Set", interface: DBusStandardInterface.properties, path: path,
                           [.string(interface), .string(name), .variant(value)])
    }

    /// All objects: the manager's Manager1 and Server1 (GetAll) plus everything ObjectManager lists.
    func objects() async throws(CLIFailure) -> BusObjects {
        let managed = try await call("GetManagedObjects", interface: DBusStandardInterface.objectManager)
        var objects: BusObjects = [:]
        if case .dictionary(_, _, let entries)? = managed.first {
            for entry in entries {
                guard let path = entry.key.objectPathValue, case .dictionary(_, _, let interfaces) = entry.value else { continue }
                var byInterface: [String: [String: DBusValue]] = [:]
                for interface in interfaces {
                    if let name = interface.key.stringValue { byInterface[name] = interface.value.stringKeyedDictionary ?? [:] }
                }
                objects[path] = byInterface
            }
        }
        var root: [String: [String: DBusValue]] = [:]
        for interface in [TriglavBus.managerInterface, TriglavBus.serverInterface] {
            let reply = try await call("GetAll", interface: DBusStandardInterface.properties, [.string(interface)])
            root[interface] = reply.first?.stringKeyedDictionary ?? [:]
        }
        objects[DaemonClient.root] = root
        return objects
    }

    /// The uplink object for an interface name, an object path or a numeric id.
    func uplinkPath(for name: String, in objects: BusObjects) throws(CLIFailure) -> DBusObjectPath {
        for (path, interfaces) in objects {
            guard let properties = interfaces[TriglavBus.uplinkInterface] else { continue }
            if properties["Interface"]?.stringValue == name || path.rawValue == name || path.lastElement == name { return path }
        }
        throw CLIFailure(status: .notFound, message: "no uplink on interface \(name) (see: triglav uplinks)")
    }
}

/// Parses yes/no style values for boolean options.
struct Switch: ExpressibleByArgument {
    let value: Bool
    init?(argument: String) {
        switch argument.lowercased() {
        case "yes", "true", "on", "1": value = true
        case "no", "false", "off", "0": value = false
        default: return nil
        }
    }
    static var allValueStrings: [String] { ["yes", "no"] }
}

extension UplinkTier: ExpressibleByArgument {}
extension UplinkTransport: ExpressibleByArgument {}
