internal import CSodium

/// An X25519 key pair (Noise's DH function "25519"). The private scalar is zeroized; libsodium clamps it.
public struct X25519KeyPair: Sendable {
    public static let byteCount = 32
    public let privateKey: SecureBytes
    public let publicKey: [UInt8]

    /// Derives the public key from a 32-byte private key.
    public init(privateKey: SecureBytes) throws(TriglavCryptoError) {
        Sodium.ensureReady()
        guard privateKey.count == Self.byteCount else {
            throw .invalidLength(what: "X25519 private key", expected: Self.byteCount, got: privateKey.count)
        }
        var publicBytes = [UInt8](repeating: 0, count: Self.byteCount)
        let rc = privateKey.withUnsafePointer { crypto_scalarmult_base(&publicBytes, $0) }
        guard rc == 0 else { throw .malformedKey("X25519 private key yields no public key") }
        self.privateKey = privateKey
        self.publicKey = publicBytes
    }

    /// A fresh random key pair.
    public static func generate() -> X25519KeyPair {
        Sodium.ensureReady()
        let secret = SecureBytes(count: byteCount) { randombytes_buf($0, byteCount) }
        do {
            return try X25519KeyPair(privateKey: secret)
        } catch {
            preconditionFailure("32 random bytes are always a valid X25519 private key: \(error)")
        }
    }

    /// The Noise static key pair of an identity (libsodium's Ed25519 → X25519 conversion).
    public init(identity: IdentityKey) {
        do {
            try self.init(privateKey: identity.x25519PrivateKey())
        } catch {
            preconditionFailure("an Ed25519 secret always converts to an X25519 private key: \(error)")
        }
    }

    /// DH(self, remote): the 32-byte shared secret. Throws for a remote point of small order, whose
    /// result would be all zeros (libsodium reports it), so a peer can't force a known secret.
    public func sharedSecret(with remotePublicKey: [UInt8]) throws(TriglavCryptoError) -> SecureBytes {
        guard remotePublicKey.count == Self.byteCount else {
            throw .invalidLength(what: "X25519 public key", expected: Self.byteCount, got: remotePublicKey.count)
        }
        var failed = false
        let secret = SecureBytes(count: Self.byteCount) { out in
            privateKey.withUnsafePointer { failed = crypto_scalarmult(out, $0, remotePublicKey) != 0 }
        }
        guard !failed else { throw .weakPublicKey }
        return secret
    }
}
