import Foundation
import Testing
import TriglavTestSupport

/// NAT detection end to end (root only): the client namespace masquerades up1's tunnel datagrams to other source
/// ports (a port-translating NAT on the way); the server's endpoint reports make Uplink1.PublicEndpoint show the
/// translated port and BehindNAT true for up1, and the untranslated endpoint with BehindNAT false for up2. Then the
/// NAT's mapping expires during a short outage and comes back on another port (rebinding): the server reports the
/// new source at once, without a new handshake.
@Suite("triglavd NAT detection", .serialized, .enabled(if: DaemonLab.isRoot, "needs root for network namespaces"))
struct DaemonNATTests {
    @Test("up1 behind a port-translating NAT: PublicEndpoint shows the NAT's port, BehindNAT true; up2 direct")
    func translatedUplinkIsReported() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }  // the nft table goes with the namespace
        try lab.exec(lab.client, """
            nft 'add table ip triglav_nat_test; \
            add chain ip triglav_nat_test post { type nat hook postrouting priority srcnat; policy accept; }; \
            add rule ip triglav_nat_test post oifname "up1" udp dport 7443 masquerade to :40000-40099'
            """)
        try lab.startBus()
        _ = try lab.startServer(onBus: false)
        let (_, clientNotify) = try lab.startClient()
        try clientNotify.waitFor("READY=1", timeout: 15)
        #expect(lab.waitForTunnel(timeout: 15), "client log:\n\(lab.log("client"))")

        // The report answers the keepalive after each handshake: poll until both uplinks have one.
        let deadline = Date().addingTimeInterval(15)
        var seen: [String: String] = [:]
        while Date() < deadline {
            for uplink in ["up1", "up2"] { seen[uplink] = try lab.uplinkProperty(uplink, "PublicEndpoint") ?? "" }
            if seen.values.allSatisfy({ $0 != "s \"\"" && !$0.isEmpty }) { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        let up1 = seen["up1"] ?? ""
        let up2 = seen["up2"] ?? ""
        // 10.202.N.x: the uplink's own address, as masquerade keeps it; the port is the NAT's for up1 only.
        let natPort = up1.split(separator: ":").last.flatMap { Int($0.dropLast()) } ?? 0
        #expect(up1.hasPrefix("s \"10.202.1.") && (40000...40099).contains(natPort), "up1 \(up1)")
        #expect(up2.hasPrefix("s \"10.202.2."), "up2 \(up2)")
        #expect(try lab.uplinkProperty("up1", "BehindNAT") == "b true")
        #expect(try lab.uplinkProperty("up2", "BehindNAT") == "b false")
        #expect(lab.log("client").contains("uplink up1: the server sees it as 10.202.1."), "\(lab.log("client"))")

        let table = try lab.sh("\(DaemonLab.product("triglav")) --bus-address '\(lab.busAddress ?? "")' uplinks")
        let up1Row = table.split(separator: "\n").first { $0.hasPrefix("up1 ") } ?? ""
        let up2Row = table.split(separator: "\n").first { $0.hasPrefix("up2 ") } ?? ""
        #expect(up1Row.hasSuffix("(NAT)") && !up2Row.hasSuffix("(NAT)") && up2Row.contains("10.202.2."), "\(table)")

        // Rebinding: up1 silent for 1.5 s (dropped before conntrack sees it) while its mapping times out after 1 s,
        // and the NAT's ports move to 41000–41099. The client resets a silent session only after 3 s, so what brings
        // the new port is the server noticing the session's new source.
        try lab.exec(lab.client, "sysctl -qw net.netfilter.nf_conntrack_udp_timeout=1 net.netfilter.nf_conntrack_udp_timeout_stream=1")
        try lab.exec(lab.client, """
            nft 'add table ip triglav_outage_test; \
            add chain ip triglav_outage_test out { type filter hook output priority -300; policy accept; }; \
            add chain ip triglav_outage_test in { type filter hook prerouting priority -300; policy accept; }; \
            add rule ip triglav_outage_test out oifname "up1" drop; add rule ip triglav_outage_test in iifname "up1" drop'
            """)
        Thread.sleep(forTimeInterval: 1.5)
        try lab.exec(lab.client, """
            nft 'flush chain ip triglav_nat_test post; \
            add rule ip triglav_nat_test post oifname "up1" udp dport 7443 masquerade to :41000-41099; \
            delete table ip triglav_outage_test'
            """)
        let unblocked = Date()
        var moved = ""
        while Date().timeIntervalSince(unblocked) < 1.2 {
            moved = try lab.uplinkProperty("up1", "PublicEndpoint") ?? ""
            if moved != up1 { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let movedPort = moved.split(separator: ":").last.flatMap { Int($0.dropLast()) } ?? 0
        #expect((41000...41099).contains(movedPort), "up1 still \(moved) 1.2 s after the outage; client log:\n\(lab.log("client").suffix(2000))")
        #expect(lab.log("client").contains("a NAT mapping changed"), "\(lab.log("client").suffix(2000))")
    }
}
