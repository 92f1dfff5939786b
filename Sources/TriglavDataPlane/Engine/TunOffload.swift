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
                InternetChecksum.store(~InternetChecksum.fold(sum), at: field, in: output)
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
        let isIPv4 = packet[0] >> 4 == 4
        if isIPv4 {
            let headerLength = tcp
            InternetChecksum.store(UInt16(length), at: 2, in: output)
            InternetChecksum.store(InternetChecksum.load(at: 4, in: packet) &+ UInt16(truncatingIfNeeded: index), at: 4, in: output)
            InternetChecksum.store(0, at: 10, in: output)
            let headerSum = InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: output[..<headerLength]))
            InternetChecksum.store(~InternetChecksum.fold(headerSum), at: 10, in: output)
        } else {
            InternetChecksum.store(UInt16(length - 40), at: 4, in: output)
        }
        let sequence = UInt32(InternetChecksum.load(at: tcp + 4, in: packet)) << 16 | UInt32(InternetChecksum.load(at: tcp + 6, in: packet))
        let segmentSequence = sequence &+ UInt32(truncatingIfNeeded: index * size)
        InternetChecksum.store(UInt16(segmentSequence >> 16), at: tcp + 4, in: output)
        InternetChecksum.store(UInt16(segmentSequence & 0xffff), at: tcp + 6, in: output)
        // FIN and PSH belong to the last segment, CWR to the first (as the kernel's own GSO does).
        var tcpFlags = packet[tcp + 13]
        if index < segmentCount - 1 { tcpFlags &= ~(0x01 | 0x08) }
        if index > 0 { tcpFlags &= ~0x80 }
        output[tcp + 13] = tcpFlags
        InternetChecksum.store(0, at: tcp + 16, in: output)
        let tcpLength = length - tcp
        var sum: UInt64 = isIPv4
            ? InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: packet[12..<20]))
            : InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: packet[8..<40]))
        sum &+= UInt64(6) &+ UInt64(tcpLength) // protocol and TCP length, in network order as 16-bit words
        sum &+= InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: output[tcp..<length]))
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
