public import TriglavCore
public import TriglavCrypto

/// A client the server admits: its identity key and the tunnel addresses it gets.
public struct AuthorizedClient: Sendable, Equatable {
    public let publicKey: IdentityPublicKey
    public let ipv4: IPPrefix?
    public let ipv6: IPPrefix?

    public init(publicKey: IdentityPublicKey, ipv4: IPPrefix?, ipv6: IPPrefix?) {
        self.publicKey = publicKey
        self.ipv4 = ipv4
        self.ipv6 = ipv6
    }
}

/// Tuning of the responder's denial-of-service defences.
public struct ResponderConfiguration: Sendable {
    /// Initiations per second (server-wide) above which mac2 (a cookie) is demanded.
    public var loadThreshold = ProtocolConstants.defaultLoadThreshold
    public var perSourceHandshakesPerSecond = ProtocolConstants.perSourceHandshakesPerSecond
    public var perSourceBurst = ProtocolConstants.perSourceBurst
    public var rateLimiterCapacity = ProtocolConstants.rateLimiterCapacity
    public init() {}
}

/// How an accepted initiation affected the client's tunnel.
public enum TunnelEvent: Equatable, Sendable {
    /// A new tunnel was created; a previous tunnel of the same identity (client restart) is replaced and
    /// its sessions must be dropped.
    case created(replacedTunnelID: UInt64?)
    /// The uplink joined the existing tunnel.
    case joined
}

/// An initiation the server accepted: send `reply` to the source, install `session` (route by its
/// `localIndex`), attach it to `tunnel`.
public struct AcceptedInitiation: Sendable {
    /// The handshake response to send back to the initiation's source.
    public let reply: [UInt8]
    /// The server side of the new session; unconfirmed until the client's first packet authenticates.
    public let session: TransportSession
    /// The authenticated client identity.
    public let client: IdentityPublicKey
    /// The tunnel this uplink belongs to (new or joined).
    public let tunnel: TunnelAssignment
    /// Whether the tunnel was created (possibly replacing an older one) or joined.
    public let event: TunnelEvent
    /// The server-side index of the session this one rekeys (same tunnel, checked); retire it once the new
    /// session is confirmed (`UplinkKeyring` does this).
    public let replacesSessionIndex: UInt32?
}

/// The responder's verdict on one initiation.
public enum ResponderDecision: Sendable {
    case accept(AcceptedInitiation)
    /// Under load and without a valid mac2: send this cookie reply and keep no state.
    case challenge(cookieReply: [UInt8])
    /// Refused; send `reply` if present (a version-mismatch notice, or the encrypted join refusal for an
    /// authenticated client with an unknown token), otherwise stay silent.
    case reject(ProtocolError, reply: [UInt8]?)
}

/// The server side of the handshake: holds the server identity, the authorized clients and their
/// tunnels, and turns initiations into sessions. Checks in order of cost: size and mac1 (one BLAKE2b),
/// version, cookie under load, per-source rate, then the Noise message (two X25519), authorization,
/// the Ed25519 signature, and the tunnel request. Nothing is stored for a rejected initiation except
/// the bounded rate-limiter and load counters. Session indices are allocated here (unique among live
/// sessions) and forgotten when the session expires or `sessionEnded` is called.
public struct HandshakeResponder: Sendable {
    private struct Tunnel: Sendable {
        let assignment: TunnelAssignment
    }

    private struct SessionRecord: Sendable {
        let tunnelID: UInt64
        let expiresAt: UInt64
    }

    /// Test seam for the worked example.
    struct Determinism: Sendable {
        var ephemeral: X25519KeyPair?
        var localIndex: UInt32?
        var tunnelID: UInt64?
        var joinToken: JoinToken?
    }

    public let serverPublicKey: IdentityPublicKey
    private let staticKeyPair: X25519KeyPair
    private let macs: HandshakeMACs
    private let configuration: ResponderConfiguration
    private var clients: [IdentityPublicKey: AuthorizedClient] = [:]
    private var tunnels: [IdentityPublicKey: Tunnel] = [:]
    private var lastCreateTimestamp: [IdentityPublicKey: UInt64] = [:]
    private var sessions: [UInt32: SessionRecord] = [:]
    private var cookieSecret: (key: SymmetricKey, createdAt: UInt64)?
    private var rateLimiter: RateLimiter
    private var loadWindowStart: UInt64 = 0
    private var loadCount = 0
    private var previousLoadCount = 0
    /// Demand cookies regardless of the measured rate (e.g. when the data plane's queue backs up).
    public var forceUnderLoad = false
    var determinism = Determinism()

    public init(identity: IdentityKey, authorizedClients: [AuthorizedClient],
                configuration: ResponderConfiguration = ResponderConfiguration()) {
        serverPublicKey = identity.publicKey
        staticKeyPair = X25519KeyPair(identity: identity)
        macs = HandshakeMACs(serverStaticPublicKey: staticKeyPair.publicKey)
        self.configuration = configuration
        rateLimiter = RateLimiter(perSecond: configuration.perSourceHandshakesPerSecond,
                                  burst: configuration.perSourceBurst, capacity: configuration.rateLimiterCapacity)
        for client in authorizedClients { clients[client.publicKey] = client }
    }

    /// Replaces the authorized list. Returns the tunnels of clients no longer authorized (or whose
    /// addresses changed), which the caller must tear down; they can't join or rekey any more.
    public mutating func setAuthorizedClients(_ list: [AuthorizedClient]) -> [UInt64] {
        let updated = Dictionary(list.map { ($0.publicKey, $0) }, uniquingKeysWith: { _, last in last })
        var removed: [UInt64] = []
        for (key, tunnel) in tunnels where updated[key] != clients[key] || updated[key] == nil {
            removed.append(tunnel.assignment.tunnelID)
            removeTunnel(tunnel.assignment.tunnelID)
        }
        clients = updated
        return removed
    }

    /// Forgets a tunnel (and its session indices); later joins with its token fail.
    public mutating func removeTunnel(_ tunnelID: UInt64) {
        tunnels = tunnels.filter { $0.value.assignment.tunnelID != tunnelID }
        sessions = sessions.filter { $0.value.tunnelID != tunnelID }
    }

    /// Frees a session's index (the data plane dropped the session).
    public mutating func sessionEnded(localIndex: UInt32) {
        sessions[localIndex] = nil
    }

    /// Number of session indices currently reserved.
    public var liveSessionCount: Int { sessions.count }

    /// Whether cookies are currently demanded.
    public func isUnderLoad(now: UInt64) -> Bool {
        let current = now &- loadWindowStart < ProtocolConstants.second ? loadCount : 0
        return forceUnderLoad || current > configuration.loadThreshold || previousLoadCount > configuration.loadThreshold
    }

    /// Processes one initiation from `source` (any stable description of the sender's address, e.g. an
    /// `IPEndpoint`; only its hash within this process is used, for the cookie and the rate limit).
    public mutating func handleInitiation<Source: Hashable>(_ datagram: [UInt8], from source: Source,
                                                            now: UInt64) -> ResponderDecision {
        do throws(ProtocolError) {
            return try process(datagram, source: sourceDigest(source), now: now)
        } catch {
            if case .versionMismatch = error, datagram.count >= 8 {
                var notice: [UInt8] = [WireLayout.MessageType.versionMismatch.rawValue, PROTOCOL_VERSION, 0, 0]
                notice += datagram[4..<8]
                return .reject(error, reply: notice)
            }
            return .reject(error, reply: nil)
        }
    }

    /// `handleInitiation` for a datagram still in the caller's receive buffer (copied; handshakes are rare).
    public mutating func handleInitiation<Source: Hashable>(_ datagram: UnsafeRawBufferPointer, from source: Source,
                                                            now: UInt64) -> ResponderDecision {
        handleInitiation(Array(datagram), from: source, now: now)
    }

    private mutating func process(_ datagram: [UInt8], source: UInt64, now: UInt64) throws(ProtocolError) -> ResponderDecision {
        guard datagram.first == WireLayout.MessageType.handshakeInitiation.rawValue else {
            throw .unexpectedMessageType(datagram.first ?? 0)
        }
        let macsStart = datagram.count - 2 * WireLayout.macSize
        guard macsStart >= 8 else { throw .malformedMessage(type: datagram[0], length: datagram.count) }
        let mac1 = datagram.slice(macsStart, WireLayout.macSize)
        guard constantTimeEqual(mac1, macs.mac1(datagram[..<macsStart])) else { throw .invalidMAC }
        guard datagram[1] == PROTOCOL_VERSION else { throw .versionMismatch(local: PROTOCOL_VERSION, remote: datagram[1]) }
        guard datagram.count == WireLayout.initiationSize, datagram[2] == 0, datagram[3] == 0 else {
            throw .malformedMessage(type: datagram[0], length: datagram.count)
        }
        countLoad(now: now)
        if isUnderLoad(now: now) {
            let cookie = currentCookie(source: source, now: now)
            let mac2Start = macsStart + WireLayout.macSize
            let expected = HandshakeMACs.mac2(cookie: cookie, datagram[..<mac2Start])
            guard constantTimeEqual(datagram.slice(mac2Start, WireLayout.macSize), expected) else {
                return .challenge(cookieReply: cookieReply(cookie: cookie, mac1: mac1, receiverIndex: datagram.le32(at: 4)))
            }
        }
        guard rateLimiter.allow(source, now: now) else { throw .rateLimited }

        // Noise NK, message 1: e, es, then the encrypted client-auth payload.
        let initiatorIndex = datagram.le32(at: 4)
        var noise: NoiseHandshakeState
        let plaintext: [UInt8]
        do {
            noise = try NoiseHandshakeState(protocolName: ProtocolConstants.noiseProtocolName, role: .responder,
                                            prologue: handshakePrologue(initiationHeader: datagram[0..<8]),
                                            staticKeyPair: staticKeyPair, ephemeralKeyPair: determinism.ephemeral)
            plaintext = try noise.readMessage(Array(datagram[8..<macsStart]))
        } catch {
            throw .handshakeFailed(error)
        }
        let (payload, signedBytes, signature) = try ClientAuthPayload.decode(plaintext)
        guard let client = clients[payload.identity] else { throw .unknownClient(payload.identity) }
        guard payload.verify(signature: signature, signedBytes: signedBytes, handshakeHash: noise.handshakeHashBeforePayload) else {
            throw .invalidSignature(payload.identity)
        }

        purgeExpiredSessions(now: now)
        let assignment: TunnelAssignment
        let event: TunnelEvent
        var replaces: UInt32?
        switch payload.request {
        case .create:
            let last = lastCreateTimestamp[client.publicKey] ?? 0
            guard payload.timestamp > last else {
                throw .replayedInitiation(client: client.publicKey, timestamp: payload.timestamp, lastAccepted: last)
            }
            assignment = TunnelAssignment(tunnelID: determinism.tunnelID ?? Random.uint64(), ipv4: client.ipv4,
                                          ipv6: client.ipv6, joinToken: determinism.joinToken ?? JoinToken.random())
            event = .created(replacedTunnelID: tunnels[client.publicKey]?.assignment.tunnelID)
        case .join(let token, let replacing):
            guard let tunnel = tunnels[client.publicKey], tunnel.assignment.joinToken == token else {
                // The client is authenticated, so tell it (encrypted) to create a new tunnel instead of
                // leaving it to time out; no session is created.
                var reply: [UInt8] = [WireLayout.MessageType.handshakeResponse.rawValue, PROTOCOL_VERSION, 0, 0]
                reply.appendLE32(0)
                reply.appendLE32(initiatorIndex)
                do {
                    reply += try noise.writeMessage(payload: TunnelAssignment.refusalPayload())
                } catch {
                    throw .handshakeFailed(error)
                }
                return .reject(.invalidJoinToken(client: client.publicKey), reply: reply)
            }
            assignment = tunnel.assignment
            event = .joined
            if let replacing, sessions[replacing]?.tunnelID == assignment.tunnelID { replaces = replacing }
            let live = sessions.values.reduce(0) { $0 + ($1.tunnelID == assignment.tunnelID ? 1 : 0) }
            guard live < ProtocolConstants.maxSessionsPerTunnel || replaces != nil else {
                throw .tooManySessions(tunnelID: assignment.tunnelID)
            }
        }

        var localIndex = determinism.localIndex ?? Random.uint32()
        while localIndex == 0 || sessions[localIndex] != nil { localIndex = Random.uint32() }
        var reply: [UInt8] = [WireLayout.MessageType.handshakeResponse.rawValue, PROTOCOL_VERSION, 0, 0]
        reply.appendLE32(localIndex)
        reply.appendLE32(initiatorIndex)
        let keys: (initiatorToResponder: NoiseCipherState, responderToInitiator: NoiseCipherState)
        do {
            reply += try noise.writeMessage(payload: assignment.encoded(responderIndex: localIndex))
            keys = try noise.split()
        } catch {
            throw .handshakeFailed(error)
        }
        guard let sendKey = keys.responderToInitiator.key, let receiveKey = keys.initiatorToResponder.key else {
            throw .handshakeMisuse("split produced no keys")
        }

        // Commit: only an authenticated, authorized, well-formed initiation reaches this point.
        if case .created(let replaced) = event {
            if let replaced { removeTunnel(replaced) }
            lastCreateTimestamp[client.publicKey] = payload.timestamp
            tunnels[client.publicKey] = Tunnel(assignment: assignment)
        }
        sessions[localIndex] = SessionRecord(tunnelID: assignment.tunnelID, expiresAt: now &+ ProtocolConstants.rejectAfterTime)
        let session = TransportSession(localIndex: localIndex, remoteIndex: initiatorIndex, role: .responder,
                                       establishedAt: now, sendKey: sendKey, receiveKey: receiveKey)
        return .accept(AcceptedInitiation(reply: reply, session: session, client: client.publicKey, tunnel: assignment,
                                          event: event, replacesSessionIndex: replaces))
    }

    private mutating func countLoad(now: UInt64) {
        let elapsed = now &- loadWindowStart
        if elapsed >= ProtocolConstants.second {
            previousLoadCount = elapsed < 2 * ProtocolConstants.second ? loadCount : 0
            loadCount = 0
            loadWindowStart = now
        }
        loadCount += 1
    }

    private mutating func purgeExpiredSessions(now: UInt64) {
        sessions = sessions.filter { $0.value.expiresAt > now }
    }

    private func sourceDigest<Source: Hashable>(_ source: Source) -> UInt64 {
        var hasher = Hasher()
        hasher.combine(source)
        return UInt64(bitPattern: Int64(hasher.finalize()))
    }

    /// cookie = BLAKE2b-128(key: rotating secret, source digest).
    private mutating func currentCookie(source: UInt64, now: UInt64) -> [UInt8] {
        if cookieSecret == nil || now &- (cookieSecret?.createdAt ?? 0) >= ProtocolConstants.cookieSecretLifetime {
            cookieSecret = (SymmetricKey.random(), now)
        }
        var digest: [UInt8] = []
        digest.appendLE64(source)
        // cookieSecret was set just above.
        return Blake2b.mac(key: cookieSecret.unsafelyUnwrapped.key, data: digest, outputLength: WireLayout.macSize)
    }

    private func cookieReply(cookie: [UInt8], mac1: [UInt8], receiverIndex: UInt32) -> [UInt8] {
        var reply: [UInt8] = [WireLayout.MessageType.cookieReply.rawValue, 0, 0, 0]
        reply.appendLE32(receiverIndex)
        let nonce = randomBytes(XChaChaPoly.nonceByteCount)
        reply += nonce
        reply += XChaChaPoly.seal(key: macs.cookieKey, nonce: nonce, associatedData: mac1, plaintext: cookie)
        return reply
    }
}
