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
    /// with a smaller MTU, TCP follows that client's MSS; a rare larger non-TCP packet would need an outer datagram
    /// above the path MTU, which the server's socket refuses (EMSGSIZE, IP_PMTUDISC_DO): it is dropped, never
    /// fragmented.
    public static func defaultServerCeiling(listen: [IPEndpoint]) -> Int {
        defaultCeiling(outerIPv4: listen.isEmpty || listen.contains { $0.address.isIPv4 })
    }

    /// The smallest TUN MTU of a tunnel that carries IPv6: the kernel turns IPv6 off on a link below 1280
    /// (RFC 8200's minimum link MTU), taking the tunnel's IPv6 address with it.
    public static let ipv6Floor = 1280
    /// The smallest TUN MTU of an IPv4-only tunnel: 576, the datagram size every IPv4 host must accept
    /// (RFC 791). A path below 576 + overhead is a misconfiguration, not something to follow.
    public static let ipv4Floor = 576

    /// The inner MTU for uplinks whose paths to the server have `pathMTUs`: the smallest minus `overhead`,
    /// capped by `maximum`, at least `minimum` (`ipv6Floor` by default). With no known path MTU it is `maximum`.
    /// When the floor wins, packets between the smallest path's room and the floor don't fit that uplink: its
    /// socket refuses them (EMSGSIZE), nothing is fragmented (docs/DATAPLANE.md, "TUN MTU").
    public static func forUplinks(linkMTUs pathMTUs: [Int], overhead: Int, maximum: Int, minimum: Int = ipv6Floor) -> Int {
        guard let smallest = pathMTUs.min() else { return maximum }
        return max(minimum, min(maximum, smallest - overhead))
    }
}
