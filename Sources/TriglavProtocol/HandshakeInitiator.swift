import TriglavCore
public import TriglavCrypto

/// What a client needs to start one uplink's handshake.
public struct InitiatorConfiguration: Sendable {
    /// The client's identity; its signature inside the first message proves who connects.
    public var identity: IdentityKey
    /// The server's identity public key (pinned); its X25519 form is the Noise responder static key.
    public var serverPublicKey: IdentityPublicKey
    /// Create a tunnel (first uplink) or join one (later uplinks and every rekey).
    public var request: TunnelRequest

    public init(identity: IdentityKey, serverPublicKey: IdentityPublicKey, request: TunnelRequest = .create) {
        self.identity = identity
        self.serverPublicKey = serverPublicKey
        self.request = request
    }
}

/// A completed client handshake: the uplink's transport session and the tunnel the server assigned.
public struct EstablishedSession: Sendable {
    /// The client side of the uplink's session (confirmed: it may send at once; send a keepalive first
    /// if there is no data, so the server confirms its side).
    public var session: TransportSession
    /// The server's assignment, including the join token for further uplinks and rekeys.
    public var tunnel: TunnelAssignment
}

/// The client side of one uplink's handshake (Noise NK initiator plus client authentication).
/// Sans-IO: `start` returns the initiation to send; `handleDeadline` returns a retransmission when
/// `nextDeadline` has passed (each retry is a fresh handshake with a new ephemeral key and index, with
/// exponential backoff and jitter) or throws `handshakeTimedOut` after `rekeyAttemptTime`; `receive`
/// consumes the server's answer. A response is accepted once: the initiator is then `isEstablished`
/// and refuses further use. Forged or stale answers throw without disturbing the pending attempt.
public struct HandshakeInitiator: Sendable {
    private struct Attempt: Sendable {
        var noise: NoiseHandshakeState
        let localIndex: UInt32
        let mac1: [UInt8]
    }

    private enum State: Sendable {
        case idle
        case awaitingResponse(Attempt)
        case established
        case failed
    }

    /// Test seam: fixed ephemeral keys, index and no jitter, so the worked example is reproducible.
    struct Determinism: Sendable {
        var ephemeral: X25519KeyPair?
        var localIndex: UInt32?
        var noJitter = false
    }

    public let configuration: InitiatorConfiguration
    private let serverStaticKey: [UInt8]
    private let macs: HandshakeMACs
    private var state: State = .idle
    private var firstAttemptAt: UInt64 = 0
    private var wallClockOffset: UInt64 = 0
    /// Attempts sent so far (the first transmission counts).
    public private(set) var attempts = 0
    /// When `handleDeadline` must next be called; nil when nothing is pending.
    public private(set) var nextDeadline: UInt64?
    private var cookie: (value: [UInt8], receivedAt: UInt64)?
    var determinism = Determinism()

    public init(configuration: InitiatorConfiguration) throws(ProtocolError) {
        self.configuration = configuration
        do {
            serverStaticKey = try configuration.serverPublicKey.x25519()
        } catch {
            throw .invalidServerKey(configuration.serverPublicKey)
        }
        macs = HandshakeMACs(serverStaticPublicKey: serverStaticKey)
    }

    /// The sender index of the attempt in flight (responses, cookie replies carry it as receiver index).
    public var localIndex: UInt32? {
        if case .awaitingResponse(let attempt) = state { return attempt.localIndex }
        return nil
    }

    public var isEstablished: Bool {
        if case .established = state { return true }
        return false
    }

    /// Starts the handshake: returns the initiation datagram. `wallClock` is the client's real-time clock
    /// in nanoseconds since the Unix epoch; it makes the signed timestamp increase across restarts
    /// (the server refuses older tunnel-creating initiations as replays).
    public mutating func start(now: UInt64, wallClock: UInt64) throws(ProtocolError) -> [UInt8] {
        guard case .idle = state else { throw .handshakeMisuse("start called twice; create a new initiator per handshake") }
        firstAttemptAt = now
        wallClockOffset = wallClock &- now
        return try sendAttempt(now: now)
    }

    /// Call at or after `nextDeadline`: returns a retransmission (a fresh attempt) when due, nil when not
    /// yet due or nothing is pending, and throws `handshakeTimedOut` when the attempt time is used up.
    public mutating func handleDeadline(now: UInt64) throws(ProtocolError) -> [UInt8]? {
        guard case .awaitingResponse = state, let deadline = nextDeadline, now >= deadline else { return nil }
        if now &- firstAttemptAt >= ProtocolConstants.rekeyAttemptTime {
            state = .failed
            nextDeadline = nil
            throw .handshakeTimedOut(attempts: attempts)
        }
        return try sendAttempt(now: now)
    }

    /// Consumes a datagram from the server: a response (returns the session), a cookie reply (returns nil;
    /// the next retransmission carries mac2), or a version-mismatch notice (throws `versionMismatch`).
    public mutating func receive(_ datagram: [UInt8], now: UInt64) throws(ProtocolError) -> EstablishedSession? {
        guard case .awaitingResponse(let attempt) = state else {
            throw .handshakeMisuse(isEstablished ? "the handshake already completed" : "no handshake in flight")
        }
        guard let first = datagram.first, let type = WireLayout.MessageType(rawValue: first) else {
            throw .unexpectedMessageType(datagram.first ?? 0)
        }
        switch type {
        case .handshakeResponse:
            guard datagram.count == WireLayout.responseSize else { throw .malformedMessage(type: first, length: datagram.count) }
            let receiverIndex = datagram.le32(at: 8)
            guard receiverIndex == attempt.localIndex else { throw .unexpectedReceiverIndex(receiverIndex) }
            guard datagram[1] == PROTOCOL_VERSION else { throw .versionMismatch(local: PROTOCOL_VERSION, remote: datagram[1]) }
            guard datagram[2] == 0, datagram[3] == 0 else { throw .malformedMessage(type: first, length: datagram.count) }
            var noise = attempt.noise  // committed only on success: a forgery must not spoil the attempt
            let payload: [UInt8]
            do {
                payload = try noise.readMessage(Array(datagram[12...]))
            } catch {
                throw .handshakeFailed(error)
            }
            let tunnel: TunnelAssignment, responderIndex: UInt32
            do throws(ProtocolError) {
                (tunnel, responderIndex) = try TunnelAssignment.decode(payload)
            } catch {
                if error == .joinRefused {
                    // Authentic (it decrypted under this handshake's keys): this attempt is over.
                    state = .failed
                    nextDeadline = nil
                }
                throw error
            }
            guard responderIndex == datagram.le32(at: 4), responderIndex != 0 else {
                throw .malformedPayload("responder index in the header does not match the encrypted one")
            }
            let keys: (initiatorToResponder: NoiseCipherState, responderToInitiator: NoiseCipherState)
            do {
                keys = try noise.split()
            } catch {
                throw .handshakeFailed(error)
            }
            guard let sendKey = keys.initiatorToResponder.key, let receiveKey = keys.responderToInitiator.key else {
                throw .handshakeMisuse("split produced no keys")
            }
            state = .established
            nextDeadline = nil
            let session = TransportSession(localIndex: attempt.localIndex, remoteIndex: responderIndex,
                                           role: .initiator, establishedAt: now, sendKey: sendKey, receiveKey: receiveKey)
            return EstablishedSession(session: session, tunnel: tunnel)
        case .cookieReply:
            guard datagram.count == WireLayout.cookieReplySize else { throw .malformedMessage(type: first, length: datagram.count) }
            let receiverIndex = datagram.le32(at: 4)
            guard receiverIndex == attempt.localIndex else { throw .unexpectedReceiverIndex(receiverIndex) }
            do {
                let value = try XChaChaPoly.open(key: macs.cookieKey, nonce: datagram.slice(8, 24),
                                                 associatedData: attempt.mac1, ciphertext: datagram.slice(32, 32))
                cookie = (value, now)
            } catch {
                throw .authenticationFailed
            }
            return nil
        case .versionMismatch:
            guard datagram.count == WireLayout.versionMismatchSize else { throw .malformedMessage(type: first, length: datagram.count) }
            let receiverIndex = datagram.le32(at: 4)
            guard receiverIndex == attempt.localIndex else { throw .unexpectedReceiverIndex(receiverIndex) }
            // Unauthenticated, so it is only reported: the attempt stays pending and keeps retrying.
            throw .versionMismatch(local: PROTOCOL_VERSION, remote: datagram[1])
        case .handshakeInitiation, .transport:
            throw .unexpectedMessageType(first)
        }
    }

    /// `receive` for a datagram still in the caller's receive buffer (copied; handshakes are rare).
    public mutating func receive(_ datagram: UnsafeRawBufferPointer, now: UInt64) throws(ProtocolError) -> EstablishedSession? {
        try receive(Array(datagram), now: now)
    }

    private mutating func sendAttempt(now: UInt64) throws(ProtocolError) -> [UInt8] {
        var localIndex = determinism.localIndex ?? Random.uint32()
        while localIndex == 0 { localIndex = Random.uint32() }
        var header: [UInt8] = [WireLayout.MessageType.handshakeInitiation.rawValue, PROTOCOL_VERSION, 0, 0]
        header.appendLE32(localIndex)
        let payload = ClientAuthPayload(identity: configuration.identity.publicKey,
                                        timestamp: wallClockOffset &+ now, request: configuration.request)
        var noise: NoiseHandshakeState
        var message = header
        do {
            noise = try NoiseHandshakeState(protocolName: ProtocolConstants.noiseProtocolName, role: .initiator,
                                            prologue: handshakePrologue(initiationHeader: header[...]),
                                            ephemeralKeyPair: determinism.ephemeral, remoteStaticKey: serverStaticKey)
            let identity = configuration.identity
            message += try noise.writeMessage { hash in payload.encoded(signedBy: identity, handshakeHash: hash) }
        } catch {
            throw .handshakeFailed(error)
        }
        let mac1 = macs.mac1(message[...])
        message += mac1
        if let cookie, now &- cookie.receivedAt < ProtocolConstants.cookieUsableFor {
            message += HandshakeMACs.mac2(cookie: cookie.value, message[...])
        } else {
            message += [UInt8](repeating: 0, count: WireLayout.macSize)
        }
        state = .awaitingResponse(Attempt(noise: noise, localIndex: localIndex, mac1: mac1))
        attempts += 1
        let exponent = UInt64(min(attempts - 1, 16))
        let timeout = min(ProtocolConstants.initialRetransmitTimeout << exponent, ProtocolConstants.maxRetransmitTimeout)
        let jitter = determinism.noJitter ? 0 : Random.below(timeout / 4)
        nextDeadline = now &+ timeout &+ jitter
        return message
    }
}
