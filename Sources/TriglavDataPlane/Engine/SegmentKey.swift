import TriglavMultipath

extension PacketClassifier {
    /// The key under which a `DroppedSegmentLedger` remembers an inner TCP segment the paced AQM dropped, so TCP's
    /// retransmission of it (same flow, same sequence number) is recognised when it comes back (docs/MULTIPATH.md,
    /// "Retransmissions of dropped segments"): the inner flow's `FlowKey` (addresses, protocol, ports) mixed with
    /// the TCP sequence number; never 0.
    ///
    /// nil for anything but a TCP segment with payload: non-TCP packets, pure ACKs and bare SYN/FIN/RST (nothing of
    /// the flow waits on those in order), fragments, IPv6 with extension headers (as `isPureTCPAck`, no walking),
    /// and malformed or truncated packets. Reads the header in place; never allocates, never traps.
    static func droppedSegmentKey(_ packet: UnsafeRawBufferPointer) -> UInt64? {
        guard let tcp = tcpHeader(packet), tcp.payloadLength > 0, let flow = FlowKey(packet: packet) else { return nil }
        let sequence: UInt32 = packet.loadBigEndian(at: tcp.offset + 4)
        // Injective in the sequence number for one flow, then a bijective avalanche (splitmix64's finaliser).
        var key = flow.rawValue ^ (UInt64(sequence) &* 0x9E37_79B9_7F4A_7C15)
        key = (key ^ (key >> 30)) &* 0xBF58_476D_1CE4_E5B9
        key = (key ^ (key >> 27)) &* 0x94D0_49BB_1331_11EB
        key ^= key >> 31
        return key == 0 ? 1 : key
    }
}
