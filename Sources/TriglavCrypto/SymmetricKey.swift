internal import CSodium

/// A 32-byte symmetric key (ChaCha20-Poly1305 or a MAC key). Immutable; the bytes live in a
/// `SecureBytes` and are wiped when the last copy goes away. Never printed.
public struct SymmetricKey: Sendable, CustomStringConvertible {
    public static let byteCount = 32
    let storage: SecureBytes

    /// Wraps exactly 32 secret bytes.
    public init(_ secret: SecureBytes) throws(TriglavCryptoError) {
        guard secret.count == Self.byteCount else {
            throw .invalidLength(what: "symmetric key", expected: Self.byteCount, got: secret.count)
        }
        storage = secret
    }

    /// Copies the first 32 bytes of `bytes` (which the caller wipes); used for HKDF outputs.
    init(copyingPrefixOf bytes: [UInt8]) {
        precondition(bytes.count >= Self.byteCount, "key material shorter than 32 bytes")
        storage = SecureBytes(count: Self.byteCount) { out in
            bytes.withUnsafeBufferPointer { source in
                // count checked above, so the base address exists.
                out.update(from: source.baseAddress.unsafelyUnwrapped, count: Self.byteCount)
            }
        }
    }

    /// A fresh random key.
    public static func random() -> SymmetricKey {
        Sodium.ensureReady()
        return SymmetricKey(unchecked: SecureBytes(count: byteCount) { randombytes_buf($0, byteCount) })
    }

    init(unchecked storage: SecureBytes) { self.storage = storage }

    /// Read access to the 32 key bytes.
    public func withUnsafePointer<R, E: Error>(_ body: (UnsafePointer<UInt8>) throws(E) -> R) throws(E) -> R {
        try storage.withUnsafePointer(body)
    }

    /// A copy as an ordinary array, for test vectors only. The caller owns wiping it.
    public var unprotectedBytes: [UInt8] { storage.unprotectedBytes }

    public var description: String { "SymmetricKey(redacted)" }
}

/// Overwrites `bytes` with zeros in a way the optimiser can't drop (sodium_memzero).
public func secureWipe(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { sodium_memzero($0.baseAddress, $0.count) }
}
