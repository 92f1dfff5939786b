import ArgumentParser
import TriglavCore
import TriglavCrypto

/// The unprivileged command-line client. It talks to triglavd only over D-Bus; the key commands
/// are local and need no daemon.
@main
enum TriglavMain {
    static func main() async {
        await Triglav.main(GlobalOptions.hoisted(Array(CommandLine.arguments.dropFirst())))
    }
}

/// `--bus-address` and `--timeout` belong to each daemon command; this lets them also be written
/// before the subcommand (`triglav --bus-address ADDR status`), as users of busctl expect.
enum GlobalOptions {
    static let optionsWithValue: Set<String> = ["--bus-address", "--timeout"]
    static let commandWords: Set<String> = ["status", "uplinks", "connect", "disconnect", "uplink", "add", "remove", "set",
                                            "scheduler", "reload", "monitor"]

    static func hoisted(_ arguments: [String]) -> [String] {
        var leading: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if optionsWithValue.contains(argument), index + 1 < arguments.count {
                leading += [argument, arguments[index + 1]]
                index += 2
            } else if let equals = argument.firstIndex(of: "="), optionsWithValue.contains(String(argument[..<equals])) {
                leading.append(argument)
                index += 1
            } else {
                break
            }
        }
        guard !leading.isEmpty else { return arguments }
        var rest = Array(arguments[index...])
        var commandEnd = 0
        while commandEnd < rest.count && commandWords.contains(rest[commandEnd]) { commandEnd += 1 }
        rest.insert(contentsOf: leading, at: commandEnd)
        return rest
    }
}

struct Triglav: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "triglav",
        abstract: "Control the Triglav multipath VPN daemon (triglavd) and manage keys.",
        discussion: """
            Talks to triglavd over the system D-Bus (bus name org.triglav). Reading state needs no \
            privileges; changing it needs membership of group triglav.

            Exit status: 0 success, 1 failure reported by the daemon, 2 invalid argument, 3 not found, \
            4 wrong state (already connected / not connected), 5 access denied, 6 triglavd not running, \
            7 system bus unreachable, 8 timeout, 64 usage error.
            """,
        version: VERSION,
        subcommands: [Status.self, Uplinks.self, Connect.self, Disconnect.self, UplinkCommand.self, Scheduler.self,
                      Reload.self, Monitor.self, Keygen.self, Pubkey.self]
    )
}

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a new private key file (mode 0600) and print its public key.")

    @Argument(help: "Path of the private key file to create.")
    var path: String

    @Flag(help: "Overwrite an existing key file (the old key is lost).")
    var force = false

    func run() throws {
        let key = IdentityKey.generate()
        do {
            try KeyFile.write(key, to: path, force: force)
        } catch {
            throw ValidationError(error.description)
        }
        print(key.publicKey.base64)
    }
}

struct Pubkey: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the public key of a private key file (or of a key read from standard input).")

    @Argument(help: "Private key file, or - for standard input.")
    var path: String = "-"

    func run() throws {
        do {
            print(try KeyFile.load(path: path).publicKey.base64)
        } catch {
            throw ValidationError(error.description)
        }
    }
}
