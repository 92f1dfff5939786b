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

        /// The daemon's default for metered uplinks (`[uplinks] metered_heartbeat_interval_ms`, 3.2 s), per uplink and on both
        /// sides: on a client with one unmetered and one metered uplink, the metered one carries a few heartbeats where the
        /// unmetered one carries ~20/s each way, and the server relaxes that path only.
        @Test("a metered uplink heartbeats every 3.2 s from both ends; the same client's unmetered uplink keeps 100 ms")
        func meteredUplinkHeartbeatsRarelyBothWays() throws {
            let lab = try DataPlaneLab()
            defer { lab.tearDown() }
            _ = try lab.startServer()
            let client = try lab.spawn(namespace: lab.client, clientCommand(lab, uplinks: ["up1", "up2:primary:metered"], extra: ""),
                                       logName: "client")
            try lab.waitForOutput("client", containing: "ready", timeout: 10)
            #expect(lab.waitForTunnel(timeout: 10))
            Thread.sleep(forTimeInterval: 1.5)  // past the uplinks' probing and the ping's activity window
            let perUplink = try captureByUplink(lab, seconds: 7)
            lab.terminate(client)
            let unmetered = perUplink[1] ?? Counts(), metered = perUplink[2] ?? Counts()
            print("idle, 7 s: unmetered up1 \(unmetered); metered up2 \(metered)")

            // Unmetered: the client's 100 ms probes plus its replies to the server's, and the other way round (~140 each way
            // in 7 s; tcpdump starts a little late).
            #expect(unmetered.clientProbes >= 80 && unmetered.serverProbes >= 80, "unmetered uplink no longer at 100 ms: \(unmetered)")
            // Metered: one probe per 3.2 s from each end plus the answer (about 4 each way in 7 s), never a 100 ms rhythm;
            // and not silent: its health is still watched from both ends.
            #expect(metered.clientProbes <= 10 && metered.serverProbes <= 10, "metered uplink heartbeats too often: \(metered)")
            #expect(metered.clientProbes >= 1 && metered.serverProbes >= 1, "no heartbeat at all on the metered uplink: \(metered)")
            #expect(metered.clientKeepalives == 0, "the 3.2 s heartbeat keeps NAT mappings; no keepalive needed: \(metered)")
            // Quiet for up to 3.2 s at a time is normal there: the client's dead-uplink check (3 s of silence by default) must
            // not take it for a dead session and handshake again (it allows three of the uplink's heartbeats).
            #expect(!lab.log("client").contains("handshaking again"), "a metered uplink's quiet was taken for a dead session")
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
            clientCommand(lab, uplinks: [uplink], extra: extra)
        }

        private func clientCommand(_ lab: DataPlaneLab, uplinks: [String], extra: String) -> String {
            "\(DataPlaneLab.driver) client --key \(lab.clientKeyFile) --server-key \(lab.serverPublicKey) "
                + "--server \(DataPlaneLab.serverAddress):7443 --tun tgc0 \(uplinks.map { "--uplink \($0)" }.joined(separator: " ")) \(extra) --verbose"
        }

        /// Counts tunnel datagrams on every uplink at once for `seconds` (on the server's side, all interfaces), by uplink
        /// (the client's address on uplink N is 10.201.N.2), direction and size.
        private func captureByUplink(_ lab: DataPlaneLab, seconds: Int) throws -> [Int: Counts] {
            let text = try lab.exec(lab.server, "sh -c 'timeout \(seconds) tcpdump -n -l -i any udp port 7443 2>/dev/null; true'",
                                    timeout: seconds + 10)
            var counts: [Int: Counts] = [:]
            for line in text.split(separator: "\n") {
                guard let number = (1...DataPlaneLab.uplinks.count).first(where: { line.contains(" 10.201.\($0).2.") }) else { continue }
                let fromServer = line.contains("\(DataPlaneLab.serverAddress).7443 >")
                if line.hasSuffix("length \(Self.probeSize)") {
                    if fromServer { counts[number, default: Counts()].serverProbes += 1 } else { counts[number, default: Counts()].clientProbes += 1 }
                } else if line.hasSuffix("length \(Self.keepaliveSize)"), !fromServer {
                    counts[number, default: Counts()].clientKeepalives += 1
                }
            }
            return counts
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
