/// Receiver-side reorder buffer on the 32-bit tunnel sequence (RFC 1982 serial-number arithmetic).
///
/// Invariants: at most `capacity` packets are held; a packet is held no longer than `waitBound` after
/// its arrival (the engine keeps `waitBound ≤ maxReorderHold`), counted from the later `arrival` it may be
/// given — except with `asksLateHeadGapAgain`, where a requested head gap is skipped only after its second request
/// and half the way from first request to skip after that, which for a gap reaching the head late (and for each gap
/// of a chain of them) is later — and never longer than `maxHold` after it was inserted; packets leave in sequence
/// order, except a packet arriving after its gap was skipped, which is delivered at once ("late") unless it is a
/// duplicate. Duplicate detection covers `capacity` sequences behind the release point; older packets are
/// `stale`. All storage is allocated in `init`; nothing per packet.
///
/// Usage per received packet: `insert` → if `.deliverNow` deliver it → drain `nextReleasable` until nil.
/// On timers: drain `nextReleasable` and `nextResendRequest`, then sleep until `nextDeadline`.
public struct ReorderBuffer<Packet> {
    public let capacity: Int
    private let mask: Int
    private var slots: [Packet?]
    private var arrivals: [UInt64]
    /// One bit per sequence over [head - capacity, head + capacity).
    private var seen: [UInt64]
    /// One bit per slot: the sender declined to resend this sequence (see `abandon`).
    private var abandoned: [UInt64]
    /// Of those, the ones that were delivered out of order on purpose (`insertBypassing`), not lost.
    private var bypassedAhead: [UInt64]
    /// Buffered sequences in arrival order; the front is always unreleased (released ones are popped
    /// when they reach the front). Released entries can sit behind an unreleased front; all entries lie
    /// within `capacity` of the front's sequence, so 2·capacity entries suffice.
    private var fifoSequences: [UInt32]
    private var fifoArrivals: [UInt64]
    /// When each FIFO entry was inserted (`now`; `fifoArrivals` may be later): `maxHold` counts from here.
    private var fifoInsertions: [UInt64]
    private var fifoStart = 0
    private var fifoCount = 0
    /// Next sequence to release.
    public private(set) var head: UInt32 = 0
    private var started = false
    public private(set) var bufferedCount = 0
    /// The highest sequence ever buffered: the resend scan stops there (nothing above it can be missing
    /// "below a later packet"), instead of walking `capacity` empty slots on every check.
    private var highestBuffered: UInt32 = 0
    /// Sequences below this were already requested for resend (or released).
    private var requestedThrough: UInt32 = 0
    private var nackCheckAt: UInt64?
    private var rerequestedHead: UInt32?
    /// When `rerequestedHead` was asked for the second time.
    private var rerequestedAt: UInt64 = 0
    /// A requested gap at the head is skipped only after its second request, and then no sooner than a timely second
    /// request's repair would be due (half the way from first request to skip). That changes nothing for a gap whose
    /// second request was on time; one that reaches the head after its second-request time — behind an older gap, as
    /// the holes a failover leaves — gets its second request and that wait instead of being skipped at once with its
    /// loss left to the sender's TCP. Successive late gaps each add their wait: only `maxHold` bounds the sum, so with
    /// the default `maxHold` (none) the caller must keep draining `nextResendRequest` as `nextDeadline` says.
    public var asksLateHeadGapAgain = false
    /// A packet that jumped more than `capacity` ahead: everything buffered is flushed first.
    private var parked: (packet: Packet, sequence: UInt32)?
    /// Latest `now` seen; the buffer's clock never runs backwards.
    private var latestTime: UInt64 = 0

    private mutating func advanceClock(to time: UInt64) -> UInt64 {
        latestTime = max(latestTime, time)
        return latestTime
    }
    private var lastSkipAt: UInt64 = 0
    /// How long the last skipped gap would have needed to fill (a late packet's delay past the skip plus
    /// the wait already spent). The engine keeps `waitBound` at least this, decaying, so a wait that
    /// proved too short grows instead of skipping again.
    public private(set) var observedLateness: UInt64 = 0
    /// How long gaps took to fill by themselves (reordering, not loss), decaying maximum. The engine
    /// derives the resend-request delay from it (RACK-style): when the scheduler keeps arrivals in order,
    /// losses are asked for quickly instead of after the full delay spread between uplinks.
    public var observedReordering: UInt64 { reorderingSmoothed + 4 * reorderingDeviation }
    private var reorderingSmoothed: UInt64 = 0
    private var reorderingDeviation: UInt64 = 0

    /// A duplicate of a sequence we asked for means the request was spurious (the original was only
    /// late): the reordering it needed is at least the time since the request plus the delay we used.
    private mutating func noteDuplicate(_ sequence: UInt32, now: UInt64) {
        statistics.duplicates &+= 1
        guard requestsResends else { return }
        let marked = arrivals[Int(sequence) & mask]
        if now >= marked, now - marked < maxReorderingSample {
            noteReordering(now - marked + resendRequestDelay)
        }
    }

    /// Jacobson/Karels-style smoothing of reordering depth samples, so one outlier doesn't set the delay.
    private mutating func noteReordering(_ rawSample: UInt64) {
        let sample = min(rawSample, maxReorderingSample)
        let mean = Int64(clamping: reorderingSmoothed), value = Int64(clamping: sample)
        let deviation = Int64(clamping: (mean - value).magnitude)
        let dev = Int64(clamping: reorderingDeviation)
        reorderingDeviation = UInt64(max(0, dev + (deviation - dev) >> 2))
        reorderingSmoothed = UInt64(max(0, mean + (value - mean) >> 3))
    }
    /// A fill this soon after a resend request can't be the resend (less than a round trip on the fastest
    /// uplink): the request was spurious and the gap was reordering. Set by the engine.
    public var fastestResendRoundTrip: UInt64 = 0
    /// Reordering samples are capped here (the engine sets half the maximum hold), so one freak sample
    /// can't push the request delay past what the buffer may wait anyway.
    public var maxReorderingSample: UInt64 = 150_000_000

    /// Gaps are skipped once the oldest waiting packet has waited this long.
    public var waitBound: UInt64
    /// The longest any packet is held, from the `now` it was inserted at, whatever its `arrival`: a gap is
    /// skipped by then even when the wait counted from a later (equalised) arrival isn't over. The engine sets
    /// `maxReorderHold`.
    public var maxHold: UInt64 = .max
    /// Missing sequences are requested this long after a later packet revealed them.
    public var resendRequestDelay: UInt64
    /// Whether `nextResendRequest` reports anything.
    public var requestsResends: Bool

    public private(set) var statistics = ReorderStatistics()

    /// - Parameter capacity: packets held at most; a power of two from 16 to `MultipathLimits.maxReorderCapacity`.
    public init(capacity: Int, waitBound: UInt64, resendRequestDelay: UInt64 = 0, requestsResends: Bool = false)
        throws(MultipathError) {
        guard capacity >= 16, capacity <= MultipathLimits.maxReorderCapacity, capacity & (capacity - 1) == 0 else {
            throw .invalidConfiguration(field: "reorderCapacity", value: String(capacity),
                                        reason: "must be a power of two from 16 to \(MultipathLimits.maxReorderCapacity)")
        }
        self.capacity = capacity
        mask = capacity - 1
        slots = Array(repeating: nil, count: capacity)
        arrivals = Array(repeating: 0, count: capacity)
        seen = Array(repeating: 0, count: (2 * capacity + 63) / 64)
        abandoned = Array(repeating: 0, count: (capacity + 63) / 64)
        bypassedAhead = Array(repeating: 0, count: (capacity + 63) / 64)
        fifoSequences = Array(repeating: 0, count: 2 * capacity)
        fifoArrivals = Array(repeating: 0, count: 2 * capacity)
        fifoInsertions = Array(repeating: 0, count: 2 * capacity)
        self.waitBound = waitBound
        self.resendRequestDelay = resendRequestDelay
        self.requestsResends = requestsResends
    }

    @inline(__always) private func distance(_ sequence: UInt32, from base: UInt32) -> Int32 {
        Int32(bitPattern: sequence &- base)
    }

    @inline(__always) private func bitIndex(_ sequence: UInt32) -> Int { Int(sequence) & (2 * capacity - 1) }

    private func isSeen(_ sequence: UInt32) -> Bool {
        let bit = bitIndex(sequence)
        return seen[bit >> 6] & (1 << UInt64(bit & 63)) != 0
    }

    private mutating func markSeen(_ sequence: UInt32) {
        let bit = bitIndex(sequence)
        seen[bit >> 6] |= 1 << UInt64(bit & 63)
    }

    private mutating func clearSeen(_ sequence: UInt32) {
        let bit = bitIndex(sequence)
        seen[bit >> 6] &= ~(1 << UInt64(bit & 63))
    }

    /// Moves the release point, keeping the seen-bitmap window valid and the FIFO front unreleased.
    private mutating func advanceHead(to newHead: UInt32) {
        let steps = UInt64(newHead &- head)
        if steps >= UInt64(capacity) {
            for index in abandoned.indices { abandoned[index] = 0; bypassedAhead[index] = 0 }
        } else {
            var position = head
            for _ in 0..<steps {
                let slot = Int(position) & mask
                abandoned[slot >> 6] &= ~(1 << UInt64(slot & 63))
                bypassedAhead[slot >> 6] &= ~(1 << UInt64(slot & 63))
                position &+= 1
            }
        }
        if steps >= UInt64(2 * capacity) {
            for index in seen.indices { seen[index] = 0 }
        } else {
            var position = head &+ UInt32(capacity)
            for _ in 0..<steps {
                clearSeen(position)
                position &+= 1
            }
        }
        head = newHead
        if distance(requestedThrough, from: head) < 0 { requestedThrough = head }
        // Forgotten once passed, so a head 2^32 sequences on doesn't look asked for twice already.
        if let rerequested = rerequestedHead, distance(rerequested, from: head) < 0 { rerequestedHead = nil }
        while fifoCount > 0, distance(fifoSequences[fifoStart], from: head) < 0 {
            fifoStart = (fifoStart + 1) & (2 * capacity - 1)
            fifoCount -= 1
        }
    }

    /// Offers a received packet. See `ReorderVerdict` for what to do next. `arrival` (default `now`) is the
    /// time its wait counts from, later than `now` when a delay equaliser holds it anyway.
    public mutating func insert(_ packet: Packet, sequence: UInt32, now: UInt64, arrival: UInt64? = nil) -> ReorderVerdict {
        let now = advanceClock(to: now)
        if !started {
            started = true
            head = sequence
            requestedThrough = sequence
        }
        if parked != nil {
            statistics.overflows &+= 1
            return .overflow
        }
        let offset = distance(sequence, from: head)
        if offset < 0 {
            if Int(offset) < -capacity {
                // Never resynchronised backwards: older than the seen-bitmap, it may have been delivered
                // (a redundant copy on an uplink lagging more than `capacity`, a late failover resend).
                // A peer that restarts its sequence does a new handshake, which replaces the engine.
                statistics.stale &+= 1
                return .stale
            }
            if isSeen(sequence) {
                noteDuplicate(sequence, now: now)
                return .duplicate
            }
            markSeen(sequence)
            statistics.deliveredLate &+= 1
            if now >= lastSkipAt, now - lastSkipAt < 2 * waitBound + 1_000_000_000 {
                observedLateness = max(observedLateness, now - lastSkipAt + waitBound)
            }
            return .deliverNow
        }
        if Int(offset) >= capacity {
            parked = (packet, sequence)
            statistics.jumps &+= 1
            return .buffered
        }
        if isSeen(sequence) {
            noteDuplicate(sequence, now: now)
            return .duplicate
        }
        markSeen(sequence)
        if offset == 0 {
            if bufferedCount > 0 {
                // A missing slot's arrival time holds when it was requested (see markRequested).
                let requested = distance(requestedThrough, from: sequence) > 0
                let requestedAt = arrivals[Int(sequence) & mask]
                if !requested || (now >= requestedAt && now - requestedAt < fastestResendRoundTrip / 2) {
                    // How long after its successor this packet came: the reordering depth right here.
                    var next = sequence &+ 1
                    for _ in 0..<16 {
                        let slot = Int(next) & mask
                        if slots[slot] != nil {
                            // An unrequested fill much later than our request delay wasn't reordering
                            // (we would have asked for it): it was a resend the sender chose to make
                            // after an uplink failed. Spurious requests raise the estimate instead.
                            if now >= arrivals[slot],
                               requested || now - arrivals[slot] <= 2 * resendRequestDelay + 5 * 1_000_000 {
                                noteReordering(now - arrivals[slot])
                            }
                            break
                        }
                        next &+= 1
                    }
                }
            }
            advanceHead(to: head &+ 1)
            statistics.deliveredInOrder &+= 1
            return .deliverNow
        }
        let slot = Int(sequence) & mask
        slots[slot] = packet
        arrivals[slot] = max(now, arrival ?? now)
        if bufferedCount == 0 || distance(sequence, from: highestBuffered) > 0 { highestBuffered = sequence }
        bufferedCount += 1
        precondition(fifoCount < 2 * capacity, "reorder FIFO overflow: invariant broken")
        let tail = (fifoStart + fifoCount) & (2 * capacity - 1)
        fifoSequences[tail] = sequence
        fifoArrivals[tail] = max(now, arrival ?? now)
        fifoInsertions[tail] = now
        fifoCount += 1
        if requestsResends {
            let due = now &+ resendRequestDelay
            nackCheckAt = min(nackCheckAt ?? due, due)
        }
        return .buffered
    }

    /// The sender won't resend these sequences (no longer stored, or its uplinks are congested): stop
    /// waiting for them. Marked seen-but-absent, which `nextReleasable` skips at once when they reach the
    /// head. Sequences outside the window, or already here, are ignored.
    public mutating func abandon(firstSequence: UInt32, count: UInt32) {
        guard started else { return }
        var sequence = firstSequence
        for _ in 0..<min(count, UInt32(capacity)) {
            let offset = distance(sequence, from: head)
            if offset >= 0, Int(offset) < capacity, !isSeen(sequence) {
                let slot = Int(sequence) & mask
                abandoned[slot >> 6] |= 1 << UInt64(slot & 63)
            }
            sequence &+= 1
        }
    }

    /// Whether the head is a sequence the sender gave up on. Not marked seen: if the original turns up
    /// after all, it is delivered late rather than dropped as a duplicate.
    private var headAbandoned: Bool { isAbandoned(head) }

    /// Whether `sequence` (within the window) is empty because it was given up on or delivered bypassing the
    /// buffer — not missing, so never asked for.
    private func isAbandoned(_ sequence: UInt32) -> Bool {
        let slot = Int(sequence) & mask
        return abandoned[slot >> 6] & (1 << UInt64(slot & 63)) != 0 && slots[slot] == nil
    }

    /// Accepts a packet that is delivered at once, out of order (the caller knows order doesn't matter
    /// for it, e.g. a pure TCP ACK). Returns `.deliverNow` unless it is a duplicate or stale. Its
    /// sequence is remembered so the release point passes it without waiting.
    public mutating func insertBypassing(sequence: UInt32, now: UInt64) -> ReorderVerdict {
        let now = advanceClock(to: now)
        if !started {
            started = true
            head = sequence
            requestedThrough = sequence
        }
        let offset = distance(sequence, from: head)
        if offset < 0 && Int(offset) < -capacity { statistics.stale &+= 1; return .stale }
        if Int(offset) >= capacity {
            // Beyond the seen-bitmap it couldn't be recognised again (a second redundant copy would be delivered
            // too): with nothing buffered the release point jumps to it, as for an ordered jump; otherwise the
            // packets waiting keep their window and this one goes (callers bypass only packets whose loss is
            // harmless, such as cumulative TCP ACKs).
            guard bufferedCount == 0, parked == nil else { statistics.overflows &+= 1; return .overflow }
            statistics.jumps &+= 1
            statistics.bypassed &+= 1
            jumpHead(past: sequence)
            return .deliverNow
        }
        if isSeen(sequence) {
            noteDuplicate(sequence, now: now)
            return .duplicate
        }
        markSeen(sequence)
        statistics.bypassed &+= 1
        if offset == 0 {
            advanceHead(to: head &+ 1)
        } else if offset > 0 {
            let slot = Int(sequence) & mask
            abandoned[slot >> 6] |= 1 << UInt64(slot & 63)
            bypassedAhead[slot >> 6] |= 1 << UInt64(slot & 63)
        }
        return .deliverNow
    }

    /// Moves the release point just past `sequence`, a jump beyond the window, remembering `sequence` as seen.
    private mutating func jumpHead(past sequence: UInt32) {
        advanceHead(to: sequence)
        markSeen(sequence)
        advanceHead(to: sequence &+ 1)
    }

    /// Takes the slot at `head` if present and advances past it; passes abandoned sequences.
    private mutating func takeHead() -> Packet? {
        while headAbandoned {
            let slot = Int(head) & mask
            if bypassedAhead[slot >> 6] & (1 << UInt64(slot & 63)) == 0 { statistics.skippedSequences &+= 1 }
            advanceHead(to: head &+ 1)
        }
        let slot = Int(head) & mask
        guard let packet = slots[slot] else { return nil }
        slots[slot] = nil
        bufferedCount -= 1
        advanceHead(to: head &+ 1)
        return packet
    }

    /// Skips missing sequences up to the next buffered one and releases it.
    private mutating func skipToNextBuffered() -> Packet? {
        var candidate = head
        for _ in 0..<capacity {
            if slots[Int(candidate) & mask] != nil {
                statistics.skippedSequences &+= UInt64(candidate &- head)
                advanceHead(to: candidate)
                return takeHead()
            }
            candidate &+= 1
        }
        return nil
    }

    /// The next packet to deliver at `now`, or nil when everything left must still wait.
    public mutating func nextReleasable(now: UInt64) -> Packet? {
        let now = advanceClock(to: now)
        if let packet = takeHead() {
            statistics.deliveredInOrder &+= 1
            return packet
        }
        if let (packet, sequence) = parked {
            if bufferedCount > 0, let flushed = skipToNextBuffered() {
                statistics.deliveredInOrder &+= 1
                return flushed
            }
            parked = nil
            jumpHead(past: sequence)
            statistics.deliveredInOrder &+= 1
            return packet
        }
        guard fifoCount > 0, now >= frontSkipTime else { return nil }
        statistics.deliveredInOrder &+= 1
        lastSkipAt = now
        return skipToNextBuffered()
    }

    /// The next missing run to ask the peer for, once a later packet has waited `resendRequestDelay`.
    /// Each sequence is requested once, and the gap at the head once more (halfway to its skip, or as soon as
    /// it reaches the head when that is later; `asksLateHeadGapAgain` makes the skip wait for it); a run is reported
    /// only when a packet above it has arrived, in chunks of at most 256 sequences.
    public mutating func nextResendRequest(now: UInt64) -> (firstSequence: UInt32, count: UInt32)? {
        let now = advanceClock(to: now)
        guard requestsResends, bufferedCount > 0 else { return nil }
        // Second chance for the gap at the head: its resend may have been lost too. Asked halfway
        // between the first request and the skip.
        if rerequestedHead != head, slots[Int(head) & mask] == nil, fifoCount > 0,
           now >= secondRequestTime(), distance(requestedThrough, from: head) > 0 {
            rerequestedHead = head
            rerequestedAt = now
            var end = head
            while slots[Int(end) & mask] == nil, !isAbandoned(end), end &- head < 256 { end &+= 1 }
            markRequested(from: head, to: end, at: now)
            statistics.resendRequests &+= 1
            return (head, end &- head)
        }
        guard let checkAt = nackCheckAt, now >= checkAt else { return nil }
        nackCheckAt = nil
        var position = requestedThrough
        var runStart: UInt32?
        // Where the run ends: at the first buffered sequence, or earlier at one delivered bypassing the buffer
        // (not missing; asking for it would bring a duplicate). The run is asked for once a later packet is due.
        var runEnd: UInt32?
        let end = distance(highestBuffered, from: head) < Int32(capacity) ? highestBuffered &+ 1 : head &+ UInt32(capacity)
        while distance(position, from: end) < 0 {
            let slot = Int(position) & mask
            if slots[slot] != nil {
                let due = arrivals[slot] &+ resendRequestDelay
                if due > now {
                    nackCheckAt = due
                    return nil
                }
                if let start = runStart {
                    let count = min((runEnd ?? position) &- start, 256)
                    requestedThrough = start &+ count
                    markRequested(from: start, to: start &+ count, at: now)
                    nackCheckAt = now
                    statistics.resendRequests &+= 1
                    return (start, count)
                }
                requestedThrough = position &+ 1
            } else if isAbandoned(position) {
                if runStart != nil, runEnd == nil { runEnd = position }
            } else if runStart == nil {
                runStart = position
            }
            position &+= 1
        }
        return nil
    }

    /// Empty slots have no arrival; their arrival field remembers when they were requested instead.
    private mutating func markRequested(from start: UInt32, to end: UInt32, at now: UInt64) {
        var position = start
        while position != end {
            arrivals[Int(position) & mask] = now
            position &+= 1
        }
    }

    private func secondRequestTime() -> UInt64 {
        let first = fifoArrivals[fifoStart] &+ resendRequestDelay
        return first &+ secondRequestRepairTime
    }

    /// When `nextReleasable` or `nextResendRequest` will next have something (nil: nothing waits).
    public func nextDeadline() -> UInt64? {
        if parked != nil || slots[Int(head) & mask] != nil || (started && headAbandoned) { return 0 }
        var deadline: UInt64?
        if fifoCount > 0 { deadline = frontSkipTime }
        if requestsResends, fifoCount > 0, rerequestedHead != head, distance(requestedThrough, from: head) > 0 {
            let second = secondRequestTime()
            deadline = min(deadline ?? second, second)
        }
        if requestsResends, bufferedCount > 0, let check = nackCheckAt {
            deadline = min(deadline ?? check, check)
        }
        return deadline
    }

    /// When the gap ahead of the oldest waiting packet is skipped: `waitBound` after its (equalised) arrival, but
    /// no later than `maxHold` after it came in. Insertions are in time order, so no later entry's limit is earlier.
    private var frontSkipTime: UInt64 {
        let waited = fifoArrivals[fifoStart].addingReportingOverflow(waitBound)
        let limit = fifoInsertions[fifoStart].addingReportingOverflow(maxHold)
        var skip = waited.overflow ? UInt64.max : waited.partialValue
        // `asksLateHeadGapAgain`: a late head gap waits for its second request, then for that repair.
        if asksLateHeadGapAgain, requestsResends, slots[Int(head) & mask] == nil, !isAbandoned(head),
           distance(requestedThrough, from: head) > 0, secondRequestTime() <= skip {
            if rerequestedHead != head {
                skip = .max
            } else {
                let repaired = rerequestedAt.addingReportingOverflow(secondRequestRepairTime)
                skip = max(skip, repaired.overflow ? .max : repaired.partialValue)
            }
        }
        return min(skip, limit.overflow ? .max : limit.partialValue)
    }

    /// From the head's second request to its skip when the request is on time (`secondRequestTime`).
    private var secondRequestRepairTime: UInt64 {
        waitBound > resendRequestDelay ? (waitBound - resendRequestDelay) / 2 : 0
    }

    /// Lets the observed lateness fade (the engine calls this as time passes).
    mutating func decayLateness(by amount: UInt64) {
        observedLateness = observedLateness > amount ? observedLateness - amount : 0
    }

    mutating func decayReordering(by amount: UInt64) {
        reorderingDeviation = reorderingDeviation > amount ? reorderingDeviation - amount : 0
    }

    /// Approximate bytes of storage held, for the bounded-memory tests (independent of traffic).
    public var storageFootprint: Int {
        slots.capacity * MemoryLayout<Packet?>.stride + arrivals.capacity * 8 + seen.capacity * 8
            + fifoSequences.capacity * 4 + (fifoArrivals.capacity + fifoInsertions.capacity) * 8 + abandoned.capacity * 8 + bypassedAhead.capacity * 8
    }
}

/// Counters of the reorder buffer (monotonic, wrapping).
public struct ReorderStatistics: Sendable, Equatable {
    public var deliveredInOrder: UInt64 = 0
    public var deliveredLate: UInt64 = 0
    public var duplicates: UInt64 = 0
    public var stale: UInt64 = 0
    public var skippedSequences: UInt64 = 0
    public var jumps: UInt64 = 0
    public var overflows: UInt64 = 0
    public var resendRequests: UInt64 = 0
    /// Delivered at once on the caller's request (`insertBypassing`).
    public var bypassed: UInt64 = 0
    public init() {}
}

extension ReorderBuffer: Sendable where Packet: Sendable {}
