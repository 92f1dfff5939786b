import Testing
@testable import TriglavCore

/// Edge cases of the core value types (item 4 of the foundation issue) beyond CoreTests.swift.
@Suite struct CoreValueTypeTests {
    @Test func overheadIsTheSumOfItsParts() {
        #expect(WireOverhead.total == WireOverhead.outerIPv6Header + WireOverhead.udpHeader
            + WireOverhead.transportHeader + WireOverhead.aeadTag + WireOverhead.innerHeader)
        #expect(MAX_PAYLOAD == MAX_MTU - WireOverhead.total)
        // An inner IPv6 packet of the minimum link MTU must always fit.
        #expect(MAX_PAYLOAD >= 1280)
        #expect(PROTOCOL_VERSION >= 1)
        #expect(VERSION.split(separator: ".").count == 3)
    }

    @Test(arguments: [
        ("0:0:0:0:0:0:0:0", "::"), ("1:0:0:2:0:0:0:3", "1:0:0:2::3"), ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"), ("FD77::A", "fd77::a"), ("::0.0.0.1", "::1"),
        ("1::", "1::"), ("0:0:1::", "0:0:1::"),
    ])
    func ipv6PrintsInRFC5952Form(text: String, canonical: String) throws {
        #expect(try #require(IPAddress(text)).description == canonical)
    }

    @Test func addressFromBytes() {
        #expect(IPAddress(bytes: [192, 0, 2, 1])?.description == "192.0.2.1")
        #expect(IPAddress(bytes: [UInt8](repeating: 0, count: 15) + [1])?.description == "::1")
        #expect(IPAddress(bytes: [1, 2, 3]) == nil)
        #expect(IPAddress(bytes: [UInt8](repeating: 0, count: 5)) == nil)
        #expect(IPAddress("10.0.0.1")?.bitWidth == 32 && IPAddress("::")?.bitWidth == 128)
    }

    @Test func ipv6PrefixContainment() throws {
        let prefix = try IPPrefix("fd77::1/64")
        #expect(prefix.contains(try #require(IPAddress("fd77::ffff:1"))))
        #expect(!prefix.contains(try #require(IPAddress("fd77:0:0:1::1"))))
        #expect(!prefix.contains(try #require(IPAddress("10.0.0.1"))))
        #expect(try IPPrefix("0.0.0.0/0").contains(try #require(IPAddress("203.0.113.9"))))
        #expect(try IPPrefix("::/0").contains(try #require(IPAddress("2001:db8::1"))))
        #expect(try IPPrefix("10.0.0.7/29").contains(try #require(IPAddress("10.0.0.1"))))
        #expect(!(try IPPrefix("10.0.0.7/29").contains(try #require(IPAddress("10.0.0.8")))))
        #expect(throws: TriglavCoreError.self) { try IPPrefix("fd77::/129") }
        #expect(throws: TriglavCoreError.self) { try IPPrefix("10.0.0.0/8/8") }
        #expect(throws: TriglavCoreError.self) { try IPPrefix("10.0.0.0/-1") }
        #expect(throws: TriglavCoreError.self) { try IPPrefix("/8") }
    }

    @Test(arguments: [
        ("[::1]", "[::1]:7443"), ("::1", "[::1]:7443"), ("[fe80::1]:1", "[fe80::1]:1"), ("0.0.0.0:65535", "0.0.0.0:65535"),
    ])
    func endpointForms(text: String, canonical: String) throws {
        #expect(try IPEndpoint(text).description == canonical)
    }

    @Test(arguments: ["[::1]:", "[::1]7443", "[::1:7443", "1.2.3.4:", ":80", "1.2.3.4:http", "[::1]:65536"])
    func endpointGarbage(text: String) {
        #expect(throws: TriglavCoreError.self) { try IPEndpoint(text) }
    }

    @Test func interfaceNameLimits() throws {
        #expect(try InterfaceName(String(repeating: "a", count: 15)).rawValue.count == 15)
        #expect(throws: TriglavCoreError.self) { try InterfaceName(String(repeating: "a", count: 16)) }
        for bad in [".", "..", "eth0:1", "eth\t0", "eth\u{7f}"] {
            #expect(throws: TriglavCoreError.self) { try InterfaceName(bad) }
        }
        #expect(try InterfaceName("a") < InterfaceName("b"))
    }

    @Test func errorMessagesSayWhatWasWrongAndShowAnExample() {
        #expect(TriglavCoreError.invalidPrefix("x", reason: "r").description
            == "invalid address prefix 'x': r (example: 10.77.0.2/24 or fd77::2/64)")
        #expect(TriglavCoreError.invalidEndpoint("y", reason: "r").description.contains("203.0.113.5:7443"))
        #expect(TriglavCoreError.invalidInterfaceName("z", reason: "r").description == "invalid interface name 'z': r")
    }

    @Test func uplinkIDsOrderAndPrint() {
        #expect(UplinkID(1) < UplinkID(2))
        #expect(UplinkID(7).description == "uplink#7")
        #expect(Set([UplinkID(3), UplinkID(3)]).count == 1)
    }
}
