/// Copies of recently sent inner packets by tunnel sequence, so the multipath engine's `resend` duties (packets
/// that were in flight on an uplink that just died) can be sent again on another uplink. Fixed memory:
/// `capacity` slots, the newest packet overwrites the one `capacity` sequences older. Not thread-safe: used
/// under the owning tunnel's lock.
final class RetransmitStore {
    let capacity: Int
    let slotSize: Int
    private let storage: UnsafeMutableRawPointer
    private var sequences: [UInt32]
    private var lengths: [Int]

    init(capacity: Int, slotSize: Int = TunnelMTU.largestDatagram) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "retransmit store capacity must be a power of two")
        self.capacity = capacity
        self.slotSize = slotSize
        storage = .allocate(byteCount: capacity * slotSize, alignment: 16)
        sequences = Array(repeating: 0, count: capacity)
        lengths = Array(repeating: 0, count: capacity)
    }

    deinit { storage.deallocate() }

    func store(sequence: UInt32, packet: UnsafeRawBufferPointer) {
        let index = Int(sequence) & (capacity - 1)
        guard packet.count <= slotSize else { lengths[index] = 0; return }
        UnsafeMutableRawBufferPointer(start: storage + index * slotSize, count: packet.count).copyMemory(from: packet)
        sequences[index] = sequence
        lengths[index] = packet.count
    }

    /// The packet sent with `sequence`, nil when it was overwritten (or never stored).
    func packet(sequence: UInt32) -> UnsafeRawBufferPointer? {
        let index = Int(sequence) & (capacity - 1)
        guard lengths[index] > 0, sequences[index] == sequence else { return nil }
        return UnsafeRawBufferPointer(start: storage + index * slotSize, count: lengths[index])
    }
}
