/// What a TUN device opened with `IFF_VNET_HDR` and TSO offloads (`TUNSETOFFLOAD` with `TUN_F_CSUM`,
/// `TUN_F_TSO4`, `TUN_F_TSO6`) hands over, turned back into the plain IP packets the tunnel carries. The kernel
/// then gives one read per TCP super-packet (up to 64 KiB of one flow) instead of one per segment, and leaves
/// transport checksums for us to complete: the per-packet read syscall is what bounds a userspace tunnel's
/// throughput, so this is the wireguard-go/Tailscale technique of splitting in userspace. Sans-IO: pure functions
/// over byte buffers.
///
/// Every read starts with a `virtio_net_hdr` (10 bytes, native byte order on a little-endian host, as
/// `TUNSETVNETLE` is not set): flags, GSO type, header length, segment size, checksum start and offset.
struct VirtioNetHeader: Equatable {
    static let size = 10
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the transport checksum at `checksumStart + checksumOffset` holds only the
    /// pseudo-header sum; the rest is ours to add.
    static let needsChecksum: UInt8 = 1
    static let gsoNone: UInt8 = 0
    static let gsoTCPv4: UInt8 = 1
    static let gsoTCPv6: UInt8 = 4
    /// `VIRTIO_NET_HDR_GSO_ECN`, or'ed into the type: the flow uses ECN (CWR only on the first segment, which
    /// the split does anyway).
    static let gsoECNFlag: UInt8 = 0x80

    var flags: UInt8 = 0
    var gsoType: UInt8 = VirtioNetHeader.gsoNone
    var headerLength: UInt16 = 0
    var gsoSize: UInt16 = 0
    var checksumStart: UInt16 = 0
    var checksumOffset: UInt16 = 0

    init(flags: UInt8 = 0, gsoType: UInt8 = VirtioNetHeader.gsoNone, headerLength: UInt16 = 0, gsoSize: UInt16 = 0,
         checksumStart: UInt16 = 0, checksumOffset: UInt16 = 0) {
        self.flags = flags
        self.gsoType = gsoType
        self.headerLength = headerLength
        self.gsoSize = gsoSize
        self.checksumStart = checksumStart
        self.checksumOffset = checksumOffset
    }

    init(parsing bytes: UnsafeRawBufferPointer) throws(TunOffloadError) {
        guard bytes.count >= Self.size else { throw .truncated(length: bytes.count) }
        flags = bytes[0]
        gsoType = bytes[1]
        headerLength = bytes.loadUnaligned(fromByteOffset: 2, as: UInt16.self)
        gsoSize = bytes.loadUnaligned(fromByteOffset: 4, as: UInt16.self)
        checksumStart = bytes.loadUnaligned(fromByteOffset: 6, as: UInt16.self)
        checksumOffset = bytes.loadUnaligned(fromByteOffset: 8, as: UInt16.self)
    }

    func serialize(into bytes: UnsafeMutableRawBufferPointer) {
        bytes[0] = flags
        bytes[1] = gsoType
        bytes.storeBytes(of: headerLength, toByteOffset: 2, as: UInt16.self)
        bytes.storeBytes(of: gsoSize, toByteOffset: 4, as: UInt16.self)
        bytes.storeBytes(of: checksumStart, toByteOffset: 6, as: UInt16.self)
        bytes.storeBytes(of: checksumOffset, toByteOffset: 8, as: UInt16.self)
    }
}

/// Why a TUN read couldn't be turned into packets; the read is dropped and counted.
enum TunOffloadError: Error, Equatable, CustomStringConvertible {
    case truncated(length: Int)
    case unsupportedGSOType(UInt8)
    case badChecksumPlacement(start: Int, offset: Int, length: Int)
    case badTCPHeader
    case segmentTooLarge(length: Int, room: Int)

    var description: String {
        switch self {
        case .truncated(let length): "TUN read of \(length) bytes is shorter than its virtio-net header and an IP header"
        case .unsupportedGSOType(let type): "TUN read with GSO type \(type), which the device was not offered"
        case .badChecksumPlacement(let start, let offset, let length):
            "TUN read asks for a checksum at \(start)+\(offset) in a \(length)-byte packet"
        case .badTCPHeader: "TUN super-packet without a whole TCP header of the IP version its GSO type names"
        case .segmentTooLarge(let length, let room): "a \(length)-byte segment doesn't fit the \(room)-byte packet buffer"
        }
    }
}

/// One TUN read (after its virtio-net header) and how to cut it into packets.
struct OffloadedRead {
    let header: VirtioNetHeader
    /// The IP packet or TCP super-packet.
    let packet: UnsafeRawBufferPointer
    /// Packets it becomes: 1 without GSO.
    let segmentCount: Int
    private let transportOffset: Int
    private let headersLength: Int

    init(_ read: UnsafeRawBufferPointer) throws(TunOffloadError) {
        header = try VirtioNetHeader(parsing: read)
        packet = UnsafeRawBufferPointer(rebasing: read[VirtioNetHeader.size...])
        guard packet.count >= 20 else { throw .truncated(length: read.count) }
        let start = Int(header.checksumStart), offset = Int(header.checksumOffset)
        if header.flags & VirtioNetHeader.needsChecksum != 0 {
            guard start + offset + 2 <= packet.count else {
                throw .badChecksumPlacement(start: start, offset: offset, length: packet.count)
            }
        }
        switch header.gsoType & ~VirtioNetHeader.gsoECNFlag {
        case VirtioNetHeader.gsoNone:
            segmentCount = 1
            transportOffset = start
            headersLength = 0
        case VirtioNetHeader.gsoTCPv4, VirtioNetHeader.gsoTCPv6:
            let version: UInt8 = header.gsoType & ~VirtioNetHeader.gsoECNFlag == VirtioNetHeader.gsoTCPv4 ? 4 : 6
            // The TCP header is where the checksum starts (any IPv4 options or IPv6 extension headers before it).
            guard header.flags & VirtioNetHeader.needsChecksum != 0, packet[0] >> 4 == version, offset == 16,
                  start >= (version == 4 ? 20 : 40), start + 20 <= packet.count else { throw .badTCPHeader }
            let tcpHeaderLength = Int(packet[start + 12] >> 4) * 4
            guard tcpHeaderLength >= 20, start + tcpHeaderLength <= packet.count else { throw .badTCPHeader }
            transportOffset = start
            headersLength = start + tcpHeaderLength
            let payload = packet.count - headersLength
            let size = Int(header.gsoSize)
            segmentCount = size == 0 || payload <= size ? 1 : (payload + size - 1) / size
        default:
            throw .unsupportedGSOType(header.gsoType)
        }
    }

    /// Writes packet `index` (< `segmentCount`) into `output`, with every checksum complete; returns its length.
    func writeSegment(_ index: Int, into output: UnsafeMutableRawBufferPointer) throws(TunOffloadError) -> Int {
        guard header.gsoType & ~VirtioNetHeader.gsoECNFlag != VirtioNetHeader.gsoNone else {
            guard packet.count <= output.count else { throw .segmentTooLarge(length: packet.count, room: output.count) }
            output.copyMemory(from: packet)
            if header.flags & VirtioNetHeader.needsChecksum != 0 {
                // The field holds the pseudo-header sum: summing from the checksum start over it completes it.
                let field = transportOffset + Int(header.checksumOffset)
                let sum = InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: output[transportOffset..<packet.count]))
                let checksum = ~InternetChecksum.fold(sum)
                // UDP's field (at offset 6) sends a computed 0 as 0xffff: 0 means "no checksum", which IPv6 forbids.
                InternetChecksum.store(checksum == 0 && header.checksumOffset == 6 ? 0xffff : checksum, at: field, in: output)
            }
            return packet.count
        }
        // A super-packet's checksums are recomputed from scratch, even when it is a single segment.
        let size = segmentCount == 1 ? packet.count - headersLength : Int(header.gsoSize)
        let payloadStart = headersLength + index * size
        let payloadLength = min(size, packet.count - payloadStart)
        let length = headersLength + payloadLength
        guard length <= output.count else { throw .segmentTooLarge(length: length, room: output.count) }
        output.copyMemory(from: UnsafeRawBufferPointer(rebasing: packet[..<headersLength]))
        UnsafeMutableRawBufferPointer(rebasing: output[headersLength..<length])
            .copyMemory(from: UnsafeRawBufferPointer(rebasing: packet[payloadStart..<(payloadStart + payloadLength)]))
        let tcp = transportOffset
        if packet[0] >> 4 == 4 {
            InternetChecksum.store(InternetChecksum.load(at: 4, in: packet) &+ UInt16(truncatingIfNeeded: index), at: 4, in: output)
        }
        InternetChecksum.setIPLength(of: UnsafeMutableRawBufferPointer(rebasing: output[..<length]), ipHeaderLength: tcp)
        let sequence = TunWriteCoalescer.sequence(of: packet, at: tcp)
        let segmentSequence = sequence &+ UInt32(truncatingIfNeeded: index * size)
        InternetChecksum.store(UInt16(segmentSequence >> 16), at: tcp + 4, in: output)
        InternetChecksum.store(UInt16(segmentSequence & 0xffff), at: tcp + 6, in: output)
        // FIN and PSH belong to the last segment, CWR to the first (as the kernel's own GSO does).
        var tcpFlags = packet[tcp + 13]
        if index < segmentCount - 1 { tcpFlags &= ~(0x01 | 0x08) }
        if index > 0 { tcpFlags &= ~0x80 }
        output[tcp + 13] = tcpFlags
        InternetChecksum.store(0, at: tcp + 16, in: output)
        let sum = InternetChecksum.tcpPseudoHeaderSum(packet, tcpLength: length - tcp)
            &+ InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: output[tcp..<length]))
        InternetChecksum.store(~InternetChecksum.fold(sum), at: tcp + 16, in: output)
        return length
    }
}

/// RFC 1071 ones'-complement sums, in numeric (host) values of big-endian 16-bit words.
enum InternetChecksum {
    /// The unfolded sum of `bytes` as big-endian 16-bit words (an odd last byte padded with zero).
    static func sum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        // Summing native-order 32-bit words and swapping the folded result at the end gives the same ones'-complement
        // sum as big-endian 16-bit words (RFC 1071 §2(B)), at a quarter of the additions.
        var total: UInt64 = 0
        var index = 0
        let count = bytes.count
        while index + 4 <= count {
            total &+= UInt64(bytes.loadUnaligned(fromByteOffset: index, as: UInt32.self))
            index += 4
        }
        if index + 2 <= count {
            total &+= UInt64(bytes.loadUnaligned(fromByteOffset: index, as: UInt16.self))
            index += 2
        }
        if index < count {
            // The native load of the bytes [b, 0].
            total &+= UInt64(UInt16(bigEndian: UInt16(bytes[index]) << 8))
        }
        return UInt64(UInt16(bigEndian: fold(total)))
    }

    /// The unfolded sum of the TCP pseudo-header (RFC 9293 §3.1, RFC 8200 §8.1) of an IPv4 or IPv6 `packet` whose TCP
    /// segment is `tcpLength` bytes.
    static func tcpPseudoHeaderSum(_ packet: UnsafeRawBufferPointer, tcpLength: Int) -> UInt64 {
        let addresses = packet[0] >> 4 == 4 ? packet[12..<20] : packet[8..<40]
        // The protocol number and the length, each a 16-bit word (IPv6's 32-bit length has a zero upper word here).
        return sum(UnsafeRawBufferPointer(rebasing: addresses)) &+ 6 &+ UInt64(tcpLength)
    }

    /// Makes the IP header of `packet` give its whole length: IPv4's total length, with the header checksum
    /// recomputed (after any other change to the header), or IPv6's payload length.
    static func setIPLength(of packet: UnsafeMutableRawBufferPointer, ipHeaderLength: Int) {
        guard packet[0] >> 4 == 4 else {
            store(UInt16(packet.count - 40), at: 4, in: packet)
            return
        }
        store(UInt16(packet.count), at: 2, in: packet)
        store(0, at: 10, in: packet)
        store(~fold(sum(UnsafeRawBufferPointer(rebasing: packet[..<ipHeaderLength]))), at: 10, in: packet)
    }

    /// Folds a sum into 16 bits with end-around carries.
    static func fold(_ sum: UInt64) -> UInt16 {
        var value = sum
        while value > 0xffff { value = (value & 0xffff) &+ (value >> 16) }
        return UInt16(value)
    }

    static func load(at offset: Int, in bytes: UnsafeRawBufferPointer) -> UInt16 {
        UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    static func store(_ value: UInt16, at offset: Int, in bytes: UnsafeMutableRawBufferPointer) {
        bytes[offset] = UInt8(value >> 8)
        bytes[offset + 1] = UInt8(value & 0xff)
    }
}

/// The other direction of `OffloadedRead`: consecutive TCP segments of one flow, as released to the TUN device, joined
/// into one super-packet with a virtio-net header that asks the kernel to treat it as the segments it was (GSO type,
/// segment size, the checksum left partial), so the receiving kernel takes one trip through its stack for up to
/// 64 KiB instead of one per segment (Linux's GRO does the same for a NIC). Anything else, and segments that may not
/// be joined, are written alone, in the order given. Sans-IO: the finished bytes (header included) go to `write`.
final class TunWriteCoalescer {
    /// A run's bytes: the virtio-net header, then the first segment's headers and every segment's payload.
    private let buffer: UnsafeMutableRawBufferPointer
    private var length = 0
    private var segments = 0
    /// Of the run's first segment: IP header length, TCP header length, payload length (every segment's but the last).
    private var ipHeaderLength = 0
    private var tcpHeaderLength = 0
    private var segmentSize = 0
    /// Of the run's last segment: its payload length, and the sequence number the next one must have.
    private var lastPayload = 0
    private var nextSequence: UInt32 = 0
    /// Segments that left joined to others, and the super-packets they made.
    private(set) var joinedSegments: UInt64 = 0
    private(set) var superPackets: UInt64 = 0

    private static let largestPacket = 65_535

    init() {
        buffer = .allocate(byteCount: VirtioNetHeader.size + Self.largestPacket, alignment: 16)
    }

    deinit { buffer.deallocate() }

    /// Adds `packet` to the run, or writes the run and starts a new one with it.
    func add(_ packet: UnsafeRawBufferPointer, write: (UnsafeRawBufferPointer) -> Void) {
        if segments > 0, joins(packet) {
            let payload = packet.count - ipHeaderLength - tcpHeaderLength
            UnsafeMutableRawBufferPointer(rebasing: buffer[length..<(length + payload)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: packet[(ipHeaderLength + tcpHeaderLength)...]))
            length += payload
            segments += 1
            lastPayload = payload
            nextSequence = Self.sequence(of: packet, at: ipHeaderLength) &+ UInt32(payload)
            // A segment with PSH ends a run, as in the kernel's GRO, and the super-packet carries it (its cut gives it to
            // the last segment).
            if packet[ipHeaderLength + 13] & 0x08 != 0 {
                buffer[VirtioNetHeader.size + ipHeaderLength + 13] |= 0x08
                flush(write: write)
            }
            return
        }
        flush(write: write)
        guard packet.count <= Self.largestPacket else { return }
        UnsafeMutableRawBufferPointer(rebasing: buffer[VirtioNetHeader.size...]).copyMemory(from: packet)
        length = VirtioNetHeader.size + packet.count
        segments = 1
        if let (ip, tcp) = Self.joinableTCP(packet), packet[ip + 13] & 0x08 == 0,
           Self.checksumVerifies(packet, transportStart: ip) {
            ipHeaderLength = ip
            tcpHeaderLength = tcp
            segmentSize = packet.count - ip - tcp
            lastPayload = segmentSize
            nextSequence = Self.sequence(of: packet, at: ip) &+ UInt32(segmentSize)
        } else {
            // Not a segment others may join: written alone.
            flush(write: write)
        }
    }

    /// Writes the run, if any.
    func flush(write: (UnsafeRawBufferPointer) -> Void) {
        guard segments > 0 else { return }
        var header = VirtioNetHeader()
        let packet = UnsafeMutableRawBufferPointer(rebasing: buffer[VirtioNetHeader.size..<length])
        if segments > 1 {
            let isIPv4 = packet[0] >> 4 == 4
            InternetChecksum.setIPLength(of: packet, ipHeaderLength: ipHeaderLength)
            // The checksum left partial, as a NIC offload would take it: the pseudo-header's sum, not complemented.
            let sum = InternetChecksum.tcpPseudoHeaderSum(UnsafeRawBufferPointer(packet), tcpLength: packet.count - ipHeaderLength)
            InternetChecksum.store(InternetChecksum.fold(sum), at: ipHeaderLength + 16, in: packet)
            header = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum,
                                     gsoType: isIPv4 ? VirtioNetHeader.gsoTCPv4 : VirtioNetHeader.gsoTCPv6,
                                     headerLength: UInt16(ipHeaderLength + tcpHeaderLength), gsoSize: UInt16(segmentSize),
                                     checksumStart: UInt16(ipHeaderLength), checksumOffset: 16)
            joinedSegments &+= UInt64(segments)
            superPackets &+= 1
        }
        header.serialize(into: buffer)
        write(UnsafeRawBufferPointer(rebasing: buffer[..<length]))
        segments = 0
        length = 0
    }

    /// Whether `packet` continues the run: the same flow and headers but sequence, the next bytes of it, at most
    /// the run's segment size, only ACK (and PSH) set, a valid checksum, and room left.
    private func joins(_ packet: UnsafeRawBufferPointer) -> Bool {
        guard lastPayload == segmentSize, let (ip, tcp) = Self.joinableTCP(packet), ip == ipHeaderLength, tcp == tcpHeaderLength
        else { return false }
        let payload = packet.count - ip - tcp
        guard payload > 0, payload <= segmentSize, length + payload <= buffer.count,
              Self.sequence(of: packet, at: ip) == nextSequence else { return false }
        let first = UnsafeRawBufferPointer(rebasing: buffer[VirtioNetHeader.size..<length])
        let isIPv4 = packet[0] >> 4 == 4
        guard first[0] >> 4 == packet[0] >> 4 else { return false }
        if isIPv4 {
            // TOS (ECN included), flags and fragment offset, TTL, protocol, addresses.
            guard first[1] == packet[1], first[6] == packet[6], first[7] == packet[7], first[8] == packet[8],
                  first[9] == packet[9], Self.equal(first, packet, 12..<20) else { return false }
        } else {
            // Version, traffic class and flow label, next header, hop limit, addresses.
            guard Self.equal(first, packet, 0..<4), Self.equal(first, packet, 6..<40) else { return false }
        }
        // Ports; acknowledgement; data offset, flags (PSH may differ: the last one may carry it) and window; options.
        guard Self.equal(first, packet, ip..<(ip + 4)), Self.equal(first, packet, (ip + 8)..<(ip + 13)),
              first[ip + 13] | 0x08 == packet[ip + 13] | 0x08, Self.equal(first, packet, (ip + 14)..<(ip + 16)),
              Self.equal(first, packet, (ip + 20)..<(ip + tcp)) else { return false }
        return Self.checksumVerifies(packet, transportStart: ip)
    }

    /// IP and TCP header lengths of a TCP segment that a run may hold: IPv4 without options or fragmentation, IPv6
    /// without extension headers, only ACK (and PSH) set, and lengths that add up.
    private static func joinableTCP(_ packet: UnsafeRawBufferPointer) -> (ip: Int, tcp: Int)? {
        guard packet.count >= 40 else { return nil }
        let ip: Int
        switch packet[0] >> 4 {
        case 4:
            guard packet[0] & 0x0f == 5, packet[9] == 6, Int(InternetChecksum.load(at: 2, in: packet)) == packet.count,
                  InternetChecksum.load(at: 6, in: packet) & 0x3fff == 0 else { return nil }
            ip = 20
        case 6:
            guard packet.count >= 60, packet[6] == 6, Int(InternetChecksum.load(at: 4, in: packet)) + 40 == packet.count
            else { return nil }
            ip = 40
        default:
            return nil
        }
        let tcp = Int(packet[ip + 12] >> 4) * 4
        guard tcp >= 20, ip + tcp <= packet.count, packet[ip + 13] & ~0x08 == 0x10 else { return nil }
        return (ip, tcp)
    }

    /// The sequence number of the TCP header at `ip` (where the IP header ends).
    static func sequence(of packet: UnsafeRawBufferPointer, at ip: Int) -> UInt32 {
        UInt32(InternetChecksum.load(at: ip + 4, in: packet)) << 16 | UInt32(InternetChecksum.load(at: ip + 6, in: packet))
    }

    private static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        a[range].elementsEqual(b[range])
    }

    /// The joined packet's checksum is left for the kernel to trust (it marks a partial checksum as good on receive),
    /// so each segment's own must verify: a corrupt one goes alone and the kernel drops it.
    private static func checksumVerifies(_ packet: UnsafeRawBufferPointer, transportStart start: Int) -> Bool {
        let sum = InternetChecksum.tcpPseudoHeaderSum(packet, tcpLength: packet.count - start)
            &+ InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: packet[start...]))
        return InternetChecksum.fold(sum) == 0xffff
    }
}
