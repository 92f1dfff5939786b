internal import CSodium

/// libsodium must be initialised once before any primitive is used; `sodium_init` is idempotent and
/// thread-safe, so every entry point calls this.
enum Sodium {
    static let ready: Bool = sodium_init() >= 0

    static func ensureReady() {
        precondition(ready, "libsodium failed to initialise (sodium_init < 0); the process cannot do cryptography")
    }
}

/// Constant-time comparison of two equally long byte sequences.
public func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
    guard lhs.count == rhs.count else { return false }
    return lhs.withUnsafeBytes { a in
        rhs.withUnsafeBytes { b in sodium_memcmp(a.baseAddress, b.baseAddress, lhs.count) == 0 }
    }
}

/// Cryptographically secure random bytes from libsodium.
public func randomBytes(_ count: Int) -> [UInt8] {
    Sodium.ensureReady()
    var bytes = [UInt8](repeating: 0, count: count)
    randombytes_buf(&bytes, count)
    return bytes
}

/// Standard base64 (RFC 4648, with padding), the one text encoding Triglav uses for keys.
public enum Base64 {
    public static func encode(_ bytes: [UInt8]) -> String {
        Sodium.ensureReady()
        let variant = Int32(sodium_base64_VARIANT_ORIGINAL)
        let length = sodium_base64_encoded_len(bytes.count, variant)
        var out = [CChar](repeating: 0, count: length)
        sodium_bin2base64(&out, length, bytes, bytes.count, variant)
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Decodes strict base64; returns nil on any invalid character, bad padding or trailing data.
    public static func decode(_ text: String) -> [UInt8]? {
        Sodium.ensureReady()
        let input = Array(text.utf8)
        var out = [UInt8](repeating: 0, count: input.count * 3 / 4 + 3)
        var written = 0
        guard !input.isEmpty else { return nil }
        let chars = input.map { CChar(bitPattern: $0) }
        var consumed = 0
        let capacity = out.count
        let rc = chars.withUnsafeBufferPointer { inBuffer -> Int32 in
            guard let base = inBuffer.baseAddress else { return -1 }
            var end: UnsafePointer<CChar>? = nil
            let result = sodium_base642bin(&out, capacity, base, chars.count, nil, &written, &end,
                                           Int32(sodium_base64_VARIANT_ORIGINAL))
            consumed = end.map { $0 - base } ?? 0
            return result
        }
        // libsodium stops at the first character it can't use; accept only a full consumption.
        guard rc == 0, consumed == input.count else { return nil }
        return Array(out.prefix(written))
    }
}
