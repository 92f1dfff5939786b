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
        }
    }

    /// Exact body length for control frames; nil for data (any length up to the MTU) and path-MTU probes (padded).
    public var fixedBodyLength: Int? {
        switch self {
        case .data, .pathProbe: nil
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
        for index in 0..<Self.bodyLength { body[index] = 0 }
        body[0] = endpoint.address.isIPv4 ? 4 : 6
        body[2] = UInt8(endpoint.port >> 8)
        body[3] = UInt8(truncatingIfNeeded: endpoint.port)
        for (offset, byte) in endpoint.address.bytes.enumerated() { body[4 + offset] = byte }
    }

    /// Nil for an unknown family, a non-zero reserved byte, or IPv4 with bytes set past its 4.
    static func parse(_ body: UnsafeRawBufferPointer) -> EndpointReport? {
        guard body.count == bodyLength, body[1] == 0 else { return nil }
        let addressLength: Int
        switch body[0] {
        case 4: addressLength = 4
        case 6: addressLength = 16
        default: return nil
        }
        guard body[(4 + addressLength)...].allSatisfy({ $0 == 0 }),
              let address = IPAddress(bytes: body[4..<(4 + addressLength)]) else { return nil }
        return EndpointReport(endpoint: IPEndpoint(address: address, port: UInt16(body[2]) << 8 | UInt16(body[3])))
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
        }
    }

    /// Body length of this frame: a probe's makes the whole datagram `size` bytes long.
    public var bodyLength: Int {
        if case .pathProbe(let probe) = self { return max(PathProbe.headerLength, Int(probe.size) - WireLayout.transportOverhead) }
        return frameType.fixedBodyLength ?? 0
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
        guard let expected = type.fixedBodyLength, body.count == expected else {
            throw .malformedFrame(type: type, length: body.count)
        }
        switch type {
        case .data, .pathProbe:  // a probe was parsed above
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
