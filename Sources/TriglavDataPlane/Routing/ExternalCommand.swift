#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Runs a system tool (`nft`, `resolvconf`) to completion: the few things done through a program rather than a library.
public enum ExternalCommand {
    /// Runs `arguments` (the first an absolute path, or a name looked up in PATH), with `input` on its standard input;
    /// returns its exit status and its output (stdout and stderr together, trimmed, at most 64 KiB). Status -1: it
    /// could not start, or did not finish within `timeout` (then it is killed).
    ///
    /// Spawned and reaped directly (posix_spawnp, waitpid), its output in an unlinked temporary file rather than a
    /// pipe: a hook that leaves a process running in the background, holding what it inherited, must not keep the
    /// caller waiting.
    public static func run(_ arguments: [String], input: String? = nil, timeout: Duration = .seconds(20)) -> (status: Int32, output: String) {
        guard !arguments.isEmpty else { return (-1, "no program given") }
        var template = Array("/tmp/triglav-command.XXXXXX".utf8CString)
        let outputFD = mkstemp(&template)
        guard outputFD >= 0 else { return (-1, "cannot create a file for its output: \(errnoText())") }
        unlink(String(cString: template))
        defer { close(outputFD) }
        var inputFDs: [Int32] = [-1, -1]
        guard pipe(&inputFDs) == 0 else { return (-1, "cannot create a pipe for its input: \(errnoText())") }
        // Neither end leaks into other programs the daemon starts; the child gets the read end as its stdin only.
        for fd in inputFDs + [outputFD] { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var writeEnd: Int32? = inputFDs[1]
        defer {
            close(inputFDs[0])
            if let writeEnd { close(writeEnd) }
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, inputFDs[0], 0)
        posix_spawn_file_actions_adddup2(&actions, outputFD, 1)
        posix_spawn_file_actions_adddup2(&actions, outputFD, 2)
        // The daemon ignores SIGPIPE, SIGTERM, SIGINT and SIGHUP (they reach it through dispatch sources) and its
        // threads may block signals; the program starts with every signal at its default and none blocked.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var allSignals = sigset_t()
        var noSignals = sigset_t()
        sigfillset(&allSignals)
        sigemptyset(&noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, environ)
        guard spawned == 0 else { return (-1, "cannot start \(arguments[0]): \(String(cString: strerror(spawned)))") }

        if let input, let fd = writeEnd {
            // Small inputs fit the pipe; a program that exits without reading fails the write (EPIPE, SIGPIPE ignored
            // by the daemon), which its status then explains.
            let bytes = Array(input.utf8)
            var offset = 0
            while offset < bytes.count {
                let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress.map { $0 + offset }, bytes.count - offset) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                offset += count
            }
        }
        if let fd = writeEnd { close(fd) }
        writeEnd = nil

        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var status: Int32 = 0
        var exited = false
        var timedOut = false
        while !exited {
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid {
                exited = true
            } else if result < 0 && errno != EINTR {
                return (-1, "waiting for \(arguments[0]): \(errnoText())")
            } else if clock.now >= deadline && !timedOut {
                timedOut = true
                kill(pid, SIGKILL)
            } else {
                usleep(1_000)
            }
        }
        var bytes = [UInt8](repeating: 0, count: 64 * 1024)
        let count = max(0, pread(outputFD, &bytes, bytes.count, 0))
        let text = String(decoding: bytes[0..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if timedOut { return (-1, "did not finish within \(timeout), killed" + (text.isEmpty ? "" : ": \(text)")) }
        // Exited: its status; killed by a signal: -1 with the signal named.
        if status & 0x7f == 0 { return ((status >> 8) & 0xff, text) }
        return (-1, "ended by signal \(status & 0x7f)" + (text.isEmpty ? "" : ": \(text)"))
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }
}
