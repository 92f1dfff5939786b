internal import TriglavCrypto

/// Which side of the handshake a session came from. Only initiators (clients) start rekeys.
public enum SessionRole: Sendable, Equatable {
    case initiator, responder
}

/// A frame opened in place by `TransportSession.open`: the body now lies decrypted at `body` inside
/// the caller's buffer (for `data`, the inner IP packet).
public struct OpenedFrame: Sendable, Equatable {
    public let type: FrameType
    /// Opaque flags the sender set, authenticated; the multipath layer defines their meaning.
    public let flags: UInt8
    /// Opaque tunnel-wide flags (inner header byte 2), authenticated; the multipath layer defines their
    /// meaning. 0 from peers that predate them (they send the byte as reserved zero and ignore it).
    public let tunnelFlags: UInt8
    /// Tunnel-level sequence number (shared by all uplinks of the tunnel) for reordering.
    public let tunnelSequence: UInt32
    /// Transport counter of this session, unique per packet.
    public let counter: UInt64
    /// Byte range of the decrypted body within the buffer passed to `open`.
    public let body: Range<Int>
}

/// Counters of what a session has received, the input of a feedback frame.
public struct ReceiveStatistics: Sendable, Equatable {
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    public var highestCounter: UInt64 = 0
}

/// One uplink's keys after a completed handshake: seals and opens transport datagrams in place in
/// caller-provided buffers, with an explicit 64-bit counter as the AEAD nonce and the 16-byte
/// cleartext header as associated data. Invariants: each counter is sent at most once; the replay
/// window only moves after authentication; nothing is sealed or opened after `rejectAfterTime`,
/// `rejectAfterMessages` or a close. Owned by one thread (a value type; copies diverge, so keep one).
public struct TransportSession: Sendable {
    /// Index the peer puts in datagrams to us (we chose it; route incoming packets by it).
    public let localIndex: UInt32
    /// Index we put in datagrams to the peer.
    public let remoteIndex: UInt32
    public let role: SessionRole
    /// Monotonic time of the handshake's completion.
    public let establishedAt: UInt64
    let sendKey: SymmetricKey
    let receiveKey: SymmetricKey
    /// Counter of the next datagram to send.
    public internal(set) var nextSendCounter: UInt64 = 0
    private var replay = ReplayWindow()
    public private(set) var received = ReceiveStatistics()
    /// Responders learn that the initiator holds the keys only when its first packet authenticates;
    /// until then a responder should not switch an uplink's traffic to this session.
    public private(set) var isConfirmed: Bool
    /// Set once a close was sealed or opened; the session then refuses everything.
    public private(set) var isClosed = false
    public private(set) var lastReceivedAt: UInt64?
    public private(set) var lastSentAt: UInt64?

    init(localIndex: UInt32, remoteIndex: UInt32, role: SessionRole, establishedAt: UInt64,
         sendKey: SymmetricKey, receiveKey: SymmetricKey) {
        self.localIndex = localIndex
        self.remoteIndex = remoteIndex
        self.role = role
        self.establishedAt = establishedAt
        self.sendKey = sendKey
        self.receiveKey = receiveKey
        self.isConfirmed = role == .initiator
    }

    /// Whether the initiator should start a new handshake for this uplink now (the old session keeps
    /// working until `rejectAfterTime`, leaving a full minute for the new one to arrive).
    public func isRekeyDue(now: UInt64) -> Bool {
        role == .initiator && !isClosed
            && (now &- establishedAt >= ProtocolConstants.rekeyAfterTime
                || nextSendCounter >= ProtocolConstants.rekeyAfterMessages)
    }

    /// Whether the session can no longer be used in either direction.
    public func isExpired(now: UInt64) -> Bool {
        isClosed || now &- establishedAt >= ProtocolConstants.rejectAfterTime
            || nextSendCounter >= ProtocolConstants.rejectAfterMessages
    }

    /// The monotonic time at which the session expires.
    public var expiresAt: UInt64 { establishedAt &+ ProtocolConstants.rejectAfterTime }

    /// Seals one frame in place. The body must already be in `buffer` at
    /// `WireLayout.bodyOffset ..< bodyOffset + bodyLength`; the header is written before it and the tag
    /// after it, so `buffer` needs `bodyLength + WireLayout.transportOverhead` bytes. Returns the
    /// datagram length (the datagram is `buffer[0..<length]`). Never allocates.
    public mutating func seal(_ type: FrameType, flags: UInt8 = 0, tunnelFlags: UInt8 = 0, tunnelSequence: UInt32 = 0,
                              bodyLength: Int, in buffer: UnsafeMutableRawBufferPointer, now: UInt64) throws(ProtocolError) -> Int {
        let length = bodyLength + WireLayout.transportOverhead
        guard bodyLength >= 0, buffer.count >= length, let base = buffer.baseAddress else {
            throw .bufferTooSmall(needed: max(length, WireLayout.transportOverhead), available: buffer.count)
        }
        if let expected = type.fixedBodyLength, expected != bodyLength {
            throw .malformedFrame(type: type, length: bodyLength)
        }
        guard !isClosed else { throw .sessionClosed }
        let age = now &- establishedAt
        guard age < ProtocolConstants.rejectAfterTime else { throw .sessionExpired(ageNanoseconds: age) }
        let counter = nextSendCounter
        guard counter < ProtocolConstants.rejectAfterMessages else { throw .sessionExhausted(counter: counter) }
        nextSendCounter = counter + 1
        lastSentAt = now

        buffer.storeLE32(UInt32(WireLayout.MessageType.transport.rawValue), at: 0)  // type + 3 zero bytes
        buffer.storeLE32(remoteIndex, at: 4)
        buffer.storeLE64(counter, at: 8)
        let inner = WireLayout.transportHeaderSize
        buffer[inner] = type.rawValue
        buffer[inner + 1] = flags
        buffer[inner + 2] = tunnelFlags
        buffer[inner + 3] = 0
        buffer.storeLE32(tunnelSequence, at: inner + 4)
        let plaintextLength = WireLayout.innerHeaderSize + bodyLength
        ChaChaPoly.sealInPlace(key: sendKey, counter: counter,
                               associatedData: UnsafeRawBufferPointer(start: base, count: WireLayout.transportHeaderSize),
                               buffer: UnsafeMutableRawBufferPointer(start: base + inner, count: plaintextLength),
                               tag: base + inner + plaintextLength)
        return length
    }

    /// Seals a control frame (keepalive, probe, probe reply, feedback, close) into `buffer`. Sealing a
    /// close frame closes the session for further use.
    public mutating func seal(_ frame: ControlFrame, flags: UInt8 = 0, tunnelSequence: UInt32 = 0,
                              in buffer: UnsafeMutableRawBufferPointer, now: UInt64) throws(ProtocolError) -> Int {
        guard buffer.count >= frame.bodyLength + WireLayout.transportOverhead else {
            throw .bufferTooSmall(needed: frame.bodyLength + WireLayout.transportOverhead, available: buffer.count)
        }
        frame.serialize(into: UnsafeMutableRawBufferPointer(rebasing: buffer[WireLayout.bodyOffset...]))
        let length = try seal(frame.frameType, flags: flags, tunnelSequence: tunnelSequence,
                              bodyLength: frame.bodyLength, in: buffer, now: now)
        if case .close = frame { isClosed = true }
        return length
    }

    /// Authenticates and decrypts `datagram` in place. Checks, in order: size and type, receiver index,
    /// session usable, tag (AEAD over header + ciphertext), then the replay window and the frame type.
    /// A packet that fails any check before authentication leaves the session unchanged; the replay
    /// window moves only for authentic packets. Opening a close frame closes the session. Never allocates.
    public mutating func open(_ datagram: UnsafeMutableRawBufferPointer, now: UInt64) throws(ProtocolError) -> OpenedFrame {
        guard datagram.count >= WireLayout.minimumTransportSize, let base = datagram.baseAddress else {
            throw .malformedMessage(type: datagram.first ?? 0, length: datagram.count)
        }
        guard datagram[0] == WireLayout.MessageType.transport.rawValue else { throw .unexpectedMessageType(datagram[0]) }
        let header = UnsafeRawBufferPointer(datagram)
        let receiverIndex = header.loadLE32(at: 4)
        guard receiverIndex == localIndex else { throw .unexpectedReceiverIndex(receiverIndex) }
        guard !isClosed else { throw .sessionClosed }
        let age = now &- establishedAt
        guard age < ProtocolConstants.rejectAfterTime else { throw .sessionExpired(ageNanoseconds: age) }
        let counter = header.loadLE64(at: 8)
        guard counter < ProtocolConstants.rejectAfterMessages else { throw .sessionExhausted(counter: counter) }

        let inner = WireLayout.transportHeaderSize
        let ciphertextLength = datagram.count - inner - WireLayout.tagSize
        do {
            try ChaChaPoly.openInPlace(key: receiveKey, counter: counter,
                                       associatedData: UnsafeRawBufferPointer(start: base, count: inner),
                                       buffer: UnsafeMutableRawBufferPointer(start: base + inner, count: ciphertextLength),
                                       tag: UnsafeRawPointer(base + inner + ciphertextLength))
        } catch {
            throw .authenticationFailed
        }
        try replay.accept(counter)
        received.packets &+= 1
        received.bytes &+= UInt64(datagram.count)
        received.highestCounter = replay.highest
        lastReceivedAt = now
        isConfirmed = true

        guard let type = FrameType(rawValue: datagram[inner]) else { throw .unknownFrameType(datagram[inner]) }
        let bodyStart = inner + WireLayout.innerHeaderSize
        let bodyEnd = datagram.count - WireLayout.tagSize
        if let expected = type.fixedBodyLength, expected != bodyEnd - bodyStart {
            throw .malformedFrame(type: type, length: bodyEnd - bodyStart)
        }
        if type == .close { isClosed = true }
        return OpenedFrame(type: type, flags: datagram[inner + 1], tunnelFlags: datagram[inner + 2], tunnelSequence: header.loadLE32(at: inner + 4),
                           counter: counter, body: bodyStart..<bodyEnd)
    }

    /// A feedback report of what this session has received so far.
    public func feedback(now: UInt64) -> FeedbackBody {
        FeedbackBody(receivedPackets: received.packets, receivedBytes: received.bytes,
                     highestCounter: received.highestCounter, reportedAt: now)
    }
}

extension TransportSession {
    /// Convenience for tests and control paths: seals `body` into a new array.
    public mutating func seal(_ type: FrameType, flags: UInt8 = 0, tunnelSequence: UInt32 = 0, body: [UInt8],
                              now: UInt64) throws(ProtocolError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: body.count + WireLayout.transportOverhead)
        buffer.replaceSubrange(WireLayout.bodyOffset..<(WireLayout.bodyOffset + body.count), with: body)
        let length = try buffer.withUnsafeMutableBytes { raw in
            Result { () throws(ProtocolError) in
                try seal(type, flags: flags, tunnelSequence: tunnelSequence, bodyLength: body.count, in: raw, now: now)
            }
        }.get()
        return Array(buffer[0..<length])
    }

    /// Convenience: seals a control frame into a new array.
    public mutating func seal(_ frame: ControlFrame, now: UInt64) throws(ProtocolError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: frame.bodyLength + WireLayout.transportOverhead)
        let length = try buffer.withUnsafeMutableBytes { raw in
            Result { () throws(ProtocolError) in try seal(frame, in: raw, now: now) }
        }.get()
        return Array(buffer[0..<length])
    }

    /// Convenience: opens a copy of `datagram`, returning the frame and its body bytes.
    public mutating func open(_ datagram: [UInt8], now: UInt64) throws(ProtocolError) -> (frame: OpenedFrame, body: [UInt8]) {
        var copy = datagram
        let frame = try copy.withUnsafeMutableBytes { raw in
            Result { () throws(ProtocolError) in try open(raw, now: now) }
        }.get()
        return (frame, Array(copy[frame.body]))
    }
}
