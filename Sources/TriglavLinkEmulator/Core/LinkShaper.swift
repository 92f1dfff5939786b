/// One direction of an emulated link, sans IO: given a packet's size and the time it arrived,
/// decides whether it is lost, dropped by the full queue, or when it leaves the link.
///
/// Time is injected (`now` in nanoseconds of any monotonic clock; it must never go backwards).
/// The shaper keeps no packets: the caller holds them until the returned release time. It allocates
/// only in `init` (the backlog ring), so `admit` is safe on a per-packet path. Owned by one thread.
public struct LinkShaper: ~Copyable {
    public enum Admission: Equatable, Sendable {
        /// Deliver the packet at this time.
        case release(at: UInt64)
        /// Dropped by the configured random loss.
        case lost
        /// Dropped because the queue was full.
        case queueFull
    }

    public let profile: LinkProfile
    public private(set) var statistics = LinkStatistics()

    private var random: RandomSource
    /// When the transmitter finishes the last admitted packet.
    private var transmitterFreeAt: UInt64 = 0
    /// Fraction of a nanosecond carried between serialization times (in units of 1/rate ns), so
    /// rounding never drifts the rate.
    private var serializationRemainder: UInt64 = 0
    /// Latest release time handed out, to keep packets in order unless reordering is allowed.
    private var lastReleaseTime: UInt64 = 0
    /// Packets admitted whose serialization hasn't finished: the queue the limit applies to.
    private var backlog: BacklogRing

    /// Most packets a byte-limited queue holds (1 MiB of minimum-size packets fits); a larger byte
    /// limit of tiny packets also drops at this count.
    private static let maximumTrackedPackets = 1 << 16
    /// Smallest IP packet, used to bound how many packets a byte limit can hold.
    private static let minimumPacketBytes = 20

    public init(profile: LinkProfile, seed: UInt64) {
        self.profile = profile
        random = RandomSource(seed: seed)
        let capacity: Int
        switch profile.queueLimit {
        case .packets(let packets): capacity = max(packets, 1)
        case .bytes(let bytes): capacity = min(bytes / Self.minimumPacketBytes + 1, Self.maximumTrackedPackets)
        }
        backlog = BacklogRing(capacity: capacity)
    }

    /// Bytes admitted but not yet fully transmitted at the last `admit` call.
    public var queuedBytes: Int { backlog.bytes }
    public var queuedPackets: Int { backlog.count }

    /// Decides the fate of a packet of `byteCount` bytes (IP packet size) arriving at `now`.
    public mutating func admit(byteCount: Int, now: UInt64) -> Admission {
        statistics.offeredPackets += 1
        statistics.offeredBytes += UInt64(byteCount)
        if profile.lossProbability > 0, random.nextUnitInterval() < profile.lossProbability {
            statistics.lostPackets += 1
            return .lost
        }

        let transmitFinish: UInt64
        if let rate = profile.rateBitsPerSecond {
            backlog.removeFinished(before: now)
            guard hasRoom(for: byteCount) else {
                statistics.queueDroppedPackets += 1
                return .queueFull
            }
            let start = max(now, transmitterFreeAt)
            let scaled = UInt64(byteCount) * 8 * 1_000_000_000 + serializationRemainder
            transmitFinish = start + scaled / rate
            serializationRemainder = scaled % rate
            transmitterFreeAt = transmitFinish
            backlog.append(finish: transmitFinish, bytes: byteCount)
        } else {
            transmitFinish = now
        }

        var release = transmitFinish + profile.delayNanoseconds
        if profile.jitterNanoseconds > 0 {
            let offset = jitterOffset()
            release = offset < 0 ? release - min(UInt64(-offset), release - transmitFinish) : release + UInt64(offset)
        }
        if !profile.allowsReordering {
            release = max(release, lastReleaseTime)
        }
        lastReleaseTime = max(lastReleaseTime, release)
        statistics.scheduledPackets += 1
        statistics.scheduledBytes += UInt64(byteCount)
        return .release(at: release)
    }

    private func hasRoom(for byteCount: Int) -> Bool {
        guard backlog.count < backlog.capacity else { return false }
        switch profile.queueLimit {
        case .packets(let packets): return backlog.count < packets
        case .bytes(let bytes): return backlog.bytes + byteCount <= bytes
        }
    }

    /// A signed offset in nanoseconds drawn from the configured distribution.
    private mutating func jitterOffset() -> Int64 {
        let jitter = Double(profile.jitterNanoseconds)
        switch profile.jitterDistribution {
        case .uniform:
            return Int64(((random.nextUnitInterval() * 2 - 1) * jitter).rounded())
        case .normal:
            // Irwin–Hall: the sum of 12 uniforms minus 6 has mean 0 and variance 1, is bounded at ±6,
            // and needs no math library.
            var sum = 0.0
            for _ in 0..<12 { sum += random.nextUnitInterval() }
            return Int64(((sum - 6) * jitter).rounded())
        }
    }
}

/// Fixed-capacity FIFO of (finish time, bytes) for packets in the transmit queue. Finish times are
/// non-decreasing because the transmitter serves packets in order.
struct BacklogRing: ~Copyable {
    private let finishTimes: UnsafeMutablePointer<UInt64>
    private let sizes: UnsafeMutablePointer<Int32>
    let capacity: Int
    private var head = 0
    private(set) var count = 0
    private(set) var bytes = 0

    init(capacity: Int) {
        self.capacity = capacity
        finishTimes = .allocate(capacity: capacity)
        sizes = .allocate(capacity: capacity)
    }

    deinit {
        finishTimes.deallocate()
        sizes.deallocate()
    }

    mutating func removeFinished(before now: UInt64) {
        while count > 0, finishTimes[head] <= now {
            bytes -= Int(sizes[head])
            head = head + 1 == capacity ? 0 : head + 1
            count -= 1
        }
    }

    mutating func append(finish: UInt64, bytes byteCount: Int) {
        precondition(count < capacity, "caller checks room before appending")
        var tail = head + count
        if tail >= capacity { tail -= capacity }
        finishTimes[tail] = finish
        sizes[tail] = Int32(clamping: byteCount)
        count += 1
        bytes += byteCount
    }
}
