public import TriglavCore

/// The type byte of the encrypted inner header (PROTOCOL.md §5). Unknown values are rejected after
/// authentication, so a newer peer's frames are dropped, not misread.
public enum FrameType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// An inner IP packet; the tunnel sequence orders it across uplinks.
    case data = 1
    /// Empty body; keeps NAT bindings and liveness (and confirms a fresh session to the server).
    case keepalive = 2
    /// RTT probe: probe id + sender's timestamp.
    case probe = 3
    /// Echo of a probe's id and timestamp.
    case probeReply = 4
    /// Receiver's counters for this uplink, for loss and delivery-rate estimation.
    case feedback = 5
    /// Authenticated close of this session.
    case close = 6
    /// Receiver → sender: please resend this run of tunnel sequences (tunnel-level loss repair).
    case resendRequest = 7
    /// Sender → receiver: these sequences of a request won't come (gone from the store, or over the resend
    /// budget); stop waiting for them.
    case resendDeclined = 8
    /// Server → client: the address and port this session's packets reach the server from (what a NAT in between
    /// made of the client's), answering the client's keepalives.
    case endpointReport = 9
    /// Path-MTU probe: an id and the datagram's size, padded with zeros to that size (packetization-layer path MTU
    /// discovery, RFC 8899: finds a hop that drops large datagrams without an ICMP error).
    case pathProbe = 10
    /// Acknowledgement of a path-MTU probe: its id and size (small, whatever the probe's size).
    case pathProbeAck = 11
    /// Server → client: the resolvers and domains the server offers its clients, answering the client's keepalives
    /// with the endpoint report. Variable length (at most `DNSOffer.maximumBodyLength`).
    case dnsOffer = 12

    public var description: String {
        switch self {
        case .data: "data"
        case .keepalive: "keepalive"
        case .probe: "probe"
        case .probeReply: "probe-reply"
        case .feedback: "feedback"
        case .close: "close"
        case .resendRequest: "resend-request"
        case .resendDeclined: "resend-declined"
        case .endpointReport: "endpoint-report"
        case .pathProbe: "path-probe"
        case .pathProbeAck: "path-probe-ack"
        case .dnsOffer: "dns-offer"
        }
    }

    /// Exact body length for control frames; nil for data (any length up to the MTU), path-MTU probes (padded) and
    /// DNS offers (their lists).
    public var fixedBodyLength: Int? {
        switch self {
        case .data, .pathProbe, .dnsOffer: nil
        case .pathProbeAck: PathProbe.headerLength
        case .keepalive: 0
        case .probe, .probeReply: 16
        case .feedback: 32
        case .close: 4
        case .resendRequest, .resendDeclined: 8
        case .endpointReport: EndpointReport.bodyLength
        }
    }
}

/// Why a session was closed, carried in a close frame.
public enum CloseReason: UInt8, Sendable, CaseIterable {
    /// The sender is shutting the tunnel or this uplink down.
    case shutdown = 1
    /// The session was replaced by a newer one on the same uplink.
    case replaced = 2
    /// The server removed the tunnel (e.g. the client's key was de-authorized).
    case tunnelRemoved = 3
}

/// The body of a probe or probe reply: a reply echoes the probe's values unchanged, so the prober
/// computes RTT = now - timestamp on its own clock.
public struct ProbeBody: Equatable, Sendable {
    public var id: UInt64
    /// Sender's monotonic time in nanoseconds when the probe was sent.
    public var timestamp: UInt64
    public init(id: UInt64, timestamp: UInt64) { self.id = id; self.timestamp = timestamp }
}

/// The body of a feedback frame: what the sender of the feedback has received on this uplink's
/// session so far. Consecutive reports give loss (counter advance vs packets) and delivery rate
/// (bytes over the report interval).
public struct FeedbackBody: Equatable, Sendable {
    /// Authenticated packets received on the session.
    public var receivedPackets: UInt64
    /// Their total datagram bytes.
    public var receivedBytes: UInt64
    /// Highest counter received (so `highestCounter + 1 - receivedPackets` were lost or are late).
    public var highestCounter: UInt64
    /// Reporter's monotonic time in nanoseconds when it wrote the report.
    public var reportedAt: UInt64
    public init(receivedPackets: UInt64, receivedBytes: UInt64, highestCounter: UInt64, reportedAt: UInt64) {
        self.receivedPackets = receivedPackets
        self.receivedBytes = receivedBytes
        self.highestCounter = highestCounter
        self.reportedAt = reportedAt
    }
}

/// A run of tunnel sequences, `firstSequence` and the `count - 1` after it (mod 2^32), named by a resend request
/// or a resend-declined frame. On the wire `count` is 1…`ProtocolConstants.maxResendRun`; parsing refuses
/// anything else, so a peer can't name more than that many sequences with one frame.
public struct ResendRun: Equatable, Sendable {
    public var firstSequence: UInt32
    public var count: UInt32
    public init(firstSequence: UInt32, count: UInt32) {
        self.firstSequence = firstSequence
        self.count = count
    }

    /// Whether `count` is one a frame may carry.
    public var isValid: Bool { count >= 1 && count <= ProtocolConstants.maxResendRun }
}

/// What an endpoint report carries: the client's address and port as the server sees them. On the wire
/// (`bodyLength` bytes): family (1: 4 or 6), reserved (1, zero), port (2, network order), address (16, network
/// order; an IPv4 address in the first 4, the rest zero).
public struct EndpointReport: Equatable, Sendable {
    public static let bodyLength = 20
    public var endpoint: IPEndpoint
    public init(endpoint: IPEndpoint) { self.endpoint = endpoint }

    func serialize(into body: UnsafeMutableRawBufferPointer) {
        body[1] = 0
        body[2] = UInt8(endpoint.port >> 8)
        body[3] = UInt8(truncatingIfNeeded: endpoint.port)
        WireAddress.store(endpoint.address, into: body, familyAt: 0, addressAt: 4)
    }

    /// Nil for an unknown family, a non-zero reserved byte, or IPv4 with bytes set past its 4.
    static func parse(_ body: UnsafeRawBufferPointer) -> EndpointReport? {
        guard body.count == bodyLength, body[1] == 0,
              let address = WireAddress.load(from: body, familyAt: 0, addressAt: 4) else { return nil }
        return EndpointReport(endpoint: IPEndpoint(address: address, port: UInt16(body[2]) << 8 | UInt16(body[3])))
    }
}

/// An address as the endpoint report and the DNS offer carry it: a family byte (4 or 6) and 16 address bytes in
/// network order, an IPv4 address in the first 4 and the rest zero.
enum WireAddress {
    static let addressLength = 16

    static func store(_ address: IPAddress, into body: UnsafeMutableRawBufferPointer, familyAt family: Int, addressAt offset: Int) {
        body[family] = address.isIPv4 ? 4 : 6
        for index in 0..<addressLength { body[offset + index] = 0 }
        for (index, byte) in address.bytes.enumerated() { body[offset + index] = byte }
    }

    /// Nil for an unknown family or an IPv4 address with bytes set past its 4.
    static func load(from body: UnsafeRawBufferPointer, familyAt family: Int, addressAt offset: Int) -> IPAddress? {
        let length: Int
        switch body[family] {
        case 4: length = 4
        case 6: length = 16
        default: return nil
        }
        guard body[(offset + length)..<(offset + addressLength)].allSatisfy({ $0 == 0 }) else { return nil }
        return IPAddress(bytes: body[offset..<(offset + length)])
    }
}

/// The resolvers and domains a server offers its clients' tunnels (PROTOCOL.md §5.4): servers reached through the
/// tunnel, domains (a routing-only one written with a leading "~", "~." for every query) and whether the server asks
/// for every query to go to them (nil: the client decides, as for its own `[dns]`). The client's profile decides
/// whether to take it. On the wire: server count (1), domain count (1), flags (1: bit 0 = default route stated, bit 1
/// = its value), reserved (1, zero); per server a family byte and 16 address bytes (`WireAddress`); per domain a
/// length byte and that many bytes of letters, digits, '-', '_', '.' and a leading '~'. Nothing after the last domain.
public struct DNSOffer: Equatable, Sendable {
    /// Fits one datagram on a 1280-byte IPv6 path with room to spare (a larger control frame would be dropped on
    /// exactly the paths a tunnel is used on).
    public static let maximumBodyLength = 1024
    public static let maximumServers = 16
    public static let maximumDomains = 32
    public static let maximumDomainLength = 254
    static let headerLength = 4

    public let servers: [IPAddress]
    public let domains: [String]
    public let defaultRoute: Bool?

    /// Nil unless it can go on the wire: 1…`maximumServers` servers, at most `maximumDomains` domains of 1…254
    /// characters of the allowed set, and a body of at most `maximumBodyLength` bytes.
    public init?(servers: [IPAddress], domains: [String] = [], defaultRoute: Bool? = nil) {
        guard (1...Self.maximumServers).contains(servers.count), domains.count <= Self.maximumDomains,
              domains.allSatisfy(Self.isWireDomain) else { return nil }
        self.servers = servers
        self.domains = domains
        self.defaultRoute = defaultRoute
        guard bodyLength <= Self.maximumBodyLength else { return nil }
    }

    public var bodyLength: Int {
        Self.headerLength + servers.count * (1 + WireAddress.addressLength) + domains.reduce(0) { $0 + 1 + $1.utf8.count }
    }

    /// The characters of a domain name, with '~' only in front; full domain-name rules are the receiver's to apply.
    private static func isWireDomain(_ domain: String) -> Bool {
        let bytes = Array(domain.utf8)
        guard (1...maximumDomainLength).contains(bytes.count) else { return false }
        return bytes.enumerated().allSatisfy { index, byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."): true
            case UInt8(ascii: "~"): index == 0
            default: false
            }
        }
    }

    func serialize(into body: UnsafeMutableRawBufferPointer) {
        body[0] = UInt8(servers.count)
        body[1] = UInt8(domains.count)
        body[2] = defaultRoute.map { $0 ? 0b11 : 0b01 } ?? 0
        body[3] = 0
        var offset = Self.headerLength
        for server in servers {
            WireAddress.store(server, into: body, familyAt: offset, addressAt: offset + 1)
            offset += 1 + WireAddress.addressLength
        }
        for domain in domains {
            body[offset] = UInt8(domain.utf8.count)
            offset += 1
            for byte in domain.utf8 {
                body[offset] = byte
                offset += 1
            }
        }
    }

    /// Nil for anything but exactly the layout above: counts out of range, unknown flag bits or family, bytes
    /// missing or left over, a domain with other characters.
    static func parse(_ body: UnsafeRawBufferPointer) -> DNSOffer? {
        guard body.count >= headerLength, body.count <= maximumBodyLength, body[3] == 0, body[2] & ~0b11 == 0,
              body[2] != 0b10 else { return nil }
        let serverCount = Int(body[0]), domainCount = Int(body[1])
        var offset = headerLength
        var servers: [IPAddress] = []
        for _ in 0..<serverCount {
            guard offset + 1 + WireAddress.addressLength <= body.count,
                  let server = WireAddress.load(from: body, familyAt: offset, addressAt: offset + 1) else { return nil }
            servers.append(server)
            offset += 1 + WireAddress.addressLength
        }
        var domains: [String] = []
        for _ in 0..<domainCount {
            guard offset < body.count else { return nil }
            let length = Int(body[offset])
            guard offset + 1 + length <= body.count else { return nil }
            domains.append(String(decoding: body[(offset + 1)..<(offset + 1 + length)], as: UTF8.self))
            offset += 1 + length
        }
        guard offset == body.count else { return nil }
        return DNSOffer(servers: servers, domains: domains, defaultRoute: body[2] & 1 == 0 ? nil : body[2] & 0b10 != 0)
    }
}

/// The header of a path-MTU probe and of its acknowledgement (`headerLength` bytes): id (LE32), the probed datagram's
/// size (LE16: the whole transport datagram, i.e. the UDP payload), reserved (2, zero). A probe's body continues with
/// zeros up to that size; an acknowledgement is the header alone.
public struct PathProbe: Equatable, Sendable {
    public static let headerLength = 8
    public var id: UInt32
    public var size: UInt16

    public init(id: UInt32, size: UInt16) {
        self.id = id
        self.size = size
    }

    /// Nil unless the reserved bytes are zero.
    init?(header body: UnsafeRawBufferPointer) {
        guard body.count >= Self.headerLength, body[6] == 0, body[7] == 0 else { return nil }
        self.init(id: body.loadLE32(at: 0), size: UInt16(body[4]) | UInt16(body[5]) << 8)
    }
}

/// A non-data frame, parsed from or serialised into a frame body. Parse and serialise are exact
/// inverses; parsing checks the exact length and never traps.
public enum ControlFrame: Equatable, Sendable {
    case keepalive
    case probe(ProbeBody)
    case probeReply(ProbeBody)
    case feedback(FeedbackBody)
    case close(CloseReason)
    /// Resend the data packets of this run (sent by the receiver of the data, about the sender's sequences).
    case resendRequest(ResendRun)
    /// The answer to a request for sequences that won't be resent: the receiver stops waiting for them.
    case resendDeclined(ResendRun)
    /// Where the session's packets come from, as the server sees them (server → client).
    case endpointReport(EndpointReport)
    /// A path-MTU probe, padded to `size` bytes of datagram, and its acknowledgement.
    case pathProbe(PathProbe)
    case pathProbeAck(PathProbe)
    /// The resolvers and domains the server offers (server → client).
    case dnsOffer(DNSOffer)

    public var frameType: FrameType {
        switch self {
        case .keepalive: .keepalive
        case .probe: .probe
        case .probeReply: .probeReply
        case .feedback: .feedback
        case .close: .close
        case .resendRequest: .resendRequest
        case .resendDeclined: .resendDeclined
        case .endpointReport: .endpointReport
        case .pathProbe: .pathProbe
        case .pathProbeAck: .pathProbeAck
        case .dnsOffer: .dnsOffer
        }
    }

    /// Body length of this frame: a probe's makes the whole datagram `size` bytes long.
    public var bodyLength: Int {
        switch self {
        case .pathProbe(let probe): max(PathProbe.headerLength, Int(probe.size) - WireLayout.transportOverhead)
        case .dnsOffer(let offer): offer.bodyLength
        default: frameType.fixedBodyLength ?? 0
        }
    }

    /// Writes the body at the start of `body` (which must hold `bodyLength` bytes); returns the length.
    /// A resend run's count is clamped to 1…`ProtocolConstants.maxResendRun` (what the peer accepts).
    @discardableResult
    public func serialize(into body: UnsafeMutableRawBufferPointer) -> Int {
        precondition(body.count >= bodyLength, "control frame body buffer too small")
        switch self {
        case .keepalive:
            break
        case .probe(let probe), .probeReply(let probe):
            body.storeLE64(probe.id, at: 0)
            body.storeLE64(probe.timestamp, at: 8)
        case .feedback(let report):
            body.storeLE64(report.receivedPackets, at: 0)
            body.storeLE64(report.receivedBytes, at: 8)
            body.storeLE64(report.highestCounter, at: 16)
            body.storeLE64(report.reportedAt, at: 24)
        case .close(let reason):
            body[0] = reason.rawValue
            body[1] = 0; body[2] = 0; body[3] = 0
        case .resendRequest(let run), .resendDeclined(let run):
            body.storeLE32(run.firstSequence, at: 0)
            body.storeLE32(min(max(run.count, 1), ProtocolConstants.maxResendRun), at: 4)
        case .endpointReport(let report):
            report.serialize(into: body)
        case .pathProbe(let probe), .pathProbeAck(let probe):
            body.storeLE32(probe.id, at: 0)
            body[4] = UInt8(truncatingIfNeeded: probe.size); body[5] = UInt8(truncatingIfNeeded: probe.size >> 8)
            for index in 6..<bodyLength { body[index] = 0 }
        case .dnsOffer(let offer):
            offer.serialize(into: body)
        }
        return bodyLength
    }

    /// The body as a new array (control frames are rare; the data path never calls this).
    public var body: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: bodyLength)
        bytes.withUnsafeMutableBytes { _ = serialize(into: $0) }
        return bytes
    }

    /// Parses the body of a frame of `type`; `data` frames are not control frames.
    public static func parse(type: FrameType, body: UnsafeRawBufferPointer) throws(ProtocolError) -> ControlFrame {
        if type == .pathProbe {
            // The size it names must be the datagram it came in: a probe that doesn't say what was probed is useless.
            guard let probe = PathProbe(header: body), Int(probe.size) == body.count + WireLayout.transportOverhead else {
                throw .malformedFrame(type: type, length: body.count)
            }
            return .pathProbe(probe)
        }
        if type == .dnsOffer {
            guard let offer = DNSOffer.parse(body) else { throw .malformedFrame(type: type, length: body.count) }
            return .dnsOffer(offer)
        }
        guard let expected = type.fixedBodyLength, body.count == expected else {
            throw .malformedFrame(type: type, length: body.count)
        }
        switch type {
        case .data, .pathProbe, .dnsOffer:  // a probe and an offer were parsed above
            throw .malformedFrame(type: type, length: body.count)
        case .keepalive:
            return .keepalive
        case .probe, .probeReply:
            let probe = ProbeBody(id: body.loadLE64(at: 0), timestamp: body.loadLE64(at: 8))
            return type == .probe ? .probe(probe) : .probeReply(probe)
        case .feedback:
            return .feedback(FeedbackBody(receivedPackets: body.loadLE64(at: 0), receivedBytes: body.loadLE64(at: 8),
                                          highestCounter: body.loadLE64(at: 16), reportedAt: body.loadLE64(at: 24)))
        case .close:
            guard let reason = CloseReason(rawValue: body[0]) else { throw .malformedFrame(type: type, length: body.count) }
            return .close(reason)
        case .resendRequest, .resendDeclined:
            let run = ResendRun(firstSequence: body.loadLE32(at: 0), count: body.loadLE32(at: 4))
            guard run.isValid else { throw .resendRunOutOfRange(type: type, count: run.count) }
            return type == .resendRequest ? .resendRequest(run) : .resendDeclined(run)
        case .endpointReport:
            guard let report = EndpointReport.parse(body) else { throw .malformedFrame(type: type, length: body.count) }
            return .endpointReport(report)
        case .pathProbeAck:
            guard let ack = PathProbe(header: body) else { throw .malformedFrame(type: type, length: body.count) }
            return .pathProbeAck(ack)
        }
    }

    public static func parse(type: FrameType, body: [UInt8]) throws(ProtocolError) -> ControlFrame {
        try body.withUnsafeBytes { raw in Result { () throws(ProtocolError) in try parse(type: type, body: raw) } }.get()
    }
}
