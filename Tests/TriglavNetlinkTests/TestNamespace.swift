import Foundation
import Testing

/// Whether the tests may create network namespaces (CI runs as root; never skip then).
let runningAsRoot = getuid() == 0

/// A network namespace created for one test (`ip netns add tg-netlink-<random>`) and deleted on `close()`
/// or deinit, even when the test fails. Test setup uses `ip` for an independent view of the kernel;
/// the code under test never does.
final class TestNamespace: @unchecked Sendable {
    let name: String
    private var closed = false

    init(prefix: String = "tg-netlink") throws {
        name = "\(prefix)-\(UInt32.random(in: 0...UInt32.max))"
        try TestNamespace.ip(["netns", "add", name])
        try ip(["link", "set", "lo", "up"])
    }

    var path: String { "/run/netns/\(name)" }

    /// Runs `ip -n NAME args...`, throwing with stderr on failure; returns stdout.
    @discardableResult
    func ip(_ arguments: [String], input: String? = nil) throws -> String {
        try TestNamespace.ip(["-n", name] + arguments, input: input)
    }

    @discardableResult
    static func ip(_ arguments: [String], input: String? = nil) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = arguments
        let out = Pipe(), err = Pipe(), inPipe = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = inPipe
        try process.run()
        if let input { inPipe.fileHandleForWriting.write(Data(input.utf8)) }
        try inPipe.fileHandleForWriting.close()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CommandFailed(command: "ip " + arguments.joined(separator: " "),
                                stderr: String(decoding: errors, as: UTF8.self))
        }
        return String(decoding: output, as: UTF8.self)
    }

    func close() {
        guard !closed else { return }
        closed = true
        _ = try? TestNamespace.ip(["netns", "delete", name])
    }

    deinit { close() }
}

struct CommandFailed: Error, CustomStringConvertible {
    let command: String
    let stderr: String
    var description: String { "\(command) failed: \(stderr)" }
}
