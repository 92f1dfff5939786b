/// Noise SymmetricState (spec §5.2): the chaining key `ck`, the handshake hash `h` and a CipherState.
public struct NoiseSymmetricState: Sendable {
    public let hash: NoiseHash
    private var chainingKey: SecureBytes
    /// The handshake hash h; after the handshake it is the channel binding value.
    public private(set) var handshakeHash: [UInt8]
    public private(set) var cipherState = NoiseCipherState()

    /// InitializeSymmetric(protocol_name).
    public init(protocolName: String, hash: NoiseHash) {
        self.hash = hash
        let name = Array(protocolName.utf8)
        handshakeHash = name.count <= hash.hashLength
            ? name + [UInt8](repeating: 0, count: hash.hashLength - name.count)
            : hash.hash(name)
        chainingKey = SecureBytes(handshakeHash)
    }

    /// MixKey(input_key_material).
    public mutating func mixKey(_ inputKeyMaterial: SecureBytes) {
        var currentKey = chainingKey.unprotectedBytes
        var material = inputKeyMaterial.unprotectedBytes
        defer { secureWipe(&currentKey); secureWipe(&material) }
        var outputs = hash.hkdf(chainingKey: currentKey, inputKeyMaterial: material, outputs: 2)
        chainingKey = SecureBytes(outputs[0])
        cipherState = NoiseCipherState(key: SymmetricKey(copyingPrefixOf: outputs[1]))
        for index in outputs.indices { secureWipe(&outputs[index]) }
    }

    /// MixHash(data).
    public mutating func mixHash(_ data: [UInt8]) {
        handshakeHash = hash.hash(handshakeHash + data)
    }

    /// EncryptAndHash(plaintext).
    public mutating func encryptAndHash(_ plaintext: [UInt8]) throws(TriglavCryptoError) -> [UInt8] {
        let ciphertext = try cipherState.encrypt(associatedData: handshakeHash, plaintext: plaintext)
        mixHash(ciphertext)
        return ciphertext
    }

    /// DecryptAndHash(ciphertext).
    public mutating func decryptAndHash(_ ciphertext: [UInt8]) throws(TriglavCryptoError) -> [UInt8] {
        let plaintext = try cipherState.decrypt(associatedData: handshakeHash, ciphertext: ciphertext)
        mixHash(ciphertext)
        return plaintext
    }

    /// Split(): the initiator→responder and responder→initiator cipher states.
    public func split() -> (NoiseCipherState, NoiseCipherState) {
        var currentKey = chainingKey.unprotectedBytes
        var outputs = hash.hkdf(chainingKey: currentKey, inputKeyMaterial: [], outputs: 2)
        defer {
            secureWipe(&currentKey)
            for index in outputs.indices { secureWipe(&outputs[index]) }
        }
        return (NoiseCipherState(key: SymmetricKey(copyingPrefixOf: outputs[0])),
                NoiseCipherState(key: SymmetricKey(copyingPrefixOf: outputs[1])))
    }
}
