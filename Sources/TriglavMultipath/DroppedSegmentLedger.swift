/// The TCP segments the paced AQM dropped lately — refused at ingress (`admitShared` false) or shed at the head of the
/// shared queue (`dequeueShared` `.drop`) — so that TCP's retransmission of one is recognised when it comes back and
/// placed by `MultipathEngine.admitShared(packetLength:backlogBytes:retransmitting:now:)` (docs/MULTIPATH.md, "Late
/// binding"): never shed again, and ahead of the standing queue for a while after a failover.
///
/// The data plane keys a segment by a hash of its inner flow (addresses, ports, protocol) and TCP sequence number,
/// never 0 for a real segment; pure ACKs and non-TCP packets are not remembered. A retransmission carries the same
/// sequence number (the kernel may merge or split segments when it retransmits; those are simply not recognised).
///
/// Memory is fixed at `init` (an open-addressing table of twice the capacity, 12 bytes a slot, and a ring of the
/// capacity, 8 bytes an entry); `remember` and `take` never allocate. A drop is forgotten once `capacity` newer drops
/// were remembered (answered or not). Each drop is answered once: `take` removes it. A value type owned by one thread
/// (the data plane's pump), like the engine.
public struct DroppedSegmentLedger: Sendable {
    /// How the AQM dropped a segment.
    public enum Drop: UInt8, Sendable, Equatable {
        /// Refused at ingress: the shared queue was above its target (or past twice the hard limit).
        case refused = 1
        /// Shed at the head of the shared queue: the queue was past the hard limit.
        case shed = 2
    }

    /// Drops remembered by default: more than a slow-start overshoot or a failover's shedding drops in one round trip.
    public static let defaultCapacity = 1024

    public let capacity: Int
    /// Open addressing, linear probing; 0 is an empty slot. The low 2 bits hold the `Drop`, the rest the key's hash.
    private var slots: [UInt64]
    /// Per slot: the number of the `remember` that stored it (its entry in `recent`, modulo 2³²).
    private var rememberedAt: [UInt32]
    /// The stored keys of the last `capacity` `remember`s, by their number modulo `capacity`.
    private var recent: [UInt64]
    private var remembered: UInt64 = 0
    public private(set) var count = 0

    public init(capacity: Int = DroppedSegmentLedger.defaultCapacity) {
        self.capacity = max(1, capacity)
        var tableSize = 2
        while tableSize < 2 * self.capacity { tableSize <<= 1 }
        slots = Array(repeating: 0, count: tableSize)
        rememberedAt = Array(repeating: 0, count: tableSize)
        recent = Array(repeating: 0, count: self.capacity)
    }

    /// Records that the AQM dropped the segment `key` (a later drop of the same key overwrites the earlier one).
    public mutating func remember(_ key: UInt64, as drop: Drop) {
        let stored = Self.stored(key)
        let number = remembered
        remembered &+= 1
        let ring = Int(number % UInt64(capacity))
        if number >= UInt64(capacity) {
            // The drop remembered `capacity` drops ago is forgotten, unless it was answered or remembered again since.
            let oldest = recent[ring]
            if let slot = find(oldest), rememberedAt[slot] == UInt32(truncatingIfNeeded: number - UInt64(capacity)) {
                remove(at: slot)
            }
        }
        recent[ring] = stored
        var slot = home(stored)
        if let existing = find(stored) {
            slot = existing
        } else {
            while slots[slot] != 0 { slot = (slot + 1) & (slots.count - 1) }
            count += 1
        }
        slots[slot] = stored | UInt64(drop.rawValue)
        rememberedAt[slot] = UInt32(truncatingIfNeeded: number)
    }

    /// How the AQM dropped the segment `key`, if it did and that was not answered yet; forgets it.
    public mutating func take(_ key: UInt64) -> Drop? {
        guard let slot = find(Self.stored(key)) else { return nil }
        let drop = Drop(rawValue: UInt8(slots[slot] & 3))
        remove(at: slot)
        return drop
    }

    /// Whether `key` is remembered (without forgetting it).
    public func contains(_ key: UInt64) -> Bool { find(Self.stored(key)) != nil }

    /// Bytes of storage, fixed at `init` (for memory-bound tests).
    public var storageFootprint: Int {
        (slots.count + recent.count) * MemoryLayout<UInt64>.stride + rememberedAt.count * MemoryLayout<UInt32>.stride
    }

    // MARK: Table

    /// The key as stored: mixed (so that keys differing in few bits spread), low 2 bits cleared for the drop kind,
    /// never 0.
    private static func stored(_ key: UInt64) -> UInt64 {
        var mixed = key &* 0x9E37_79B9_7F4A_7C15
        mixed ^= mixed >> 29
        mixed &= ~UInt64(3)
        return mixed == 0 ? 4 : mixed
    }

    private func home(_ stored: UInt64) -> Int { Int(truncatingIfNeeded: (stored >> 2) & UInt64(slots.count - 1)) }

    private func find(_ stored: UInt64) -> Int? {
        var slot = home(stored)
        for _ in 0..<slots.count {
            let entry = slots[slot]
            if entry == 0 { return nil }
            if entry & ~UInt64(3) == stored { return slot }
            slot = (slot + 1) & (slots.count - 1)
        }
        return nil
    }

    /// Backward-shift deletion: later entries of the probe run move up, so lookups need no tombstones.
    private mutating func remove(at slot: Int) {
        let mask = slots.count - 1
        var hole = slot
        var next = (slot + 1) & mask
        while slots[next] != 0 {
            let want = home(slots[next] & ~UInt64(3))
            // The entry at `next` may fill the hole if its home is not in (hole, next] (cyclically).
            let distanceToNext = (next - want) & mask
            let distanceToHole = (hole - want) & mask
            if distanceToHole < distanceToNext {
                slots[hole] = slots[next]
                rememberedAt[hole] = rememberedAt[next]
                hole = next
            }
            next = (next + 1) & mask
        }
        slots[hole] = 0
        count -= 1
    }
}
