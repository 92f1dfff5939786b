import Foundation
import Testing
@testable import TriglavCrypto

/// Known-answer and key-file edge cases for item 6 of the foundation issue (identity keys).
@Suite struct IdentityKeyKnownAnswerTests {
    /// RFC 8032 §7.1, TEST 1: secret key (seed), public key and the signature of the empty message.
    static let seedHex = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
    static let publicHex = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    static let signatureHex = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        + "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"

    static func bytes(_ hex: String) -> [UInt8] {
        var result: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            result.append(UInt8(hex[index..<next], radix: 16) ?? 0)
            index = next
        }
        return result
    }

    @Test func rfc8032Vector() throws {
        let key = try IdentityKey(seed: SecureBytes(Self.bytes(Self.seedHex)))
        #expect(key.publicKey.bytes == Self.bytes(Self.publicHex))
        #expect(key.sign([]) == Self.bytes(Self.signatureHex))
        #expect(key.publicKey.verify(signature: Self.bytes(Self.signatureHex), message: []))
        // The text forms are plain standard base64 of the same bytes.
        #expect(Data(base64Encoded: key.base64).map(Array.init) == Self.bytes(Self.seedHex))
        #expect(Data(base64Encoded: key.publicKey.base64).map(Array.init) == Self.bytes(Self.publicHex))
    }

    @Test func x25519FormsAreAKeyPairAndDiffer() throws {
        let key = IdentityKey.generate()
        let x25519Public = try key.publicKey.x25519()
        #expect(x25519Public != key.publicKey.bytes)
        #expect(key.x25519PrivateKey().unprotectedBytes != key.seed.unprotectedBytes)
        // Deterministic: the same identity always converts to the same Noise static key.
        #expect(try IdentityKey(seed: key.seed).publicKey.x25519() == x25519Public)
    }

    @Test func secretsStayOutOfDescriptions() {
        let key = IdentityKey.generate()
        #expect(!key.seed.description.contains(key.base64))
        #expect(key.seed.description.contains("redacted"))
    }

    @Test func whitespaceAroundKeysIsAccepted() throws {
        let key = IdentityKey.generate()
        #expect(try IdentityKey(base64: "  \(key.base64)\r\n").publicKey == key.publicKey)
        #expect(try IdentityPublicKey(base64: "\t\(key.publicKey.base64)\n") == key.publicKey)
    }

    @Test(arguments: ["AAAA AAAA", "=" + String(repeating: "A", count: 43), String(repeating: "A", count: 44) + "=",
                      "-_" + String(repeating: "A", count: 42)])
    func nonStandardBase64IsRejected(text: String) {
        #expect(throws: TriglavCryptoError.self) { try IdentityPublicKey(base64: text) }
    }

    @Test func malformedMessagesSayWhatToDo() {
        do {
            _ = try IdentityPublicKey(base64: "AAAA")
            Issue.record("3-byte key accepted")
        } catch {
            #expect(error.description == "malformed key: public key must be 32 bytes, got 3")
        }
        do {
            _ = try IdentityKey(base64: "???")
            Issue.record("garbage accepted")
        } catch {
            #expect(error.description.contains("written by 'triglav keygen'"))
        }
    }
}

@Suite struct KeyFileEdgeCaseTests {
    static func scratch() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("triglav-keyfile-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func writtenFileIsOneBase64Line() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let key = IdentityKey.generate()
        try KeyFile.write(key, to: "\(directory)/k", force: false)
        #expect(try String(contentsOfFile: "\(directory)/k", encoding: .utf8) == key.base64 + "\n")
    }

    @Test func writeRefusesToFollowASymlink() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let target = "\(directory)/target"
        try Data("precious\n".utf8).write(to: URL(fileURLWithPath: target))
        try FileManager.default.createSymbolicLink(atPath: "\(directory)/link", withDestinationPath: target)
        #expect(throws: TriglavCryptoError.self) { try KeyFile.write(IdentityKey.generate(), to: "\(directory)/link", force: true) }
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "precious\n")
    }

    @Test func writeIntoAMissingDirectoryFailsClearly() throws {
        do {
            try KeyFile.write(IdentityKey.generate(), to: "/nonexistent-triglav-dir/k", force: false)
            Issue.record("wrote into a missing directory")
        } catch {
            #expect(error.description.hasPrefix("cannot write key file /nonexistent-triglav-dir/k: No such file"))
        }
    }

    @Test func loadRefusesDirectoriesAndOversizedFiles() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(throws: TriglavCryptoError.keyFileUnreadable(path: directory, reason: "not a regular file")) {
            try KeyFile.load(path: directory)
        }
        let big = "\(directory)/big"
        try Data(repeating: UInt8(ascii: "A"), count: 10_000).write(to: URL(fileURLWithPath: big))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: big)
        #expect(throws: TriglavCryptoError.self) { try KeyFile.load(path: big) }
    }

    @Test(arguments: [0o600, 0o400, 0o700])
    func privateModesAreAccepted(mode: Int) throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let key = IdentityKey.generate()
        try KeyFile.write(key, to: "\(directory)/k", force: false)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: "\(directory)/k")
        #expect(try KeyFile.load(path: "\(directory)/k").publicKey == key.publicKey)
    }

    @Test(arguments: [0o640, 0o604, 0o620, 0o602, 0o610, 0o601])
    func anyGroupOrOtherBitIsRefusedWithAChmodHint(mode: Int) throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/k"
        try KeyFile.write(IdentityKey.generate(), to: path, force: false)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
        do {
            _ = try KeyFile.load(path: path)
            Issue.record("mode \(String(mode, radix: 8)) accepted")
        } catch {
            #expect(error == .keyFileTooOpen(path: path, mode: UInt32(0o100000 | mode)))
            #expect(error.description.contains("chmod 600 \(path)"))
            #expect(error.description.contains("mode \(String(mode, radix: 8))"))
        }
    }
}
