internal import CSodium

/// ChaCha20-Poly1305 in its IETF form (RFC 8439) with Noise's nonce encoding: 32 zero bits followed
/// by the 64-bit counter in little-endian. The in-place functions work on caller-owned memory and
/// never allocate, so they are the data-plane primitive; the array forms serve the handshake.
public enum ChaChaPoly {
    public static let tagByteCount = 16
    public static let nonceByteCount = 12

    /// Encrypts `buffer` in place and writes the 16-byte tag to `tag`. `associatedData` is
    /// authenticated, not encrypted. `buffer` and `tag` must not overlap `associatedData`'s bytes
    /// in a way that changes them before use (they are read first).
    public static func sealInPlace(key: SymmetricKey, counter: UInt64,
                                   associatedData: UnsafeRawBufferPointer,
                                   buffer: UnsafeMutableRawBufferPointer,
                                   tag: UnsafeMutableRawPointer) {
        let nonce = noise(counter)
        // An empty buffer has no base address; libsodium still wants a pointer it won't touch.
        let text = (buffer.baseAddress ?? tag).assumingMemoryBound(to: UInt8.self)
        let ad = associatedData.baseAddress?.assumingMemoryBound(to: UInt8.self)
        key.withUnsafePointer { keyPointer in
            withUnsafeBytes(of: nonce) { noncePointer in
                _ = crypto_aead_chacha20poly1305_ietf_encrypt_detached(
                    text, tag.assumingMemoryBound(to: UInt8.self), nil, text, UInt64(buffer.count),
                    ad, UInt64(associatedData.count), nil,
                    noncePointer.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: UInt8.self), keyPointer)
            }
        }
    }

    /// Verifies `tag` over `buffer` and `associatedData`, then decrypts `buffer` in place. On failure
    /// `buffer` is left unchanged (libsodium verifies before decrypting) and nothing is revealed.
    public static func openInPlace(key: SymmetricKey, counter: UInt64,
                                   associatedData: UnsafeRawBufferPointer,
                                   buffer: UnsafeMutableRawBufferPointer,
                                   tag: UnsafeRawPointer) throws(TriglavCryptoError) {
        let nonce = noise(counter)
        let text = (buffer.baseAddress ?? UnsafeMutableRawPointer(mutating: tag)).assumingMemoryBound(to: UInt8.self)
        let ad = associatedData.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let rc = key.withUnsafePointer { keyPointer in
            withUnsafeBytes(of: nonce) { noncePointer in
                crypto_aead_chacha20poly1305_ietf_decrypt_detached(
                    text, nil, text, UInt64(buffer.count), tag.assumingMemoryBound(to: UInt8.self),
                    ad, UInt64(associatedData.count),
                    noncePointer.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: UInt8.self), keyPointer)
            }
        }
        guard rc == 0 else { throw .decryptionFailed }
    }

    /// Returns ciphertext || tag.
    public static func seal(key: SymmetricKey, counter: UInt64, associatedData: [UInt8], plaintext: [UInt8]) -> [UInt8] {
        var output = plaintext + [UInt8](repeating: 0, count: tagByteCount)
        let length = plaintext.count
        associatedData.withUnsafeBytes { ad in
            output.withUnsafeMutableBytes { out in
                let body = UnsafeMutableRawBufferPointer(rebasing: out[0..<length])
                // output has length + 16 >= 16 bytes, so its base address exists.
                sealInPlace(key: key, counter: counter, associatedData: ad, buffer: body,
                            tag: out.baseAddress.unsafelyUnwrapped + length)
            }
        }
        return output
    }

    /// Opens ciphertext || tag; throws `decryptionFailed` on any mismatch or a too-short input.
    public static func open(key: SymmetricKey, counter: UInt64, associatedData: [UInt8],
                            ciphertext: [UInt8]) throws(TriglavCryptoError) -> [UInt8] {
        guard ciphertext.count >= tagByteCount else { throw .decryptionFailed }
        let length = ciphertext.count - tagByteCount
        var output = ciphertext
        let ok = associatedData.withUnsafeBytes { ad in
            output.withUnsafeMutableBytes { out in
                let body = UnsafeMutableRawBufferPointer(rebasing: out[0..<length])
                do {
                    try openInPlace(key: key, counter: counter, associatedData: ad, buffer: body,
                                    tag: UnsafeRawPointer(out.baseAddress.unsafelyUnwrapped + length))
                    return true
                } catch {
                    return false
                }
            }
        }
        guard ok else { throw .decryptionFailed }
        output.removeLast(tagByteCount)
        return output
    }

    /// 4 zero bytes then the counter little-endian: a 12-byte value (three packed UInt32s, no padding).
    private static func noise(_ counter: UInt64) -> (UInt32, UInt32, UInt32) {
        (0, UInt32(truncatingIfNeeded: counter).littleEndian, UInt32(truncatingIfNeeded: counter >> 32).littleEndian)
    }
}

/// XChaCha20-Poly1305 (24-byte random nonce), used for the cookie reply where the nonce can't be a counter.
public enum XChaChaPoly {
    public static let nonceByteCount = 24

    /// Returns ciphertext || tag.
    public static func seal(key: SymmetricKey, nonce: [UInt8], associatedData: [UInt8], plaintext: [UInt8]) -> [UInt8] {
        precondition(nonce.count == nonceByteCount, "XChaCha20-Poly1305 nonce must be 24 bytes")
        var output = [UInt8](repeating: 0, count: plaintext.count + ChaChaPoly.tagByteCount)
        var written: UInt64 = 0
        key.withUnsafePointer { keyPointer in
            _ = crypto_aead_xchacha20poly1305_ietf_encrypt(&output, &written, plaintext, UInt64(plaintext.count),
                                                           associatedData, UInt64(associatedData.count), nil, nonce, keyPointer)
        }
        return output
    }

    public static func open(key: SymmetricKey, nonce: [UInt8], associatedData: [UInt8],
                            ciphertext: [UInt8]) throws(TriglavCryptoError) -> [UInt8] {
        guard nonce.count == nonceByteCount, ciphertext.count >= ChaChaPoly.tagByteCount else { throw .decryptionFailed }
        var output = [UInt8](repeating: 0, count: ciphertext.count - ChaChaPoly.tagByteCount)
        var written: UInt64 = 0
        let rc = key.withUnsafePointer { keyPointer in
            crypto_aead_xchacha20poly1305_ietf_decrypt(&output, &written, nil, ciphertext, UInt64(ciphertext.count),
                                                       associatedData, UInt64(associatedData.count), nonce, keyPointer)
        }
        guard rc == 0 else { throw .decryptionFailed }
        return output
    }
}
