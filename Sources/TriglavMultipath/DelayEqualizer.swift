import TriglavCore

/// Receiver-side path-delay equalisation: packets that arrived over a faster uplink are held until the
/// slowest uplink that carries data would have delivered them, so every packet of a flow sees about the
/// same path delay.
///
/// Why: a sender's congestion control measures the path by its fastest packets. BBR caps data in flight at
/// twice bandwidth × minimum RTT; striped over a 5 ms and a 45 ms uplink, the minimum RTT is the 5 ms
/// link's while most data rides the 45 ms one, so the flow is held to a fraction of the summed rate
/// (docs/BENCHMARKS.md, "Lab aggregate"). Equalised, the minimum RTT is the path's real one.
///
/// Sits after the reorder buffer: the buffer releases packets in sequence order, this FIFO keeps that
/// order and releases each packet at `arrival + hold(uplink)` (never before the packet ahead of it).
/// Holds come from the uplinks' one-way transit (probe arrival − sender timestamp, smoothed; only
/// differences between uplinks matter, so the peers' clocks need no synchronisation), recomputed by
/// `updatePaths` as the estimates change.
///
/// Invariants: at most `capacity` packets are held; a path's hold is at most `maxHold`, and a packet
/// leaves at its arrival plus its path's hold, or right after the packet ahead of it, whichever is later —
/// but never after the `latest` it was queued with (the packets ahead of it leave by then too);
/// under `pressure` (the caller's storage nearly full) the head leaves at once. All storage is allocated
/// in `init`; nothing per packet. A value type owned by the engine, driven by one thread.
public struct DelayEqualizer<Packet> {
    /// One uplink's view for `updatePaths`.
    public struct PathDelay: Sendable, Equatable {
        public var id: UplinkID
        /// Smoothed one-way transit relative to a base shared by all paths (nanoseconds, may be negative);
        /// nil when unknown or stale: such a path is neither held nor sets the target.
        public var transit: Int64?
        /// Smoothed variation of the transit between samples (RFC 3550-style jitter).
        public var jitter: UInt64
        /// The path is alive (not down) and the sender may send data on it.
        public var isUsable: Bool
        /// The sender stripes over this path whenever it needs capacity (an unmetered primary uplink), so it
        /// sets the target before any data arrived on it: a flow's first RTT samples (the handshake) must
        /// already be equalised, as BBR keeps its minimum for 10 s. Other usable paths set the target only
        /// while they carry data (within `dataWindow`).
        public var isAlwaysStriped: Bool

        public init(id: UplinkID, transit: Int64?, jitter: UInt64, isUsable: Bool, isAlwaysStriped: Bool) {
            self.id = id
            self.transit = transit
            self.jitter = jitter
            self.isUsable = isUsable
            self.isAlwaysStriped = isAlwaysStriped
        }
    }

    /// Counters (monotonic, wrapping).
    public struct Statistics: Sendable, Equatable {
        /// Packets that left later than they would have without equalisation.
        public var held: UInt64 = 0
        /// Sum of those extra delays (nanoseconds), for the mean hold.
        public var totalHold: UInt64 = 0
        /// Packets released before their time because the caller's storage was nearly full.
        public var releasedEarly: UInt64 = 0
        public init() {}
    }

    /// A usable path that carried data within this long sets the target (BBR's minimum-RTT window: a flow
    /// striped over it may still remember its RTT).
    public static var dataWindow: UInt64 { 10 * Nanoseconds.second }

    public let capacity: Int
    /// The longest hold of any path (bounds the latency added); 0 turns equalisation off.
    public var maxHold: UInt64
    private var packets: [Packet?]
    private var releaseTimes: [UInt64]
    private var start = 0
    public private(set) var count = 0
    private var tailRelease: UInt64 = 0
    private var pathIDs: [UplinkID]
    private var pathHolds: [UInt64]
    private var pathLastData: [UInt64?]
    private var scratchLastData: [UInt64?]
    private var pathCount = 0
    public private(set) var statistics = Statistics()

    /// - Parameters:
    ///   - capacity: packets held at most (1 to `MultipathLimits.maxReorderCapacity`).
    ///   - maxHold: the longest hold of any path; 0 turns equalisation off (every packet passes at once).
    public init(capacity: Int, maxHold: UInt64) throws(MultipathError) {
        guard capacity >= 1, capacity <= MultipathLimits.maxReorderCapacity else {
            throw .invalidConfiguration(field: "equalizerCapacity", value: String(capacity),
                                        reason: "must be 1 to \(MultipathLimits.maxReorderCapacity)")
        }
        self.capacity = capacity
        self.maxHold = maxHold
        packets = Array(repeating: nil, count: capacity)
        releaseTimes = Array(repeating: 0, count: capacity)
        pathIDs = Array(repeating: UplinkID(0), count: MultipathLimits.maxUplinks)
        pathHolds = Array(repeating: 0, count: MultipathLimits.maxUplinks)
        pathLastData = Array(repeating: nil, count: MultipathLimits.maxUplinks)
        scratchLastData = Array(repeating: nil, count: MultipathLimits.maxUplinks)
    }

    public var isEmpty: Bool { count == 0 }

    // MARK: Holds

    /// Recomputes every path's hold from `count` paths (`path(i)` for i in 0..<count; at most
    /// `MultipathLimits.maxUplinks` are used). The target is the largest transit among paths that set it
    /// (see `PathDelay`); a path `d` faster than the target is held `d` plus a jitter margin of up to `d`
    /// (the target path's jitter), so its packets don't beat the slow path's typical late ones, while the
    /// slowest path itself is never held. With fewer than two paths setting the target nothing is held.
    ///
    /// `assumingLongestHold`: some path's delay is not known yet (the caller's uplinks are still being measured),
    /// so the target isn't either; every path is held `maxHold` until it is.
    public mutating func updatePaths(count: Int, now: UInt64, assumingLongestHold: Bool = false,
                                     _ path: (Int) -> PathDelay) {
        let count = min(count, MultipathLimits.maxUplinks)
        // Carry each path's last data arrival over by ID (the caller's order may change).
        for index in 0..<count {
            let id = path(index).id
            scratchLastData[index] = nil
            for old in 0..<pathCount where pathIDs[old] == id { scratchLastData[index] = pathLastData[old] }
        }
        var target: Int64 = .min
        var targetJitter: UInt64 = 0
        var candidates = 0
        for index in 0..<count {
            let delay = path(index)
            pathIDs[index] = delay.id
            pathLastData[index] = scratchLastData[index]
            guard let transit = delay.transit, delay.isUsable else { continue }
            let carriesData = pathLastData[index].map { now >= $0 && now - $0 <= Self.dataWindow } ?? false
            guard delay.isAlwaysStriped || carriesData else { continue }
            candidates += 1
            if transit > target {
                target = transit
                targetJitter = delay.jitter
            }
        }
        pathCount = count
        for index in 0..<count {
            if assumingLongestHold {
                pathHolds[index] = maxHold
                continue
            }
            let delay = path(index)
            guard candidates >= 2, maxHold > 0, let transit = delay.transit, target > transit else {
                pathHolds[index] = 0
                continue
            }
            let difference = UInt64(clamping: target - transit)
            pathHolds[index] = min(maxHold, difference &+ min(targetJitter, difference))
        }
    }

    /// The longest current hold: the part of the uplinks' delay spread the equaliser absorbs.
    public var largestHold: UInt64 {
        var largest: UInt64 = 0
        for index in 0..<pathCount { largest = max(largest, pathHolds[index]) }
        return largest
    }

    /// The current hold of packets arriving on `uplink` (0 for an unknown uplink).
    public func hold(for uplink: UplinkID) -> UInt64 {
        for index in 0..<pathCount where pathIDs[index] == uplink { return pathHolds[index] }
        return 0
    }

    /// Records that data arrived on `uplink` at `now` and returns its hold (one pass over ≤ 16 paths).
    public mutating func noteData(on uplink: UplinkID, at now: UInt64) -> UInt64 {
        for index in 0..<pathCount where pathIDs[index] == uplink {
            pathLastData[index] = now
            return pathHolds[index]
        }
        return 0
    }

    // MARK: Packets (hot path: no allocation)

    /// Whether a packet due at `releaseAt` may leave at once, skipping the FIFO (nothing waits ahead of it).
    public func canPassThrough(releaseAt: UInt64, now: UInt64) -> Bool { count == 0 && releaseAt <= now }

    /// Queues `packet` behind the ones held, to leave at `releaseAt` or right after the one ahead of it,
    /// whichever is later (order is kept), but no later than `latest` (or `now`, if that has passed): the packets
    /// ahead of it then leave by that time too. Returns false, keeping nothing, when the FIFO is full.
    public mutating func enqueue(_ packet: Packet, releaseAt: UInt64, latest: UInt64 = .max, now: UInt64) -> Bool {
        guard count < capacity else { return false }
        var release = count == 0 ? releaseAt : max(releaseAt, tailRelease)
        if release > latest {
            // The caller's bound on the packet's total hold (`maxReorderHold`) wins over equalisation. Release
            // times stay in FIFO order, so the ones ahead are brought forward (a walk from the tail that stops at
            // the first one already due by then).
            release = max(latest, now)
            var position = count
            while position > 0 {
                let slot = (start + position - 1) % capacity
                guard releaseTimes[slot] > release else { break }
                releaseTimes[slot] = release
                position -= 1
            }
        }
        let tail = (start + count) % capacity
        packets[tail] = packet
        releaseTimes[tail] = release
        count += 1
        tailRelease = release
        if release > now {
            statistics.held &+= 1
            statistics.totalHold &+= release - now
        }
        return true
    }

    /// The head packet if it is due at `now`, or at once under `pressure` (the caller's storage is nearly
    /// full: equalisation yields rather than make the caller drop packets).
    public mutating func dequeue(now: UInt64, pressure: Bool = false) -> Packet? {
        guard count > 0 else { return nil }
        let due = releaseTimes[start] <= now
        guard due || pressure else { return nil }
        if !due { statistics.releasedEarly &+= 1 }
        let packet = packets[start]
        packets[start] = nil
        start = (start + 1) % capacity
        count -= 1
        return packet
    }

    /// When the head packet is due (nil: nothing held).
    public var nextDeadline: UInt64? { count > 0 ? releaseTimes[start] : nil }

    /// Bytes of fixed storage, for the bounded-memory tests.
    public var storageFootprint: Int {
        packets.capacity * MemoryLayout<Packet?>.stride + releaseTimes.capacity * 8
            + pathIDs.capacity * MemoryLayout<UplinkID>.stride + pathHolds.capacity * 8
            + (pathLastData.capacity + scratchLastData.capacity) * MemoryLayout<UInt64?>.stride
    }
}

extension DelayEqualizer: Sendable where Packet: Sendable {}
