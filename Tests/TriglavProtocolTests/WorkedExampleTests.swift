import Foundation
import Testing
import TriglavCore
import TriglavCrypto
@testable import TriglavProtocol

/// Regenerates the worked example of docs/PROTOCOL.md §9 from its fixed keys and compares every value
/// printed there, byte for byte. If the protocol changes, this fails and prints the new values.
@Suite struct WorkedExampleTests {
    static func bytes(_ range: ClosedRange<UInt8>) -> [UInt8] { Array(range) }
    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    /// name → hex of every value the document shows.
    static func generate() throws -> [(String, String)] {
        let serverIdentity = try IdentityKey(seed: SecureBytes(bytes(0x00...0x1f)))
        let clientIdentity = try IdentityKey(seed: SecureBytes(bytes(0x20...0x3f)))
        let clientEphemeral = try X25519KeyPair(privateKey: SecureBytes(bytes(0x40...0x5f)))
        let serverEphemeral = try X25519KeyPair(privateKey: SecureBytes(bytes(0x60...0x7f)))
        let client = AuthorizedClient(publicKey: clientIdentity.publicKey, ipv4: try IPPrefix("10.77.0.2/24"),
                                      ipv6: try IPPrefix("fd77::2/64"))
        var responder = HandshakeResponder(identity: serverIdentity, authorizedClients: [client])
        responder.determinism = .init(ephemeral: serverEphemeral, localIndex: 0x5566_7788, tunnelID: 0x0123_4567_89ab_cdef,
                                      joinToken: JoinToken(unchecked: bytes(0xa0...0xaf)))
        var initiator = try HandshakeInitiator(configuration: InitiatorConfiguration(
            identity: clientIdentity, serverPublicKey: serverIdentity.publicKey, request: .create))
        initiator.determinism = .init(ephemeral: clientEphemeral, localIndex: 0x1122_3344, noJitter: true)

        let initiation = try initiator.start(now: 0, wallClock: 1_800_000_000_000_000_000)
        guard case .accept(let accepted) = responder.handleInitiation(initiation, from: "example", now: 0) else {
            throw FixtureError.notAccepted
        }
        var established = try #require(try initiator.receive(accepted.reply, now: 0))
        var serverSession = accepted.session
        let ipPacket: [UInt8] = [0x45, 0x00, 0x00, 0x14, 0x00, 0x00, 0x40, 0x00, 0x40, 0xfd, 0x00, 0x00,
                                 0x0a, 0x4d, 0x00, 0x02, 0x0a, 0x4d, 0x00, 0x01]
        let clientData = try established.session.seal(.data, tunnelSequence: 1, body: ipPacket, now: 0)
        let serverOpened = try serverSession.open(clientData, now: 0)
        #expect(serverOpened.body == ipPacket)
        let serverProbe = try serverSession.seal(.probe(ProbeBody(id: 7, timestamp: 1_000_000)), now: 0)
        #expect(try established.session.open(serverProbe, now: 0).frame.type == .probe)

        // Intermediate values an implementer can check step by step.
        let serverStatic = try serverIdentity.publicKey.x25519()
        var noise = try NoiseHandshakeState(protocolName: ProtocolConstants.noiseProtocolName, role: .initiator,
                                            prologue: handshakePrologue(initiationHeader: initiation[0..<8]),
                                            ephemeralKeyPair: clientEphemeral, remoteStaticKey: serverStatic)
        _ = try noise.writeMessage(payload: [])
        let hashBeforePayload = noise.handshakeHashBeforePayload
        let macs = HandshakeMACs(serverStaticPublicKey: serverStatic)
        return [
            ("server-identity-public", hex(serverIdentity.publicKey.bytes)),
            ("server-static-x25519-public", hex(serverStatic)),
            ("client-identity-public", hex(clientIdentity.publicKey.bytes)),
            ("client-ephemeral-public", hex(clientEphemeral.publicKey)),
            ("server-ephemeral-public", hex(serverEphemeral.publicKey)),
            ("prologue", hex(handshakePrologue(initiationHeader: initiation[0..<8]))),
            ("h-before-payload", hex(hashBeforePayload)),
            ("mac1-key", hex(macs.mac1Key)),
            ("initiation", hex(initiation)),
            ("response", hex(accepted.reply)),
            ("key-initiator-to-responder", hex(established.session.sendKey.unprotectedBytes)),
            ("key-responder-to-initiator", hex(established.session.receiveKey.unprotectedBytes)),
            ("transport-client-data", hex(clientData)),
            ("transport-server-probe", hex(serverProbe)),
        ]
    }

    /// Values from the document: after a line `<!-- example:NAME -->`, the hex in the next fenced block.
    static func documented() throws -> [String: String] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/PROTOCOL.md"), encoding: .utf8)
        var values: [String: String] = [:]
        var currentName: String?
        var inBlock = false
        var collected = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if let name = currentName {
                if line.hasPrefix("```") {
                    if inBlock {
                        values[name] = collected
                        currentName = nil; inBlock = false; collected = ""
                    } else {
                        inBlock = true
                    }
                } else if inBlock {
                    // Hex digits only; offsets like "0000:" and comments after '#' are ignored.
                    let content = line.split(separator: "#").first.map(String.init) ?? ""
                    let withoutOffset = content.contains(":") ? String(content.split(separator: ":", maxSplits: 1).last ?? "") : content
                    collected += withoutOffset.filter { $0.isHexDigit }
                }
            } else if line.hasPrefix("<!-- example:"), let end = line.range(of: " -->") {
                currentName = String(line[line.index(line.startIndex, offsetBy: 13)..<end.lowerBound])
            }
        }
        return values
    }

    @Test func documentMatchesRegeneratedExample() throws {
        let generated = try Self.generate()
        let documented = try Self.documented()
        for (name, value) in generated {
            #expect(documented[name] == value, "docs/PROTOCOL.md example '\(name)' should be:\n\(value)")
        }
        #expect(documented.count == generated.count)
    }
}
