import TriglavCore
import TriglavProtocol

/// Sizes that decide the TUN MTU (docs/DATAPLANE.md, "TUN MTU"). The protocol itself puts no limit on a data
/// frame's body; what bounds an inner packet is the outer packet's size on the uplink (`MAX_MTU`, sent with DF)
/// and the data plane's buffers (`largestDatagram`).
public enum TunnelMTU {
    /// Outer IP header of a tunnel datagram: the server's address family decides it (all uplinks of a client
    /// talk to one server address).
    public static let outerIPv4Header = WireOverhead.outerIPv4Header
    public static let outerIPv6Header = WireOverhead.outerIPv6Header

    /// Every receive/send slot (`DatagramBatch`, `PacketPool`, `RetransmitStore`, TUN reads) and the TCP
    /// fallback's frame limit hold this many bytes, so a datagram (inner packet + 40 bytes of framing) may be
    /// at most this long.
    public static let largestDatagram = 2048

    /// Bytes around an inner packet on the wire: outer IP header, UDP header, Triglav transport header, inner
    /// header and AEAD tag. 68 over IPv4, 88 over IPv6. (TCP fallback frames are segmented by TCP, so they
    /// never need a smaller inner MTU than UDP over the same path.)
    public static func overhead(outerIPv4: Bool) -> Int {
        (outerIPv4 ? outerIPv4Header : outerIPv6Header) + WireOverhead.udpHeader + WireLayout.transportOverhead
    }

    /// The default ceiling of a TUN MTU: the largest inner packet that fits a `MAX_MTU` (1500-byte) uplink with
    /// the given outer family — 1432 over IPv4, 1412 (`MAX_PAYLOAD`) over IPv6.
    public static func defaultCeiling(outerIPv4: Bool) -> Int {
        MAX_MTU - overhead(outerIPv4: outerIPv4)
    }

    /// The default MTU of a server's TUN: one TUN serves every client, so it is the largest any client can use —
    /// 1432 when the server listens on IPv4 at all, 1412 when only on IPv6. It mustn't be smaller than a client's
    /// own TUN MTU: that client advertises its TCP MSS from its own MTU, so a smaller server TUN would make every
    /// download depend on path-MTU discovery (ICMP "fragmentation needed" reaching the far host). Towards a client
    /// with a smaller MTU, TCP follows that client's MSS; a rare larger non-TCP packet leaves as an outer datagram
    /// above 1500 bytes, which the server's kernel fragments (default path-MTU mode for UDP sockets).
    public static func defaultServerCeiling(listen: [IPEndpoint]) -> Int {
        defaultCeiling(outerIPv4: listen.isEmpty || listen.contains { $0.address.isIPv4 })
    }

    /// The inner MTU for uplinks with `linkMTUs`: the smallest minus `overhead`, capped by `maximum`, at least
    /// 1280 (IPv6's minimum link MTU). With no known uplink MTU it is `maximum`.
    public static func forUplinks(linkMTUs: [Int], overhead: Int, maximum: Int) -> Int {
        guard let smallest = linkMTUs.min() else { return maximum }
        return max(1280, min(maximum, smallest - overhead))
    }
}
