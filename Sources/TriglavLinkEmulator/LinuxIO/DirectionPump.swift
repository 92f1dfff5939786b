internal import CTriglavShims
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What one direction of the bridge has done so far. Snapshot value.
public struct DirectionCounters: Equatable, Sendable {
    /// The emulation's own counters: offered, lost, queue drops, scheduled.
    public var link = LinkStatistics()
    /// Frames read from the receiving interface (own transmissions excluded).
    public var receivedPackets: UInt64 = 0
    /// Frames larger than a slot (segmentation offloads left on?), dropped.
    public var oversizeDroppedPackets: UInt64 = 0
    public var largestOversizeFrame = 0
    /// Frames written to the other interface, and their bytes including the Ethernet header.
    public var transmittedPackets: UInt64 = 0
    public var transmittedBytes: UInt64 = 0
    /// Frames the kernel refused to send (interface down, no buffer space), dropped.
    public var transmitErrors: UInt64 = 0
    public var lastTransmitErrno: Int32 = 0
    /// Times the receiving interface went down under the socket (not fatal).
    public var receiveInterruptions: UInt64 = 0

    public init() {}
}

/// Moves frames from one interface to the other through a `LinkShaper`: receives batches straight
/// into preallocated slots, asks the shaper when each leaves, parks it in a `ReleaseQueue`, and
/// sends what is due in batches. Nothing is allocated per packet.
///
/// Lifetime and threading: created on the main thread, then `run` is called on exactly one
/// dedicated thread, which from then on is the only one touching the mutable state; other threads
/// read `counters` (behind a mutex) and set the stop flag.
final class DirectionPump: @unchecked Sendable {
    let name: String
    private let receiver: PacketSocket
    private let transmitter: PacketSocket
    private var shaper: LinkShaper
    private var releases: ReleaseQueue
    private var local = DirectionCounters()
    private let published = Mutex(DirectionCounters())
    private let fatal = Mutex<LinkEmulatorError?>(nil)

    private let slotSize: Int
    private let slotCount: Int
    private let slotMemory: UnsafeMutableRawPointer
    private let frameLengths: UnsafeMutablePointer<UInt32>
    private let freeSlots: UnsafeMutablePointer<Int32>
    private var freeCount: Int

    private static let batchSize = Int(TG_PACKET_MAX_BATCH)
    private let batchBuffers: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    private let batchSlots: UnsafeMutablePointer<Int32>
    private let batchLengths: UnsafeMutablePointer<UInt32>
    private let batchTypes: UnsafeMutablePointer<UInt8>
    private let batchArrivals: UnsafeMutablePointer<UInt64>
    /// Arrival time given to the shaper last; arrivals never go backwards.
    private var lastArrival: UInt64 = 0

    /// Ethernet header, not counted by the link rate (see `LinkProfile`).
    private static let ethernetHeaderBytes = 14
    /// Longest sleep, so the stop flag is noticed promptly.
    private static let maximumWaitNanoseconds: UInt64 = 100_000_000
    /// Kernel arrival stamps older than this are distrusted (the realtime clock was stepped).
    private static let maximumTrustedStampAge: UInt64 = 1_000_000_000
    /// Timer slack for this thread: release times are kept to about this precision.
    private static let timerSlackNanoseconds: UInt = 1_000

    init(name: String, from receiver: PacketSocket, to transmitter: PacketSocket, profile: LinkProfile,
         seed: UInt64, slotSize: Int, slotCount: Int) {
        self.name = name
        self.receiver = receiver
        self.transmitter = transmitter
        shaper = LinkShaper(profile: profile, seed: seed)
        releases = ReleaseQueue(capacity: slotCount)
        self.slotSize = slotSize
        self.slotCount = slotCount
        // Pages of never-used slots are never touched, so a generous pool costs address space only.
        slotMemory = .allocate(byteCount: slotSize * slotCount, alignment: 64)
        frameLengths = .allocate(capacity: slotCount)
        freeSlots = .allocate(capacity: slotCount)
        // Low slot numbers on top of the free stack: the working set stays in the same few pages.
        for index in 0..<slotCount { freeSlots[index] = Int32(slotCount - 1 - index) }
        freeCount = slotCount
        batchBuffers = .allocate(capacity: Self.batchSize)
        batchSlots = .allocate(capacity: Self.batchSize)
        batchLengths = .allocate(capacity: Self.batchSize)
        batchTypes = .allocate(capacity: Self.batchSize)
        batchArrivals = .allocate(capacity: Self.batchSize)
    }

    deinit {
        slotMemory.deallocate()
        frameLengths.deallocate()
        freeSlots.deallocate()
        batchBuffers.deallocate()
        batchSlots.deallocate()
        batchLengths.deallocate()
        batchTypes.deallocate()
        batchArrivals.deallocate()
    }

    var counters: DirectionCounters { published.withLock { $0 } }
    var failure: LinkEmulatorError? { fatal.withLock { $0 } }

    /// The pump loop; returns when `stop` is set or receiving fails for good.
    func run(until stop: borrowing Atomic<Bool>) {
        _ = tg_packet_set_timer_slack_ns(Self.timerSlackNanoseconds)
        while !stop.load(ordering: .relaxed) {
            transmitDue(now: MonotonicClock.now())
            let now = MonotonicClock.now()
            var wait = Self.maximumWaitNanoseconds
            if let next = releases.nextReleaseTime { wait = next > now ? min(next - now, wait) : 0 }
            if wait > 0 {
                // With no free slot, sleep until a release frees one instead of spinning on input.
                let result = tg_packet_wait_readable(freeCount > 0 ? receiver.descriptor : -1, wait)
                if result < 0 { return fail(.systemCall("ppoll", interface: receiver.interfaceName, errno: -result)) }
            }
            if freeCount > 0, !receiveBatch() { return }
            published.withLock { $0 = local }
        }
        published.withLock { $0 = local }
    }

    private func fail(_ error: LinkEmulatorError) {
        fatal.withLock { $0 = error }
        published.withLock { $0 = local }
    }

    @inline(__always) private func slotPointer(_ slot: Int32) -> UnsafeMutableRawPointer {
        slotMemory + Int(slot) * slotSize
    }

    /// Receives up to one batch. Returns false after a fatal receive error.
    private func receiveBatch() -> Bool {
        let count = min(Self.batchSize, freeCount)
        for index in 0..<count {
            freeCount -= 1
            let slot = freeSlots[freeCount]
            batchSlots[index] = slot
            batchBuffers[index] = slotPointer(slot)
        }
        let received = tg_packet_receive_batch(receiver.descriptor, batchBuffers, slotSize, batchLengths, batchTypes,
                                               batchArrivals, UInt32(count))
        let now = MonotonicClock.now()
        let realtimeNow = tg_packet_realtime_ns()
        let accepted = max(Int(received), 0)
        for index in 0..<accepted {
            let slot = batchSlots[index]
            let length = Int(batchLengths[index])
            if !receiver.kernelIgnoresOutgoing && batchTypes[index] == UInt8(TG_PACKET_TYPE_OUTGOING) {
                releaseSlot(slot)
                continue
            }
            local.receivedPackets += 1
            if length > slotSize {
                local.oversizeDroppedPackets += 1
                local.largestOversizeFrame = max(local.largestOversizeFrame, length)
                releaseSlot(slot)
                continue
            }
            // The kernel's arrival stamp, not the time this thread got to run: a receiver that was
            // descheduled for a while must not make the link look idle (and lose its capacity).
            var arrival = now
            let stamp = batchArrivals[index]
            if stamp != 0, stamp <= realtimeNow, realtimeNow - stamp < Self.maximumTrustedStampAge {
                arrival = now - min(realtimeNow - stamp, now)
            }
            arrival = max(arrival, lastArrival)
            lastArrival = arrival
            switch shaper.admit(byteCount: max(length - Self.ethernetHeaderBytes, 0), now: arrival) {
            case .release(let time):
                frameLengths[Int(slot)] = UInt32(length)
                // Capacity equals the slot count, so a held slot always fits.
                _ = releases.push(slot: slot, releaseTime: time)
            case .lost, .queueFull:
                releaseSlot(slot)
            }
        }
        for index in accepted..<count { releaseSlot(batchSlots[index]) }
        local.link = shaper.statistics
        if received == -ENETDOWN {
            // The interface was set down; the socket is bound again when it comes back up.
            local.receiveInterruptions += 1
            return true
        }
        if received < 0 {
            fail(.systemCall("recvmmsg", interface: receiver.interfaceName, errno: -received))
            return false
        }
        return true
    }

    @inline(__always) private func releaseSlot(_ slot: Int32) {
        freeSlots[freeCount] = slot
        freeCount += 1
    }

    /// Sends every packet whose release time has come, in batches.
    private func transmitDue(now: UInt64) {
        while true {
            var count = 0
            while count < Self.batchSize, let entry = releases.popDue(now: now) {
                batchSlots[count] = entry.slot
                batchBuffers[count] = slotPointer(entry.slot)
                batchLengths[count] = frameLengths[Int(entry.slot)]
                count += 1
            }
            if count == 0 { return }
            var offset = 0
            while offset < count {
                let sent = tg_packet_send_batch(transmitter.descriptor, batchBuffers + offset, batchLengths + offset,
                                                UInt32(count - offset))
                if sent > 0 {
                    for index in offset..<(offset + Int(sent)) {
                        local.transmittedPackets += 1
                        local.transmittedBytes += UInt64(batchLengths[index])
                    }
                    offset += Int(sent)
                } else {
                    // The frame at `offset` can't go (interface down, no buffer space): drop it, go on.
                    local.transmitErrors += 1
                    local.lastTransmitErrno = -sent
                    offset += 1
                }
            }
            for index in 0..<count { releaseSlot(batchSlots[index]) }
            if count < Self.batchSize { return }
        }
    }
}
