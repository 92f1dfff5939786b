import Foundation
import Testing
import TriglavTestSupport

extension DaemonTests {
    /// Uplink1.RxRateBps on the real daemons: traffic from the server side (a client's download) shows as a receive
    /// rate on the client's uplinks while it flows and falls back to nothing when it stops, and `triglav uplinks`
    /// shows it next to the send-direction estimate.
    @Test("a download shows on the client's uplinks as RxRateBps (and RX-RATE), and stops showing when it ends")
    func uplinkReceiveRateFollowsDownloads() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        try lab.startBus()
        let (_, serverNotify) = try lab.startServer(onBus: false)
        try serverNotify.waitFor("READY=1", timeout: 15)
        let (_, clientNotify) = try lab.startClient()
        try clientNotify.waitFor("READY=1", timeout: 15)
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
        func totalRate() throws -> UInt64 {
            try (1...2).reduce(0) { sum, number in
                let answer = try lab.busctl("get-property org.triglav /org/triglav/uplink/\(number) org.triglav.Uplink1 RxRateBps")
                return sum + (answer.split(separator: " ").last.flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0)
            }
        }
        // ~100 echo requests/s of 1328 IP bytes towards the client: ≈ 1 Mbit/s of data frames arriving at it.
        let ping = try lab.spawn(namespace: lab.server, "ping -q -c 400 -i 0.01 -s 1300 -W 1 \(DaemonLab.clientTunnelAddress)",
                                 logName: "ping")
        var peak: UInt64 = 0
        var table = ""
        let deadline = Date().addingTimeInterval(3)
        while Date() < deadline {
            peak = max(peak, try totalRate())
            if peak >= 500_000 {
                table = try lab.sh("\(DaemonLab.product("triglav")) --bus-address '\(lab.busAddress ?? "")' uplinks")
                break
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(peak >= 500_000, "receive rate during the download: \(peak) bit/s")
        #expect(table.contains("RX-RATE") && (table.contains("kbit/s") || table.contains("Mbit/s")), "\(table)")
        lab.waitForExit(ping, timeout: 10)
        // One window after the traffic ends the rate reads 0 again.
        let after = try pollUntil(timeout: 4, every: 0.2, totalRate, isDone: { $0 == 0 })
        #expect(after == 0, "receive rate after the download: \(after) bit/s")

        // Manager1.Counters: the echo requests came out of the reorder buffer, the replies were read from the TUN device.
        let counters = try lab.busctl("get-property org.triglav /org/triglav org.triglav.Manager1 Counters")
        #expect(DaemonLab.namedCount(counters, "reorder_delivered_packets_in_order") ?? 0 >= 300, "\(counters)")
        #expect(DaemonLab.namedCount(counters, "read_packets") ?? 0 >= 300, "\(counters)")
        #expect(DaemonLab.namedCount(counters, "tun_malformed_reads") == 0, "\(counters)")
        // The sockets' offload counts are on each Uplink1 (what a ping flow coalesces varies; the type doesn't).
        for property in ["GSODatagrams", "GRODatagrams"] {
            let answer = try lab.busctl("get-property org.triglav /org/triglav/uplink/1 org.triglav.Uplink1 \(property)")
            #expect(answer.hasPrefix("t ") && UInt64(answer.dropFirst(2).trimmingCharacters(in: .whitespacesAndNewlines)) != nil, "\(answer)")
        }
        let listed = try lab.sh("\(DaemonLab.product("triglav")) --bus-address '\(lab.busAddress ?? "")' status --counters")
        #expect(listed.contains("COUNTER (tunnel)") && listed.contains("reorder_skipped_sequences"), "\(listed)")
    }
}
