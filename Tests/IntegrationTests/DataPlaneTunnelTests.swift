import Foundation
import Testing

/// End-to-end tests of the data plane in network namespaces (root only; CI runs them as root).
/// Each test builds its own lab and tears it down in `defer`, also on failure.
@Suite("DataPlane tunnel in namespaces", .serialized, .enabled(if: DataPlaneLab.isRoot, "needs root for network namespaces"))
struct DataPlaneTunnelTests {
    @Test("ping through the tunnel both ways")
    func pingBothWays() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        _ = try lab.startServer()
        _ = try lab.startClient()
        #expect(lab.waitForTunnel(timeout: 10))
        try lab.exec(lab.client, "ping -c3 -i0.2 -W2 \(DataPlaneLab.serverTunnelAddress)")
        try lab.exec(lab.server, "ping -c3 -i0.2 -W2 \(DataPlaneLab.clientTunnelAddress)")
    }

    @Test("a download arrives intact over all three uplinks, and survives one uplink going down and another blackholed")
    func downloadOverSeveralUplinksWithFailover() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        let file = lab.directory.appendingPathComponent("www/random.bin").path
        try lab.sh("mkdir -p \(lab.directory.path)/www && head -c 30000000 /dev/urandom > \(file)")
        let expected = try lab.sh("sha256sum < \(file)")
        _ = try lab.startServer()
        _ = try lab.startClient()
        #expect(lab.waitForTunnel(timeout: 10))
        _ = try lab.spawn(namespace: lab.server, "/usr/bin/python3 -m http.server 8080 --bind \(DataPlaneLab.serverTunnelAddress) "
                          + "--directory \(lab.directory.path)/www", logName: "http")
        try waitForHTTP(lab, url: "http://\(DataPlaneLab.serverTunnelAddress):8080/")

        // 1. Plain download: every uplink must carry a real share.
        let before = try uplinkReceivedBytes(lab)
        let output = lab.directory.appendingPathComponent("download-1.bin").path
        try lab.exec(lab.client, "curl -sS --max-time 60 -o \(output) http://\(DataPlaneLab.serverTunnelAddress):8080/random.bin", timeout: 90)
        #expect(try lab.sh("sha256sum < \(output)") == expected)
        let after = try uplinkReceivedBytes(lab)
        for (uplink, bytes) in after {
            // The aggregate scheduler weighs uplinks by estimated capacity and delay, so shares differ; each
            // must still carry a real part of the 30 MB (several uplinks, not one).
            #expect(bytes - (before[uplink] ?? 0) > 1_000_000, "uplink \(uplink) carried only \(bytes - (before[uplink] ?? 0)) bytes")
        }

        // 2. Rate-limited download (~6 s) of the same file: after 1.5 s up2 goes down (the link reports it), after
        // 3 s up3 is blackholed (it stays up but an nft table in the client namespace drops everything through it,
        // both ways: only the missing probe replies tell). The download completes intact over up1.
        let second = lab.directory.appendingPathComponent("download-2.bin").path
        let curl = try lab.spawn(namespace: lab.client, "curl -sS --max-time 60 --limit-rate 5M -o \(second) "
                                 + "http://\(DataPlaneLab.serverTunnelAddress):8080/random.bin", logName: "curl")
        defer { _ = try? lab.exec(lab.client, "nft delete table inet tg_dp_blackhole") }
        Thread.sleep(forTimeInterval: 1.5)
        try lab.sh("ip -n \(lab.client) link set up2 down")
        Thread.sleep(forTimeInterval: 1.5)
        try lab.exec(lab.client, "nft add table inet tg_dp_blackhole")
        try lab.exec(lab.client, "nft 'add chain inet tg_dp_blackhole output { type filter hook output priority 0; }'")
        try lab.exec(lab.client, "nft 'add chain inet tg_dp_blackhole input { type filter hook input priority 0; }'")
        try lab.exec(lab.client, "nft add rule inet tg_dp_blackhole output oifname up3 counter drop")
        try lab.exec(lab.client, "nft add rule inet tg_dp_blackhole input iifname up3 counter drop")
        #expect(curl.isRunning, "the download finished before the blackhole: the test would prove nothing")
        lab.waitForExit(curl, timeout: 70)
        #expect(!curl.isRunning)
        #expect(curl.terminationStatus == 0, "curl failed: \(lab.log("curl"))")
        #expect(try lab.sh("sha256sum < \(second)") == expected)
        // The blackhole really dropped tunnel traffic (the drop counters moved), then it is removed again.
        let counters = try lab.exec(lab.client, "nft list table inet tg_dp_blackhole")
        #expect(counters.contains("packets 0 ") == false, "the blackhole dropped nothing: \(counters)")
        try lab.exec(lab.client, "nft delete table inet tg_dp_blackhole")
    }

    @Test("kill -9 of the client leaves nothing a restart duplicates; clean stop restores the routing")
    func crashAndRestartLeavesNoDuplicates() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        let routingBefore = try routingSnapshot(lab)
        _ = try lab.startServer()
        let first = try lab.startClient(fullTunnel: true)
        #expect(lab.waitForTunnel(timeout: 10))
        lab.crash(first)
        // After the crash the TUN device is gone (not persistent); rules may be left over.
        #expect(try lab.exec(lab.client, "ip -o link show").contains("tgc0") == false)
        let second = try lab.startClient(fullTunnel: true, logName: "client-2")
        #expect(lab.waitForTunnel(timeout: 10))
        let rules4 = try lab.exec(lab.client, "ip -4 rule show")
        let rules6 = try lab.exec(lab.client, "ip -6 rule show")
        #expect(count(of: "29799:", in: rules4) == 1, "IPv4 rules: \(rules4)")
        #expect(count(of: "29798:", in: rules4) == 1, "IPv4 rules: \(rules4)")
        #expect(count(of: "29799:", in: rules6) == 1, "IPv6 rules: \(rules6)")
        #expect(count(of: "29798:", in: rules6) == 1, "IPv6 rules: \(rules6)")
        #expect(count(of: "tgc0", in: try lab.exec(lab.client, "ip -o link show")) == 1)
        // Per family one default route of this run plus the kill switch's standing `unreachable default` at the
        // largest metric: IPv4 via the TUN; IPv6 unreachable too, since the server assigns none.
        let killSwitch = "metric \(UInt32.max)"
        let routes4 = try lab.exec(lab.client, "ip -4 route show table 29799")
        #expect(count(of: "default", in: routes4) == 2 && count(of: "default dev tgc0", in: routes4) == 1
                    && count(of: killSwitch, in: routes4) == 1, "IPv4 routes: \(routes4)")
        let routes6 = try lab.exec(lab.client, "ip -6 route show table 29799")
        #expect(count(of: "default", in: routes6) == 2 && count(of: "unreachable default", in: routes6) == 2
                    && count(of: killSwitch, in: routes6) == 1, "IPv6 routes: \(routes6)")
        lab.terminate(second)
        let routingAfter = try routingSnapshot(lab)
        #expect(routingAfter == routingBefore, "before:\n\(routingBefore)\nafter:\n\(routingAfter)")
    }

    @Test("the tunnel recovers by itself within 10 s after a server restart")
    func serverRestartRecovery() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        let server = try lab.startServer()
        _ = try lab.startClient()
        #expect(lab.waitForTunnel(timeout: 10))
        lab.crash(server)
        _ = try lab.startServer(logName: "server-2")
        let start = Date()
        let recovered = lab.waitForTunnel(timeout: 10)
        #expect(recovered, "tunnel did not recover within 10 s:\n\(lab.log("client"))")
        #expect(Date().timeIntervalSince(start) < 10)
    }

    @Test("a new server process (sequences from the start again) gets through at once: the client's new tunnel has fresh receive state")
    func serverRestartFreshSequences() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        let server = try lab.startServer()
        _ = try lab.startClient()
        #expect(lab.waitForTunnel(timeout: 10))
        // The server's transmit sequence reaches ~1000; its next process starts again from 0. A client that
        // kept its reorder buffer takes those as duplicates of the old tunnel's and drops them.
        try lab.exec(lab.client, "ping -f -q -c 1000 -W 1 \(DataPlaneLab.serverTunnelAddress)", timeout: 30)
        lab.crash(server)
        _ = try lab.startServer(logName: "server-2")
        let recovered = lab.waitForTunnel(timeout: 10)
        #expect(recovered, "tunnel did not recover within 10 s:\n\(lab.log("client"))")
        let pings = (try? lab.exec(lab.client, "ping -c 20 -i 0.05 -W 1 \(DataPlaneLab.serverTunnelAddress)")) ?? "no reply"
        #expect(pings.contains(" 0% packet loss"), "\(pings)")
    }

    @Test("the TUN MTU is the smallest uplink MTU minus IPv4 + UDP + Triglav overhead (1432 by default), and follows MTU changes and removals")
    func tunnelMTUFollowsUplinks() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        _ = try lab.startServer()
        _ = try lab.startClient()
        #expect(lab.waitForTunnel(timeout: 10))
        // Outer IPv4 20 + UDP 8 + transport header 16 + inner header 8 + tag 16 = 68.
        let overhead = 20 + 8 + 16 + 8 + 16
        #expect(lab.tunnelMTU(becomes: 1500 - overhead) == 1500 - overhead)
        // The server listens on IPv4 only, so its TUN takes the same 1432 (the replies below are as large).
        #expect((try? lab.exec(lab.server, "cat /sys/class/net/tgs0/mtu"))?.trimmingCharacters(in: .whitespacesAndNewlines)
                == "\(1500 - overhead)")
        // A full-size inner packet with DF fits the 1500-byte uplinks exactly: its outer datagram is 1500 bytes and
        // leaves whole (the uplink sockets refuse to fragment, so one byte of overhead too few would fail with
        // EMSGSIZE; a capture catches any fragment either way). One byte more is refused by the TUN's MTU.
        let full = 1500 - overhead - 28
        // Each uplink's first path MTU search (a 1280-byte base probe among them) is over before the capture.
        for uplink in DataPlaneLab.uplinks {
            try lab.waitForOutput("client", containing: "uplink \(uplink): path MTU search done: 1472-byte datagrams pass", timeout: 15)
        }
        let outer = try DataPlaneUplinkPathTests.outerPackets(lab) {
            #expect((try? lab.exec(lab.client, "ping -c 3 -i 0.2 -W 2 -M do -s \(full) \(DataPlaneLab.serverTunnelAddress)")) != nil,
                    "a \(full + 28)-byte inner packet didn't get through")
        }
        #expect(outer.fragments.isEmpty, "fragments on the uplinks: \(outer.fragments)")
        #expect(!outer.lengths.isEmpty && outer.lengths.allSatisfy { $0 == 1500 }, "outer lengths \(outer.lengths)")
        #expect((try? lab.exec(lab.client, "ping -c 1 -W 1 -M do -s \(full + 1) \(DataPlaneLab.serverTunnelAddress)")) == nil)
        try lab.sh("ip -n \(lab.client) link set up2 mtu 1400")
        #expect(lab.tunnelMTU(becomes: 1400 - overhead) == 1400 - overhead)
        try lab.sh("ip -n \(lab.client) link del up2")
        #expect(lab.tunnelMTU(becomes: 1500 - overhead) == 1500 - overhead)
        #expect(lab.waitForTunnel(timeout: 5))
    }

    @Test("only one uplink has a route to the server: the other is reported unrouted and carries nothing until a route appears")
    func uplinkWithoutRouteToServer() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        // Like a host where only one interface got a default route: up2 has its address and subnet, no route
        // to the server. The server's side doesn't answer ARP for its loopback address on dn2, as a real
        // gateway wouldn't for an internet address (otherwise the kernel's on-link guess would work here).
        try lab.sh("ip -n \(lab.client) route del \(DataPlaneLab.serverAddress)/32 dev up2")
        try lab.exec(lab.server, "sysctl -qw net.ipv4.conf.all.arp_ignore=1")
        _ = try lab.startServer()
        _ = try lab.startClient(uplinks: ["up1", "up2"])
        #expect(lab.waitForTunnel(timeout: 10))
        try lab.waitForOutput("client", containing: "uplink up2 has no route to the server", timeout: 5)
        #expect(!lab.log("client").contains("uplink up1 has no route"))
        Thread.sleep(forTimeInterval: 3)
        #expect(!lab.log("client").contains("uplink up2: probing"), "up2 got a session without a route:\n\(lab.log("client"))")
        // A route appears (say DHCP finished on it): up2 connects by itself.
        try lab.sh("ip -n \(lab.client) route add \(DataPlaneLab.serverAddress)/32 via 10.201.2.1 dev up2 metric 2")
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, !lab.log("client").contains("uplink up2: probing") { Thread.sleep(forTimeInterval: 0.2) }
        #expect(lab.log("client").contains("uplink up2: probing"), "up2 did not connect after its route appeared:\n\(lab.log("client"))")
    }

    @Test("all uplinks down, then one back: the tunnel recovers by itself")
    func allUplinksDownThenOneBack() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        _ = try lab.startServer()
        _ = try lab.startClient()
        #expect(lab.waitForTunnel(timeout: 10))
        for uplink in DataPlaneLab.uplinks { try lab.sh("ip -n \(lab.client) link set \(uplink) down") }
        // Long enough for every uplink to be declared dead (uplinkTimeout 3 s).
        Thread.sleep(forTimeInterval: 4)
        #expect((try? lab.exec(lab.client, "ping -c1 -W1 \(DataPlaneLab.serverTunnelAddress)")) == nil)
        try lab.sh("ip -n \(lab.client) link set up3 up")
        try lab.sh("ip -n \(lab.client) route replace \(DataPlaneLab.serverAddress)/32 via 10.201.3.1 dev up3 metric 3")
        let recovered = lab.waitForTunnel(timeout: 10)
        #expect(recovered, "tunnel did not recover over up3:\n\(lab.log("client"))")
    }

    @Test("UDP blocked: the uplinks fall back to TCP, carry a download intact, and return to UDP once it is unblocked")
    func tcpFallbackWhenUDPIsBlocked() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        // The client's network drops all UDP to the server port (a captive or restrictive network).
        try lab.blockClientUDP()
        let file = lab.directory.appendingPathComponent("www/small.bin").path
        try lab.sh("mkdir -p \(lab.directory.path)/www && head -c 3000000 /dev/urandom > \(file)")
        let expected = try lab.sh("sha256sum < \(file)")
        _ = try lab.startServer()
        // UDP is tried again every 3 s while on TCP (default 120 s).
        _ = try lab.startClient(uplinks: ["up1", "up2"], extraArguments: "--udp-retry-s 3 --stats-interval 1")
        // Three unanswered UDP attempts (about 3 s with the handshake's backoff), then TCP.
        let up = lab.waitForTunnel(timeout: 15)
        #expect(up, "no tunnel over TCP:\n\(lab.log("client"))")
        #expect(lab.log("client").contains("falling back to TCP"))
        _ = try lab.spawn(namespace: lab.server, "/usr/bin/python3 -m http.server 8080 --bind \(DataPlaneLab.serverTunnelAddress) "
                          + "--directory \(lab.directory.path)/www", logName: "http")
        try waitForHTTP(lab, url: "http://\(DataPlaneLab.serverTunnelAddress):8080/")
        let output = lab.directory.appendingPathComponent("small-download.bin").path
        try lab.exec(lab.client, "curl -sS --max-time 60 -o \(output) http://\(DataPlaneLab.serverTunnelAddress):8080/small.bin", timeout: 90)
        #expect(try lab.sh("sha256sum < \(output)") == expected)
        #expect(!lab.log("client").contains("UDP works again"), "left TCP while UDP was still blocked:\n\(lab.log("client"))")
        // Unblock UDP: within the retry interval (plus a handshake's retransmissions) both uplinks are back on UDP.
        try lab.exec(lab.client, "nft delete table inet tg_dp_block")
        let deadline = Date().addingTimeInterval(12)
        var back: [String] = []
        while Date() < deadline {
            back = ["up1", "up2"].filter { lab.log("client").contains("uplink \($0): UDP works again") }
            if back.count == 2 { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(back == ["up1", "up2"], "uplinks back on UDP: \(back)\n\(lab.log("client"))")
        // Traffic now flows over UDP: the server's port sees tunnel datagrams from both uplinks.
        #expect(lab.waitForTunnel(timeout: 5))
        let captured = try lab.exec(lab.server, "timeout 3 tcpdump -n -c 4 -i any 'udp port 7443' 2>/dev/null || true", timeout: 10)
        #expect(captured.split(separator: "\n").count >= 4, "no UDP tunnel traffic after unblocking:\n\(captured)")
    }

    @Test("an uplink renumbered mid-session keeps working: the socket follows the address, the server roams")
    func renumberedUplinkRoams() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        _ = try lab.startServer()
        _ = try lab.startClient(uplinks: ["up1"])
        #expect(lab.waitForTunnel(timeout: 10))
        // New address on up1 (as after a DHCP renewal or a NAT rebinding); the old one goes away.
        try lab.sh("ip -n \(lab.client) address del 10.201.1.2/24 dev up1")
        try lab.sh("ip -n \(lab.client) address add 10.201.1.77/24 dev up1")
        try lab.sh("ip -n \(lab.client) route replace \(DataPlaneLab.serverAddress)/32 via 10.201.1.1 dev up1 metric 1")
        try lab.exec(lab.client, "ping -c3 -i0.2 -W2 \(DataPlaneLab.serverTunnelAddress)")
        // The server answers the new address: its session endpoint followed the authenticated packets.
        let captured = try lab.captureOnServerWhileClientPings("udp port 7443 and dst host 10.201.1.77")
        #expect(captured.contains("10.201.1.77"), "server did not send to the new address: \(captured)")
    }

    @Test("IPv6 both inside (assigned fd77::2) and outside (server reached over IPv6)")
    func ipv6InsideAndOutside() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        let driver = DataPlaneLab.driver
        _ = try lab.spawn(namespace: lab.server, "\(driver) server --key \(lab.serverKeyFile) --tun tgs0 "
            + "--listen 0.0.0.0:7443 --listen [::]:7443 --address 10.77.0.1/24 --address fd77::1/64 "
            + "--client \(lab.clientPublicKey)=10.77.0.2/24,fd77::2/64 --verbose", logName: "server")
        try lab.waitForOutput("server", containing: "ready", timeout: 10)
        _ = try lab.spawn(namespace: lab.client, "\(driver) client --key \(lab.clientKeyFile) --server-key \(lab.serverPublicKey) "
            + "--server [2001:db8:1::1]:7443 --tun tgc0 --uplink up1 --verbose", logName: "client")
        try lab.waitForOutput("client", containing: "ready", timeout: 10)
        #expect(lab.waitForTunnel(timeout: 10), "no tunnel over IPv6:\n\(lab.log("client"))")
        try lab.exec(lab.client, "ping -6 -c3 -i0.2 -W2 fd77::1")
        try lab.exec(lab.server, "ping -6 -c3 -i0.2 -W2 fd77::2")
    }

    @Test("a backup uplink carries no data while the primary works, and takes over when it goes down")
    func backupUplinkTakesOver() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        let file = lab.directory.appendingPathComponent("www/backup.bin").path
        try lab.sh("mkdir -p \(lab.directory.path)/www && head -c 8000000 /dev/urandom > \(file)")
        let expected = try lab.sh("sha256sum < \(file)")
        _ = try lab.startServer()
        _ = try lab.startClient(uplinks: ["up1:primary", "up2:backup"])
        #expect(lab.waitForTunnel(timeout: 10))
        _ = try lab.spawn(namespace: lab.server, "/usr/bin/python3 -m http.server 8080 --bind \(DataPlaneLab.serverTunnelAddress) "
                          + "--directory \(lab.directory.path)/www", logName: "http")
        try waitForHTTP(lab, url: "http://\(DataPlaneLab.serverTunnelAddress):8080/")
        let before = try uplinkReceivedBytes(lab)
        let first = lab.directory.appendingPathComponent("backup-1.bin").path
        try lab.exec(lab.client, "curl -sS --max-time 60 -o \(first) http://\(DataPlaneLab.serverTunnelAddress):8080/backup.bin", timeout: 90)
        #expect(try lab.sh("sha256sum < \(first)") == expected)
        let after = try uplinkReceivedBytes(lab)
        let backupBytes = (after["up2"] ?? 0) - (before["up2"] ?? 0)
        // The server schedules a newly confirmed uplink as a metered backup until the client's first control frame on
        // it says its policy (`UplinkPolicyFlags.unannounced`): a data packet may confirm the session first, and this
        // backup must not carry the download meanwhile. When it fails, the server's uplink state changes say whether the
        // primary was still probing or had been declared down (a backup then carries, as it should).
        let serverStates = lab.log("server").split(separator: "\n").filter { $0.contains(" -> ") }.joined(separator: "\n")
        #expect(backupBytes < 400_000,
                "the backup uplink carried \(backupBytes) bytes of an 8 MB download; server states:\n\(serverStates)")
        // Primary down mid-download: the backup takes over and the download completes intact.
        let second = lab.directory.appendingPathComponent("backup-2.bin").path
        let curl = try lab.spawn(namespace: lab.client, "curl -sS --max-time 60 --limit-rate 3M -o \(second) "
                                 + "http://\(DataPlaneLab.serverTunnelAddress):8080/backup.bin", logName: "curl")
        Thread.sleep(forTimeInterval: 1)
        try lab.sh("ip -n \(lab.client) link set up1 down")
        lab.waitForExit(curl, timeout: 70)
        #expect(curl.terminationStatus == 0, "curl failed: \(lab.log("curl"))")
        #expect(try lab.sh("sha256sum < \(second)") == expected)
    }

    @Test("a client whose key the server doesn't know gets no tunnel")
    func unauthorizedClientGetsNoTunnel() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        let intruderKey = lab.directory.appendingPathComponent("intruder.key").path
        try lab.sh("\(DataPlaneLab.driver) keygen --out \(intruderKey)")
        _ = try lab.startServer()
        _ = try lab.startClient(keyFile: intruderKey)
        #expect(lab.waitForTunnel(timeout: 4) == false)
        #expect(try lab.exec(lab.client, "ip -4 address show dev tgc0").contains("10.77.0.") == false)
        try lab.waitForOutput("server", containing: "rejected a handshake", timeout: 5)
    }

    /// The families a server assigns a client in `fullTunnelLeaksNothing`.
    enum AssignedFamilies: String, CustomTestStringConvertible, CaseIterable {
        case ipv4Only, dualStack, ipv6Only
        var testDescription: String { rawValue }
        var carriesIPv4: Bool { self != .ipv6Only }
        var carriesIPv6: Bool { self != .ipv4Only }
    }

    @Test("full tunnel: nothing but tunnel packets leaves through the uplinks; a family the server assigns no address of is blocked, the others carried",
          arguments: AssignedFamilies.allCases)
    func fullTunnelLeaksNothing(assigned: AssignedFamilies) throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        // Main has a default route per family through up1 (the lab adds IPv6's), so a packet the policy doesn't catch
        // really leaves: the server forwards it, so a leak can even be answered.
        try lab.exec(lab.client, "ip route add default via 10.201.1.1 dev up1")
        _ = try lab.startServer(ipv6: assigned == .dualStack, ipv6Only: assigned == .ipv6Only)
        _ = try lab.startClient(fullTunnel: true)
        #expect(lab.waitForTunnel(timeout: 10, ipv6: !assigned.carriesIPv4), "client log:\n\(lab.log("client"))")
        // The table's routes switch just after the addresses appear (which the tunnel ping needs).
        let carried = (assigned.carriesIPv4 ? ["-4"] : []) + (assigned.carriesIPv6 ? ["-6"] : [])
        for _ in 0..<50 where try carried.contains(where: { try !lab.exec(lab.client, "ip \($0) route show table 29799").contains("default dev tgc0") }) {
            Thread.sleep(forTimeInterval: 0.1)
        }
        if !assigned.carriesIPv4 {
            // No IPv4 address on the TUN, and IPv4's default in the tunnel table stays unreachable.
            #expect(try !lab.exec(lab.client, "ip -4 address show dev tgc0").contains("inet "))
            #expect(try lab.exec(lab.client, "ip -4 route show table 29799").contains("unreachable default"))
        }
        // On every uplink, anything but the tunnel itself (the server's address and port) is a leak; ARP and IPv6
        // neighbour discovery / multicast (link-local housekeeping, never a forwarded packet) are left out.
        let captures = try lab.captureOnUplinks(filter: "not (host \(DataPlaneLab.serverAddress) and udp port 7443) and not arp "
            + "and not (ip6 dst net ff00::/8) and not (icmp6 and (ip6[40] >= 133 and ip6[40] <= 137))")
        let tunnelPacketsBefore = try lab.exec(lab.client, "cat /sys/class/net/tgc0/statistics/tx_packets")
        // A web server on the internet host, both families (dual-stack socket).
        try lab.exec(lab.internet, "sh -c 'echo hello > \(lab.directory.path)/hello.txt'")
        _ = try lab.spawn(namespace: lab.internet, "/usr/bin/python3 -m http.server 8080 --bind :: --directory \(lab.directory.path)",
                          logName: "internet-http")
        for _ in 0..<50 where (try? lab.exec(lab.internet, "curl -sS --max-time 1 -o /dev/null http://127.0.0.1:8080/hello.txt")) == nil {
            Thread.sleep(forTimeInterval: 0.1)
        }
        // A carried family goes through the tunnel and is NATed by the server (the internet host has no route back
        // otherwise): ICMP, TCP, and UDP to the tunnel's own port number (which must not pass for tunnel traffic
        // either). A family without an address from the server is blocked, not sent around the tunnel.
        for (family, address, url) in [("-4", DataPlaneLab.internetAddress, "http://\(DataPlaneLab.internetAddress):8080/hello.txt"),
                                        ("-6", DataPlaneLab.internetIPv6Address, "http://[\(DataPlaneLab.internetIPv6Address)]:8080/hello.txt")] {
            _ = try? lab.exec(lab.client, "bash -c 'echo leak > /dev/udp/\(address)/7443'")
            if carried.contains(family) {
                try lab.exec(lab.client, "ping \(family) -c3 -i0.2 -W2 \(address)")
                #expect(try lab.exec(lab.client, "curl -sS --max-time 5 \(url)").contains("hello"))
            } else {
                #expect((try? lab.exec(lab.client, "ping \(family) -c2 -i0.2 -W1 \(address)")) == nil)
                #expect((try? lab.exec(lab.client, "curl -sS --max-time 2 \(url)")) == nil)
            }
        }
        let tunnelPackets = (Int(try lab.exec(lab.client, "cat /sys/class/net/tgc0/statistics/tx_packets").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0)
            - (Int(tunnelPacketsBefore.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0)
        #expect(tunnelPackets >= 6 * carried.count, "only \(tunnelPackets) packets went into the tunnel")
        Thread.sleep(forTimeInterval: 0.5)
        for (uplink, process) in captures {
            // Output is line-buffered (-l), so SIGKILL loses nothing and doesn't wait for libpcap's timeout.
            lab.crash(process)
            let captured = lab.log("tcpdump-\(uplink)").split(separator: "\n").filter {
                !$0.contains("listening on") && !$0.contains("packets captured") && !$0.contains("packets received")
                    && !$0.contains("verbose output suppressed")
                    && !$0.contains("packets dropped") && !$0.isEmpty
            }
            #expect(captured.isEmpty, "cleartext on \(uplink): \(captured)")
        }
    }

    // MARK: Helpers

    private func waitForHTTP(_ lab: DataPlaneLab, url: String) throws {
        for _ in 0..<50 {
            if (try? lab.exec(lab.client, "curl -sS --max-time 2 -o /dev/null \(url)")) != nil { return }
            Thread.sleep(forTimeInterval: 0.2)
        }
        throw LabError.timeout("HTTP server at \(url)")
    }

    private func uplinkReceivedBytes(_ lab: DataPlaneLab) throws -> [String: Int] {
        var result: [String: Int] = [:]
        for uplink in DataPlaneLab.uplinks {
            let text = try lab.exec(lab.client, "cat /sys/class/net/\(uplink)/statistics/rx_bytes")
            result[uplink] = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        }
        return result
    }

    private func routingSnapshot(_ lab: DataPlaneLab) throws -> String {
        // Link-local and multicast IPv6 routes come and go with DAD timing; they are not ours to compare.
        try ["ip -4 rule show", "ip -6 rule show", "ip -4 route show table all",
             "ip -6 route show table all | grep -v -e fe80:: -e ff00::"]
            .map { try lab.exec(lab.client, "sh -c '\($0)'") }
            .joined(separator: "\n---\n")
    }

    private func count(of needle: String, in text: String) -> Int {
        text.components(separatedBy: needle).count - 1
    }
}
