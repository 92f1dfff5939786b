import Testing
@testable import TriglavDataPlane

/// Cutting what an `IFF_VNET_HDR` TUN with TSO hands over into plain packets (`OffloadedRead`; docs/DATAPLANE.md,
/// "TUN offloads"). The checksums are verified with a byte-wise RFC 1071 sum written here, independent of
/// `InternetChecksum`.
@Suite struct TunOffloadTests {
    /// The ones'-complement sum of big-endian 16-bit words, byte by byte.
    static func referenceSum(_ bytes: [UInt8]) -> UInt32 {
        var sum: UInt32 = 0
        var index = 0
        while index + 1 < bytes.count {
            sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
            index += 2
        }
        if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        return sum
    }

    static func word(_ packet: [UInt8], _ offset: Int) -> Int { Int(packet[offset]) << 8 | Int(packet[offset + 1]) }

    /// The transport pseudo-header (RFC 793 / RFC 8200 §8.1) for a packet whose transport header starts at `start`.
    static func pseudoHeader(_ packet: [UInt8], transportStart start: Int, protocolNumber: UInt8) -> [UInt8] {
        let length = packet.count - start
        if packet[0] >> 4 == 4 {
            return Array(packet[12..<20]) + [0, protocolNumber, UInt8(length >> 8), UInt8(length & 0xff)]
        }
        return Array(packet[8..<40]) + [0, 0, UInt8(length >> 8), UInt8(length & 0xff), 0, 0, 0, protocolNumber]
    }

    /// Whether the transport checksum verifies (the sum over pseudo-header and segment is all ones).
    static func transportChecksumVerifies(_ packet: [UInt8], transportStart start: Int, protocolNumber: UInt8) -> Bool {
        referenceSum(pseudoHeader(packet, transportStart: start, protocolNumber: protocolNumber) + Array(packet[start...])) == 0xffff
    }

    /// A TCP packet (IPv4 with `ipOptions` extra header bytes, or IPv6) carrying `payload`, TCP options of
    /// `tcpOptions` bytes, sequence `sequence`, flags `flags`, checksum fields zero.
    static func tcpPacket(ipv6: Bool, payload: [UInt8], sequence: UInt32 = 0xfffff000, flags: UInt8 = 0x18,
                          ipOptions: Int = 0, tcpOptions: Int = 12) -> [UInt8] {
        let tcpLength = 20 + tcpOptions
        var ip: [UInt8]
        if ipv6 {
            ip = [0x60, 0, 0, 0, 0, 0, 6, 64]
            ip += (0..<16).map { UInt8($0 + 1) } + (0..<16).map { UInt8(0xa0 + $0) }
            let payloadLength = tcpLength + payload.count
            ip[4] = UInt8(payloadLength >> 8); ip[5] = UInt8(payloadLength & 0xff)
        } else {
            let headerLength = 20 + ipOptions
            let total = headerLength + tcpLength + payload.count
            ip = [0x40 | UInt8(headerLength / 4), 0x02, UInt8(total >> 8), UInt8(total & 0xff), 0x12, 0x34, 0x40, 0, 64, 6, 0, 0,
                  10, 77, 0, 2, 172, 31, 0, 2] + [UInt8](repeating: 1, count: ipOptions) // NOP options
        }
        var tcp: [UInt8] = [0xc0, 0x01, 0x14, 0x51]
        tcp += [UInt8(sequence >> 24), UInt8((sequence >> 16) & 0xff), UInt8((sequence >> 8) & 0xff), UInt8(sequence & 0xff)]
        tcp += [0, 0, 0, 7, UInt8(tcpLength / 4) << 4, flags, 0xff, 0xff, 0, 0, 0, 0]
        tcp += [UInt8](repeating: 1, count: tcpOptions)
        return ip + tcp + payload
    }

    static func read(header: VirtioNetHeader, packet: [UInt8]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: VirtioNetHeader.size)
        bytes.withUnsafeMutableBytes { header.serialize(into: $0) }
        return bytes + packet
    }

    /// Every packet `read` becomes, cut into 2048-byte buffers.
    static func segments(of read: [UInt8], room: Int = 2048) throws -> [[UInt8]] {
        try read.withUnsafeBytes { bytes in
            let offloaded = try OffloadedRead(bytes)
            var output = [UInt8](repeating: 0xee, count: room)
            return try (0..<offloaded.segmentCount).map { index in
                let length = try output.withUnsafeMutableBytes { try offloaded.writeSegment(index, into: $0) }
                return Array(output[..<length])
            }
        }
    }

    @Test("a TCP super-packet becomes segments of the GSO size: lengths, IDs, sequence numbers, flags, checksums",
          arguments: [false, true])
    func superPacketSplitsIntoValidSegments(ipv6: Bool) throws {
        let payload = (0..<5000).map { UInt8(truncatingIfNeeded: $0 * 7 + 3) }
        let ipOptions = ipv6 ? 0 : 4
        // PSH and FIN and CWR set on the super-packet; the kernel's partial checksum in the TCP header is ignored.
        let packet = Self.tcpPacket(ipv6: ipv6, payload: payload, flags: 0x80 | 0x18 | 0x01, ipOptions: ipOptions)
        let transport = (ipv6 ? 40 : 20) + ipOptions
        let header = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, gsoType: ipv6 ? VirtioNetHeader.gsoTCPv6 : VirtioNetHeader.gsoTCPv4,
                                     headerLength: UInt16(transport + 32), gsoSize: 1388,
                                     checksumStart: UInt16(transport), checksumOffset: 16)
        let segments = try Self.segments(of: Self.read(header: header, packet: packet))
        #expect(segments.count == 4)
        var rebuilt: [UInt8] = []
        for (index, segment) in segments.enumerated() {
            let chunk = index < 3 ? 1388 : 5000 - 3 * 1388
            #expect(segment.count == transport + 32 + chunk)
            if ipv6 {
                #expect(Self.word(segment, 4) == segment.count - 40)
            } else {
                #expect(Self.word(segment, 2) == segment.count)
                #expect(Self.word(segment, 4) == 0x1234 + index)
                #expect(Self.referenceSum(Array(segment[..<transport])) == 0xffff, "IPv4 header checksum of segment \(index)")
            }
            let sequence = UInt32(Self.word(segment, transport + 4)) << 16 | UInt32(Self.word(segment, transport + 6))
            #expect(sequence == 0xfffff000 &+ UInt32(index * 1388))
            let flags = segment[transport + 13]
            #expect(flags & 0x80 == (index == 0 ? 0x80 : 0), "CWR only on the first")
            #expect(flags & 0x09 == (index == 3 ? 0x09 : 0), "FIN and PSH only on the last")
            #expect(flags & 0x10 == 0x10, "ACK on every segment")
            #expect(Self.transportChecksumVerifies(segment, transportStart: transport, protocolNumber: 6), "TCP checksum of segment \(index)")
            #expect(Array(segment[transport..<(transport + 4)]) == Array(packet[transport..<(transport + 4)]), "ports kept")
            rebuilt += segment[(transport + 32)...]
        }
        #expect(rebuilt == payload)
    }

    @Test("a packet without GSO whose checksum is left to us gets it completed (UDP over IPv4 and IPv6, TCP, odd length)",
          arguments: [false, true])
    func partialChecksumIsCompleted(ipv6: Bool) throws {
        for (protocolNumber, payloadLength) in [(UInt8(17), 101), (UInt8(17), 1), (UInt8(6), 333)] {
            var packet: [UInt8]
            let transport = ipv6 ? 40 : 20
            let checksumField: Int
            if protocolNumber == 6 {
                packet = Self.tcpPacket(ipv6: ipv6, payload: (0..<payloadLength).map { UInt8(truncatingIfNeeded: $0) }, tcpOptions: 0)
                checksumField = 16
            } else {
                packet = Self.tcpPacket(ipv6: ipv6, payload: [], tcpOptions: 0)
                packet = Array(packet[..<transport])
                if ipv6 { packet[6] = 17 } else { packet[9] = 17 }
                let length = 8 + payloadLength
                packet += [0x30, 0x39, 0x01, 0xbb, UInt8(length >> 8), UInt8(length & 0xff), 0, 0]
                packet += (0..<payloadLength).map { UInt8(truncatingIfNeeded: 255 - $0) }
                if ipv6 {
                    packet[4] = UInt8(length >> 8); packet[5] = UInt8(length & 0xff)
                } else {
                    packet[2] = UInt8((transport + length) >> 8); packet[3] = UInt8((transport + length) & 0xff)
                }
                checksumField = 6
            }
            // What the kernel leaves: the pseudo-header's sum, not complemented.
            let partial = Self.referenceSum(Self.pseudoHeader(packet, transportStart: transport, protocolNumber: protocolNumber))
            packet[transport + checksumField] = UInt8(partial >> 8)
            packet[transport + checksumField + 1] = UInt8(partial & 0xff)
            let header = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, checksumStart: UInt16(transport),
                                         checksumOffset: UInt16(checksumField))
            let segments = try Self.segments(of: Self.read(header: header, packet: packet))
            #expect(segments.count == 1)
            let segment = try #require(segments.first)
            #expect(segment.count == packet.count)
            #expect(Self.transportChecksumVerifies(segment, transportStart: transport, protocolNumber: protocolNumber),
                    "protocol \(protocolNumber), \(payloadLength) bytes")
            var unchanged = segment
            unchanged[transport + checksumField] = packet[transport + checksumField]
            unchanged[transport + checksumField + 1] = packet[transport + checksumField + 1]
            #expect(unchanged == packet, "only the checksum changes")
        }
    }

    @Test("a UDP checksum that computes to 0 is sent as 0xffff (0 would mean none, which IPv6 refuses)")
    func udpChecksumZeroBecomesAllOnes() throws {
        // An IPv6 UDP datagram whose last two payload bytes make the whole sum 0xffff, so the checksum computes to 0.
        var packet = Self.tcpPacket(ipv6: true, payload: [], tcpOptions: 0)
        packet = Array(packet[..<40])
        packet[6] = 17
        packet += [0x30, 0x39, 0x01, 0xbb, 0, 12, 0, 0, 0x12, 0x34, 0, 0]
        packet[4] = 0; packet[5] = 12
        let partial = Self.referenceSum(Self.pseudoHeader(packet, transportStart: 40, protocolNumber: 17))
        let rest = Self.referenceSum(Self.pseudoHeader(packet, transportStart: 40, protocolNumber: 17) + Array(packet[40...]))
        let filler = UInt16(0xffff - rest)
        packet[50] = UInt8(filler >> 8); packet[51] = UInt8(filler & 0xff)
        packet[46] = UInt8(partial >> 8); packet[47] = UInt8(partial & 0xff)
        let header = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, checksumStart: 40, checksumOffset: 6)
        let segment = try #require(try Self.segments(of: Self.read(header: header, packet: packet)).first)
        #expect(Self.word(segment, 46) == 0xffff)
        #expect(Self.transportChecksumVerifies(segment, transportStart: 40, protocolNumber: 17))
    }

    @Test("a plain packet with a header that asks for nothing passes unchanged")
    func plainPacketPassesUnchanged() throws {
        let packet = Self.tcpPacket(ipv6: false, payload: [1, 2, 3])
        let segments = try Self.segments(of: Self.read(header: VirtioNetHeader(), packet: packet))
        #expect(segments == [packet])
    }

    @Test("a GSO packet no larger than one segment is one packet with its checksum complete")
    func smallGSOPacketIsOneSegment() throws {
        let packet = Self.tcpPacket(ipv6: false, payload: [UInt8](repeating: 9, count: 1000))
        let header = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, gsoType: VirtioNetHeader.gsoTCPv4 | VirtioNetHeader.gsoECNFlag,
                                     gsoSize: 1388, checksumStart: 20, checksumOffset: 16)
        let segments = try Self.segments(of: Self.read(header: header, packet: packet))
        #expect(segments.count == 1)
        let segment = try #require(segments.first)
        #expect(Self.transportChecksumVerifies(segment, transportStart: 20, protocolNumber: 6))
    }

    @Test("malformed reads are refused with what was wrong, never read past the buffer")
    func malformedReadsAreRefused() throws {
        let packet = Self.tcpPacket(ipv6: false, payload: [UInt8](repeating: 9, count: 3000))
        let gso = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, gsoType: VirtioNetHeader.gsoTCPv4, gsoSize: 1000,
                                  checksumStart: 20, checksumOffset: 16)
        func error(_ read: [UInt8], room: Int = 2048) -> TunOffloadError? {
            do {
                _ = try Self.segments(of: read, room: room)
                return nil
            } catch let error as TunOffloadError {
                return error
            } catch {
                return nil
            }
        }
        #expect(error([1, 2, 3]) == .truncated(length: 3))
        #expect(error(Self.read(header: VirtioNetHeader(), packet: [0x45, 0, 0, 20])) == .truncated(length: 14))
        var udpGSO = gso
        udpGSO.gsoType = 5 // UDP_L4: not offered to the device
        #expect(error(Self.read(header: udpGSO, packet: packet)) == .unsupportedGSOType(5))
        var outside = gso
        outside.checksumStart = UInt16(packet.count - 1)
        #expect(error(Self.read(header: outside, packet: packet)) == .badChecksumPlacement(start: packet.count - 1, offset: 16, length: packet.count))
        var wrongVersion = gso
        wrongVersion.gsoType = VirtioNetHeader.gsoTCPv6
        #expect(error(Self.read(header: wrongVersion, packet: packet)) == .badTCPHeader)
        var noChecksum = gso
        noChecksum.flags = 0
        #expect(error(Self.read(header: noChecksum, packet: packet)) == .badTCPHeader)
        var badDataOffset = packet
        badDataOffset[20 + 12] = 0xf0 // 60-byte TCP header claimed, fine; 4 bytes claimed is not
        badDataOffset[20 + 12] = 0x10
        #expect(error(Self.read(header: gso, packet: badDataOffset)) == .badTCPHeader)
        #expect(error(Self.read(header: gso, packet: packet), room: 1000) == .segmentTooLarge(length: 20 + 32 + 1000, room: 1000))
    }

    @Test("InternetChecksum.sum agrees with the byte-wise sum for every length and alignment")
    func checksumAgreesWithReference() {
        let bytes = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 151 &+ 17) }
        for start in 0..<4 {
            for end in stride(from: start, through: bytes.count, by: 7) {
                let slice = Array(bytes[start..<end])
                let sum = slice.withUnsafeBytes { InternetChecksum.fold(InternetChecksum.sum($0)) }
                #expect(UInt32(sum) == Self.referenceSum(slice) || (sum == 0xffff && Self.referenceSum(slice) == 0)
                        || (sum == 0 && Self.referenceSum(slice) == 0xffff), "bytes \(start)..<\(end)")
            }
        }
    }

    // MARK: Joining segments on the way to the TUN (`TunWriteCoalescer`)

    /// The segments the kernel would make of a super-packet of `payload` bytes (valid checksums), cut by `OffloadedRead`.
    static func validSegments(ipv6: Bool, payload: Int, size: Int = 1388, sequence: UInt32 = 0xfffff000, flags: UInt8 = 0x18) throws -> [[UInt8]] {
        let packet = tcpPacket(ipv6: ipv6, payload: (0..<payload).map { UInt8(truncatingIfNeeded: $0 * 13 + 1) },
                               sequence: sequence, flags: flags)
        let transport = ipv6 ? 40 : 20
        let header = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, gsoType: ipv6 ? VirtioNetHeader.gsoTCPv6 : VirtioNetHeader.gsoTCPv4,
                                     gsoSize: UInt16(size), checksumStart: UInt16(transport), checksumOffset: 16)
        return try segments(of: read(header: header, packet: packet))
    }

    /// What the coalescer writes for `packets` (each write: virtio-net header and packet).
    static func written(_ packets: [[UInt8]], coalescer: TunWriteCoalescer = TunWriteCoalescer()) -> [[UInt8]] {
        var writes: [[UInt8]] = []
        for packet in packets {
            packet.withUnsafeBytes { bytes in coalescer.add(bytes) { writes.append(Array($0)) } }
        }
        coalescer.flush { writes.append(Array($0)) }
        return writes
    }

    @Test("consecutive segments of one flow are written as one super-packet that cuts back into the same segments",
          arguments: [false, true])
    func segmentsJoinIntoASuperPacket(ipv6: Bool) throws {
        let segments = try Self.validSegments(ipv6: ipv6, payload: 20_000)
        #expect(segments.count == 15)
        let coalescer = TunWriteCoalescer()
        let writes = Self.written(segments, coalescer: coalescer)
        #expect(writes.count == 1)
        let write = try #require(writes.first)
        let header = try write.withUnsafeBytes { try VirtioNetHeader(parsing: $0) }
        let transport = ipv6 ? 40 : 20
        #expect(header == VirtioNetHeader(flags: VirtioNetHeader.needsChecksum,
                                          gsoType: ipv6 ? VirtioNetHeader.gsoTCPv6 : VirtioNetHeader.gsoTCPv4,
                                          headerLength: UInt16(transport + 32), gsoSize: 1388,
                                          checksumStart: UInt16(transport), checksumOffset: 16))
        let packet = Array(write[VirtioNetHeader.size...])
        #expect(packet.count == transport + 32 + 20_000)
        if ipv6 {
            #expect(Self.word(packet, 4) == packet.count - 40)
        } else {
            #expect(Self.word(packet, 2) == packet.count)
            #expect(Self.referenceSum(Array(packet[..<20])) == 0xffff, "IPv4 header checksum")
        }
        // The partial checksum: the pseudo-header's sum over the whole segment, not complemented.
        let pseudo = Self.referenceSum(Self.pseudoHeader(packet, transportStart: transport, protocolNumber: 6))
        #expect(Self.word(packet, transport + 16) == Int(pseudo))
        #expect(try Self.segments(of: write) == segments, "cut again, the super-packet gives back the segments")
        #expect(coalescer.superPackets == 1 && coalescer.joinedSegments == 15)
    }

    @Test("what may not be joined is written alone, in order: other flows, gaps, PSH, a bad checksum, a longer segment, not TCP")
    func segmentsThatMayNotJoinAreWrittenAlone() throws {
        let flow = try Self.validSegments(ipv6: false, payload: 5 * 1388)
        // Another flow: other ports.
        var other = flow
        for index in other.indices {
            other[index][20] = 0x99
            other[index][36] = 0; other[index][37] = 0
            let checksum = ~UInt16(Self.referenceSum(Self.pseudoHeader(other[index], transportStart: 20, protocolNumber: 6)
                                                     + Array(other[index][20...])))
            other[index][36] = UInt8(checksum >> 8); other[index][37] = UInt8(checksum & 0xff)
        }
        // Interleaved flows: no two neighbours are of one flow.
        let interleaved = Self.written([flow[0], other[0], flow[1], other[1]])
        #expect(interleaved.map { Array($0[VirtioNetHeader.size...]) } == [flow[0], other[0], flow[1], other[1]])
        #expect(interleaved.allSatisfy { $0[0] == 0 && $0[1] == VirtioNetHeader.gsoNone }, "plain headers")
        // A gap: 0-1 joined, 3-4 joined.
        #expect(Self.written([flow[0], flow[1], flow[3], flow[4]]).count == 2)
        // A bad checksum: written alone after the run, and not joined to by what follows.
        var corrupt = flow[2]
        corrupt[100] ^= 0xff
        let withCorrupt = Self.written([flow[0], flow[1], corrupt, flow[3]])
        #expect(withCorrupt.count == 3)
        #expect(Array(withCorrupt[1][VirtioNetHeader.size...]) == corrupt)
        // PSH ends a run (the cut puts it on the last segment only): one run, then a new one.
        let pushed = try Self.validSegments(ipv6: false, payload: 3 * 1388, flags: 0x18)
        let next = try Self.validSegments(ipv6: false, payload: 2 * 1388, sequence: 0xfffff000 &+ 3 * 1388, flags: 0x10)
        #expect(Self.written(pushed + next).count == 2)
        // A segment after a shorter one, or longer than the first, starts a new run.
        let short = try Self.validSegments(ipv6: false, payload: 1388 + 500, flags: 0x10)
        let after = try Self.validSegments(ipv6: false, payload: 1388, sequence: 0xfffff000 &+ 1888, flags: 0x10)
        #expect(Self.written(short + after).count == 2)
        let small = try Self.validSegments(ipv6: false, payload: 1000, flags: 0x10)
        let large = try Self.validSegments(ipv6: false, payload: 1388, sequence: 0xfffff000 &+ 1000, flags: 0x10)
        #expect(Self.written(small + large).count == 2)
        // Not TCP: written alone, unchanged.
        var udp = flow[0]
        udp[9] = 17
        #expect(Self.written([udp]).map { Array($0[VirtioNetHeader.size...]) } == [udp])
    }
}
