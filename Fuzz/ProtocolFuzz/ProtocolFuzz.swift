// libFuzzer target for the wire protocol's parsers and the server-side handshake. Built by
// `make fuzz` (mk/protocol.mk) with -sanitize=fuzzer,address against debug (-enable-testing) builds
// of TriglavCore, TriglavCrypto and TriglavProtocol. The first input byte picks what is fuzzed; the
// modes that need valid cryptography wrap the remaining bytes in real encryption so the fuzzer reaches
// the parsers behind the AEAD.
@testable import TriglavCore
@testable import TriglavCrypto
@testable import TriglavProtocol

/// Fixed keys so every run is reproducible.
enum Keys {
    static let server = try! IdentityKey(seed: SecureBytes([UInt8](repeating: 1, count: 32)))  // fuzz harness only
    static let client = try! IdentityKey(seed: SecureBytes([UInt8](repeating: 2, count: 32)))
    static let serverStatic = try! server.publicKey.x25519()
    static let clientRecord = AuthorizedClient(publicKey: client.publicKey, ipv4: try! IPPrefix("10.77.0.2/24"), ipv6: nil)
    static let sendKey = SymmetricKey(copyingPrefix: [UInt8](repeating: 3, count: 32))
    static let receiveKey = SymmetricKey(copyingPrefix: [UInt8](repeating: 4, count: 32))
}

func freshSession() -> TransportSession {
    TransportSession(localIndex: 0x0102_0304, remoteIndex: 0x0506_0708, role: .responder, establishedAt: 0,
                     sendKey: Keys.sendKey, receiveKey: Keys.receiveKey)
}

func freshResponder() -> HandshakeResponder {
    HandshakeResponder(identity: Keys.server, authorizedClients: [Keys.clientRecord])
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProtocol(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    guard count > 0 else { return 0 }
    let mode = start[0]
    let input = Array(UnsafeBufferPointer(start: start + 1, count: count - 1))
    switch mode % 7 {
    case 0:
        // Raw datagrams at a session, the demultiplexer and every control-frame parser.
        _ = Demultiplexer.classify(input)
        var session = freshSession()
        _ = try? session.open(input, now: 1)
        for type in FrameType.allCases { _ = try? ControlFrame.parse(type: type, body: input) }
    case 1:
        // Raw initiations at the responder (almost all stop at mac1).
        var responder = freshResponder()
        _ = responder.handleInitiation(input, from: 1, now: 1)
    case 2:
        // Initiations with a correct mac1, so size, version, cookie and Noise checks are exercised.
        var message = input
        if message.count >= 40 {
            let start = message.count - 32
            message.replaceSubrange(start..<(start + 16), with: HandshakeMACs(serverStaticPublicKey: Keys.serverStatic).mac1(message[..<start]))
        }
        var responder = freshResponder()
        responder.forceUnderLoad = mode & 0x80 != 0
        _ = responder.handleInitiation(message, from: 2, now: 1)
    case 3:
        // A genuine Noise message around an arbitrary 128-byte payload: client-auth parsing,
        // authorization, signature and tunnel-request logic.
        var payload = Array(input.prefix(WireLayout.initiationPayloadSize))
        payload += [UInt8](repeating: 0, count: WireLayout.initiationPayloadSize - payload.count)
        if mode & 0x80 != 0 { payload.replaceSubrange(0..<32, with: Keys.client.publicKey.bytes) }
        var header: [UInt8] = [1, PROTOCOL_VERSION, 0, 0, 9, 0, 0, 0]
        if input.count > 130 { header[1] = input[129]; header[2] = input[130] }
        guard var noise = try? NoiseHandshakeState(protocolName: ProtocolConstants.noiseProtocolName, role: .initiator,
                                                   prologue: handshakePrologue(initiationHeader: header[...]),
                                                   remoteStaticKey: Keys.serverStatic),
              let body = try? noise.writeMessage(payload: payload) else { return 0 }
        var message = header + body
        message += HandshakeMACs(serverStaticPublicKey: Keys.serverStatic).mac1(message[...])
        message += [UInt8](repeating: 0, count: 16)
        var responder = freshResponder()
        _ = responder.handleInitiation(message, from: 3, now: 1)
    case 4:
        // Arbitrary server answers to a pending client handshake.
        guard var initiator = try? HandshakeInitiator(configuration: InitiatorConfiguration(
            identity: Keys.client, serverPublicKey: Keys.server.publicKey)) else { return 0 }
        initiator.determinism.localIndex = 9
        _ = try? initiator.start(now: 0, wallClock: 1)
        _ = try? initiator.receive(input, now: 1)
    case 5:
        // A genuine response around an arbitrary 52-byte tunnel assignment.
        guard var initiator = try? HandshakeInitiator(configuration: InitiatorConfiguration(
            identity: Keys.client, serverPublicKey: Keys.server.publicKey)) else { return 0 }
        initiator.determinism.localIndex = 9
        guard let initiation = try? initiator.start(now: 0, wallClock: 1) else { return 0 }
        guard var noise = try? NoiseHandshakeState(protocolName: ProtocolConstants.noiseProtocolName, role: .responder,
                                                   prologue: handshakePrologue(initiationHeader: initiation[0..<8]),
                                                   staticKeyPair: X25519KeyPair(identity: Keys.server)),
              (try? noise.readMessage(Array(initiation[8..<184]))) != nil else { return 0 }
        var payload = Array(input.prefix(WireLayout.responsePayloadSize))
        payload += [UInt8](repeating: 0, count: WireLayout.responsePayloadSize - payload.count)
        guard let body = try? noise.writeMessage(payload: payload) else { return 0 }
        var response: [UInt8] = [2, PROTOCOL_VERSION, 0, 0]
        response += payload[48..<52]
        response += [9, 0, 0, 0]
        _ = try? initiator.receive(response + body, now: 1)
    default:
        // Authentic transport datagrams with an arbitrary inner header and body: frame parsing after
        // authentication, replay window with arbitrary counters.
        var session = freshSession()
        var offset = 0
        while offset + 9 <= input.count {
            let counter = input[offset..<(offset + 8)].reduce(UInt64(0)) { $0 << 8 | UInt64($1) } >> (input[offset] & 63)
            let length = Int(input[offset + 8]) % 64
            let plain = Array(input[(offset + 9)..<min(input.count, offset + 9 + length)])
            offset += 9 + length
            guard plain.count >= WireLayout.innerHeaderSize else { continue }
            var header: [UInt8] = [4, 0, 0, 0, 4, 3, 2, 1]
            header.appendLE64(counter)
            var datagram = header + ChaChaPoly.seal(key: Keys.receiveKey, counter: counter, associatedData: header, plaintext: plain)
            _ = datagram.withUnsafeMutableBytes { raw in try? session.open(raw, now: 1) }
        }
    }
    return 0
}
