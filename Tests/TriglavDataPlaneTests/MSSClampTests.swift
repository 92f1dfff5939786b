import Testing
@testable import TriglavDataPlane

/// `MSSClamp`: the MSS option of SYNs through the client's TUN lowered to what the tunnel's MTU carries, the checksum
/// still valid (checked with `TunOffloadTests`' byte-wise reference sum, not `InternetChecksum`).
@Suite struct MSSClampTests {
    /// A SYN (`flags`) whose TCP options are `options` (a multiple of 4 bytes), with a valid TCP checksum.
    static func segment(ipv6: Bool, options: [UInt8], flags: UInt8 = 0x02, payload: [UInt8] = []) -> [UInt8] {
        var packet = TunOffloadTests.tcpPacket(ipv6: ipv6, payload: payload, flags: flags, tcpOptions: options.count)
        let transport = ipv6 ? 40 : 20
        packet.replaceSubrange((transport + 20)..<(transport + 20 + options.count), with: options)
        let pseudo = TunOffloadTests.pseudoHeader(packet, transportStart: transport, protocolNumber: 6)
        let sum = TunOffloadTests.referenceSum(pseudo + Array(packet[transport...]))
        packet[transport + 16] = UInt8((~sum & 0xffff) >> 8)
        packet[transport + 17] = UInt8(~sum & 0xff)
        return packet
    }

    static func clamp(_ packet: inout [UInt8], mtu: Int) -> Bool {
        packet.withUnsafeMutableBytes { MSSClamp.clamp($0, mtu: mtu) }
    }

    static func mss(_ packet: [UInt8], at offset: Int) -> Int { TunOffloadTests.word(packet, offset) }

    static let mss1460: [UInt8] = [2, 4, 0x05, 0xb4]

    @Test("a SYN's MSS above the TUN's becomes MTU − 40 (IPv4) / − 60 (IPv6); the checksum verifies", arguments: [false, true])
    func lowersTheMSSOfASYN(ipv6: Bool) {
        let transport = ipv6 ? 40 : 20
        // MSS first, then SACK-permitted, timestamps and window scale, as Linux sends them.
        var packet = Self.segment(ipv6: ipv6, options: Self.mss1460 + [4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7])
        #expect(TunOffloadTests.transportChecksumVerifies(packet, transportStart: transport, protocolNumber: 6))
        #expect(Self.clamp(&packet, mtu: 1400))
        #expect(Self.mss(packet, at: transport + 22) == (ipv6 ? 1340 : 1360))
        #expect(TunOffloadTests.transportChecksumVerifies(packet, transportStart: transport, protocolNumber: 6))
    }

    @Test("an MSS at an odd offset (after one NOP) and a SYN-ACK are clamped too; the checksum still verifies")
    func oddOffsetAndSynAck() {
        var packet = Self.segment(ipv6: false, options: [1] + Self.mss1460 + [1, 1, 0], flags: 0x12)
        #expect(Self.clamp(&packet, mtu: 1280))
        #expect(Self.mss(packet, at: 20 + 23) == 1240)
        #expect(TunOffloadTests.transportChecksumVerifies(packet, transportStart: 20, protocolNumber: 6))
    }

    @Test("left as they are: an MSS that fits, no MSS option, a segment without SYN, a malformed option list")
    func leavesOthersAlone() {
        let cases: [(options: [UInt8], flags: UInt8)] = [
            ([2, 4, 0x05, 0x00], 0x02),          // 1280 ≤ 1392
            ([1, 1, 1, 1], 0x02),                // no MSS option
            (Self.mss1460, 0x10),                // a plain ACK carrying the option bytes
            ([0] + Self.mss1460.dropLast(), 0x02), // end of options before the MSS
            ([3, 9, 1, 1] + Self.mss1460, 0x02), // an option whose length runs past the header
            ([2, 5, 0x05, 0xb4, 0, 0, 0, 0], 0x02), // an MSS option of the wrong length
            ([8, 1, 1, 1], 0x02),                // a length below 2
        ]
        for (options, flags) in cases {
            var packet = Self.segment(ipv6: false, options: options, flags: flags)
            let before = packet
            #expect(!Self.clamp(&packet, mtu: 1432), "\(options) flags \(flags)")
            #expect(packet == before)
        }
    }

    @Test("not TCP, fragments, truncated and random packets: nothing changes and nothing traps")
    func neverTrapsOnGarbage() {
        var udp = Self.segment(ipv6: false, options: Self.mss1460)
        udp[9] = 17
        var fragment = Self.segment(ipv6: false, options: Self.mss1460)
        fragment[6] = 0x20  // more fragments
        for var packet in [udp, fragment, Array(Self.segment(ipv6: true, options: Self.mss1460).prefix(60)), [], [0x45], [0x60, 0, 0]] {
            let before = packet
            #expect(!Self.clamp(&packet, mtu: 1280))
            #expect(packet == before)
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var packet = Self.segment(ipv6: Bool.random(using: &generator), options: (0..<12).map { _ in UInt8.random(in: 0...255, using: &generator) })
            for _ in 0..<3 { packet[Int.random(in: 0..<packet.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator) }
            _ = Self.clamp(&packet, mtu: Int.random(in: 0...2000, using: &generator))
        }
    }
}
