import Foundation
import Testing
@testable import TriglavCrypto

/// Cacophony's public vectors for the 25519/ChaChaPoly suites (../shared/noise-vectors). Every non-PSK
/// vector whose pattern we implement must reproduce its handshake and transport ciphertexts exactly.
@Suite struct NoiseVectorTests {
    struct Vector {
        let protocolName: String
        let fields: [String: Any]
        let messages: [(payload: [UInt8], ciphertext: [UInt8])]
    }

    static func packageRoot() -> URL {
        // Tests/TriglavCryptoTests/NoiseVectorTests.swift → package root.
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    static func loadVectors() throws -> [Vector] {
        let url = packageRoot().appendingPathComponent("../shared/noise-vectors/cacophony-25519-chachapoly.json")
        let data = try Data(contentsOf: url)
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let list = try #require(root["vectors"] as? [[String: Any]])
        return try list.map { entry in
            let name = try #require(entry["protocol_name"] as? String)
            let messages = try #require(entry["messages"] as? [[String: String]]).map { message in
                (payload: hex(message["payload"] ?? ""), ciphertext: hex(message["ciphertext"] ?? ""))
            }
            return Vector(protocolName: name, fields: entry, messages: messages)
        }
    }

    static func hex(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            bytes.append(UInt8(text[index..<next], radix: 16) ?? 0)
            index = next
        }
        return bytes
    }

    static func keyPair(_ vector: Vector, _ field: String) throws -> X25519KeyPair? {
        guard let text = vector.fields[field] as? String else { return nil }
        return try X25519KeyPair(privateKey: SecureBytes(hex(text)))
    }

    @Test func everySupportedVectorMatches() throws {
        let vectors = try Self.loadVectors()
        var checkedPerPattern: [String: Int] = [:]
        var checkedPerHash: [NoiseHash: Int] = [:]
        var transportMessagesChecked = 0
        for vector in vectors {
            guard !vector.protocolName.contains("psk"),
                  let parsed = try? NoiseProtocol(name: vector.protocolName) else { continue }
            let prologueI = Self.hex(vector.fields["init_prologue"] as? String ?? "")
            let prologueR = Self.hex(vector.fields["resp_prologue"] as? String ?? "")
            var initiator = try NoiseHandshakeState(
                protocolName: vector.protocolName, role: .initiator, prologue: prologueI,
                staticKeyPair: try Self.keyPair(vector, "init_static"),
                ephemeralKeyPair: try Self.keyPair(vector, "init_ephemeral"),
                remoteStaticKey: (vector.fields["init_remote_static"] as? String).map(Self.hex))
            var responder = try NoiseHandshakeState(
                protocolName: vector.protocolName, role: .responder, prologue: prologueR,
                staticKeyPair: try Self.keyPair(vector, "resp_static"),
                ephemeralKeyPair: try Self.keyPair(vector, "resp_ephemeral"),
                remoteStaticKey: (vector.fields["resp_remote_static"] as? String).map(Self.hex))
            var transport: (i2r: NoiseCipherState, r2i: NoiseCipherState, ri2r: NoiseCipherState, rr2i: NoiseCipherState)?
            for (index, message) in vector.messages.enumerated() {
                let initiatorSends = parsed.pattern.isOneWay || index % 2 == 0
                if var keys = transport {
                    let ciphertext: [UInt8]
                    let decrypted: [UInt8]
                    if initiatorSends {
                        ciphertext = try keys.i2r.encrypt(associatedData: [], plaintext: message.payload)
                        decrypted = try keys.ri2r.decrypt(associatedData: [], ciphertext: ciphertext)
                    } else {
                        ciphertext = try keys.rr2i.encrypt(associatedData: [], plaintext: message.payload)
                        decrypted = try keys.r2i.decrypt(associatedData: [], ciphertext: ciphertext)
                    }
                    transport = keys
                    #expect(ciphertext == message.ciphertext, "\(vector.protocolName) transport message \(index)")
                    #expect(decrypted == message.payload)
                    transportMessagesChecked += 1
                    continue
                }
                let ciphertext: [UInt8]
                let decrypted: [UInt8]
                if initiatorSends {
                    ciphertext = try initiator.writeMessage(payload: message.payload)
                    decrypted = try responder.readMessage(ciphertext)
                } else {
                    ciphertext = try responder.writeMessage(payload: message.payload)
                    decrypted = try initiator.readMessage(ciphertext)
                }
                #expect(ciphertext == message.ciphertext, "\(vector.protocolName) handshake message \(index)")
                #expect(decrypted == message.payload)
                if initiator.isComplete {
                    #expect(responder.isComplete)
                    #expect(initiator.handshakeHash == Self.hex(vector.fields["handshake_hash"] as? String ?? ""),
                            "\(vector.protocolName) handshake hash")
                    #expect(responder.handshakeHash == initiator.handshakeHash)
                    let (i2r, r2i) = try initiator.split()
                    let (ri2r, rr2i) = try responder.split()
                    transport = (i2r, r2i, ri2r, rr2i)
                }
            }
            #expect(transport != nil, "\(vector.protocolName) never completed")
            checkedPerPattern[parsed.pattern.name, default: 0] += 1
            checkedPerHash[parsed.hash, default: 0] += 1
        }
        // Every built-in pattern, with each of the three hashes, has exactly one vector in the file.
        for name in NoisePattern.all.keys {
            #expect(checkedPerPattern[name] == 3, "pattern \(name) checked \(checkedPerPattern[name] ?? 0) times")
        }
        for required in ["N", "NN", "NK", "XX", "IK"] { #expect((checkedPerPattern[required] ?? 0) > 0) }
        #expect(checkedPerPattern.values.reduce(0, +) == 114)
        #expect(checkedPerHash[.blake2b] == 38)
        #expect(transportMessagesChecked > 300)
    }

    @Test func handshakeRejectsTamperingAndMisuse() throws {
        let server = X25519KeyPair.generate()
        var initiator = try NoiseHandshakeState(protocolName: "Noise_NK_25519_ChaChaPoly_BLAKE2b", role: .initiator,
                                                prologue: [1], remoteStaticKey: server.publicKey)
        var responder = try NoiseHandshakeState(protocolName: "Noise_NK_25519_ChaChaPoly_BLAKE2b", role: .responder,
                                                prologue: [1], staticKeyPair: server)
        #expect(throws: TriglavCryptoError.self) { try initiator.readMessage([]) }
        var first = try initiator.writeMessage(payload: [9, 9])
        first[first.count - 1] ^= 1
        var attempt = responder
        #expect(throws: TriglavCryptoError.decryptionFailed) { try attempt.readMessage(first) }
        #expect(throws: TriglavCryptoError.self) { try attempt.readMessage([0, 1]) }
        first[first.count - 1] ^= 1
        #expect(try responder.readMessage(first) == [9, 9])
        let second = try responder.writeMessage(payload: [])
        _ = try initiator.readMessage(second)
        _ = try initiator.split()
        #expect(throws: TriglavCryptoError.self) { try initiator.split() }
        // A different prologue (e.g. another protocol version) breaks the first message.
        var otherVersion = try NoiseHandshakeState(protocolName: "Noise_NK_25519_ChaChaPoly_BLAKE2b", role: .responder,
                                                   prologue: [2], staticKeyPair: server)
        #expect(throws: TriglavCryptoError.decryptionFailed) { try otherVersion.readMessage(first) }
        #expect(throws: TriglavCryptoError.unsupportedProtocol("Noise_NK_448_AESGCM_BLAKE2b")) {
            try NoiseHandshakeState(protocolName: "Noise_NK_448_AESGCM_BLAKE2b", role: .initiator, prologue: [])
        }
    }

    @Test func smallOrderPointIsRefused() throws {
        let pair = X25519KeyPair.generate()
        #expect(throws: TriglavCryptoError.weakPublicKey) { try pair.sharedSecret(with: [UInt8](repeating: 0, count: 32)) }
    }

    @Test func inPlaceAEADMatchesArrayForm() throws {
        let key = SymmetricKey.random()
        let ad: [UInt8] = [1, 2, 3]
        let plaintext = (0..<100).map { UInt8($0) }
        let sealed = ChaChaPoly.seal(key: key, counter: 7, associatedData: ad, plaintext: plaintext)
        var buffer = plaintext + [UInt8](repeating: 0, count: 16)
        ad.withUnsafeBytes { adBytes in
            buffer.withUnsafeMutableBytes { raw in
                ChaChaPoly.sealInPlace(key: key, counter: 7, associatedData: adBytes,
                                       buffer: UnsafeMutableRawBufferPointer(rebasing: raw[0..<100]), tag: raw.baseAddress! + 100)
            }
        }
        #expect(buffer == sealed)
        #expect(try ChaChaPoly.open(key: key, counter: 7, associatedData: ad, ciphertext: sealed) == plaintext)
        #expect(throws: TriglavCryptoError.decryptionFailed) {
            try ChaChaPoly.open(key: key, counter: 8, associatedData: ad, ciphertext: sealed)
        }
    }
}
