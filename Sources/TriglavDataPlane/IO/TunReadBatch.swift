import TriglavProtocol

/// Packets read from a TUN device into preallocated slots, each with room for the transport header before
/// and the AEAD tag after it, so sealing in place needs no copy. Owned by one pump thread; reused for
/// every wake-up, so reading allocates nothing.
final class TunReadBatch {
    static let capacity = 64
    /// At most this many full batches per wake-up, so a busy device can't starve the pump's other work.
    private static let roundsPerWakeUp = 16

    /// Packets read from one queue of a multi-queue device before the next queue's turn.
    private static let quantum = 16

    private let slots = DatagramBatch(capacity: TunReadBatch.capacity, slotSize: TunnelMTU.largestDatagram)
    private var lengths = [Int](repeating: 0, count: TunReadBatch.capacity)
    /// The queue whose turn is next in `drainOneBatch`; carried across wake-ups.
    private var nextQueue = 0

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

    /// Reads one batch from the queues of a multi-queue `tun` marked in `ready`, round-robin, at most `quantum`
    /// packets from a queue per turn, and hands it to `dispatch`. One batch per wake-up: a queue found empty is
    /// unmarked and only the poller marks it again, so the pump waits (without blocking, the level-triggered
    /// poller returns at once while anything is queued) before every batch, and a queue that filled up meanwhile
    /// gets its turn in the next. So a queue that is always full (one client's flood, when the device steers by
    /// destination) gets about as many turns as each other busy queue, not every packet the pump has time for.
    func drainOneBatch(_ tun: TunDevice, ready: inout [Bool], dispatch: (Int) -> Void) {
        let queueCount = ready.count
        guard queueCount > 0 else { return }
        var count = 0
        var idleTurns = 0
        while count < Self.capacity && idleTurns < queueCount {
            let queue = nextQueue % queueCount
            nextQueue = (queue + 1) % queueCount
            guard ready[queue] else {
                idleTurns += 1
                continue
            }
            idleTurns = 0
            var taken = 0
            while taken < Self.quantum && count < Self.capacity {
                let slot = slots.slot(count)
                let payload = UnsafeMutableRawBufferPointer(rebasing: slot[WireLayout.bodyOffset..<(slot.count - WireLayout.tagSize)])
                guard let length = try? tun.read(into: payload, queue: queue), length > 0 else {
                    ready[queue] = false
                    break
                }
                lengths[count] = length
                count += 1
                taken += 1
            }
        }
        if count > 0 { dispatch(count) }
    }
}
