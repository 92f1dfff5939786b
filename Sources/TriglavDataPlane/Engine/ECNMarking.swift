/// The ECN field of inner IP packets (RFC 3168 §5): what the paced AQM reads to choose between dropping a packet and
/// marking it Congestion Experienced (`SharedAdmission.queuedCongestionExperienced`), and the mark itself.
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
        if packet[0] >> 4 == 6 {
            packet[1] |= 0x30
            return true
        }
        let oldWord = UInt16(packet[0]) << 8 | UInt16(packet[1])
        packet[1] |= 0x03
        let newWord = UInt16(packet[0]) << 8 | UInt16(packet[1])
        let oldChecksum = UInt16(packet[10]) << 8 | UInt16(packet[11])
        // HC' = ~(~HC + ~m + m') in one's complement arithmetic.
        var sum = UInt32(~oldChecksum) + UInt32(~oldWord) + UInt32(newWord)
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        let checksum = ~UInt16(sum)
        packet[10] = UInt8(checksum >> 8)
        packet[11] = UInt8(checksum & 0xff)
        return true
    }
}
