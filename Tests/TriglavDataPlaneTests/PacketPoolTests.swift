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
