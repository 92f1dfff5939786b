/// Lowers the MSS option of TCP SYN segments crossing the client's TUN to what the tunnel's current MTU carries
/// (iptables' `TCPMSS --clamp-mss-to-pmtu`, as VPN gateways do). Why: the client's own connections already advertise
/// an MSS from the TUN's MTU, but hosts it routes for (a LAN behind it, containers, VMs) advertise their 1500-byte
/// link's 1460, and the far end then sends segments the tunnel can only carry if path-MTU discovery works end to end:
/// the server's TUN (1432) answers the excess with ICMP "fragmentation needed" towards an internet host whose
/// firewall may drop it, and the connection stalls after the handshake. Clamped in both directions (the SYN a host
/// behind the client sends, and the SYN-ACK or SYN that comes back), so neither side sends more than fits.
/// The TUN MTU follows the uplinks' path MTUs (probing included), so the clamp does too.
///
/// Only unfragmented IPv4 and extension-free IPv6 (`PacketClassifier.tcpHeader`); a malformed option list is left
/// alone. The checksum is updated incrementally (RFC 1624), so the packet stays valid without being summed again.
enum MSSClamp {
    /// IPv4 (20) + TCP (20) header bytes a segment's MSS doesn't count; IPv6's header is 40.
    static func largestSegment(mtu: Int, ipv6: Bool) -> Int { mtu - (ipv6 ? 60 : 40) }

    /// Rewrites the MSS option of a TCP SYN in `packet` to at most what an `mtu`-byte packet carries; true if it did.
    @discardableResult
    static func clamp(_ packet: UnsafeMutableRawBufferPointer, mtu: Int) -> Bool {
        guard let tcp = PacketClassifier.tcpHeader(UnsafeRawBufferPointer(packet)) else { return false }
        return clamp(packet, tcp: tcp, mtu: mtu)
    }

    /// The same for a packet whose TCP header `PacketClassifier.tcpHeader` already found.
    @discardableResult
    static func clamp(_ packet: UnsafeMutableRawBufferPointer, tcp: (offset: Int, payloadLength: Int), mtu: Int) -> Bool {
        let bytes = UnsafeRawBufferPointer(packet)
        guard packet[tcp.offset + 13] & 0x02 != 0 else { return false }
        let maximum = largestSegment(mtu: mtu, ipv6: packet[0] >> 4 == 6)
        guard maximum > 0 else { return false }
        let end = tcp.offset + Int(packet[tcp.offset + 12] >> 4) * 4
        var index = tcp.offset + 20
        while index < end {
            switch packet[index] {
            case 0:  // end of the option list
                return false
            case 1:  // no-operation (padding)
                index += 1
            default:
                guard index + 1 < end else { return false }
                let length = Int(packet[index + 1])
                guard length >= 2, index + length <= end else { return false }
                if packet[index] == 2 {
                    guard length == 4 else { return false }
                    let current = InternetChecksum.load(at: index + 2, in: bytes)
                    guard Int(current) > maximum else { return false }
                    let clamped = UInt16(maximum)
                    InternetChecksum.store(clamped, at: index + 2, in: packet)
                    // RFC 1624 (3): HC' = ~(~HC + ~m + m'). A field at an odd offset of the segment adds its bytes
                    // swapped to the sum (RFC 1071's byte-order independence).
                    let odd = (index + 2 - tcp.offset) % 2 == 1
                    let old = odd ? current.byteSwapped : current, new = odd ? clamped.byteSwapped : clamped
                    let checksumOffset = tcp.offset + 16
                    let checksum = InternetChecksum.load(at: checksumOffset, in: bytes)
                    let sum = UInt64(~checksum) &+ UInt64(~old) &+ UInt64(new)
                    InternetChecksum.store(~InternetChecksum.fold(sum), at: checksumOffset, in: packet)
                    return true
                }
                index += length
            }
        }
        return false
    }
}
