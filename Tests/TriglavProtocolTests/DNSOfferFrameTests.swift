import Testing
import TriglavCore
@testable import TriglavProtocol

/// The DNS-offer frame (12) of PROTOCOL.md §5.4: counts, flags, servers as family + 16 bytes, length-prefixed domains.
@Suite struct DNSOfferFrameTests {
    static let v4Server = IPAddress.v4(0x0A4D_0001)                                       // 10.77.0.1
    static let v6Server = IPAddress.v6(high: 0xfd77_0000_0000_0000, low: 1)              // fd77::1

    static func offer(_ servers: [IPAddress] = [v4Server], domains: [String] = [], defaultRoute: Bool? = nil) throws -> DNSOffer {
        try #require(DNSOffer(servers: servers, domains: domains, defaultRoute: defaultRoute))
    }

    @Test func bodiesAreExactBytes() throws {
        let body = ControlFrame.dnsOffer(try Self.offer([Self.v4Server, Self.v6Server], domains: ["corp.example", "~."],
                                                        defaultRoute: true)).body
        let expected: [UInt8] = [2, 2, 0b11, 0]
            + [4, 10, 77, 0, 1] + [UInt8](repeating: 0, count: 12)
            + [6, 0xfd, 0x77] + [UInt8](repeating: 0, count: 13) + [1]
            + [12] + Array("corp.example".utf8) + [2] + Array("~.".utf8)
        #expect(body == expected)
        #expect(ControlFrame.dnsOffer(try Self.offer(defaultRoute: false)).body.prefix(4) == [1, 0, 0b01, 0])
        #expect(ControlFrame.dnsOffer(try Self.offer()).body.prefix(4) == [1, 0, 0, 0])
        #expect(FrameType.dnsOffer.rawValue == 12 && FrameType.dnsOffer.fixedBodyLength == nil)
    }

    @Test func offersRoundTripThroughASession() throws {
        var (client, server) = try TransportTests.sessionPair()
        let offers = [try Self.offer(), try Self.offer([Self.v6Server, Self.v4Server], domains: ["~lab.example", "a"], defaultRoute: false),
                      try Self.offer(domains: [String](repeating: "x", count: DNSOffer.maximumDomains), defaultRoute: true)]
        for (step, offer) in offers.enumerated() {
            let datagram = try server.seal(ControlFrame.dnsOffer(offer), now: UInt64(step + 1))
            let (opened, body) = try client.open(datagram, now: UInt64(step + 1))
            #expect(opened.type == .dnsOffer)
            #expect(try ControlFrame.parse(type: opened.type, body: body) == .dnsOffer(offer))
        }
    }

    @Test func offersThatCannotGoOnTheWireAreNotMade() {
        let tooManyServers = [IPAddress](repeating: Self.v4Server, count: DNSOffer.maximumServers + 1)
        let long = String(repeating: "a", count: DNSOffer.maximumDomainLength)
        #expect(DNSOffer(servers: []) == nil)
        #expect(DNSOffer(servers: tooManyServers) == nil)
        #expect(DNSOffer(servers: [Self.v4Server], domains: [""]) == nil)
        #expect(DNSOffer(servers: [Self.v4Server], domains: [long + "a"]) == nil)
        #expect(DNSOffer(servers: [Self.v4Server], domains: ["bad name"]) == nil)
        #expect(DNSOffer(servers: [Self.v4Server], domains: ["corp~example"]) == nil)
        #expect(DNSOffer(servers: [Self.v4Server], domains: [long, long, long, long]) == nil)  // over 1024 bytes
        #expect(DNSOffer(servers: [Self.v4Server], domains: [long, long, long]) != nil)
    }

    @Test func malformedBodiesAreRefused() throws {
        let valid = ControlFrame.dnsOffer(try Self.offer(domains: ["corp.example"])).body
        func changed(_ index: Int, to value: UInt8) -> [UInt8] {
            var body = valid
            body[index] = value
            return body
        }
        let bodies: [[UInt8]] = [
            [], Array(valid.prefix(3)), Array(valid.dropLast()), valid + [0],
            changed(0, to: 0), changed(0, to: 2), changed(1, to: 0), changed(1, to: 2),
            changed(2, to: 0b10), changed(2, to: 0b100), changed(3, to: 1),
            changed(4, to: 5), changed(9, to: 1),                 // family; an IPv4 address with bytes past its 4
            changed(21, to: 0), changed(21, to: 13), changed(22, to: UInt8(ascii: " ")),
            [UInt8](repeating: 0, count: DNSOffer.maximumBodyLength + 1),
        ]
        for body in bodies {
            #expect(throws: ProtocolError.malformedFrame(type: .dnsOffer, length: body.count)) {
                try ControlFrame.parse(type: .dnsOffer, body: body)
            }
        }
    }

    @Test func randomBodiesNeverTrapAndWhatParsesSerialisesBack() throws {
        var generator = SystemRandomNumberGenerator()
        let valid = ControlFrame.dnsOffer(try Self.offer(domains: ["corp.example"])).body
        for _ in 0..<5000 {
            var body = valid
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                body[Int.random(in: 0..<body.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            if Bool.random(using: &generator) { body = Array(body.prefix(Int.random(in: 0...body.count, using: &generator))) }
            if case .dnsOffer(let offer)? = try? ControlFrame.parse(type: .dnsOffer, body: body) {
                #expect(ControlFrame.dnsOffer(offer).body == body)
            }
        }
    }
}
