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
    /// With offloads (`TunDevice.offloads`): one read (virtio-net header and up to 64 KiB of TCP super-packet), and
    /// the read being cut into packets, whose further segments go into the next slots, across batches.
    private let offloadRead: UnsafeMutableRawBufferPointer
    private var pending: OffloadedRead?
    private var nextSegment = 0
    private(set) var offloadCounters = TunOffloadCounters()

    init() {
        offloadRead = .allocate(byteCount: VirtioNetHeader.size + 65_536, alignment: 16)
    }

    deinit { offloadRead.deallocate() }

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
                guard let length = nextPacket(from: tun, queue: 0, into: payload(count)) else { break }
                lengths[count] = length
                count += 1
            }
            if count == 0 { return }
            dispatch(count)
            if count < Self.capacity { return }
        }
        flushPending(dispatch: dispatch)
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
                guard let length = nextPacket(from: tun, queue: queue, into: payload(count)) else {
                    ready[queue] = false
                    break
                }
                lengths[count] = length
                count += 1
                taken += 1
            }
        }
        if count > 0 { dispatch(count) }
        flushPending(dispatch: dispatch)
    }

    /// Where slot `index`'s packet goes: after room for the transport header, before room for the tag.
    private func payload(_ index: Int) -> UnsafeMutableRawBufferPointer {
        let slot = slots.slot(index)
        return UnsafeMutableRawBufferPointer(rebasing: slot[WireLayout.bodyOffset..<(slot.count - WireLayout.tagSize)])
    }

    /// The next packet into `payload`: the next segment of the super-packet being cut, else a fresh read; nil when
    /// `queue` has nothing waiting.
    private func nextPacket(from tun: TunDevice, queue: Int, into payload: UnsafeMutableRawBufferPointer) -> Int? {
        guard tun.offloads else {
            guard let length = try? tun.read(into: payload, queue: queue), length > 0 else { return nil }
            return length
        }
        while true {
            if pending != nil, let length = nextPendingSegment(into: payload) { return length }
            guard let length = try? tun.read(into: offloadRead, queue: queue), length > 0 else { return nil }
            do {
                let read = try OffloadedRead(UnsafeRawBufferPointer(rebasing: offloadRead[..<length]))
                if read.segmentCount > 1 {
                    offloadCounters.superPackets &+= 1
                    offloadCounters.segments &+= UInt64(read.segmentCount)
                }
                pending = read
                nextSegment = 0
            } catch {
                offloadCounters.malformed &+= 1
            }
        }
    }

    /// Hands over the rest of a super-packet cut across the batch's end: nothing else wakes the pump for it.
    private func flushPending(dispatch: (Int) -> Void) {
        while pending != nil {
            var count = 0
            while count < Self.capacity, pending != nil, let length = nextPendingSegment(into: payload(count)) {
                lengths[count] = length
                count += 1
            }
            if count > 0 { dispatch(count) }
        }
    }

    /// The next segment of the super-packet being cut; nil when there is none, or it (and so the rest) was dropped.
    private func nextPendingSegment(into payload: UnsafeMutableRawBufferPointer) -> Int? {
        guard let read = pending else { return nil }
        let index = nextSegment
        nextSegment += 1
        if nextSegment == read.segmentCount { pending = nil }
        do {
            return try read.writeSegment(index, into: payload)
        } catch {
            // Every segment of a super-packet is as large as the first: drop the rest of it too.
            offloadCounters.malformed &+= 1
            pending = nil
            return nil
        }
    }
}
