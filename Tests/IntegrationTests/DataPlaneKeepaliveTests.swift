import Foundation
import Testing
import TriglavCore

/// What an idle uplink sends (docs/DATAPLANE.md, "Idle uplinks: heartbeats and NAT keepalives"): with the
/// default 100 ms heartbeat the probes and their replies keep NAT mappings open and the keepalive timer
/// never fires; with heartbeats relaxed beyond the keepalive interval the keepalive fires on time. Root only.
/// Nested in the serialized `DataPlaneTunnelTests`, so it doesn't run beside the other namespace tests.
extension DataPlaneTunnelTests {
    @Suite("idle-uplink traffic")
    struct DataPlaneKeepaliveTests {
        /// UDP payload sizes on the wire: a keepalive is a transport frame with an empty body; a probe or probe
        /// reply carries 16 bytes more (probe id and timestamp).
        static let keepaliveSize = WireOverhead.transportHeader + WireOverhead.innerHeader + WireOverhead.aeadTag
        static let probeSize = keepaliveSize + 16

        @Test("default heartbeats serve as NAT keepalive; relaxed heartbeats (metered uplink) leave it to the keepalive timer and the server follows")
        func idleUplinkTraffic() throws {
            let lab = try DataPlaneLab()
            defer { lab.tearDown() }
            let server = try lab.startServer()

            let standard = try lab.spawn(namespace: lab.client, clientCommand(lab, extra: ""), logName: "client")
            try lab.waitForOutput("client", containing: "ready", timeout: 10)
            #expect(lab.waitForTunnel(timeout: 10))
            let idle = try capture(lab, seconds: 4)
            lab.terminate(standard)

            // A metered uplink whose client relaxed its heartbeat: the server must stop probing it every 100 ms too.
            let relaxed = try lab.spawn(namespace: lab.client,
                                        clientCommand(lab, uplink: "up1:primary:metered", extra: "--heartbeat-ms 30000 --keepalive-s 1"),
                                        logName: "client-relaxed")
            try lab.waitForOutput("client-relaxed", containing: "ready", timeout: 10)
            #expect(lab.waitForTunnel(timeout: 10))
            Thread.sleep(forTimeInterval: 1)  // past the probing of the uplink's start and the ping's activity window
            // 5 s: tcpdump takes a moment to start, and 1 s keepalives must show at least twice.
            let quiet = try capture(lab, seconds: 5)
            lab.terminate(relaxed)

            // The server's own heartbeat setting: 1 s, with a default (100 ms) client.
            lab.terminate(server)
            _ = try lab.startServer(logName: "server-1s", extraArguments: "--heartbeat-ms 1000")
            let slowServer = try lab.spawn(namespace: lab.client, clientCommand(lab, extra: ""), logName: "client-3")
            try lab.waitForOutput("client-3", containing: "ready", timeout: 10)
            #expect(lab.waitForTunnel(timeout: 10))
            let serverSlow = try capture(lab, seconds: 4)
            lab.terminate(slowServer)
            print("idle up1, 4 s: default \(idle); 5 s, client heartbeat 30 s, keepalive 1 s, metered: \(quiet); 4 s, server heartbeat 1 s: \(serverSlow)")

            // Default: probes both ways (client's own and replies to the server's, ~20/s each way), no keepalive.
            #expect(idle.clientKeepalives == 0, "keepalives despite heartbeats: \(idle)")
            #expect(idle.clientProbes >= 40 && idle.serverProbes >= 40, "too few heartbeats: \(idle)")
            // Relaxed: the client no longer probes, and its keepalive timer fires about once a second. The server
            // follows the heartbeat the client announces (25.6 s, the class below 30 s): in 5 idle seconds it sends only a
            // few probe-sized datagrams (0-10 measured), instead of ~40 probes of its own (before it followed the
            // client: ~40 each way).
            #expect(quiet.clientKeepalives >= 2, "no keepalives with relaxed heartbeats: \(quiet)")
            #expect(quiet.serverProbes <= 16, "the server still heartbeats a relaxed client's uplink: \(quiet)")
            #expect(quiet.clientProbes <= 16, "the client still probes or answers probes: \(quiet)")
            // A server configured for 1 s heartbeats sends about 4 probes in 4 s (plus replies to the client's ~40).
            #expect(serverSlow.serverProbes >= 36 && serverSlow.serverProbes <= 52, "server heartbeat not 1 s: \(serverSlow)")
            #expect(serverSlow.clientProbes <= 52 && serverSlow.clientProbes >= 36, "\(serverSlow)")
        }

        struct Counts: CustomStringConvertible {
            var clientProbes = 0
            var clientKeepalives = 0
            var serverProbes = 0
            var description: String {
                "client->server \(clientProbes) probe-sized + \(clientKeepalives) keepalives, server->client \(serverProbes) probe-sized"
            }
        }

        private func clientCommand(_ lab: DataPlaneLab, uplink: String = "up1", extra: String) -> String {
            "\(DataPlaneLab.driver) client --key \(lab.clientKeyFile) --server-key \(lab.serverPublicKey) "
                + "--server \(DataPlaneLab.serverAddress):7443 --tun tgc0 --uplink \(uplink) \(extra) --verbose"
        }

        /// Counts tunnel datagrams on the server's side of up1 for `seconds`, by direction and size.
        private func capture(_ lab: DataPlaneLab, seconds: Int) throws -> Counts {
            // timeout(1) ends tcpdump with status 124: a measurement window, not a failure.
            let text = try lab.exec(lab.server, "sh -c 'timeout \(seconds) tcpdump -n -l -i dn1 udp port 7443 2>/dev/null; true'",
                                    timeout: seconds + 10)
            var counts = Counts()
            for line in text.split(separator: "\n") {
                let fromServer = line.contains("\(DataPlaneLab.serverAddress).7443 >")
                if line.hasSuffix("length \(Self.probeSize)") {
                    if fromServer { counts.serverProbes += 1 } else { counts.clientProbes += 1 }
                } else if line.hasSuffix("length \(Self.keepaliveSize)"), !fromServer {
                    counts.clientKeepalives += 1
                }
            }
            return counts
        }
    }
}
