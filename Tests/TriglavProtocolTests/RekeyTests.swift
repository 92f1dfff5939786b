import Testing
import TriglavCore
import TriglavCrypto
@testable import TriglavProtocol

@Suite struct RekeyTests {
    struct InFlight { let deliverAt: UInt64; let bytes: [UInt8] }

    /// Both directions send a data packet every 10 ms for 400 virtual seconds with 30 ms of one-way
    /// delay; the client rekeys whenever its session says so. Every packet must arrive exactly once.
    @Test func rekeyUnderContinuousTrafficLosesNothing() throws {
        var fixture = try Fixture()
        let millisecond: UInt64 = 1_000_000
        let (firstClient, firstServer) = try fixture.handshake(now: 0)
        var clientRing = UplinkKeyring(), serverRing = UplinkKeyring()
        clientRing.install(firstClient.session)
        serverRing.install(firstServer.session)
        let token = firstClient.tunnel.joinToken

        var upstream: [InFlight] = [], downstream: [InFlight] = []
        var receivedUp: [UInt32] = [], receivedDown: [UInt32] = []
        var sequence: UInt32 = 0
        var rekeys = 0
        var replacedIndicesMatched = 0
        var buffer = [UInt8](repeating: 0, count: 256)
        let steps = 40_000
        for step in 0..<steps {
            let now = UInt64(step) * 10 * millisecond + 1
            // Client rekeys when due: a join handshake that names the session it replaces.
            if let current = clientRing.current, current.isRekeyDue(now: now) {
                do {
                    var initiator = try fixture.initiator(.join(token, replacing: current.remoteIndex))
                    let message = try initiator.start(now: now, wallClock: Fixture.wallClockBase + now)
                    let accepted = try #require(fixture.responder.handleInitiation(message, from: "uplink", now: now).accepted)
                    if accepted.replacesSessionIndex == current.remoteIndex { replacedIndicesMatched += 1 }
                    #expect(accepted.event == .joined)
                    serverRing.install(accepted.session)
                    let established = try #require(try initiator.receive(accepted.reply, now: now))
                    clientRing.install(established.session)
                    rekeys += 1
                }
            }
            // Send one packet each way.
            let body: [UInt8] = [UInt8(truncatingIfNeeded: sequence), 0x45, 0, 0]
            buffer.replaceSubrange(WireLayout.bodyOffset..<(WireLayout.bodyOffset + body.count), with: body)
            let upLength = try buffer.withUnsafeMutableBytes { raw in
                try Result { () throws(ProtocolError) in
                    try clientRing.seal(.data, tunnelSequence: sequence, bodyLength: body.count, in: raw, now: now)
                }.get()
            }
            upstream.append(InFlight(deliverAt: now + 30 * millisecond, bytes: Array(buffer[0..<upLength])))
            buffer.replaceSubrange(WireLayout.bodyOffset..<(WireLayout.bodyOffset + body.count), with: body)
            let downLength = try buffer.withUnsafeMutableBytes { raw in
                try Result { () throws(ProtocolError) in
                    try serverRing.seal(.data, tunnelSequence: sequence, bodyLength: body.count, in: raw, now: now)
                }.get()
            }
            downstream.append(InFlight(deliverAt: now + 30 * millisecond, bytes: Array(buffer[0..<downLength])))
            sequence += 1
            // Deliver what has arrived.
            while let packet = upstream.first, packet.deliverAt <= now {
                upstream.removeFirst()
                var bytes = packet.bytes
                let frame = try bytes.withUnsafeMutableBytes { raw in
                    try Result { () throws(ProtocolError) in try serverRing.open(raw, now: now) }.get()
                }
                receivedUp.append(frame.tunnelSequence)
            }
            while let packet = downstream.first, packet.deliverAt <= now {
                downstream.removeFirst()
                var bytes = packet.bytes
                let frame = try bytes.withUnsafeMutableBytes { raw in
                    try Result { () throws(ProtocolError) in try clientRing.open(raw, now: now) }.get()
                }
                receivedDown.append(frame.tunnelSequence)
            }
            for index in serverRing.removeExpired(now: now) { fixture.responder.sessionEnded(localIndex: index) }
            _ = clientRing.removeExpired(now: now)
        }
        let expected = Array(0..<(sequence - 3))  // the last 3 are still in flight
        #expect(receivedUp == expected)
        #expect(receivedDown == expected)
        #expect(rekeys == 3)  // at 120 s, 240 s and 360 s
        #expect(replacedIndicesMatched == rekeys)
        #expect(serverRing.current?.localIndex != firstServer.session.localIndex)
        #expect(fixture.responder.liveSessionCount <= 2)
    }
}
