/// Noise HandshakeState (spec §5.3) for the 25519/ChaChaPoly suites, generic over the patterns in
/// `NoisePattern.all`. Drive it with alternating `writeMessage`/`readMessage` calls in the pattern's
/// order; when `isComplete`, call `split()` once to get the transport cipher states. Calls out of
/// order throw `handshakeMisuse` instead of producing wrong bytes.
public struct NoiseHandshakeState: Sendable {
    public enum Role: Sendable { case initiator, responder }

    public let role: Role
    public let noiseProtocol: NoiseProtocol
    private var symmetric: NoiseSymmetricState
    private let localStatic: X25519KeyPair?
    private var localEphemeral: X25519KeyPair?
    public private(set) var remoteStaticKey: [UInt8]?
    public private(set) var remoteEphemeralKey: [UInt8]?
    private var messageIndex = 0
    private var didSplit = false
    /// h just before the payload of the last message written or read was encrypted/decrypted. Binding a
    /// signature to this value binds it to everything the handshake has seen so far.
    public private(set) var handshakeHashBeforePayload: [UInt8] = []

    /// Initialize(): `prologue` is mixed into h; pre-message keys must be given as the pattern requires.
    /// `ephemeral` presets the ephemeral key pair (test vectors, worked examples); nil draws a fresh one.
    public init(protocolName: String, role: Role, prologue: [UInt8], staticKeyPair: X25519KeyPair? = nil,
                ephemeralKeyPair: X25519KeyPair? = nil, remoteStaticKey: [UInt8]? = nil) throws(TriglavCryptoError) {
        let parsed = try NoiseProtocol(name: protocolName)
        self.noiseProtocol = parsed
        self.role = role
        self.localStatic = staticKeyPair
        self.localEphemeral = ephemeralKeyPair
        self.remoteStaticKey = remoteStaticKey
        symmetric = NoiseSymmetricState(protocolName: protocolName, hash: parsed.hash)
        symmetric.mixHash(prologue)
        // Pre-messages: the initiator's first, then the responder's (spec §7.2). Only "s" occurs.
        for (tokens, isLocal) in [(parsed.pattern.initiatorPreMessage, role == .initiator),
                                  (parsed.pattern.responderPreMessage, role == .responder)] where !tokens.isEmpty {
            let key = isLocal ? staticKeyPair?.publicKey : remoteStaticKey
            guard let key, key.count == X25519KeyPair.byteCount else {
                throw .handshakeMisuse("pattern \(parsed.pattern.name) needs the \(isLocal ? "local" : "remote") static key before the handshake")
            }
            symmetric.mixHash(key)
        }
    }

    public var isComplete: Bool { messageIndex >= noiseProtocol.pattern.messages.count }
    /// Whether the next message is ours to write.
    public var isMyTurn: Bool { !isComplete && (messageIndex % 2 == 0) == (role == .initiator) }
    public var handshakeHash: [UInt8] { symmetric.handshakeHash }

    /// WriteMessage(payload). `payload` receives h before the payload is encrypted (for signatures).
    public mutating func writeMessage(payload: ([UInt8]) -> [UInt8]) throws(TriglavCryptoError) -> [UInt8] {
        guard isMyTurn else { throw .handshakeMisuse("writeMessage called when it is not this side's turn") }
        var message: [UInt8] = []
        for token in noiseProtocol.pattern.messages[messageIndex] {
            switch token {
            case .e:
                let ephemeral = localEphemeral ?? X25519KeyPair.generate()
                localEphemeral = ephemeral
                message += ephemeral.publicKey
                symmetric.mixHash(ephemeral.publicKey)
            case .s:
                guard let localStatic else { throw .handshakeMisuse("pattern needs a local static key") }
                message += try symmetric.encryptAndHash(localStatic.publicKey)
            default:
                try mixDH(token)
            }
        }
        handshakeHashBeforePayload = symmetric.handshakeHash
        message += try symmetric.encryptAndHash(payload(symmetric.handshakeHash))
        messageIndex += 1
        return message
    }

    /// WriteMessage with a fixed payload.
    public mutating func writeMessage(payload: [UInt8]) throws(TriglavCryptoError) -> [UInt8] {
        try writeMessage { _ in payload }
    }

    /// ReadMessage(message) → payload. On failure the state must be discarded (the spec's rule), which
    /// value semantics make easy: keep the copy from before the call.
    public mutating func readMessage(_ message: [UInt8]) throws(TriglavCryptoError) -> [UInt8] {
        guard !isComplete, !isMyTurn else { throw .handshakeMisuse("readMessage called when this side must write") }
        var offset = 0
        func take(_ count: Int) throws(TriglavCryptoError) -> [UInt8] {
            guard message.count - offset >= count else {
                throw .truncatedMessage(expectedAtLeast: offset + count, got: message.count)
            }
            defer { offset += count }
            return Array(message[offset..<(offset + count)])
        }
        for token in noiseProtocol.pattern.messages[messageIndex] {
            switch token {
            case .e:
                let key = try take(X25519KeyPair.byteCount)
                remoteEphemeralKey = key
                symmetric.mixHash(key)
            case .s:
                let length = X25519KeyPair.byteCount + (symmetric.cipherState.hasKey ? ChaChaPoly.tagByteCount : 0)
                remoteStaticKey = try symmetric.decryptAndHash(try take(length))
            default:
                try mixDH(token)
            }
        }
        handshakeHashBeforePayload = symmetric.handshakeHash
        let payload = try symmetric.decryptAndHash(Array(message[offset...]))
        messageIndex += 1
        return payload
    }

    /// Split() after the last message: (initiator→responder, responder→initiator). Callable once.
    public mutating func split() throws(TriglavCryptoError) -> (initiatorToResponder: NoiseCipherState,
                                                               responderToInitiator: NoiseCipherState) {
        guard isComplete else { throw .handshakeMisuse("split before the handshake is complete") }
        guard !didSplit else { throw .handshakeMisuse("split called twice; a handshake yields one session") }
        didSplit = true
        let (first, second) = symmetric.split()
        return (first, second)
    }

    private mutating func mixDH(_ token: NoiseToken) throws(TriglavCryptoError) {
        // Which local key meets which remote key: the first letter names the initiator's key, the
        // second the responder's (spec §7.1).
        let initiatorLetter: NoiseToken, responderLetter: NoiseToken
        switch token {
        case .ee: (initiatorLetter, responderLetter) = (.e, .e)
        case .es: (initiatorLetter, responderLetter) = (.e, .s)
        case .se: (initiatorLetter, responderLetter) = (.s, .e)
        case .ss: (initiatorLetter, responderLetter) = (.s, .s)
        case .e, .s: preconditionFailure("not a DH token")
        }
        let (localLetter, remoteLetter) = role == .initiator ? (initiatorLetter, responderLetter) : (responderLetter, initiatorLetter)
        guard let local = localLetter == .e ? localEphemeral : localStatic else {
            throw .handshakeMisuse("token \(token) needs a local \(localLetter) key")
        }
        guard let remote = remoteLetter == .e ? remoteEphemeralKey : remoteStaticKey else {
            throw .handshakeMisuse("token \(token) needs the remote \(remoteLetter) key")
        }
        symmetric.mixKey(try local.sharedSecret(with: remote))
    }
}
