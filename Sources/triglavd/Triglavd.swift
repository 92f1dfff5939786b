import ArgumentParser
import TriglavCore

/// The privileged daemon. Thin: parses arguments and hands over to TriglavDaemon.
@main
struct Triglavd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "triglavd",
        abstract: "Triglav multipath VPN daemon.",
        version: VERSION
    )

    func run() throws {
        print("triglavd \(VERSION): not yet wired up")
    }
}
