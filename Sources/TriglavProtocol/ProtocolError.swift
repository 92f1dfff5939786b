public import TriglavCrypto

/// Why the protocol refused a message or an operation. Every case carries the offending value and
/// its description says what was wrong and what to do about it.
public enum ProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A datagram of a known type has the wrong size.
    case malformedMessage(type: UInt8, length: Int)
    /// The first byte is not a message type this operation accepts.
    case unexpectedMessageType(UInt8)
    /// The peer speaks another PROTOCOL_VERSION.
    case versionMismatch(local: UInt8, remote: UInt8)
    /// mac1 of an initiation is wrong: the sender doesn't know the server's public key, or it is noise.
    case invalidMAC
    /// The source exceeded its handshake rate.
    case rateLimited
    /// The Noise handshake failed (tampered message, or encrypted for another server key).
    case handshakeFailed(TriglavCryptoError)
    /// The client's identity key is not in the server's authorized list.
    case unknownClient(IdentityPublicKey)
    /// The client's signature over the handshake hash does not verify.
    case invalidSignature(IdentityPublicKey)
    /// A tunnel-creating initiation carries a timestamp not newer than the last accepted one.
    case replayedInitiation(client: IdentityPublicKey, timestamp: UInt64, lastAccepted: UInt64)
    /// A join token doesn't match the client's current tunnel (or the client has none).
    case invalidJoinToken(client: IdentityPublicKey)
    /// The server (authenticated) refused a join: it knows no tunnel for that token, typically because it
    /// restarted. The client must run one `.create` handshake, then join its other uplinks with the new token.
    case joinRefused
    /// The tunnel already holds `maxSessionsPerTunnel` live sessions.
    case tooManySessions(tunnelID: UInt64)
    /// A handshake payload field is out of range (the reason names it).
    case malformedPayload(String)
    /// A response, cookie reply or transport packet names a receiver index we don't own.
    case unexpectedReceiverIndex(UInt32)
    /// The initiator was used out of order (the reason says how).
    case handshakeMisuse(String)
    /// No response arrived within `rekeyAttemptTime`.
    case handshakeTimedOut(attempts: Int)
    /// The server's public key is not a usable Ed25519 key.
    case invalidServerKey(IdentityPublicKey)
    /// A transport packet failed authentication (tampered, or not for this session).
    case authenticationFailed
    /// A transport counter was already received.
    case replayedPacket(counter: UInt64)
    /// A transport counter is older than the replay window allows.
    case packetTooOld(counter: UInt64, highest: UInt64)
    /// The session is older than `rejectAfterTime`; a new handshake is needed.
    case sessionExpired(ageNanoseconds: UInt64)
    /// The session's counter reached `rejectAfterMessages`; a new handshake is needed.
    case sessionExhausted(counter: UInt64)
    /// The session was closed (by us or the peer) and carries no more traffic.
    case sessionClosed
    /// An authenticated frame has a type this version doesn't know.
    case unknownFrameType(UInt8)
    /// A frame's body has the wrong length for its type.
    case malformedFrame(type: FrameType, length: Int)
    /// A resend request or resend-declined frame names a run of 0 or more than `ProtocolConstants.maxResendRun`
    /// sequences (a misbehaving or newer peer).
    case resendRunOutOfRange(type: FrameType, count: UInt32)
    /// The caller's buffer can't hold the datagram.
    case bufferTooSmall(needed: Int, available: Int)

    public var description: String {
        switch self {
        case .malformedMessage(let type, let length):
            return "malformed message: type \(type) with \(length) bytes has the wrong size; dropped"
        case .unexpectedMessageType(let type):
            return "unexpected message type \(type) here; dropped"
        case .versionMismatch(let local, let remote):
            return "protocol version mismatch: this node speaks version \(local), the peer version \(remote); "
                + "upgrade the older side so both run the same Triglav protocol version"
        case .invalidMAC:
            return "handshake initiation with an invalid mac1 (sender doesn't know this server's public key); dropped"
        case .rateLimited:
            return "handshake rate limit exceeded for this source; dropped"
        case .handshakeFailed(let error):
            return "handshake failed: \(error); check that the client pins this server's public key"
        case .unknownClient(let key):
            return "client \(key) is not authorized; add its public key to the server's [[clients]] to admit it"
        case .invalidSignature(let key):
            return "client \(key) presented an invalid identity signature; rejected"
        case .replayedInitiation(let client, let timestamp, let last):
            return "client \(client) sent an initiation with timestamp \(timestamp) not newer than \(last) "
                + "(a replay, or the client's clock went backwards); rejected"
        case .invalidJoinToken(let client):
            return "client \(client) presented a join token that matches none of its tunnels; it must start a new tunnel"
        case .joinRefused:
            return "the server no longer knows this tunnel (it restarted?); start a new tunnel with one uplink, then join the others"
        case .tooManySessions(let tunnelID):
            return "tunnel \(tunnelID) already has the maximum number of live sessions; rejected"
        case .malformedPayload(let reason):
            return "malformed handshake payload: \(reason)"
        case .unexpectedReceiverIndex(let index):
            return "message for receiver index \(index), which belongs to no pending handshake or session; dropped"
        case .handshakeMisuse(let reason):
            return "handshake used out of order: \(reason)"
        case .handshakeTimedOut(let attempts):
            return "no handshake response after \(attempts) attempts; check the server address, port and firewall"
        case .invalidServerKey(let key):
            return "server public key \(key) is not a valid Ed25519 key; copy it again from 'triglav pubkey' on the server"
        case .authenticationFailed:
            return "transport packet failed authentication; dropped"
        case .replayedPacket(let counter):
            return "transport counter \(counter) was already received (replay or duplicate); dropped"
        case .packetTooOld(let counter, let highest):
            return "transport counter \(counter) is outside the replay window (highest \(highest)); dropped"
        case .sessionExpired(let age):
            return "session expired after \(age / 1_000_000_000) s; a new handshake is needed"
        case .sessionExhausted(let counter):
            return "session counter reached \(counter); a new handshake is needed"
        case .sessionClosed:
            return "session is closed"
        case .unknownFrameType(let type):
            return "authenticated frame of unknown type \(type) (newer peer?); dropped"
        case .malformedFrame(let type, let length):
            return "\(type) frame with a \(length)-byte body has the wrong size; dropped"
        case .resendRunOutOfRange(let type, let count):
            return "\(type) frame names \(count) sequences; 1 to \(ProtocolConstants.maxResendRun) are allowed; dropped"
        case .bufferTooSmall(let needed, let available):
            return "buffer of \(available) bytes is too small; \(needed) needed"
        }
    }
}
