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

    /// Whether the packet is a pure TCP acknowledgement (ACK set; no SYN, FIN or RST; no payload). Those are
    /// cumulative, so delivering one out of order harms nothing, and holding it back in the reorder buffer
    /// only slows the sender down.
    static func isPureTCPAck(_ packet: UnsafeRawBufferPointer) -> Bool {
        guard let tcp = tcpHeader(packet) else { return false }
        return isPureTCPAck(packet, tcp: tcp)
    }

    /// The same for a packet whose TCP header `tcpHeader` already found (the TUN pump parses it once per packet).
    static func isPureTCPAck(_ packet: UnsafeRawBufferPointer, tcp: (offset: Int, payloadLength: Int)) -> Bool {
        let flags = packet[tcp.offset + 13]
        let ack: UInt8 = 0x10, synFinRst: UInt8 = 0x07
        return flags & ack != 0 && flags & synFinRst == 0 && tcp.payloadLength == 0
    }

    /// Where the TCP header of an unfragmented IPv4 or extension-free IPv6 TCP packet starts, and how many payload
    /// bytes follow it; nil for anything else or a header that doesn't fit the packet (no walking, never traps).
    static func tcpHeader(_ packet: UnsafeRawBufferPointer) -> (offset: Int, payloadLength: Int)? {
        guard let version = version(packet) else { return nil }
        let transport: Int
        let totalLength: Int
        if version == 4 {
            guard packet.count >= 20, packet[9] == 6 else { return nil }
            let fragment = (UInt16(packet[6] & 0x3f) << 8) | UInt16(packet[7])  // MF flag or offset
            guard fragment == 0 else { return nil }
            transport = Int(packet[0] & 0x0f) * 4
            totalLength = Int(packet[2]) << 8 | Int(packet[3])
        } else {
            guard packet.count >= 40, packet[6] == 6 else { return nil }  // no extension headers
            transport = 40
            totalLength = 40 + (Int(packet[4]) << 8 | Int(packet[5]))
        }
        guard transport >= 20, packet.count >= transport + 20, totalLength <= packet.count else { return nil }
        let headerLength = Int(packet[transport + 12] >> 4) * 4
        guard headerLength >= 20, totalLength >= transport + headerLength else { return nil }
        return (transport, totalLength - transport - headerLength)
    }
}
