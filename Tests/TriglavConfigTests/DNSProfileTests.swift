import Testing
@testable import TriglavConfig
import TriglavCore

/// A profile's `[dns]` (docs/CONFIG.md): resolvers, search and routing domains, the default route.
@Suite struct DNSProfileTests {
    static func profile(_ dns: String) throws(TriglavConfigError) -> Profile {
        try ProfileTests.parse("[server]\nendpoint = \"203.0.113.5\"\npublic_key = \"\(ProfileTests.serverKey)\"\n[dns]\n" + dns)
    }

    @Test func serversDomainsAndDefaultRouteAreRead() throws {
        let profile = try Self.profile("""
            servers = ["10.77.0.1", "fd77::1"]
            domains = ["Corp.Example.", "~lab.example"]
            default_route = false
            """)
        #expect(profile.dns.servers.map(\.description) == ["10.77.0.1", "fd77::1"])
        #expect(profile.dns.domains.map(\.description) == ["corp.example", "~lab.example"])
        #expect(profile.dns.domains.map(\.routingOnly) == [false, true])
        #expect(profile.dns.defaultRoute == false)
        let settings = ConnectionSettings(daemon: DaemonConfig(), profile: profile)
        #expect(settings.dns == profile.dns)
    }

    @Test func withoutTheSectionDNSIsLeftAlone() throws {
        let profile = try ProfileTests.parse("[server]\nendpoint = \"203.0.113.5\"\npublic_key = \"\(ProfileTests.serverKey)\"")
        #expect(profile.dns == DNSSettings())
        #expect(ConnectionSettings(daemon: DaemonConfig(), profile: profile).dns.servers.isEmpty)
    }

    @Test(arguments: [
        ("domains = [\"corp.example\"]", "dns.servers", "missing"),
        ("servers = [\"10.77.0.300\"]", "dns.servers[0]", "not an IP address"),
        ("servers = [\"0.0.0.0\"]", "dns.servers[0]", "unspecified"),
        ("servers = [\"::\"]", "dns.servers[0]", "unspecified"),
        ("servers = [\"10.77.0.1\", \"10.77.0.1\"]", "dns.servers", "listed twice"),
        ("servers = \"10.77.0.1\"", "dns.servers", "expected an array"),
        ("servers = [\"10.77.0.1\"]\ndomains = [\"-bad.example\"]", "dns.domains[0]", "not a domain name"),
        ("servers = [\"10.77.0.1\"]\ndomains = [\"a..b\"]", "dns.domains[0]", "not a domain name"),
        ("servers = [\"10.77.0.1\"]\ndomains = [\"sp ace.example\"]", "dns.domains[0]", "not a domain name"),
        ("servers = [\"10.77.0.1\"]\ndomains = [\".\"]", "dns.domains[0]", "~."),
        ("servers = [\"10.77.0.1\"]\ndomains = [\"corp.example\", \"~corp.example\"]", "dns.domains", "listed twice"),
        ("servers = [\"10.77.0.1\"]\ndefault_route = 1", "dns.default_route", "expected a boolean"),
        ("servers = [\"10.77.0.1\"]\ndomains = [\"~.\"]\ndefault_route = false", "dns.default_route", "remove one"),
        ("servers = [\"10.77.0.1\"]\nsearch = [\"corp.example\"]", "dns.search", "unknown key"),
    ])
    func invalidSectionsAreReportedWithTheKey(dns: String, keyPath: String, fragment: String) {
        do {
            _ = try Self.profile(dns)
            Issue.record("accepted: \(dns)")
        } catch {
            #expect(error.diagnostics.count == 1, "\(error.diagnostics)")
            #expect(error.diagnostics.first?.keyPath == keyPath, "\(error.diagnostics)")
            #expect(error.diagnostics.first?.reason.contains(fragment) == true, "\(error.diagnostics)")
        }
    }

    @Test func fromServerDeclinesTheServersOfferWithoutServersOfItsOwn() throws {
        var declining = DNSSettings()
        declining.acceptsServerOffer = false
        #expect(try Self.profile("from_server = false").dns == declining)
        #expect(try Self.profile("servers = [\"10.77.0.1\"]\nfrom_server = false").dns.servers.count == 1)
        #expect(try Self.profile("servers = [\"10.77.0.1\"]").dns.acceptsServerOffer)
        let head = "[server]\nendpoint = \"203.0.113.5\"\npublic_key = \"\(ProfileTests.serverKey)\"\n[dns]\n"
        let both = ProfileTests.diagnostics(head + "servers = [\"10.77.0.1\"]\nfrom_server = true")
        #expect(both.map(\.keyPath) == ["dns.from_server"] && both.first?.reason.contains("remove one") == true, "\(both)")
        let bare = ProfileTests.diagnostics(head)
        #expect(bare.first?.reason.contains("from_server = false") == true, "\(bare)")
    }

    static func serverConfig(_ dns: String) -> String {
        "role = \"server\"\n[server]\n[server.dns]\n" + dns
    }

    @Test func theServersOfferIsRead() throws {
        let text = Self.serverConfig("servers = [\"10.77.0.1\"]\ndomains = [\"corp.example\", \"~.\"]")
        let config = try ConfigLoader.parseDaemonConfig(text, file: "test.toml", roleOverride: nil)
        let dns = try #require(config.server?.dns)
        #expect(dns.servers.map(\.description) == ["10.77.0.1"])
        #expect(dns.domains.map(\.description) == ["corp.example", "~."] && dns.defaultRoute == nil)
        #expect(dns.offerLength == 4 + 17 + 13 + 3)
        #expect(try ConfigLoader.parseDaemonConfig("role = \"server\"", file: "test.toml", roleOverride: nil).server?.dns == DNSSettings())
    }

    @Test func serverOffersThatCannotBeSentOrMeanNothingAreReported() {
        let long = String(repeating: "a", count: 60) + "." + String(repeating: "b", count: 60) + ".example"
        let domains = (0..<8).map { "\"d\($0).\(long)\"" }.joined(separator: ", ")
        expectSingleDiagnostic(Self.serverConfig("servers = [\"10.77.0.1\"]\ndomains = [\(domains)]"),
                               at: "server.dns.domains", containing: "more than the 1024")
        let many = (0..<33).map { "\"d\($0).example\"" }.joined(separator: ", ")
        expectSingleDiagnostic(Self.serverConfig("servers = [\"10.77.0.1\"]\ndomains = [\(many)]"),
                               at: "server.dns.domains", containing: "at most 32")
        expectSingleDiagnostic(Self.serverConfig("domains = [\"corp.example\"]"), at: "server.dns.servers", containing: "missing")
        expectSingleDiagnostic(Self.serverConfig("servers = [\"10.77.0.1\"]\nfrom_server = false"),
                               at: "server.dns.from_server", containing: "unknown key")
    }

    @Test func tooManyServersAreRefused() {
        let servers = (1...17).map { "\"10.77.0.\($0)\"" }.joined(separator: ", ")
        #expect(throws: TriglavConfigError.self) { try Self.profile("servers = [\(servers)]") }
    }

    @Test(arguments: ["~.", "example", "a-b.example", "_sip._udp.example", String(repeating: "a", count: 63) + ".example"])
    func validDomains(text: String) throws {
        #expect(try DNSDomain(text).description == text.lowercased())
    }

    @Test(arguments: ["", "~", "a.-b", String(repeating: "a", count: 64) + ".example",
                      Array(repeating: String(repeating: "a", count: 60), count: 5).joined(separator: "."), "bad!name"])
    func invalidDomains(text: String) {
        #expect(throws: TriglavConfigValueError.self) { try DNSDomain(text) }
    }
}
