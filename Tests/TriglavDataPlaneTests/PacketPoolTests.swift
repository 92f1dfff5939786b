import Testing
@testable import TriglavDataPlane

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
        #expect(ClientTunnel.tunnelMTU(linkMTUs: [1500, 1400], overhead: 68, maximum: 1412) == 1332)
        #expect(ClientTunnel.tunnelMTU(linkMTUs: [9000], overhead: 68, maximum: 1412) == 1412)
        #expect(ClientTunnel.tunnelMTU(linkMTUs: [1280], overhead: 88, maximum: 1412) == 1280)
        #expect(ClientTunnel.tunnelMTU(linkMTUs: [], overhead: 88, maximum: 1400) == 1400)
    }
}
