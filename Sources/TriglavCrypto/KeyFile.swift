#if canImport(Glibc)
internal import Glibc
#endif

/// Reads and writes private key files: one line of base64, mode 0600, refused when group- or
/// world-accessible (as ssh does) so a leaked key is noticed rather than used.
public enum KeyFile {
    /// Loads the identity in `path`; "-" reads standard input (no permission check applies).
    public static func load(path: String) throws(TriglavCryptoError) -> IdentityKey {
        let fd: Int32
        if path == "-" {
            fd = STDIN_FILENO
        } else {
            fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
            guard fd >= 0 else { throw .keyFileUnreadable(path: path, reason: errnoText()) }
        }
        defer { if fd != STDIN_FILENO { close(fd) } }
        if fd != STDIN_FILENO {
            var info = stat()
            guard fstat(fd, &info) == 0 else { throw .keyFileUnreadable(path: path, reason: errnoText()) }
            guard info.st_mode & S_IFMT == S_IFREG else {
                throw .keyFileUnreadable(path: path, reason: "not a regular file")
            }
            guard info.st_mode & 0o077 == 0 else { throw .keyFileTooOpen(path: path, mode: UInt32(info.st_mode)) }
        }
        var text = SecureBytes(count: 0) { _ in }
        var collected: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 256)
        while collected.count <= 4096 {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw .keyFileUnreadable(path: path, reason: errnoText())
            }
            if n == 0 { break }
            collected.append(contentsOf: chunk[0..<n])
        }
        text = SecureBytes(collected)
        wipe(&collected)
        wipe(&chunk)
        guard text.count <= 4096 else { throw .malformedKey("\(path) is too large to be a Triglav key file") }
        let string = String(decoding: text.unprotectedBytes, as: UTF8.self)
        do {
            return try IdentityKey(base64: string)
        } catch {
            throw .malformedKey("\(path): \(error.reason)")
        }
    }

    /// Writes `key` to `path` with mode 0600. Refuses to replace an existing file unless `force`.
    public static func write(_ key: IdentityKey, to path: String, force: Bool) throws(TriglavCryptoError) {
        var flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW
        flags |= force ? O_TRUNC : O_EXCL
        let fd = open(path, flags, 0o600)
        guard fd >= 0 else {
            if errno == EEXIST { throw .keyFileExists(path: path) }
            throw .keyFileUnwritable(path: path, reason: errnoText())
        }
        defer { close(fd) }
        // A forced overwrite keeps the old inode; make sure it ends up private too.
        guard fchmod(fd, 0o600) == 0 else { throw .keyFileUnwritable(path: path, reason: errnoText()) }
        var line = Array((key.base64 + "\n").utf8)
        defer { wipe(&line) }
        var offset = 0
        while offset < line.count {
            let n = line[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .keyFileUnwritable(path: path, reason: errnoText())
            }
            offset += n
        }
        guard fsync(fd) == 0 else { throw .keyFileUnwritable(path: path, reason: errnoText()) }
    }

    private static func wipe(_ bytes: inout [UInt8]) {
        for index in bytes.indices { bytes[index] = 0 }
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }
}

extension TriglavCryptoError {
    /// The message without the category prefix, for wrapping with a file name.
    var reason: String {
        if case .malformedKey(let reason) = self { return reason }
        return description
    }
}
