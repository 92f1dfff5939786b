/// Identity of an inner flow for the `flow` scheduler: a 64-bit hash of protocol, addresses and ports
/// (or of addresses and protocol for port-less and fragmented traffic). Equal 5-tuples give equal keys
/// in both processes and across runs (no per-process seed): the hash only spreads flows, it guards
/// nothing, since the peer can't choose which uplink a flow takes.
public struct FlowKey: Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Extracts the flow key from an inner IPv4 or IPv6 packet. Never traps: returns nil for anything
    /// that isn't a well-formed IP header (too short, wrong version, bad IHL). Ports are used for
    /// TCP (6), UDP (17), UDP-Lite (136) and SCTP (132) when the transport header is present and the
    /// packet isn't a non-first fragment; IPv6 extension headers (hop-by-hop, routing, destination
    /// options, fragment) are walked, at most 8 of them.
    public init?(packet: UnsafeRawBufferPointer) {
        guard let key = FlowKey.parse(packet) else { return nil }
        self = key
    }

    /// Convenience for byte arrays (tests, tools). Same rules as the raw-buffer initialiser.
    public init?(packet: [UInt8]) {
        guard let key = packet.withUnsafeBytes({ FlowKey.parse($0) }) else { return nil }
        self = key
    }

    private static func parse(_ bytes: UnsafeRawBufferPointer) -> FlowKey? {
        guard bytes.count >= 1 else { return nil }
        var hasher = FNV1a()
        switch bytes[0] >> 4 {
        case 4:
            guard bytes.count >= 20 else { return nil }
            let headerLength = Int(bytes[0] & 0x0f) * 4
            guard headerLength >= 20, bytes.count >= headerLength else { return nil }
            let proto = bytes[9]
            hasher.mix(4)
            hasher.mix(proto)
            for index in 12..<20 { hasher.mix(bytes[index]) }
            let fragmentOffset = (UInt16(bytes[6] & 0x1f) << 8) | UInt16(bytes[7])
            let moreFragments = bytes[6] & 0x20 != 0
            // Fragments carry ports only in the first one; hash every fragment without ports so a
            // fragmented datagram stays on one uplink.
            if fragmentOffset == 0 && !moreFragments {
                mixPorts(proto, at: headerLength, of: bytes, into: &hasher)
            }
        case 6:
            guard bytes.count >= 40 else { return nil }
            hasher.mix(6)
            for index in 8..<40 { hasher.mix(bytes[index]) }
            var next = bytes[6]
            var offset = 40
            var fragmented = false
            var extensionHeaders = 0
            while extensionHeaders < 8 {
                switch next {
                case 0, 43, 60: // hop-by-hop, routing, destination options: length in 8-byte units + 8
                    guard bytes.count >= offset + 2 else { return nil }
                    next = bytes[offset]
                    offset += (Int(bytes[offset + 1]) + 1) * 8
                    extensionHeaders += 1
                case 44: // fragment header, fixed 8 bytes
                    guard bytes.count >= offset + 8 else { return nil }
                    next = bytes[offset]
                    fragmented = true
                    offset += 8
                    extensionHeaders += 1
                default:
                    extensionHeaders = 8
                }
            }
            guard offset <= bytes.count else { return nil }
            hasher.mix(next)
            if !fragmented { mixPorts(next, at: offset, of: bytes, into: &hasher) }
        default:
            return nil
        }
        return FlowKey(rawValue: hasher.value)
    }

    private static func mixPorts(_ proto: UInt8, at offset: Int, of bytes: UnsafeRawBufferPointer,
                                 into hasher: inout FNV1a) {
        guard proto == 6 || proto == 17 || proto == 136 || proto == 132, bytes.count >= offset + 4 else { return }
        for index in offset..<(offset + 4) { hasher.mix(bytes[index]) }
    }
}

/// 64-bit FNV-1a with a final avalanche (splitmix64 finaliser) so nearby tuples spread well.
struct FNV1a {
    private(set) var state: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func mix(_ byte: UInt8) {
        state = (state ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
    }
    var value: UInt64 { mix64(state) }
}

/// splitmix64 finaliser: a bijective avalanche used for rendezvous scores and hashing.
@inline(__always) func mix64(_ input: UInt64) -> UInt64 {
    var z = input &+ 0x9e37_79b9_7f4a_7c15
    z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    return z ^ (z >> 31)
}
