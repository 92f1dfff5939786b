internal import CSodium

/// The hash functions Noise names ("BLAKE2b", "SHA256", "SHA512"), all from libsodium, with the
/// spec's HMAC (RFC 2104 over the hash) and HKDF (Noise spec §4.3). Triglav's protocol uses BLAKE2b;
/// the others exist so the Noise layer can be checked against every public vector.
public enum NoiseHash: String, Sendable, CaseIterable {
    case blake2b = "BLAKE2b"
    case sha256 = "SHA256"
    case sha512 = "SHA512"

    /// HASHLEN.
    public var hashLength: Int { self == .sha256 ? 32 : 64 }
    /// BLOCKLEN (the HMAC block size).
    public var blockLength: Int { self == .sha256 ? 64 : 128 }

    /// HASH(data).
    public func hash(_ data: [UInt8]) -> [UInt8] {
        Sodium.ensureReady()
        var out = [UInt8](repeating: 0, count: hashLength)
        switch self {
        case .blake2b: _ = crypto_generichash(&out, out.count, data, UInt64(data.count), nil, 0)
        case .sha256: _ = crypto_hash_sha256(&out, data, UInt64(data.count))
        case .sha512: _ = crypto_hash_sha512(&out, data, UInt64(data.count))
        }
        return out
    }

    /// HMAC-HASH(key, data) as RFC 2104 defines it; keys longer than a block are hashed first.
    public func hmac(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var blockKey = key.count > blockLength ? hash(key) : key
        blockKey += [UInt8](repeating: 0, count: blockLength - blockKey.count)
        var inner = blockKey.map { $0 ^ 0x36 } + data
        var outer = blockKey.map { $0 ^ 0x5c }
        var innerDigest = hash(inner)
        outer += innerDigest
        let result = hash(outer)
        secureWipe(&blockKey); secureWipe(&inner); secureWipe(&outer); secureWipe(&innerDigest)
        return result
    }

    /// HKDF(chaining_key, input_key_material, num_outputs) from the Noise spec: 2 or 3 outputs of HASHLEN.
    public func hkdf(chainingKey: [UInt8], inputKeyMaterial: [UInt8], outputs: Int) -> [[UInt8]] {
        precondition(outputs == 2 || outputs == 3, "Noise HKDF yields 2 or 3 outputs")
        var tempKey = hmac(key: chainingKey, data: inputKeyMaterial)
        defer { secureWipe(&tempKey) }
        var results: [[UInt8]] = []
        var previous: [UInt8] = []
        for index in 1...outputs {
            var input = previous + [UInt8(index)]
            previous = hmac(key: tempKey, data: input)
            secureWipe(&input)
            results.append(previous)
        }
        return results
    }
}

/// Keyed BLAKE2b with a short output (libsodium `crypto_generichash`), the MAC of the cookie scheme.
public enum Blake2b {
    /// BLAKE2b(key, data) truncated to `outputLength` bytes (16...64), keyed when `key` is non-empty.
    public static func mac(key: [UInt8], data: [UInt8], outputLength: Int) -> [UInt8] {
        Sodium.ensureReady()
        precondition((16...64).contains(outputLength) && key.count <= 64, "BLAKE2b output 16...64 bytes, key <= 64 bytes")
        var out = [UInt8](repeating: 0, count: outputLength)
        _ = crypto_generichash(&out, outputLength, data, UInt64(data.count), key.isEmpty ? nil : key, key.count)
        return out
    }

    /// Same as `mac(key:data:outputLength:)` with the key kept secret.
    public static func mac(key: SymmetricKey, data: [UInt8], outputLength: Int) -> [UInt8] {
        Sodium.ensureReady()
        var out = [UInt8](repeating: 0, count: outputLength)
        key.withUnsafePointer { keyPointer in
            _ = crypto_generichash(&out, outputLength, data, UInt64(data.count), keyPointer, SymmetricKey.byteCount)
        }
        return out
    }
}
