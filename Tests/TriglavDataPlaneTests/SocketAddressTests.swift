#if canImport(Glibc)
import Glibc
#endif
import Testing
import TriglavCore
@testable import TriglavDataPlane

/// `SocketAddress.isSame`: the server's test for a session whose UDP source moved (NAT rebinding).
@Suite struct SocketAddressTests {
    static func storage(_ text: String) throws -> (sockaddr_storage, socklen_t) {
        var storage = sockaddr_storage()
        let length = SocketAddress.write(try IPEndpoint(text), into: &storage)
        return (storage, length)
    }

    @Test func sameEndpointIsSameAndAnyChangeIsNot() throws {
        let (a, aLength) = try Self.storage("10.202.1.2:40017")
        let (b, bLength) = try Self.storage("10.202.1.2:40017")
        #expect(SocketAddress.isSame(a, length: aLength, as: b, length: bLength))
        for moved in ["10.202.1.2:41001", "10.202.1.3:40017", "[2001:db8::1]:40017"] {
            let (c, cLength) = try Self.storage(moved)
            #expect(!SocketAddress.isSame(a, length: aLength, as: c, length: cLength), "\(moved)")
        }
        let (v6, v6Length) = try Self.storage("[2001:db8::1]:40017")
        let (v6Port, v6PortLength) = try Self.storage("[2001:db8::1]:40018")
        #expect(!SocketAddress.isSame(v6, length: v6Length, as: v6Port, length: v6PortLength))
        #expect(SocketAddress.isSame(v6, length: v6Length, as: v6, length: v6Length))
    }
}
