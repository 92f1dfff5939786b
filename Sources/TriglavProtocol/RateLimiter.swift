/// Per-source token bucket for handshake initiations with bounded memory: at most `capacity` sources
/// are tracked; idle entries (whose bucket has refilled) are purged when the table is full, and if it
/// is still full new sources are refused until entries age out. Keys are opaque 64-bit digests.
public struct RateLimiter: Sendable {
    private struct Bucket: Sendable {
        /// Stored time credit in nanoseconds; one initiation costs `cost`.
        var credit: UInt64
        var updatedAt: UInt64
    }

    private let cost: UInt64
    private let maximumCredit: UInt64
    public let capacity: Int
    private var buckets: [UInt64: Bucket] = [:]
    private var lastPurgeAt: UInt64?

    public init(perSecond: Int = ProtocolConstants.perSourceHandshakesPerSecond,
                burst: Int = ProtocolConstants.perSourceBurst,
                capacity: Int = ProtocolConstants.rateLimiterCapacity) {
        precondition(perSecond > 0 && burst > 0 && capacity > 0, "rate limiter parameters must be positive")
        cost = ProtocolConstants.second / UInt64(perSecond)
        maximumCredit = cost * UInt64(burst)
        self.capacity = capacity
    }

    /// Number of sources currently tracked (≤ capacity).
    public var trackedSources: Int { buckets.count }

    /// Takes one token for `source`; false when the source is over its rate (or the table is full).
    public mutating func allow(_ source: UInt64, now: UInt64) -> Bool {
        if var bucket = buckets[source] {
            bucket.credit = min(maximumCredit, bucket.credit &+ Self.elapsed(from: bucket.updatedAt, to: now))
            bucket.updatedAt = max(bucket.updatedAt, now)
            let allowed = bucket.credit >= cost
            if allowed { bucket.credit -= cost }
            buckets[source] = bucket
            return allowed
        }
        if buckets.count >= capacity {
            purgeIdle(now: now)
            guard buckets.count < capacity else { return false }
        }
        buckets[source] = Bucket(credit: maximumCredit - cost, updatedAt: now)
        return true
    }

    /// Drops entries that have refilled completely (indistinguishable from new ones); at most once a second.
    private mutating func purgeIdle(now: UInt64) {
        if let last = lastPurgeAt, now &- last < ProtocolConstants.second { return }
        lastPurgeAt = now
        buckets = buckets.filter { Self.elapsed(from: $0.value.updatedAt, to: now) < maximumCredit }
    }

    /// Time between two readings, zero if the clock reading went backwards.
    private static func elapsed(from earlier: UInt64, to later: UInt64) -> UInt64 {
        later > earlier ? later - earlier : 0
    }
}
