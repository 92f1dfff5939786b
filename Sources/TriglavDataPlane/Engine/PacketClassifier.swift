import TriglavCore

/// Reads what the engine needs from an inner IP packet without copying it: version, destination address
/// and source (the server routes by the destination and checks the source against the client's addresses).
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
}
