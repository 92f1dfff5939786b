/// Every limit and default of the multipath engine, in one place, with the reason for its value.
/// Times are monotonic nanoseconds (`UInt64`), the engine's only clock.
public enum MultipathLimits {
    /// Most uplinks one engine manages. Bounds per-uplink memory and the size of `UplinkSelection`.
    /// Commercial bonders stop at 8–12 links; 16 leaves room without unbounded growth.
    public static let maxUplinks = 16
    /// Largest reorder buffer (packets). 65536 would let a wrapped UInt32 sequence look "ahead" at
    /// the window edge; 16384 is ~2 s of 100 Mbit/s of full-size packets.
    public static let maxReorderCapacity = 16384
    /// Send-history entries kept per uplink (counter → time/sequence). Older entries are overwritten,
    /// so memory is fixed whatever the loss rate.
    public static let maxSendHistory = 8192
    /// Pending resend requests kept (failover and receiver requests). Overflow drops the oldest:
    /// resends are best effort.
    public static let maxPendingResends = 4096
    /// Flows whose uplink `flow` mode remembers (`FlowTable`, ~80 KiB per engine); beyond it the least recently
    /// used are forgotten (and pinned again by rendezvous hashing when they next send).
    public static let flowTableCapacity = 4096
}

/// Time units in nanoseconds.
public enum Nanoseconds {
    public static let microsecond: UInt64 = 1_000
    public static let millisecond: UInt64 = 1_000_000
    public static let second: UInt64 = 1_000_000_000

    /// `value` milliseconds as nanoseconds.
    @inlinable public static func milliseconds(_ value: UInt64) -> UInt64 { value * millisecond }
}

/// Internal tuning constants that are not worth a configuration knob.
enum Tuning {
    /// Resend requests avoid an uplink on which nothing arrived for this many of its usual gaps between arrivals
    /// (and at least `minSilence`): when the best uplink blackholes, the receiver's requests went on it until the
    /// probes declared it down, and were lost (docs/MULTIPATH.md, "Requests on a silent uplink").
    static let silenceGaps: UInt64 = 8
    static let minSilence: UInt64 = 10 * Nanoseconds.millisecond
    /// Packets of one uplink the receiver must ask for, each sent after the last one the uplink confirmed, before it
    /// is suspect (`MultipathConfiguration.suspectsUplinksFromRequests`). Random loss rarely takes several packets of
    /// one uplink before its next feedback confirms a later one; a blackhole takes every packet.
    static let requestedLossesForSuspicion = 3
    /// RFC 6298 §2: gains 1/8 (SRTT) and 1/4 (RTTVAR).
    static let srttGainShift: Int64 = 3
    static let rttvarGainShift: Int64 = 2
    /// RFC 3550 §6.4.1 interarrival jitter gain 1/16.
    static let jitterGainShift: Int64 = 4
    /// Windowed minimum RTT horizon (BBR uses 10 s for min_rtt).
    static let minRTTWindow: UInt64 = 10 * Nanoseconds.second
    /// Probe replies older than this are counted as lost (a reply that slow is useless for RTT anyway).
    static let probeReplyTimeout: UInt64 = 2 * Nanoseconds.second
    /// Outstanding probes remembered per uplink: enough for 1.6 s of probes at the 50 ms active interval, so a
    /// reply over a slow link (LTE under bufferbloat: 300–800 ms, GEO satellite ~600 ms) still finds its probe.
    static let outstandingProbes = 32
    /// Loss window: buckets × bucket length = 2 s sliding window.
    static let lossBuckets = 10
    static let lossBucketLength: UInt64 = 200 * Nanoseconds.millisecond
    /// Delivery-rate samples are taken over at least this span so feedback jitter doesn't inflate them.
    static let minRateSampleSpan: UInt64 = 100 * Nanoseconds.millisecond
    /// Feedback arrivals kept for delivery-rate sampling (≥ span / feedback interval).
    static let rateSamples = 32
    /// Bandwidth probing (as BBR's probing gain): until its probes have seen a standing queue, the scheduler
    /// models a link as draining at this percentage of its capacity estimate. The estimate is a maximum of
    /// delivery rates, so only a link offered more than its estimate can show that it carries more.
    static let capacityProbeGainPercent: UInt64 = 125
    /// A probe that queued this much (or twice the RTT jitter, if more) less than the model queue it was sent
    /// behind shows the link draining faster than its capacity estimate; for `fasterThanModelledHold` after such a
    /// probe the model drains at `fasterThanModelledGainPercent` of the estimate, so the scheduler gives the link
    /// enough to show its rate in the delivery-rate samples. It stops by itself: once the link is given more
    /// than it carries, its real queue catches up with the model.
    static let fasterThanModelledMargin: UInt64 = 10 * Nanoseconds.millisecond
    static let fasterThanModelledHold: UInt64 = 150 * Nanoseconds.millisecond
    static let fasterThanModelledGainPercent: UInt64 = 200
    /// Pacing: a probe may find this much (plus probe jitter) more queue in the network than the model expected
    /// before the link counts as full and the model is moved back in step with it (what the probing gain put
    /// there, or a link that slowed down).
    static let pacingExcessMargin: UInt64 = 3 * Nanoseconds.millisecond
    /// Pacing: the ingress AQM's hard limit lies at least this far above its target (see `admitPaced`).
    static let pacedQueueHeadroom: UInt64 = 50 * Nanoseconds.millisecond
    /// Late binding: for this long after an uplink that carried data went down, TCP's retransmissions of segments the
    /// AQM dropped go ahead of the shared queue (`MultipathEngine.admitShared(…retransmitting:…)`). The failover halves
    /// the queue's drain rate, so a retransmission at its tail waited ~400 ms and the receiver's longest delivery gap
    /// passed 300 ms; outside a failover the same priority changed the TCP dynamics after slow-start overshoots and
    /// cost three-link throughput up to 28 points (docs/BENCHMARKS.md, "Retransmissions ahead after a failover").
    static let failoverRecoveryWindow: UInt64 = Nanoseconds.second
    /// Capacity never drops below this (bits/s): a link we know nothing about still gets tried.
    static let capacityFloor: UInt64 = 256_000
    /// The scheduler's model of a link queue is never more than this far in the future; beyond it the
    /// capacity estimate is plainly wrong (too low) and the real link decides.
    static let maxModelQueueDelay: UInt64 = 250 * Nanoseconds.millisecond
    /// Unconfirmed sends needed before a silent link is declared down (one lost heartbeat isn't an outage).
    static let minUnconfirmedSendsForDown = 3
    /// Idle (only heartbeats unconfirmed): this many heartbeats in a row must go unanswered past their loss
    /// deadline before the link counts as blackholed. With 100 ms heartbeats the last of them is due
    /// 600 ms + the loss deadline after the first, so an idle blackhole is still found within 1 s (issue 4,
    /// requirement 2) for round trips up to ~200 ms, while a link at 20% random loss goes down falsely with
    /// probability 0.2⁷ ≈ 1.3·10⁻⁵ per heartbeat (once in ~2 h) instead of 0.2³ (every ~12 s).
    static let idleLostHeartbeatsForDown: UInt64 = 7
    /// Loss deadline while a link has never answered (no RTT sample): the idle blackhole bound. A tighter one
    /// would declare a link with a round trip above it down before its first reply could arrive.
    static let unknownRTTLossDeadline: UInt64 = 1 * Nanoseconds.second
    /// A data packet counted lost that shows up in a later feedback within this long is credited back (it was
    /// reordered within the link, not lost); past it, the count stands.
    /// A few feedback intervals: reordering jitter on one path is milliseconds, and while a loss may still be
    /// credited the state machine leaves it out, so a longer window would hide real loss.
    static let reorderCreditWindow: UInt64 = 100 * Nanoseconds.millisecond
    /// Recent feedback losses remembered for crediting (≥ window / feedback interval).
    static let recentLossSlots = 8
    /// Down → probing → ready needs this many consecutive probe replies.
    static let repliesToRecover = 3
    /// Demand (fraction of the active set's capacity, in percent) above which secondary/metered links join,
    /// and below which they leave again (hysteresis).
    static let spillOverPercent: UInt64 = 85
    static let spillBackPercent: UInt64 = 60
    /// The scheduler trusts its queue model unless the probes see this much more queueing than modelled.
    static let modelTrustMargin: UInt64 = 20 * Nanoseconds.millisecond
    /// Demand estimate time constant.
    static let demandWindow: UInt64 = 250 * Nanoseconds.millisecond
}
