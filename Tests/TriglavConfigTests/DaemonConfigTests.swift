import Testing
@testable import TriglavConfig
import TriglavCore
import TriglavCrypto

@Suite struct DaemonConfigDefaultsTests {
    @Test func emptyFileIsAWorkingClient() throws {
        let config = try ConfigLoader.parseDaemonConfig("", file: "empty.toml")
        #expect(config == DaemonConfig())
        #expect(config.role == .client)
        #expect(config.privateKeyPath == "/var/lib/triglav/private.key")
        #expect(config.logLevel == .info)
        #expect(config.tunnel.interface.rawValue == "triglav0")
        #expect(config.tunnel.mtu == nil)
        #expect(config.multipath.scheduler == .aggregate)
        #expect(config.multipath.reorderMaxHold == .milliseconds(150))
        #expect(config.uplinks.heartbeatInterval == .milliseconds(100))
        #expect(config.uplinks.meteredHeartbeatInterval == .milliseconds(3200))
        #expect(config.uplinks.natKeepalive == .seconds(25))
        #expect(config.uplinks.udpRetryInterval == .seconds(120))
        #expect(config.uplinks.include.map(\.pattern) == ["*"])
        #expect(config.uplinks.exclude.map(\.pattern).contains("lo"))
        #expect(config.uplinks.pins.isEmpty)
        #expect(config.routing.fullTunnel)
        #expect(config.routing.routes.isEmpty && config.routing.exclude.isEmpty)
        #expect(config.routing.firewallMark == 0x7443)
        #expect(config.routing.table == 7443)
        #expect(config.routing.rulePriority == 7443)
        #expect(config.metricsListen == nil)
        #expect(config.server == nil)
    }

    @Test("tunnel.mtu goes up to what a 1500-byte uplink to an IPv4 server carries: 1500 - 20 - 8 - 40")
    func tunnelMTUCeilingIsTheIPv4Figure() throws {
        #expect(ConfigDefaults.maximumTunnelMTU == 1432)
        let config = try ConfigLoader.parseDaemonConfig("[tunnel]\nmtu = 1432\n", file: "mtu.toml")
        #expect(config.tunnel.mtu == 1432)
    }

    @Test func commentsAndWhitespaceOnlyAreEmpty() throws {
        #expect(try ConfigLoader.parseDaemonConfig("# nothing here\n\n   \n", file: "x") == DaemonConfig())
    }

    @Test func serverRoleGetsServerDefaults() throws {
        let config = try ConfigLoader.parseDaemonConfig("role = \"server\"", file: "server.toml")
        let server = try #require(config.server)
        #expect(server.listen.map(\.description) == ["0.0.0.0:7443", "[::]:7443"])
        #expect(server.tunnelIPv4.description == "10.77.0.1/24")
        #expect(server.tunnelIPv6?.description == "fd77::1/64")
        #expect(server.nat.enabled && server.nat.outboundInterface == nil)
        #expect(server.maxClients == 64)
        #expect(server.heartbeatInterval == .milliseconds(100))
        #expect(server.clients.isEmpty)
    }

    @Test func commandLineRoleOverridesTheFile() throws {
        let server = try ConfigLoader.parseDaemonConfig("role = \"client\"", file: "x", roleOverride: .server)
        #expect(server.role == .server && server.server != nil)
        let client = try ConfigLoader.parseDaemonConfig("role = \"server\"", file: "x", roleOverride: .client)
        #expect(client.role == .client && client.server == nil)
    }

    @Test func zeroKeepaliveDisablesIt() throws {
        let config = try ConfigLoader.parseDaemonConfig("[uplinks]\nnat_keepalive_s = 0", file: "x")
        #expect(config.uplinks.natKeepalive == nil)
    }

    @Test func resendRequestsAreOnUnlessTurnedOff() throws {
        #expect(try ConfigLoader.parseDaemonConfig("", file: "x").multipath.resendRequests)
        #expect(try !ConfigLoader.parseDaemonConfig("[multipath]\nresend_requests = false", file: "x").multipath.resendRequests)
        #expect(try ConfigLoader.parseDaemonConfig("[multipath]\nresend_requests = true", file: "x").multipath.resendRequests)
    }

    @Test func pacingIsOnUnlessTurnedOff() throws {
        #expect(try ConfigLoader.parseDaemonConfig("", file: "x").multipath.pacing)
        #expect(try !ConfigLoader.parseDaemonConfig("[multipath]\npacing = false", file: "x").multipath.pacing)
    }

    @Test func dnsResolverIsAutoUnlessChosen() throws {
        #expect(try ConfigLoader.parseDaemonConfig("", file: "x").dnsResolver == .auto)
        for choice in DNSResolverChoice.allCases {
            let config = try ConfigLoader.parseDaemonConfig("[dns]\nresolver = \"\(choice.rawValue)\"", file: "x")
            #expect(config.dnsResolver == choice)
        }
    }

    @Test func udpRetryIntervalIsRead() throws {
        let config = try ConfigLoader.parseDaemonConfig("[uplinks]\nudp_retry_s = 30", file: "x")
        #expect(config.uplinks.udpRetryInterval == .seconds(30))
    }
}

@Suite struct DaemonConfigParsingTests {
    @Test func fullClientConfig() throws {
        let config = try ConfigLoader.parseDaemonConfig("""
            role = "client"
            private_key = "/etc/triglav/key"
            log_level = "debug"
            [tunnel]
            interface = "tg1"
            mtu = 1400
            [multipath]
            scheduler = "lowest-latency"
            reorder_max_hold_ms = 0
            [uplinks]
            include = ["wl*", "eth[0-3]"]
            exclude = ["eth3"]
            heartbeat_interval_ms = 250
            metered_heartbeat_interval_ms = 6400
            nat_keepalive_s = 15
            [uplinks.interface."wwan*"]
            tier = "backup"
            metered = true
            data_cap_mb = 5000
            data_cap_reset_day = 15
            [uplinks.interface.wwan0]
            tier = "secondary"
            heartbeat_interval_ms = 1000
            [routing]
            full_tunnel = false
            routes = ["10.0.0.0/8", "2001:db8::/32"]
            exclude = ["10.1.0.0/16"]
            fwmark = 0x10
            table = 100
            rule_priority = 1000
            [metrics]
            listen = "[::1]:9743"
            """, file: "client.toml")
        #expect(config.privateKeyPath == "/etc/triglav/key")
        #expect(config.logLevel == .debug)
        #expect(config.tunnel.interface.rawValue == "tg1" && config.tunnel.mtu == 1400)
        #expect(config.multipath.scheduler == .lowestLatency && config.multipath.reorderMaxHold == .zero)
        #expect(config.uplinks.heartbeatInterval == .milliseconds(250) && config.uplinks.natKeepalive == .seconds(15))
        #expect(config.uplinks.meteredHeartbeatInterval == .milliseconds(6400))
        #expect(config.uplinks.admits("wlan0", tunnelInterface: config.tunnel.interface))
        #expect(config.uplinks.admits("eth1", tunnelInterface: config.tunnel.interface))
        #expect(!config.uplinks.admits("eth3", tunnelInterface: config.tunnel.interface))
        #expect(!config.uplinks.admits("wwan0", tunnelInterface: config.tunnel.interface))
        let exact = try #require(config.uplinks.pin(for: "wwan0"))
        #expect(exact.tier == .secondary && !exact.metered && exact.dataCapMegabytes == nil)
        #expect(exact.heartbeatInterval == .milliseconds(1000))
        let glob = try #require(config.uplinks.pin(for: "wwan1"))
        #expect(glob.tier == .backup && glob.metered && glob.dataCapMegabytes == 5000 && glob.dataCapResetDay == 15)
        #expect(glob.heartbeatInterval == nil)
        #expect(config.uplinks.pin(for: "eth0") == nil)
        #expect(!config.routing.fullTunnel)
        #expect(config.routing.routes.map(\.description) == ["10.0.0.0/8", "2001:db8::/32"])
        #expect(config.routing.exclude.map(\.description) == ["10.1.0.0/16"])
        #expect(config.routing.firewallMark == 0x10 && config.routing.table == 100 && config.routing.rulePriority == 1000)
        #expect(config.metricsListen?.description == "[::1]:9743")
    }

    @Test("an uplink's idle heartbeat: its interface's setting, else metered: the longer of the two [uplinks] intervals")
    func heartbeatIntervalPerUplink() throws {
        let config = try ConfigLoader.parseDaemonConfig("""
            [uplinks.interface.eth0]
            heartbeat_interval_ms = 500
            [uplinks.interface.wwan0]
            metered = true
            """, file: "x")
        let uplinks = config.uplinks
        #expect(uplinks.heartbeatInterval(forMetered: false, pin: nil) == .milliseconds(100))
        #expect(uplinks.heartbeatInterval(forMetered: true, pin: nil) == .milliseconds(3200))
        #expect(uplinks.heartbeatInterval(forMetered: true, pin: uplinks.pin(for: "wwan0")) == .milliseconds(3200))
        // An explicit interface setting wins, metered or not.
        #expect(uplinks.heartbeatInterval(forMetered: true, pin: uplinks.pin(for: "eth0")) == .milliseconds(500))
        #expect(uplinks.heartbeatInterval(forMetered: false, pin: uplinks.pin(for: "eth0")) == .milliseconds(500))
        // Metered never probes more often than unmetered.
        let slow = try ConfigLoader.parseDaemonConfig("[uplinks]\nheartbeat_interval_ms = 10000\nmetered_heartbeat_interval_ms = 1000",
                                                      file: "x").uplinks
        #expect(slow.heartbeatInterval(forMetered: true, pin: nil) == .milliseconds(10_000))
        #expect(slow.heartbeatInterval(forMetered: false, pin: nil) == .milliseconds(10_000))
    }

    @Test("an interface's transport: tcp or udp, unset by default; anything else is reported with the key")
    func transportPerUplink() throws {
        let config = try ConfigLoader.parseDaemonConfig("""
            [uplinks.interface."wlan*"]
            transport = "tcp"
            [uplinks.interface.eth0]
            transport = "udp"
            """, file: "x")
        #expect(config.uplinks.pin(for: "wlan1")?.transport == .tcp)
        #expect(config.uplinks.pin(for: "eth0")?.transport == .udp)
        #expect(config.uplinks.pin(for: "eth1")?.transport == nil)
        expectSingleDiagnostic("[uplinks.interface.eth0]\ntransport = \"quic\"", at: "uplinks.interface.eth0.transport",
                               containing: "is not one of \"udp\", \"tcp\"")
    }

    @Test func tunnelInterfaceIsNeverAnUplink() throws {
        let config = try ConfigLoader.parseDaemonConfig("[uplinks]\nexclude = []\n[tunnel]\ninterface = \"tg9\"", file: "x")
        #expect(!config.uplinks.admits("tg9", tunnelInterface: config.tunnel.interface))
        #expect(config.uplinks.admits("lo", tunnelInterface: config.tunnel.interface))
    }

    @Test func fullServerConfig() throws {
        let keys = publicKeys(2)
        let config = try ConfigLoader.parseDaemonConfig("""
            role = "server"
            [server]
            listen = ["192.0.2.1:443", "[2001:db8::1]"]
            tunnel_ipv4 = "10.9.0.1/16"
            tunnel_ipv6 = "fd09::1/64"
            max_clients = 2
            heartbeat_interval_ms = 2500
            [server.nat]
            enabled = false
            outbound_interface = "ens3"
            [[server.clients]]
            name = "laptop"
            public_key = "\(keys[0])"
            tunnel_ipv4 = "10.9.1.2"
            tunnel_ipv6 = "fd09::2"
            [[server.clients]]
            name = "phone@alice"
            public_key = "\(keys[1])"
            tunnel_ipv4 = "10.9.255.254"
            """, file: "server.toml")
        let server = try #require(config.server)
        #expect(server.listen.map(\.description) == ["192.0.2.1:443", "[2001:db8::1]:7443"])
        #expect(server.tunnelIPv4.description == "10.9.0.1/16" && server.tunnelIPv6?.description == "fd09::1/64")
        #expect(!server.nat.enabled && server.nat.outboundInterface?.rawValue == "ens3")
        #expect(server.maxClients == 2)
        #expect(server.heartbeatInterval == .milliseconds(2500))
        #expect(server.clients.map(\.name) == ["laptop", "phone@alice"])
        #expect(server.clients[0].publicKey.base64 == keys[0])
        #expect(server.clients[0].tunnelIPv4 == IPAddress("10.9.1.2"))
        #expect(server.clients[0].tunnelIPv6 == IPAddress("fd09::2"))
        #expect(server.clients[1].tunnelIPv6 == nil)
    }

    @Test(arguments: ["triglavd-client.toml", "triglavd-server.toml"])
    func shippedExamplesAreValid(file: String) throws {
        let config = try ConfigLoader.loadDaemonConfig(path: "\(examplesDirectory)/\(file)")
        #expect(config.role == (file.contains("server") ? .server : .client))
    }
}

@Suite struct DaemonConfigValidationTests {
    @Test func syntaxErrorHasLineAndColumn() {
        let diagnostics = daemonDiagnostics("role = \"client\"\n[tunnel]\ninterface = triglav0\n")
        #expect(diagnostics.count == 1)
        let location = diagnostics.first?.location
        #expect(location?.line == 3)
        #expect((location?.column ?? 0) > 1)
        #expect(diagnostics.first?.reason.hasPrefix("TOML syntax error") == true)
        #expect(diagnostics.first?.description.hasPrefix("test.toml:3:") == true)
    }

    @Test(arguments: ["[tunnel\n", "a = 1\na = 2\n", "x = [1,\n", "key = \"unterminated\n", "= 3\n"])
    func malformedTOMLIsASyntaxError(text: String) {
        let diagnostics = daemonDiagnostics(text)
        #expect(diagnostics.count == 1)
        #expect(diagnostics.first?.location != nil)
    }

    @Test func unknownKeysSuggestTheClosestKnownKey() {
        expectSingleDiagnostic("log_levle = \"debug\"", at: "log_levle", containing: "did you mean 'log_level'?")
        expectSingleDiagnostic("[routng]\nfull_tunnel = false", at: "routng", containing: "did you mean 'routing'?")
        expectSingleDiagnostic("[multipath]\nschedular = \"flow\"", at: "multipath.schedular", containing: "'scheduler'")
        expectSingleDiagnostic("[routing]\nfullTunnel = false", at: "routing.fullTunnel", containing: "'full_tunnel'")
    }

    @Test func unknownKeyWithoutCloseMatchListsTheKnownKeys() {
        expectSingleDiagnostic("[tunnel]\ncolour = \"blue\"", at: "tunnel.colour",
                               containing: "known keys here: interface, mtu")
    }

    @Test func unknownKeyInAClientEntryHasItsIndex() {
        let key = publicKeys(1)[0]
        expectSingleDiagnostic("""
            role = "server"
            [[server.clients]]
            name = "a"
            public_key = "\(key)"
            tunnel_ipv4 = "10.77.0.2"
            pubkey = "x"
            """, at: "server.clients[0].pubkey", containing: "did you mean 'public_key'?")
    }

    @Test(arguments: [
        ("role = 1", "role", "expected a string, got an integer"),
        ("log_level = true", "log_level", "expected a string, got a boolean"),
        ("tunnel = \"triglav0\"", "tunnel", "expected a table"),
        ("[tunnel]\nmtu = 1400.5", "tunnel.mtu", "expected an integer, got a floating-point number"),
        ("[multipath]\nreorder_max_hold_ms = \"50\"", "multipath.reorder_max_hold_ms", "expected an integer, got a string"),
        ("[multipath]\nresend_requests = \"off\"", "multipath.resend_requests", "expected a boolean (true or false), got a string"),
        ("[multipath]\npacing = 1", "multipath.pacing", "expected a boolean (true or false), got an integer"),
        ("[uplinks]\ninclude = \"*\"", "uplinks.include", "expected an array of strings, got a string"),
        ("[uplinks]\nexclude = [\"lo\", 3]", "uplinks.exclude[1]", "expected a string, got an integer"),
        ("[uplinks.interface]\neth0 = \"primary\"", "uplinks.interface.eth0", "expected a table"),
        ("[uplinks.interface.eth0]\nmetered = \"yes\"", "uplinks.interface.eth0.metered", "expected a boolean"),
        ("[routing]\nfull_tunnel = 1", "routing.full_tunnel", "expected a boolean"),
        ("[routing]\nroutes = [1979-05-27]", "routing.routes[0]", "expected a string, got a date/time"),
        ("[metrics]\nlisten = 9743", "metrics.listen", "expected a string, got an integer"),
        ("[server]\nclients = 3", "server.clients", "expected an array of tables"),
        ("[server]\nclients = [1]", "server.clients[0]", "expected a table, got an integer"),
        ("[server.nat]\nenabled = \"no\"", "server.nat.enabled", "expected a boolean"),
    ])
    func wrongTypesAreReported(toml: String, keyPath: String, fragment: String) {
        expectSingleDiagnostic(toml, at: keyPath, containing: fragment, role: toml.contains("server") ? .server : nil)
    }

    @Test(arguments: [
        ("[tunnel]\nmtu = 9000", "tunnel.mtu", "must be 1280 to 1432 bytes"),
        ("[tunnel]\nmtu = 1433", "tunnel.mtu", "must be 1280 to 1432 bytes"),
        ("[tunnel]\nmtu = 576", "tunnel.mtu", "out of range"),
        ("[multipath]\nreorder_max_hold_ms = -1", "multipath.reorder_max_hold_ms", "must be 0 to 5000 ms"),
        ("[uplinks]\nheartbeat_interval_ms = 0", "uplinks.heartbeat_interval_ms", "must be 10 to 60000 ms"),
        ("[uplinks]\nmetered_heartbeat_interval_ms = 60001", "uplinks.metered_heartbeat_interval_ms", "must be 10 to 60000 ms"),
        ("[uplinks.interface.wwan0]\nheartbeat_interval_ms = 9", "uplinks.interface.wwan0.heartbeat_interval_ms", "must be 10 to 60000 ms"),
        ("[uplinks]\nnat_keepalive_s = 86400", "uplinks.nat_keepalive_s", "must be 0 to 3600 s"),
        ("[uplinks]\nudp_retry_s = 0", "uplinks.udp_retry_s", "must be 1 to 86400 s"),
        ("[uplinks.interface.eth0]\ndata_cap_mb = 0", "uplinks.interface.eth0.data_cap_mb", "out of range"),
        ("[uplinks.interface.eth0]\ndata_cap_mb = 10\ndata_cap_reset_day = 31", "uplinks.interface.eth0.data_cap_reset_day", "must be 1 to 28"),
        ("[routing]\nfwmark = 0", "routing.fwmark", "must be 1 to 4294967295"),
        ("[routing]\nfwmark = 0x1_0000_0000", "routing.fwmark", "out of range"),
        ("[routing]\ntable = 254", "routing.table", "reserved by the kernel"),
        ("[routing]\ntable = 0", "routing.table", "out of range"),
        ("[routing]\nrule_priority = 32764", "routing.rule_priority", "must be 1 to 32763"),
        ("[server]\nmax_clients = 0", "server.max_clients", "must be 1 to 65535"),
        ("[server]\nheartbeat_interval_ms = 5", "server.heartbeat_interval_ms", "must be 10 to 60000 ms"),
        ("[server]\nmax_clients = 300", "server.max_clients", "room for 253 besides the server"),
    ])
    func outOfRangeValuesAreReported(toml: String, keyPath: String, fragment: String) {
        expectSingleDiagnostic(toml, at: keyPath, containing: fragment, role: toml.contains("server") ? .server : nil)
    }

    @Test(arguments: [
        ("role = \"sever\"", "role", "did you mean 'server'?"),
        ("log_level = \"verbose\"", "log_level", "\"trace\", \"debug\", \"info\""),
        ("[multipath]\nscheduler = \"fastest\"", "multipath.scheduler", "\"lowest-latency\""),
        ("[uplinks.interface.eth0]\ntier = \"tertiary\"", "uplinks.interface.eth0.tier", "\"primary\", \"secondary\", \"backup\", \"never\""),
        ("[dns]\nresolver = \"resolved\"", "dns.resolver", "\"auto\", \"systemd-resolved\", \"resolvconf\", \"file\""),
    ])
    func unknownChoicesListTheAllowedValues(toml: String, keyPath: String, fragment: String) {
        expectSingleDiagnostic(toml, at: keyPath, containing: fragment)
    }

    @Test(arguments: [
        ("private_key = \"keys/private.key\"", "private_key", "not an absolute path"),
        ("[tunnel]\ninterface = \"a-much-too-long-name\"", "tunnel.interface", "1 to 15 bytes"),
        ("[tunnel]\ninterface = \"tun/0\"", "tunnel.interface", "must not contain '/'"),
        ("[uplinks]\ninclude = [\"eth[0-\"]", "uplinks.include[0]", "without a closing ']'"),
        ("[uplinks]\nexclude = [\"\"]", "uplinks.exclude[0]", "must not be empty"),
        ("[uplinks]\ninclude = []", "uplinks.include", "admits no interface"),
        ("[uplinks.interface.\"wl an\"]\ntier = \"backup\"", "uplinks.interface.\"wl an\"", "not an interface name or pattern"),
        ("[uplinks.interface.eth0]\ndata_cap_reset_day = 3", "uplinks.interface.eth0.data_cap_reset_day", "without data_cap_mb"),
        ("[metrics]\nlisten = \"127.0.0.1\"", "metrics.listen", "give a port"),
        ("[metrics]\nlisten = \"localhost:9743\"", "metrics.listen", "invalid endpoint"),
        ("[dns]\nservers = [\"10.0.0.1\"]", "dns.servers", "belongs in a profile's [dns]"),
        ("[dns]\nresolver = \"file\"\nfrom_server = false", "dns.from_server", "belongs in a profile's [dns]"),
    ])
    func badValuesAreReported(toml: String, keyPath: String, fragment: String) {
        expectSingleDiagnostic(toml, at: keyPath, containing: fragment)
    }

    @Test(arguments: [
        ("[routing]\nroutes = [\"10.0.0.0/33\"]", "routing.routes[0]", "prefix length must be 0 to 32"),
        ("[routing]\nroutes = [\"10.0.0/8\"]", "routing.routes[0]", "invalid address prefix"),
        ("[routing]\nroutes = [\"10.1.2.3/8\"]", "routing.routes[0]", "did you mean 10.0.0.0/8?"),
        ("[routing]\nexclude = [\"fd00::1/8\"]", "routing.exclude[0]", "did you mean fd00::/8?"),
        ("[routing]\nexclude = [\"::ffff:1.2.3.4.5/96\"]", "routing.exclude[0]", "invalid address prefix"),
        ("[routing]\nroutes = [\"10.0.0.0/8\"]\nexclude = [\"10.0.0.0/8\"]", "routing.exclude", "also in routes"),
        ("[server]\nlisten = [\"0.0.0.0:0\"]", "server.listen[0]", "port must be 1 to 65535"),
        ("[server]\nlisten = [\"1.2.3.4:70000\"]", "server.listen[0]", "invalid endpoint"),
        ("[server]\nlisten = [\"[2001:db8::1]:http\"]", "server.listen[0]", "invalid endpoint"),
        ("[server]\nlisten = [\"0.0.0.0:7443\", \"0.0.0.0:7443\"]", "server.listen", "listed twice"),
        ("[server]\nlisten = []", "server.listen", "must listen somewhere"),
        ("[server]\ntunnel_ipv4 = \"fd77::1/64\"", "server.tunnel_ipv4", "not an IPv4 prefix"),
        ("[server]\ntunnel_ipv6 = \"10.77.0.1/24\"", "server.tunnel_ipv6", "not an IPv6 prefix"),
        ("[server]\ntunnel_ipv4 = \"10.77.0.0/24\"", "server.tunnel_ipv4", "network or broadcast address"),
        ("[server]\ntunnel_ipv4 = \"10.77.0.255/24\"", "server.tunnel_ipv4", "network or broadcast address"),
        ("[server]\ntunnel_ipv4 = \"10.77.0.1/31\"", "server.tunnel_ipv4", "must be /8 to /30"),
        ("[server]\ntunnel_ipv4 = \"10.77.0.1\"", "server.tunnel_ipv4", "must be /8 to /30"),
        ("[server]\ntunnel_ipv6 = \"fd77::/64\"", "server.tunnel_ipv6", "network or broadcast address"),
        ("[server]\ntunnel_ipv4 = \"10.77.0.300/24\"", "server.tunnel_ipv4", "invalid address prefix"),
        ("[server.nat]\noutbound_interface = \"\"", "server.nat.outbound_interface", "1 to 15 bytes"),
    ])
    func badAddressesAreReported(toml: String, keyPath: String, fragment: String) {
        expectSingleDiagnostic(toml, at: keyPath, containing: fragment, role: toml.contains("server") ? .server : nil)
    }

    @Test func dnsSectionIsForTheClientRole() {
        expectSingleDiagnostic("role = \"server\"\n[dns]\nresolver = \"file\"", at: "dns", containing: "only to the client role")
    }

    @Test func serverSectionNeedsTheServerRole() {
        expectSingleDiagnostic("[server]\nmax_clients = 5", at: "server", containing: "only to role = \"server\"")
    }

    @Test func misspelledServerRoleIsReportedOnce() {
        expectSingleDiagnostic("role = \"sever\"\n[server]\nmax_clients = 5", at: "role", containing: "did you mean 'server'?")
    }

    @Test func serverSectionIsCheckedEvenWithTheClientRole() {
        let paths = daemonDiagnostics("[server]\nmax_clients = 0").map(\.keyPath)
        #expect(paths == ["server.max_clients", "server"])
    }

    @Test func everyProblemIsReportedNotJustTheFirst() {
        let diagnostics = daemonDiagnostics("""
            role = "sever"
            log_levle = "debug"
            [tunnel]
            mtu = 9000
            [routing]
            routes = ["10.0.0.0/40", "nonsense"]
            table = 255
            """)
        #expect(Set(diagnostics.map(\.keyPath)) == ["role", "log_levle", "tunnel.mtu", "routing.routes[0]",
                                                     "routing.routes[1]", "routing.table"])
        #expect(diagnostics.allSatisfy { $0.file == "test.toml" })
        #expect(diagnostics.allSatisfy { $0.description.hasPrefix("test.toml: \($0.keyPath): ") })
    }
}

@Suite struct AuthorizedClientValidationTests {
    static let keys = publicKeys(3)

    static func server(_ clients: String) -> String {
        "role = \"server\"\n[server]\ntunnel_ipv4 = \"10.77.0.1/24\"\ntunnel_ipv6 = \"fd77::1/64\"\n" + clients
    }

    static func client(name: String = "c", key: String, ipv4: String? = "10.77.0.2", ipv6: String? = nil) -> String {
        var text = "[[server.clients]]\nname = \"\(name)\"\npublic_key = \"\(key)\"\n"
        if let ipv4 { text += "tunnel_ipv4 = \"\(ipv4)\"\n" }
        if let ipv6 { text += "tunnel_ipv6 = \"\(ipv6)\"\n" }
        return text
    }

    @Test func duplicateKeyIsReportedOnTheLaterClient() {
        expectSingleDiagnostic(Self.server(Self.client(name: "a", key: Self.keys[0], ipv4: "10.77.0.2")
                                           + Self.client(name: "b", key: Self.keys[0], ipv4: "10.77.0.3")),
                               at: "server.clients[1].public_key", containing: "same key as server.clients[0]")
    }

    @Test func duplicateNameIsReported() {
        expectSingleDiagnostic(Self.server(Self.client(name: "a", key: Self.keys[0], ipv4: "10.77.0.2")
                                           + Self.client(name: "a", key: Self.keys[1], ipv4: "10.77.0.3")),
                               at: "server.clients[1].name", containing: "already the name of server.clients[0]")
    }

    @Test func duplicateAddressesAreReported() {
        let diagnostics = daemonDiagnostics(Self.server(
            Self.client(name: "a", key: Self.keys[0], ipv4: "10.77.0.2", ipv6: "fd77::2")
                + Self.client(name: "b", key: Self.keys[1], ipv4: "10.77.0.3")
                + Self.client(name: "c", key: Self.keys[2], ipv4: "10.77.0.2", ipv6: "fd77:0::2")))
        #expect(diagnostics.map(\.keyPath) == ["server.clients[2].tunnel_ipv4", "server.clients[2].tunnel_ipv6"])
        #expect(diagnostics.allSatisfy { $0.reason.contains("already assigned to server.clients[0]") })
    }

    @Test(arguments: [
        ("10.78.0.2", nil, "server.clients[0].tunnel_ipv4", "outside the server's tunnel prefix 10.77.0.0/24"),
        ("10.77.0.1", nil, "server.clients[0].tunnel_ipv4", "the server's own tunnel address"),
        ("10.77.0.0", nil, "server.clients[0].tunnel_ipv4", "network or broadcast"),
        ("10.77.0.255", nil, "server.clients[0].tunnel_ipv4", "network or broadcast"),
        ("10.77.0.2/32", nil, "server.clients[0].tunnel_ipv4", "not an IPv4 address"),
        ("fd77::2", nil, "server.clients[0].tunnel_ipv4", "not an IPv4 address"),
        ("10.77.0.2", "fd78::2", "server.clients[0].tunnel_ipv6", "outside the server's tunnel prefix fd77::/64"),
        ("10.77.0.2", "10.77.0.3", "server.clients[0].tunnel_ipv6", "not an IPv6 address"),
        ("10.77.0.2", "fd77::1", "server.clients[0].tunnel_ipv6", "the server's own tunnel address"),
    ] as [(String, String?, String, String)])
    func clientAddressesMustFitThePool(ipv4: String, ipv6: String?, keyPath: String, fragment: String) {
        expectSingleDiagnostic(Self.server(Self.client(key: Self.keys[0], ipv4: ipv4, ipv6: ipv6)),
                               at: keyPath, containing: fragment)
    }

    @Test(arguments: [
        ("not base64!", "not valid base64"),
        ("AAAA", "must be 32 bytes, got 3"),
        (Base64.encode([UInt8](repeating: 7, count: 64)), "must be 32 bytes, got 64"),
        ("", "not valid base64"),
    ])
    func badPublicKeysAreReported(key: String, fragment: String) {
        expectSingleDiagnostic(Self.server(Self.client(key: key)), at: "server.clients[0].public_key", containing: fragment)
    }

    @Test func missingRequiredKeysAreReported() {
        let diagnostics = daemonDiagnostics("role = \"server\"\n[[server.clients]]\n")
        #expect(diagnostics.map(\.keyPath) == ["server.clients[0].name", "server.clients[0].public_key",
                                               "server.clients[0].tunnel_ipv4"])
        #expect(diagnostics.allSatisfy { $0.reason.hasPrefix("missing") })
        #expect(diagnostics.last?.reason.contains("10.77.0.2") == true)
        // Either family will do, and the message says so.
        #expect(diagnostics.last?.reason.contains("tunnel_ipv6 = \"fd77::2\"") == true)
    }

    @Test func anIPv6OnlyClientNeedsNoIPv4Address() throws {
        let config = try ConfigLoader.parseDaemonConfig(Self.server(Self.client(key: Self.keys[0], ipv4: nil, ipv6: "fd77::2")),
                                                        file: "test.toml")
        let client = try #require(config.server?.clients.first)
        #expect(client.tunnelIPv4 == nil && client.tunnelIPv6 == IPAddress("fd77::2"))
        // An IPv6 address outside the pool is still an error, not a client with no address.
        expectSingleDiagnostic(Self.server(Self.client(key: Self.keys[0], ipv4: nil, ipv6: "fd78::2")),
                               at: "server.clients[0].tunnel_ipv6", containing: "outside the server's tunnel prefix fd77::/64")
    }

    @Test func badClientNameIsReported() {
        expectSingleDiagnostic(Self.server(Self.client(name: "bob smith", key: Self.keys[0])),
                               at: "server.clients[0].name", containing: "not a valid client name")
    }

    @Test func moreClientsThanMaxClientsIsReported() {
        let text = Self.server("max_clients = 1\n" + Self.client(name: "a", key: Self.keys[0], ipv4: "10.77.0.2")
                                   + Self.client(name: "b", key: Self.keys[1], ipv4: "10.77.0.3"))
        expectSingleDiagnostic(text, at: "server.clients", containing: "2 clients are authorized but max_clients is 1")
    }
}

@Suite struct DaemonConfigAutoconnectTests {
    @Test func autoconnectNamesAProfile() throws {
        #expect(try ConfigLoader.parseDaemonConfig("", file: "t.toml").autoconnect == nil)
        let config = try ConfigLoader.parseDaemonConfig("autoconnect = \"home-lte.2\"", file: "t.toml")
        #expect(config.autoconnect == (try ProfileName("home-lte.2")))
    }

    @Test(arguments: ["../etc/passwd", "", "-home", "a b", String(repeating: "x", count: 65)])
    func autoconnectMustBeAProfileName(name: String) {
        expectSingleDiagnostic("autoconnect = \"\(name)\"", at: "autoconnect", containing: "is not a profile name")
    }

    @Test func autoconnectIsAClientSetting() {
        expectSingleDiagnostic("role = \"server\"\nautoconnect = \"home\"", at: "autoconnect", containing: "only to the client role")
        expectSingleDiagnostic("autoconnect = \"home\"", at: "autoconnect", containing: "only to the client role", role: .server)
        expectSingleDiagnostic("autoconnect = 1", at: "autoconnect", containing: "expected a string")
    }
}
