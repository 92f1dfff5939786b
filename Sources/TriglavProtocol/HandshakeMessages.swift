public import TriglavCore
import TriglavCrypto

/// The 16-byte secret a server hands a client in the (encrypted) handshake response; presenting it in a
/// later initiation, together with a valid signature of the same identity, joins that uplink to the
/// existing tunnel. Never printed.
public struct JoinToken: Equatable, Sendable, CustomStringConvertible {
    public static let byteCount = 16
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws(ProtocolError) {
        guard bytes.count == Self.byteCount else { throw .malformedPayload("join token must be 16 bytes, got \(bytes.count)") }
        self.bytes = bytes
    }

    static func random() -> JoinToken {
        // 16 random bytes always satisfy the length check.
        JoinToken(unchecked: randomBytes(byteCount))
    }

    init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    /// Constant-time comparison, so a token can't be guessed byte by byte from timing.
    public static func == (lhs: JoinToken, rhs: JoinToken) -> Bool { constantTimeEqual(lhs.bytes, rhs.bytes) }

    public var description: String { "JoinToken(redacted)" }
}

/// What the server assigns a client's tunnel, delivered encrypted in the handshake response.
public struct TunnelAssignment: Equatable, Sendable {
    /// Server-chosen identifier of the tunnel (for logs and the join/replace bookkeeping).
    public let tunnelID: UInt64
    /// The client's inner IPv4 address and prefix, if the tunnel carries IPv4.
    public let ipv4: IPPrefix?
    /// The client's inner IPv6 address and prefix, if the tunnel carries IPv6.
    public let ipv6: IPPrefix?
    /// Presented by later uplinks (and rekeys) to join this tunnel.
    public let joinToken: JoinToken

    public init(tunnelID: UInt64, ipv4: IPPrefix?, ipv6: IPPrefix?, joinToken: JoinToken) {
        self.tunnelID = tunnelID
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.joinToken = joinToken
    }

    /// The 52-byte response payload (PROTOCOL.md §2.3). `responderIndex` repeats the cleartext sender
    /// index under encryption, so a tampered header can't redirect the client's packets.
    func encoded(responderIndex: UInt32) -> [UInt8] {
        var out: [UInt8] = []
        out.appendLE64(tunnelID)
        out += joinToken.bytes
        out.append((ipv4 != nil ? 1 : 0) | (ipv6 != nil ? 2 : 0))
        out.append(UInt8(ipv4?.length ?? 0))
        out.append(UInt8(ipv6?.length ?? 0))
        out.append(0)
        out += ipv4?.address.bytes ?? [0, 0, 0, 0]
        out += ipv6?.address.bytes ?? [UInt8](repeating: 0, count: 16)
        out.appendLE32(responderIndex)
        return out
    }

    /// Flag bit of a response that refuses a join (all other fields zero).
    static let joinRefusedFlag: UInt8 = 4

    /// The payload of an authenticated refusal of a join request.
    static func refusalPayload() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: WireLayout.responsePayloadSize)
        out[24] = joinRefusedFlag
        return out
    }

    static func decode(_ payload: [UInt8]) throws(ProtocolError) -> (assignment: TunnelAssignment, responderIndex: UInt32) {
        guard payload.count == WireLayout.responsePayloadSize else {
            throw .malformedPayload("response payload must be \(WireLayout.responsePayloadSize) bytes, got \(payload.count)")
        }
        let flags = payload[24]
        if flags == joinRefusedFlag { throw .joinRefused }
        guard flags & ~3 == 0, payload[27] == 0 else { throw .malformedPayload("unknown flags \(flags) in response") }
        var ipv4: IPPrefix?
        var ipv6: IPPrefix?
        do {
            if flags & 1 != 0, let address = IPAddress(bytes: payload[28..<32]) {
                ipv4 = try IPPrefix(address: address, length: Int(payload[25]))
            }
            if flags & 2 != 0, let address = IPAddress(bytes: payload[32..<48]) {
                ipv6 = try IPPrefix(address: address, length: Int(payload[26]))
            }
        } catch {
            throw .malformedPayload("tunnel address prefix out of range: \(error)")
        }
        return (TunnelAssignment(tunnelID: payload.le64(at: 0), ipv4: ipv4, ipv6: ipv6,
                                 joinToken: JoinToken(unchecked: payload.slice(8, 16))),
                payload.le32(at: 48))
    }
}

/// How an initiation asks to be placed: a new tunnel, or an existing one (with its token).
public enum TunnelRequest: Equatable, Sendable {
    /// Create a tunnel (the first uplink after the client starts); replaces any older tunnel of this identity.
    case create
    /// Join the tunnel the token belongs to. `replacing` is the server-side index (our session's
    /// `remoteIndex`) of the session this handshake rekeys, if any, so the server can retire it.
    case join(JoinToken, replacing: UInt32?)
}

/// The plaintext of the initiation's Noise payload (128 bytes, PROTOCOL.md §4).
struct ClientAuthPayload: Equatable {
    static let signedLength = 64
    var identity: IdentityPublicKey
    var timestamp: UInt64
    var request: TunnelRequest

    /// The first 64 bytes: identity, timestamp, mode, replaced index, token.
    func signedFields() -> [UInt8] {
        var out = identity.bytes
        out.appendLE64(timestamp)
        switch request {
        case .create:
            out += [0, 0, 0, 0]
            out.appendLE32(0)
            out += [UInt8](repeating: 0, count: JoinToken.byteCount)
        case .join(let token, let replacing):
            out += [1, 0, 0, 0]
            out.appendLE32(replacing ?? 0)
            out += token.bytes
        }
        return out
    }

    /// What the client signs: label || h || signed fields. h (the handshake hash after "e, es") covers
    /// the prologue (protocol version, header), the server's static key and this handshake's ephemeral.
    static func signatureMessage(handshakeHash: [UInt8], fields: [UInt8]) -> [UInt8] {
        ProtocolConstants.clientAuthLabel + handshakeHash + fields
    }

    func encoded(signedBy identityKey: IdentityKey, handshakeHash: [UInt8]) -> [UInt8] {
        let fields = signedFields()
        return fields + identityKey.sign(Self.signatureMessage(handshakeHash: handshakeHash, fields: fields))
    }

    /// Parses the payload; the signature is checked separately (after the cheap authorization lookup).
    static func decode(_ payload: [UInt8]) throws(ProtocolError)
        -> (payload: ClientAuthPayload, signedBytes: [UInt8], signature: [UInt8]) {
        guard payload.count == WireLayout.initiationPayloadSize else {
            throw .malformedPayload("initiation payload must be \(WireLayout.initiationPayloadSize) bytes, got \(payload.count)")
        }
        let identity: IdentityPublicKey
        do {
            identity = try IdentityPublicKey(bytes: payload.slice(0, 32))
        } catch {
            throw .malformedPayload("identity key: \(error)")
        }
        guard payload[41] == 0, payload[42] == 0, payload[43] == 0 else { throw .malformedPayload("reserved bytes not zero") }
        let request: TunnelRequest
        switch payload[40] {
        case 0:
            request = .create
        case 1:
            let replaced = payload.le32(at: 44)
            request = .join(JoinToken(unchecked: payload.slice(48, 16)), replacing: replaced == 0 ? nil : replaced)
        default:
            throw .malformedPayload("unknown tunnel request mode \(payload[40])")
        }
        return (ClientAuthPayload(identity: identity, timestamp: payload.le64(at: 32), request: request),
                payload.slice(0, signedLength), payload.slice(signedLength, IdentityKey.signatureByteCount))
    }

    /// Whether `signature` is the identity's signature over the received signed bytes bound to `handshakeHash`.
    func verify(signature: [UInt8], signedBytes: [UInt8], handshakeHash: [UInt8]) -> Bool {
        identity.verify(signature: signature,
                        message: Self.signatureMessage(handshakeHash: handshakeHash, fields: signedBytes))
    }
}

/// The prologue both sides mix into the Noise handshake hash: the label, then the initiation's
/// 8-byte cleartext header (type, PROTOCOL_VERSION, reserved, sender index). A different version or
/// a modified header makes the first payload fail to decrypt.
func handshakePrologue(initiationHeader: ArraySlice<UInt8>) -> [UInt8] {
    ProtocolConstants.prologueLabel + Array(initiationHeader)
}

/// WireGuard-style MACs: mac1 proves the sender knows the server's public key (cheap filter before any
/// DH); mac2 proves it can receive at its source address (the cookie), demanded only under load.
struct HandshakeMACs {
    let mac1Key: [UInt8]
    let cookieKey: SymmetricKey

    /// Keys derived from the server's Noise static public key.
    init(serverStaticPublicKey: [UInt8]) {
        mac1Key = NoiseHash.blake2b.hash(ProtocolConstants.mac1Label + serverStaticPublicKey).slice(0, 32)
        cookieKey = SymmetricKey(copyingPrefix: NoiseHash.blake2b.hash(ProtocolConstants.cookieLabel + serverStaticPublicKey))
    }

    /// mac1 over everything before it.
    func mac1(_ message: ArraySlice<UInt8>) -> [UInt8] {
        Blake2b.mac(key: mac1Key, data: Array(message), outputLength: WireLayout.macSize)
    }

    static func mac2(cookie: [UInt8], _ message: ArraySlice<UInt8>) -> [UInt8] {
        Blake2b.mac(key: cookie, data: Array(message), outputLength: WireLayout.macSize)
    }
}

extension SymmetricKey {
    /// The first 32 bytes of `material` as a key (public derivations such as the cookie key).
    init(copyingPrefix material: [UInt8]) {
        do {
            self = try SymmetricKey(SecureBytes(material.slice(0, SymmetricKey.byteCount)))
        } catch {
            preconditionFailure("32 bytes always form a symmetric key")
        }
    }
}

/// Random integers from libsodium for indices, ids and jitter.
enum Random {
    static func uint32() -> UInt32 { randomBytes(4).le32(at: 0) }
    static func uint64() -> UInt64 { randomBytes(8).le64(at: 0) }
    /// Uniform in 0..<bound (bound > 0); the modulo bias is irrelevant for jitter.
    static func below(_ bound: UInt64) -> UInt64 { bound == 0 ? 0 : uint64() % bound }
}
