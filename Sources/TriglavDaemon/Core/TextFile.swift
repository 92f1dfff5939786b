#if canImport(Glibc)
import Glibc
#endif

/// Small text files the daemon owns or edits (its state records, /etc/resolv.conf), read and written with plain
/// syscalls: no symlink is followed, nothing is read past a size bound, and a write either replaces the file
/// atomically or says why it could not.
enum TextFile {
    enum ReadFailure: Error, Equatable {
        case missing
        case unreadable(String)
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }

    /// The file's text, refusing a symlink (`ELOOP`), a file over `maximumSize` bytes and one that is not UTF-8.
    static func read(_ path: String, maximumSize: Int) -> Result<String, ReadFailure> {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW)
        guard fd >= 0 else { return .failure(errno == ENOENT ? .missing : .unreadable(errnoText())) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = Glibc.read(fd, &chunk, chunk.count)
            if count < 0 {
                if errno == EINTR { continue }
                return .failure(.unreadable(errnoText()))
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            if bytes.count > maximumSize { return .failure(.unreadable("larger than \(maximumSize / 1024) KiB")) }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { return .failure(.unreadable("not UTF-8 text")) }
        return .success(text)
    }

    /// Writes `text` to a temporary file beside `path`, syncs it and renames it over `path`, so a reader (or
    /// a crash) sees the old file or the new one, never a torn one. Returns why it failed, or nil.
    static func writeAtomically(_ text: String, to path: String, mode: mode_t = 0o600) -> String? {
        let temporary = path + ".tmp"
        // A stale temporary (a crash between create and rename) goes first; O_EXCL then makes sure this write
        // owns a fresh file (no symlink or other file planted there is followed or reused).
        if unlink(temporary) != 0, errno != ENOENT { return "removing the stale \(temporary): \(errnoText())" }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { return "creating \(temporary): \(errnoText())" }
        // The umask (0077 under the unit) must not narrow a file others read, like /etc/resolv.conf.
        var failure = fchmod(fd, mode) == 0 ? nil : "setting the mode of \(temporary): \(errnoText())"
        if failure == nil { failure = writeAll(text, to: fd, path: temporary) }
        if close(fd) != 0, failure == nil { failure = "closing \(temporary): \(errnoText())" }
        if failure == nil, rename(temporary, path) != 0 { failure = "renaming \(temporary) to \(path): \(errnoText())" }
        if failure != nil { unlink(temporary) }
        return failure
    }

    /// Rewrites the existing file `path` in place (same inode): for a file that is a mount point of its own (the
    /// unit's `ReadWritePaths=/etc/resolv.conf`, a container's bind mount), where neither a temporary beside it nor
    /// a rename over it is allowed. A reader may see it half written for the moment it takes.
    /// `creating`: a missing file is created (mode 0644).
    static func overwrite(_ path: String, with text: String, creating: Bool = false) -> OverwriteFailure? {
        let fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | (creating ? O_CREAT : 0), 0o644)
        guard fd >= 0 else {
            let code = errno
            return OverwriteFailure(reason: "opening \(path) for writing: \(errnoText())", code: code, truncated: false)
        }
        // A created file is for everyone to read, whatever the umask (0077 under the unit).
        var failure = creating && fchmod(fd, 0o644) != 0 ? "setting the mode of \(path): \(errnoText())" : nil
        if failure == nil { failure = writeAll(text, to: fd, path: path) }
        let code = errno
        if close(fd) != 0, failure == nil { failure = "closing \(path): \(errnoText())" }
        return failure.map { OverwriteFailure(reason: $0, code: code, truncated: true) }
    }

    /// Why `overwrite` failed: `code` is the errno, `truncated` says whether the file was opened (and so emptied)
    /// before the failure.
    struct OverwriteFailure: CustomStringConvertible {
        let reason: String
        let code: Int32
        let truncated: Bool
        var description: String { reason }
    }

    /// Where the symlink `path` points, as written in it; nil when it can't be read.
    static func symlinkTarget(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink(path, &buffer, buffer.count - 1)
        return length > 0 ? String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
    }

    /// Writes all of `text` and syncs it.
    private static func writeAll(_ text: String, to fd: Int32, path: String) -> String? {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes { buffer in
                write(fd, buffer.baseAddress.map { $0 + offset }, buffer.count - offset)
            }
            if count < 0 {
                if errno != EINTR { return "writing \(path): \(errnoText())" }
            } else {
                offset += count
            }
        }
        return fsync(fd) == 0 ? nil : "syncing \(path): \(errnoText())"
    }
}
