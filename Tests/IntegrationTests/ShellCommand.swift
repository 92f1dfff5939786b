import Foundation

/// Runs `command` with /bin/sh, killed after `timeout` seconds; stdout and stderr together, and the exit
/// status. The namespace harnesses wrap it in their own error types.
func runShell(_ command: String, timeout: Int) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
    process.arguments = ["-s", "KILL", String(timeout), "/bin/sh", "-c", command]
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
