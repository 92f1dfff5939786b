import Foundation
import Testing
@testable import TriglavCrypto

@Suite struct IdentityKeyTests {
    @Test func signVerifyAndConvert() throws {
        let key = IdentityKey.generate()
        let message = Array("hello".utf8)
        let signature = key.sign(message)
        #expect(key.publicKey.verify(signature: signature, message: message))
        var tampered = signature
        tampered[0] ^= 1
        #expect(!key.publicKey.verify(signature: tampered, message: message))
        // The X25519 forms of the two halves must be a key pair (libsodium's conversion).
        #expect(try key.publicKey.x25519().count == 32)
        #expect(key.x25519PrivateKey().count == 32)
    }

    @Test func textRoundTrip() throws {
        let key = IdentityKey.generate()
        let reloaded = try IdentityKey(base64: key.base64 + "\n")
        #expect(reloaded.publicKey == key.publicKey)
        #expect(try IdentityPublicKey(base64: key.publicKey.base64) == key.publicKey)
        #expect(key.base64.count == 44)
    }

    @Test(arguments: ["", "not base64!", "AAAA", String(repeating: "A", count: 43) + "=" + "x",
                      Base64.encode([UInt8](repeating: 1, count: 31))])
    func malformedKeysAreRejected(text: String) {
        #expect(throws: TriglavCryptoError.self) { try IdentityKey(base64: text) }
        #expect(throws: TriglavCryptoError.self) { try IdentityPublicKey(base64: text) }
    }

    @Test func keyFilePermissions() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("triglav-key-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("key").path
        let key = IdentityKey.generate()
        try KeyFile.write(key, to: path, force: false)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(try KeyFile.load(path: path).publicKey == key.publicKey)
        #expect(throws: TriglavCryptoError.keyFileExists(path: path)) { try KeyFile.write(key, to: path, force: false) }
        try KeyFile.write(IdentityKey.generate(), to: path, force: true)
        #expect(try KeyFile.load(path: path).publicKey != key.publicKey)
        try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: path)
        #expect(throws: TriglavCryptoError.keyFileTooOpen(path: path, mode: 0o100640)) { try KeyFile.load(path: path) }
        #expect(throws: TriglavCryptoError.self) { try KeyFile.load(path: dir.appendingPathComponent("missing").path) }
    }
}
