import Testing
import TriglavCore
@testable import TriglavDaemon

/// Uplink1.BehindNAT from the server's endpoint report (`UplinkSnapshot.isTranslated`).
@Suite struct NATDetectionTests {
    static func endpoint(_ text: String) -> IPEndpoint { (try? IPEndpoint(text)) ?? IPEndpoint(address: .v4(0), port: 0) }

    @Test func sameAddressAndPortIsDirect() {
        let seen = Self.endpoint("192.0.2.7:51000")
        #expect(!UplinkSnapshot.isTranslated(seen, local: Self.endpoint("192.0.2.7:51000"), interfaceAddresses: []))
        // A socket bound to its device only reads 0.0.0.0: the interface's addresses decide.
        #expect(!UplinkSnapshot.isTranslated(seen, local: Self.endpoint("0.0.0.0:51000"),
                                             interfaceAddresses: [IPAddress("192.0.2.7")!]))
    }

    @Test func anotherPortOrAddressIsANAT() {
        // Port-translating NAT (or a firewall's source-port rewrite): the port alone tells.
        #expect(UplinkSnapshot.isTranslated(Self.endpoint("192.0.2.7:40000"), local: Self.endpoint("0.0.0.0:51000"),
                                            interfaceAddresses: []))
        // Port-preserving NAT: the address is none of the interface's.
        #expect(UplinkSnapshot.isTranslated(Self.endpoint("203.0.113.7:51000"), local: Self.endpoint("0.0.0.0:51000"),
                                            interfaceAddresses: [IPAddress("10.0.0.5")!, IPAddress("fe80::1")!]))
        #expect(UplinkSnapshot.isTranslated(Self.endpoint("[2001:db8::9]:51000"), local: Self.endpoint("[2001:db8::5]:51000"),
                                            interfaceAddresses: []))
    }

    @Test func nothingToCompareWithIsNotANAT() {
        #expect(!UplinkSnapshot.isTranslated(Self.endpoint("203.0.113.7:51000"), local: nil, interfaceAddresses: []))
        #expect(!UplinkSnapshot.isTranslated(Self.endpoint("203.0.113.7:51000"), local: Self.endpoint("0.0.0.0:51000"),
                                             interfaceAddresses: []))
    }
}
