internal import CSodium

/// The public half of a node's identity: an Ed25519 public key. Its X25519 form is the node's
/// Noise static public key (a server's is what clients pin).
public struct IdentityPublicKey: Hashable, Sendable, CustomStringConvertible {
    public static let byteCount = 32
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws(TriglavCryptoError) {
        guard bytes.count == Self.byteCount else {
            throw .malformedKey("public key must be \(Self.byteCount) bytes, got \(bytes.count)")
        }
        self.bytes = bytes
    }

    /// Parses the base64 text form printed by `triglav pubkey`.
    public init(base64 text: String) throws(TriglavCryptoError) {
        let trimmed = text.trimmingASCIIWhitespace()
        guard let decoded = Base64.decode(trimmed) else {
            throw .malformedKey("public key '\(trimmed)' is not valid base64; expected 44 characters as printed by 'triglav pubkey'")
        }
        try self.init(bytes: decoded)
    }

    public var base64: String { Base64.encode(bytes) }
    public var description: String { base64 }

    /// X25519 form of this key (the Noise static key), or an error for a point that has none.
    public func x25519() throws(TriglavCryptoError) -> [UInt8] {
        Sodium.ensureReady()
        var out = [UInt8](repeating: 0, count: 32)
        let rc = crypto_sign_ed25519_pk_to_curve25519(&out, bytes)
        guard rc == 0 else { throw .malformedKey("public key is not a valid Ed25519 point") }
        return out
    }

    /// Verifies a detached Ed25519 signature over `message`.
    public func verify(signature: [UInt8], message: [UInt8]) -> Bool {
        Sodium.ensureReady()
        guard signature.count == Int(crypto_sign_BYTES) else { return false }
        return crypto_sign_verify_detached(signature, message, UInt64(message.count), bytes) == 0
    }
}

/// A node's identity: an Ed25519 key pair kept as its 32-byte seed. Servers and clients use the same
/// type; the X25519 conversion gives the Noise static key pair.
public struct IdentityKey: Sendable {
    public static let seedByteCount = 32
    public static let signatureByteCount = 64

    /// The 32-byte Ed25519 seed (secret).
    public let seed: SecureBytes
    /// libsodium's 64-byte expanded secret key (seed || public key), kept for signing.
    private let secretKey: SecureBytes
    public let publicKey: IdentityPublicKey

    /// A new random identity.
    public static func generate() -> IdentityKey {
        let seed = SecureBytes(count: seedByteCount) { randombytes_buf($0, seedByteCount) }
        do {
            return try IdentityKey(seed: seed)
        } catch {
            preconditionFailure("a 32-byte random seed always yields an Ed25519 key pair: \(error)")
        }
    }

    public init(seed: SecureBytes) throws(TriglavCryptoError) {
        Sodium.ensureReady()
        guard seed.count == Self.seedByteCount else {
            throw .malformedKey("private key must be \(Self.seedByteCount) bytes, got \(seed.count)")
        }
        var publicBytes = [UInt8](repeating: 0, count: 32)
        let secret = SecureBytes(count: Int(crypto_sign_SECRETKEYBYTES)) { secretKey in
            seed.withUnsafePointer { _ = crypto_sign_seed_keypair(&publicBytes, secretKey, $0) }
        }
        self.seed = seed
        self.secretKey = secret
        self.publicKey = try IdentityPublicKey(bytes: publicBytes)
    }

    /// Parses the base64 text form of a private key file (the seed).
    public init(base64 text: String) throws(TriglavCryptoError) {
        let trimmed = text.trimmingASCIIWhitespace()
        guard var decoded = Base64.decode(trimmed) else {
            throw .malformedKey("private key is not valid base64; expected 44 characters as written by 'triglav keygen'")
        }
        defer { decoded.withUnsafeMutableBytes { sodium_memzero($0.baseAddress, $0.count) } }
        try self.init(seed: SecureBytes(decoded))
    }

    /// The private key's text form, for writing a key file.
    public var base64: String { Base64.encode(seed.unprotectedBytes) }

    /// Detached Ed25519 signature over `message`.
    public func sign(_ message: [UInt8]) -> [UInt8] {
        var signature = [UInt8](repeating: 0, count: Self.signatureByteCount)
        secretKey.withUnsafePointer { _ = crypto_sign_detached(&signature, nil, message, UInt64(message.count), $0) }
        return signature
    }

    /// X25519 private key derived from this identity (the Noise static private key).
    public func x25519PrivateKey() -> SecureBytes {
        SecureBytes(count: 32) { out in
            secretKey.withUnsafePointer { _ = crypto_sign_ed25519_sk_to_curve25519(out, $0) }
        }
    }
}

extension String {
    func trimmingASCIIWhitespace() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
              let last = scalars.lastIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        return String(scalars[first...last])
    }
}
