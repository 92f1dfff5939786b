import Testing
@testable import TriglavCore

@Suite struct ConstantsTests {
    @Test func maxPayloadFollowsFromOverhead() {
        #expect(MAX_PAYLOAD == 1500 - 40 - 8 - 40)
        #expect(WireOverhead.protocolOverhead == 40)
        #expect(DEFAULT_PORT == 7443)
    }
}

@Suite struct IPAddressTests {
    @Test(arguments: [
        ("10.77.0.1", "10.77.0.1"), ("0.0.0.0", "0.0.0.0"), ("255.255.255.255", "255.255.255.255"),
        ("::", "::"), ("::1", "::1"), ("2001:db8::1", "2001:db8::1"), ("2001:0db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("fe80::1:2:3:4", "fe80::1:2:3:4"), ("::ffff:192.0.2.1", "::ffff:c000:201"), ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
    ])
    func parsesAndPrints(text: String, canonical: String) throws {
        let address = try #require(IPAddress(text))
        #expect(address.description == canonical)
        #expect(IPAddress(bytes: address.bytes) == address)
    }

    @Test(arguments: ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.-4", ":::", "1::2::3", "12345::",
                      "1:2:3:4:5:6:7:8:9", "g::1", "1.2.3.4/24", " 1.2.3.4", "::1%eth0"])
    func rejectsGarbage(text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test func prefixContainment() throws {
        let prefix = try IPPrefix("10.77.0.0/16")
        #expect(prefix.contains(try #require(IPAddress("10.77.200.1"))))
        #expect(!prefix.contains(try #require(IPAddress("10.78.0.1"))))
        #expect(!prefix.contains(try #require(IPAddress("::1"))))
        #expect(try IPPrefix("fd00::1").length == 128)
        #expect(throws: TriglavCoreError.self) { try IPPrefix("10.0.0.0/33") }
        #expect(throws: TriglavCoreError.self) { try IPPrefix("10.0.0.0/x") }
    }

    @Test func endpoints() throws {
        #expect(try IPEndpoint("192.0.2.1:51820").port == 51820)
        #expect(try IPEndpoint("192.0.2.1").port == DEFAULT_PORT)
        #expect(try IPEndpoint("[2001:db8::1]:9").description == "[2001:db8::1]:9")
        #expect(throws: TriglavCoreError.self) { try IPEndpoint("192.0.2.1:0") }
        #expect(throws: TriglavCoreError.self) { try IPEndpoint("[10.0.0.1]:80") }
        #expect(throws: TriglavCoreError.self) { try IPEndpoint("192.0.2.1:70000") }
        #expect(throws: TriglavCoreError.self) { try IPEndpoint("example.com:80") }
    }

    @Test func interfaceNames() throws {
        #expect(try InterfaceName("wlan0").rawValue == "wlan0")
        #expect(throws: TriglavCoreError.self) { try InterfaceName("") }
        #expect(throws: TriglavCoreError.self) { try InterfaceName("a-name-that-is-too-long") }
        #expect(throws: TriglavCoreError.self) { try InterfaceName("eth/0") }
        #expect(throws: TriglavCoreError.self) { try InterfaceName("eth 0") }
    }
}
