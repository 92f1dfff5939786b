import Testing
import TriglavCore
import TriglavCrypto
import TriglavMultipath
import TriglavProtocol
@testable import TriglavDataPlane

/// The server accepts a client's inner packets only from the addresses it assigned to that client
/// (`ServerState.isSourceAllowed`, applied to every data frame by the server's network pump); anything else,
/// including what isn't IPv4 or IPv6 at all, is dropped. The namespace test `DataPlaneRobustnessTests`
/// checks the same end to end.
@Suite("server anti-spoofing")
struct AntiSpoofingTests {
    let state: ServerState
    let dualStack: ServerClientTunnel
    let ipv4Only: ServerClientTunnel

    init() throws {
        state = ServerState(responder: HandshakeResponder(identity: IdentityKey.generate(), authorizedClients: []))
        let engine = try MultipathEngine<Int>(configuration: ClientTunnelConfiguration.defaultMultipath)
        let key = IdentityKey.generate().publicKey
        dualStack = ServerClientTunnel(tunnelID: 1, key: key, addresses: TunnelAddresses(ipv4: try IPPrefix("10.77.0.2/24"),
                                                                                       ipv6: try IPPrefix("fd77::2/64")), engine: engine)
        ipv4Only = ServerClientTunnel(tunnelID: 2, key: key, addresses: TunnelAddresses(ipv4: try IPPrefix("10.77.0.3/24")), engine: engine)
    }

    /// A minimal IPv4 header (20 bytes) from `source`.
    static func ipv4Packet(from source: String) throws -> [UInt8] {
        guard case .v4(let address)? = IPAddress(source) else { throw TriglavCoreError.invalidPrefix(source, reason: "not an address of the family") }
        var packet = [UInt8](repeating: 0, count: 28)
        packet[0] = 0x45
        packet[12] = UInt8(address >> 24); packet[13] = UInt8((address >> 16) & 0xff)
        packet[14] = UInt8((address >> 8) & 0xff); packet[15] = UInt8(address & 0xff)
        return packet
    }

    /// A minimal IPv6 header (40 bytes) from `source`.
    static func ipv6Packet(from source: String) throws -> [UInt8] {
        guard case .v6(let high, let low)? = IPAddress(source) else { throw TriglavCoreError.invalidPrefix(source, reason: "not an address of the family") }
        var packet = [UInt8](repeating: 0, count: 48)
        packet[0] = 0x60
        for index in 0..<8 {
            packet[8 + index] = UInt8((high >> (56 - 8 * UInt64(index))) & 0xff)
            packet[16 + index] = UInt8((low >> (56 - 8 * UInt64(index))) & 0xff)
        }
        return packet
    }

    func allowed(_ packet: [UInt8], _ tunnel: ServerClientTunnel) -> Bool {
        packet.withUnsafeBytes { state.isSourceAllowed($0, addresses: tunnel.addresses) }
    }

    @Test("IPv4: only the client's own address passes")
    func ipv4() throws {
        #expect(allowed(try Self.ipv4Packet(from: "10.77.0.2"), dualStack))
        #expect(!allowed(try Self.ipv4Packet(from: "10.77.0.3"), dualStack), "another client's address")
        #expect(!allowed(try Self.ipv4Packet(from: "10.77.0.99"), dualStack), "an unassigned address in the subnet")
        #expect(!allowed(try Self.ipv4Packet(from: "192.0.2.1"), dualStack), "an address outside the subnet")
        #expect(allowed(try Self.ipv4Packet(from: "10.77.0.3"), ipv4Only))
    }

    @Test("IPv6: only the client's own address passes; a client without IPv6 sends none")
    func ipv6() throws {
        #expect(allowed(try Self.ipv6Packet(from: "fd77::2"), dualStack))
        #expect(!allowed(try Self.ipv6Packet(from: "fd77::3"), dualStack))
        #expect(!allowed(try Self.ipv6Packet(from: "fe80::2"), dualStack), "link-local is not assigned")
        #expect(!allowed(try Self.ipv6Packet(from: "fd77::2"), ipv4Only))
        #expect(!allowed(try Self.ipv6Packet(from: "::"), ipv4Only))
    }

    @Test("an IPv6-only client: its IPv6 address passes, no IPv4 source does (0.0.0.0 included)")
    func ipv6Only() throws {
        let ipv6Only = ServerClientTunnel(tunnelID: 3, key: dualStack.key, addresses: TunnelAddresses(ipv6: try IPPrefix("fd77::4/64")),
                                          engine: dualStack.engine)
        #expect(allowed(try Self.ipv6Packet(from: "fd77::4"), ipv6Only))
        #expect(!allowed(try Self.ipv6Packet(from: "fd77::2"), ipv6Only))
        #expect(!allowed(try Self.ipv4Packet(from: "10.77.0.4"), ipv6Only))
        #expect(!allowed(try Self.ipv4Packet(from: "0.0.0.0"), ipv6Only))
        // The server's lookup by destination finds it by its IPv6 address only.
        var state = ServerState(responder: HandshakeResponder(identity: IdentityKey.generate(), authorizedClients: []))
        state.addTunnel(ipv6Only)
        let address = try #require(IPAddress("fd77::4"))
        #expect(state.byIPv4.isEmpty && state.byIPv6[address] == 3)
        state.removeTunnel(3)
        #expect(state.byIPv6.isEmpty)
    }

    @Test("neither IPv4 nor IPv6, or too short: dropped")
    func malformed() throws {
        var wrongVersion = try Self.ipv4Packet(from: "10.77.0.2")
        wrongVersion[0] = 0x55
        #expect(!allowed(wrongVersion, dualStack))
        #expect(!allowed(Array(try Self.ipv4Packet(from: "10.77.0.2").prefix(19)), dualStack))
        #expect(!allowed(Array(try Self.ipv6Packet(from: "fd77::2").prefix(39)), dualStack))
        #expect(!allowed([], dualStack))
    }

    @Test("a data frame of a tunnel that is gone (no addresses) is dropped")
    func noTunnel() throws {
        #expect(!(try Self.ipv4Packet(from: "10.77.0.2")).withUnsafeBytes { state.isSourceAllowed($0, addresses: nil) })
    }
}
