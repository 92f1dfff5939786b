import Testing
import TriglavCore
import TriglavCrypto
@testable import TriglavDataPlane
import TriglavProtocol

@Suite("PacketPool")
struct PacketPoolTests {
    @Test("stores, returns and frees packets; bounded when full")
    func storeAndRelease() {
        let pool = PacketPool(capacity: 2, slotSize: 8)
        let first = [UInt8]([1, 2, 3]).withUnsafeBytes { pool.store($0) }
        let second = [UInt8]([4]).withUnsafeBytes { pool.store($0) }
        #expect(first != nil && second != nil && first != second)
        #expect([UInt8](repeating: 9, count: 1).withUnsafeBytes { pool.store($0) } == nil)
        #expect(first.map { Array(pool.packet($0)) } == [1, 2, 3])
        #expect(second.map { Array(pool.packet($0)) } == [4])
        if let first { pool.release(first) }
        #expect(pool.available == 1)
        #expect([UInt8](repeating: 7, count: 9).withUnsafeBytes { pool.store($0) } == nil, "larger than a slot")
        #expect([UInt8](repeating: 7, count: 8).withUnsafeBytes { pool.store($0) } == first)
    }
}

@Suite("Tunnel MTU")
struct TunnelMTUTests {
    @Test("smallest uplink MTU minus the overhead, capped and at least 1280")
    func derivation() {
        #expect(TunnelMTU.forUplinks(linkMTUs: [1500, 1400], overhead: 68, maximum: 1432) == 1332)
        #expect(TunnelMTU.forUplinks(linkMTUs: [9000], overhead: 68, maximum: 1432) == 1432)
        #expect(TunnelMTU.forUplinks(linkMTUs: [1280], overhead: 88, maximum: 1412) == 1280)
        #expect(TunnelMTU.forUplinks(linkMTUs: [], overhead: 88, maximum: 1400) == 1400)
    }

    @Test("overhead is outer IP + UDP 8 + Triglav 40: 68 over IPv4, 88 over IPv6")
    func overhead() {
        #expect(TunnelMTU.overhead(outerIPv4: true) == 20 + 8 + 16 + 8 + 16)
        #expect(TunnelMTU.overhead(outerIPv4: false) == 40 + 8 + 16 + 8 + 16)
        #expect(TunnelMTU.defaultCeiling(outerIPv4: false) == MAX_PAYLOAD)
    }

    @Test("the default ceiling follows the server's family: a 1500-byte IPv4 uplink gives 1432, IPv6 1412")
    func clientCeiling() throws {
        var configuration = ClientTunnelConfiguration(identity: IdentityKey.generate(), serverKey: IdentityKey.generate().publicKey,
                                                      server: try IPEndpoint("198.18.0.1:7443"), tunnelInterface: try InterfaceName("tg0"))
        #expect(configuration.mtuCeiling == 1432)
        #expect(TunnelMTU.forUplinks(linkMTUs: [1500, 1500], overhead: 68, maximum: configuration.mtuCeiling) == 1432)
        configuration.server = try IPEndpoint("[2001:db8::1]:7443")
        #expect(configuration.mtuCeiling == 1412)
        configuration.mtu = 1300
        #expect(configuration.mtuCeiling == 1300)
    }

    @Test("the server's TUN takes the largest MTU a client can have: 1432 with an IPv4 listener, 1412 with IPv6 only")
    func serverCeiling() throws {
        #expect(TunnelMTU.defaultServerCeiling(listen: [try IPEndpoint("0.0.0.0:7443")]) == 1432)
        #expect(TunnelMTU.defaultServerCeiling(listen: [try IPEndpoint("0.0.0.0:7443"), try IPEndpoint("[::]:7443")]) == 1432)
        #expect(TunnelMTU.defaultServerCeiling(listen: [try IPEndpoint("[::]:7443")]) == 1412)
    }

    @Test("buffers and the TCP fallback's frames hold a full-size datagram with room to spare")
    func buffersHoldTheLargestDatagram() {
        #expect(TCPFraming.maxFrameLength == TunnelMTU.largestDatagram)
        #expect(TunnelMTU.defaultCeiling(outerIPv4: true) + WireLayout.transportOverhead <= TunnelMTU.largestDatagram)
        let pool = PacketPool(capacity: 1)
        let packet = [UInt8](repeating: 0x45, count: TunnelMTU.defaultCeiling(outerIPv4: true))
        #expect(packet.withUnsafeBytes { pool.store($0) } != nil)
    }
}

@Suite("RetransmitStore")
struct RetransmitStoreTests {
    @Test("returns stored packets by sequence until overwritten, across wrap-around")
    func storeAndOverwrite() {
        let store = RetransmitStore(capacity: 4, slotSize: 8)
        for sequence in [UInt32.max - 1, UInt32.max, 0, 1] {
            [UInt8(truncatingIfNeeded: sequence)].withUnsafeBytes { store.store(sequence: sequence, packet: $0) }
        }
        #expect(store.packet(sequence: UInt32.max).map(Array.init) == [255])
        #expect(store.packet(sequence: 1).map(Array.init) == [1])
        [UInt8(2)].withUnsafeBytes { store.store(sequence: 2, packet: $0) }
        #expect(store.packet(sequence: UInt32.max - 1) == nil, "overwritten by sequence 2")
        #expect(store.packet(sequence: 6) == nil, "never sent")
        [UInt8](repeating: 1, count: 9).withUnsafeBytes { store.store(sequence: 3, packet: $0) }
        #expect(store.packet(sequence: 3) == nil, "too large to keep")
    }
}
