import Testing
import TriglavCore
@testable import TriglavConfig

@Suite struct InterfaceGlobTests {
    @Test(arguments: [
        ("*", "eth0", true), ("*", "", true),
        ("eth0", "eth0", true), ("eth0", "eth01", false), ("eth0", "eth", false),
        ("wl*", "wlan0", true), ("wl*", "wl", true), ("wl*", "owlan", false),
        ("*0", "eth0", true), ("*0", "eth1", false),
        ("e*h*", "eth0", true), ("e*h*", "ens3", false),
        ("eth?", "eth1", true), ("eth?", "eth10", false),
        ("eth[0-3]", "eth2", true), ("eth[0-3]", "eth4", false),
        ("eth[!0-3]", "eth4", true), ("eth[!0-3]", "eth2", false),
        ("wwan[]]", "wwan]", true),
        ("br-*", "br-1a2b", true), ("br-*", "br0", false),
        ("**x", "abx", true), ("a*b*c", "aXbYbZc", true), ("a*b*c", "aXbYbZ", false),
    ])
    func matching(pattern: String, name: String, expected: Bool) throws {
        #expect(try InterfaceGlob(pattern).matches(name) == expected)
    }

    @Test(arguments: ["", "eth[0", "eth]", "a b", "a/b", "wlän*", "[z-a]", "abcdefghijklmnop"])
    func invalidPatterns(pattern: String) {
        #expect(throws: TriglavConfigValueError.self) { try InterfaceGlob(pattern) }
    }

    @Test func longPatternWithWildcardsIsAccepted() throws {
        #expect(try InterfaceGlob("abcdefghijklmno*").matches("abcdefghijklmno"))
    }
}

@Suite struct HelperTests {
    @Test func keyPathsQuoteNonBareKeys() {
        let path = ConfigKeyPath.root.appending("uplinks").appending("interface").appending("wwan*").appending("tier")
        #expect(path.description == "uplinks.interface.\"wwan*\".tier")
        #expect(ConfigKeyPath.root.appending("server").appending("clients").appending(index: 2)
            .appending("public_key").description == "server.clients[2].public_key")
    }

    @Test func editDistance() {
        #expect(TableReader.editDistance("", "abc") == 3)
        #expect(TableReader.editDistance("kitten", "sitting") == 3)
        #expect(TableReader.editDistance("same", "same") == 0)
        #expect(TableReader.hint(for: "xyz", among: ["scheduler"]) == "")
        #expect(TableReader.hint(for: "sheduler", among: ["scheduler", "routes"]) == "; did you mean 'scheduler'?")
    }

    @Test func diagnosticFormats() {
        #expect(ConfigDiagnostic(file: "f.toml", keyPath: "a.b", reason: "bad").description == "f.toml: a.b: bad")
        #expect(ConfigDiagnostic(file: "f.toml", keyPath: "", reason: "bad").description == "f.toml: bad")
        #expect(ConfigDiagnostic(file: "f.toml", keyPath: "", reason: "bad", location: .init(line: 3, column: 4))
            .description == "f.toml:3:4: bad")
    }

    @Test(arguments: [
        ("10.77.0.1/24", "10.77.0.0/24", 254),
        ("10.1.2.3/8", "10.0.0.0/8", 16_777_214),
        ("fd77::1/64", "fd77::/64", Int.max),
        ("fd77::1/120", "fd77::/120", 255),
        ("192.0.2.77/30", "192.0.2.76/30", 2),
    ])
    func prefixArithmetic(text: String, network: String, capacity: Int) throws {
        let prefix = try IPPrefixFixture.make(text)
        #expect(prefix.network.description == network)
        #expect(prefix.hostCapacity == capacity)
    }
}
