import Foundation
import Testing
import TriglavTestSupport

extension DaemonTests {
    /// `[uplinks.interface.NAME] transport = "tcp"` on the real daemons: the pinned uplink reaches the server over TCP
    /// from the start and sends not one UDP datagram (an nftables counter on its way out), while the other stays on
    /// UDP; both carry the tunnel. A reload that drops the pin moves the uplink back to UDP (a new session); writing
    /// Uplink1.Transport (`triglav uplink set up1 --transport tcp`) moves it to TCP only again, with no UDP after it.
    @Test("a TCP-only uplink never sends UDP and carries the tunnel beside a UDP one; a reload moves it back to UDP")
    func pinnedTCPTransportSendsNoUDP() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        try lab.startBus()
        let config = try String(contentsOfFile: "\(lab.directory)/client.toml", encoding: .utf8)
        try lab.write("client.toml", config + "[uplinks.interface.up1]\ntier = \"primary\"\ntransport = \"tcp\"")
        // Counts what leaves up1 for the server's port: UDP must stay at 0, TCP must not.
        try lab.exec(lab.client, """
            nft -f - <<'NFT'
            table inet tg_transport {
                counter udp_out {}
                counter tcp_out {}
                chain out {
                    type filter hook output priority 0;
                    oifname "up1" udp dport 7443 counter name udp_out
                    oifname "up1" tcp dport 7443 counter name tcp_out
                }
            }
            NFT
            """)
        func packets(_ counter: String) throws -> Int {
            let text = try lab.exec(lab.client, "nft list counter inet tg_transport \(counter)")
            guard let range = text.range(of: #"packets (\d+)"#, options: .regularExpression) else { return -1 }
            return Int(text[range].dropFirst("packets ".count)) ?? -1
        }
        let (_, serverNotify) = try lab.startServer(onBus: false)
        try serverNotify.waitFor("READY=1", timeout: 15)
        let (client, clientNotify) = try lab.startClient()
        try clientNotify.waitFor("READY=1", timeout: 15)
        #expect(lab.waitForTunnel(timeout: 15), "client log:\n\(lab.log("client"))")
        let transport = try pollUntil(timeout: 10, { try lab.uplinkProperty("up1", "Transport") ?? "" },
                                      isDone: { $0 == "s \"tcp\"" })
        #expect(transport == "s \"tcp\"")
        let established = try pollUntil(timeout: 10, { try lab.uplinkProperty("up1", "State") ?? "" },
                                        isDone: { $0 == "s \"active\"" })
        #expect(established == "s \"active\"", "client log:\n\(lab.log("client"))")
        #expect(try lab.uplinkProperty("up2", "Transport") == "s \"udp\"")
        #expect(lab.log("client").contains("uplink up1 joined the tunnel (TCP only)"))
        let table = try lab.sh("\(DaemonLab.product("triglav")) --bus-address '\(lab.busAddress ?? "")' uplinks")
        let via = table.split(separator: "\n").filter { $0.hasPrefix("up") }.map { $0.split(separator: " ").map(String.init) }
        #expect(via.map { [$0[0], $0[$0.count - 2]] } == [["up1", "tcp"], ["up2", "udp"]], "\(table)")
        try lab.exec(lab.client, "ping -c 20 -i 0.05 -W 2 \(DaemonLab.serverTunnelAddress)")
        #expect(try packets("udp_out") == 0, "UDP left the TCP-only uplink")
        #expect(try packets("tcp_out") > 10)
        #expect(!lab.log("client").contains("no answer over UDP"))

        // The pin goes: the uplink leaves and joins again over UDP.
        try lab.write("client.toml", config)
        kill(client.processIdentifier, SIGHUP)
        let back = try pollUntil(timeout: 15, { try lab.uplinkProperty("up1", "Transport") ?? "" }, isDone: { $0 == "s \"udp\"" })
        #expect(back == "s \"udp\"", "client log:\n\(lab.log("client"))")
        let active = try pollUntil(timeout: 10, { try lab.uplinkProperty("up1", "State") ?? "" }, isDone: { $0 == "s \"active\"" })
        #expect(active == "s \"active\"", "client log:\n\(lab.log("client"))")
        #expect(try packets("udp_out") > 0)

        // Writing Uplink1.Transport (`triglav uplink set`) moves the discovered uplink to TCP only, at once (a new session).
        let path = try #require(try lab.uplinkPath("up1"))
        try lab.sh("\(DaemonLab.product("triglav")) --bus-address '\(lab.busAddress ?? "")' uplink set up1 --transport tcp")
        let written = try pollUntil(timeout: 10, { try lab.uplinkProperty("up1", "Transport") ?? "" }, isDone: { $0 == "s \"tcp\"" })
        #expect(written == "s \"tcp\"", "client log:\n\(lab.log("client"))")
        _ = try pollUntil(timeout: 10, { try lab.uplinkProperty("up1", "State") ?? "" }, isDone: { $0 == "s \"active\"" })
        let udpBefore = try packets("udp_out")
        try lab.exec(lab.client, "ping -c 10 -i 0.05 -W 2 \(DaemonLab.serverTunnelAddress)")
        #expect(try packets("udp_out") == udpBefore, "UDP left the uplink after Transport was set to tcp")
        let refused = try? lab.busctl("set-property org.triglav \(path) org.triglav.Uplink1 Transport s quic")
        #expect(refused == nil)
        #expect(try lab.uplinkProperty("up1", "Transport") == "s \"tcp\"")
    }
}
