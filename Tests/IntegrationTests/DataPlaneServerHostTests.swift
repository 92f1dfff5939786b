import Foundation
import Testing

/// The server on a host configured by others: SLAAC (router advertisements) and a host firewall. Root only; CI runs
/// them as root. Each test builds its own `DataPlaneLab` and tears it down in `defer`, also on failure.
@Suite("DataPlane server on a configured host in namespaces", .serialized, .enabled(if: DataPlaneLab.isRoot, "needs root for network namespaces"))
struct DataPlaneServerHostTests {
    /// Sends one router advertisement (router lifetime 1800 s, no options) out of `device` to all nodes, from
    /// `namespace`; the kernel fills in the ICMPv6 checksum. Retried while the link-local source is still tentative.
    /// Sends the client's router advertisements on up2 (at most 20, 0.2 s apart) until the server has a default
    /// route learned from one; returns the server's IPv6 default routes.
    static func advertiseUntilLearned(_ lab: DataPlaneLab) throws -> String {
        var routes = ""
        for _ in 0..<20 where !routes.contains("proto ra") {
            try sendRouterAdvertisement(lab, from: lab.client, device: "up2")
            Thread.sleep(forTimeInterval: 0.2)
            routes = try lab.exec(lab.server, "ip -6 route show default")
        }
        return routes
    }

    static func sendRouterAdvertisement(_ lab: DataPlaneLab, from namespace: String, device: String) throws {
        let script = "import socket,struct; s=socket.socket(socket.AF_INET6,socket.SOCK_RAW,socket.IPPROTO_ICMPV6); "
            + "s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_MULTICAST_HOPS,255); "
            + "s.sendto(struct.pack('!BBHBBHII',134,0,0,64,0,1800,0,0),('ff02::1',0,0,socket.if_nametoindex('\(device)')))"
        var lastError: (any Error)?
        for _ in 0..<30 {
            do {
                try lab.exec(namespace, "/usr/bin/python3 -c \"\(script)\"")
                return
            } catch {
                lastError = error
                Thread.sleep(forTimeInterval: 0.2)
            }
        }
        throw lastError ?? LabError.timeout("a router advertisement sent from \(device)")
    }

    static func sysctl(_ lab: DataPlaneLab, _ key: String) throws -> String {
        try lab.exec(lab.server, "sysctl -n \(key)").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("IPv6 forwarding keeps a SLAAC host's router advertisements: accept_ra 1 -> 2 before, restored on stop; the RA default route survives")
    func ipv6ForwardingKeepsRouterAdvertisements() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        // dn2 learns its IPv6 default route from a router advertisement (sent by the client namespace's up2);
        // dn3 has accept_ra 0, the admin's choice, which must stay.
        try lab.exec(lab.server, "sysctl -qw net.ipv6.conf.dn3.accept_ra=0")
        #expect(try Self.sysctl(lab, "net.ipv6.conf.all.forwarding") == "0")
        #expect(try Self.sysctl(lab, "net.ipv6.conf.dn2.accept_ra") == "1")
        let learned = try Self.advertiseUntilLearned(lab)
        #expect(learned.contains("dev dn2 proto ra"), "no RA-learned default route: the test proves nothing\n\(learned)")

        let server = try lab.startServer(ipv6: true)
        #expect(try Self.sysctl(lab, "net.ipv6.conf.all.forwarding") == "1")
        #expect(try Self.sysctl(lab, "net.ipv6.conf.dn2.accept_ra") == "2")
        #expect(try Self.sysctl(lab, "net.ipv6.conf.default.accept_ra") == "2")
        #expect(try Self.sysctl(lab, "net.ipv6.conf.dn3.accept_ra") == "0")
        // Turning forwarding on deletes RA-learned default routes where accept_ra isn't 2; this one stays, and a new
        // advertisement is still accepted (it refreshes the route).
        #expect(try lab.exec(lab.server, "ip -6 route show default").contains("dev dn2 proto ra"), "server log:\n\(lab.log("server"))")
        try lab.exec(lab.server, "ip -6 route flush default proto ra")
        let relearned = try Self.advertiseUntilLearned(lab)
        #expect(relearned.contains("dev dn2 proto ra"), "an RA was ignored while forwarding: \(relearned)")
        #expect(lab.log("server").contains("accept_ra set from 1 to 2"), "\(lab.log("server"))")

        lab.terminate(server)
        #expect(try Self.sysctl(lab, "net.ipv6.conf.all.forwarding") == "0")
        #expect(try Self.sysctl(lab, "net.ipv6.conf.dn2.accept_ra") == "1")
        #expect(try Self.sysctl(lab, "net.ipv6.conf.default.accept_ra") == "1")
        #expect(try Self.sysctl(lab, "net.ipv6.conf.dn3.accept_ra") == "0")
    }

    @Test("a host firewall's forward chain with policy drop: the server warns, and the rules the warning names make forwarding work")
    func forwardChainWithDropPolicyIsReported() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        // What Docker or ufw leave (through iptables-nft): table ip filter, chain FORWARD, policy drop.
        try lab.exec(lab.server, "nft add table ip filter")
        try lab.exec(lab.server, "nft 'add chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }'")
        let server = try lab.startServer()
        try lab.waitForOutput("server", containing: "nftables chain 'ip filter FORWARD' (forward hook, priority 0) drops", timeout: 5)
        #expect(lab.log("server").contains("nft insert rule ip filter FORWARD iifname \"tgs0\" accept"), "\(lab.log("server"))")
        // It really drops: the tunnel works to the server itself but not through it.
        _ = try lab.startClient(fullTunnel: true)
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
        #expect((try? lab.exec(lab.client, "ping -c2 -i0.2 -W1 \(DataPlaneLab.internetAddress)")) == nil, "forwarded despite policy drop")
        // The rules the warning suggests let it through, and a server started with them doesn't warn.
        try lab.exec(lab.server, "nft insert rule ip filter FORWARD iifname tgs0 accept")
        try lab.exec(lab.server, "nft insert rule ip filter FORWARD oifname tgs0 ct state established,related accept")
        try lab.exec(lab.client, "ping -c2 -i0.2 -W2 \(DataPlaneLab.internetAddress)")
        lab.terminate(server)
        _ = try lab.startServer(logName: "server-2")
        #expect(!lab.log("server-2").contains("drops by default"), "\(lab.log("server-2"))")
    }
}
