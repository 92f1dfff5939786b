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
