#if canImport(Glibc)
import Glibc
#endif
import TriglavCore
import TriglavMultipath

/// Whether tunnels pace what they send (docs/DATAPLANE.md, "Sender-side pacing"): on, both roles, unless the
/// environment variable `TRIGLAV_PACING` is `0` (a diagnostic override; `[multipath] pacing = false` is the
/// configuration's way, through `ClientTunnelConfiguration.pacing` / `ServerTunnelConfiguration.pacing`).
enum PacingSwitch {
    static let environmentVariable = "TRIGLAV_PACING"
    /// What the network's queue (an uplink's buffer) is allowed to hold: the engine hands an uplink its next packet
    /// only when its modelled queue drains below this (`MultipathConfiguration.pacingQueueAllowance`). 20 ms, not the
    /// simulator's 5: the engine's probes count a link as full (and stop its probing gain, so a low capacity
    /// estimate can't rise) when an RTT sample lies more than the allowance + 3 ms + the RTT jitter above the
    /// minimum, and on the lab's jittery links (± 5 ms and ± 10 ms each way) that fired most of the time at 5 ms:
    /// the wifi link's estimate took ~12 s from the initial 10 Mbit/s to its 30, and a BBR download got 58 % of
    /// the links' sum. At 20 ms the estimates reach the links' rates within a second (docs/BENCHMARKS.md).
    static let queueAllowance: UInt64 = 20 * Nanoseconds.millisecond
    /// The standing queue the engine's AQM allows on our side (`ingressQueueTarget`), as the simulator's.
    static let ingressQueueTarget: UInt64 = 120 * Nanoseconds.millisecond
    /// RTT jitters beyond the allowance a probe's queue may show before its link counts as full
    /// (`MultipathConfiguration.pacingFullJitterMultiple`): about the jitter's whole range, so the lab's jittery links
    /// keep their probing gain while their estimates climb (docs/DATAPLANE.md, "Sender-side pacing").
    static let fullJitterMultiple: UInt64 = 3

    static var enabledByEnvironment: Bool { EnvironmentSwitch.isOn(environmentVariable) }

    /// Experiment knobs (not configuration): `TRIGLAV_PACING_ALLOWANCE_MS` replaces `queueAllowance`,
    /// `TRIGLAV_PACING_TARGET_MS` the ingress target, `TRIGLAV_PACING_INITIAL_MBIT` the engine's initial capacity.
    static func environmentNumber(_ name: String) -> UInt64? {
        guard let value = getenv(name), let number = UInt64(String(cString: value)), number > 0 else { return nil }
        return number
    }

    /// Turns pacing off in `configuration`: packets go to the uplink sockets as they come (no queue of ours).
    static func disable(in configuration: inout MultipathConfiguration) {
        configuration.pacingQueueAllowance = nil
        configuration.ingressQueueTarget = nil
        configuration.asksLateHeadGapAgain = false
    }

    /// Turns pacing on in `configuration`.
    static func enable(in configuration: inout MultipathConfiguration) {
        configuration.pacingQueueAllowance = environmentNumber("TRIGLAV_PACING_ALLOWANCE_MS").map { $0 * Nanoseconds.millisecond }
            ?? queueAllowance
        configuration.ingressQueueTarget = environmentNumber("TRIGLAV_PACING_TARGET_MS").map { $0 * Nanoseconds.millisecond }
            ?? ingressQueueTarget
        configuration.pacingFullJitterMultiple = environmentNumber("TRIGLAV_PACING_FULL_JITTERS") ?? fullJitterMultiple
        // Late binding ranks by equalised arrival (the receivers equalise: `defaultMultipath`), so the slow uplink
        // carries its share from the start; `TRIGLAV_PACING_EQUALIZED_BINDING=0` ranks by raw arrival (experiment).
        configuration.equalizedLateBinding = EnvironmentSwitch.isOn("TRIGLAV_PACING_EQUALIZED_BINDING")
        configuration.asksLateHeadGapAgain = true
        if let megabits = environmentNumber("TRIGLAV_PACING_INITIAL_MBIT") { configuration.initialCapacity = megabits * 1_000_000 }
        if let wait = environmentNumber("TRIGLAV_PACING_MIN_WAIT_MS") { configuration.minReorderWait = wait * Nanoseconds.millisecond }
        if let hold = environmentNumber("TRIGLAV_PACING_MAX_HOLD_MS") { configuration.maxReorderHold = hold * Nanoseconds.millisecond }
    }
}

/// What a `PacedSendQueue` lets go next (see `PacedSendQueue.next`).
enum PacedRelease: Equatable {
    /// Resend `sequence` (its bytes are in the tunnel's retransmit store) on `uplink`, then report `packetSent`.
    case resend(UplinkID, sequence: UInt32)
    /// The shared queue's head, bound to `uplink` now: number it, send it, report `packetSent`, then `release(slot)`.
    case data(UplinkID, slot: Int)
    /// The engine's AQM shed the shared queue's head (no sequence yet, so the receiver sees no gap); already freed.
    case shed
}

/// Fixed-capacity FIFO of `UInt64` entries. Allocates once, at `init`.
struct FixedRing {
    private var storage: [UInt64]
    private var head = 0
    private(set) var count = 0
    var capacity: Int { storage.count }
    var isEmpty: Bool { count == 0 }

    init(capacity: Int) { storage = Array(repeating: 0, count: max(1, capacity)) }

    /// False when full (nothing stored).
    mutating func push(_ value: UInt64) -> Bool {
        guard count < storage.count else { return false }
        storage[(head + count) % storage.count] = value
        count += 1
        return true
    }

    mutating func pop() -> UInt64? {
        guard count > 0 else { return nil }
        defer { head = (head + 1) % storage.count; count -= 1 }
        return storage[head]
    }

    var first: UInt64? { count > 0 ? storage[head] : nil }

    mutating func removeAll() {
        head = 0
        count = 0
    }

    subscript(offset: Int) -> UInt64 { storage[(head + offset) % storage.count] }

    /// Removes the entry `offset` places behind the head, moving the later ones up: O(count − offset), no allocation.
    @discardableResult
    mutating func remove(at offset: Int) -> UInt64 {
        precondition(offset >= 0 && offset < count, "ring offset \(offset) out of 0..<\(count)")
        let removed = self[offset]
        for index in offset..<(count - 1) {
            storage[(head + index) % storage.count] = storage[(head + index + 1) % storage.count]
        }
        count -= 1
        return removed
    }
}

/// The repairs a `PacedSendQueue` handed out lately, so that a failover resend a later repair already carried is
/// skipped (`PacedSendQueue.supersededFailoverResends`). A fixed open table indexed by `sequence & mask`: each slot
/// holds the last repaired sequence that maps to it (the full 32 bits, so colliding sequences never match each other)
/// and the repair generation it went out in (a counter that only grows, one step per repair handed out). A collision
/// overwrites the older sequence: its failover resend is then sent — a duplicate at worst, never a suppressed resend.
/// Each slot also keeps the uplink the repair went out on (`PacedSendQueue.lastRepairUplink`: a failover resend of a
/// repair that went out on the uplink now dead is a lost repair; a collision only queues that one with the failover
/// backlog, as before the lost-repair lane existed). Allocated at the first resend queued (a queue that never resends
/// costs nothing); no allocation after.
struct SentRepairTable {
    /// Slots: 4× a lane's capacity, so a failover backlog's worth of consecutive repairs never collides.
    static let defaultCapacity = 1024
    let capacity: Int
    private var sequences: [UInt32] = []
    /// Generation of each slot's repair; 0 = empty (generations start at 1).
    private var generations: [UInt64] = []
    /// The uplink each slot's repair went out on.
    private var uplinks: [UInt32] = []
    /// Repairs handed out since allocation: the stamp of a failover resend queued now.
    private(set) var generation: UInt64 = 0

    init(capacity: Int = SentRepairTable.defaultCapacity) {
        var size = 1
        while size < max(1, capacity) { size <<= 1 }
        self.capacity = size
    }

    var isAllocated: Bool { !sequences.isEmpty }

    mutating func allocate() {
        guard !isAllocated else { return }
        sequences = Array(repeating: 0, count: capacity)
        generations = Array(repeating: 0, count: capacity)
        uplinks = Array(repeating: 0, count: capacity)
    }

    /// `sequence` went out as a repair on `uplink` now (nothing is kept before `allocate`).
    mutating func record(_ sequence: UInt32, on uplink: UplinkID) {
        guard isAllocated else { return }
        generation &+= 1
        let slot = Int(sequence) & (capacity - 1)
        sequences[slot] = sequence
        generations[slot] = generation
        uplinks[slot] = uplink.rawValue
    }

    /// The uplink `sequence`'s last repair went out on, nil when none is remembered.
    func uplink(of sequence: UInt32) -> UplinkID? {
        guard isAllocated else { return nil }
        let slot = Int(sequence) & (capacity - 1)
        return sequences[slot] == sequence && generations[slot] > 0 ? UplinkID(uplinks[slot]) : nil
    }

    /// Whether `sequence` went out as a repair after `stamp` (the generation when its failover resend was queued).
    func repaired(_ sequence: UInt32, after stamp: UInt64) -> Bool {
        guard isAllocated else { return false }
        let slot = Int(sequence) & (capacity - 1)
        return sequences[slot] == sequence && generations[slot] > stamp
    }
}

/// Sender-side pacing with late binding for one tunnel (docs/MULTIPATH.md, "Sender-side pacing" and "Late binding";
/// the simulator's `TunnelNode` is the reference for the call order). New packets wait unnumbered in **one** shared
/// FIFO; `next` binds the head to an uplink only when the engine says one can send it now (`dequeueShared`), so the
/// standing queue sits here, in sequence order, instead of in the uplinks' buffers, where every repair waited
/// behind ~100 ms of data. Resends (repairs the receiver asked for, then failover resends of a dead uplink's
/// packets) wait in per-uplink FIFOs of sequence numbers, ahead of the shared queue; their bytes stay in the
/// retransmit store. A failover resend whose sequence went out again as a repair (on any uplink) after the failover
/// resend was queued is skipped: the receiver asked for that hole again and got it, so the failover copy would only
/// be a duplicate delaying the older holes behind it (`SentRepairTable`; the simulator's rule). A lost repair — a
/// resend of a sequence whose last repair went out on (`lastRepairUplink`), or still waited for, the uplink found
/// dead: a hole the receiver has waited for longest and already spent a request on — goes ahead of every other resend
/// of its new uplink (the lost-repair FIFO; the caller says so, `queueResend(…lostRepair: true)`), instead of behind
/// the repairs of younger holes (docs/MULTIPATH.md, "Repairs lost with a dead uplink go first"; the simulator's
/// `lostRepairsFirst`).
///
/// TCP segments the engine's AQM dropped — refused at ingress or shed at the head — are remembered in a
/// `DroppedSegmentLedger` (keyed by `PacketClassifier.droppedSegmentKey`), and TCP's retransmission of one is
/// placed by `admitShared(…retransmitting:…)` (docs/MULTIPATH.md, "Retransmissions of dropped segments"): within a
/// second of a failover ahead of the shared queue (a small FIFO `next` drains first, through the same
/// `dequeueShared` call; its bytes count in the backlog), otherwise, for a shed segment, at the tail but
/// protected. A protected packet is never shed: when the engine says `.drop` with one at the head, the first
/// unprotected packet behind it goes instead (the head itself only when every queued packet is protected).
///
/// Memory is fixed: `sharedCapacity` packet slots of `slotSize` bytes shared by the shared queue and the FIFO ahead
/// of it (allocated at the first packet, so an idle client costs nothing; pages become resident only as deep as the
/// queue actually gets, the pool reusing its most recently freed slots first), `aheadCapacity` entries ahead (a
/// retransmission that finds them full joins the shared queue's tail, protected), the ledger's fixed table
/// (`ledgerCapacity` drops, ~32 KiB at the default; allocated at the first drop), and `resendCapacity`
/// entries per uplink lane (8 bytes each, 16 for a failover resend: its stamp; `lostRepairCapacity` lost repairs),
/// the table of repairs handed out (`SentRepairTable.defaultCapacity` slots of 16 bytes, allocated at the first
/// resend). Nothing here allocates per packet. Not thread-safe: used under the owning tunnel's lock.
final class PacedSendQueue {
    /// Packets the shared queue holds at most: ~1.4 MiB of 1432-byte slots, 190 ms of the lab's 60 Mbit/s. The
    /// engine's AQM keeps the queue near `PacingSwitch.ingressQueueTarget`; beyond this the newest is dropped.
    static let defaultSharedCapacity = 1024
    /// Resends queued per uplink (repairs and failover resends each).
    static let resendCapacity = 256
    /// Every resend one uplink's lane can hold (what is taken back from a dead uplink at most).
    static var laneCapacity: Int { 2 * resendCapacity + lostRepairCapacity }
    /// Failover resends of lost repairs queued per uplink ahead of its repairs: a failover loses a handful (the repairs
    /// sent on the uplink during its detection); beyond this they wait with the failover backlog.
    static let lostRepairCapacity = 32
    /// Retransmissions of dropped segments that may wait ahead of the shared queue: more than a failover's worth
    /// (the simulator's blackhole runs put at most a few dozen ahead in the recovery second).
    static let defaultAheadCapacity = 128

    let sharedCapacity: Int
    let slotSize: Int
    private var pool: PacketPool?
    /// Each queued packet, oldest first, as a `SharedEntry` (pool slot, protected bit, wire length).
    private var shared: FixedRing
    /// Retransmissions of dropped segments put ahead of `shared` (`.queuedAhead`), oldest first; all protected.
    private var ahead: FixedRing
    /// Wire bytes in the shared queue and ahead of it (what `admitShared`/`dequeueShared` call the backlog).
    private(set) var sharedBytes = 0
    /// The TCP segments the AQM dropped lately (nil until the first drop of one).
    private var ledger: DroppedSegmentLedger?
    let ledgerCapacity: Int
    private var lanes: [ResendLane] = []
    /// Packets refused at ingress because the shared queue was full (beyond the engine's own refusals).
    private(set) var overflowDrops: UInt64 = 0
    /// Packets the engine's AQM shed at the head of the shared queue.
    private(set) var shedPackets: UInt64 = 0
    /// Retransmissions of dropped segments put ahead of the shared queue (`.queuedAhead`).
    private(set) var retransmissionsAhead: UInt64 = 0
    /// Retransmissions of dropped segments queued protected at the tail (`.queuedProtected`, or ahead was full).
    private(set) var protectedRetransmissions: UInt64 = 0
    /// Failover resends skipped (not sent, nothing reported) because a repair of their sequence went out after they
    /// were queued.
    private(set) var supersededFailoverResends: UInt64 = 0
    /// The repairs handed out lately, with their generation and uplink (see `SentRepairTable`).
    private var sentRepairs = SentRepairTable()
    /// Lost repairs queued ahead of the repairs (`queueResend(…lostRepair: true)`).
    private(set) var lostRepairsAhead: UInt64 = 0

    /// The resends waiting for one uplink: failover resends of lost repairs first, then repairs, then the other
    /// failover resends. Entries: sequence (low 32 bits) and wire length (high 32 bits).
    struct ResendLane {
        let uplink: UplinkID
        var lostRepairs = FixedRing(capacity: PacedSendQueue.lostRepairCapacity)
        var repairs = FixedRing(capacity: PacedSendQueue.resendCapacity)
        var failover = FixedRing(capacity: PacedSendQueue.resendCapacity)
        /// The repair generation when each failover resend was queued, in step with `failover`.
        var failoverStamps = FixedRing(capacity: PacedSendQueue.resendCapacity)
        var isEmpty: Bool { lostRepairs.isEmpty && repairs.isEmpty && failover.isEmpty }
        /// The first repair-like resend to hand out (a lost repair, else a repair).
        mutating func popRepair() -> UInt64? { lostRepairs.pop() ?? repairs.pop() }

        mutating func removeAll() {
            lostRepairs.removeAll()
            repairs.removeAll()
            failover.removeAll()
            failoverStamps.removeAll()
        }
    }

    init(sharedCapacity: Int = PacedSendQueue.defaultSharedCapacity, slotSize: Int = TunnelMTU.largestDatagram,
         aheadCapacity: Int = PacedSendQueue.defaultAheadCapacity,
         ledgerCapacity: Int = DroppedSegmentLedger.defaultCapacity) {
        self.sharedCapacity = max(1, sharedCapacity)
        self.slotSize = slotSize
        self.ledgerCapacity = max(1, ledgerCapacity)
        shared = FixedRing(capacity: self.sharedCapacity)
        ahead = FixedRing(capacity: max(1, aheadCapacity))
        lanes.reserveCapacity(MultipathLimits.maxUplinks)
    }

    /// A queued packet: pool slot (bits 0–30), protected (bit 31: never shed), wire length (high 32 bits).
    private enum SharedEntry {
        static let protectedBit: UInt64 = 1 << 31
        static func make(slot: Int, wireLength: Int, isProtected: Bool) -> UInt64 {
            UInt64(UInt32(slot) & 0x7fff_ffff) | UInt64(UInt32(clamping: wireLength)) << 32 | (isProtected ? protectedBit : 0)
        }
        static func slot(_ entry: UInt64) -> Int { Int(UInt32(truncatingIfNeeded: entry) & 0x7fff_ffff) }
        static func wireLength(_ entry: UInt64) -> Int { Int(entry >> 32) }
        static func isProtected(_ entry: UInt64) -> Bool { entry & protectedBit != 0 }
    }

    /// Nothing waits: no shared packet, no resend.
    var isEmpty: Bool { shared.isEmpty && ahead.isEmpty && lanes.allSatisfy(\.isEmpty) }
    /// Packets in the shared queue, those ahead of it included.
    var sharedCount: Int { shared.count + ahead.count }
    /// Packets waiting ahead of the shared queue.
    var aheadCount: Int { ahead.count }
    /// Dropped segments the ledger remembers (answered ones are forgotten).
    var rememberedDrops: Int { ledger?.count ?? 0 }
    /// Whether the ledger remembers the dropped segment `key` (tests).
    func remembers(_ key: UInt64) -> Bool { ledger?.contains(key) ?? false }
    var resendCount: Int { lanes.reduce(0) { $0 + $1.lostRepairs.count + $1.repairs.count + $1.failover.count } }

    /// Ingress: queues `packet` (an inner IP packet; `wireLength` on the wire) where the engine's AQM puts it
    /// (`admitShared(…retransmitting:…)`, told whether a TCP segment retransmits one it dropped) if there is room.
    /// False: drop it (no sequence was given, so TCP sees the loss); a dropped TCP segment is remembered as refused.
    /// An ECN-capable packet the AQM chose to signal congestion with is queued marked Congestion Experienced instead.
    func admit(_ packet: UnsafeRawBufferPointer, wireLength: Int, engine: inout MultipathEngine<Int>, now: UInt64) -> Bool {
        let key = PacketClassifier.droppedSegmentKey(packet)
        let drop = key.flatMap { ledger?.take($0) }
        let admission = engine.admitShared(packetLength: wireLength, backlogBytes: sharedBytes, retransmitting: drop,
                                           ecnCapable: PacketClassifier.isECNCapable(packet), now: now)
        guard admission != .refused else {
            if let key { rememberDrop(key, as: .refused) }
            return false
        }
        let pool = self.pool ?? PacketPool(capacity: sharedCapacity, slotSize: slotSize)
        self.pool = pool
        let goesAhead = admission == .queuedAhead && ahead.count < ahead.capacity
        guard goesAhead || shared.count < sharedCapacity, let slot = pool.store(packet) else {
            overflowDrops &+= 1
            if let key { rememberDrop(key, as: .refused) }
            return false
        }
        if admission == .queuedCongestionExperienced { PacketClassifier.markCongestionExperienced(pool.mutablePacket(slot)) }
        let isProtected = admission == .queuedAhead || admission == .queuedProtected
        let entry = SharedEntry.make(slot: slot, wireLength: wireLength, isProtected: isProtected)
        if goesAhead {
            _ = ahead.push(entry)
            retransmissionsAhead &+= 1
        } else {
            _ = shared.push(entry)
            if isProtected { protectedRetransmissions &+= 1 }
        }
        sharedBytes += wireLength
        return true
    }

    /// Bytes of a packet `next` returned as `.data`; valid until `release(slot)`.
    func packet(_ slot: Int) -> UnsafeRawBufferPointer {
        pool?.packet(slot) ?? UnsafeRawBufferPointer(start: nil, count: 0)
    }

    /// Frees a slot `next` returned as `.data` (after its packet was sent or given up).
    func release(_ slot: Int) { pool?.release(slot) }

    /// Queues a resend of `sequence` (`wireLength` bytes) for `uplink`, as a repair (a receiver asked for it) or a
    /// failover resend (its uplink died); `lostRepair`: ahead of the repairs (a repair lost with a dead uplink; when
    /// that FIFO is full, with the failover resends). False when that lane is full.
    @discardableResult
    func queueResend(sequence: UInt32, wireLength: Int, on uplink: UplinkID, isRepair: Bool, lostRepair: Bool = false) -> Bool {
        let entry = UInt64(sequence) | UInt64(UInt32(clamping: wireLength)) << 32
        let index: Int
        if let existing = lanes.firstIndex(where: { $0.uplink == uplink }) {
            index = existing
        } else {
            guard lanes.count < MultipathLimits.maxUplinks else { return false }
            lanes.append(ResendLane(uplink: uplink))  // once per uplink, not per packet
            index = lanes.count - 1
        }
        sentRepairs.allocate()  // once per queue
        if lostRepair, lanes[index].lostRepairs.push(entry) {
            lostRepairsAhead &+= 1
            return true
        }
        if isRepair && !lostRepair { return lanes[index].repairs.push(entry) }
        guard lanes[index].failover.push(entry) else { return false }
        _ = lanes[index].failoverStamps.push(sentRepairs.generation)  // same capacity, in step: never full here
        return true
    }

    /// Whether the failover resend `entry` queued at repair generation `stamp` went out as a repair since.
    private func isSuperseded(_ entry: UInt64, stamp: UInt64) -> Bool {
        sentRepairs.repaired(UInt32(truncatingIfNeeded: entry), after: stamp)
    }

    /// The oldest failover resend of lane `index` still worth sending; superseded ones before it are dropped and counted.
    private func popFailover(lane index: Int) -> UInt64? {
        while let entry = lanes[index].failover.pop() {
            let stamp = lanes[index].failoverStamps.pop() ?? 0
            guard isSuperseded(entry, stamp: stamp) else { return entry }
            supersededFailoverResends &+= 1
        }
        return nil
    }

    /// The uplink whose lane still holds `sequence` unsent, and the wire bytes queued ahead of it there (for
    /// `scheduleResend(…, originalWaitsBehind:)`). A packet of the shared queue has no sequence yet, so only a
    /// queued resend can be "not sent yet".
    func waiting(_ sequence: UInt32) -> (uplink: UplinkID, bytesAhead: Int)? {
        /// Entries for which `skips` holds are passed over: they neither match nor count ahead.
        func find(in ring: FixedRing, bytes: inout Int, skips: (Int) -> Bool = { _ in false }) -> Bool {
            for offset in 0..<ring.count where !skips(offset) {
                let entry = ring[offset]
                if UInt32(truncatingIfNeeded: entry) == sequence { return true }
                bytes += Int(entry >> 32)
            }
            return false
        }
        for lane in lanes where !lane.isEmpty {
            var bytes = 0
            // A superseded failover resend won't be sent: it neither waits nor counts ahead of another.
            if find(in: lane.lostRepairs, bytes: &bytes) || find(in: lane.repairs, bytes: &bytes)
                || find(in: lane.failover, bytes: &bytes, skips: { isSuperseded(lane.failover[$0], stamp: lane.failoverStamps[$0]) }) {
                return (lane.uplink, bytes)
            }
        }
        return nil
    }

    /// Takes one queued resend of `uplink` (repairs first), e.g. to schedule it elsewhere when that uplink went down;
    /// `wasRepair`: it waited as a repair (or lost repair), so it is a repair lost with that uplink. Superseded
    /// failover resends are skipped (and counted), as `next` would; the caller queues the rest anew.
    func takeResend(of uplink: UplinkID) -> (sequence: UInt32, wireLength: Int, wasRepair: Bool)? {
        guard let index = lanes.firstIndex(where: { $0.uplink == uplink }) else { return nil }
        if let entry = lanes[index].popRepair() { return (UInt32(truncatingIfNeeded: entry), Int(entry >> 32), true) }
        guard let entry = popFailover(lane: index) else { return nil }
        return (UInt32(truncatingIfNeeded: entry), Int(entry >> 32), false)
    }

    /// The uplink `sequence`'s last repair went out on (nil: none remembered). The pumps count a resend of a sequence
    /// whose last repair went out on an uplink now down as a lost repair, and take it as the uplink of its last copy.
    func lastRepairUplink(_ sequence: UInt32) -> UplinkID? { sentRepairs.uplink(of: sequence) }

    /// How both pumps queue a resend of `sequence` (as the simulator's node decides it).
    struct ResendKind {
        /// The lane it still waits in, with the bytes ahead of it there (`scheduleResend`'s `originalWaitsBehind`).
        let waiting: (uplink: UplinkID, bytesAhead: Int)?
        /// The uplink of its last copy: where it waits, else where its last repair went, else where it first went.
        let original: UplinkID?
        /// That uplink is not down: the receiver asked for it (else it is a failover resend).
        let isRepair: Bool
        /// A failover resend whose last copy was a repair that went out on the uplink now down.
        let lostRepair: Bool
    }

    func classifyResend(_ sequence: UInt32, store: RetransmitStore, isDown: (UplinkID) -> Bool) -> ResendKind {
        let waiting = waiting(sequence)
        let repairedOn = lastRepairUplink(sequence)
        let original = waiting?.uplink ?? repairedOn ?? store.uplink(sequence: sequence)
        let isRepair = !(original.map(isDown) ?? false)
        return ResendKind(waiting: waiting, original: original, isRepair: isRepair,
                          lostRepair: !isRepair && waiting == nil && repairedOn != nil && repairedOn == original)
    }

    /// What to send next at `now`, or nil when the pacer says wait (see `nextWake`). Call until nil, reporting every
    /// packet sent to the engine (`packetSent`) before the next call: that moves the uplink's release time on.
    /// Resends go first, on uplinks whose pacer lets a packet go now; then the shared queue's head, bound to the
    /// uplink `dequeueShared` picks. Resends for an uplink the engine no longer knows are dropped (the receiver
    /// asks again, or skips the gap). A failover resend whose sequence went out as a repair after it was queued is
    /// skipped (`supersededFailoverResends`).
    func next(engine: inout MultipathEngine<Int>, now: UInt64) -> PacedRelease? {
        for index in lanes.indices where !lanes[index].isEmpty {
            guard let release = engine.releaseTime(on: lanes[index].uplink) else {
                lanes[index].removeAll()
                continue
            }
            guard release <= now else { continue }
            if let entry = lanes[index].popRepair() {
                let sequence = UInt32(truncatingIfNeeded: entry)
                sentRepairs.record(sequence, on: lanes[index].uplink)
                return .resend(lanes[index].uplink, sequence: sequence)
            }
            guard let entry = popFailover(lane: index) else { continue }
            return .resend(lanes[index].uplink, sequence: UInt32(truncatingIfNeeded: entry))
        }
        // Retransmissions put ahead go first, bound like any other packet of the shared queue.
        let headIsAhead = !ahead.isEmpty
        guard let head = ahead.first ?? shared.first else { return nil }
        switch engine.dequeueShared(packetLength: SharedEntry.wireLength(head), backlogBytes: sharedBytes, now: now) {
        case .wait:
            return nil
        case .drop:
            // A protected head stays (a segment is shed once); the first unprotected packet behind it goes. Everything
            // ahead is protected, so that one is in the shared ring.
            if SharedEntry.isProtected(head),
               let victim = (0..<shared.count).first(where: { !SharedEntry.isProtected(shared[$0]) }) {
                shed(shared.remove(at: victim))
            } else {
                _ = headIsAhead ? ahead.pop() : shared.pop()
                shed(head)
            }
            return .shed
        case .send(let uplink):
            _ = headIsAhead ? ahead.pop() : shared.pop()
            sharedBytes -= SharedEntry.wireLength(head)
            return .data(uplink, slot: SharedEntry.slot(head))
        }
    }

    /// Remembers the dropped TCP segment `key`; the ledger is created at the first drop.
    private func rememberDrop(_ key: UInt64, as drop: DroppedSegmentLedger.Drop) {
        if ledger == nil { ledger = DroppedSegmentLedger(capacity: ledgerCapacity) }
        ledger?.remember(key, as: drop)
    }

    /// Frees a packet the AQM shed (already taken off its queue), remembering it if it is a TCP segment.
    private func shed(_ entry: UInt64) {
        sharedBytes -= SharedEntry.wireLength(entry)
        if let pool {
            if let key = PacketClassifier.droppedSegmentKey(pool.packet(SharedEntry.slot(entry))) {
                rememberDrop(key, as: .shed)
            }
            pool.release(SharedEntry.slot(entry))
        }
        shedPackets &+= 1
    }

    /// When `next` may have something again (after it returned nil at `now`): the earliest future release time of
    /// an uplink with queued resends, and for a waiting shared queue the earliest future release time of any of
    /// `uplinks`, at most `sharedRecheck` away (the engine may hold the head back for an uplink that can send now,
    /// expecting a faster one to take it). nil when nothing waits.
    func nextWake<Uplinks: Sequence>(engine: MultipathEngine<Int>, uplinks: Uplinks, now: UInt64) -> UInt64?
    where Uplinks.Element == UInt32 {
        var wake: UInt64?
        for lane in lanes where !lane.isEmpty {
            guard let release = engine.releaseTime(on: lane.uplink) else { continue }
            wake = min(wake ?? .max, max(release, now))
        }
        if !shared.isEmpty || !ahead.isEmpty {
            var sharedWake = now &+ Self.sharedRecheck
            for raw in uplinks {
                if let release = engine.releaseTime(on: UplinkID(raw)), release > now { sharedWake = min(sharedWake, release) }
            }
            wake = min(wake ?? .max, sharedWake)
        }
        return wake
    }

    /// How soon a waiting shared queue is looked at again when no uplink's release time says otherwise.
    static let sharedRecheck: UInt64 = Nanoseconds.millisecond
}
