import Foundation
import Testing
import TriglavCore

/// Runs the built `triglav` and `triglavd` executables (from the build products directory next to
/// the test bundle) the way a user would, checking exit statuses and messages.
@Suite struct CLITests {
    // MARK: triglav

    @Test func triglavHelpListsTheKeyCommands() throws {
        let result = try Tool.triglav.run(["--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("USAGE: triglav"))
        #expect(result.stdout.contains("keygen") && result.stdout.contains("pubkey"))
        #expect(try Tool.triglav.run(["--version"]).stdout == "\(VERSION)\n")
    }

    @Test func keygenWritesAPrivateFileAndRefusesToOverwrite() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let path = directory.file("node.key")

        let created = try Tool.triglav.run(["keygen", path])
        #expect(created.status == 0, "\(created)")
        let publicKey = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(publicKey.count == 44 && Data(base64Encoded: publicKey)?.count == 32)
        #expect(try directory.mode(of: path) == 0o600)
        let keyText = try String(contentsOfFile: path, encoding: .utf8)
        #expect(Data(base64Encoded: keyText.trimmingCharacters(in: .newlines))?.count == 32)

        let refused = try Tool.triglav.run(["keygen", path])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("already exists") && refused.stderr.contains("--force"), "\(refused)")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == keyText)

        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        let forced = try Tool.triglav.run(["keygen", "--force", path])
        #expect(forced.status == 0)
        #expect(forced.stdout != created.stdout)
        #expect(try directory.mode(of: path) == 0o600)
    }

    @Test func pubkeyFromFileAndStandardInput() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let path = directory.file("node.key")
        let created = try Tool.triglav.run(["keygen", path])
        try #require(created.status == 0)

        let fromFile = try Tool.triglav.run(["pubkey", path])
        #expect(fromFile.status == 0 && fromFile.stdout == created.stdout)
        let keyText = try String(contentsOfFile: path, encoding: .utf8)
        let fromDash = try Tool.triglav.run(["pubkey", "-"], stdin: keyText)
        #expect(fromDash.status == 0 && fromDash.stdout == created.stdout)
        let fromDefault = try Tool.triglav.run(["pubkey"], stdin: keyText)
        #expect(fromDefault.status == 0 && fromDefault.stdout == created.stdout)
    }

    @Test(arguments: [0o640, 0o604, 0o660, 0o644])
    func pubkeyRefusesAnAccessibleKeyWithAChmodHint(mode: Int) throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let path = directory.file("open.key")
        try #require(try Tool.triglav.run(["keygen", path]).status == 0)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
        let result = try Tool.triglav.run(["pubkey", path])
        #expect(result.status != 0)
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.contains("chmod 600 \(path)"), "\(result)")
    }

    @Test(arguments: ["garbage\n", "", "AAAA\n", String(repeating: "A", count: 60) + "\n"])
    func pubkeyRejectsMalformedKeys(content: String) throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let path = try directory.write("bad.key", content, mode: 0o600)
        let fromFile = try Tool.triglav.run(["pubkey", path])
        #expect(fromFile.status != 0)
        #expect(fromFile.stderr.contains("malformed key"), "\(fromFile)")
        let fromStdin = try Tool.triglav.run(["pubkey"], stdin: content)
        #expect(fromStdin.status != 0)
        #expect(fromStdin.stderr.contains("malformed key"), "\(fromStdin)")
    }

    @Test func pubkeyReportsAMissingFile() throws {
        let result = try Tool.triglav.run(["pubkey", "/nonexistent/triglav.key"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("cannot read key file /nonexistent/triglav.key"), "\(result)")
    }

    @Test func badArgumentsGiveUsageErrors() throws {
        let missing = try Tool.triglav.run(["keygen"])
        #expect(missing.status == 64 && missing.stderr.contains("Missing expected argument"), "\(missing)")
        let unknown = try Tool.triglav.run(["frobnicate"])
        #expect(unknown.status == 64, "\(unknown)")
    }

    // MARK: triglavd --check-config

    @Test func checkConfigAcceptsAnEmptyClientConfig() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let path = try directory.write("triglavd.toml", "# defaults only\n")
        let result = try Tool.triglavd.run(["--check-config", path])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.hasPrefix("OK: \(path) (role client"), "\(result)")
    }

    @Test func checkConfigAcceptsAServerWithClientsAndReportsItsKey() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let keyPath = directory.file("server.key")
        let serverKey = try Tool.triglav.run(["keygen", keyPath]).stdout.trimmingCharacters(in: .newlines)
        let clientKey = try Tool.triglav.run(["keygen", directory.file("client.key")]).stdout.trimmingCharacters(in: .newlines)
        let path = try directory.write("server.toml", """
            role = "server"
            private_key = "\(keyPath)"
            [[server.clients]]
            name = "laptop"
            public_key = "\(clientKey)"
            tunnel_ipv4 = "10.77.0.2"
            """)
        let result = try Tool.triglavd.run(["--check-config", path])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.contains("role server") && result.stdout.contains("1 client"), "\(result)")
        #expect(result.stdout.contains("public key \(serverKey)"), "\(result)")
        // The same file with --config instead of the positional FILE.
        #expect(try Tool.triglavd.run(["--config", path, "--check-config"]).status == 0)
    }

    @Test func checkConfigReportsEveryProblemOnePerLine() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let path = try directory.write("bad.toml", """
            role = "client"
            log_levle = "debug"
            [tunnel]
            mtu = 90000
            [routing]
            routes = ["10.0.0.0/33"]
            table = "main"
            """)
        let result = try Tool.triglavd.run(["--check-config", path])
        #expect(result.status == 1, "\(result)")
        #expect(!result.stdout.contains("OK"))
        let lines = result.stderr.split(separator: "\n").map(String.init)
        #expect(lines.count == 4, "\(lines)")
        #expect(lines.allSatisfy { $0.hasPrefix("\(path): ") })
        #expect(lines.contains("\(path): log_levle: unknown key; did you mean 'log_level'?"))
        #expect(lines.contains { $0.hasPrefix("\(path): tunnel.mtu: 90000 is out of range") })
        #expect(lines.contains { $0.hasPrefix("\(path): routing.routes[0]: invalid address prefix '10.0.0.0/33'") })
        #expect(lines.contains("\(path): routing.table: expected an integer, got a string"))
    }

    @Test func checkConfigReportsSyntaxErrorsWithTheirPosition() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let path = try directory.write("syntax.toml", "role = \"client\"\n[tunnel\n")
        let result = try Tool.triglavd.run(["--check-config", path])
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("\(path):2:"), "\(result)")
        #expect(result.stderr.contains("TOML syntax error"))
    }

    @Test func checkConfigReportsServerClientProblems() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let key = try Tool.triglav.run(["keygen", directory.file("c.key")]).stdout.trimmingCharacters(in: .newlines)
        let path = try directory.write("server.toml", """
            [[server.clients]]
            name = "a"
            public_key = "\(key)"
            tunnel_ipv4 = "10.77.0.2"
            [[server.clients]]
            name = "b"
            public_key = "\(key)"
            tunnel_ipv4 = "192.168.0.2"
            [[server.clients]]
            name = "c"
            public_key = "c2hvcnQ="
            tunnel_ipv4 = "10.77.0.3"
            """)
        let result = try Tool.triglavd.run(["--server", "--check-config", path])
        #expect(result.status == 1, "\(result)")
        let lines = result.stderr.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("\(path): server.clients[1].public_key: same key as server.clients[0]") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("\(path): server.clients[1].tunnel_ipv4: 192.168.0.2 is outside") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("\(path): server.clients[2].public_key: malformed key") }, "\(lines)")
        #expect(lines.count == 3)
        // Without --server the same file is a client configuration with a stray [server] section.
        let asClient = try Tool.triglavd.run(["--check-config", path])
        #expect(asClient.stderr.contains("\(path): server: [server] applies only to role = \"server\""), "\(asClient)")
    }

    @Test func checkConfigRefusesAnAccessiblePrivateKey() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let keyPath = directory.file("node.key")
        try #require(try Tool.triglav.run(["keygen", keyPath]).status == 0)
        try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: keyPath)
        let path = try directory.write("triglavd.toml", "private_key = \"\(keyPath)\"\n")
        let result = try Tool.triglavd.run(["--check-config", path])
        #expect(result.status == 1)
        #expect(result.stderr.contains("\(path): private_key: key file \(keyPath) is accessible by group or others"), "\(result)")
        #expect(result.stderr.contains("chmod 600 \(keyPath)"))
    }

    @Test func checkConfigOfAMissingFileFails() throws {
        let result = try Tool.triglavd.run(["--check-config", "/nonexistent/triglavd.toml"])
        #expect(result.status == 1)
        #expect(result.stderr == "/nonexistent/triglavd.toml: cannot read: No such file or directory\n")
    }

    @Test func checkConfigChecksProfiles() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let config = try directory.write("triglavd.toml", "private_key = \"\(directory.file("absent.key"))\"\n")
        let profiles = directory.file("profiles")
        try FileManager.default.createDirectory(atPath: profiles, withIntermediateDirectories: false)
        let serverKey = try Tool.triglav.run(["keygen", directory.file("s.key")]).stdout.trimmingCharacters(in: .newlines)
        try directory.write("profiles/home.toml", "[server]\nendpoint = \"vpn.example.net\"\npublic_key = \"\(serverKey)\"\n")
        try directory.write("profiles/solo.toml", "[server]\nendpoint = \"203.0.113.9\"\npublic_key = \"\(serverKey)\"\n"
                            + "[dns]\nfrom_server = false\n")
        try directory.write("profiles/work.toml", "[server]\nendpoint = \"203.0.113.9:99999\"\npublic_key = \"\(serverKey)\"\n")
        try directory.write("profiles/office.toml", "[server]\nendpoint = \"203.0.113.9\"\npublic_key = \"\(serverKey)\"\n"
                            + "[dns]\nservers = [\"10.77.0.1\"]\ndomains = [\"corp.example\", \"~lab.example\"]\n")

        let good = try Tool.triglavd.run(["--check-config", config, "--profile-dir", profiles, "--profile", "home"])
        #expect(good.status == 0, "\(good)")
        #expect(good.stdout.contains("OK: \(profiles)/home.toml (profile home: server vpn.example.net:7443)"), "\(good)")

        let all = try Tool.triglavd.run(["--check-config", config, "--profile-dir", profiles, "--all-profiles"])
        #expect(all.status == 1)
        #expect(all.stdout.contains("OK: \(profiles)/home.toml"))
        #expect(all.stdout.contains("OK: \(profiles)/office.toml (profile office: server 203.0.113.9:7443, DNS 10.77.0.1 corp.example ~lab.example)"),
                "\(all)")
        #expect(all.stdout.contains("OK: \(profiles)/solo.toml (profile solo: server 203.0.113.9:7443, DNS declined from the server)"),
                "\(all)")
        #expect(all.stderr == "\(profiles)/work.toml: server.endpoint: invalid endpoint '203.0.113.9:99999': "
            + "port must be 1 to 65535\n", "\(all)")

        let missing = try Tool.triglavd.run(["--check-config", config, "--profile-dir", profiles, "--profile", "away"])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("\(profiles)/away.toml: no such profile 'away'"), "\(missing)")
    }

    @Test func checkConfigNamesTheDNSAServerOffers() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let config = try directory.write("triglavd.toml", "role = \"server\"\nprivate_key = \"\(directory.file("absent.key"))\"\n"
                                         + "[server]\nlisten = [\"203.0.113.1:7443\"]\n[server.dns]\nservers = [\"10.77.0.1\"]\ndomains = [\"~.\"]\n")
        let result = try Tool.triglavd.run(["--check-config", config])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.contains("0 clients, offering DNS 10.77.0.1 ~.)"), "\(result)")
    }

    @Test func triglavdRejectsBadFlagsClearly() throws {
        let unknown = try Tool.triglavd.run(["--bogus"])
        #expect(unknown.status == 64 && unknown.stderr.contains("Unknown option '--bogus'"), "\(unknown)")
        let stray = try Tool.triglavd.run(["extra.toml"])
        #expect(stray.status == 64 && stray.stderr.contains("use --config extra.toml"), "\(stray)")
        let profileWithoutCheck = try Tool.triglavd.run(["--profile", "home"])
        #expect(profileWithoutCheck.status == 64 && profileWithoutCheck.stderr.contains("only apply to --check-config"))
        let missingValue = try Tool.triglavd.run(["--config"])
        #expect(missingValue.status == 64 && missingValue.stderr.contains("Missing value for '--config"), "\(missingValue)")
        #expect(try Tool.triglavd.run(["--version"]).stdout == "\(VERSION)\n")
        let help = try Tool.triglavd.run(["--help"])
        #expect(help.status == 0 && help.stdout.contains("--check-config") && help.stdout.contains("--profile-dir"))
    }

    @Test func triglavdRefusesToStartWithABadConfig() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let path = try directory.write("triglavd.toml", "[tunnel]\ninterface = \"much-too-long-name\"\n")
        let result = try Tool.triglavd.run(["--config", path])
        #expect(result.status == 1)
        #expect(result.stderr.contains("\(path): tunnel.interface: invalid interface name"), "\(result)")
    }
}

/// A built executable of this package.
struct Tool {
    static let triglav = Tool(name: "triglav")
    static let triglavd = Tool(name: "triglavd")

    let name: String

    struct Result: CustomStringConvertible {
        let status: Int32
        let stdout: String
        let stderr: String
        var description: String { "status \(status)\nstdout: \(stdout)\nstderr: \(stderr)" }
    }

    /// The products directory holding the test bundle also holds the executables; fall back to the
    /// package's .build/debug when the runner lives elsewhere.
    var path: String {
        get throws {
            let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                .deletingLastPathComponent().deletingLastPathComponent()
            var candidates = [runner.deletingLastPathComponent().appendingPathComponent(name).path]
            if let bundle = Bundle.main.executableURL {
                candidates.append(bundle.deletingLastPathComponent().appendingPathComponent(name).path)
            }
            candidates.append(packageRoot.appendingPathComponent(".build/debug/\(name)").path)
            guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
                throw ToolNotBuilt(name: name, searched: candidates)
            }
            return found
        }
    }

    struct ToolNotBuilt: Error, CustomStringConvertible {
        let name: String
        let searched: [String]
        var description: String { "\(name) is not built (looked in \(searched)); run 'swift build --build-tests' first" }
    }

    /// Runs the tool with `arguments` and optional standard input; killed after 30 seconds.
    func run(_ arguments: [String], stdin: String? = nil) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try path)
        process.arguments = arguments
        // Capture through files: pipes could fill and stall the child while we wait for it.
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let stdoutPath = scratch.file("stdout"), stderrPath = scratch.file("stderr"), stdinPath = scratch.file("stdin")
        try Data((stdin ?? "").utf8).write(to: URL(fileURLWithPath: stdinPath))
        FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        FileManager.default.createFile(atPath: stderrPath, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: stdoutPath))
        let errors = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        let input = try FileHandle(forReadingFrom: URL(fileURLWithPath: stdinPath))
        defer { try? output.close(); try? errors.close(); try? input.close() }
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = input
        try process.run()
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning {
            if Date() > deadline {
                process.terminate()
                process.waitUntilExit()
                throw TimedOut(arguments: arguments)
            }
            usleep(5_000)
        }
        process.waitUntilExit()
        return Result(status: process.terminationStatus,
                      stdout: try String(contentsOfFile: stdoutPath, encoding: .utf8),
                      stderr: try String(contentsOfFile: stderrPath, encoding: .utf8))
    }

    struct TimedOut: Error {
        let arguments: [String]
    }
}

/// A temporary directory for one test, removed by `remove()`.
struct ScratchDirectory {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("triglav-cli-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    @discardableResult
    func write(_ name: String, _ text: String, mode: Int = 0o644) throws -> String {
        let file = file(name)
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: file)
        return file
    }

    func mode(of file: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: file)
        return ((attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1) & 0o777
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}
