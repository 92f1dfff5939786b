/// Errors from key handling and cryptographic operations.
public enum TriglavCryptoError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformedKey(String)
    case keyFileUnreadable(path: String, reason: String)
    case keyFileTooOpen(path: String, mode: UInt32)
    case keyFileExists(path: String)
    case keyFileUnwritable(path: String, reason: String)
    case decryptionFailed
    case invalidLength(what: String, expected: Int, got: Int)
    /// A peer's X25519 public key has small order, so the shared secret would be predictable.
    case weakPublicKey
    /// A Noise protocol name this implementation doesn't support (pattern, DH, cipher or hash).
    case unsupportedProtocol(String)
    /// A Noise message is shorter than its tokens require.
    case truncatedMessage(expectedAtLeast: Int, got: Int)
    /// A Noise handshake was driven out of order (the reason says how).
    case handshakeMisuse(String)
    /// A cipher state's 64-bit nonce space is used up; the session must be rekeyed or replaced.
    case nonceExhausted

    public var description: String {
        switch self {
        case .malformedKey(let reason):
            return "malformed key: \(reason)"
        case .keyFileUnreadable(let path, let reason):
            return "cannot read key file \(path): \(reason)"
        case .keyFileTooOpen(let path, let mode):
            return "key file \(path) is accessible by group or others (mode \(String(mode & 0o777, radix: 8))); "
                + "private keys must be private: run 'chmod 600 \(path)'"
        case .keyFileExists(let path):
            return "\(path) already exists; pass --force to overwrite it (the old key is lost)"
        case .keyFileUnwritable(let path, let reason):
            return "cannot write key file \(path): \(reason)"
        case .decryptionFailed:
            return "authentication failed: the data was corrupted, forged, or encrypted under another key"
        case .invalidLength(let what, let expected, let got):
            return "\(what) must be \(expected) bytes, got \(got)"
        case .weakPublicKey:
            return "the peer's X25519 public key has small order (all-zero shared secret); refusing it"
        case .unsupportedProtocol(let name):
            return "unsupported Noise protocol '\(name)'; supported: Noise_<pattern>_25519_ChaChaPoly_<BLAKE2b|SHA256|SHA512>"
        case .truncatedMessage(let expected, let got):
            return "handshake message too short: needs at least \(expected) bytes, got \(got)"
        case .handshakeMisuse(let reason):
            return "handshake used out of order: \(reason)"
        case .nonceExhausted:
            return "nonce space exhausted; the session must be replaced by a new handshake"
        }
    }
}
