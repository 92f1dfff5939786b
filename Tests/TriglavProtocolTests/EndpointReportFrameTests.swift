import Testing
import TriglavCore
@testable import TriglavProtocol

/// The endpoint-report frame (9) of PROTOCOL.md §5: family, reserved, port (network order), address (16 bytes,
/// network order).
@Suite struct EndpointReportFrameTests {
    static let endpoints: [IPEndpoint] = [
        IPEndpoint(address: .v4(0xCB00_7107), port: 40312),           // 203.0.113.7
        IPEndpoint(address: .v4(0), port: 1),
        IPEndpoint(address: .v6(high: 0x2001_0db8_0000_0000, low: 0x0000_0000_0000_0001), port: 65535),
    ]

    @Test func bodiesAreExactBytes() {
        let v4 = ControlFrame.endpointReport(EndpointReport(endpoint: Self.endpoints[0])).body
        #expect(v4 == [4, 0, 0x9d, 0x78, 203, 0, 113, 7] + [UInt8](repeating: 0, count: 12))
        let v6 = ControlFrame.endpointReport(EndpointReport(endpoint: Self.endpoints[2])).body
        #expect(v6 == [6, 0, 0xff, 0xff, 0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1])
        #expect(FrameType.endpointReport.rawValue == 9 && FrameType.endpointReport.fixedBodyLength == 20)
    }

    @Test func reportsRoundTripThroughASession() throws {
        var (client, server) = try TransportTests.sessionPair()
        var now: UInt64 = 1
        for endpoint in Self.endpoints {
            now += 1
            let frame = ControlFrame.endpointReport(EndpointReport(endpoint: endpoint))
            let datagram = try server.seal(frame, now: now)
            let (opened, body) = try client.open(datagram, now: now)
            #expect(opened.type == .endpointReport)
            #expect(try ControlFrame.parse(type: opened.type, body: body) == frame)
        }
    }

    @Test func malformedBodiesAreRefused() {
        let valid = ControlFrame.endpointReport(EndpointReport(endpoint: Self.endpoints[0])).body
        var badFamily = valid
        badFamily[0] = 5
        var badReserved = valid
        badReserved[1] = 1
        var v4WithTail = valid
        v4WithTail[19] = 1
        for body in [badFamily, badReserved, v4WithTail, Array(valid.prefix(19)), valid + [0], []] {
            #expect(throws: ProtocolError.malformedFrame(type: .endpointReport, length: body.count)) {
                try ControlFrame.parse(type: .endpointReport, body: body)
            }
        }
    }
}
