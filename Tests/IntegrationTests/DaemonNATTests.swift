import Foundation
import Testing
import TriglavTestSupport

/// NAT detection end to end (root only): the client namespace masquerades up1's tunnel datagrams to other source
/// ports (a port-translating NAT on the way); the server's endpoint reports make Uplink1.PublicEndpoint show the
/// translated port and BehindNAT true for up1, and the untranslated endpoint with BehindNAT false for up2. Then the
/// NAT moves up1 to another port under the live session (rebinding): the server reports the new source at once.
@Suite("triglavd NAT detection", .serialized, .enabled(if: DaemonLab.isRoot, "needs root for network namespaces"))
struct DaemonNATTests {
    @Test("up1 behind a port-translating NAT: PublicEndpoint shows the NAT's port, BehindNAT true; up2 direct; a rebinding shows at once")
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
        let seen = try pollUntil(timeout: 15, {
            try ["up1", "up2"].map { try lab.uplinkProperty($0, "PublicEndpoint") ?? "" }
        }, isDone: { $0.allSatisfy { $0 != "s \"\"" && !$0.isEmpty } })
        let up1 = seen[0]
        let up2 = seen[1]
        // 10.202.N.x: the uplink's own address, as masquerade keeps it; the port is the NAT's for up1 only.
        let natPort = up1.split(separator: ":").last.flatMap { Int($0.dropLast()) } ?? 0
        #expect(up1.hasPrefix("s \"10.202.1.") && (40000...40099).contains(natPort), "up1 \(up1)")
        #expect(up2.hasPrefix("s \"10.202.2."), "up2 \(up2)")
        #expect(try lab.uplinkProperty("up1", "BehindNAT") == "b true")
        #expect(try lab.uplinkProperty("up2", "BehindNAT") == "b false")
        // The veths' 1500 bytes, and no blackhole on them (Uplink1.PathMTU; DataPlaneUplinkPathTests finds one).
        for uplink in ["up1", "up2"] {
            #expect(try lab.uplinkProperty(uplink, "PathMTU") == "u 1500" && lab.uplinkProperty(uplink, "PathMTUBlackhole") == "b false")
        }
        #expect(lab.log("client").contains("uplink up1: the server sees it as 10.202.1."), "\(lab.log("client"))")

        let table = try lab.sh("\(DaemonLab.product("triglav")) --bus-address '\(lab.busAddress ?? "")' uplinks")
        let up1Row = table.split(separator: "\n").first { $0.hasPrefix("up1 ") } ?? ""
        let up2Row = table.split(separator: "\n").first { $0.hasPrefix("up2 ") } ?? ""
        #expect(up1Row.hasSuffix("(NAT)") && !up2Row.hasSuffix("(NAT)") && up2Row.contains("10.202.2."), "\(table)")

        // Rebinding: the NAT moves up1 to source port 41001 under the live session. Stateless (notrack and a port
        // rewrite each way) so that it happens exactly now, not when a conntrack entry times out; the client's own
        // port comes from its log line. The server notices the session's new source and reports it at once.
        let logLine = lab.log("client").split(separator: "\n").first { $0.contains("uplink up1: the server sees it as") } ?? ""
        let ownPort = logLine.split(separator: ":").last.flatMap { Int($0.filter(\.isNumber)) } ?? 0
        #expect(ownPort > 0, "\(logLine)")
        try lab.exec(lab.client, """
            nft 'add table ip triglav_rebind_test; \
            add chain ip triglav_rebind_test out { type filter hook output priority -300; policy accept; }; \
            add chain ip triglav_rebind_test in { type filter hook prerouting priority -300; policy accept; }; \
            add rule ip triglav_rebind_test out oifname "up1" udp dport 7443 notrack udp sport set 41001; \
            add rule ip triglav_rebind_test in iifname "up1" udp sport 7443 notrack udp dport set \(ownPort)'
            """)
        let moved = try pollUntil(timeout: 5, every: 0.05, { try lab.uplinkProperty("up1", "PublicEndpoint") ?? "" },
                                  isDone: { $0 != up1 })
        #expect(moved == "s \"10.202.1.2:41001\"", "up1 \(moved); client log:\n\(lab.log("client").suffix(2000))")
        #expect(lab.log("client").contains("now sees it as 10.202.1.2:41001"), "\(lab.log("client").suffix(2000))")
        // The tunnel still carries traffic with the NAT moved.
        try lab.exec(lab.client, "ping -c5 -i0.05 -W2 \(DaemonLab.serverTunnelAddress)")
    }
}
