import Foundation
import Testing

/// `data_cap_mb` end to end (root only): the capped uplink carries data until its cap is spent, then none.
@Suite("triglavd data caps", .serialized, .enabled(if: DaemonLab.isRoot, "needs root for network namespaces"))
struct DaemonDataCapTests {
    @Test("with the redundant scheduler, a 1 MB uplink stops at its cap while the other carries everything")
    func cappedUplinkStopsCarryingData() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        // Redundant: every packet goes over every usable uplink, so without the cap up1 would carry it all.
        try lab.write("client-cap.toml", """
            private_key = "\(lab.directory)/client.key"
            [tunnel]
            interface = "tgc0"
            [multipath]
            scheduler = "redundant"
            [uplinks]
            include = ["up*"]
            heartbeat_interval_ms = 200
            [uplinks.interface."up*"]
            tier = "primary"
            [uplinks.interface.up1]
            tier = "primary"
            data_cap_mb = 1
            """)
        try lab.startBus()
        let (_, serverNotify) = try lab.startDaemon(namespace: lab.server, "--config \(lab.directory)/server.toml",
                                                    logName: "server", onBus: false)
        try serverNotify.waitFor("READY=1", timeout: 15)
        let (client, notify) = try lab.startDaemon(
            namespace: lab.client, "--config \(lab.directory)/client-cap.toml --profile-dir \(lab.directory)/profiles --connect lab",
            logName: "client")
        try notify.waitFor("READY=1", timeout: 15)
        try notify.waitFor(prefix: "STATUS=Connected to lab (198.18.7.1:7443): 2/2 uplinks established", timeout: 10)
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")

        // 3000 × 1428 IP bytes ≈ 4.3 MB up.
        try lab.exec(lab.client, "ping -f -q -c3000 -s1400 -W1 \(DaemonLab.serverTunnelAddress)", timeout: 60)
        Thread.sleep(forTimeInterval: 1.5)  // the next tick publishes the counters
        let capped = try txBytes(lab, uplink: "up1")
        let other = try txBytes(lab, uplink: "up2")
        // Up to the cap (1 MB of data) plus probes and feedback, which the cap doesn't stop; nothing more.
        #expect(capped >= 900_000 && capped <= 1_150_000, "up1 sent \(capped), up2 \(other)")
        #expect(other >= 4_000_000, "up1 sent \(capped), up2 \(other)")
        lab.terminate(client)
        #expect(!client.isRunning, "did not exit within 10 s of SIGTERM")
        if !client.isRunning { #expect(client.terminationStatus == 0, "client log:\n\(lab.log("client"))") }
    }

    private func txBytes(_ lab: DaemonLab, uplink interface: String) throws -> UInt64 {
        for number in 1...2 {
            let path = "org.triglav /org/triglav/uplink/\(number) org.triglav.Uplink1"
            guard try lab.busctl("get-property \(path) Interface") == "s \"\(interface)\"\n" else { continue }
            let answer = try lab.busctl("get-property \(path) TxBytes")
            return UInt64(answer.dropFirst(2).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        }
        Issue.record("no uplink object for \(interface)")
        return 0
    }
}
