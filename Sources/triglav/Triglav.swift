import ArgumentParser
import TriglavCore
import TriglavCrypto

/// The unprivileged command-line client. It talks to triglavd only over D-Bus; the key commands
/// are local and need no daemon.
@main
struct Triglav: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "triglav",
        abstract: "Control the Triglav multipath VPN daemon (triglavd) and manage keys.",
        version: VERSION,
        subcommands: [Keygen.self, Pubkey.self]
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
