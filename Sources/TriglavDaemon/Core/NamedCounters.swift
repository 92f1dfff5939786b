import TriglavControlAPI
import TriglavDataPlane
import TriglavMultipath

// Manager1.Counters and Server1.Counters (docs/DBUS.md): each name is the Prometheus family's (docs/METRICS.md) without
// its `triglav_tunnel_` / `triglav_server_` prefix and `_total`, with a label's value appended where the family has one.

extension ClientTunnelCounters {
    var named: [NamedCounter] {
        [NamedCounter("read_packets", readPackets), NamedCounter("dropped_no_uplink_packets", droppedNoUplink),
         NamedCounter("mss_clamped_packets", mssClamped)]
            + NamedCounter.repairs(resent: resentPackets, queueDrops: queueDrops, congestionMarks: congestionMarks,
                                   ecnDecapsulation: ecnDecapsulation, requested: requestedResends)
            + NamedCounter.reorder(reorder) + NamedCounter.offloads(tunOffload)
    }
}

extension ServerTunnelCounters {
    var named: [NamedCounter] {
        [NamedCounter("dropped_unknown_destination_packets", droppedUnknownDestination),
         NamedCounter("refused_uplinks", refusedUplinks), NamedCounter("handshakes", answeredHandshakes)]
            + NamedCounter.repairs(resent: resentPackets, queueDrops: queueDrops, congestionMarks: congestionMarks,
                                   ecnDecapsulation: ecnDecapsulation, requested: requestedResends)
            + NamedCounter.offloads(tunOffload)
            + [NamedCounter("gso_datagrams", segmentedDatagrams), NamedCounter("gro_datagrams", coalescedDatagrams)]
    }
}

extension NamedCounter {
    /// What both roles count of sending again and dropping (the metrics' `repairFamilies`).
    static func repairs(resent: UInt64, queueDrops: UInt64, congestionMarks: UInt64,
                        ecnDecapsulation: ECNDecapsulationCounters, requested: RequestedResendCounters) -> [NamedCounter] {
        [NamedCounter("resent_packets", resent), NamedCounter("queue_dropped_packets", queueDrops),
         NamedCounter("ecn_marked_packets", congestionMarks),
         NamedCounter("ecn_decapsulated_packets_congestion_experienced", ecnDecapsulation.congestionExperienced),
         NamedCounter("ecn_decapsulated_packets_dropped", ecnDecapsulation.dropped),
         NamedCounter("requested_resend_sequences_accepted", requested.accepted),
         NamedCounter("requested_resend_sequences_declined", requested.declined)]
    }

    static func offloads(_ offload: TunOffloadCounters) -> [NamedCounter] {
        [NamedCounter("tun_super_packets_read", offload.superPackets),
         NamedCounter("tun_super_packet_segments_read", offload.segments),
         NamedCounter("tun_super_packets_written", offload.writtenSuperPackets),
         NamedCounter("tun_super_packet_segments_written", offload.joinedSegments),
         NamedCounter("tun_malformed_reads", offload.malformed)]
    }

    static func reorder(_ reorder: ReorderStatistics) -> [NamedCounter] {
        [NamedCounter("reorder_delivered_packets_in_order", reorder.deliveredInOrder),
         NamedCounter("reorder_delivered_packets_late", reorder.deliveredLate),
         NamedCounter("reorder_delivered_packets_bypassed", reorder.bypassed),
         NamedCounter("reorder_duplicate_packets", reorder.duplicates), NamedCounter("reorder_stale_packets", reorder.stale),
         NamedCounter("reorder_skipped_sequences", reorder.skippedSequences), NamedCounter("reorder_jumps", reorder.jumps),
         NamedCounter("reorder_overflows", reorder.overflows), NamedCounter("reorder_resend_requests", reorder.resendRequests)]
    }
}
