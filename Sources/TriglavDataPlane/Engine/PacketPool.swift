/// Fixed packet storage for the multipath engine's reorder buffer, which holds slot numbers, not bytes.
/// `capacity` slots of `slotSize` bytes are allocated once; `store` copies a packet in, `release` frees
/// its slot. When full, `store` returns nil and the caller drops the packet (memory stays bounded).
/// Not thread-safe: owned by one receiving pump.
final class PacketPool {
    let capacity: Int
    let slotSize: Int
    private let storage: UnsafeMutableRawPointer
    private var lengths: [Int]
    private var free: [Int]

    init(capacity: Int, slotSize: Int = TunnelMTU.largestDatagram) {
        precondition(capacity > 0, "packet pool needs at least one slot")
        self.capacity = capacity
        self.slotSize = slotSize
        storage = .allocate(byteCount: capacity * slotSize, alignment: 16)
        lengths = Array(repeating: 0, count: capacity)
        free = Array((0..<capacity).reversed())
    }

    deinit { storage.deallocate() }

    var available: Int { free.count }

    /// Copies `packet` into a free slot; nil when the pool is full or the packet too large.
    func store(_ packet: UnsafeRawBufferPointer) -> Int? {
        guard packet.count <= slotSize, let slot = free.popLast() else { return nil }
        UnsafeMutableRawBufferPointer(start: storage + slot * slotSize, count: packet.count).copyMemory(from: packet)
        lengths[slot] = packet.count
        return slot
    }

    func packet(_ slot: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage + slot * slotSize, count: lengths[slot])
    }

    /// The stored packet, writable in place (the paced queue marks ECN in it).
    func mutablePacket(_ slot: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: storage + slot * slotSize, count: lengths[slot])
    }

    /// Frees every slot except `kept` (used when the reorder buffer holding them is discarded). Allocates.
    func releaseAll(except kept: [Int]) {
        let keep = Set(kept)
        free = (0..<capacity).reversed().filter { !keep.contains($0) }
    }

    func release(_ slot: Int) {
        precondition(slot >= 0 && slot < capacity, "packet pool slot \(slot) out of range")
        free.append(slot)
    }
}
