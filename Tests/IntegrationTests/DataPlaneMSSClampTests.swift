import Foundation
import Testing
import TriglavTestSupport

/// The client's MSS clamp (docs/DATAPLANE.md, "MSS clamp") on a host it routes for, in namespaces (root only).
@Suite("DataPlane MSS clamp in namespaces", .serialized, .enabled(if: DataPlaneLab.isRoot, "needs root for network namespaces"))
struct DataPlaneMSSClampTests {
    /// The first matching TCP segment `tcpdump -v` sees on `device` in `namespace` while `action` runs.
    static func capture(_ lab: DataPlaneLab, _ namespace: String, _ device: String, _ filter: String,
                        while action: String) throws -> String {
        try lab.exec(namespace, "sh -c \"timeout 5 tcpdump -n -v -c 1 -i \(device) '\(filter)' 2>/dev/null & sleep 0.5; \(action); wait\"",
                     timeout: 20)
    }

    @Test("a host behind the client: its SYN (MSS 1460) reaches the server with the TUN's MTU − 40, and so does the SYN-ACK it gets back")
    func synsOfARoutedHostAreClampedBothWays() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        // A 1400-byte path on the only uplink: TUN MTU 1400 − 68 = 1332, so segments may carry 1292 bytes.
        try lab.sh("ip -n \(lab.client) route replace \(DataPlaneLab.serverAddress)/32 via 10.201.1.1 dev up1 metric 1 mtu 1400")
        _ = try lab.startServer()
        _ = try lab.startClient(uplinks: ["up1"], extraArguments: "--stats-interval 0.2")
        #expect(lab.waitForTunnel(timeout: 10))
        #expect(lab.tunnelMTU(becomes: 1332) == 1332)
        let lan = try lab.addHostBehindClient("lan")
        _ = try lab.spawn(namespace: lab.server, "iperf3 -s -B \(DataPlaneLab.serverTunnelAddress) -p 5201", logName: "listener")
        _ = try pollUntil(timeout: 10, { (try? lab.exec(lab.server, "ss -ltnH 'sport = :5201'")) ?? "" }, isDone: { !$0.isEmpty })
        let connect = "ip netns exec \(lan) bash -c 'exec 3<>/dev/tcp/\(DataPlaneLab.serverTunnelAddress)/5201; sleep 0.3'"
        let syn = try Self.capture(lab, lab.server, "tgs0", "tcp dst port 5201 and tcp[tcpflags] == tcp-syn", while: connect)
        #expect(syn.contains("mss 1292"), "SYN at the server: \(syn)")
        // The server's SYN-ACK (MSS 1392 from its 1432-byte TUN) arrives at the host behind the client clamped as well.
        let synAck = try Self.capture(lab, lan, "lan0", "tcp src port 5201 and tcp[tcpflags] == (tcp-syn|tcp-ack)",
                                      while: connect.replacingOccurrences(of: "ip netns exec \(lan) ", with: ""))
        #expect(synAck.contains("mss 1292"), "SYN-ACK behind the client: \(synAck)")
        // The client's own connections advertise their MSS from the TUN already: the clamp leaves them as they are.
        let own = try Self.capture(lab, lab.server, "tgs0", "tcp dst port 5201 and tcp[tcpflags] == tcp-syn",
                                   while: "ip netns exec \(lab.client) bash -c 'exec 3<>/dev/tcp/\(DataPlaneLab.serverTunnelAddress)/5201; sleep 0.3'")
        #expect(own.contains("mss 1292"), "the client's own SYN: \(own)")
        // Counted: each of the host's two handshakes changed its SYN and its SYN-ACK; the client's own handshake only the
        // SYN-ACK (the server's 1392), its SYN needed nothing.
        let counted = try pollUntil(timeout: 5, { Self.lastClampCount(lab.log("client")) }, isDone: { $0 == 5 })
        #expect(counted == 5, "mssClamped in the client's statistics")
    }

    /// The last `mssClamped: N` of the client's statistics lines (`--stats-interval`).
    static func lastClampCount(_ log: String) -> Int? {
        guard let range = log.range(of: "mssClamped: ", options: .backwards) else { return nil }
        return Int(log[range.upperBound...].prefix { $0.isNumber })
    }
}
