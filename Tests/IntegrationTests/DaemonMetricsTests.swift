import Foundation
import Testing
import TriglavTestSupport

/// `[metrics] listen` end to end (root only): a client and a server triglavd in the lab's namespaces, each serving
/// /metrics on its namespace's loopback, scraped with curl the way Prometheus would.
@Suite("triglavd metrics endpoint", .serialized, .enabled(if: DaemonLab.isRoot, "needs root for network namespaces"))
struct DaemonMetricsTests {
    static let clientMetrics = "127.0.0.1:9743"
    static let serverMetrics = "127.0.0.1:9744"

    /// The lab's configurations with a `[metrics]` table appended.
    static func configure(_ lab: DaemonLab) throws {
        let client = try String(contentsOfFile: "\(lab.directory)/client.toml", encoding: .utf8)
        try lab.write("client-metrics.toml", client + "\n[metrics]\nlisten = \"\(clientMetrics)\"")
        let server = try String(contentsOfFile: "\(lab.directory)/server.toml", encoding: .utf8)
        try lab.write("server-metrics.toml", server + "\n[metrics]\nlisten = \"\(serverMetrics)\"")
    }

    /// curl in `namespace`; the body, or the status code with `statusOnly`.
    static func curl(_ lab: DaemonLab, _ namespace: String, _ arguments: String) throws -> String {
        try lab.exec(namespace, "curl -sS --max-time 3 \(arguments)", timeout: 10)
    }

    /// The value of the sample line starting with `series ` (exact series text), or nil when absent.
    static func value(_ exposition: String, _ series: String) -> Double? {
        exposition.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.dropFirst(series.count + 1)) }
    }

    /// Scrapes until `condition` holds (bounded), returning the last exposition.
    static func scrape(_ lab: DaemonLab, _ namespace: String, _ address: String, timeout: TimeInterval = 10,
                       until condition: (String) -> Bool) throws -> String {
        try pollUntil(timeout: timeout, every: 0.3, { try curl(lab, namespace, "http://\(address)/metrics") }, isDone: condition)
    }

    @Test("Client and server serve /metrics with uplink and client series; 404/405; a silent connection blocks no scrape")
    func scrapesFromBothRoles() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        try Self.configure(lab)
        let (server, serverNotify) = try lab.startDaemon(namespace: lab.server, "--config \(lab.directory)/server-metrics.toml",
                                                         logName: "server")
        try serverNotify.waitFor("READY=1", timeout: 15)
        let (client, clientNotify) = try lab.startClient(config: "client-metrics.toml")
        try clientNotify.waitFor("READY=1", timeout: 15)
        #expect(lab.waitForTunnel(timeout: 10), "client log:\n\(lab.log("client"))")
        try lab.exec(lab.client, "ping -c10 -i0.05 -s1000 -W2 \(DaemonLab.serverTunnelAddress)")

        // Headers as Prometheus sees them.
        let head = try Self.curl(lab, lab.client, "-D - -o /dev/null http://\(Self.clientMetrics)/metrics")
        #expect(head.hasPrefix("HTTP/1.1 200 OK"), "\(head)")
        #expect(head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"), "\(head)")

        // Both uplinks active with a measured RTT, and traffic counted (the snapshot is at most a tick old).
        let text = try Self.scrape(lab, lab.client, Self.clientMetrics) { text in
            ["up1", "up2"].allSatisfy { Self.value(text, "triglav_uplink_rtt_seconds{uplink=\"\($0)\"}") ?? 0 > 0 }
                && Self.value(text, "triglav_tunnel_received_bytes_total") ?? 0 >= 10 * 1028
        }
        #expect(Self.value(text, "triglav_build_info{version=\"0.1.0\",role=\"client\"}") == 1, "\(text)")
        #expect(Self.value(text, "triglav_tunnel_state{state=\"connected\"}") == 1, "\(text)")
        let startTime = Self.value(text, "process_start_time_seconds") ?? 0
        #expect(abs(startTime - Date().timeIntervalSince1970) < 120, "process_start_time_seconds \(startTime)")
        for uplink in ["up1", "up2"] {
            #expect(Self.value(text, "triglav_uplink_state{uplink=\"\(uplink)\",state=\"active\"}") == 1, "\(text)")
            let rtt = Self.value(text, "triglav_uplink_rtt_seconds{uplink=\"\(uplink)\"}") ?? -1
            #expect(rtt > 0 && rtt < 0.5, "\(uplink) rtt \(rtt)")
            let loss = Self.value(text, "triglav_uplink_loss_ratio{uplink=\"\(uplink)\"}") ?? -1
            #expect(loss >= 0 && loss <= 1)
            #expect(Self.value(text, "triglav_uplink_capacity_bytes_per_second{uplink=\"\(uplink)\"}") ?? 0 > 0)
            #expect(Self.value(text, "triglav_uplink_handshakes_total{uplink=\"\(uplink)\"}") ?? 0 >= 1)
            #expect(text.contains("triglav_uplink_info{uplink=\"\(uplink)\",tier=\"primary\",metered=\"false\""), "\(text)")
        }
        // The scheduler may put all ten pings on one uplink: the sums count them all.
        func sum(_ family: String) -> Double {
            ["up1", "up2"].map { Self.value(text, "\(family){uplink=\"\($0)\"}") ?? 0 }.reduce(0, +)
        }
        #expect(sum("triglav_uplink_received_bytes_total") >= 10 * 1028)
        #expect(sum("triglav_uplink_transmitted_bytes_total") >= 10 * 1028)
        #expect(sum("triglav_uplink_transmitted_packets_total") >= 10)
        #expect(sum("triglav_uplink_received_packets_total") >= 10)
        #expect(Self.value(text, "triglav_reorder_delivered_packets_total{order=\"in_order\"}") ?? 0 >= 10)
        // The ten echo requests were read from the TUN device; the pings and the drops families are there.
        #expect(Self.value(text, "triglav_tunnel_read_packets_total") ?? 0 >= 10, "\(text)")
        #expect(Self.value(text, "triglav_tunnel_queue_dropped_packets_total") != nil, "\(text)")
        #expect(Self.value(text, "triglav_tunnel_requested_resend_sequences_total{outcome=\"accepted\"}") != nil, "\(text)")
        #expect(Self.value(text, "triglav_tunnel_tun_super_packets_total{direction=\"read\"}") != nil, "\(text)")

        // Other paths and methods.
        #expect(try Self.curl(lab, lab.client, "-o /dev/null -w '%{http_code}' http://\(Self.clientMetrics)/") == "404")
        #expect(try Self.curl(lab, lab.client, "-o /dev/null -w '%{http_code}' -X POST http://\(Self.clientMetrics)/metrics") == "405")

        // A connection that sends half a request line and then nothing doesn't hold up the next scrape.
        let holder = try lab.spawn(namespace: lab.client, """
            /bin/bash -c 'exec 3<>/dev/tcp/127.0.0.1/9743; printf "GET /met" >&3; sleep 8'
            """, logName: "holder")
        Thread.sleep(forTimeInterval: 0.3)
        #expect(holder.isRunning)
        let started = Date()
        let second = try Self.curl(lab, lab.client, "-o /dev/null -w '%{http_code}' http://\(Self.clientMetrics)/metrics")
        #expect(second == "200")
        #expect(Date().timeIntervalSince(started) < 1.5, "a scrape waited behind the silent connection")
        #expect(holder.isRunning, "the silent connection should still be open during the second scrape")

        // The server: the client by its configured name, with its bytes.
        let serverText = try Self.scrape(lab, lab.server, Self.serverMetrics) { text in
            Self.value(text, "triglav_client_received_bytes_total{client=\"laptop\"}") ?? 0 >= 10 * 1028
        }
        #expect(Self.value(serverText, "triglav_build_info{version=\"0.1.0\",role=\"server\"}") == 1, "\(serverText)")
        #expect(Self.value(serverText, "triglav_server_clients") == 1, "\(serverText)")
        #expect(Self.value(serverText, "triglav_client_state{client=\"laptop\",state=\"connected\"}") == 1, "\(serverText)")
        #expect(Self.value(serverText, "triglav_client_paths{client=\"laptop\"}") == 2, "\(serverText)")
        #expect(Self.value(serverText, "triglav_client_transmitted_bytes_total{client=\"laptop\"}") ?? 0 >= 10 * 1028)
        #expect(Self.value(serverText, "triglav_server_rejected_handshakes_total") == 0)
        // One answered handshake per uplink at least (the tunnel's creation and the second uplink's join).
        #expect(Self.value(serverText, "triglav_server_handshakes_total") ?? 0 >= 2, "\(serverText)")
        #expect(Self.value(serverText, "triglav_server_requested_resend_sequences_total{outcome=\"declined\"}") != nil)
        #expect(!serverText.contains("triglav_uplink_"))

        lab.terminate(client)
        lab.terminate(server)
        #expect(!client.isRunning && client.terminationStatus == 0, "client log:\n\(lab.log("client"))")
        // The port is free again once the daemon is gone.
        let afterExit = try runShell("ip netns exec \(lab.client) curl -s -o /dev/null -w '%{http_code}' http://\(Self.clientMetrics)/metrics",
                                     timeout: 10)
        #expect(afterExit.output == "000", "\(afterExit)")
    }

    @Test("A metrics address that is taken or not local fails the start with a message naming it, before the role starts")
    func bindFailuresFailTheStart() throws {
        let lab = try DaemonLab()
        defer { lab.tearDown() }
        try Self.configure(lab)
        let (first, notify) = try lab.startDaemon(namespace: lab.server, "--config \(lab.directory)/server-metrics.toml",
                                                  logName: "server")
        try notify.waitFor("READY=1", timeout: 15)
        // A second daemon on the same metrics port (a client, so its own listeners don't clash first).
        let client = try String(contentsOfFile: "\(lab.directory)/client.toml", encoding: .utf8)
        try lab.write("client-taken.toml", client + "\n[metrics]\nlisten = \"\(Self.serverMetrics)\"")
        try lab.write("client-foreign.toml", client + "\n[metrics]\nlisten = \"192.0.2.1:9743\"")
        for (config, expected) in [("client-taken.toml", "\(Self.serverMetrics) is already in use"),
                                   ("client-foreign.toml", "192.0.2.1 is not an address of this machine")] {
            let result = try runShell("ip netns exec \(lab.server) \(DaemonLab.triglavd) --no-bus --config \(lab.directory)/\(config) "
                                      + "--profile-dir \(lab.directory)/profiles", timeout: 20)
            #expect(result.status == 1, "\(config): \(result)")
            #expect(result.output.contains(expected) && result.output.contains("[metrics] listen"), "\(config): \(result.output)")
        }
        // The first daemon still serves.
        #expect(try Self.curl(lab, lab.server, "-o /dev/null -w '%{http_code}' http://\(Self.serverMetrics)/metrics") == "200")
        lab.terminate(first)
    }
}

/// `triglavd --check-config` on `[metrics] listen` (no root needed: it binds the address with port 0 only).
@Suite struct MetricsCheckConfigTests {
    static func check(_ listen: String) throws -> Tool.Result {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let path = try directory.write("triglavd.toml", "[metrics]\nlisten = \"\(listen)\"\n")
        return try Tool.triglavd.run(["--check-config", path])
    }

    @Test func aLoopbackAddressIsAcceptedWithoutNotes() throws {
        let result = try Self.check("127.0.0.1:9743")
        #expect(result.status == 0, "\(result)")
        #expect(!result.stdout.contains("metrics.listen"), "\(result)")
    }

    @Test func anAddressOfAnotherMachineIsRefused() throws {
        let result = try Self.check("192.0.2.1:9743")
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("metrics.listen: 192.0.2.1 is not an address of this machine"), "\(result)")
    }

    @Test func aWildcardAddressGetsANoteAboutExposure() throws {
        let result = try Self.check("0.0.0.0:9743")
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.contains("reachable from other hosts"), "\(result)")
    }

    @Test func aPrivilegedPortGetsANote() throws {
        let result = try Self.check("127.0.0.1:80")
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.contains("below 1024"), "\(result)")
    }

    @Test func aMissingPortIsAConfigError() throws {
        let result = try Self.check("127.0.0.1")
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("metrics.listen"), "\(result)")
    }
}
