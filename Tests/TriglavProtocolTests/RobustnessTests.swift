import Testing
import TriglavCore
import TriglavCrypto
@testable import TriglavProtocol

/// Truncations, limits, load detection and the keyring's state changes.
@Suite struct RobustnessTests {
    @Test func everyTruncationOfEveryMessageIsRejected() throws {
        var fixture = try Fixture()
        var initiator = try fixture.initiator()
        let initiation = try initiator.start(now: 0, wallClock: Fixture.wallClockBase)
        var probeResponder = fixture.responder
        let accepted = try #require(probeResponder.handleInitiation(initiation, from: "s", now: 0).accepted)
        var client = try #require(try initiator.receive(accepted.reply, now: 0))
        var server = accepted.session
        let transport = try client.session.seal(.data, tunnelSequence: 1, body: Array(repeating: 9, count: 100), now: 0)

        for length in 0..<initiation.count {
            var responder = fixture.responder
            #expect(responder.handleInitiation(Array(initiation.prefix(length)), from: "s", now: 0).accepted == nil)
        }
        var pending = try fixture.initiator()
        let pendingInitiation = try pending.start(now: 0, wallClock: Fixture.wallClockBase + 1)
        let reply = try #require(fixture.responder.handleInitiation(pendingInitiation, from: "t", now: 0).accepted).reply
        for length in 0..<reply.count {
            var copy = pending
            #expect(throws: ProtocolError.self) { try copy.receive(Array(reply.prefix(length)), now: 0) }
        }
        for length in 0..<transport.count {
            var copy = server
            #expect(throws: ProtocolError.self) { try copy.open(Array(transport.prefix(length)), now: 0) }
        }
        // Extra trailing bytes are rejected too (exact sizes, authenticated lengths).
        var responder = fixture.responder
        #expect(responder.handleInitiation(initiation + [0], from: "s", now: 0).accepted == nil)
        var copy = pending
        #expect(throws: ProtocolError.malformedMessage(type: 2, length: reply.count + 1)) { try copy.receive(reply + [0], now: 0) }
        #expect(throws: ProtocolError.authenticationFailed) { try server.open(transport + [0], now: 0) }
        _ = try server.open(transport, now: 0)
    }

    @Test func measuredLoadTriggersCookies() throws {
        var configuration = ResponderConfiguration()
        configuration.loadThreshold = 3
        configuration.perSourceBurst = 100
        var fixture = try Fixture(configuration: configuration)
        var challenged = 0, accepted = 0
        for attempt in 0..<6 {
            var initiator = try fixture.initiator()
            let message = try initiator.start(now: UInt64(attempt), wallClock: Fixture.wallClockBase + UInt64(attempt))
            switch fixture.responder.handleInitiation(message, from: "src\(attempt)", now: UInt64(attempt)) {
            case .accept: accepted += 1
            case .challenge: challenged += 1
            case .reject(let error, _): Issue.record("unexpected rejection \(error)")
            }
        }
        #expect(accepted == 3 && challenged == 3)
        #expect(fixture.responder.isUnderLoad(now: 10))
        // Two quiet seconds later the load has passed.
        #expect(!fixture.responder.isUnderLoad(now: 3 * Fixture.second))
    }

    @Test func cookieIsBoundToItsAttemptAndReused() throws {
        var fixture = try Fixture()
        fixture.responder.forceUnderLoad = true
        var initiator = try fixture.initiator()
        let first = try initiator.start(now: 0, wallClock: Fixture.wallClockBase)
        guard case .challenge(let cookieReply) = fixture.responder.handleInitiation(first, from: "a", now: 0) else {
            Issue.record("expected a challenge"); return
        }
        _ = try initiator.receive(cookieReply, now: 0)
        // A cookie reply for another attempt (wrong mac1 as associated data) is refused.
        var other = try fixture.initiator()
        _ = try other.start(now: 0, wallClock: Fixture.wallClockBase)
        var forged = cookieReply
        forged.replaceSubrange(4..<8, with: try #require(other.localIndex).littleEndianBytes)
        #expect(throws: ProtocolError.authenticationFailed) { try other.receive(forged, now: 0) }
        // Every retry of the attempt carries mac2 (a cookie outlives the 90 s attempt time).
        #expect(ProtocolConstants.cookieUsableFor > ProtocolConstants.rekeyAttemptTime)
        while let deadline = initiator.nextDeadline, deadline < ProtocolConstants.rekeyAttemptTime {
            let retry = try #require(try initiator.handleDeadline(now: deadline))
            #expect(retry.suffix(16) != [UInt8](repeating: 0, count: 16))
        }
    }

    @Test func sessionsPerTunnelAreBounded() throws {
        var configuration = ResponderConfiguration()
        configuration.perSourceBurst = 1000
        var fixture = try Fixture(configuration: configuration)
        let first = try fixture.handshake(now: 0)
        let token = first.client.tunnel.joinToken
        for _ in 1..<ProtocolConstants.maxSessionsPerTunnel { _ = try fixture.handshake(.join(token, replacing: nil), now: 1) }
        var extra = try fixture.initiator(.join(token, replacing: nil))
        let message = try extra.start(now: 2, wallClock: Fixture.wallClockBase + 2)
        #expect(fixture.responder.handleInitiation(message, from: "s", now: 2).rejection
                == .tooManySessions(tunnelID: first.server.tunnel.tunnelID))
        // A rekey (naming a session it replaces) is still admitted, and expired sessions free their slots.
        var rekey = try fixture.initiator(.join(token, replacing: first.server.session.localIndex))
        let rekeyMessage = try rekey.start(now: 3, wallClock: Fixture.wallClockBase + 3)
        let accepted = try #require(fixture.responder.handleInitiation(rekeyMessage, from: "s", now: 3).accepted)
        #expect(accepted.replacesSessionIndex == first.server.session.localIndex)
        let later = ProtocolConstants.rejectAfterTime + 10
        _ = try fixture.handshake(.join(token, replacing: nil), now: later)
        #expect(fixture.responder.liveSessionCount == 1)
    }

    @Test func replacedIndexOfAnotherTunnelIsIgnored() throws {
        var fixture = try Fixture()
        let other = IdentityKey.generate()
        _ = fixture.responder.setAuthorizedClients([fixture.clientRecord, AuthorizedClient(publicKey: other.publicKey, ipv4: nil, ipv6: nil)])
        var otherInitiator = try fixture.initiator(identity: other)
        let otherMessage = try otherInitiator.start(now: 0, wallClock: Fixture.wallClockBase)
        let otherSession = try #require(fixture.responder.handleInitiation(otherMessage, from: "o", now: 0).accepted).session
        let mine = try fixture.handshake(now: 1)
        let join = try fixture.handshake(.join(mine.client.tunnel.joinToken, replacing: otherSession.localIndex), now: 2)
        #expect(join.server.replacesSessionIndex == nil)
    }

    @Test func keyringPromotesPendingOnlyWhenConfirmed() throws {
        var fixture = try Fixture()
        let first = try fixture.handshake(now: 0)
        var serverRing = UplinkKeyring()
        serverRing.install(first.server.session)
        #expect(serverRing.current?.localIndex == first.server.session.localIndex)  // nothing better yet
        let second = try fixture.handshake(.join(first.client.tunnel.joinToken, replacing: first.server.session.localIndex), now: 1)
        serverRing.install(second.server.session)
        #expect(serverRing.pending?.localIndex == second.server.session.localIndex)
        #expect(Set(serverRing.localIndices) == [first.server.session.localIndex, second.server.session.localIndex])
        // A forged packet for the pending index doesn't promote it.
        var garbage = [UInt8](repeating: 0, count: 60)
        garbage[0] = 4
        garbage.replaceSubrange(4..<8, with: second.server.session.localIndex.littleEndianBytes)
        garbage.withUnsafeMutableBytes { raw in
            #expect(throws: ProtocolError.authenticationFailed) { try serverRing.open(raw, now: 2) }
        }
        #expect(serverRing.pending != nil)
        // The client's first packet on the new session promotes it.
        var clientSession = second.client.session
        var keepalive = try clientSession.seal(.keepalive, now: 2)
        _ = try keepalive.withUnsafeMutableBytes { raw in
            try Result { () throws(ProtocolError) in try serverRing.open(raw, now: 2) }.get()
        }
        #expect(serverRing.current?.localIndex == second.server.session.localIndex)
        #expect(serverRing.previous?.localIndex == first.server.session.localIndex)
        #expect(serverRing.pending == nil)
        let expired = serverRing.removeExpired(now: ProtocolConstants.rejectAfterTime + 1)
        #expect(Set(expired) == [first.server.session.localIndex, second.server.session.localIndex])
        #expect(serverRing.localIndices.isEmpty)
    }
}

extension UInt32 {
    var littleEndianBytes: [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: self >> (8 * $0)) } }
}
