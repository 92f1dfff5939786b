/// Receiver-side reordering on the tunnel sequence number. Releases packets in order; holds a packet that
/// arrived early for at most `maxHold`, then skips the gap; drops duplicates it can still recognise.
/// Memory is fixed at construction (`window` slots of `slotSize` bytes), whatever arrives.
/// INTERIM: the fixed hold bound becomes TriglavMultipath's adaptive one when it lands (issue 4).
/// Not thread-safe: owned by one receiving pump.
final class ReorderBuffer {
    let window: Int
    let slotSize: Int
    let maxHold: Nanoseconds
    private let storage: UnsafeMutableRawPointer
    private var lengths: [Int]
    private var sequences: [UInt32]
    private var arrivals: [Nanoseconds]
    private var present: [Bool]
    /// Sequence last delivered from each slot position, to recognise duplicates of recent packets.
    private var deliveredSequences: [UInt32]
    private var deliveredValid: [Bool]
    /// Set when a release may have removed the oldest held packet.
    private var oldestReleased = false
    private var heldCount = 0
    private var next: UInt32 = 0
    private var started = false
    /// Arrival time of the oldest held packet (valid when heldCount > 0).
    private var oldestArrival: Nanoseconds = 0
    /// Counters for statistics.
    private(set) var reordered = 0
    private(set) var gapsSkipped = 0
    private(set) var duplicates = 0

    init(window: Int = 512, slotSize: Int = 2048, maxHold: Nanoseconds = 30 * Nanoseconds.millisecond) {
        precondition(window > 0 && window & (window - 1) == 0, "reorder window must be a power of two")
        self.window = window
        self.slotSize = slotSize
        self.maxHold = maxHold
        storage = .allocate(byteCount: window * slotSize, alignment: 16)
        lengths = Array(repeating: 0, count: window)
        sequences = Array(repeating: 0, count: window)
        arrivals = Array(repeating: 0, count: window)
        present = Array(repeating: false, count: window)
        deliveredSequences = Array(repeating: 0, count: window)
        deliveredValid = Array(repeating: false, count: window)
    }

    deinit { storage.deallocate() }

    /// When `flushExpired` should next run, or nil when nothing is held.
    var deadline: Nanoseconds? { heldCount > 0 ? oldestArrival &+ maxHold : nil }
    var isHolding: Bool { heldCount > 0 }

    /// Forgets the sequence position (the peer restarted its tunnel).
    func reset(deliver: (UnsafeRawBufferPointer) -> Void) {
        drainAll(deliver)
        started = false
    }

    /// Accepts packet `sequence`; calls `deliver` for every packet that is now in order.
    func insert(sequence: UInt32, packet: UnsafeRawBufferPointer, now: Nanoseconds,
                deliver: (UnsafeRawBufferPointer) -> Void) {
        if !started {
            started = true
            next = sequence
        }
        let distance = Int32(bitPattern: sequence &- next)
        if distance < 0 {
            // Late: its gap was already skipped. Deliver rather than drop (TCP prefers late to lost),
            // unless it is a duplicate of a delivered one. Beyond a window we can't tell: drop.
            let index = Int(sequence) & (window - 1)
            if -Int(distance) > 4 * window {
                // Far behind: the peer restarted its sequence space (server restart). Start over from here.
                drainAll(deliver)
                next = sequence &+ 1
                emit(sequence, packet, deliver)
            } else if -Int(distance) <= window && !(deliveredValid[index] && deliveredSequences[index] == sequence) {
                reordered += 1
                emit(sequence, packet, deliver)
            } else {
                duplicates += 1
            }
            return
        }
        if distance == 0 {
            emit(sequence, packet, deliver)
            next &+= 1
            releaseInOrder(deliver)
            return
        }
        if Int(distance) >= window {
            // Too far ahead: release what we hold and jump, so memory stays bounded.
            advance(to: sequence &- UInt32(window - 1), deliver)
        }
        let index = Int(sequence) & (window - 1)
        if present[index] {
            duplicates += 1
            return
        }
        guard packet.count <= slotSize else { return }
        UnsafeMutableRawBufferPointer(start: storage + index * slotSize, count: slotSize)
            .copyMemory(from: packet)
        lengths[index] = packet.count
        sequences[index] = sequence
        arrivals[index] = now
        present[index] = true
        if heldCount == 0 { oldestArrival = now }
        heldCount += 1
        reordered += 1
    }

    /// Skips gaps whose oldest held packet waited `maxHold`.
    func flushExpired(now: Nanoseconds, deliver: (UnsafeRawBufferPointer) -> Void) {
        while heldCount > 0, now &- oldestArrival >= maxHold {
            // Skip to the first held sequence and release the run that follows it.
            var probe = next
            while !present[Int(probe) & (window - 1)] { probe &+= 1 }
            gapsSkipped += 1
            next = probe
            releaseInOrder(deliver)
            recomputeOldest()
        }
    }

    private func releaseInOrder(_ deliver: (UnsafeRawBufferPointer) -> Void) {
        while heldCount > 0 {
            let index = Int(next) & (window - 1)
            guard present[index], sequences[index] == next else { break }
            release(index, deliver)
            next &+= 1
        }
        if heldCount > 0 && oldestReleased { recomputeOldest() }
    }

    private func emit(_ sequence: UInt32, _ packet: UnsafeRawBufferPointer, _ deliver: (UnsafeRawBufferPointer) -> Void) {
        let index = Int(sequence) & (window - 1)
        deliveredSequences[index] = sequence
        deliveredValid[index] = true
        deliver(packet)
    }

    private func release(_ index: Int, _ deliver: (UnsafeRawBufferPointer) -> Void) {
        if arrivals[index] == oldestArrival { oldestReleased = true }
        present[index] = false
        heldCount -= 1
        emit(sequences[index], UnsafeRawBufferPointer(start: storage + index * slotSize, count: lengths[index]), deliver)
    }

    /// Moves `next` forward to `target`, releasing held packets on the way. Bounded by the window: every held
    /// packet lies within `window` of `next`, so after that many steps the rest of the way is empty.
    private func advance(to target: UInt32, _ deliver: (UnsafeRawBufferPointer) -> Void) {
        var steps = 0
        while Int32(bitPattern: target &- next) > 0, heldCount > 0, steps < window {
            let index = Int(next) & (window - 1)
            if present[index], sequences[index] == next { release(index, deliver) }
            next &+= 1
            steps += 1
        }
        if Int32(bitPattern: target &- next) > 0 { next = target }
        releaseInOrder(deliver)
    }

    private func drainAll(_ deliver: (UnsafeRawBufferPointer) -> Void) {
        var probe = next
        var remaining = heldCount
        var scanned = 0
        while remaining > 0, scanned < window {
            let index = Int(probe) & (window - 1)
            if present[index] {
                release(index, deliver)
                remaining -= 1
            }
            probe &+= 1
            scanned += 1
        }
        heldCount = 0
        oldestReleased = false
    }

    private func recomputeOldest() {
        oldestReleased = false
        guard heldCount > 0 else { return }
        var oldest = Nanoseconds.max
        for index in 0..<window where present[index] { oldest = min(oldest, arrivals[index]) }
        oldestArrival = oldest
    }
}
