import Testing
@testable import TriglavConfig

/// Inputs that make toml++ (inside TOMLKit) assert instead of reporting an error must come back as
/// ordinary syntax errors with a position, never reach the parser.
@Suite struct TOMLPreflightTests {
    @Test(arguments: [
        ("[[[", 1, 3), ("[=]", 1, 2), ("[ #comment]", 1, 3), ("a = 1\n[\n", 2, 2), ("[[ .x]]", 1, 4),
        ("s = [}", 1, 6), ("s = [\"\",}", 1, 9), ("s = [[}]]", 1, 7), ("s = [\n  1,\n}", 3, 1),
    ])
    func parserAssertionsBecomeSyntaxErrors(text: String, line: Int, column: Int) {
        let diagnostics = daemonDiagnostics(text)
        #expect(diagnostics.count == 1)
        #expect(diagnostics.first?.location == SourceLocation(line: line, column: column), "\(diagnostics)")
        #expect(diagnostics.first?.reason.hasPrefix("TOML syntax error") == true)
    }

    @Test(arguments: [
        "[tunnel]\ninterface = \"x\"",
        "[\"quoted key\"]\n['literal']\n[ spaced ]\n[[ arr ]]",
        "a = [\n  [1, 2],\n  [{ b = 1 }],\n]",
        "a = \"[=]\"\nb = '''\n[=]\n}'''\nc = \"\"\"\n[[[\n\"\"\"",
        "a = \"quote \\\" [ inside\"\n[ok]",
        "a = { b = [1, { c = [] }] }\n[next]",
        "# [=] in a comment\n[ok] # and }",
    ])
    func validTOMLPassesThePreflight(text: String) {
        #expect(TOMLPreflight.check(text) == nil)
    }

    @Test func nulCharactersAreRefusedNotTruncated() {
        let diagnostics = daemonDiagnostics("log_level = \"info\"\nrole = \"client\u{0}\"\nbogus = 1")
        #expect(diagnostics.count == 1)
        #expect(diagnostics.first?.reason.contains("NUL") == true)
        #expect(diagnostics.first?.location == SourceLocation(line: 2, column: 15))
    }
}

/// Property: whatever bytes a configuration holds, loading it yields a config or diagnostics, never a
/// crash (toml++ asserts abort the whole test process, so a regression fails loudly here).
@Suite struct MalformedInputPropertyTests {
    /// SplitMix64: deterministic, so a failure reproduces from its iteration number.
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
    }

    static let seedDocument = """
        role = "server"
        [tunnel]
        interface = "triglav0"
        [uplinks.interface."wwan*"]
        tier = "backup"
        [routing]
        routes = ["10.0.0.0/8", "fd00::/8"]
        [server]
        listen = ["0.0.0.0:7443", "[::]:7443"]
        [[server.clients]]
        name = "a"
        public_key = "D32hPa8bygMmLAoYE00y5gQMnv6UFBIWb/zFD2ZyNKk="
        tunnel_ipv4 = "10.77.0.2"
        x = { y = [1, { z = 2 }], w = '''lit''' }
        """
    static let fragments = ["[", "]", "[[", "]]", "{", "}", "\"", "'", "\"\"\"", "'''", "=", ".", ",", "#", "\n",
                            " ", "\\", "_", "-", "0x", "1e5", "inf", "1979-05-27", "é", "\u{1}", "a"]

    @Test func mutatedDocumentsNeverCrashTheLoader() {
        var generator = SeededGenerator(state: 0x7443)
        let base = Array(Self.seedDocument.unicodeScalars).map(String.init)
        var outcomes = (valid: 0, invalid: 0)
        for _ in 0..<2_000 {
            var pieces = base
            for _ in 0..<Int.random(in: 1...8, using: &generator) {
                let position = Int.random(in: 0...pieces.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0 where position < pieces.count: pieces.remove(at: position)
                case 1 where position < pieces.count: pieces[position] = Self.fragments.randomElement(using: &generator) ?? ""
                default: pieces.insert(Self.fragments.randomElement(using: &generator) ?? "", at: position)
                }
            }
            do {
                _ = try ConfigLoader.parseDaemonConfig(pieces.joined(), file: "fuzz.toml")
                outcomes.valid += 1
            } catch {
                #expect(!error.diagnostics.isEmpty)
                outcomes.invalid += 1
            }
        }
        // The mutations must actually break documents, or they exercise nothing.
        #expect(outcomes.invalid > 100)
        #expect(outcomes.valid + outcomes.invalid == 2_000)
    }
}
