import Testing
import TriglavCore
import TriglavCrypto
@testable import TriglavProtocol

@Suite struct HandshakeTests {
    @Test func firstUplinkCreatesTunnelAndTrafficFlowsBothWays() throws {
        var fixture = try Fixture()
        let (client, server) = try fixture.handshake(now: 5)
        #expect(server.client == fixture.client.publicKey)
        #expect(server.event == .created(replacedTunnelID: nil))
        #expect(client.tunnel == server.tunnel)
        #expect(client.tunnel.ipv4 == (try IPPrefix("10.77.0.2/24")))
        #expect(client.tunnel.ipv6 == (try IPPrefix("fd77::2/64")))
        #expect(server.reply.count == WireLayout.responseSize)
        var clientSession = client.session, serverSession = server.session
        #expect(clientSession.remoteIndex == serverSession.localIndex)
        #expect(serverSession.remoteIndex == clientSession.localIndex)
        #expect(!serverSession.isConfirmed)
        let packet: [UInt8] = Array(0..<200)
        let up = try clientSession.seal(.data, tunnelSequence: 42, body: packet, now: 6)
        #expect(up.count == packet.count + WireOverhead.protocolOverhead)
        let (frame, body) = try serverSession.open(up, now: 7)
        #expect(frame.counter == 0)
        #expect(frame.type == .data && frame.tunnelSequence == 42 && body == packet)
        #expect(serverSession.isConfirmed)
        let down = try serverSession.seal(.data, tunnelSequence: 9, body: [1, 2, 3], now: 8)
        let opened = try clientSession.open(down, now: 9)
        #expect(opened.body == [1, 2, 3])
    }

    @Test func laterUplinkJoinsWithTokenAndSameIdentity() throws {
        var fixture = try Fixture()
        let first = try fixture.handshake(now: 1)
        let token = first.client.tunnel.joinToken
        let second = try fixture.handshake(.join(token, replacing: nil), now: 2, source: "203.0.113.9:5000")
        #expect(second.server.event == .joined)
        #expect(second.server.tunnel.tunnelID == first.server.tunnel.tunnelID)
        #expect(second.server.session.localIndex != first.server.session.localIndex)

        // Wrong token: rejected, nothing stored.
        var wrong = try fixture.initiator(.join(try JoinToken(bytes: [UInt8](repeating: 7, count: 16)), replacing: nil))
        let bad = try wrong.start(now: 3, wallClock: Fixture.wallClockBase + 3)
        let sessionsBefore = fixture.responder.liveSessionCount
        let decision = fixture.responder.handleInitiation(bad, from: "x", now: 3)
        #expect(decision.rejection == .invalidJoinToken(client: fixture.client.publicKey))
        #expect(fixture.responder.liveSessionCount == sessionsBefore)
        // The authenticated client learns it must create a new tunnel (the server restarted, say).
        guard case .reject(_, let refusal?) = decision else { Issue.record("no refusal sent"); return }
        #expect(refusal.count == WireLayout.responseSize)
        var tampered = refusal
        tampered[60] ^= 1
        var copy = wrong
        #expect(throws: ProtocolError.handshakeFailed(.decryptionFailed)) { try copy.receive(tampered, now: 3) }
        #expect(throws: ProtocolError.joinRefused) { try wrong.receive(refusal, now: 3) }
        #expect(wrong.nextDeadline == nil && !wrong.isEstablished)

        // Same token, another (authorized) identity: refused.
        let other = IdentityKey.generate()
        _ = fixture.responder.setAuthorizedClients([fixture.clientRecord,
                                                    AuthorizedClient(publicKey: other.publicKey, ipv4: nil, ipv6: nil)])
        var thief = try fixture.initiator(.join(token, replacing: nil), identity: other)
        let stolen = try thief.start(now: 4, wallClock: Fixture.wallClockBase + 4)
        #expect(fixture.responder.handleInitiation(stolen, from: "y", now: 4).rejection == .invalidJoinToken(client: other.publicKey))
    }

    @Test func flippingAnyByteOfTheInitiationIsRejected() throws {
        var fixture = try Fixture()
        var initiator = try fixture.initiator()
        let message = try initiator.start(now: 0, wallClock: Fixture.wallClockBase)
        for index in 0..<200 {  // mac2 (200..<216) is only checked under load, see below
            var tampered = message
            tampered[index] ^= 0x10
            let decision = fixture.responder.handleInitiation(tampered, from: "s\(index)", now: 0)
            #expect(decision.accepted == nil, "byte \(index) flipped was accepted")
        }
        #expect(fixture.responder.liveSessionCount == 0)
        // Under load a flipped mac2 byte earns a challenge, not a session.
        fixture.responder.forceUnderLoad = true
        var tampered = message
        tampered[205] ^= 0x10
        if case .challenge = fixture.responder.handleInitiation(tampered, from: "t", now: 0) {} else {
            Issue.record("flipped mac2 under load was not challenged")
        }
        fixture.responder.forceUnderLoad = false
        #expect(fixture.responder.handleInitiation(message, from: "u", now: 0).accepted != nil)
    }

    @Test func unknownClientIsRejectedWithoutState() throws {
        var fixture = try Fixture()
        let stranger = IdentityKey.generate()
        var initiator = try fixture.initiator(identity: stranger)
        let message = try initiator.start(now: 0, wallClock: Fixture.wallClockBase)
        #expect(fixture.responder.handleInitiation(message, from: "s", now: 0).rejection == .unknownClient(stranger.publicKey))
        #expect(fixture.responder.liveSessionCount == 0)
    }

    @Test func forgedSignatureIsRejected() throws {
        // A payload signed over the wrong handshake hash must fail verification, though it decrypts.
        var fixture = try Fixture()
        let serverStatic = try fixture.server.publicKey.x25519()
        var header: [UInt8] = [1, PROTOCOL_VERSION, 0, 0]
        header.appendLE32(77)
        var noise = try NoiseHandshakeState(protocolName: ProtocolConstants.noiseProtocolName, role: .initiator,
                                            prologue: handshakePrologue(initiationHeader: header[...]), remoteStaticKey: serverStatic)
        let payload = ClientAuthPayload(identity: fixture.client.publicKey, timestamp: 10, request: .create)
        var message = header + (try noise.writeMessage { _ in
            payload.encoded(signedBy: fixture.client, handshakeHash: [UInt8](repeating: 0, count: 64))
        })
        message += HandshakeMACs(serverStaticPublicKey: serverStatic).mac1(message[...])
        message += [UInt8](repeating: 0, count: 16)
        #expect(fixture.responder.handleInitiation(message, from: "s", now: 0).rejection == .invalidSignature(fixture.client.publicKey))
    }

    @Test func wrongVersionGetsClearErrorAndNotice() throws {
        var fixture = try Fixture()
        let serverStatic = try fixture.server.publicKey.x25519()
        var message: [UInt8] = [1, PROTOCOL_VERSION &+ 1, 0, 0, 9, 0, 0, 0] + [UInt8](repeating: 0xAB, count: 176)
        message += HandshakeMACs(serverStaticPublicKey: serverStatic).mac1(message[...]) + [UInt8](repeating: 0, count: 16)
        guard case .reject(let error, let reply) = fixture.responder.handleInitiation(message, from: "s", now: 0) else {
            Issue.record("expected a rejection"); return
        }
        #expect(error == .versionMismatch(local: PROTOCOL_VERSION, remote: PROTOCOL_VERSION &+ 1))
        #expect(error.description.contains("version"))
        let notice = try #require(reply)
        #expect(Demultiplexer.classify(notice) == .versionMismatch(receiverIndex: 9, peerVersion: PROTOCOL_VERSION))

        // The client side reports the notice as a version mismatch when it matches its attempt.
        var initiator = try fixture.initiator()
        let initiation = try initiator.start(now: 0, wallClock: Fixture.wallClockBase)
        var tampered = initiation
        tampered[1] = PROTOCOL_VERSION &+ 1
        // mac1 no longer matches the tampered header: silently dropped (no amplification for forgers).
        #expect(fixture.responder.handleInitiation(tampered, from: "s", now: 0).rejection == .invalidMAC)
        var clientNotice: [UInt8] = [5, 9, 0, 0]
        clientNotice.appendLE32(try #require(initiator.localIndex))
        #expect(throws: ProtocolError.versionMismatch(local: PROTOCOL_VERSION, remote: 9)) {
            try initiator.receive(clientNotice, now: 1)
        }
        // ...and keeps the attempt pending (the notice is unauthenticated).
        #expect(initiator.localIndex != nil)
    }

    @Test func versionInPrologueBreaksHandshakeEvenWithValidMAC() throws {
        // A middlebox rewriting the version byte and recomputing mac1 (it knows the server key) still fails:
        // the header is in the prologue.
        var fixture = try Fixture()
        var initiator = try fixture.initiator()
        var message = try initiator.start(now: 0, wallClock: Fixture.wallClockBase)
        message[2] = 1  // reserved byte: covered by prologue and checked
        message.replaceSubrange(184..<200, with: HandshakeMACs(serverStaticPublicKey: try fixture.server.publicKey.x25519()).mac1(message[..<184]))
        #expect(fixture.responder.handleInitiation(message, from: "s", now: 0).rejection == .malformedMessage(type: 1, length: 216))
        message[2] = 0
        message[4] ^= 1  // sender index
        message.replaceSubrange(184..<200, with: HandshakeMACs(serverStaticPublicKey: try fixture.server.publicKey.x25519()).mac1(message[..<184]))
        #expect(fixture.responder.handleInitiation(message, from: "s", now: 0).rejection == .handshakeFailed(.decryptionFailed))
    }

    @Test func replayedCreateIsRejectedAndDoesNotReplaceTunnel() throws {
        var fixture = try Fixture()
        var initiator = try fixture.initiator()
        let message = try initiator.start(now: 10, wallClock: Fixture.wallClockBase + 10)
        let first = try #require(fixture.responder.handleInitiation(message, from: "s", now: 10).accepted)
        let replay = fixture.responder.handleInitiation(message, from: "s", now: 20)
        #expect(replay.rejection == .replayedInitiation(client: fixture.client.publicKey, timestamp: Fixture.wallClockBase + 10,
                                                        lastAccepted: Fixture.wallClockBase + 10))
        // A restarted client (newer timestamp) replaces the tunnel.
        let again = try fixture.handshake(now: 30)
        #expect(again.server.event == .created(replacedTunnelID: first.tunnel.tunnelID))
        #expect(again.server.tunnel.tunnelID != first.tunnel.tunnelID)
    }

    @Test func wrongServerKeyFailsHandshake() throws {
        var fixture = try Fixture()
        var initiator = try HandshakeInitiator(configuration: InitiatorConfiguration(
            identity: fixture.client, serverPublicKey: IdentityKey.generate().publicKey))
        let message = try initiator.start(now: 0, wallClock: Fixture.wallClockBase)
        #expect(fixture.responder.handleInitiation(message, from: "s", now: 0).rejection == .invalidMAC)
    }

    @Test func tamperedResponseIsRejectedAndAttemptSurvives() throws {
        var fixture = try Fixture()
        var initiator = try fixture.initiator()
        let message = try initiator.start(now: 0, wallClock: Fixture.wallClockBase)
        let accepted = try #require(fixture.responder.handleInitiation(message, from: "s", now: 0).accepted)
        for index in accepted.reply.indices {
            var tampered = accepted.reply
            tampered[index] ^= 0x40
            var copy = initiator
            #expect(throws: ProtocolError.self) { try copy.receive(tampered, now: 1) }
        }
        let done = try initiator.receive(accepted.reply, now: 1)
        #expect(done != nil)
        #expect(initiator.isEstablished)
        #expect(throws: ProtocolError.self) { try initiator.receive(accepted.reply, now: 1) }
    }

    @Test func retransmitsWithBackoffAndJitterThenGivesUp() throws {
        let fixture = try Fixture()
        var initiator = try fixture.initiator()
        let first = try initiator.start(now: 0, wallClock: Fixture.wallClockBase)
        var deadlines: [UInt64] = []
        var previousIndex = initiator.localIndex
        var now: UInt64 = 0
        var retransmissions: [[UInt8]] = []
        while true {
            let deadline = try #require(initiator.nextDeadline)
            let early = try initiator.handleDeadline(now: deadline - 1)
            #expect(early == nil)
            deadlines.append(deadline - now)
            now = deadline
            do {
                guard let again = try initiator.handleDeadline(now: now) else { Issue.record("no retransmission"); return }
                retransmissions.append(again)
                #expect(initiator.localIndex != previousIndex)  // each retry is a fresh handshake
                previousIndex = initiator.localIndex
            } catch {
                #expect(error == .handshakeTimedOut(attempts: initiator.attempts))
                break
            }
        }
        #expect(retransmissions.allSatisfy { $0 != first && $0.count == WireLayout.initiationSize })
        // Timeouts double from 1 s to the 8 s cap, with up to 25 % jitter on top.
        for (attempt, interval) in deadlines.enumerated() {
            let base = min(Fixture.second << UInt64(min(attempt, 16)), 8 * Fixture.second)
            #expect(interval >= base && interval < base + base / 4, "attempt \(attempt): \(interval)")
        }
        #expect(now >= ProtocolConstants.rekeyAttemptTime && now < ProtocolConstants.rekeyAttemptTime + 11 * Fixture.second)
        #expect(initiator.nextDeadline == nil)
    }

    @Test func cookieChallengeUnderLoad() throws {
        var fixture = try Fixture()
        fixture.responder.forceUnderLoad = true
        var initiator = try fixture.initiator()
        let first = try initiator.start(now: 0, wallClock: Fixture.wallClockBase)
        guard case .challenge(let cookieReply) = fixture.responder.handleInitiation(first, from: "1.2.3.4:5", now: 0) else {
            Issue.record("expected a cookie challenge"); return
        }
        #expect(cookieReply.count == WireLayout.cookieReplySize)
        #expect(fixture.responder.liveSessionCount == 0)
        let absorbed = try initiator.receive(cookieReply, now: 1)
        #expect(absorbed == nil)
        let deadline = try #require(initiator.nextDeadline)
        let retry = try #require(try initiator.handleDeadline(now: deadline))
        // The cookie is bound to the source: from elsewhere the retry is challenged again.
        if case .challenge = fixture.responder.handleInitiation(retry, from: "9.9.9.9:9", now: 2) {} else {
            Issue.record("cookie accepted from another source")
        }
        let accepted = try #require(fixture.responder.handleInitiation(retry, from: "1.2.3.4:5", now: 2).accepted)
        let done = try initiator.receive(accepted.reply, now: 3)
        #expect(done != nil)
    }

    @Test func perSourceRateLimitIsBounded() throws {
        var limiter = RateLimiter(perSecond: 20, burst: 5, capacity: 8)
        let allowedInBurst = (0..<10).filter { _ in limiter.allow(1, now: 0) }.count
        #expect(allowedInBurst == 5)
        var allowed = limiter.allow(1, now: 50_000_000)   // 1/20 s later: one more token
        #expect(allowed)
        allowed = limiter.allow(1, now: 50_000_001)
        #expect(!allowed)
        for source in 2...8 {
            allowed = limiter.allow(UInt64(source), now: 0)
            #expect(allowed)
        }
        allowed = limiter.allow(100, now: 50_000_002)        // table full of active sources
        #expect(!allowed)
        #expect(limiter.trackedSources == 8)
        allowed = limiter.allow(100, now: 2 * Fixture.second) // idle entries purged
        #expect(allowed)
        #expect(limiter.trackedSources <= 8)
    }

    @Test func responderRateLimitsOneSource() throws {
        var fixture = try Fixture()
        var results: [ProtocolError?] = []
        for attempt in 0..<8 {
            var initiator = try fixture.initiator()
            let message = try initiator.start(now: UInt64(attempt), wallClock: Fixture.wallClockBase + UInt64(attempt))
            results.append(fixture.responder.handleInitiation(message, from: "flood", now: UInt64(attempt)).rejection)
        }
        #expect(results.prefix(5).allSatisfy { $0 == nil })
        #expect(results.suffix(3).allSatisfy { $0 == .rateLimited })
    }

    @Test func deauthorizingClientRemovesTunnel() throws {
        var fixture = try Fixture()
        let first = try fixture.handshake(now: 0)
        let removed = fixture.responder.setAuthorizedClients([])
        #expect(removed == [first.server.tunnel.tunnelID])
        var joiner = try fixture.initiator(.join(first.client.tunnel.joinToken, replacing: nil))
        let message = try joiner.start(now: 1, wallClock: Fixture.wallClockBase + 1)
        #expect(fixture.responder.handleInitiation(message, from: "s", now: 1).rejection == .unknownClient(fixture.client.publicKey))
    }

    @Test func demultiplexerClassifiesEveryMessage() throws {
        var fixture = try Fixture()
        var initiator = try fixture.initiator()
        let initiation = try initiator.start(now: 0, wallClock: Fixture.wallClockBase)
        #expect(Demultiplexer.classify(initiation) == .handshakeInitiation)
        let accepted = try #require(fixture.responder.handleInitiation(initiation, from: "s", now: 0).accepted)
        #expect(Demultiplexer.classify(accepted.reply) == .handshakeResponse(receiverIndex: try #require(initiator.localIndex)))
        var established = try #require(try initiator.receive(accepted.reply, now: 0))
        let packet = try established.session.seal(.keepalive, now: 0)
        #expect(Demultiplexer.classify(packet) == .transport(receiverIndex: accepted.session.localIndex))
        #expect(Demultiplexer.classify([]) == .invalid)
        #expect(Demultiplexer.classify([4, 0, 0]) == .invalid)
        #expect(Demultiplexer.classify([99] + [UInt8](repeating: 0, count: 100)) == .invalid)
        #expect(Demultiplexer.classify(Array(accepted.reply.dropLast())) == .invalid)
    }
}
