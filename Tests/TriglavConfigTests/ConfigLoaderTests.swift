import Foundation
import Testing
@testable import TriglavConfig
import TriglavCrypto

@Suite struct ConfigLoaderTests {
    @Test func missingFileIsAnErrorUnlessAllowed() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = "\(directory.path)/absent.toml"
        #expect(throws: TriglavConfigError.unreadableFile(path: path, reason: "No such file or directory")) {
            try ConfigLoader.loadDaemonConfig(path: path)
        }
        #expect(try ConfigLoader.loadDaemonConfig(path: path, missingIsEmpty: true) == DaemonConfig())
    }

    @Test func unreadableFilesAreReported() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        #expect(throws: TriglavConfigError.unreadableFile(path: directory.path, reason: "not a regular file")) {
            try ConfigLoader.loadDaemonConfig(path: directory.path)
        }
        let binary = "\(directory.path)/binary.toml"
        try Data([0x72, 0x6f, 0x6c, 0x65, 0xff, 0xfe]).write(to: URL(fileURLWithPath: binary))
        do {
            _ = try ConfigLoader.loadDaemonConfig(path: binary)
            Issue.record("non-UTF-8 file accepted")
        } catch {
            #expect(error.description.contains("not valid UTF-8"))
        }
    }

    @Test func diagnosticsNameTheFileTheyCameFrom() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("triglavd.toml", "[tunnel]\nmtu = 1\n")
        do {
            _ = try ConfigLoader.loadDaemonConfig(path: path)
            Issue.record("invalid file accepted")
        } catch {
            #expect(error.diagnostics.map(\.description) == ["\(path): tunnel.mtu: 1 is out of range: must be 1280 to 1432 bytes"])
        }
    }

    @Test func privateKeyCheck() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let keyPath = "\(directory.path)/private.key"
        var config = try ConfigLoader.parseDaemonConfig("private_key = \"\(keyPath)\"", file: "c.toml")
        #expect(ConfigLoader.checkPrivateKey(of: config, file: "c.toml") == .missing)

        let key = IdentityKey.generate()
        try KeyFile.write(key, to: keyPath, force: false)
        #expect(ConfigLoader.checkPrivateKey(of: config, file: "c.toml") == .usable(key.publicKey))

        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: keyPath)
        guard case .unusable(let open) = ConfigLoader.checkPrivateKey(of: config, file: "c.toml") else {
            Issue.record("world-readable key accepted")
            return
        }
        #expect(open.count == 1 && open[0].keyPath == "private_key" && open[0].reason.contains("chmod 600"))

        try directory.write("private.key", "not a key\n", mode: 0o600)
        guard case .unusable(let malformed) = ConfigLoader.checkPrivateKey(of: config, file: "c.toml") else {
            Issue.record("malformed key accepted")
            return
        }
        #expect(malformed.first?.reason.contains("malformed key") == true)

        // A server whose own key is listed as a client's is a copy-paste mistake.
        try KeyFile.write(key, to: keyPath, force: true)
        config = try ConfigLoader.parseDaemonConfig("""
            role = "server"
            private_key = "\(keyPath)"
            [[server.clients]]
            name = "oops"
            public_key = "\(key.publicKey.base64)"
            tunnel_ipv4 = "10.77.0.2"
            """, file: "s.toml")
        guard case .unusable(let clash) = ConfigLoader.checkPrivateKey(of: config, file: "s.toml") else {
            Issue.record("server key listed as client accepted")
            return
        }
        #expect(clash.map(\.keyPath) == ["server.clients[0].public_key"])
    }

    @Test func errorDescriptionsAreActionable() {
        #expect(TriglavConfigError.profileNotFound(name: "x", directory: "/etc/triglav/profiles").description
            == "/etc/triglav/profiles/x.toml: no such profile 'x'; create the file or pick another with --profile")
        #expect(TriglavConfigError.invalidProfileName("a/b").description.contains("letters, digits"))
    }
}
