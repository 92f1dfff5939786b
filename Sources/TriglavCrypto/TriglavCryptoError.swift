/// Errors from key handling and cryptographic operations.
public enum TriglavCryptoError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformedKey(String)
    case keyFileUnreadable(path: String, reason: String)
    case keyFileTooOpen(path: String, mode: UInt32)
    case keyFileExists(path: String)
    case keyFileUnwritable(path: String, reason: String)
    case decryptionFailed
    case invalidLength(what: String, expected: Int, got: Int)

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
        }
    }
}
