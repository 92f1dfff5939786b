#if canImport(Glibc)
import Glibc
#endif
import Logging
import Testing
import TriglavConfig
import TriglavControlAPI
import TriglavCore
import TriglavDataPlane
import TriglavMetrics
import TriglavMultipath
@testable import TriglavDaemon

@Suite("Daemon metrics: mapping the daemon's state")
struct MetricsMappingTests {
    static func clientSnapshot() -> DaemonMetricsSnapshot {
        var snapshot = DaemonMetricsSnapshot(role: .client, version: "9.9.9")
        snapshot.startTime = 1_700_000_000.25
        snapshot.manager = ClientManagerStatus(state: .degraded, profile: "home", server: "203.0.113.5:7443", tunnelInterface: "tg0",
                                               tunnelAddresses: ["10.77.0.2/24"], scheduler: .aggregate,
                                               transmittedBytes: 5000, receivedBytes: 7000, uplinks: [1, 2])
        snapshot.uplinks = [
            UplinkSnapshot(number: 1, interface: "wlan0", kind: .wifi, origin: .auto, state: .established, tier: .primary,
                           isMetered: false, isEnabled: true, rttMicroseconds: 23_500, jitterMicroseconds: 1_250, lossRatio: 0.02,
                           capacityBitsPerSecond: 80_000_000, transmittedBytes: 3000, receivedBytes: 4000,
                           localAddress: "192.0.2.7", transport: "udp", receiveRateBitsPerSecond: 16_000,
                           publicEndpoint: "203.0.113.7:40312", isBehindNAT: true, pathMTU: 1396, hasPathMTUBlackhole: true),
            UplinkSnapshot(number: 2, interface: "wwan0", kind: .wwan, origin: .manual, state: .standby, tier: .backup,
                           isMetered: true, isEnabled: true, rttMicroseconds: 0, jitterMicroseconds: 0, lossRatio: 0,
                           capacityBitsPerSecond: 0, transmittedBytes: 0, receivedBytes: 0, localAddress: "", transport: "udp",
                           hasRouteToServer: false),
        ]
        var tunnel = ClientTunnelSnapshot(uplinks: [ClientTunnelSnapshot.Uplink(interface: "wlan0", state: .established)])
        tunnel.uplinks[0].transmittedPackets = 31
        tunnel.uplinks[0].receivedPackets = 41
        tunnel.uplinks[0].handshakes = 2
        tunnel.uplinks[0].segmentedDatagrams = 29
        tunnel.uplinks[0].minimumRTT = .microseconds(20_000)
        tunnel.counters.droppedNoUplink = 3
        tunnel.counters.resentPackets = 4
        tunnel.counters.readPackets = 1234
        tunnel.counters.queueDrops = 8
        tunnel.counters.congestionMarks = 5
        tunnel.counters.ecnDecapsulation = ECNDecapsulationCounters(congestionExperienced: 21, dropped: 2)
        tunnel.counters.requestedResends = RequestedResendCounters(accepted: 11, declined: 12)
        tunnel.counters.reorder.deliveredInOrder = 100
        tunnel.counters.reorder.deliveredLate = 5
        tunnel.counters.reorder.skippedSequences = 6
        tunnel.counters.reorder.resendRequests = 7
        tunnel.counters.tunOffload.superPackets = 50
        tunnel.counters.tunOffload.segments = 1900
        tunnel.counters.tunOffload.malformed = 1
        tunnel.counters.tunOffload.writtenSuperPackets = 60
        tunnel.counters.tunOffload.joinedSegments = 1300
        snapshot.tunnel = tunnel
        snapshot.dataCaps = ["wwan0": .init(cap: 1_000_000_000, used: 12_345)]
        return snapshot
    }

    static func render(_ snapshot: DaemonMetricsSnapshot) throws -> [String] {
        try PrometheusText.render(DaemonMetrics.families(snapshot)).split(separator: "\n").map(String.init)
    }

    @Test func theClientRoleShowsTunnelUplinkAndReorderFigures() throws {
        let lines = try Self.render(Self.clientSnapshot())
        for expected in [
            "triglav_build_info{version=\"9.9.9\",role=\"client\"} 1",
            "process_start_time_seconds 1700000000.25",
            "triglav_tunnel_state{state=\"degraded\"} 1",
            "triglav_tunnel_state{state=\"connected\"} 0",
            "triglav_tunnel_transmitted_bytes_total 5000",
            "triglav_tunnel_received_bytes_total 7000",
            "triglav_tunnel_dropped_no_uplink_packets_total 3",
            "triglav_tunnel_resent_packets_total 4",
            "triglav_tunnel_read_packets_total 1234",
            "triglav_tunnel_queue_dropped_packets_total 8",
            "triglav_tunnel_ecn_marked_packets_total 5",
            "triglav_tunnel_ecn_decapsulated_packets_total{result=\"congestion_experienced\"} 21",
            "triglav_tunnel_ecn_decapsulated_packets_total{result=\"dropped\"} 2",
            "triglav_tunnel_requested_resend_sequences_total{outcome=\"accepted\"} 11",
            "triglav_tunnel_requested_resend_sequences_total{outcome=\"declined\"} 12",
            "triglav_reorder_delivered_packets_total{order=\"in_order\"} 100",
            "triglav_reorder_delivered_packets_total{order=\"late\"} 5",
            "triglav_reorder_skipped_sequences_total 6",
            "triglav_reorder_resend_requests_total 7",
            "triglav_tunnel_tun_super_packets_total{direction=\"read\"} 50",
            "triglav_tunnel_tun_super_packets_total{direction=\"written\"} 60",
            "triglav_tunnel_tun_super_packet_segments_total{direction=\"read\"} 1900",
            "triglav_tunnel_tun_super_packet_segments_total{direction=\"written\"} 1300",
            "triglav_tunnel_tun_malformed_reads_total 1",
            "triglav_uplink_gso_datagrams_total{uplink=\"wlan0\"} 29",
            "triglav_uplink_info{uplink=\"wlan0\",tier=\"primary\",metered=\"false\",kind=\"wifi\",origin=\"auto\",transport=\"udp\",enabled=\"true\"} 1",
            "triglav_uplink_info{uplink=\"wwan0\",tier=\"backup\",metered=\"true\",kind=\"wwan\",origin=\"manual\",transport=\"udp\",enabled=\"true\"} 1",
            "triglav_uplink_state{uplink=\"wlan0\",state=\"active\"} 1",
            "triglav_uplink_state{uplink=\"wlan0\",state=\"standby\"} 0",
            "triglav_uplink_state{uplink=\"wwan0\",state=\"standby\"} 1",
            "triglav_uplink_route_to_server{uplink=\"wwan0\"} 0",
            "triglav_uplink_behind_nat{uplink=\"wlan0\"} 1",
            "triglav_uplink_behind_nat{uplink=\"wwan0\"} 0",
            "triglav_uplink_path_mtu_bytes{uplink=\"wlan0\"} 1396",
            "triglav_uplink_path_mtu_blackhole{uplink=\"wlan0\"} 1",
            "triglav_uplink_path_mtu_bytes{uplink=\"wwan0\"} 0",
            "triglav_uplink_path_mtu_blackhole{uplink=\"wwan0\"} 0",
            "triglav_uplink_rtt_seconds{uplink=\"wlan0\"} 0.0235",
            "triglav_uplink_min_rtt_seconds{uplink=\"wlan0\"} 0.02",
            "triglav_uplink_jitter_seconds{uplink=\"wlan0\"} 0.00125",
            "triglav_uplink_loss_ratio{uplink=\"wlan0\"} 0.02",
            "triglav_uplink_capacity_bytes_per_second{uplink=\"wlan0\"} 10000000",
            "triglav_uplink_receive_rate_bytes_per_second{uplink=\"wlan0\"} 2000",
            "triglav_uplink_transmitted_bytes_total{uplink=\"wlan0\"} 3000",
            "triglav_uplink_received_bytes_total{uplink=\"wlan0\"} 4000",
            "triglav_uplink_transmitted_packets_total{uplink=\"wlan0\"} 31",
            "triglav_uplink_received_packets_total{uplink=\"wlan0\"} 41",
            "triglav_uplink_handshakes_total{uplink=\"wlan0\"} 2",
            "triglav_uplink_transmitted_packets_total{uplink=\"wwan0\"} 0",
            "triglav_uplink_data_cap_bytes{uplink=\"wwan0\"} 1000000000",
            "triglav_uplink_data_cap_used_bytes{uplink=\"wwan0\"} 12345",
        ] {
            #expect(lines.contains(expected), "missing \(expected)")
        }
        // Only capped uplinks have cap series; no server families in the client role.
        #expect(!lines.contains { $0.hasPrefix("triglav_uplink_data_cap_bytes{uplink=\"wlan0\"") })
        #expect(!lines.contains { $0.hasPrefix("triglav_server_") || $0.hasPrefix("triglav_client_") })
        // Exactly one state is 1 per uplink and for the tunnel.
        #expect(lines.filter { $0.hasPrefix("triglav_uplink_state{uplink=\"wlan0\"") && $0.hasSuffix(" 1") }.count == 1)
        #expect(lines.filter { $0.hasPrefix("triglav_tunnel_state{") }.count == ConnectionState.allCases.count)
    }

    /// Manager1/Server1.Counters name each counter after its Prometheus family (docs/DBUS.md, "Counters"): the family
    /// without its role prefix and `_total`, plus the label's value. Every field has its own value, so a counter read
    /// from the wrong field, or named after the wrong family, fails.
    @Test func busCounterNamesAndValuesFollowTheMetricFamilies() throws {
        var client = Self.clientSnapshot()
        var tunnel = ClientTunnelCounters()
        (tunnel.readPackets, tunnel.droppedNoUplink, tunnel.resentPackets, tunnel.queueDrops, tunnel.congestionMarks) = (101, 102, 103, 104, 105)
        tunnel.ecnDecapsulation = ECNDecapsulationCounters(congestionExperienced: 106, dropped: 107)
        tunnel.requestedResends = RequestedResendCounters(accepted: 108, declined: 109)
        (tunnel.reorder.deliveredInOrder, tunnel.reorder.deliveredLate, tunnel.reorder.bypassed, tunnel.reorder.duplicates) = (110, 111, 112, 113)
        (tunnel.reorder.stale, tunnel.reorder.skippedSequences, tunnel.reorder.jumps, tunnel.reorder.overflows) = (114, 115, 116, 117)
        tunnel.reorder.resendRequests = 118
        tunnel.mssClamped = 124
        (tunnel.tunOffload.superPackets, tunnel.tunOffload.segments, tunnel.tunOffload.writtenSuperPackets) = (119, 120, 121)
        (tunnel.tunOffload.joinedSegments, tunnel.tunOffload.malformed) = (122, 123)
        client.tunnel?.counters = tunnel
        var server = DaemonMetricsSnapshot(role: .server, version: "1")
        server.server = ServerManagerStatus(isRunning: true, listen: [], tunnelInterface: "tg0", tunnelAddresses: [],
                                            authorizedClients: 1, clients: [], rejectedHandshakes: 0)
        var counters = ServerTunnelCounters()
        (counters.droppedUnknownDestination, counters.refusedUplinks, counters.answeredHandshakes) = (201, 202, 203)
        (counters.resentPackets, counters.queueDrops, counters.congestionMarks) = (204, 205, 206)
        counters.ecnDecapsulation = ECNDecapsulationCounters(congestionExperienced: 207, dropped: 208)
        counters.requestedResends = RequestedResendCounters(accepted: 209, declined: 210)
        (counters.tunOffload.superPackets, counters.tunOffload.segments, counters.tunOffload.writtenSuperPackets) = (211, 212, 213)
        (counters.tunOffload.joinedSegments, counters.tunOffload.malformed, counters.segmentedDatagrams) = (214, 215, 216)
        counters.coalescedDatagrams = 217
        server.serverCounters = counters

        for (snapshot, named, prefix) in [(client, tunnel.named, "triglav_tunnel_"), (server, counters.named, "triglav_server_")] {
            // "family{label=\"value\"} count" → (bus name, count), for the role's families and the reorder buffer's.
            var fromMetrics: [String: UInt64] = [:]
            for line in try Self.render(snapshot) where !line.hasPrefix("#") {
                let parts = line.split(separator: " ")
                guard parts.count == 2, let count = UInt64(parts[1]) else { continue }
                let series = String(parts[0])
                let family = series.split(separator: "{").first.map(String.init) ?? series
                guard family.hasSuffix("_total"), family.hasPrefix(prefix) || family.hasPrefix("triglav_reorder_") else { continue }
                var name = String(family.dropLast("_total".count))
                name = name.hasPrefix(prefix) ? String(name.dropFirst(prefix.count)) : String(name.dropFirst("triglav_".count))
                if let label = series.split(separator: "\"").dropFirst().first, !series.contains(",") { name += "_" + label }
                fromMetrics[name] = count
            }
            #expect(Set(named.map(\.name)).count == named.count, "names repeat: \(named.map(\.name))")
            #expect(Set(named.map(\.value)).count == named.count, "a field is shown twice: \(named)")
            for counter in named {
                #expect(fromMetrics[counter.name] == counter.value, "\(counter.name) = \(counter.value), metrics: \(fromMetrics)")
            }
        }
        #expect(tunnel.named.count == 24 && counters.named.count == 17)
    }

    @Test func everyFamilyHasHelpAndTypeAndCountersEndInTotal() throws {
        var server = DaemonMetricsSnapshot(role: .server, version: "1")
        server.server = ServerManagerStatus(isRunning: true, listen: [], tunnelInterface: "tg0", tunnelAddresses: [],
                                            authorizedClients: 1, clients: [], rejectedHandshakes: 0)
        for snapshot in [Self.clientSnapshot(), server] {
            let lines = try Self.render(snapshot)
            let types = lines.filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ") }
            #expect(types.count == lines.filter { $0.hasPrefix("# HELP ") }.count)
            for type in types where type[3] == "counter" { #expect(type[2].hasSuffix("_total")) }
        }
    }

    @Test func withoutUplinksTheUplinkFamiliesAreDeclaredButEmpty() throws {
        var snapshot = DaemonMetricsSnapshot(role: .client, version: "1")
        snapshot.manager = ClientManagerStatus(state: .disconnected, profile: "", server: "", tunnelInterface: "", tunnelAddresses: [],
                                               scheduler: .aggregate, transmittedBytes: 0, receivedBytes: 0, uplinks: [])
        let lines = try Self.render(snapshot)
        #expect(lines.contains("# TYPE triglav_uplink_rtt_seconds gauge"))
        #expect(!lines.contains { $0.hasPrefix("triglav_uplink_") })
        #expect(lines.contains("triglav_tunnel_state{state=\"disconnected\"} 1"))
    }

    @Test func theServerRoleShowsClientsByConfiguredName() throws {
        var snapshot = DaemonMetricsSnapshot(role: .server, version: "1")
        snapshot.server = ServerManagerStatus(isRunning: true, listen: ["0.0.0.0:7443"], tunnelInterface: "tg0",
                                              tunnelAddresses: ["10.77.0.1/24"], authorizedClients: 3, clients: [1, 2],
                                              rejectedHandshakes: 9, transmittedBytes: 111, receivedBytes: 222)
        snapshot.serverCounters.refusedUplinks = 1
        snapshot.serverCounters.droppedUnknownDestination = 2
        snapshot.serverCounters.answeredHandshakes = 5
        snapshot.serverCounters.queueDrops = 6
        snapshot.serverCounters.congestionMarks = 4
        snapshot.serverCounters.ecnDecapsulation = ECNDecapsulationCounters(congestionExperienced: 31, dropped: 3)
        snapshot.serverCounters.requestedResends = RequestedResendCounters(accepted: 13, declined: 14)
        snapshot.serverCounters.tunOffload.superPackets = 70
        snapshot.serverCounters.tunOffload.joinedSegments = 800
        snapshot.serverCounters.segmentedDatagrams = 900
        snapshot.clients = [
            ServerClientStatus(number: 1, name: "laptop", publicKey: "AAAAAAAAxyz=", tunnelAddresses: [], endpoints: [],
                               state: .connected, livePaths: 2,
                               paths: [.fake(1, .ready, rttMilliseconds: 25, lossPercent: 1.5, rxBytes: 700, txBytes: 900), .fake(3, .down)],
                               receivedPackets: 10, transmittedPackets: 20, receivedBytes: 1000,
                               transmittedBytes: 2000, rttMicroseconds: 40_000, connectedSinceMicroseconds: 1_700_000_000_500_000),
            ServerClientStatus(number: 2, name: "say \"hi\"\\", publicKey: "BBBB", tunnelAddresses: [], endpoints: [],
                               receivedPackets: 0, transmittedPackets: 0, connectedSinceMicroseconds: 0),
        ]
        let lines = try Self.render(snapshot)
        for expected in [
            "triglav_build_info{version=\"1\",role=\"server\"} 1",
            "triglav_server_running 1",
            "triglav_server_clients 2",
            "triglav_server_authorized_clients 3",
            "triglav_server_transmitted_bytes_total 111",
            "triglav_server_rejected_handshakes_total 9",
            "triglav_server_refused_uplinks_total 1",
            "triglav_server_dropped_unknown_destination_packets_total 2",
            "triglav_server_handshakes_total 5",
            "triglav_server_queue_dropped_packets_total 6",
            "triglav_server_ecn_marked_packets_total 4",
            "triglav_server_ecn_decapsulated_packets_total{result=\"congestion_experienced\"} 31",
            "triglav_server_ecn_decapsulated_packets_total{result=\"dropped\"} 3",
            "triglav_server_requested_resend_sequences_total{outcome=\"accepted\"} 13",
            "triglav_server_requested_resend_sequences_total{outcome=\"declined\"} 14",
            "triglav_server_tun_super_packets_total{direction=\"read\"} 70",
            "triglav_server_tun_super_packet_segments_total{direction=\"written\"} 800",
            "triglav_server_tun_malformed_reads_total 0",
            "triglav_server_gso_datagrams_total 900",
            "triglav_client_state{client=\"laptop\",state=\"connected\"} 1",
            "triglav_client_state{client=\"laptop\",state=\"degraded\"} 0",
            "triglav_client_paths{client=\"laptop\"} 2",
            "triglav_client_rtt_seconds{client=\"laptop\"} 0.04",
            "triglav_client_transmitted_bytes_total{client=\"laptop\"} 2000",
            "triglav_client_received_packets_total{client=\"laptop\"} 10",
            "triglav_client_connected_since_timestamp_seconds{client=\"laptop\"} 1700000000.5",
            "triglav_client_state{client=\"say \\\"hi\\\"\\\\\",state=\"handshaking\"} 1",
            "triglav_client_path_state{client=\"laptop\",path=\"1\",state=\"ready\"} 1",
            "triglav_client_path_state{client=\"laptop\",path=\"1\",state=\"down\"} 0",
            "triglav_client_path_state{client=\"laptop\",path=\"3\",state=\"down\"} 1",
            "triglav_client_path_rtt_seconds{client=\"laptop\",path=\"1\"} 0.025",
            "triglav_client_path_loss_ratio{client=\"laptop\",path=\"1\"} 0.015",
            "triglav_client_path_transmitted_bytes_total{client=\"laptop\",path=\"1\"} 900",
            "triglav_client_path_received_bytes_total{client=\"laptop\",path=\"3\"} 0",
        ] {
            #expect(lines.contains(expected), "missing \(expected)")
        }
        #expect(!lines.contains { $0.hasPrefix("triglav_uplink_") || $0.hasPrefix("triglav_tunnel_") })
    }

    @Test func clientLabelsStayDistinctWhenNamesRepeat() {
        func client(_ name: String, _ key: String) -> ServerClientStatus {
            ServerClientStatus(number: 0, name: name, publicKey: key, tunnelAddresses: [], endpoints: [], receivedPackets: 0,
                               transmittedPackets: 0, connectedSinceMicroseconds: 0)
        }
        let labels = DaemonMetrics.clientLabels([client("a", "KEY1aaaaXX"), client("a", "KEY2bbbbYY"), client("b", "K3"),
                                                 client("", "EMPTYKEYzz")])
        #expect(labels == ["a/KEY1aaaa", "a/KEY2bbbb", "b", "EMPTYKEY"])
    }

    @Test func everyManagerUplinkStateLightsExactlyOneBusState() throws {
        for activity in UplinkActivity.allCases {
            var snapshot = Self.clientSnapshot()
            snapshot.uplinks[0].state = activity
            let lines = try Self.render(snapshot).filter { $0.hasPrefix("triglav_uplink_state{uplink=\"wlan0\"") }
            #expect(lines.count == TriglavControlAPI.UplinkState.allCases.count)
            let lit = lines.filter { $0.hasSuffix(" 1") }
            #expect(lit == ["triglav_uplink_state{uplink=\"wlan0\",state=\"\(Daemon.uplinkStatus(snapshot.uplinks[0]).state.rawValue)\"} 1"])
        }
    }
}

/// A blocking loopback HTTP client for the endpoint tests, with a receive timeout (generous: a loaded machine may
/// stall the server thread for seconds, and the server's own deadlines are what the tests measure).
struct LoopbackConnection {
    let fd: Int32

    init(_ endpoint: IPEndpoint) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = endpoint.port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let code = errno
            Glibc.close(fd)
            throw ConnectFailed(endpoint: endpoint, reason: String(cString: strerror(code)))
        }
    }

    struct ConnectFailed: Error {
        let endpoint: IPEndpoint
        let reason: String
    }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Everything until the server closes (or the 3 s receive timeout).
    func readAll() -> String {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            received += buffer[0..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }

    func close() { Glibc.close(fd) }

    static func exchange(_ endpoint: IPEndpoint, _ request: String) throws -> String {
        let connection = try LoopbackConnection(endpoint)
        defer { connection.close() }
        connection.send(request)
        return connection.readAll()
    }
}

@Suite("Daemon metrics: the HTTP endpoint on loopback", .serialized)
struct MetricsServerTests {
    static let loopback = IPEndpoint(address: IPAddress("127.0.0.1")!, port: 0)

    static func server(limits: MetricsServer.Limits = MetricsServer.Limits(),
                       exposition: @escaping @Sendable () -> String? = { "triglav_up 1\n" }) throws -> MetricsServer {
        let server = try MetricsServer(endpoint: loopback, limits: limits, logger: Logger(label: "test")) { exposition() }
        server.start()
        return server
    }

    @Test func getServesTheExpositionAndOtherRequestsGetTheirStatus() throws {
        let server = try Self.server()
        defer { server.stop() }
        #expect(server.endpoint.port != 0)
        let ok = try LoopbackConnection.exchange(server.endpoint, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(ok.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(ok)")
        #expect(ok.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
        #expect(ok.hasSuffix("\r\n\r\ntriglav_up 1\n"))
        #expect(try LoopbackConnection.exchange(server.endpoint, "GET / HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 404 "))
        #expect(try LoopbackConnection.exchange(server.endpoint, "DELETE /metrics HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 405 "))
        #expect(try LoopbackConnection.exchange(server.endpoint, "\u{16}\u{3}\u{1}\u{2}\0garbage\r\n\r\n").hasPrefix("HTTP/1.1 400 "))
        let huge = "GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 20_000)
        #expect(try LoopbackConnection.exchange(server.endpoint, huge).hasPrefix("HTTP/1.1 431 "))
    }

    @Test func aRenderingFailureIsA500() throws {
        let server = try Self.server { nil }
        defer { server.stop() }
        #expect(try LoopbackConnection.exchange(server.endpoint, "GET /metrics HTTP/1.0\r\n\r\n").hasPrefix("HTTP/1.1 500 "))
    }

    @Test func aSilentConnectionBlocksNeitherAScrapeNorStopAndIsClosedAtItsDeadline() throws {
        var limits = MetricsServer.Limits()
        // A scrape blocked behind the silent connection would take its whole timeout; the margin between the two
        // bounds absorbs a loaded machine (the suite runs beside others in CI).
        limits.exchangeTimeout = .seconds(2)
        let server = try Self.server(limits: limits)
        defer { server.stop() }
        let silent = try LoopbackConnection(server.endpoint)
        defer { silent.close() }
        silent.send("GET /metr")  // half a request line, then nothing
        let start = ContinuousClock.now
        #expect(try LoopbackConnection.exchange(server.endpoint, "GET /metrics HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 200 "))
        #expect(ContinuousClock.now - start < .seconds(1))
        // The silent one is closed without an answer once its deadline passes.
        #expect(silent.readAll() == "")
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    @Test func connectionsBeyondTheLimitGet503() throws {
        var limits = MetricsServer.Limits()
        limits.maximumConnections = 2
        limits.exchangeTimeout = .seconds(60)  // the held connections keep their slots through the waits below
        let server = try Self.server(limits: limits)
        defer { server.stop() }
        let held = try (0..<2).map { _ in try LoopbackConnection(server.endpoint) }
        defer { held.forEach { $0.close() } }
        held.forEach { $0.send("G") }
        // Wait (bounded) until the server has accepted both, then one more is turned away.
        // The waits are bounded by time, not attempts: on a loaded machine the server thread may take a while to
        // notice a connection or its close.
        let scrape = "GET /metrics HTTP/1.1\r\n\r\n"
        var answer = ""
        let refusedBy = ContinuousClock.now + .seconds(10)
        repeat {
            answer = try LoopbackConnection.exchange(server.endpoint, scrape)
            if answer.hasPrefix("HTTP/1.1 503 ") { break }
            usleep(20_000)
        } while ContinuousClock.now < refusedBy
        #expect(answer.hasPrefix("HTTP/1.1 503 "), "\(answer)")
        held[0].close()
        var served = false
        let servedBy = ContinuousClock.now + .seconds(10)
        repeat {
            served = try LoopbackConnection.exchange(server.endpoint, scrape).hasPrefix("HTTP/1.1 200 ")
            if !served { usleep(20_000) }
        } while !served && ContinuousClock.now < servedBy
        #expect(served, "a freed slot serves scrapes again")
    }

    @Test func bindFailuresNameTheAddressAndWhatToDo() throws {
        let first = try Self.server()
        defer { first.stop() }
        #expect {
            try MetricsServer(endpoint: first.endpoint, logger: Logger(label: "test")) { nil }
        } throws: { error in
            "\(error)".contains("\(first.endpoint)") && "\(error)".contains("already in use") && "\(error)".contains("[metrics] listen")
        }
        let foreign = IPEndpoint(address: IPAddress("192.0.2.1")!, port: 9743)
        #expect {
            try MetricsServer(endpoint: foreign, logger: Logger(label: "test")) { nil }
        } throws: { error in
            "\(error)".contains("192.0.2.1") && "\(error)".contains("not an address of this machine")
        }
        #expect(MetricsServer.checkAddress(IPEndpoint(address: IPAddress("127.0.0.1")!, port: 9743)) == nil)
        #expect(MetricsServer.checkAddress(foreign)?.contains("not an address of this machine") == true)
    }

    @Test func stopEndsTheThreadAndFreesThePort() throws {
        // A port below the kernel's ephemeral range (32768–60999): an ephemeral one, once freed, could be taken at once
        // by a connect or a port-0 bind of another test running beside this one (CI saw "already in use" so).
        // A plain loop: a lazy compactMap runs its transform twice per element (filter, then the element itself), and
        // the second bind of the same port could fail after the first server was dropped (a crash in CI, 2026-11-29).
        var bound: MetricsServer?
        for port in (20_000..<20_200).shuffled() {
            bound = try? MetricsServer(endpoint: IPEndpoint(address: IPAddress("127.0.0.1")!, port: UInt16(port)),
                                       logger: Logger(label: "test")) { nil }
            if bound != nil { break }
        }
        let server = try #require(bound)
        server.start()
        let endpoint = server.endpoint
        server.stop()
        server.stop()
        let again = try MetricsServer(endpoint: endpoint, logger: Logger(label: "test")) { nil }
        again.stop()
    }
}

@Suite("Daemon metrics: the endpoint's lifecycle in the daemon (fakes, loopback)", .serialized)
struct MetricsDaemonLifecycleTests {
    static let anyLoopbackPort = IPEndpoint(address: IPAddress("127.0.0.1")!, port: 0)

    static func config(_ listen: IPEndpoint?) throws -> DaemonConfig {
        var config = DaemonConfig()
        config.metricsListen = listen
        return config
    }

    @Test func startServesReloadMovesOrClosesAndShutdownCloses() throws {
        let harness = CoreDaemonTests.Harness(config: try Self.config(Self.anyLoopbackPort))
        let daemon = try harness.daemon()
        try daemon.start()
        let first = try #require(daemon.metricsEndpoint)
        let text = try LoopbackConnection.exchange(first, "GET /metrics HTTP/1.1\r\n\r\n")
        #expect(text.contains("triglav_tunnel_state{state=\"disconnected\"} 1"), "\(text)")
        #expect(text.contains("triglav_build_info{version=\"\(VERSION)\",role=\"client\"} 1"))

        // Removed by a reload: closed.
        harness.configSource.set(try Self.config(nil))
        try daemon.reloadConfiguration()
        #expect(daemon.metricsEndpoint == nil)
        #expect((try? LoopbackConnection(first)) == nil, "still listening on \(first)")

        // Back, then moved to a port that is taken: the endpoint stays where it was.
        harness.configSource.set(try Self.config(Self.anyLoopbackPort))
        try daemon.reloadConfiguration()
        let second = try #require(daemon.metricsEndpoint)
        let blocker = try MetricsServer(endpoint: IPEndpoint(address: second.address, port: 0), logger: Logger(label: "test")) { nil }
        defer { blocker.stop() }
        harness.configSource.set(try Self.config(blocker.endpoint))
        try daemon.reloadConfiguration()
        #expect(daemon.metricsEndpoint == second)
        #expect(try LoopbackConnection.exchange(second, "GET /metrics HTTP/1.0\r\n\r\n").hasPrefix("HTTP/1.1 200 "))

        daemon.shutdown()
        #expect(daemon.metricsEndpoint == nil)
        #expect((try? LoopbackConnection(second)) == nil, "still listening on \(second) after shutdown")
    }

    @Test func anAddressThatCantBeBoundFailsTheStartBeforeTheRoleStarts() throws {
        let blocker = try MetricsServer(endpoint: IPEndpoint(address: IPAddress("127.0.0.1")!, port: 0), logger: Logger(label: "test")) { nil }
        defer { blocker.stop() }
        let harness = CoreDaemonTests.Harness(config: try Self.config(blocker.endpoint))
        let daemon = try harness.daemon()
        #expect {
            try daemon.start()
        } throws: { error in
            "\(error)".contains("\(blocker.endpoint) is already in use")
        }
        #expect(harness.source == nil, "discovery started although the start had already failed")
        #expect(!harness.sent.contains("READY=1"))
    }
}
