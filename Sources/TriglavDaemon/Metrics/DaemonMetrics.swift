public import TriglavMetrics
import TriglavConfig
import TriglavControlAPI
import TriglavCore
import TriglavDataPlane
import TriglavMultipath

/// What the metrics endpoint shows: a copy of the daemon's figures taken once a tick on the control queue
/// (`Daemon.tick()`), so a scrape reads this value and never touches a manager's or the data plane's lock.
public struct DaemonMetricsSnapshot: Sendable {
    public var role: Role
    public var version: String
    /// When the daemon started (Unix time, seconds): a restart explains counters that went back to 0.
    public var startTime: Double = 0
    /// Client role.
    public var manager: ClientManagerStatus?
    public var uplinks: [UplinkSnapshot] = []
    public var tunnel: ClientTunnelSnapshot?
    public var dataCaps: [String: DataCapFigures] = [:]
    /// Server role.
    public var server: ServerManagerStatus?
    public var serverCounters = ServerTunnelCounters()
    public var clients: [ServerClientStatus] = []

    public struct DataCapFigures: Sendable, Equatable {
        public var cap: UInt64
        public var used: UInt64
    }

    public init(role: Role, version: String) {
        self.role = role
        self.version = version
    }
}

/// Maps the daemon's state into metric families (docs/METRICS.md lists them all). Pure: tested with made-up
/// snapshots.
///
/// Labels: `uplink` is the interface name (bounded by the interfaces the `[uplinks]` globs admit); an uplink's
/// tier, metered flag, kind and origin are on `triglav_uplink_info` only, since they change at run time
/// (Uplink1.Tier writes, udev) and a label that changes would split every counter into a new series. `client`
/// is the `[[server.clients]]` name, so its cardinality is bounded by the configuration (only configured keys
/// get a tunnel); a name configured twice gets its key's first 8 base64 characters appended.
public enum DaemonMetrics {
    public static func families(_ snapshot: DaemonMetricsSnapshot) throws(TriglavMetricsError) -> [MetricFamily] {
        var builder = Builder()
        var info = try MetricFamily("triglav_build_info", type: .gauge,
                                    help: "Always 1; the labels say which triglavd runs and in which role.")
        try info.add(.integer(1), labels: [MetricLabel("version", snapshot.version), MetricLabel("role", snapshot.role.rawValue)])
        builder.families.append(info)
        try builder.add("process_start_time_seconds", .gauge, "When triglavd started (Unix time).", .real(snapshot.startTime))
        if let manager = snapshot.manager { try clientFamilies(snapshot, manager, &builder) }
        if let server = snapshot.server { try serverFamilies(snapshot, server, &builder) }
        return builder.families
    }

    /// Collects families, one per name, in the order first used.
    struct Builder {
        var families: [MetricFamily] = []
        private var index: [String: Int] = [:]

        mutating func add(_ name: String, _ type: MetricType, _ help: String, _ value: MetricValue,
                          _ labels: [MetricLabel] = []) throws(TriglavMetricsError) {
            try declare(name, type, help)
            guard let position = index[name] else { return }
            try families[position].add(value, labels: labels)
        }

        /// A family that exists even without samples (so a dashboard sees 0 series, not an unknown name).
        mutating func declare(_ name: String, _ type: MetricType, _ help: String) throws(TriglavMetricsError) {
            guard index[name] == nil else { return }
            index[name] = families.count
            families.append(try MetricFamily(name, type: type, help: help))
        }
    }

    static func seconds(microseconds: UInt64) -> MetricValue { .real(Double(microseconds) / 1_000_000) }

    static func seconds(_ duration: Duration?) -> MetricValue {
        guard let duration else { return .real(0) }
        let (whole, fraction) = duration.components
        return .real(Double(whole) + Double(fraction) / 1e18)
    }

    // MARK: Client role

    private static func clientFamilies(_ snapshot: DaemonMetricsSnapshot, _ manager: ClientManagerStatus,
                                       _ builder: inout Builder) throws(TriglavMetricsError) {
        for state in ConnectionState.allCases {
            try builder.add("triglav_tunnel_state", .gauge, "1 for the client connection's state (Manager1.State), 0 for the others.",
                            .flag(manager.state == state), [MetricLabel("state", state.rawValue)])
        }
        try builder.add("triglav_tunnel_transmitted_bytes_total", .counter,
                        "Bytes sent on all uplinks of the current connection (Manager1.TxBytes); restarts at 0 with each connection.",
                        .integer(manager.transmittedBytes))
        try builder.add("triglav_tunnel_received_bytes_total", .counter,
                        "Bytes received on all uplinks of the current connection (Manager1.RxBytes); restarts at 0 with each connection.",
                        .integer(manager.receivedBytes))
        let counters = snapshot.tunnel?.counters ?? ClientTunnelCounters()
        try builder.add("triglav_tunnel_dropped_no_uplink_packets_total", .counter,
                        "Packets read from the TUN device that no uplink could carry.", .integer(counters.droppedNoUplink))
        try builder.add("triglav_tunnel_read_packets_total", .counter,
                        "Packets read from the TUN device (traffic into the tunnel), dropped ones included.",
                        .integer(counters.readPackets))
        try builder.add("triglav_tunnel_mss_clamped_packets_total", .counter,
                        "TCP SYNs and SYN-ACKs whose MSS option was lowered to fit the tunnel's MTU, both directions.",
                        .integer(counters.mssClamped))
        try repairFamilies("triglav_tunnel", uplinks: "uplink", askers: "The server asked this client",
                           resent: counters.resentPackets, queueDrops: counters.queueDrops, congestionMarks: counters.congestionMarks,
                           ecnDecapsulation: counters.ecnDecapsulation,
                           requested: counters.requestedResends, &builder)
        try offloadFamilies("triglav_tunnel", counters.tunOffload, &builder)
        let reorder = counters.reorder
        for (order, count) in [("in_order", reorder.deliveredInOrder), ("late", reorder.deliveredLate), ("bypassed", reorder.bypassed)] {
            try builder.add("triglav_reorder_delivered_packets_total", .counter,
                            "Packets the reorder buffer wrote to the TUN device: in order, late (after being held), or at once (bypassed).",
                            .integer(count), [MetricLabel("order", order)])
        }
        try builder.add("triglav_reorder_duplicate_packets_total", .counter,
                        "Packets dropped by the reorder buffer as duplicates (redundant copies included).", .integer(reorder.duplicates))
        try builder.add("triglav_reorder_stale_packets_total", .counter,
                        "Packets dropped by the reorder buffer as too old.", .integer(reorder.stale))
        try builder.add("triglav_reorder_skipped_sequences_total", .counter,
                        "Sequence numbers the reorder buffer gave up waiting for (lost packets as the receiver sees them).",
                        .integer(reorder.skippedSequences))
        try builder.add("triglav_reorder_jumps_total", .counter,
                        "Times the reorder buffer jumped its window forward.", .integer(reorder.jumps))
        try builder.add("triglav_reorder_overflows_total", .counter,
                        "Times the reorder buffer was full and delivered early.", .integer(reorder.overflows))
        try builder.add("triglav_reorder_resend_requests_total", .counter,
                        "Resend requests the reorder buffer sent for missing sequences.", .integer(reorder.resendRequests))

        let uplinkHelp: [String: (MetricType, String)] = uplinkFamilyHelp
        for name in uplinkFamilyOrder { if let (type, help) = uplinkHelp[name] { try builder.declare(name, type, help) } }
        for uplink in snapshot.uplinks {
            try uplinkFamilies(uplink, snapshot.tunnel?.uplinks.first { $0.interface == uplink.interface },
                               snapshot.dataCaps[uplink.interface], uplinkHelp, &builder)
        }
    }

    static let uplinkFamilyOrder = [
        "triglav_uplink_info", "triglav_uplink_state", "triglav_uplink_route_to_server", "triglav_uplink_behind_nat",
        "triglav_uplink_path_mtu_bytes", "triglav_uplink_path_mtu_blackhole",
        "triglav_uplink_rtt_seconds", "triglav_uplink_min_rtt_seconds", "triglav_uplink_jitter_seconds",
        "triglav_uplink_loss_ratio", "triglav_uplink_capacity_bytes_per_second", "triglav_uplink_receive_rate_bytes_per_second",
        "triglav_uplink_transmitted_bytes_total", "triglav_uplink_received_bytes_total",
        "triglav_uplink_transmitted_packets_total", "triglav_uplink_received_packets_total",
        "triglav_uplink_handshakes_total", "triglav_uplink_send_errors_total", "triglav_uplink_gso_datagrams_total",
        "triglav_uplink_gro_datagrams_total",
        "triglav_uplink_data_cap_bytes", "triglav_uplink_data_cap_used_bytes",
    ]

    static let uplinkFamilyHelp: [String: (MetricType, String)] = [
        "triglav_uplink_info": (.gauge, "Always 1; the labels carry the uplink's tier, metered flag, kind, origin and transport."),
        "triglav_uplink_state": (.gauge, "1 for the uplink's state (Uplink1.State), 0 for the others."),
        "triglav_uplink_route_to_server": (.gauge, "0 when no route to the server leads through the interface (Uplink1.RouteToServer), else 1."),
        "triglav_uplink_behind_nat": (.gauge, "1 when the server sees the uplink's packets from another address or port than its own: a NAT on the way (Uplink1.BehindNAT)."),
        "triglav_uplink_path_mtu_bytes": (.gauge, "The path MTU the tunnel counts for the uplink (Uplink1.PathMTU); 0 while unknown."),
        "triglav_uplink_path_mtu_blackhole": (.gauge, "1 when probing found a hop that drops larger packets without ICMP and lowered the path MTU (Uplink1.PathMTUBlackhole)."),
        "triglav_uplink_rtt_seconds": (.gauge, "Smoothed round-trip time to the server over the uplink; 0 before the first measurement."),
        "triglav_uplink_min_rtt_seconds": (.gauge, "Smallest round-trip time in the engine's recent window (the path's propagation delay); 0 before measured."),
        "triglav_uplink_jitter_seconds": (.gauge, "Mean deviation between consecutive round-trip times; 0 before measured."),
        "triglav_uplink_loss_ratio": (.gauge, "Recent loss, 0 to 1 (0 while the engine has too few samples)."),
        "triglav_uplink_capacity_bytes_per_second": (.gauge, "The engine's estimate of what can be sent on the uplink (Uplink1.CapacityBps / 8)."),
        "triglav_uplink_receive_rate_bytes_per_second": (.gauge, "What arrived on the uplink during the last second (Uplink1.RxRateBps / 8)."),
        "triglav_uplink_transmitted_bytes_total": (.counter, "Bytes sent on the uplink in the current connection (Uplink1.TxBytes)."),
        "triglav_uplink_received_bytes_total": (.counter, "Bytes received on the uplink in the current connection (Uplink1.RxBytes)."),
        "triglav_uplink_transmitted_packets_total": (.counter, "Datagrams sent on the uplink in the current connection."),
        "triglav_uplink_received_packets_total": (.counter, "Datagrams received on the uplink in the current connection."),
        "triglav_uplink_handshakes_total": (.counter, "Handshakes the uplink started in the current connection."),
        "triglav_uplink_send_errors_total": (.counter, "Sends on the uplink that the kernel refused, in the current connection."),
        "triglav_uplink_gso_datagrams_total": (.counter, "Datagrams sent on the uplink as parts of UDP GSO messages, in the current connection."),
        "triglav_uplink_gro_datagrams_total": (.counter, "Datagrams received on the uplink as parts of UDP GRO runs, in the current connection."),
        "triglav_uplink_data_cap_bytes": (.gauge, "The uplink's data cap per billing period (data_cap_mb); only capped uplinks."),
        "triglav_uplink_data_cap_used_bytes": (.gauge, "What the uplink used of its cap this period, both directions; falls back to 0 when a period starts."),
    ]

    private static func uplinkFamilies(_ uplink: UplinkSnapshot, _ tunnel: ClientTunnelSnapshot.Uplink?,
                                       _ dataCap: DaemonMetricsSnapshot.DataCapFigures?,
                                       _ help: [String: (MetricType, String)],
                                       _ builder: inout Builder) throws(TriglavMetricsError) {
        let label = [MetricLabel("uplink", uplink.interface)]
        func add(_ name: String, _ value: MetricValue, _ extra: [MetricLabel] = []) throws(TriglavMetricsError) {
            guard let (type, text) = help[name] else { preconditionFailure("\(name) is declared in uplinkFamilyHelp") }
            try builder.add(name, type, text, value, label + extra)
        }
        try add("triglav_uplink_info", .integer(1), [
            MetricLabel("tier", uplink.tier.rawValue), MetricLabel("metered", uplink.isMetered ? "true" : "false"),
            MetricLabel("kind", uplink.kind.rawValue), MetricLabel("origin", uplink.origin.rawValue),
            MetricLabel("transport", uplink.transport), MetricLabel("enabled", uplink.isEnabled ? "true" : "false"),
        ])
        // Uplink1.State's values (not the manager's finer ones), mapped as the bus adaptor maps them.
        let busState = Daemon.uplinkStatus(uplink).state
        for state in TriglavControlAPI.UplinkState.allCases {
            try add("triglav_uplink_state", .flag(state == busState), [MetricLabel("state", state.rawValue)])
        }
        try add("triglav_uplink_route_to_server", .flag(uplink.hasRouteToServer))
        try add("triglav_uplink_behind_nat", .flag(uplink.isBehindNAT))
        try add("triglav_uplink_path_mtu_bytes", .integer(UInt64(uplink.pathMTU)))
        try add("triglav_uplink_path_mtu_blackhole", .flag(uplink.hasPathMTUBlackhole))
        try add("triglav_uplink_rtt_seconds", seconds(microseconds: uplink.rttMicroseconds))
        try add("triglav_uplink_min_rtt_seconds", seconds(tunnel?.minimumRTT))
        try add("triglav_uplink_jitter_seconds", seconds(microseconds: uplink.jitterMicroseconds))
        try add("triglav_uplink_loss_ratio", .real(uplink.lossRatio))
        try add("triglav_uplink_capacity_bytes_per_second", .integer(uplink.capacityBitsPerSecond / 8))
        try add("triglav_uplink_receive_rate_bytes_per_second", .integer(uplink.receiveRateBitsPerSecond / 8))
        try add("triglav_uplink_transmitted_bytes_total", .integer(uplink.transmittedBytes))
        try add("triglav_uplink_received_bytes_total", .integer(uplink.receivedBytes))
        try add("triglav_uplink_transmitted_packets_total", .integer(tunnel?.transmittedPackets ?? 0))
        try add("triglav_uplink_received_packets_total", .integer(tunnel?.receivedPackets ?? 0))
        try add("triglav_uplink_handshakes_total", .integer(tunnel?.handshakes ?? 0))
        try add("triglav_uplink_send_errors_total", .integer(tunnel?.sendErrors ?? 0))
        try add("triglav_uplink_gso_datagrams_total", .integer(tunnel?.segmentedDatagrams ?? 0))
        try add("triglav_uplink_gro_datagrams_total", .integer(tunnel?.coalescedDatagrams ?? 0))
        if let dataCap {
            try add("triglav_uplink_data_cap_bytes", .integer(dataCap.cap))
            try add("triglav_uplink_data_cap_used_bytes", .integer(dataCap.used))
        }
    }

    // MARK: Server role

    /// What both roles count of sending again and dropping, under their `prefix`: failover resends, the pacing
    /// queue's drops, and the peer's resend requests by `outcome`: `accepted` (handed to the engine to resend) or
    /// `declined` (no longer held, or sent into a long queue: a congestion loss left to the inner TCP).
    private static func repairFamilies(_ prefix: String, uplinks: String, askers: String, resent: UInt64, queueDrops: UInt64,
                                       congestionMarks: UInt64, ecnDecapsulation: ECNDecapsulationCounters,
                                       requested: RequestedResendCounters, _ builder: inout Builder) throws(TriglavMetricsError) {
        try builder.add("\(prefix)_resent_packets_total", .counter,
                        "Packets sent again because the \(uplinks) they were in flight on went down.", .integer(resent))
        try builder.add("\(prefix)_queue_dropped_packets_total", .counter,
                        "Packets the sender-side pacing queue dropped: refused by its AQM or a full queue, or shed at its head.",
                        .integer(queueDrops))
        try builder.add("\(prefix)_ecn_marked_packets_total", .counter,
                        "ECN-capable packets the sender-side pacing queue's AQM marked Congestion Experienced instead of dropping.",
                        .integer(congestionMarks))
        for (result, count) in [("congestion_experienced", ecnDecapsulation.congestionExperienced),
                                ("dropped", ecnDecapsulation.dropped)] {
            try builder.add("\(prefix)_ecn_decapsulated_packets_total", .counter,
                            "Received packets whose tunnel datagram arrived marked Congestion Experienced by a router on the path: "
                                + "the mark copied onto the ECN-capable inner packet, or a Not-ECT one dropped (RFC 6040).",
                            .integer(count), [MetricLabel("result", result)])
        }
        for (outcome, count) in [("accepted", requested.accepted), ("declined", requested.declined)] {
            try builder.add("\(prefix)_requested_resend_sequences_total", .counter,
                            "Sequences \(askers) to resend: accepted (resent) or declined.", .integer(count),
                            [MetricLabel("outcome", outcome)])
        }
    }

    /// The TUN device's offloads (docs/DATAPLANE.md, "Offloads"), for the client's tunnel or the server's.
    private static func offloadFamilies(_ prefix: String, _ offload: TunOffloadCounters,
                                        _ builder: inout Builder) throws(TriglavMetricsError) {
        for (direction, superPackets, segments) in [("read", offload.superPackets, offload.segments),
                                                    ("written", offload.writtenSuperPackets, offload.joinedSegments)] {
            try builder.add("\(prefix)_tun_super_packets_total", .counter,
                            "TCP super-packets read from the TUN device (and cut into packets) or written to it (joined from packets).",
                            .integer(superPackets), [MetricLabel("direction", direction)])
            try builder.add("\(prefix)_tun_super_packet_segments_total", .counter,
                            "Packets those super-packets were cut into (read) or joined from (written).",
                            .integer(segments), [MetricLabel("direction", direction)])
        }
        try builder.add("\(prefix)_tun_malformed_reads_total", .counter,
                        "TUN reads dropped because their virtio-net header described nothing the tunnel can cut.",
                        .integer(offload.malformed))
    }

    private static func serverFamilies(_ snapshot: DaemonMetricsSnapshot, _ server: ServerManagerStatus,
                                       _ builder: inout Builder) throws(TriglavMetricsError) {
        try builder.add("triglav_server_running", .gauge, "1 while the server tunnel runs (listeners and TUN up).",
                        .flag(server.isRunning))
        try builder.add("triglav_server_clients", .gauge, "Clients with a tunnel (Server1.Clients).", .integer(UInt64(server.clients.count)))
        try builder.add("triglav_server_authorized_clients", .gauge, "Clients configured in [[server.clients]].",
                        .integer(UInt64(server.authorizedClients)))
        try builder.add("triglav_server_transmitted_bytes_total", .counter,
                        "Inner bytes sent to all clients since the server started, departed ones included (Server1.TxBytes).",
                        .integer(server.transmittedBytes))
        try builder.add("triglav_server_received_bytes_total", .counter,
                        "Inner bytes received from all clients since the server started, departed ones included (Server1.RxBytes).",
                        .integer(server.receivedBytes))
        try builder.add("triglav_server_rejected_handshakes_total", .counter,
                        "Handshakes refused: unknown key, bad MAC, replay, or rate limited.", .integer(server.rejectedHandshakes))
        let counters = snapshot.serverCounters
        try builder.add("triglav_server_refused_uplinks_total", .counter,
                        "Uplink sessions refused because their client already had the most uplinks a tunnel may have.",
                        .integer(counters.refusedUplinks))
        try builder.add("triglav_server_dropped_unknown_destination_packets_total", .counter,
                        "Packets from the TUN device addressed to no connected client.", .integer(counters.droppedUnknownDestination))
        try repairFamilies("triglav_server", uplinks: "client uplink", askers: "The clients (departed ones included) asked the server",
                           resent: counters.resentPackets, queueDrops: counters.queueDrops, congestionMarks: counters.congestionMarks,
                           ecnDecapsulation: counters.ecnDecapsulation,
                           requested: counters.requestedResends, &builder)
        try offloadFamilies("triglav_server", counters.tunOffload, &builder)
        try builder.add("triglav_server_gso_datagrams_total", .counter,
                        "Datagrams the listeners sent as parts of UDP GSO messages.", .integer(counters.segmentedDatagrams))
        try builder.add("triglav_server_gro_datagrams_total", .counter,
                        "Datagrams the listeners received as parts of UDP GRO runs.", .integer(counters.coalescedDatagrams))
        try builder.add("triglav_server_handshakes_total", .counter,
                        "Handshakes answered: a client's new tunnel, a further uplink, or a rekey.",
                        .integer(counters.answeredHandshakes))

        let clientHelp: [(String, MetricType, String)] = [
            ("triglav_client_state", .gauge, "1 for the client's state (Client1.State), 0 for the others."),
            ("triglav_client_paths", .gauge, "The client's live paths, one per uplink (Client1.Paths)."),
            ("triglav_client_rtt_seconds", .gauge, "Smoothed round-trip time of the client's best path; 0 before measured."),
            ("triglav_client_transmitted_bytes_total", .counter, "Inner bytes sent to the client by its current tunnel."),
            ("triglav_client_received_bytes_total", .counter, "Inner bytes received from the client by its current tunnel."),
            ("triglav_client_transmitted_packets_total", .counter, "Packets sent to the client by its current tunnel."),
            ("triglav_client_received_packets_total", .counter, "Packets received from the client by its current tunnel."),
            ("triglav_client_connected_since_timestamp_seconds", .gauge, "When the server first saw the client's current tunnel (Unix time)."),
            ("triglav_client_path_state", .gauge, "1 for the state the server's engine has for the client's path (uplink), 0 for the others."),
            ("triglav_client_path_rtt_seconds", .gauge, "Smoothed round-trip time of the client's path, from the server's probes; 0 before measured."),
            ("triglav_client_path_loss_ratio", .gauge, "Recent loss on the client's path, 0 to 1 (0 while too few samples)."),
            ("triglav_client_path_transmitted_bytes_total", .counter, "Bytes of data frames the server sent to the client on the path (whole frames, as UDP payload)."),
            ("triglav_client_path_received_bytes_total", .counter, "Bytes of data frames the server received from the client on the path."),
        ]
        for (name, type, help) in clientHelp { try builder.declare(name, type, help) }
        let help = Dictionary(uniqueKeysWithValues: clientHelp.map { ($0.0, ($0.1, $0.2)) })
        let names = clientLabels(snapshot.clients)
        for (client, name) in zip(snapshot.clients, names) {
            let label = [MetricLabel("client", name)]
            func add(_ family: String, _ value: MetricValue, _ extra: [MetricLabel] = []) throws(TriglavMetricsError) {
                guard let (type, text) = help[family] else { preconditionFailure("\(family) is declared in clientHelp") }
                try builder.add(family, type, text, value, label + extra)
            }
            for state in ServerClientState.allCases {
                try add("triglav_client_state", .flag(client.state == state), [MetricLabel("state", state.rawValue)])
            }
            try add("triglav_client_paths", .integer(UInt64(client.livePaths)))
            try add("triglav_client_rtt_seconds", seconds(microseconds: client.rttMicroseconds))
            try add("triglav_client_transmitted_bytes_total", .integer(client.transmittedBytes))
            try add("triglav_client_received_bytes_total", .integer(client.receivedBytes))
            try add("triglav_client_transmitted_packets_total", .integer(client.transmittedPackets))
            try add("triglav_client_received_packets_total", .integer(client.receivedPackets))
            try add("triglav_client_connected_since_timestamp_seconds", seconds(microseconds: client.connectedSinceMicroseconds))
            for path in client.paths {
                let figures = path.statistics, pathLabel = MetricLabel("path", String(path.uplink.rawValue))
                for state in TriglavMultipath.UplinkState.allCases {
                    try add("triglav_client_path_state", .flag(figures.state == state), [pathLabel, MetricLabel("state", state.rawValue)])
                }
                try add("triglav_client_path_rtt_seconds", .real(Double(figures.smoothedRTT) / 1e9), [pathLabel])
                try add("triglav_client_path_loss_ratio", .real((figures.lossPercent ?? 0) / 100), [pathLabel])
                try add("triglav_client_path_transmitted_bytes_total", .integer(figures.txBytes), [pathLabel])
                try add("triglav_client_path_received_bytes_total", .integer(figures.rxBytes), [pathLabel])
            }
        }
    }

    /// The `client` label of each client: its configured name; a name shared by several (or empty) gets the first
    /// 8 characters of the public key appended, so every series stays distinct.
    static func clientLabels(_ clients: [ServerClientStatus]) -> [String] {
        var counts: [String: Int] = [:]
        for client in clients { counts[client.name, default: 0] += 1 }
        return clients.map { client in
            guard client.name.isEmpty || counts[client.name, default: 0] > 1 else { return client.name }
            let prefix = String(client.publicKey.prefix(8))
            return client.name.isEmpty ? prefix : "\(client.name)/\(prefix)"
        }
    }
}
