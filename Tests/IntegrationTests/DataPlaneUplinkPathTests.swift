import Foundation
import Testing

/// Uplink paths in namespaces (root only; CI runs them as root): the TUN MTU follows each uplink's path MTU to
/// the server (a route's `mtu`, not just the link's), counting only uplinks that carry traffic; full-size packets
/// leave unfragmented; and uplink sockets send from their interface's current address, so source-based policy
/// routing (`ip rule from ADDR lookup T`, the usual multi-WAN set-up) applies to them (docs/DATAPLANE.md).
@Suite("DataPlane uplink paths in namespaces", .serialized, .enabled(if: DataPlaneLab.isRoot, "needs root for network namespaces"))
struct DataPlaneUplinkPathTests {
    /// Outer IPv4 20 + UDP 8 + transport header 16 + inner header 8 + tag 16.
    static let overhead = 68

    @Test("a route with mtu 1400 to the server on one uplink: TUN MTU 1332, full-size pings leave as 1400-byte datagrams, unfragmented")
    func routeMTUSetsTheTunnelMTU() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        _ = try lab.startServer()
        _ = try lab.startClient()
        #expect(lab.waitForTunnel(timeout: 10))
        #expect(lab.tunnelMTU(becomes: 1500 - Self.overhead) == 1500 - Self.overhead)
        // The link stays at 1500; only the route to the server says 1400 (as a PMTU learnt from ICMP would).
        try lab.sh("ip -n \(lab.client) route replace \(DataPlaneLab.serverAddress)/32 via 10.201.1.1 dev up1 metric 1 mtu 1400")
        #expect(lab.tunnelMTU(becomes: 1400 - Self.overhead) == 1400 - Self.overhead)
        // The new bound started a path MTU search on up1; its base probe (a 1280-byte packet) must not land in the
        // capture of full-size pings.
        try lab.waitForOutput("client", containing: "uplink up1: path MTU search done: 1372-byte datagrams pass", timeout: 15)
        let outer = try Self.outerPackets(lab) {
            try lab.exec(lab.client, "ping -c 6 -i 0.2 -W 2 -M do -s \(1400 - Self.overhead - 28) \(DataPlaneLab.serverTunnelAddress)")
        }
        #expect(outer.fragments.isEmpty, "fragments on the uplinks: \(outer.fragments)")
        #expect(!outer.lengths.isEmpty, "no full-size tunnel datagram captured")
        #expect(outer.lengths.allSatisfy { $0 == 1400 }, "outer lengths \(outer.lengths)")
        // An IPv4-only tunnel goes below 1280 (its floor is 576): 1300 − 68.
        try lab.sh("ip -n \(lab.client) route replace \(DataPlaneLab.serverAddress)/32 via 10.201.1.1 dev up1 metric 1 mtu 1300")
        #expect(lab.tunnelMTU(becomes: 1300 - Self.overhead) == 1300 - Self.overhead)
        try lab.exec(lab.client, "ping -c 3 -i 0.2 -W 2 -M do -s \(1300 - Self.overhead - 28) \(DataPlaneLab.serverTunnelAddress)")
        // up1 loses its carrier (the far end goes down): it carries nothing, so its small path no longer counts.
        try lab.sh("ip -n \(lab.server) link set dn1 down")
        #expect(lab.tunnelMTU(becomes: 1500 - Self.overhead) == 1500 - Self.overhead)
        try lab.sh("ip -n \(lab.server) link set dn1 up")
        #expect(lab.tunnelMTU(becomes: 1300 - Self.overhead) == 1300 - Self.overhead)
        // The small-MTU route goes: the TUN MTU rises again.
        try lab.sh("ip -n \(lab.client) route replace \(DataPlaneLab.serverAddress)/32 via 10.201.1.1 dev up1 metric 1")
        #expect(lab.tunnelMTU(becomes: 1500 - Self.overhead) == 1500 - Self.overhead)
        try lab.exec(lab.client, "ping -c 3 -i 0.2 -W 2 -M do -s \(1500 - Self.overhead - 28) \(DataPlaneLab.serverTunnelAddress)")
    }

    /// A PMTU blackhole: a hop on up1's way drops datagrams above 1400 bytes and sends no ICMP, so the kernel still
    /// says 1500. The client's path-MTU probes find it (docs/DATAPLANE.md, "Path MTU blackholes"): 1396 with the 8-byte
    /// granularity, so the TUN MTU goes to 1396 − 68 and full-size packets pass again.
    @Test("a hop that silently drops datagrams above 1400 bytes on one uplink: probing finds it and the TUN MTU follows (1328)")
    func blackholeIsFoundByProbing() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        _ = try lab.startServer()
        try lab.exec(lab.server, "nft add table inet tgpmtu")
        try lab.exec(lab.server, "nft 'add chain inet tgpmtu in { type filter hook prerouting priority -300 ; }'")
        try lab.exec(lab.server, "nft 'add rule inet tgpmtu in iifname dn1 meta l4proto udp ip length > 1400 drop'")
        _ = try lab.startClient()
        #expect(lab.waitForTunnel(timeout: 10))
        // Base, upper bound lost 3 times, then a binary search with three losses per size that doesn't pass: ~15 s.
        try lab.waitForOutput("client", containing: "uplink up1: datagrams above 1368 bytes don't reach the server", timeout: 60)
        #expect(lab.tunnelMTU(becomes: 1396 - Self.overhead) == 1396 - Self.overhead)
        #expect(!lab.log("client").contains("uplink up2: datagrams above") && !lab.log("client").contains("uplink up3: datagrams above"),
                "only up1 has a blackhole")
        // Full-size packets for the new MTU pass whichever uplink carries them.
        try lab.exec(lab.client, "ping -c 6 -i 0.2 -W 2 -M do -s \(1396 - Self.overhead - 28) \(DataPlaneLab.serverTunnelAddress)")
        // The hop goes and up1 is renumbered (another network, as after roaming): its path is searched again at once,
        // not after 10 minutes, and the TUN MTU rises back once the new search finds nothing.
        try lab.exec(lab.server, "nft delete table inet tgpmtu")
        try lab.sh("ip -n \(lab.client) address del 10.201.1.2/24 dev up1")
        try lab.sh("ip -n \(lab.client) address add 10.201.1.77/24 dev up1")
        try lab.sh("ip -n \(lab.client) route replace \(DataPlaneLab.serverAddress)/32 via 10.201.1.1 dev up1 metric 1")
        try lab.waitForOutput("client", containing: "uplink up1 sends from 10.201.1.77", timeout: 15)
        // up1 counts again from its next pass on (while it had no route it didn't): with its old limit kept, the MTU
        // would be back at 1328 after two passes.
        Thread.sleep(forTimeInterval: 2.5)
        #expect(lab.tunnelMTU(becomes: 1500 - Self.overhead) == 1500 - Self.overhead, "client log:\n\(lab.log("client").suffix(2000))")
    }

    @Test("IPv6 inside over a 1300-byte path: the TUN stays at 1280 with its IPv6 address, the client warns, and a packet too large for the path is refused, not fragmented")
    func floorWithIPv6Inside() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        try lab.sh("ip -n \(lab.client) route replace \(DataPlaneLab.serverAddress)/32 via 10.201.1.1 dev up1 metric 1 mtu 1300")
        _ = try lab.spawn(namespace: lab.server, "\(DataPlaneLab.driver) server --key \(lab.serverKeyFile) --tun tgs0 "
            + "--address 10.77.0.1/24 --address fd77::1/64 --client \(lab.clientPublicKey)=10.77.0.2/24,fd77::2/64 --verbose",
            logName: "server")
        try lab.waitForOutput("server", containing: "ready", timeout: 10)
        _ = try lab.startClient(uplinks: ["up1"])
        #expect(lab.waitForTunnel(timeout: 10))
        #expect(lab.tunnelMTU(becomes: TunnelFloor.ipv6) == TunnelFloor.ipv6)
        try lab.waitForOutput("client", containing: "uplink up1: path MTU 1300 to the server leaves room for 1232-byte inner packets",
                              timeout: 5)
        #expect(try lab.exec(lab.client, "ip -6 address show dev tgc0").contains("fd77::2"))
        try lab.exec(lab.client, "ping -6 -c2 -i0.2 -W2 fd77::1")
        // A 1232-byte inner packet fits the path; a 1280-byte one (the TUN's MTU) doesn't and is dropped whole.
        let outer = try Self.outerPackets(lab) {
            try lab.exec(lab.client, "ping -6 -c2 -i0.2 -W2 -M do -s \(1232 - 48) fd77::1")
            #expect((try? lab.exec(lab.client, "ping -6 -c2 -i0.2 -W1 -M do -s \(1280 - 48) fd77::1")) == nil)
        }
        #expect(outer.fragments.isEmpty, "fragments on the uplinks: \(outer.fragments)")
        #expect(outer.lengths.allSatisfy { $0 <= 1300 }, "outer lengths \(outer.lengths)")
    }

    @Test("IPv6 inside, one uplink's path 1300 bytes and another's 1500: packets too large for the small path go on the other, none is refused")
    func largePacketsAvoidTheSmallPath() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        try lab.sh("ip -n \(lab.client) route replace \(DataPlaneLab.serverAddress)/32 via 10.201.1.1 dev up1 metric 1 mtu 1300")
        _ = try lab.startServer(ipv6: true)
        _ = try lab.startClient(uplinks: ["up1", "up2"], extraArguments: "--stats-interval 0.3")
        #expect(lab.waitForTunnel(timeout: 10))
        #expect(lab.tunnelMTU(becomes: TunnelFloor.ipv6) == TunnelFloor.ipv6)
        try lab.waitForOutput("client", containing: "uplink up1: path MTU 1300 to the server leaves room for 1232-byte inner packets",
                              timeout: 5)
        // The next path pass (every second) has told the engine each uplink's largest datagram.
        Thread.sleep(forTimeInterval: 1.2)
        // Full-size (1280-byte) and small IPv6 packets: every one answered, none refused by up1's socket.
        try lab.exec(lab.client, "ping -6 -c100 -i0.01 -W2 -M do -s \(1280 - 48) fd77::1")
        try lab.exec(lab.client, "ping -6 -c20 -i0.05 -W2 -s 100 fd77::1")
        Thread.sleep(forTimeInterval: 0.5)
        let errors = Self.lastSendErrors(lab.log("client"))
        #expect(errors["up1"] == 0 && errors["up2"] == 0, "send errors per uplink: \(errors)")
    }

    /// Each uplink's `sendErrors` in the last statistics line of a client log.
    static func lastSendErrors(_ log: String) -> [String: Int] {
        guard let line = log.split(separator: "\n").last(where: { $0.contains("sendErrors") }) else { return [:] }
        var errors: [String: Int] = [:]
        for match in line.matches(of: /interface: ([a-z0-9]+),.*?sendErrors: (\d+)/) {
            errors[String(match.output.1)] = Int(match.output.2)
        }
        return errors
    }

    @Test("a `never` uplink's small path MTU doesn't lower the TUN MTU")
    func neverUplinkDoesNotCount() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        try lab.sh("ip -n \(lab.client) route replace \(DataPlaneLab.serverAddress)/32 via 10.201.3.1 dev up3 metric 3 mtu 1300")
        _ = try lab.startServer()
        _ = try lab.startClient(uplinks: ["up1", "up2", "up3:never"])
        #expect(lab.waitForTunnel(timeout: 10))
        Thread.sleep(forTimeInterval: 2)  // two refresh passes
        #expect(lab.tunnelMTU(becomes: 1500 - Self.overhead) == 1500 - Self.overhead)
        // The same uplink carrying traffic does lower it (the route is what the probe sees).
        try lab.sh("ip -n \(lab.client) route replace \(DataPlaneLab.serverAddress)/32 via 10.201.2.1 dev up2 metric 2 mtu 1300")
        #expect(lab.tunnelMTU(becomes: 1300 - Self.overhead) == 1300 - Self.overhead)
    }

    @Test("the uplink's route to the server exists only in a table its source address selects: the tunnel works, and follows a renumbering")
    func sourceBasedPolicyRouting() throws {
        let lab = try DataPlaneLab()
        defer { lab.tearDown() }
        // Multi-WAN style: up1's way to the server is in table 101, chosen by `from 10.201.1.2`; main has none
        // through up1. The server's side doesn't answer ARP for its loopback address, as a real gateway wouldn't
        // for an internet address (else the kernel's on-link guess for a device-bound socket would get through).
        try lab.sh("ip -n \(lab.client) route del \(DataPlaneLab.serverAddress)/32 dev up1")
        try lab.sh("ip -n \(lab.client) route add \(DataPlaneLab.serverAddress)/32 via 10.201.1.1 dev up1 table 101")
        try lab.sh("ip -n \(lab.client) rule add from 10.201.1.2 lookup 101 priority 100")
        try lab.exec(lab.server, "sysctl -qw net.ipv4.conf.all.arp_ignore=1")
        _ = try lab.startServer()
        _ = try lab.startClient(uplinks: ["up1"])
        #expect(lab.waitForTunnel(timeout: 10), "no tunnel through the source-routed uplink:\n\(lab.log("client"))")
        try lab.exec(lab.client, "ping -c3 -i0.2 -W2 \(DataPlaneLab.serverTunnelAddress)")
        // Renumbered (DHCP gave another address; the multi-WAN script moved the rule): the socket follows.
        try lab.sh("ip -n \(lab.client) rule add from 10.201.1.77 lookup 101 priority 101")
        try lab.sh("ip -n \(lab.client) address del 10.201.1.2/24 dev up1")
        try lab.sh("ip -n \(lab.client) address add 10.201.1.77/24 dev up1")
        try lab.sh("ip -n \(lab.client) route replace \(DataPlaneLab.serverAddress)/32 via 10.201.1.1 dev up1 table 101")
        try lab.exec(lab.client, "ping -c3 -i0.2 -W2 \(DataPlaneLab.serverTunnelAddress)")
        let captured = try lab.captureOnServerWhileClientPings("udp port 7443 and src host 10.201.1.77")
        #expect(captured.contains("10.201.1.77"), "the client did not send from its new address: \(captured)")
        // All of it over UDP. (A TCP connect looks the route up twice, the second time from the source the first
        // picked, so the TCP fallback got through even when UDP datagrams left without a source.)
        #expect(!lab.log("client").contains("falling back to TCP"), "UDP didn't get through:\n\(lab.log("client"))")
    }

    // MARK: Helpers

    /// Captures, on every uplink while `body` runs, the outer IPv4 packets of the tunnel above 1000 bytes and every
    /// fragment (`ip[6:2] & 0x3fff != 0`: MF or an offset); returns their total lengths and the fragments' lines.
    static func outerPackets(_ lab: DataPlaneLab, during body: () throws -> Void) throws -> (lengths: [Int], fragments: [String]) {
        let captures = try lab.captureOnUplinks(options: "-v", filter: "(udp port 7443 and ip[2:2] > 1000) or (ip[6:2] & 0x3fff != 0)")
        try body()
        Thread.sleep(forTimeInterval: 0.5)
        var lengths: [Int] = []
        var fragments: [String] = []
        for (uplink, process) in captures {
            // Line-buffered (-l): SIGKILL loses nothing.
            lab.crash(process)
            for line in lab.log("tcpdump-\(uplink)").split(separator: "\n") where line.contains(" IP (") {
                let header = OuterHeader(line)
                guard let header else { continue }
                if header.isFragment { fragments.append("\(uplink): \(line)") } else { lengths.append(header.length) }
            }
        }
        return (lengths, fragments)
    }
}

enum TunnelFloor {
    /// The kernel's minimum link MTU for IPv6 (TunnelMTU.ipv6Floor).
    static let ipv6 = 1280
}

/// The fields of a `tcpdump -v` IPv4 header line: "IP (tos 0x0, ttl 64, id 0, offset 0, flags [DF], proto UDP (17), length 1500)".
struct OuterHeader {
    var offset: Int
    var moreFragments: Bool
    var length: Int

    init?(_ line: Substring) {
        func field(_ name: String) -> Substring? {
            guard let start = line.range(of: name) else { return nil }
            return line[start.upperBound...].prefix { $0 != "," && $0 != ")" }
        }
        guard let offset = field("offset ").flatMap({ Int($0) }), let flags = field("flags "),
              let lengthStart = line.range(of: "length ", options: .backwards),
              let length = Int(line[lengthStart.upperBound...].prefix { $0.isNumber }) else { return nil }
        self.offset = offset
        moreFragments = flags.contains("+")
        self.length = length
    }

    var isFragment: Bool { offset != 0 || moreFragments }
}
