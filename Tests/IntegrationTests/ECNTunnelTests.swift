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
            _ = try lab.startClient(uplinks: ["up1"], extraArguments: "--server [2001:db8:1::1]:7443 --stats-interval 0.3")
        } else {
            _ = try lab.startClient(extraArguments: "--stats-interval 0.3")
        }
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
        // Uploads: the client encapsulates, the server decapsulates; downloads the other way round.
        try checkDirection(lab, outer: outer, upload: true)
        try checkDirection(lab, outer: outer, upload: false)
    }

    /// One direction: the sender's pings leave in datagrams whose outer ECN field is the inner one's (watched on the
    /// client's uplinks), and with a router before the receiver marking every tunnel datagram CE (nft, as an AQM would),
    /// ECT(0) echo requests reach the receiver's TUN marked CE while Not-ECT ones are dropped, as RFC 6040 requires.
    private func checkDirection(_ lab: DataPlaneLab, outer: OuterFamily, upload: Bool) throws {
        let (sender, receiver) = upload ? (lab.client, lab.server) : (lab.server, lab.client)
        let target = upload ? DataPlaneLab.serverTunnelAddress : DataPlaneLab.clientTunnelAddress
        let (receiverName, receiverTUN) = upload ? ("server", "tgs0") : ("client", "tgc0")
        // The receiver's side of the tunnel port, in nft's and tcpdump's words.
        let (towardsReceiver, capturedTowardsReceiver) = upload ? ("dport 7443", "dst port 7443") : ("sport 7443", "src port 7443")
        let direction = upload ? "upload" : "download"

        // Encapsulation. Not-ECT pings (and the tunnel's own probes and feedback) add no ECN-capable datagram; ECT(0)
        // pings (`ping -Q 2`) one per echo request.
        let captures = try lab.captureOnUplinks(options: "-v", filter: "udp \(capturedTowardsReceiver) and \(outer.ecnBits) != 0")
        try lab.exec(sender, "ping -c5 -i0.2 -W2 \(target)")
        Thread.sleep(forTimeInterval: 0.3)
        let afterNotECT = captured(captures, lab)
        #expect(afterNotECT.isEmpty, "\(direction): Not-ECT traffic left in ECN-capable datagrams: \(afterNotECT)")
        try lab.exec(sender, "ping -c5 -i0.2 -W2 -Q 2 \(target)")
        Thread.sleep(forTimeInterval: 0.3)
        let afterECT = captured(captures, lab)
        for (_, process) in captures { lab.crash(process) }
        #expect(afterECT.count >= 5, "\(direction): ECT(0) datagrams: \(afterECT)")
        // tcpdump names the codepoint for IPv4 only; the filter already selected ECN-capable IPv6 datagrams.
        if outer == .ipv4 { #expect(afterECT.allSatisfy { $0.contains("ECT(0)") }, "\(direction): \(afterECT)") }

        // Decapsulation.
        try lab.exec(receiver, "nft add table inet tg_ecn_mark")
        try lab.exec(receiver, "nft 'add chain inet tg_ecn_mark pre { type filter hook prerouting priority mangle; }'")
        try lab.exec(receiver, "nft add rule inet tg_ecn_mark pre udp \(towardsReceiver) \(outer.nftFamily) ecn set ce")
        defer { _ = try? lab.exec(receiver, "nft delete table inet tg_ecn_mark") }
        let inner = try lab.spawn(namespace: receiver, "tcpdump -n -l -v -i \(receiverTUN) 'icmp[icmptype] == icmp-echo'",
                                  logName: "tcpdump-\(receiverTUN)")
        try lab.waitForOutput("tcpdump-\(receiverTUN)", containing: "listening on", timeout: 10)
        try lab.exec(sender, "ping -c5 -i0.2 -W2 -Q 2 \(target)")
        #expect((try? lab.exec(sender, "ping -c3 -i0.2 -W1 \(target)")) == nil,
                "\(direction): Not-ECT packets under an outer CE mark got through")
        Thread.sleep(forTimeInterval: 0.5)
        lab.crash(inner)
        let requests = lab.log("tcpdump-\(receiverTUN)").split(separator: "\n").filter { $0.contains("tos 0x") }
        #expect(requests.count >= 5 && requests.allSatisfy { $0.contains("CE") }, "\(direction): inner packets on \(receiverTUN): \(requests)")
        let counts = lastDecapsulationCounts(lab.log(receiverName))
        #expect((counts?.congestionExperienced ?? 0) >= 5 && (counts?.dropped ?? 0) >= 3,
                "\(direction): \(receiverName)'s counters: \(String(describing: counts))")
    }

    /// The lines each uplink capture printed so far.
    private func captured(_ captures: [(String, Process)], _ lab: DataPlaneLab) -> [String] {
        captures.flatMap { uplink, _ in
            lab.log("tcpdump-\(uplink)").split(separator: "\n").map(String.init).filter { $0.contains(" IP ") || $0.contains(" IP6 ") }
        }
    }

    /// The last `ECNDecapsulationCounters` a statistics line of this log printed.
    private func lastDecapsulationCounts(_ log: String) -> (congestionExperienced: Int, dropped: Int)? {
        let pattern = /ECNDecapsulationCounters\(congestionExperienced: (\d+), dropped: (\d+)\)/
        guard let match = log.matches(of: pattern).last,
              let marked = Int(match.output.1), let dropped = Int(match.output.2) else { return nil }
        return (marked, dropped)
    }
}
