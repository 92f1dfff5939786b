import Foundation
import Testing

/// ECN across the tunnel (RFC 6040 normal mode) with the real data plane in namespaces (root only; CI runs them as
/// root): the outer header carries the inner packet's codepoint, and a Congestion Experienced mark a router on the
/// path puts on the outer header reaches the inner packet (docs/DATAPLANE.md, "ECN").
@Suite("ECN across the tunnel in namespaces", .serialized, .enabled(if: DataPlaneLab.isRoot, "needs root for network namespaces"))
struct ECNTunnelTests {
    /// The outer header's family: the client reaches the server over IPv4 (three uplinks) or IPv6 (up1).
    enum OuterFamily: String, CaseIterable, CustomTestStringConvertible {
        case ipv4, ipv6
        var testDescription: String { rawValue }
        /// tcpdump: the outer header's ECN bits (IPv4's TOS, IPv6's traffic class inside its first two bytes).
        var ecnBits: String { self == .ipv4 ? "ip[1] & 3" : "(ip6[1] >> 4) & 3" }
        var nftFamily: String { self == .ipv4 ? "ip" : "ip6" }
    }

    @Test("an ECT inner packet leaves in an ECT datagram, a Not-ECT one in a Not-ECT datagram; a path's CE mark reaches ECT inner packets and drops Not-ECT ones",
          arguments: OuterFamily.allCases)
    func ecnCrossesTheTunnel(outer: OuterFamily) throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        _ = try lab.startServer(extraArguments: "--listen 0.0.0.0:7443 --listen [::]:7443 --stats-interval 0.3")
        if outer == .ipv6 {
            _ = try lab.startClient(uplinks: ["up1"], extraArguments: "--server [2001:db8:1::1]:7443")
        } else {
            _ = try lab.startClient()
        }
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")

        // Encapsulation: outer datagrams with any ECN bits set, on every uplink. Not-ECT pings (and the tunnel's
        // own probes and feedback) add none; ECT(0) pings (`ping -Q 2`) one per echo request.
        let captures = try lab.captureOnUplinks(options: "-v", filter: "udp port 7443 and \(outer.ecnBits) != 0")
        try lab.exec(lab.client, "ping -c5 -i0.2 -W2 \(DataPlaneLab.serverTunnelAddress)")
        Thread.sleep(forTimeInterval: 0.3)
        let afterNotECT = captured(captures, lab)
        #expect(afterNotECT.isEmpty, "Not-ECT traffic left in ECN-capable datagrams: \(afterNotECT)")
        try lab.exec(lab.client, "ping -c5 -i0.2 -W2 -Q 2 \(DataPlaneLab.serverTunnelAddress)")
        Thread.sleep(forTimeInterval: 0.3)
        let afterECT = captured(captures, lab)
        for (_, process) in captures { lab.crash(process) }
        #expect(afterECT.count >= 5, "ECT(0) datagrams: \(afterECT)")
        // tcpdump names the codepoint for IPv4 only; the filter already selected ECN-capable IPv6 datagrams.
        if outer == .ipv4 { #expect(afterECT.allSatisfy { $0.contains("ECT(0)") }, "\(afterECT)") }

        // Decapsulation: a router on the way to the server marks every tunnel datagram CE (nft, as an AQM would).
        try lab.exec(lab.server, "nft add table inet tg_ecn_mark")
        try lab.exec(lab.server, "nft 'add chain inet tg_ecn_mark pre { type filter hook prerouting priority mangle; }'")
        try lab.exec(lab.server, "nft add rule inet tg_ecn_mark pre udp dport 7443 \(outer.nftFamily) ecn set ce")
        let inner = try lab.spawn(namespace: lab.server, "tcpdump -n -l -v -i tgs0 'icmp[icmptype] == icmp-echo'", logName: "tcpdump-tgs0")
        try lab.waitForOutput("tcpdump-tgs0", containing: "listening on", timeout: 10)
        // ECT(0) echo requests arrive marked CE (and are answered); Not-ECT ones are dropped, as RFC 6040 requires.
        try lab.exec(lab.client, "ping -c5 -i0.2 -W2 -Q 2 \(DataPlaneLab.serverTunnelAddress)")
        #expect((try? lab.exec(lab.client, "ping -c3 -i0.2 -W1 \(DataPlaneLab.serverTunnelAddress)")) == nil,
                "Not-ECT packets under an outer CE mark got through")
        Thread.sleep(forTimeInterval: 0.5)
        lab.crash(inner)
        let requests = lab.log("tcpdump-tgs0").split(separator: "\n").filter { $0.contains("tos 0x") }
        #expect(requests.count >= 5 && requests.allSatisfy { $0.contains("CE") }, "inner packets on tgs0: \(requests)")
        let counts = lastDecapsulationCounts(lab.log("server"))
        #expect((counts?.congestionExperienced ?? 0) >= 5 && (counts?.dropped ?? 0) >= 3,
                "server counters: \(String(describing: counts))")
    }

    /// The lines each uplink capture printed so far.
    private func captured(_ captures: [(String, Process)], _ lab: DataPlaneLab) -> [String] {
        captures.flatMap { uplink, _ in
            lab.log("tcpdump-\(uplink)").split(separator: "\n").map(String.init).filter { $0.contains(" IP ") || $0.contains(" IP6 ") }
        }
    }

    /// The last `ECNDecapsulationCounters` the server's statistics lines printed.
    private func lastDecapsulationCounts(_ log: String) -> (congestionExperienced: Int, dropped: Int)? {
        let pattern = /ECNDecapsulationCounters\(congestionExperienced: (\d+), dropped: (\d+)\)/
        guard let match = log.matches(of: pattern).last,
              let marked = Int(match.output.1), let dropped = Int(match.output.2) else { return nil }
        return (marked, dropped)
    }
}
