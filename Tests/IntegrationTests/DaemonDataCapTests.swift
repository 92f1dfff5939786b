import Foundation
import Testing

/// `data_cap_mb` end to end (root only): the capped uplink carries data both ways until its cap is spent,
/// then leaves the tunnel (the server stops sending on it too), and a restarted client keeps it out.
@Suite("triglavd data caps", .serialized, .enabled(if: DaemonLab.isRoot, "needs root for network namespaces"))
struct DaemonDataCapTests {
    @Test("with the redundant scheduler, a 1 MB uplink stops at its cap both ways, also after a restart")
    func cappedUplinkStopsCarryingData() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        // Redundant: every packet goes over every usable uplink (both ways), so without the cap up1 would
        // carry it all.
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
        // The usage file goes to the lab, never to the host's /var/lib/triglav.
        let stateDirectory = ["STATE_DIRECTORY": lab.directory]
        let arguments = "--config \(lab.directory)/client-cap.toml --profile-dir \(lab.directory)/profiles --connect lab"
        try lab.startBus()
        let (_, serverNotify) = try lab.startServer(onBus: false)
        try serverNotify.waitFor("READY=1", timeout: 15)
        let (client, notify) = try lab.startDaemon(namespace: lab.client, arguments, logName: "client",
                                                   extraEnvironment: stateDirectory)
        try notify.waitFor("READY=1", timeout: 15)
        try notify.waitFor(prefix: "STATUS=Connected to lab (198.18.7.1:7443): 2/2 uplinks established", timeout: 10)
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")

        // 1000 × 1428 IP bytes each way at 100/s: ≈ 2.9 MB on up1 without the cap, ≈ 0.3 MB per daemon tick.
        let before = try linkBytes(lab, "up1")
        try lab.exec(lab.client, "ping -q -c1000 -i0.01 -s1400 -W1 \(DaemonLab.serverTunnelAddress)", timeout: 60)
        Thread.sleep(forTimeInterval: 1.5)
        let used = try linkBytes(lab, "up1") - before
        // The cap (counted both ways), at most one tick late, plus outer headers; far from 2.9 MB.
        #expect(used >= 900_000 && used <= 1_500_000, "up1 carried \(used) bytes; client log:\n\(lab.log("client"))")
        #expect(try lab.uplinkProperty("up1", "State") == "s \"down\"")
        #expect(try lab.uplinkProperty("up2", "State") == "s \"active\"")

        // Out of the tunnel means the server's path is retired as well: nothing arrives on up1 any more.
        let quiet = try linkBytes(lab, "up1")
        try lab.exec(lab.client, "ping -q -c200 -i0.01 -s1400 -W1 \(DaemonLab.serverTunnelAddress)", timeout: 60)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(try linkBytes(lab, "up1") - quiet < 2_000, "up1 still carries traffic after its cap")

        lab.terminate(client)
        #expect(!client.isRunning, "did not exit within 10 s of SIGTERM")
        if !client.isRunning { #expect(client.terminationStatus == 0, "client log:\n\(lab.log("client"))") }
        let saved = try String(contentsOfFile: "\(lab.directory)/data-caps", encoding: .utf8)
        #expect(saved.hasPrefix("triglav-data-caps 1\nup1 "), "\(saved)")

        // A restart reads the period's usage back: up1 stays out.
        let (again, againNotify) = try lab.startDaemon(namespace: lab.client, arguments, logName: "client-again",
                                                       extraEnvironment: stateDirectory)
        try againNotify.waitFor("READY=1", timeout: 15)
        try againNotify.waitFor(prefix: "STATUS=Connected to lab (198.18.7.1:7443): 1/1 uplinks established", timeout: 10)
        #expect(try lab.uplinkProperty("up1", "State") == "s \"down\"")
        lab.terminate(again)
    }

    /// What the client's end of the veth sent plus received (the metered link's own view).
    private func linkBytes(_ lab: DaemonLab, _ interface: String) throws -> Int {
        let text = try lab.exec(lab.client, "cat /sys/class/net/\(interface)/statistics/tx_bytes /sys/class/net/\(interface)/statistics/rx_bytes")
        return text.split(separator: "\n").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }.reduce(0, +)
    }
}
