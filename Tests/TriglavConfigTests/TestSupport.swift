import Foundation
import Testing
@testable import TriglavConfig
import TriglavCore
import TriglavCrypto

/// The diagnostics of `toml` as a daemon configuration; records a test failure if it is valid.
func daemonDiagnostics(_ toml: String, role: Role? = nil,
                       sourceLocation: Testing.SourceLocation = #_sourceLocation) -> [ConfigDiagnostic] {
    do {
        let config = try ConfigLoader.parseDaemonConfig(toml, file: "test.toml", roleOverride: role)
        Issue.record("expected diagnostics, got a valid configuration: \(config)", sourceLocation: sourceLocation)
        return []
    } catch {
        if case .invalid(let diagnostics) = error {
            #expect(!diagnostics.isEmpty, sourceLocation: sourceLocation)
            return diagnostics
        }
        Issue.record("expected .invalid, got \(error)", sourceLocation: sourceLocation)
        return []
    }
}

/// Expects exactly one diagnostic, at `keyPath`, whose reason contains `fragment`.
func expectSingleDiagnostic(_ toml: String, at keyPath: String, containing fragment: String, role: Role? = nil,
                            sourceLocation: Testing.SourceLocation = #_sourceLocation) {
    let diagnostics = daemonDiagnostics(toml, role: role, sourceLocation: sourceLocation)
    #expect(diagnostics.count == 1, "\(diagnostics)", sourceLocation: sourceLocation)
    guard let first = diagnostics.first else { return }
    #expect(first.file == "test.toml", sourceLocation: sourceLocation)
    #expect(first.keyPath == keyPath, "\(first)", sourceLocation: sourceLocation)
    #expect(first.reason.contains(fragment), "\(first)", sourceLocation: sourceLocation)
}

/// A fresh directory under the system temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("triglav-config-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    @discardableResult
    func write(_ name: String, _ text: String, mode: Int = 0o644) throws -> String {
        let file = "\(path)/\(name)"
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: file)
        return file
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Public keys of freshly generated identities, for client entries.
func publicKeys(_ count: Int) -> [String] {
    (0..<count).map { _ in IdentityKey.generate().publicKey.base64 }
}

/// The repository's examples/ directory, found from this source file's path.
let examplesDirectory: String = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("examples").path

enum IPPrefixFixture {
    static func make(_ text: String) throws -> IPPrefix { try IPPrefix(text) }
}
