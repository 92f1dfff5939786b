import TriglavCore

/// Reads what the engine needs from an inner IP packet without copying it: version, destination address
/// (the server routes by it) and a flow hash over the 5-tuple (the `flow` scheduler pins flows by it).
enum PacketClassifier {
    /// IP version of the packet (4 or 6), or nil when too short to tell.
    static func version(_ packet: UnsafeRawBufferPointer) -> UInt8? {
        guard let first = packet.first else { return nil }
        let version = first >> 4
        return version == 4 || version == 6 ? version : nil
    }

    /// Destination of an IPv4 packet as a host-order integer.
    static func ipv4Destination(_ packet: UnsafeRawBufferPointer) -> UInt32? {
        guard packet.count >= 20, packet[0] >> 4 == 4 else { return nil }
        return packet.loadBigEndian(at: 16)
    }

    /// Source of an IPv4 packet as a host-order integer.
    static func ipv4Source(_ packet: UnsafeRawBufferPointer) -> UInt32? {
        guard packet.count >= 20, packet[0] >> 4 == 4 else { return nil }
        return packet.loadBigEndian(at: 12)
    }

    /// Destination of an IPv6 packet.
    static func ipv6Destination(_ packet: UnsafeRawBufferPointer) -> IPAddress? {
        guard packet.count >= 40, packet[0] >> 4 == 6 else { return nil }
        return .v6(high: packet.loadBigEndian(at: 24), low: packet.loadBigEndian(at: 32))
    }

    /// Source of an IPv6 packet.
    static func ipv6Source(_ packet: UnsafeRawBufferPointer) -> IPAddress? {
        guard packet.count >= 40, packet[0] >> 4 == 6 else { return nil }
        return .v6(high: packet.loadBigEndian(at: 8), low: packet.loadBigEndian(at: 16))
    }

    /// FNV-1a over protocol, addresses and (for TCP/UDP, unfragmented) ports. Stable for a flow's lifetime.
    static func flowHash(_ packet: UnsafeRawBufferPointer) -> UInt32 {
        var hash: UInt32 = 0x811c_9dc5
        func mix(_ range: Range<Int>) {
            for index in range { hash = (hash ^ UInt32(packet[index])) &* 0x0100_0193 }
        }
        guard let version = version(packet) else { return hash }
        if version == 4, packet.count >= 20 {
            let headerLength = Int(packet[0] & 0x0f) * 4
            let proto = packet[9]
            mix(9..<10)
            mix(12..<20)
            let fragmentOffset = (UInt16(packet[6] & 0x1f) << 8) | UInt16(packet[7])
            if (proto == 6 || proto == 17), fragmentOffset == 0, packet.count >= headerLength + 4 {
                mix(headerLength..<(headerLength + 4))
            }
        } else if version == 6, packet.count >= 40 {
            let proto = packet[6]
            mix(6..<7)
            mix(8..<40)
            if (proto == 6 || proto == 17), packet.count >= 44 { mix(40..<44) }
        }
        return hash
    }
}
