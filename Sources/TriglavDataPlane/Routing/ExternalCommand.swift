import Foundation

/// Runs a system tool (`nft`, `resolvconf`) to completion: the few things done through a program rather than a library.
public enum ExternalCommand {
    /// Runs `arguments` (the first an absolute path, or a name looked up in PATH), with `input` on its standard input;
    /// returns its exit status and its output (stdout and stderr together, trimmed). Status -1: it could not start.
    public static func run(_ arguments: [String], input: String? = nil) -> (status: Int32, output: String) {
        let process = Process()
        if let program = arguments.first, program.hasPrefix("/") {
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = Array(arguments.dropFirst())
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = arguments
        }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        let inputPipe = input.map { _ in Pipe() }
        if let inputPipe { process.standardInput = inputPipe }
        do {
            try process.run()
        } catch {
            return (-1, "cannot start: \(error)")
        }
        if let inputPipe, let input {
            // A program that exits without reading all of it fails this write (EPIPE), which its status then explains.
            try? inputPipe.fileHandleForWriting.write(contentsOf: Data(input.utf8))
            try? inputPipe.fileHandleForWriting.close()
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
