import Foundation
import Testing
@testable import TriglavConfig
import TriglavCore
import TriglavCrypto

@Suite struct ProfileTests {
    static let serverKey = publicKeys(1)[0]

    static func parse(_ text: String) throws(TriglavConfigError) -> Profile {
        try ConfigLoader.parseProfile(text, name: try ProfileName("home"), file: "home.toml")
    }

    static func diagnostics(_ text: String) -> [ConfigDiagnostic] {
        do {
            _ = try parse(text)
            Issue.record("expected diagnostics")
            return []
        } catch {
            return error.diagnostics
        }
    }

    @Test func minimalProfileKeepsTheDaemonSettings() throws {
        let profile = try Self.parse("[server]\nendpoint = \"203.0.113.5\"\npublic_key = \"\(Self.serverKey)\"")
        #expect(profile.name.rawValue == "home")
        #expect(profile.endpoint == .address(try IPEndpoint("203.0.113.5:7443")))
        #expect(profile.serverPublicKey.base64 == Self.serverKey)
        #expect(profile.scheduler == nil && profile.fullTunnel == nil && profile.routes == nil && profile.exclude == nil)
        var daemon = DaemonConfig()
        daemon.routing.exclude = [try IPPrefix("192.168.0.0/16")]
        let settings = ConnectionSettings(daemon: daemon, profile: profile)
        #expect(settings.multipath == daemon.multipath)
        #expect(settings.routing == daemon.routing)
    }

    @Test func overridesTakePrecedenceOverTheDaemonFile() throws {
        let profile = try Self.parse("""
            [server]
            endpoint = "vpn.Example.net:8443"
            public_key = "\(Self.serverKey)"
            [multipath]
            scheduler = "redundant"
            [routing]
            full_tunnel = false
            routes = ["10.0.0.0/8"]
            exclude = []
            """)
        #expect(profile.endpoint == .hostname("vpn.example.net", port: 8443))
        var daemon = DaemonConfig()
        daemon.routing.exclude = [try IPPrefix("192.168.0.0/16")]
        daemon.routing.table = 99
        let settings = ConnectionSettings(daemon: daemon, profile: profile)
        #expect(settings.multipath.scheduler == .redundant)
        #expect(!settings.routing.fullTunnel)
        #expect(settings.routing.routes.map(\.description) == ["10.0.0.0/8"])
        #expect(settings.routing.exclude.isEmpty)
        #expect(settings.routing.table == 99)
        #expect(settings.endpoint.port == 8443)
    }

    @Test func shippedExampleIsValid() throws {
        let profile = try ConfigLoader.loadProfile(named: "home", directory: "\(examplesDirectory)/profiles")
        #expect(profile.name.rawValue == "home")
        #expect(profile.fullTunnel == false)
    }

    @Test(arguments: [
        ("[server]\nendpoint = \"1.2.3.4\"\npublic_key = \"KEY\"", "", ""),
        ("", "server", "missing"),
        ("[server]\npublic_key = \"KEY\"", "server.endpoint", "missing"),
        ("[server]\nendpoint = \"1.2.3.4\"", "server.public_key", "missing"),
        ("[server]\nendpoint = \"1.2.3.4:0\"\npublic_key = \"KEY\"", "server.endpoint", "port must be 1 to 65535"),
        ("[server]\nendpoint = \"vpn..example\"\npublic_key = \"KEY\"", "server.endpoint", "invalid endpoint"),
        ("[server]\nendpoint = \"1.2.3.999\"\npublic_key = \"KEY\"", "server.endpoint", "invalid endpoint"),
        ("[server]\nendpoint = \"2001:db8::1\"\npublic_key = \"KEY\"", "", ""),
        ("[server]\nendpoint = \"[2001:db8::1\"\npublic_key = \"KEY\"", "server.endpoint", "[IPv6]:PORT"),
        ("[server]\nendpoint = \"-bad.example\"\npublic_key = \"KEY\"", "server.endpoint", "HOSTNAME:PORT"),
        ("[server]\nendpoint = \"1.2.3.4\"\npublic_key = \"AAAA\"", "server.public_key", "must be 32 bytes"),
        ("[server]\nendpoint = \"1.2.3.4\"\npublic_key = \"KEY\"\nport = 1", "server.port", "unknown key"),
        ("[server]\nendpoint = \"1.2.3.4\"\npublic_key = \"KEY\"\n[routing]\nfwmark = 1", "routing.fwmark",
         "known keys here: exclude, full_tunnel, routes"),
        ("[server]\nendpoint = \"1.2.3.4\"\npublic_key = \"KEY\"\n[routing]\nroutes = [\"10.0.0.1/8\"]", "routing.routes[0]",
         "did you mean 10.0.0.0/8?"),
        ("[server]\nendpoint = \"1.2.3.4\"\npublic_key = \"KEY\"\n[multipath]\nscheduler = \"x\"", "multipath.scheduler", "not one of"),
        ("scheduler = \"flow\"\n[server]\nendpoint = \"1.2.3.4\"\npublic_key = \"KEY\"", "scheduler", "unknown key"),
        ("[server\nendpoint = 1", "", "TOML syntax error"),
    ])
    func profileValidation(template: String, keyPath: String, fragment: String) {
        let text = template.replacingOccurrences(of: "KEY", with: Self.serverKey)
        if fragment.isEmpty {
            #expect(throws: Never.self) { try Self.parse(text) }
            return
        }
        let diagnostics = Self.diagnostics(text)
        #expect(diagnostics.count == 1, "\(diagnostics)")
        #expect(diagnostics.first?.keyPath == keyPath)
        #expect(diagnostics.first?.reason.contains(fragment) == true, "\(diagnostics)")
        #expect(diagnostics.first?.file == "home.toml")
    }

    @Test(arguments: ["", ".hidden", "../etc/passwd", "a/b", "with space", String(repeating: "x", count: 65), "-x"])
    func invalidProfileNamesAreRejected(name: String) {
        #expect(throws: TriglavConfigError.invalidProfileName(name)) { try ProfileName(name) }
    }

    @Test(arguments: ["home", "office-2", "vpn.example.net", "A_b"])
    func validProfileNames(name: String) throws {
        #expect(try ProfileName(name).rawValue == name)
    }

    @Test func loadingFromADirectory() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("home.toml", "[server]\nendpoint = \"[2001:db8::7]:9000\"\npublic_key = \"\(Self.serverKey)\"")
        try directory.write("broken.toml", "[server]\nendpoint = 5")
        try directory.write("notes.txt", "not a profile")
        try directory.write(".hidden.toml", "")
        #expect(try ConfigLoader.profileNames(in: directory.path) == ["broken", "home"])
        let home = try ConfigLoader.loadProfile(named: "home", directory: directory.path)
        #expect(home.endpoint.description == "[2001:db8::7]:9000")
        #expect(throws: TriglavConfigError.profileNotFound(name: "away", directory: directory.path)) {
            try ConfigLoader.loadProfile(named: "away", directory: directory.path)
        }
        #expect(throws: TriglavConfigError.invalidProfileName("../home")) {
            try ConfigLoader.loadProfile(named: "../home", directory: directory.path)
        }
        do {
            _ = try ConfigLoader.loadProfile(named: "broken", directory: directory.path)
            Issue.record("broken profile loaded")
        } catch {
            let paths = error.diagnostics.map(\.keyPath)
            #expect(paths == ["server.endpoint", "server.public_key"])
            #expect(error.diagnostics.allSatisfy { $0.file == "\(directory.path)/broken.toml" })
        }
        #expect(throws: TriglavConfigError.self) { try ConfigLoader.profileNames(in: "\(directory.path)/missing") }
    }
}

@Suite struct RemoteEndpointTests {
    @Test(arguments: [
        ("198.51.100.1", "198.51.100.1:7443"),
        ("198.51.100.1:1", "198.51.100.1:1"),
        ("[2001:db8::1]:443", "[2001:db8::1]:443"),
        ("2001:db8::1", "[2001:db8::1]:7443"),
        ("VPN.example.net", "vpn.example.net:7443"),
        ("vpn.example.net.:65535", "vpn.example.net.:65535"),
        ("localhost:7000", "localhost:7000"),
    ])
    func validEndpoints(text: String, expected: String) throws {
        #expect(try RemoteEndpoint(text).description == expected)
    }

    @Test(arguments: ["", ":7443", "host:", "host:65536", "host:-1", "a b:1", "1.2.3.4.5", "999.1.1.1",
                      "x_y.example:1", "host:1:2", String(repeating: "a", count: 64) + ".example"])
    func invalidEndpoints(text: String) {
        #expect(throws: TriglavConfigValueError.self) { try RemoteEndpoint(text) }
    }
}
