/// Noise CipherState (spec §5.1): an optional key and a 64-bit nonce incremented per message.
/// Triglav's transport uses explicit counters instead (see TransportSession); this type serves the
/// handshake and the public test vectors.
public struct NoiseCipherState: Sendable {
    /// The key, or nil before the first MixKey (then encryption is the identity, as the spec says).
    public private(set) var key: SymmetricKey?
    /// The next nonce.
    public private(set) var nonce: UInt64 = 0

    public init(key: SymmetricKey? = nil) {
        self.key = key
    }

    public var hasKey: Bool { key != nil }

    /// EncryptWithAd: ciphertext || tag, or the plaintext unchanged when there is no key yet.
    public mutating func encrypt(associatedData: [UInt8], plaintext: [UInt8]) throws(TriglavCryptoError) -> [UInt8] {
        guard let key else { return plaintext }
        // 2^64 - 1 is reserved (spec §5.1) for rekey.
        guard nonce != UInt64.max else { throw .nonceExhausted }
        defer { nonce += 1 }
        return ChaChaPoly.seal(key: key, counter: nonce, associatedData: associatedData, plaintext: plaintext)
    }

    /// DecryptWithAd; the nonce advances only when authentication succeeds.
    public mutating func decrypt(associatedData: [UInt8], ciphertext: [UInt8]) throws(TriglavCryptoError) -> [UInt8] {
        guard let key else { return ciphertext }
        guard nonce != UInt64.max else { throw .nonceExhausted }
        let plaintext = try ChaChaPoly.open(key: key, counter: nonce, associatedData: associatedData, ciphertext: ciphertext)
        nonce += 1
        return plaintext
    }

    /// Rekey() (spec §4.2): k = first 32 bytes of ENCRYPT(k, 2^64-1, empty, 32 zero bytes).
    public mutating func rekey() {
        guard let key else { return }
        var output = ChaChaPoly.seal(key: key, counter: UInt64.max, associatedData: [],
                                     plaintext: [UInt8](repeating: 0, count: SymmetricKey.byteCount))
        self.key = SymmetricKey(copyingPrefixOf: output)
        secureWipe(&output)
    }
}
