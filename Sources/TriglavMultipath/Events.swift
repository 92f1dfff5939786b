import TriglavCore

/// Cumulative receive counters for one uplink, sent by the receiving peer in a feedback frame.
/// Cumulative values make lost or reordered feedback harmless: the newest report supersedes all others.
public struct FeedbackReport: Sendable, Equatable {
    /// Highest send counter seen on the uplink (the value the sender passed in `packetSent`).
    public var highestCounter: UInt64
    /// Data packets received on the uplink since it was added (duplicates included).
    public var receivedPackets: UInt64
    /// Bytes of those packets, measured the same way the sender measures `packetSent(bytes:)`.
    public var receivedBytes: UInt64
    /// The reporter's monotonic clock when it wrote the report, if the frame carries it. Delivery rate is
    /// then measured on the receiver's clock, free of the jitter of the feedback's own path.
    public var reportedAt: UInt64?

    public init(highestCounter: UInt64, receivedPackets: UInt64, receivedBytes: UInt64, reportedAt: UInt64? = nil) {
        self.highestCounter = highestCounter
        self.receivedPackets = receivedPackets
        self.receivedBytes = receivedBytes
        self.reportedAt = reportedAt
    }
}

/// What the data plane tells the engine. The data plane translates authenticated protocol frames and
/// netlink events into these; the engine never sees bytes on the wire except inner packets for flow keys.
public enum UplinkEvent: Sendable, Equatable {
    /// A data packet (tunnel `sequence`, `bytes` on the wire) left on the uplink. `counter` must
    /// strictly increase per uplink in send order; the transport nonce counter qualifies (gaps are fine).
    case packetSent(UplinkID, counter: UInt64, sequence: UInt32, bytes: Int, at: UInt64)
    /// The peer echoed a probe the engine asked for with `Duty.sendProbe`.
    case probeReplied(UplinkID, probeID: UInt32, at: UInt64)
    /// A probe from the peer arrived (reply to it is the data plane's job); its sender timestamp gives
    /// the one-way-delay difference between uplinks without synchronised clocks.
    case probeReceived(UplinkID, senderTimestamp: UInt64, at: UInt64)
    /// The peer's cumulative receive counters for one of our uplinks.
    case feedbackReceived(UplinkID, FeedbackReport, at: UInt64)
    /// The peer's reorder buffer is missing `count` sequences starting at `firstSequence`.
    case resendRequested(firstSequence: UInt32, count: UInt32, at: UInt64)
    /// The peer won't resend these sequences (it answered our request with "declined"): stop waiting.
    case resendDeclined(firstSequence: UInt32, count: UInt32, at: UInt64)
    /// The system (netlink) says the link went down: it is taken out of service at once.
    case systemLinkDown(UplinkID, at: UInt64)
    /// The system says the link is up again: probing restarts immediately.
    case systemLinkUp(UplinkID, at: UInt64)
}

/// Work the engine hands to the data plane, one at a time from `MultipathEngine.nextDuty(now:)`.
public enum Duty: Sendable, Equatable {
    /// Send a probe frame carrying `probeID` and `timestamp` (our clock) on the uplink; the peer replies
    /// with `probeID` on the same uplink.
    case sendProbe(UplinkID, probeID: UInt32, timestamp: UInt64)
    /// Send a feedback frame with `report` on the uplink it describes.
    case sendFeedback(UplinkID, FeedbackReport)
    /// Ask the peer (on any uplink; use `schedule` as for data) to resend these tunnel sequences.
    case requestResend(firstSequence: UInt32, count: UInt32)
    /// Resend the data packet with tunnel `sequence`: pick the uplink with
    /// `MultipathEngine.scheduleResend` and send it with the same sequence. If it is no longer in the
    /// retransmit store, or `scheduleResend` returns no uplink (congestion), send the peer a
    /// "resend declined" frame instead so its reorder buffer stops waiting at once.
    case resend(sequence: UInt32)
    /// The uplink changed state (for D-Bus PropertiesChanged and logs).
    case stateChanged(UplinkID, from: UplinkState, to: UplinkState)
}

/// What the reorder buffer did with a received packet.
public enum ReorderVerdict: Sendable, Equatable {
    /// Deliver the packet you hold now (it is next in order, or late but never seen); then drain
    /// `nextDelivery` because it may have unblocked buffered packets.
    case deliverNow
    /// Kept for in-order release; don't deliver it yourself.
    case buffered
    /// Already seen (redundant copy or resend): drop it.
    case duplicate
    /// Too far behind the release point to tell it from a duplicate: drop it.
    case stale
    /// A sequence jump is being flushed; the packet couldn't be kept. Drop it.
    case overflow
}

extension UplinkEvent {
    /// When the event happened (the engine's clock).
    var timestamp: UInt64 {
        switch self {
        case .packetSent(_, _, _, _, let at), .probeReplied(_, _, let at), .probeReceived(_, _, let at),
             .feedbackReceived(_, _, let at), .resendRequested(_, _, let at), .resendDeclined(_, _, let at),
             .systemLinkDown(_, let at), .systemLinkUp(_, let at):
            return at
        }
    }
}
