// Child-process helpers shared by the test targets (a test-only library, never linked into products).
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Output of a finished child process.
public struct CommandResult: Sendable, CustomStringConvertible {
    public let status: Int32
    public let stdout: String
    public let stderr: String
    public var description: String { "exit \(status)\nstdout: \(stdout)\nstderr: \(stderr)" }
}

public enum SubprocessError: Error, CustomStringConvertible {
    case spawnFailed([String], Int32)
    public var description: String {
        switch self { case .spawnFailed(let argv, let code): return "cannot run \(argv.joined(separator: " ")): error \(code)" }
    }
}

/// Runs `argv` (PATH is searched) and collects its output; kills it after `timeout`.
/// Foundation's Process is avoided on purpose: its reaping can hang in async tests on Linux.
public func runCommand(_ argv: [String], environment: [String: String] = [:], captureOutput: Bool = true,
                timeout: Duration = .seconds(20)) throws -> CommandResult {
    var outPipe: [Int32] = [-1, -1]
    var errPipe: [Int32] = [-1, -1]
    // Close-on-exec: tests run in parallel, and a child another thread spawns meanwhile must not inherit these
    // write ends (a long-lived one, such as a forked dbus-daemon, would keep them open and this read loop would
    // wait out its timeout: "exit -9").
    guard closeOnExecPipe(&outPipe) == 0, closeOnExecPipe(&errPipe) == 0 else { throw SubprocessError.spawnFailed(argv, errno) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    if captureOutput {
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
    } else {
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    for fd in outPipe + errPipe { posix_spawn_file_actions_addclose(&actions, fd) }

    var env: [String: String] = [:]
    var cursor = environ
    while let entry = cursor.pointee {
        let text = String(cString: entry)
        if let equals = text.firstIndex(of: "=") {
            env[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        cursor += 1
    }
    for (key, value) in environment { env[key] = value }
    let envStrings = env.map { "\($0.key)=\($0.value)" }

    var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    var cEnv: [UnsafeMutablePointer<CChar>?] = envStrings.map { strdup($0) } + [nil]
    defer {
        for pointer in cArgs { free(pointer) }
        for pointer in cEnv { free(pointer) }
    }
    var pid: pid_t = 0
    let spawned = posix_spawnp(&pid, argv[0], &actions, nil, &cArgs, &cEnv)
    close(outPipe[1])
    close(errPipe[1])
    guard spawned == 0 else {
        close(outPipe[0])
        close(errPipe[0])
        throw SubprocessError.spawnFailed(argv, spawned)
    }
    var out: [UInt8] = []
    var err: [UInt8] = []
    var open = [outPipe[0], errPipe[0]]
    let deadline = ContinuousClock.now + timeout
    var buffer = [UInt8](repeating: 0, count: 4096)
    var killed = false
    while !open.isEmpty {
        let remaining = ContinuousClock.now.duration(to: deadline)
        if remaining <= .zero {
            kill(pid, SIGKILL)
            killed = true
            break
        }
        var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let milliseconds = Int32(clamping: remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000 + 1)
        if poll(&fds, nfds_t(fds.count), milliseconds) < 0 && errno != EINTR { break }
        for descriptor in fds where descriptor.revents != 0 {
            let count = read(descriptor.fd, &buffer, buffer.count)
            if count > 0 {
                if descriptor.fd == outPipe[0] { out += buffer[0..<count] } else { err += buffer[0..<count] }
            } else {
                open.removeAll { $0 == descriptor.fd }
            }
        }
    }
    close(outPipe[0])
    close(errPipe[0])
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let exitCode: Int32 = killed ? -9 : ((status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f))
    return CommandResult(status: exitCode, stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
}

/// A child process running in the background with its output in files; `stop()` ends it
/// (SIGTERM, then SIGKILL after 2 s) and reaps it.
public final class BackgroundProcess: @unchecked Sendable {
    public let pid: pid_t
    public let stdoutPath: String
    public let stderrPath: String
    private var stopped = false

    public init(_ argv: [String], outputPrefix: String, environment: [String: String] = [:]) throws {
        stdoutPath = outputPrefix + ".out"
        stderrPath = outputPrefix + ".err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var env: [String] = []
        var cursor = environ
        while let entry = cursor.pointee {
            env.append(String(cString: entry))
            cursor += 1
        }
        env += environment.map { "\($0.key)=\($0.value)" }
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        var cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer {
            for pointer in cArgs { free(pointer) }
            for pointer in cEnv { free(pointer) }
        }
        var child: pid_t = 0
        let result = posix_spawnp(&child, argv[0], &actions, nil, &cArgs, &cEnv)
        guard result == 0 else { throw SubprocessError.spawnFailed(argv, result) }
        pid = child
    }

    public var output: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    public var errorOutput: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Waits (bounded) until stdout contains `text` (at least `occurrences` times).
    public func waitForOutput(_ text: String, occurrences: Int = 1, timeout: Duration = .seconds(10)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        let enough = { self.output.components(separatedBy: text).count - 1 >= occurrences }
        while ContinuousClock.now < deadline {
            if enough() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return enough()
    }

    /// Waits (bounded) until stderr contains `text`.
    public func waitForErrorOutput(_ text: String, timeout: Duration = .seconds(10)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if errorOutput.contains(text) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return errorOutput.contains(text)
    }

    /// Exit status once it has exited by itself within `timeout`, else nil (still running).
    public func waitForExit(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                stopped = true
                return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    public func signal(_ number: Int32) { if !stopped { kill(pid, number) } }

    public func stop() {
        guard !stopped else { return }
        stopped = true
        kill(pid, SIGTERM)
        var status: Int32 = 0
        for _ in 0..<200 {
            if waitpid(pid, &status, WNOHANG) == pid { return }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }

    deinit { stop() }
}

/// pipe2(2), which Glibc's Swift module doesn't import (it is a GNU extension); with O_CLOEXEC the new descriptors
/// are close-on-exec from the start, with no window in which another thread's spawn could inherit them.
@_silgen_name("pipe2") private func pipe2(_ descriptors: UnsafeMutablePointer<Int32>, _ flags: Int32) -> Int32

private func closeOnExecPipe(_ descriptors: inout [Int32]) -> Int32 {
    descriptors.withUnsafeMutableBufferPointer { buffer in
        guard let base = buffer.baseAddress else { return -1 }
        return pipe2(base, O_CLOEXEC)
    }
}

/// Writes an executable script (mode 0755) through a close-on-exec descriptor. A descriptor open for writing that a
/// child spawned meanwhile by a test running in parallel inherits keeps the file "busy": executing it then fails with
/// ETXTBSY (exit status 126 from the shell) for as long as that child lives.
public func writeExecutable(_ text: String, to path: String) throws {
    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
    guard descriptor >= 0 else { throw SubprocessError.spawnFailed(["write", path], errno) }
    defer { close(descriptor) }
    let bytes = Array(text.utf8)
    var written = 0
    while written < bytes.count {
        let result = bytes[written...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        if result < 0 && errno == EINTR { continue }
        guard result > 0 else { throw SubprocessError.spawnFailed(["write", path], errno) }
        written += result
    }
    guard fchmod(descriptor, 0o755) == 0 else { throw SubprocessError.spawnFailed(["chmod", path], errno) }
}
