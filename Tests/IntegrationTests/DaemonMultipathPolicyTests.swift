import Foundation
import Testing
import TriglavTestSupport

/// The client's multipath choices hold end to end between two real triglavd (root only): its scheduler governs the
/// downloads too (the server follows what the client announces), and a backup uplink keeps its session idle while
/// the primary works, then takes over within the failover bound when the primary is blackholed.
@Suite("triglavd multipath policy end to end", .serialized, .enabled(if: DaemonLab.isRoot, "needs root for network namespaces"))
struct DaemonMultipathPolicyTests {
    /// Bus, server and a client (`clientConfig` in the lab's directory), connected over both uplinks with the
    /// tunnel passing traffic.
    private static func connectServerAndClient(_ lab: DaemonLab, clientConfig: String = "client.toml") throws {
        try lab.startBus()
        let (_, serverNotify) = try lab.startServer(onBus: false)
        try serverNotify.waitFor("READY=1", timeout: 15)
        let (_, notify) = try lab.startClient(config: clientConfig)
        try notify.waitFor("READY=1", timeout: 15)
        try notify.waitFor(prefix: "STATUS=Connected to lab (198.18.7.1:7443): 2/2 uplinks established", timeout: 10)
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
    }

    @Test("switching the client to redundant at runtime makes the server send every download packet on both uplinks")
    func serverFollowsTheClientsScheduler() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        try Self.connectServerAndClient(lab)

        try lab.busctl("set-property org.triglav /org/triglav org.triglav.Manager1 Scheduler s redundant")
        // The next probe or keepalive announces it; measure once the server has switched.
        #expect(Self.waitForLog(lab, "server", "scheduler redundant, as its client asked"),
                "the server didn't follow; server log:\n\(lab.log("server"))")
        let before = try Self.receivedBytes(lab, ["up1", "up2"])
        // 200 echo replies of 1428 IP bytes: with redundant downloads each uplink receives every one of them.
        try lab.exec(lab.client, "ping -q -c200 -i0.01 -s1400 -W1 \(DaemonLab.serverTunnelAddress)", timeout: 60)
        Thread.sleep(forTimeInterval: 0.3)
        let after = try Self.receivedBytes(lab, ["up1", "up2"])
        let replies = 200 * 1428
        for (index, name) in ["up1", "up2"].enumerated() {
            let received = after[index] - before[index]
            // Aggregate would split the replies between the uplinks (together ≈ 286 kB); redundant sends all on each.
            #expect(received >= replies * 9 / 10, "\(name) received \(received) bytes; server log:\n\(lab.log("server"))")
        }
        #expect(lab.log("server").contains("scheduler redundant, as its client asked"))
    }

    @Test("a backup uplink keeps an idle session while the primary works and takes over when it is blackholed")
    func backupTakesOverFromABlackholedPrimary() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        try lab.write("client-tiers.toml", """
            private_key = "\(lab.directory)/client.key"
            log_level = "debug"
            [tunnel]
            interface = "tgc0"
            [uplinks]
            include = ["up*"]
            [uplinks.interface.up1]
            tier = "primary"
            [uplinks.interface.up2]
            tier = "backup"
            """)
        // Both sessions come up although the primary works: the backup is attached, ready to take over.
        try Self.connectServerAndClient(lab, clientConfig: "client-tiers.toml")

        // While the primary works, the backup carries no data: its idle probes only (every 3.2 s each way), and maybe
        // its path MTU search (two probes up to 1500 bytes and their acknowledgements, ~3 kB), against the 200 kB
        // the primary carries.
        let idle = try Self.totalBytes(lab, ["up1", "up2"])
        try lab.exec(lab.client, "ping -q -c100 -i0.01 -s1000 -W1 \(DaemonLab.serverTunnelAddress)", timeout: 60)
        let busy = try Self.totalBytes(lab, ["up1", "up2"])
        #expect(busy[0] - idle[0] >= 200 * 1028, "the primary carried \(busy[0] - idle[0]) bytes")
        #expect(busy[1] - idle[1] < 10_000, "the backup carried \(busy[1] - idle[1]) bytes while the primary worked")
        #expect(try lab.uplinkProperty("up2", "State") == "s \"standby\"")

        // Blackhole the primary (its interface stays up) in the middle of a ping every 20 ms.
        let ping = try lab.spawn(namespace: lab.client, "ping -c150 -i0.02 -W1 \(DaemonLab.serverTunnelAddress)", logName: "ping")
        Thread.sleep(forTimeInterval: 1)
        try lab.exec(lab.client, "nft -f \(try Self.blackholeRules(lab, interface: "up1"))")
        lab.waitForExit(ping, timeout: 20)
        let answered = Self.answeredSequences(lab.log("ping"))
        let gaps = zip(answered, answered.dropFirst()).map { $1 - $0 - 1 }
        // A lost reply shows as a gap in the sequence; one the engines resent over the backup as a long round trip.
        let outage = max((gaps.max() ?? 150) * 20, Self.longestRoundTrip(lab.log("ping")))
        #expect(answered.count > 100, "ping:\n\(lab.log("ping"))")
        #expect(answered.last ?? 0 >= 145, "the tunnel must keep working over the backup")
        // The engine's bound is ≈ 300 ms under traffic on each side; the margin is for a loaded two-core machine.
        #expect(outage <= 1000, "longest outage \(outage) ms; client log:\n\(lab.log("client"))")
        let taken = try Self.totalBytes(lab, ["up1", "up2"])
        #expect(taken[1] - busy[1] > 100 * 84, "the backup carried \(taken[1] - busy[1]) bytes after the primary failed")
        print("backup takeover: longest outage \(outage) ms, \(answered.count)/150 answered, backup carried \(taken[1] - busy[1]) bytes")
    }

    @Test("a manual uplink whose carrier goes is taken out of service at once, and probed again when it returns")
    func manualUplinkFollowsItsCarrier() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        try Self.connectServerAndClient(lab)
        // AddUplink of the discovered up1 makes it manual: it stays in the tunnel whatever discovery says.
        try lab.busctl("call org.triglav /org/triglav org.triglav.Manager1 AddUplink 'sa{sv}' up1 0")

        // The far end goes down: up1 loses its carrier, and the engine hears it from the daemon at once.
        try lab.sh("ip -n \(lab.server) link set dn1 down")
        #expect(Self.waitForLog(lab, "client", "uplink up1: system reports its link down"), "client log:\n\(lab.log("client"))")
        #expect(try lab.uplinkProperty("up1", "State") == "s \"down\"")
        let ping = try lab.exec(lab.client, "ping -c50 -i0.02 -W1 \(DaemonLab.serverTunnelAddress)", timeout: 30)
        #expect(Self.answeredSequences(ping).count == 50, "the tunnel works over up2:\n\(ping)")

        // Carrier back: the engine probes up1 again at once, and it returns to service.
        try lab.sh("ip -n \(lab.server) link set dn1 up")
        #expect(Self.waitForLog(lab, "client", "uplink up1: system reports its link up"), "client log:\n\(lab.log("client"))")
        let state = try pollUntil(timeout: 10, every: 0.2, { try lab.uplinkProperty("up1", "State") },
                                  isDone: { $0 == "s \"active\"" })
        #expect(state == "s \"active\"", "client log:\n\(lab.log("client"))")
    }

    static func waitForLog(_ lab: DaemonLab, _ name: String, _ text: String, timeout: TimeInterval = 10) -> Bool {
        pollUntil(timeout: timeout, { lab.log(name).contains(text) }, isDone: { $0 })
    }

    static func counters(_ lab: DaemonLab, _ interfaces: [String], _ files: [String]) throws -> [Int] {
        try interfaces.map { interface in
            let paths = files.map { "/sys/class/net/\(interface)/statistics/\($0)" }.joined(separator: " ")
            return try lab.exec(lab.client, "cat \(paths)").split(separator: "\n")
                .compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }.reduce(0, +)
        }
    }

    static func receivedBytes(_ lab: DaemonLab, _ interfaces: [String]) throws -> [Int] {
        try counters(lab, interfaces, ["rx_bytes"])
    }

    static func totalBytes(_ lab: DaemonLab, _ interfaces: [String]) throws -> [Int] {
        try counters(lab, interfaces, ["rx_bytes", "tx_bytes"])
    }

    /// An nftables file (in the client namespace) dropping everything in and out of `interface`.
    static func blackholeRules(_ lab: DaemonLab, interface: String) throws -> String {
        try lab.write("blackhole.nft", """
            table inet tgblackhole {
                chain input { type filter hook input priority -10; iifname "\(interface)" drop; }
                chain output { type filter hook output priority -10; oifname "\(interface)" drop; }
            }
            """)
        return "\(lab.directory)/blackhole.nft"
    }

    /// The longest `time=` of ping's replies, in whole milliseconds.
    static func longestRoundTrip(_ output: String) -> Int {
        output.split(separator: "\n").compactMap { line -> Double? in
            guard let range = line.range(of: "time=") else { return nil }
            return Double(line[range.upperBound...].prefix { $0.isNumber || $0 == "." })
        }.map { Int($0) }.max() ?? 0
    }

    /// icmp_seq numbers of the replies in ping's output, in order.
    static func answeredSequences(_ output: String) -> [Int] {
        output.split(separator: "\n").compactMap { line in
            guard line.contains("bytes from"), let range = line.range(of: "icmp_seq=") else { return nil }
            return Int(line[range.upperBound...].prefix { $0.isNumber })
        }
    }
}
