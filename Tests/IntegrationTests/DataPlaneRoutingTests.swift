import Foundation
import Testing
import TriglavTestSupport

/// The client's routing policy in the kernel (root only; CI runs them as root): the full tunnel blocks
/// everything from the moment the tunnel starts, before any handshake; an address change switches routes in
/// place; a split tunnel installs exactly its routes. Each test builds its own `DataPlaneLab` and tears it
/// down in `defer`, also on failure.
@Suite("DataPlane routing policy in namespaces", .serialized, .enabled(if: DataPlaneLab.isRoot, "needs root for network namespaces"))
struct DataPlaneRoutingTests {
    static let table = "29799"

    @Test("full tunnel with the server down: nothing leaves in cleartext (IPv4 and IPv6); once the server is up the tunnel carries it")
    func fullTunnelBlocksBeforeFirstHandshake() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        // Main has a default route per family through up1, so a packet the policy doesn't catch has a way out.
        try lab.exec(lab.client, "ip route add default via 10.201.1.1 dev up1")
        _ = try lab.startClient(fullTunnel: true)
        let captures = try startCaptures(lab)
        // Nothing answers the handshakes: no addresses, and every route of the tunnel table is unreachable.
        Thread.sleep(forTimeInterval: 1)
        #expect(try lab.exec(lab.client, "ip -4 address show dev tgc0").contains("inet ") == false)
        let routes4 = try lab.exec(lab.client, "ip -4 route show table \(Self.table)")
        let routes6 = try lab.exec(lab.client, "ip -6 route show table \(Self.table)")
        #expect(routes4.hasPrefix("unreachable default"), "\(routes4)")
        #expect(routes6.hasPrefix("unreachable default"), "\(routes6)")
        #expect((try? lab.exec(lab.client, "ping -c2 -i0.2 -W1 \(DataPlaneLab.internetAddress)")) == nil)
        #expect((try? lab.exec(lab.client, "ping -6 -c2 -i0.2 -W1 2001:db8:ffff::1")) == nil)
        // A UDP datagram too (no ICMP special case), to the internet host and to an IPv6 host.
        _ = try? lab.exec(lab.client, "sh -c 'echo leak > /dev/udp/\(DataPlaneLab.internetAddress)/53'")
        _ = try? lab.exec(lab.client, "bash -c 'echo leak > /dev/udp/2001:db8:ffff::1/53'")
        // The uplink sockets themselves (marked) still reach the server's address: their handshakes went out.
        Thread.sleep(forTimeInterval: 0.5)
        for (uplink, process) in captures {
            let leaked = stopCapture(lab, uplink: uplink, process)
            #expect(leaked.isEmpty, "cleartext on \(uplink) before the first handshake: \(leaked)")
        }

        // The server comes up: the tunnel connects by itself and carries IPv4 to the internet host (NATed).
        _ = try lab.startServer()
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
        // The routes switch just after the addresses appear (which the tunnel ping needs); the kill switch's
        // `unreachable default metric 4294967295` stays beside the route via the TUN.
        for _ in 0..<50 where try !lab.exec(lab.client, "ip -4 route show table \(Self.table)").contains("default dev tgc0") {
            Thread.sleep(forTimeInterval: 0.1)
        }
        try lab.exec(lab.client, "ping -c3 -i0.2 -W2 \(DataPlaneLab.internetAddress)")
        #expect(try lab.exec(lab.client, "ip -4 route show table \(Self.table)").contains("default dev tgc0"))
        // The server assigned no IPv6: that family stays blocked.
        #expect(try lab.exec(lab.client, "ip -6 route show table \(Self.table)").hasPrefix("unreachable default"))
        #expect((try? lab.exec(lab.client, "ping -6 -c1 -W1 2001:db8:ffff::1")) == nil)
    }

    @Test("an assignment the kernel refuses: the tunnel stays blocked (no cleartext), reports the error and retries until it applies")
    func failedAssignmentStaysBlockedAndRetries() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        try lab.exec(lab.client, "ip route add default via 10.201.1.1 dev up1")
        _ = try lab.startClient(fullTunnel: true)
        // With IPv6 disabled on the TUN the kernel refuses the assigned IPv6 address, so applying fails.
        try lab.exec(lab.client, "sysctl -qw net.ipv6.conf.tgc0.disable_ipv6=1")
        _ = try lab.spawn(namespace: lab.server, "\(DataPlaneLab.driver) server --key \(lab.serverKeyFile) --tun tgs0 "
            + "--address 10.77.0.1/24 --address fd77::1/64 --client \(lab.clientPublicKey)=10.77.0.2/24,fd77::2/64 --verbose",
            logName: "server")
        try lab.waitForOutput("server", containing: "ready", timeout: 10)
        try lab.waitForOutput("client", containing: "applying tunnel addresses/routes failed (attempt 1)", timeout: 10)
        let captures = try startCaptures(lab)
        let routes4 = try lab.exec(lab.client, "ip -4 route show table \(Self.table)")
        let routes6 = try lab.exec(lab.client, "ip -6 route show table \(Self.table)")
        #expect(routes4.hasPrefix("unreachable default") && routes6.hasPrefix("unreachable default"), "\(routes4)\n\(routes6)")
        #expect((try? lab.exec(lab.client, "ping -c2 -i0.2 -W1 \(DataPlaneLab.internetAddress)")) == nil)
        #expect((try? lab.exec(lab.client, "ping -6 -c2 -i0.2 -W1 2001:db8:ffff::1")) == nil)
        Thread.sleep(forTimeInterval: 0.3)
        for (uplink, process) in captures {
            let leaked = stopCapture(lab, uplink: uplink, process)
            #expect(leaked.isEmpty, "cleartext on \(uplink) while the assignment failed: \(leaked)")
        }
        // The kernel accepts it again: a retry applies it, and the tunnel carries both families.
        try lab.exec(lab.client, "sysctl -qw net.ipv6.conf.tgc0.disable_ipv6=0")
        try lab.waitForOutput("client", containing: "tunnel addresses and routes applied at attempt", timeout: 15)
        try lab.exec(lab.client, "ping -c2 -i0.2 -W2 \(DataPlaneLab.internetAddress)")
        #expect(try lab.exec(lab.client, "ip -6 route show table \(Self.table)").contains("default dev tgc0"))
        try lab.exec(lab.client, "ping -6 -c2 -i0.2 -W2 fd77::1")
    }

    @Test("a new assignment switches addresses and routes in place: no tunnel route or rule is deleted on the way")
    func assignmentChangeReplacesInPlace() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        let server = try lab.startServer()
        _ = try lab.startClient(fullTunnel: true)
        #expect(lab.waitForTunnel(timeout: 10))
        let monitor = try lab.spawn(namespace: lab.client, "ip monitor route rule", logName: "monitor")
        Thread.sleep(forTimeInterval: 0.3)
        // The server comes back with another address for this client: the client's next tunnel gets 10.77.0.9.
        lab.crash(server)
        _ = try lab.spawn(namespace: lab.server, "\(DataPlaneLab.driver) server --key \(lab.serverKeyFile) --tun tgs0 "
                          + "--address \(DataPlaneLab.serverTunnelAddress)/24 --client \(lab.clientPublicKey)=10.77.0.9/24 --verbose",
                          logName: "server-2")
        try lab.waitForOutput("server-2", containing: "ready", timeout: 10)
        try lab.waitForOutput("client", containing: "server assigned 10.77.0.9/24", timeout: 15)
        var addresses = ""
        for _ in 0..<50 {
            addresses = try lab.exec(lab.client, "ip -4 address show dev tgc0")
            if addresses.contains("10.77.0.9/24") && !addresses.contains("10.77.0.2/") { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(addresses.contains("10.77.0.9/24") && !addresses.contains("10.77.0.2/"), "\(addresses)\nclient log:\n\(lab.log("client"))")
        try lab.exec(lab.client, "ping -c2 -i0.2 -W2 \(DataPlaneLab.internetAddress)")
        lab.crash(monitor)
        let deleted = lab.log("monitor").split(separator: "\n").filter { $0.hasPrefix("Deleted") && $0.contains(Self.table) }
        #expect(deleted.isEmpty, "tunnel routes or rules deleted during the address change: \(deleted)")
        #expect(try lab.exec(lab.client, "ip -4 route show table \(Self.table)").contains("default dev tgc0"))
    }

    @Test("server NAT with an outbound interface masquerades only out of it: the internet host answers only when it is the way out")
    func natOutboundInterface() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        // NAT only out of dn1 (towards the client): the tunnel's traffic to the internet host leaves wan0 with its
        // tunnel source, which the internet host has no route back to.
        var server = try lab.startServer(extraArguments: "--outbound-interface dn1")
        var table = try lab.exec(lab.server, "nft list table inet triglav")
        #expect(table.contains("oifname \"dn1\" masquerade") && !table.contains("oifname != "), "\(table)")
        _ = try lab.startClient(fullTunnel: true)
        #expect(lab.waitForTunnel(timeout: 10))
        #expect((try? lab.exec(lab.client, "ping -c2 -i0.2 -W1 \(DataPlaneLab.internetAddress)")) == nil,
                "the internet host answered a packet that should have kept its tunnel source")
        lab.terminate(server)
        #expect(try lab.exec(lab.server, "nft list tables").contains("triglav") == false)

        // NAT out of wan0: the same ping is masqueraded to 172.31.0.1 and answered.
        server = try lab.startServer(logName: "server-2", extraArguments: "--outbound-interface wan0")
        table = try lab.exec(lab.server, "nft list table inet triglav")
        #expect(table.contains("ip saddr 10.77.0.0/24 oifname \"wan0\" masquerade"), "\(table)")
        #expect(lab.waitForTunnel(timeout: 10))
        try lab.exec(lab.client, "ping -c3 -i0.2 -W2 \(DataPlaneLab.internetAddress)")
        lab.terminate(server)
    }

    @Test("client with a read-only /proc/sys: promote_secondaries can't be set, the tunnel address is assigned anyway")
    func readOnlySysctlsStillAssign() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        _ = try lab.startServer()
        let uplinks = DataPlaneLab.uplinks.map { "--uplink \($0)" }.joined(separator: " ")
        _ = try lab.spawn(namespace: lab.client, "unshare -m /bin/sh -c 'mount --bind /proc/sys /proc/sys && "
            + "mount -o remount,bind,ro /proc/sys && exec \(DataPlaneLab.driver) client --key \(lab.clientKeyFile) "
            + "--server-key \(lab.serverPublicKey) --server \(DataPlaneLab.serverAddress):7443 --tun tgc0 \(uplinks) --verbose'",
            logName: "client")
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
        #expect(lab.log("client").contains("could not enable promote_secondaries"), "\(lab.log("client"))")
    }

    @Test("a server start that fails after NAT is applied (TCP port taken) leaves no nft table and ip_forward as it was")
    func failedServerStartUndoesNAT() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        try lab.exec(lab.server, "sysctl -qw net.ipv4.ip_forward=0")
        // Another process holds the TCP fallback's port, so the server fails at its TCP listener, after NAT.
        _ = try lab.spawn(namespace: lab.server, "/usr/bin/python3 -c \"import socket, time; s = socket.socket(); "
            + "s.bind(('0.0.0.0', 7443)); s.listen(); print('bound', flush=True); time.sleep(60)\"", logName: "holder")
        try lab.waitForOutput("holder", containing: "bound", timeout: 10)
        let server = try lab.spawn(namespace: lab.server, "\(DataPlaneLab.driver) server --key \(lab.serverKeyFile) --tun tgs0 "
            + "--address \(DataPlaneLab.serverTunnelAddress)/24 --client \(lab.clientPublicKey)=10.77.0.2/24 --verbose", logName: "server")
        lab.waitForExit(server, timeout: 10)
        #expect(!server.isRunning && server.terminationStatus != 0, "the server started although its port was taken:\n\(lab.log("server"))")
        #expect(try lab.exec(lab.server, "nft list tables").contains("triglav") == false, "\(lab.log("server"))")
        let forwarding = try lab.exec(lab.server, "cat /proc/sys/net/ipv4/ip_forward").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(forwarding == "0", "ip_forward left at \(forwarding)")
    }

    @Test("split tunnel: exactly the configured routes and exclude in the kernel, unreachable until assigned and after a crash; other traffic leaves via the uplink")
    func splitTunnelInstallsExactlyItsRoutes() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        try lab.exec(lab.client, "ip route add default via 10.201.1.1 dev up1")
        let client = try lab.startClient(extraArguments: "--split 172.31.0.0/24 --split 2001:db8:77::/48 --exclude 172.31.0.128/25")
        func routes(_ family: String) throws -> [String] {
            try lab.exec(lab.client, "ip \(family) route show table all proto 116").split(separator: "\n").map {
                $0.trimmingCharacters(in: .whitespaces)
            }
        }
        func rules(_ family: String) throws -> [String] {
            try lab.exec(lab.client, "ip \(family) rule show").split(separator: "\n").map(String.init).filter {
                !$0.hasPrefix("0:") && !$0.hasPrefix("32766:") && !$0.hasPrefix("32767:")
            }
        }
        // Before the first handshake (no server yet): the same prefixes, unreachable; and each prefix's standing
        // unreachable route at the largest metric (the kill switch for when the client dies).
        let killSwitch4 = "unreachable 172.31.0.0/24 table \(Self.table) metric 4294967295"
        let before4 = try routes("-4"), before6 = try routes("-6")
        #expect(before4 == ["unreachable 172.31.0.0/24 table \(Self.table)", killSwitch4], "\(before4)")
        #expect(before6.map { $0.hasPrefix("unreachable 2001:db8:77::/48 dev lo table \(Self.table)") } == [true, true], "\(before6)")
        #expect((try? lab.exec(lab.client, "ping -c1 -W1 \(DataPlaneLab.internetAddress)")) == nil)

        _ = try lab.startServer()
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
        // Only the configured prefixes are in the tunnel table (IPv6 stays unreachable: the server assigns none).
        // The routes switch just after the addresses appear (which the tunnel ping needs): wait for them.
        var routes4 = try routes("-4")
        for _ in 0..<50 where routes4.first?.hasPrefix("unreachable") ?? true {
            Thread.sleep(forTimeInterval: 0.1)
            routes4 = try routes("-4")
        }
        let routes6 = try routes("-6")
        #expect(routes4 == ["172.31.0.0/24 dev tgc0 table \(Self.table) scope link", killSwitch4], "\(routes4)")
        #expect(routes6.count == 2 && routes6.allSatisfy { $0.hasPrefix("unreachable 2001:db8:77::/48 dev lo table \(Self.table)") },
                "\(routes6)")
        #expect(try lab.exec(lab.client, "ip -4 route show table \(Self.table)").split(separator: "\n").count == 2)
        #expect(try lab.exec(lab.client, "ip -6 route show table \(Self.table)").split(separator: "\n").count == 2)
        // Rules: the exclude, the server's address (looked up in main, for the reverse-path check) and the tunnel rule,
        // no suppress rule (IPv6: the tunnel rule for its prefix).
        let rules4 = try rules("-4"), rules6 = try rules("-6")
        #expect(rules4 == ["29797:\tfrom all to 172.31.0.128/25 lookup main proto 116",
                           "29797:\tfrom all to \(DataPlaneLab.serverAddress) lookup main proto 116",
                           "29799:\tnot from all fwmark 0x7467 lookup 29799 proto 116"], "\(rules4)")
        #expect(rules6 == ["29799:\tnot from all fwmark 0x7467 lookup 29799 proto 116"], "\(rules6)")
        // Where packets go: the routed prefix through the tunnel (and answered), the excluded part and
        // everything else out of up1.
        try lab.exec(lab.client, "ping -c2 -i0.2 -W2 \(DataPlaneLab.internetAddress)")
        #expect(try lab.exec(lab.client, "ip route get 172.31.0.2").contains("dev tgc0"))
        #expect(try lab.exec(lab.client, "ip route get 172.31.0.200").contains("dev up1"))
        #expect(try lab.exec(lab.client, "ip route get 203.0.113.7").contains("dev up1"))
        let capture = try lab.spawn(namespace: lab.client, "tcpdump -n -l -Q out -i up1 'icmp and dst host 203.0.113.7'",
                                    logName: "tcpdump-up1")
        try lab.waitForOutput("tcpdump-up1", containing: "listening on", timeout: 10)
        _ = try? lab.exec(lab.client, "ping -c2 -i0.2 -W1 203.0.113.7")
        try lab.waitForOutput("tcpdump-up1", containing: "203.0.113.7: ICMP echo request", timeout: 15)
        lab.crash(capture)

        // The client dies (kill -9): its TUN and the route via it go, the rules and the kill switch stay, so the
        // routed prefix is refused instead of leaving through main's default route in cleartext.
        lab.crash(client)
        let dead = try pollUntil(timeout: 5, every: 0.1, { (try? lab.exec(lab.client, "ip route get 172.31.0.2")) ?? "" },
                                 isDone: { !$0.contains("tgc0") })
        #expect(!dead.contains("dev up1"), "after the crash 172.31.0.2 is routed: \(dead)")
        #expect((try? lab.exec(lab.client, "ping -c1 -W1 172.31.0.2")) == nil, "ping got through after the crash")
        #expect(try lab.exec(lab.client, "ip route get 203.0.113.7").contains("dev up1"), "the rest still leaves via up1")
    }

    // MARK: Helpers

    /// Captures on every uplink what the client namespace sends out that is not the tunnel (UDP or TCP port
    /// 7443 to the server), ARP or IPv6 neighbour discovery/multicast.
    private func startCaptures(_ lab: DataPlaneLab) throws -> [(String, Process)] {
        try lab.captureOnUplinks(options: "-Q out", filter: "not port 7443 and not arp and not (ip6 dst net ff00::/8) "
            + "and not (icmp6 and (ip6[40] >= 133 and ip6[40] <= 137))")
    }

    /// Stops a capture and returns the packets it saw.
    private func stopCapture(_ lab: DataPlaneLab, uplink: String, _ process: Process) -> [Substring] {
        // Output is line-buffered (-l), so SIGKILL loses nothing.
        lab.crash(process)
        return lab.log("tcpdump-\(uplink)").split(separator: "\n").filter {
            !$0.contains("listening on") && !$0.contains("packets captured") && !$0.contains("packets received")
                && !$0.contains("verbose output suppressed") && !$0.contains("packets dropped") && !$0.isEmpty
        }
    }
}
