import Testing
@testable import TriglavMultipath

/// Builds an IPv4 packet with a TCP/UDP header (checksums irrelevant to flow keys).
func ipv4Packet(source: UInt32, destination: UInt32, proto: UInt8, sourcePort: UInt16, destinationPort: UInt16,
                payload: Int = 20, fragmentBits: UInt16 = 0) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 20 + 8 + payload)
    bytes[0] = 0x45
    let total = UInt16(bytes.count)
    bytes[2] = UInt8(total >> 8); bytes[3] = UInt8(total & 0xff)
    bytes[6] = UInt8(fragmentBits >> 8); bytes[7] = UInt8(fragmentBits & 0xff)
    bytes[8] = 64
    bytes[9] = proto
    for i in 0..<4 {
        bytes[12 + i] = UInt8(truncatingIfNeeded: source >> (24 - 8 * UInt32(i)))
        bytes[16 + i] = UInt8(truncatingIfNeeded: destination >> (24 - 8 * UInt32(i)))
    }
    bytes[20] = UInt8(sourcePort >> 8); bytes[21] = UInt8(sourcePort & 0xff)
    bytes[22] = UInt8(destinationPort >> 8); bytes[23] = UInt8(destinationPort & 0xff)
    return bytes
}

func ipv6Packet(sourceLow: UInt8, proto: UInt8, sourcePort: UInt16, destinationPort: UInt16,
                extensionHeader: UInt8? = nil) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 40)
    bytes[0] = 0x60
    bytes[6] = extensionHeader ?? proto
    bytes[7] = 64
    bytes[8] = 0x20; bytes[9] = 0x01; bytes[23] = sourceLow
    bytes[24] = 0x20; bytes[25] = 0x01; bytes[39] = 2
    if let header = extensionHeader {
        var ext = [UInt8](repeating: 0, count: 8)
        ext[0] = proto
        if header == 44 { ext[2] = 0; ext[3] = 0 } // first fragment
        bytes += ext
    }
    bytes += [UInt8(sourcePort >> 8), UInt8(sourcePort & 0xff), UInt8(destinationPort >> 8), UInt8(destinationPort & 0xff)]
    bytes += [UInt8](repeating: 0, count: 16)
    return bytes
}

@Suite struct FlowKeyTests {
    @Test func sameTupleSameKeyDifferentPortDifferentKey() throws {
        let a = ipv4Packet(source: 0x0a00_0001, destination: 0x0a00_0002, proto: 6, sourcePort: 40000, destinationPort: 443)
        var b = a
        b[30] ^= 0xff // payload byte: not part of the key
        let c = ipv4Packet(source: 0x0a00_0001, destination: 0x0a00_0002, proto: 6, sourcePort: 40001, destinationPort: 443)
        let keyA = try #require(FlowKey(packet: a))
        #expect(FlowKey(packet: b) == keyA)
        #expect(FlowKey(packet: c) != keyA)
    }

    @Test func ipv4FragmentsShareAKeyWithoutPorts() throws {
        let first = ipv4Packet(source: 1, destination: 2, proto: 17, sourcePort: 1, destinationPort: 2, fragmentBits: 0x2000)
        let later = ipv4Packet(source: 1, destination: 2, proto: 17, sourcePort: 9, destinationPort: 9, fragmentBits: 0x0010)
        let firstKey = try #require(FlowKey(packet: first))
        #expect(FlowKey(packet: later) == firstKey)
    }

    @Test func ipv6WithAndWithoutExtensionHeaders() throws {
        let plain = try #require(FlowKey(packet: ipv6Packet(sourceLow: 1, proto: 6, sourcePort: 5, destinationPort: 80)))
        let otherPort = try #require(FlowKey(packet: ipv6Packet(sourceLow: 1, proto: 6, sourcePort: 6, destinationPort: 80)))
        #expect(plain != otherPort)
        let withDestinationOptions = try #require(FlowKey(packet: ipv6Packet(sourceLow: 1, proto: 6, sourcePort: 5,
                                                                              destinationPort: 80, extensionHeader: 60)))
        #expect(withDestinationOptions == plain)
        let fragment = FlowKey(packet: ipv6Packet(sourceLow: 1, proto: 6, sourcePort: 5, destinationPort: 80, extensionHeader: 44))
        #expect(fragment != nil && fragment != plain)
    }

    @Test func rejectsMalformedHeadersWithoutTrapping() {
        #expect(FlowKey(packet: []) == nil)
        #expect(FlowKey(packet: [0x45]) == nil)
        #expect(FlowKey(packet: [UInt8](repeating: 0, count: 40)) == nil) // version 0
        var badIHL = ipv4Packet(source: 1, destination: 2, proto: 6, sourcePort: 1, destinationPort: 2)
        badIHL[0] = 0x44 // IHL 4 < 5
        #expect(FlowKey(packet: badIHL) == nil)
        badIHL[0] = 0x4f // IHL 15 = 60 bytes > packet
        #expect(FlowKey(packet: Array(badIHL.prefix(40))) == nil)
        // Truncated at every length, and random garbage: never traps.
        let full = ipv6Packet(sourceLow: 3, proto: 17, sourcePort: 1, destinationPort: 2, extensionHeader: 0)
        for length in 0...full.count { _ = FlowKey(packet: Array(full.prefix(length))) }
        var rng = SplitMix64(seed: 7)
        for _ in 0..<5000 {
            let length = Int(rng.next() % 120)
            var bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if length > 0 { bytes[0] = rng.next() % 2 == 0 ? 0x45 : 0x60 | (bytes[0] & 0x0f) }
            _ = FlowKey(packet: bytes)
        }
        // An IPv6 packet whose extension-header chain claims more bytes than present.
        var lying = ipv6Packet(sourceLow: 3, proto: 6, sourcePort: 1, destinationPort: 2, extensionHeader: 0)
        lying[41] = 200
        #expect(FlowKey(packet: lying) == nil)
    }
}
