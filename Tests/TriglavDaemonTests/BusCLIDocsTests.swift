import Foundation
import Testing
import TriglavTestSupport

/// The committed completions and man page (contrib/, from `make dbus-docs`) must match the CLI.
@Suite("triglav completions and man page are current")
struct BusCLIDocsTests {
    @Test(arguments: [("bash", "triglav.bash"), ("zsh", "_triglav"), ("fish", "triglav.fish")])
    func completionScriptIsCurrent(shell: String, file: String) throws {
        let generated = try runCommand([BusTestPaths.cli, "--generate-completion-script", shell])
        #expect(generated.status == 0)
        let committed = try String(contentsOfFile: BusTestPaths.repositoryRoot + "/contrib/completions/" + file, encoding: .utf8)
        #expect(generated.stdout == committed, "contrib/completions/\(file) is stale: run make dbus-docs")
    }

    @Test func manPageCoversEveryCommandAndOption() throws {
        let page = try String(contentsOfFile: BusTestPaths.repositoryRoot + "/contrib/man/triglav.1", encoding: .utf8)
        let help = try runCommand([BusTestPaths.cli, "--help"]).stdout
        let subcommands = help.components(separatedBy: "SUBCOMMANDS:").last?.split(separator: "\n")
            .filter { $0.hasPrefix("  ") && !$0.hasPrefix("   ") }
            .compactMap { $0.split(separator: " ").first.map(String.init) } ?? []
        #expect(subcommands.count >= 10, "\(help)")
        for name in subcommands where !name.hasPrefix("See") {
            #expect(page.contains(".It Em \(name)"), "man page lacks \(name): run make dbus-docs")
        }
        for option in ["bus-address", "json", "events", "tier", "metered", "enabled", "scheduler", "transport"] {
            #expect(page.contains("Fl -\(option)"), "man page lacks --\(option): run make dbus-docs")
        }
        #expect(page.contains("5 access denied"))
    }
}
