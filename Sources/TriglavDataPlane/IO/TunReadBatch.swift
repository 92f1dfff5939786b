import TriglavProtocol

/// Packets read from a TUN device into preallocated slots, each with room for the transport header before
/// and the AEAD tag after it, so sealing in place needs no copy. Owned by one pump thread; reused for
/// every wake-up, so reading allocates nothing.
final class TunReadBatch {
    static let capacity = 64
    /// At most this many full batches per wake-up, so a busy device can't starve the pump's other work.
    private static let roundsPerWakeUp = 16

    private let slots = DatagramBatch(capacity: TunReadBatch.capacity, slotSize: TunnelMTU.largestDatagram)
    private var lengths = [Int](repeating: 0, count: TunReadBatch.capacity)

    /// Length of the packet in slot `index` of the batch handed to `dispatch`.
    func length(_ index: Int) -> Int { lengths[index] }

    /// The whole slot `index`: the packet starts at `WireLayout.bodyOffset`.
    func slot(_ index: Int) -> UnsafeMutableRawBufferPointer { slots.slot(index) }

    /// Drains `tun` in batches until it is empty (or the round limit is reached), handing the number of
    /// packets in each non-empty batch to `dispatch`, so one wake-up moves many packets.
    func drain(_ tun: TunDevice, dispatch: (Int) -> Void) {
        for _ in 0..<Self.roundsPerWakeUp {
            var count = 0
            while count < Self.capacity {
                let slot = slots.slot(count)
                let payload = UnsafeMutableRawBufferPointer(rebasing: slot[WireLayout.bodyOffset..<(slot.count - WireLayout.tagSize)])
                guard let length = try? tun.read(into: payload), length > 0 else { break }
                lengths[count] = length
                count += 1
            }
            if count == 0 { return }
            dispatch(count)
            if count < Self.capacity { return }
        }
    }
}
