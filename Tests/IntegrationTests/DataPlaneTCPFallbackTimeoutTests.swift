import Foundation
import Testing

/// The client's TCP fallback under blackholes (docs/DATAPLANE.md, "TCP fallback"): a connect whose SYNs vanish
/// fails after `TCPFallbackTimeouts.connect` (4 s) instead of the kernel's ~127 s of SYN retries, and an
/// established connection whose peer vanished is dropped after TCP_USER_TIMEOUT (10 s) instead of ~15 minutes of
/// retransmissions; the uplink then gets its tunnel back over TCP soon after the path clears. Root only; nested in
/// the serialized `DataPlaneTunnelTests`, so it never runs beside the other namespace tests.
extension DataPlaneTunnelTests {
    @Suite("TCP fallback timeouts")
    struct DataPlaneTCPFallbackTimeoutTests {
        static let fallingBack = "falling back to TCP"
        static let connectTimedOut = "TCP fallback connect to \(DataPlaneLab.serverAddress):7443 timed out"
        static let connectionTimedOut = "TCP fallback connection of up1 closed (ETIMEDOUT"

        @Test("a blackholed SYN fails the fallback connect within its deadline; a vanished peer is dropped within the user timeout")
        func blackholedFallback() throws {
            let lab = try DataPlaneLab()
            defer { lab.tearDown() }
            // UDP blocked at the client; the server's TCP port blackholed at the server (SYNs vanish: no RST, no ICMP).
            try lab.blockClientUDP()
            try blackholeServerTCP(lab)
            _ = try lab.startServer()
            _ = try lab.startClient(uplinks: ["up1"], extraArguments: "--stats-interval 0.5")

            // 1. The connect gives up after 4 s (the kernel alone would retry the SYN for about 127 s).
            let fellBack = waitForLog(lab, Self.fallingBack, count: 1, timeout: 10)
            #expect(fellBack != nil, "the client never fell back to TCP:\n\(lab.log("client"))")
            let timedOut = waitForLog(lab, Self.connectTimedOut, count: 1, timeout: 10)
            #expect(timedOut != nil, "the blackholed connect didn't time out within 10 s:\n\(lab.log("client"))")
            if let fellBack, let timedOut {
                let elapsed = timedOut.timeIntervalSince(fellBack)
                // Wide on purpose: the log lines carry whole seconds only, so both ends are when 50 ms polls saw them, and
                // on a loaded 2-core CI the client's timer and the polls each stall for up to about a second. Still far
                // from both failures this guards against: the kernel's ~127 s of SYN retries, and giving up at once.
                #expect(elapsed >= 3 && elapsed <= 7, "connect failed \(elapsed) s after it started, expected 4 s")
            }
            // Statistics lines come every 0.5 s (waits up to 10 s: timers stall under load, see above).
            for _ in 0..<200 where failuresReported(lab) < 1 { Thread.sleep(forTimeInterval: 0.05) }
            #expect(failuresReported(lab) >= 1, "the statistics don't count the failed connect:\n\(lab.log("client"))")
            #expect(!lab.waitForTunnel(timeout: 1), "a tunnel through a blackhole")

            // 2. The blackhole clears: the next attempt (UDP ~3 s, then TCP) gets the tunnel, over TCP.
            try lab.exec(lab.server, "nft delete table inet tg_dp_syn")
            let cleared = Date()
            #expect(lab.waitForTunnel(timeout: 12), "no tunnel 12 s after the blackhole cleared:\n\(lab.log("client"))")
            print("TCP fallback: tunnel \(String(format: "%.1f", Date().timeIntervalSince(cleared))) s after the blackhole cleared")
            let established = "ss -H -t -n state established '( sport = :7443 )'"
            #expect(try lab.exec(lab.server, established).contains("10.201.1.2"), "the tunnel doesn't run over TCP")

            // 3. The server vanishes from the established connection: TCP_USER_TIMEOUT (10 s) ends it, not tcp_retries2.
            let timeoutsBefore = lab.log("client").components(separatedBy: Self.connectTimedOut).count - 1
            try blackholeServerTCP(lab)
            let vanished = Date()
            let closed = waitForLog(lab, Self.connectionTimedOut, count: 1, timeout: 16)
            #expect(closed != nil, "the fallback connection to a vanished peer is still open after 16 s:\n\(lab.log("client"))")
            if let closed {
                let elapsed = closed.timeIntervalSince(vanished)
                #expect(elapsed >= 9.5, "closed after \(elapsed) s, before the 10 s user timeout")
                print("TCP fallback: dead connection closed \(String(format: "%.1f", elapsed)) s after the peer vanished")
            }
            // And the reconnect attempts fail within their deadline again, then succeed once the path clears.
            #expect(waitForLog(lab, Self.connectTimedOut, count: timeoutsBefore + 1, timeout: 12) != nil,
                    "the reconnect through the blackhole didn't time out:\n\(lab.log("client"))")
            try lab.exec(lab.server, "nft delete table inet tg_dp_syn")
            #expect(lab.waitForTunnel(timeout: 12), "no tunnel 12 s after the blackhole cleared again:\n\(lab.log("client"))")
        }

        /// Drops every TCP segment to the server's port at the server's input (table `inet tg_dp_syn`).
        private func blackholeServerTCP(_ lab: DataPlaneLab) throws {
            try lab.exec(lab.server, "nft add table inet tg_dp_syn")
            try lab.exec(lab.server, "nft 'add chain inet tg_dp_syn input { type filter hook input priority -10; }'")
            try lab.exec(lab.server, "nft add rule inet tg_dp_syn input tcp dport 7443 drop")
        }

        /// Polls the client's log (every 50 ms, up to `timeout` s) until `text` occurs `count` times; when it did.
        private func waitForLog(_ lab: DataPlaneLab, _ text: String, count: Int, timeout: TimeInterval) -> Date? {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if lab.log("client").components(separatedBy: text).count - 1 >= count { return Date() }
                Thread.sleep(forTimeInterval: 0.05)
            }
            return nil
        }

        /// The largest `tcpConnectFailures` in the client's statistics lines.
        private func failuresReported(_ lab: DataPlaneLab) -> Int {
            lab.log("client").components(separatedBy: "tcpConnectFailures: ").dropFirst()
                .compactMap { Int($0.prefix { $0.isNumber }) }.max() ?? 0
        }
    }
}
