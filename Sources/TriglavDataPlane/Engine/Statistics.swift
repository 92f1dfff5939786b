import TriglavCore
import TriglavMultipath
import TriglavProtocol

/// One client uplink, as a snapshot: the data plane's counters and the multipath engine's view.
public struct UplinkStatus: Sendable, Equatable {
    public var id: UplinkID
    public var interface: InterfaceName
    /// "connecting", "established" or "no-socket" (interface missing).
    public var state: String
    /// "udp", or "tcp" while the uplink uses the TCP fallback.
    public var transport: String = "udp"
    public var transmittedPackets: UInt64 = 0
    public var transmittedBytes: UInt64 = 0
    public var receivedPackets: UInt64 = 0
    public var receivedBytes: UInt64 = 0
    /// Inner bytes received on the uplink per second, as bits/s, over the last `ClientUplink.rateInterval` (1 s):
    /// the download direction as measured, next to the engine's estimate of the send direction
    /// (`path.capacityBitsPerSecond`), which a host that mostly downloads never exercises.
    public var receiveRateBitsPerSecond: UInt64 = 0
    public var handshakes: UInt64 = 0
    public var sendErrors: UInt64 = 0
    /// Datagrams that left in UDP GSO messages (`UDPSocket.segmentationOffload`), and whether the socket still uses it.
    public var segmentedDatagrams: UInt64 = 0
    public var segmentationOffload = false
    /// Datagrams that arrived in UDP_GRO runs (`UDPSocket.coalescesReceives`), and whether the socket asked for them.
    public var coalescedDatagrams: UInt64 = 0
    public var receiveCoalescing = false
    /// TCP fallback connects that failed: refused, unreachable, or not connected within
    /// `TCPFallbackTimeouts.connect` (4 s; a blackholed port). Each is followed by UDP, then TCP again.
    public var tcpConnectFailures: UInt64 = 0
    /// Whether a route to the server leads through the interface: false explains an uplink that never
    /// connects (its bound socket can't reach the server); nil while unknown.
    public var routeToServer: Bool?
    /// Where the uplink's packets reach the server from, as the server last reported it (after each handshake and
    /// idle keepalive): differs from `localEndpoint` behind a NAT. Nil before the first report (or an older server).
    public var publicEndpoint: IPEndpoint?
    /// The uplink socket's own endpoint when that report came (getsockname; the address is 0.0.0.0 or :: when the
    /// socket is bound to its device only).
    public var localEndpoint: IPEndpoint?
    /// The path MTU the tunnel counts for the uplink (IP bytes): the kernel's, or less when the client's probes found
    /// a hop that drops larger packets silently (`pathMTUBlackhole`); nil while unknown.
    public var pathMTU: Int?
    public var pathMTUBlackhole = false
    /// The multipath engine's statistics (state, RTT, loss, capacity); nil while not established.
    public var path: TriglavMultipath.UplinkStatistics?
    /// What the multipath engine counted as sent and received on the uplink since it was added (sealed data
    /// datagrams), across the resets that take it out of the engine; the unit of its data cap.
    public var engineTransmittedBytes: UInt64 = 0
    public var engineReceivedBytes: UInt64 = 0
}

/// The peer's resend requests one side answered, in sequences: accepted (handed to the engine to resend) or
/// declined (no longer held, or sent into a long queue: a congestion loss left to the inner TCP). Every requested
/// sequence is one or the other.
public struct RequestedResendCounters: Sendable, Equatable {
    public var accepted: UInt64 = 0
    public var declined: UInt64 = 0

    public init(accepted: UInt64 = 0, declined: UInt64 = 0) {
        self.accepted = accepted
        self.declined = declined
    }

    static func + (lhs: Self, rhs: Self) -> Self {
        Self(accepted: lhs.accepted &+ rhs.accepted, declined: lhs.declined &+ rhs.declined)
    }
}

/// What the TUN device's offloads (`TunDevice.offloads`) handed over and took.
public struct TunOffloadCounters: Sendable, Equatable {
    /// Reads that were TCP super-packets, and the packets they were cut into.
    public var superPackets: UInt64 = 0
    public var segments: UInt64 = 0
    /// Reads dropped because their virtio-net header described nothing we can cut (`TunOffloadError`).
    public var malformed: UInt64 = 0
    /// Super-packets written to the TUN device, and the segments joined into them (`TunWriteCoalescer`).
    public var writtenSuperPackets: UInt64 = 0
    public var joinedSegments: UInt64 = 0

    public init() {}

    func withJoinedWrites(_ joined: (superPackets: UInt64, segments: UInt64)) -> TunOffloadCounters {
        var counters = self
        (counters.writtenSuperPackets, counters.joinedSegments) = joined
        return counters
    }
}

/// A snapshot of a client tunnel.
public struct ClientTunnelStatistics: Sendable, Equatable {
    public var tunnelInterface: InterfaceName?
    public var addresses: TunnelAddresses?
    public var scheduler: SchedulerMode
    public var uplinks: [UplinkStatus]
    /// Packets read from the TUN device that no uplink could carry.
    public var droppedNoUplink: UInt64
    /// Packets sent again because the uplink they were in flight on went down.
    public var resentPackets: UInt64 = 0
    /// Packets taken from the TUN device, dropped ones included.
    public var readPackets: UInt64 = 0
    public var tunOffload = TunOffloadCounters()
    /// Pacing: packets the sender-side queue dropped (refused by the engine's AQM or a full queue, or shed at its head).
    public var queueDrops: UInt64 = 0
    /// Pacing: ECN-capable packets its AQM marked Congestion Experienced instead of dropping them.
    public var congestionMarks: UInt64 = 0
    /// Received data frames whose outer ECN field changed their inner packet: marked CE on the path, or dropped (RFC 6040).
    public var ecnDecapsulation = ECNDecapsulationCounters()
    /// The server's resend requests this client answered.
    public var requestedResends = RequestedResendCounters()
    public var reorder: ReorderStatistics
    /// Why the assigned addresses and routes couldn't be applied (the tunnel retries; its traffic stays
    /// blocked meanwhile); nil when they are applied or no assignment came yet.
    public var routingFailure: String? = nil
    /// The TUN's MTU as last set (it follows the uplinks' path MTUs, "TUN MTU"); 0 before the first pass set it.
    public var tunnelMTU = 0
    /// TCP SYNs and SYN-ACKs whose MSS option was lowered to fit the tunnel, both directions ("MSS clamp").
    public var mssClamped: UInt64 = 0
    /// The resolvers and domains the server last offered (`[server.dns]`); nil while it offered none.
    public var dnsOffer: DNSOffer? = nil
}

/// A snapshot of a server tunnel.
public struct ServerTunnelStatistics: Sendable, Equatable {
    public struct Client: Sendable, Equatable {
        public var publicKey: String
        public var addresses: TunnelAddresses
        /// Current endpoint of each of the client's uplink sessions.
        public var endpoints: [IPEndpoint]
        public var receivedPackets: UInt64
        public var transmittedPackets: UInt64
        /// Inner (IP packet) bytes received from and sent to the client.
        public var receivedBytes: UInt64 = 0
        public var transmittedBytes: UInt64 = 0
        /// Smallest smoothed round-trip time of the client's paths (server probes); nil before a reply.
        public var smoothedRTT: UInt64? = nil
        /// Each of the client's confirmed uplinks (an uplink joins the engine with the first authenticated packet of
        /// its session), by uplink ID; empty while none is confirmed.
        public var paths: [Path] = []
    }
    /// One client uplink as the server's engine sees it.
    public struct Path: Sendable, Equatable {
        public var uplink: UplinkID
        /// Where its packets come from: the session's UDP source, or the fallback connection's peer; nil when its
        /// session is gone (the engine keeps the path until it is removed).
        public var endpoint: IPEndpoint?
        public var overTCP: Bool
        /// The engine's figures for it (state, RTT, loss, bytes).
        public var statistics: TriglavMultipath.UplinkStatistics

        public init(uplink: UplinkID, endpoint: IPEndpoint?, overTCP: Bool = false, statistics: TriglavMultipath.UplinkStatistics) {
            self.uplink = uplink
            self.endpoint = endpoint
            self.overTCP = overTCP
            self.statistics = statistics
        }
    }
    public var clients: [Client]
    public var rejectedHandshakes: UInt64
    public var droppedUnknownDestination: UInt64
    /// Packets sent again because the client uplink they were in flight on went down.
    public var resentPackets: UInt64 = 0
    /// Uplink sessions refused because their client already had the most uplinks a tunnel may have.
    public var refusedUplinks: UInt64 = 0
    /// Handshakes answered: a client's new tunnel, a further uplink, or a rekey.
    public var answeredHandshakes: UInt64 = 0
    /// Pacing: packets the sender-side queues dropped (refused by the engines' AQM or a full queue, or shed at the head).
    public var queueDrops: UInt64 = 0
    /// Pacing: ECN-capable packets the AQMs marked Congestion Experienced instead of dropping them, departed clients'
    /// included.
    public var congestionMarks: UInt64 = 0
    /// Received data frames whose outer ECN field changed their inner packet (RFC 6040), every client's.
    public var ecnDecapsulation = ECNDecapsulationCounters()
    /// The clients' resend requests the server answered, departed clients' included.
    public var requestedResends = RequestedResendCounters()
    public var tunOffload = TunOffloadCounters()
    /// Datagrams that left the listeners in UDP GSO messages (`UDPSocket.segmentationOffload`).
    public var segmentedDatagrams: UInt64 = 0
    /// Datagrams that arrived at the listeners in UDP_GRO runs (`UDPSocket.coalescesReceives`).
    public var coalescedDatagrams: UInt64 = 0
}
