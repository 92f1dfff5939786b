/// The ECN field of inner IP packets (RFC 3168 §5): what the paced AQM reads to choose between dropping a packet and
/// marking it Congestion Experienced (`SharedAdmission.queuedCongestionExperienced`), the mark itself, and the
/// tunnel's encapsulation and decapsulation of the field (RFC 6040).
extension PacketClassifier {
    /// ECN codepoints, the two low bits of IPv4's TOS byte and of IPv6's traffic class.
    enum ECNCodepoint: UInt8 {
        case notECT = 0, ect1 = 1, ect0 = 2, congestionExperienced = 3
    }

    /// The packet's ECN codepoint; nil when it is not an IPv4 packet of at least 20 bytes or an IPv6 one of 40.
    static func ecnCodepoint(_ packet: UnsafeRawBufferPointer) -> ECNCodepoint? {
        switch version(packet) {
        case 4 where packet.count >= 20: return ECNCodepoint(rawValue: packet[1] & 0x03)
        case 6 where packet.count >= 40: return ECNCodepoint(rawValue: (packet[1] >> 4) & 0x03)
        default: return nil
        }
    }

    /// Whether the packet's sender reads ECN: ECT(0) or ECT(1). A packet already marked CE is not: it needs no second
    /// mark, and the AQM's signal for it is a drop as for any other.
    static func isECNCapable(_ packet: UnsafeRawBufferPointer) -> Bool {
        ecnCodepoint(packet).map { $0 == .ect0 || $0 == .ect1 } ?? false
    }

    /// Sets the ECN field of an ECN-capable packet to CE in place, updating the IPv4 header checksum incrementally
    /// (RFC 1624 eqn. 3; IPv6 has none). False, and the packet untouched, when it isn't ECN-capable.
    @discardableResult
    static func markCongestionExperienced(_ packet: UnsafeMutableRawBufferPointer) -> Bool {
        guard isECNCapable(UnsafeRawBufferPointer(packet)) else { return false }
        setECN(packet, to: .congestionExperienced)
        return true
    }

    /// Writes `codepoint` into the ECN field of a packet `ecnCodepoint` could read (the caller checked), keeping the
    /// IPv4 header checksum valid.
    private static func setECN(_ packet: UnsafeMutableRawBufferPointer, to codepoint: ECNCodepoint) {
        if packet[0] >> 4 == 6 {
            packet[1] = packet[1] & 0xcf | codepoint.rawValue << 4
            return
        }
        let oldWord = UInt16(packet[0]) << 8 | UInt16(packet[1])
        packet[1] = packet[1] & 0xfc | codepoint.rawValue
        let newWord = UInt16(packet[0]) << 8 | UInt16(packet[1])
        let oldChecksum = UInt16(packet[10]) << 8 | UInt16(packet[11])
        // HC' = ~(~HC + ~m + m') in one's complement arithmetic.
        var sum = UInt32(~oldChecksum) + UInt32(~oldWord) + UInt32(newWord)
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        let checksum = ~UInt16(sum)
        packet[10] = UInt8(checksum >> 8)
        packet[11] = UInt8(checksum & 0xff)
    }

    /// What decapsulation did with a data frame's inner packet (`decapsulateECN`).
    enum ECNDecapsulation: Equatable {
        /// Forwarded as it came (the inner field already says all the outer one does).
        case unchanged
        /// The outer header was marked Congestion Experienced on the path, and the mark is now on the inner packet.
        case congestionExperienced
        /// The outer ECT(1) of an inner ECT(0) is now on the inner packet (RFC 6040 §4.2).
        case ect1
        /// Outer CE on an inner packet whose sender can't read ECN: RFC 6040 §4.2 says drop (the path's congestion
        /// signal must not be lost by forwarding it unmarked).
        case drop
    }

    /// Decapsulation of the outer ECN field `outer` (the codepoint the datagram arrived with) onto the inner
    /// `packet`, in place, as RFC 6040 §4.2 (Figure 4) combines them: outer CE marks an ECN-capable inner packet CE
    /// and drops a Not-ECT one, outer ECT(1) turns an inner ECT(0) into ECT(1), and everything else leaves the inner
    /// field as it is. A packet that isn't IPv4 or IPv6 (too short) is left alone.
    static func decapsulateECN(outer: UInt8, into packet: UnsafeMutableRawBufferPointer) -> ECNDecapsulation {
        guard let outer = ECNCodepoint(rawValue: outer & 0x03), outer != .notECT,
              let inner = ecnCodepoint(UnsafeRawBufferPointer(packet)) else { return .unchanged }
        switch (outer, inner) {
        case (.congestionExperienced, .notECT):
            return .drop
        case (.congestionExperienced, .ect0), (.congestionExperienced, .ect1):
            setECN(packet, to: .congestionExperienced)
            return .congestionExperienced
        case (.ect1, .ect0):
            setECN(packet, to: .ect1)
            return .ect1
        default:
            return .unchanged
        }
    }

    /// The outer ECN codepoint for a data frame carrying `packet` (RFC 6040 §4.1, normal mode: a copy of the inner
    /// one), so that routers on the uplink's path may mark it instead of dropping it. Not-ECT (0) for anything that
    /// isn't IPv4 or IPv6.
    static func outerECN(for packet: UnsafeRawBufferPointer) -> UInt8 {
        ecnCodepoint(packet)?.rawValue ?? 0
    }
}

/// What decapsulation did with the outer ECN field of the data frames a tunnel end received (RFC 6040).
public struct ECNDecapsulationCounters: Sendable, Equatable {
    /// Inner packets marked Congestion Experienced because a router on the uplink's path marked the outer header.
    public var congestionExperienced: UInt64 = 0
    /// Inner Not-ECT packets dropped because the outer header arrived marked CE.
    public var dropped: UInt64 = 0

    public init(congestionExperienced: UInt64 = 0, dropped: UInt64 = 0) {
        self.congestionExperienced = congestionExperienced
        self.dropped = dropped
    }

    /// Applies the outer codepoint `outer` to the inner packet in `slot` of `pool` and counts what happened; false when
    /// the packet must be dropped (the caller releases the slot).
    mutating func decapsulate(outer: UInt8, slot: Int, pool: PacketPool) -> Bool {
        // Most datagrams arrive Not-ECT: nothing to read in the inner header then.
        guard outer != 0 else { return true }
        switch PacketClassifier.decapsulateECN(outer: outer, into: pool.mutablePacket(slot)) {
        case .congestionExperienced: congestionExperienced &+= 1
        case .drop: dropped &+= 1; return false
        case .unchanged, .ect1: break
        }
        return true
    }
}
