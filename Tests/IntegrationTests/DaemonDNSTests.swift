import Foundation
import Testing
import TriglavTestSupport

extension DaemonTests {
    /// A profile's `[dns]` on the real client daemon: handed to (a stand-in for) systemd-resolved for the TUN's
    /// ifindex once the tunnel exists, shown on the bus and by `triglav status`, reverted on disconnect; without
    /// resolved the tunnel comes up anyway with the reason on the bus, and DNS follows once resolved appears.
    @Test("a profile's [dns] reaches resolved for the TUN link, shows on the bus and in status, and is reverted on disconnect")
    func profileDNSGoesToResolvedForTheTunnelLink() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        try lab.startBus()
        // An IPv6 tunnel address too: without one, the full tunnel blocks IPv6 and fd78::1 would be left out.
        try lab.edit("server.toml") {
            $0.replacingOccurrences(of: "tunnel_ipv4 = \"\(DaemonLab.clientTunnelAddress)\"",
                                    with: "tunnel_ipv4 = \"\(DaemonLab.clientTunnelAddress)\"\ntunnel_ipv6 = \"fd78::2\"")
        }
        try lab.edit("profiles/lab.toml") {
            $0 + "[dns]\nservers = [\"\(DaemonLab.serverTunnelAddress)\", \"fd78::1\"]\ndomains = [\"corp.example\"]"
        }
        let resolvedLog = "\(lab.directory)/resolved-calls.log"
        let resolved = try lab.startFakeResolved(callLog: resolvedLog)
        let (_, serverNotify) = try lab.startServer(onBus: false)
        try serverNotify.waitFor("READY=1", timeout: 15)
        // /etc/resolv.conf read-only: without resolved (below) the link's DNS has nowhere to go.
        let (_, clientNotify) = try lab.startClient(resolvConf: .readOnly)
        try clientNotify.waitFor("READY=1", timeout: 15)
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")

        let index = try lab.exec(lab.client, "cat /sys/class/net/tgc0/ifindex").trimmingCharacters(in: .whitespacesAndNewlines)
        func calls() -> String { (try? String(contentsOfFile: resolvedLog, encoding: .utf8)) ?? "" }
        let applied = try pollUntil(timeout: 5, calls, isDone: { $0.contains("SetLinkDefaultRoute") })
        #expect(applied == """
            SetLinkDNS \(index) \(DaemonLab.serverTunnelAddress) fd78::1
            SetLinkDomains \(index) corp.example ~.
            SetLinkDefaultRoute \(index) true

            """, "client log:\n\(lab.log("client"))")
        // resolved running takes it; /etc/resolv.conf is not touched.
        #expect(try String(contentsOfFile: lab.resolvConfPath(lab.client), encoding: .utf8) == DaemonLab.labResolvConf)
        let manager = "org.triglav /org/triglav org.triglav.Manager1"
        #expect(try lab.busctl("get-property \(manager) DNSServers") == "as 2 \"\(DaemonLab.serverTunnelAddress)\" \"fd78::1\"\n")
        #expect(try lab.busctl("get-property \(manager) DNSDomains") == "as 2 \"corp.example\" \"~.\"\n")
        #expect(try lab.busctl("get-property \(manager) DNSError") == "s \"\"\n")
        #expect(try lab.busctl("get-property \(manager) DNSResolver") == "s \"systemd-resolved\"\n")
        let cli = "\(DaemonLab.product("triglav")) --bus-address '\(lab.busAddress ?? "")'"
        // The TUN's MTU (1500-byte veths less the tunnel's 68 bytes over IPv4), once the once-a-second refresh read it.
        let mtu = try pollUntil(timeout: 5, { try lab.busctl("get-property \(manager) TunnelMTU") }, isDone: { $0 == "u 1432\n" })
        #expect(mtu == "u 1432\n")
        let status = try lab.sh("\(cli) status")
        #expect(status.contains("DNS:") && status.contains("fd78::1 (all queries) via systemd-resolved")
                && !status.contains("NOT APPLIED"), "\(status)")
        #expect(status.contains("(MTU 1432)"), "\(status)")

        try lab.sh("\(cli) disconnect")
        let reverted = try pollUntil(timeout: 5, calls, isDone: { $0.contains("RevertLink") })
        #expect(reverted.hasSuffix("RevertLink \(index)\n"), "\(reverted)")
        #expect(try lab.busctl("get-property \(manager) DNSServers") == "as 0\n")

        // No resolved on the bus and /etc/resolv.conf not writable: the tunnel still comes up, and the reason is on the
        // bus and in status.
        kill(resolved.processIdentifier, SIGTERM)
        lab.waitForExit(resolved, timeout: 5)
        try lab.sh("\(cli) connect lab")
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
        let error = try pollUntil(timeout: 5, { try lab.busctl("get-property \(manager) DNSError") }, isDone: { $0 != "s \"\"\n" })
        #expect(error.contains("systemd-resolved is not running") && error.contains("Read-only file system")
                && error.contains("restart triglavd"), "\(error)")
        let refused = try lab.sh("\(cli) status")
        #expect(refused.contains("NOT APPLIED") && refused.contains("apt install systemd-resolved") && !refused.contains(" via "),
                "\(refused)")
        #expect(try lab.busctl("get-property \(manager) DNSResolver") == "s \"\"\n")
        #expect(try lab.exec(lab.client, "ping -c 1 -W 2 \(DaemonLab.serverTunnelAddress)").contains("1 received"))

        // resolved comes (back): within the retry interval (10 s) the link gets its DNS and the error clears.
        try FileManager.default.removeItem(atPath: resolvedLog)
        try lab.startFakeResolved(callLog: resolvedLog, logName: "resolved-2")
        let cleared = try pollUntil(timeout: 20, { try lab.busctl("get-property \(manager) DNSError") }, isDone: { $0 == "s \"\"\n" })
        #expect(cleared == "s \"\"\n", "client log:\n\(lab.log("client"))")
        #expect(calls().hasPrefix("SetLinkDNS "), "\(calls())")
    }
}

extension DaemonTests {
    /// The server's `[server.dns]` on the real daemons: offered in the DNS-offer frame, handed to (a stand-in for)
    /// systemd-resolved by a client whose profile has no `[dns]`, shown as such on the bus and in status; a profile
    /// that says `from_server = false` takes it back on reload.
    @Test("the server's [server.dns] reaches resolved on a client without [dns]; from_server = false declines it")
    func serverOfferedDNSGoesToResolvedUnlessTheProfileDeclines() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        try lab.startBus()
        try lab.edit("server.toml") {
            $0.replacingOccurrences(of: "[server.nat]", with: "[server.dns]\nservers = [\"\(DaemonLab.serverTunnelAddress)\"]\n"
                                    + "domains = [\"~lab.example\"]\ndefault_route = false\n[server.nat]")
        }
        let resolvedLog = "\(lab.directory)/resolved-calls.log"
        try lab.startFakeResolved(callLog: resolvedLog)
        // The server shows its offer on the bus and in status first (then leaves the name org.triglav to the client).
        let (busServer, busServerNotify) = try lab.startServer()
        try busServerNotify.waitFor("READY=1", timeout: 15)
        #expect(try lab.busctl("get-property org.triglav /org/triglav org.triglav.Server1 OfferedDNS")
                == "as 2 \"\(DaemonLab.serverTunnelAddress)\" \"~lab.example\"\n")
        let serverStatus = try lab.sh("\(DaemonLab.product("triglav")) --bus-address '\(lab.busAddress ?? "")' status")
        #expect(serverStatus.contains("DNS offered: \(DaemonLab.serverTunnelAddress) ~lab.example"), "\(serverStatus)")
        #expect(lab.log("server").contains("offering DNS \(DaemonLab.serverTunnelAddress) ~lab.example"), "\(lab.log("server"))")
        lab.terminate(busServer)
        let (_, serverNotify) = try lab.startDaemon(namespace: lab.server, "--config \(lab.directory)/server.toml --no-bus",
                                                    logName: "server-2")
        try serverNotify.waitFor("READY=1", timeout: 15)
        let (client, clientNotify) = try lab.startClient()
        try clientNotify.waitFor("READY=1", timeout: 15)
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")

        let index = try lab.exec(lab.client, "cat /sys/class/net/tgc0/ifindex").trimmingCharacters(in: .whitespacesAndNewlines)
        func calls() -> String { (try? String(contentsOfFile: resolvedLog, encoding: .utf8)) ?? "" }
        let applied = try pollUntil(timeout: 5, calls, isDone: { $0.contains("SetLinkDefaultRoute") })
        #expect(applied == """
            SetLinkDNS \(index) \(DaemonLab.serverTunnelAddress)
            SetLinkDomains \(index) ~lab.example
            SetLinkDefaultRoute \(index) false

            """, "client log:\n\(lab.log("client"))")
        let manager = "org.triglav /org/triglav org.triglav.Manager1"
        #expect(try lab.busctl("get-property \(manager) DNSSource") == "s \"server\"\n")
        #expect(try lab.busctl("get-property \(manager) DNSServers") == "as 1 \"\(DaemonLab.serverTunnelAddress)\"\n")
        let cli = "\(DaemonLab.product("triglav")) --bus-address '\(lab.busAddress ?? "")'"
        let status = try lab.sh("\(cli) status")
        #expect(status.contains("DNS:") && status.contains("(~lab.example, offered by the server)"), "\(status)")
        #expect(lab.log("client").contains("the server offers DNS \(DaemonLab.serverTunnelAddress); domains ~lab.example"))

        // The profile declines it: a reload takes the link's DNS back and keeps the tunnel.
        try lab.edit("profiles/lab.toml") { $0 + "[dns]\nfrom_server = false" }
        kill(client.processIdentifier, SIGHUP)
        let reverted = try pollUntil(timeout: 10, calls, isDone: { $0.contains("RevertLink") })
        #expect(reverted.hasSuffix("RevertLink \(index)\n"), "\(reverted)")
        #expect(try lab.busctl("get-property \(manager) DNSSource") == "s \"\"\n")
        #expect(try lab.exec(lab.client, "ping -c 1 -W 2 \(DaemonLab.serverTunnelAddress)").contains("1 received"))
    }
}
