/// Counters of one direction of an emulated link. Plain values; the owner publishes snapshots.
public struct LinkStatistics: Equatable, Sendable {
    /// Packets offered to the link (frames the I/O layer dropped itself, e.g. oversize, are not).
    public var offeredPackets: UInt64 = 0
    public var offeredBytes: UInt64 = 0
    /// Dropped at random (the configured loss).
    public var lostPackets: UInt64 = 0
    /// Dropped because the queue in front of the transmitter was full (tail drop).
    public var queueDroppedPackets: UInt64 = 0
    /// Accepted and scheduled for release.
    public var scheduledPackets: UInt64 = 0
    public var scheduledBytes: UInt64 = 0

    public init() {}
}
