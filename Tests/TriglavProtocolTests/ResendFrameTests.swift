import Testing
import TriglavCore
@testable import TriglavProtocol

/// The resend-request (7) and resend-declined (8) frames of PROTOCOL.md §5.2: first sequence (LE32), count (LE32),
/// count 1…`maxResendRun`.
@Suite struct ResendFrameTests {
    static let runs: [ResendRun] = [
        ResendRun(firstSequence: 0, count: 1),
        ResendRun(firstSequence: 0x0102_0304, count: 17),
        ResendRun(firstSequence: .max, count: ProtocolConstants.maxResendRun),  // wraps past 2^32: allowed
    ]

    @Test func bodiesAreExactBytes() {
        let run = ResendRun(firstSequence: 0x0403_0201, count: 0x0100)
        #expect(ControlFrame.resendRequest(run).body == [0x01, 0x02, 0x03, 0x04, 0x00, 0x01, 0x00, 0x00])
        #expect(ControlFrame.resendDeclined(run).body == [0x01, 0x02, 0x03, 0x04, 0x00, 0x01, 0x00, 0x00])
        #expect(FrameType.resendRequest.rawValue == 7 && FrameType.resendDeclined.rawValue == 8)
        #expect(FrameType.resendRequest.fixedBodyLength == 8 && FrameType.resendDeclined.fixedBodyLength == 8)
    }

    @Test func bothFramesRoundTripThroughASession() throws {
        var (client, server) = try TransportTests.sessionPair()
        var now: UInt64 = 1
        for run in Self.runs {
            for frame in [ControlFrame.resendRequest(run), .resendDeclined(run)] {
                now += 1
                let datagram = try client.seal(frame, now: now)
                let (opened, body) = try server.open(datagram, now: now)
                #expect(opened.type == frame.frameType)
                #expect(try ControlFrame.parse(type: opened.type, body: body) == frame)
                // And the other way: the server asks the client too.
                let back = try server.seal(frame, now: now)
                let (openedBack, bodyBack) = try client.open(back, now: now)
                #expect(try ControlFrame.parse(type: openedBack.type, body: bodyBack) == frame)
            }
        }
    }

    @Test func absurdCountsAreRefusedWithTheirValue() {
        for count: UInt32 in [0, ProtocolConstants.maxResendRun + 1, 65_536, .max] {
            var body = [UInt8](repeating: 0, count: 8)
            for index in 0..<4 { body[4 + index] = UInt8(truncatingIfNeeded: count >> UInt32(8 * index)) }
            for type in [FrameType.resendRequest, .resendDeclined] {
                #expect(throws: ProtocolError.resendRunOutOfRange(type: type, count: count)) {
                    try ControlFrame.parse(type: type, body: body)
                }
            }
        }
        #expect(ProtocolError.resendRunOutOfRange(type: .resendRequest, count: 0).description.contains("1 to 256"))
    }

    @Test func wrongSizesAreMalformed() {
        for size in [0, 1, 4, 7, 9, 16] {
            for type in [FrameType.resendRequest, .resendDeclined] {
                #expect(throws: ProtocolError.malformedFrame(type: type, length: size)) {
                    try ControlFrame.parse(type: type, body: [UInt8](repeating: 1, count: size))
                }
            }
        }
    }

    @Test func serializingClampsTheCountToWhatAPeerAccepts() throws {
        let zero = ControlFrame.resendRequest(ResendRun(firstSequence: 5, count: 0))
        #expect(try ControlFrame.parse(type: .resendRequest, body: zero.body) == .resendRequest(ResendRun(firstSequence: 5, count: 1)))
        let huge = ControlFrame.resendDeclined(ResendRun(firstSequence: 5, count: 100_000))
        #expect(try ControlFrame.parse(type: .resendDeclined, body: huge.body)
            == .resendDeclined(ResendRun(firstSequence: 5, count: ProtocolConstants.maxResendRun)))
    }

    /// Any 8 bytes parse to a valid run or a typed error; nothing traps.
    @Test func arbitraryBodiesNeverTrap() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let body = (0..<8).map { _ in UInt8.random(in: 0...255, using: &generator) }
            do {
                guard case .resendRequest(let run) = try ControlFrame.parse(type: .resendRequest, body: body) else {
                    Issue.record("wrong frame"); continue
                }
                #expect(run.isValid)
            } catch {
                guard case .resendRunOutOfRange = error else { Issue.record("unexpected \(error)"); continue }
            }
        }
    }
}
