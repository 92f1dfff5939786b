/// Engine-wide settings. All times are nanoseconds. Validate with `validate()` (the engine's init does).
public struct MultipathConfiguration: Sendable, Equatable {
    /// The scheduler at start; change at runtime with `MultipathEngine.setScheduler`.
    public var scheduler: SchedulerMode = .aggregate
    /// `redundant` mode: copies per packet (nil = every usable uplink).
    public var redundantCopies: Int? = nil
    /// Probe interval on an idle uplink (also the re-probe interval of down links).
    public var heartbeatInterval: UInt64 = 100 * Nanoseconds.millisecond
    /// Probe interval while data flows (keeps RTT and the one-way-delay spread fresh).
    public var activeProbeInterval: UInt64 = 50 * Nanoseconds.millisecond
    /// A link counts as active (not idle) when data was sent on it within this time.
    public var activityWindow: UInt64 = 200 * Nanoseconds.millisecond
    /// Receiver: feedback per uplink at most this often while packets arrive on it.
    public var feedbackInterval: UInt64 = 20 * Nanoseconds.millisecond
    /// Upper bound of the blackhole deadline under traffic (sends unconfirmed this long → down).
    /// The deadline itself is SRTT + 4·RTTVAR + feedback interval, clamped to [minLossDeadline,
    /// max(this, SRTT + this/2)]: a link whose round trip is near or above this still gets one
    /// (`UplinkTracker.lossDeadline`).
    public var maxLossDeadline: UInt64 = 250 * Nanoseconds.millisecond
    public var minLossDeadline: UInt64 = 100 * Nanoseconds.millisecond
    /// Loss ratio (percent over the 2 s window) that makes a ready link degraded, and the one below
    /// which it recovers (hysteresis).
    public var degradedLossPercent: Double = 15
    public var recoveredLossPercent: Double = 5
    /// Minimum time in `degraded` before recovering, so a flapping link doesn't oscillate.
    public var degradedHoldTime: UInt64 = 1 * Nanoseconds.second
    /// Hold-down after a link comes back from `down`; doubles per flap up to `maxRecoveryHoldDown`.
    public var recoveryHoldDown: UInt64 = 500 * Nanoseconds.millisecond
    public var maxRecoveryHoldDown: UInt64 = 30 * Nanoseconds.second
    /// Capacity assumed for a link before any delivery-rate sample (bits/s).
    public var initialCapacity: UInt64 = 10_000_000
    /// Delivery-rate windowed-max horizon.
    public var capacityWindow: UInt64 = 2 * Nanoseconds.second
    /// Receiver reorder buffer: capacity in packets (power of two), the longest any packet is held,
    /// and the floor of the adaptive wait. The longest hold counts from the packet's arrival and covers delay
    /// equalisation too (`maxEqualizationDelay`): what the equaliser holds a packet is taken from the same budget,
    /// so a hold shorter than the uplinks' delay spread plus a repair round trip leaves no time for repairs.
    public var reorderCapacity: Int = 2048
    public var maxReorderHold: UInt64 = 300 * Nanoseconds.millisecond
    public var minReorderWait: UInt64 = 3 * Nanoseconds.millisecond
    /// Receiver: the longest a packet that came over a faster uplink is held so that it leaves no earlier
    /// than the slowest uplink carrying data would have delivered it (`DelayEqualizer`: the inner TCP then
    /// measures the RTT of the paths it fills, not of the fastest one). 0 turns equalisation off. Only `aggregate`
    /// is equalised, and no packet is held longer than `maxReorderHold` in all.
    public var maxEqualizationDelay: UInt64 = 0
    /// Receiver asks the sender to resend missing sequences before skipping them (tunnel-level ARQ that
    /// hides random link loss from TCP). The wait then also covers one round trip on the fastest link.
    public var requestsResends: Bool = true
    /// Sender: a packet is worth resending (failover) only this long after it was first sent.
    public var resendHorizon: UInt64 = 400 * Nanoseconds.millisecond
    /// Resends are dropped when the best uplink's queue is within ¾ of the deepest queue seen on it lately
    /// (a full buffer: the loss was congestion and must reach the sender's TCP). This is the floor of that
    /// threshold, and a quarter of the threshold used before any queue was seen.
    public var minCongestionQueueDelay: UInt64 = 80 * Nanoseconds.millisecond
    /// `aggregate`: a packet whose earliest expected arrival is later than the slowest used uplink's
    /// one-way delay plus this is refused (the data plane drops it). This keeps the standing queue in the
    /// uplinks short, so resends and ACKs aren't stuck behind it and TCP sees congestion early, as from
    /// a well-managed router queue. nil: never refuse (the uplinks' own buffers overflow instead).
    public var ingressQueueTarget: UInt64? = 80 * Nanoseconds.millisecond
    /// Sender-side pacing. nil: every scheduled packet is handed to its uplink at once, so the uplink's own
    /// buffer (modem, router) holds whatever the scheduler queued there. Set: the data plane keeps two FIFOs per
    /// uplink (resends, then data) and hands packets over while `MultipathEngine.releaseTime(on:)` ≤ now, so
    /// about this much (time at the modelled rate) waits in the network's buffer; the rest waits on our side,
    /// where resends go ahead of it (`scheduleResend` picks the earliest arrival *through the network's short
    /// queue*). This is how commercial bonders keep repairs fast: a resend behind 60–90 ms of modem buffer
    /// holds in-order delivery for all of it. A few milliseconds of network queue keep the link
    /// busy across timer slack; 5 ms is what the simulator's paced deployment uses, with `ingressQueueTarget`
    /// 120 ms (docs/MULTIPATH.md, "Sender-side pacing" and "Ingress AQM with pacing").
    public var pacingQueueAllowance: UInt64? = nil
    /// Pacing: how many RTT jitters (`RTTEstimator.jitter`, the mean difference between successive probe RTTs) a
    /// probe may find beyond the allowance + 3 ms before the link counts as full and loses its probing gain for
    /// `capacityWindow` (`UplinkTracker.probesSeeStandingQueue`; the model correction keeps one jitter). On a
    /// jittery path an unloaded probe lies anywhere between the minimum RTT (the jitter's low extreme) and that plus
    /// the jitter's whole range, about three jitters: with one, the lab's 45 ms ± 10 ms link counted as full on about
    /// one probe in twenty while it carried half its rate, and its estimate took 4–8 s to climb from 10 to 20 Mbit/s.
    /// The data plane uses 3 (docs/DATAPLANE.md, "Sender-side pacing"); 1 by default, as the simulator's paced
    /// deployment is tuned with it (with 3 its per-uplink-queue blackhole gaps on seeds 12–13 grow 400 → 510–530 ms).
    public var pacingFullJitterMultiple: UInt64 = 1
    /// Late binding with delay equalisation (`maxEqualizationDelay` > 0, `aggregate`): the shared queue's head goes to
    /// the uplink with the earliest *equalised* arrival (queue + transmission, the one-way delay counted only as far as
    /// the receiver's equaliser doesn't lift it), as `schedule` ranks. Off by default (the experiment's switch).
    public var equalizedLateBinding: Bool = false
    /// Capacity catch-up: a link whose probes find its queue well short of the scheduler's model queue (it
    /// drains faster than its capacity estimate) is modelled at twice the estimate for a moment, so it is given
    /// enough to show its rate (`Tuning.fasterThanModelledGainPercent`). Without it an estimate below the link's
    /// rate rises only by the probing gain per delivery-rate span: in the lab (receivers equalising path delays,
    /// BBR senders) wifi0's estimate took 2–3 s from the initial 10 Mbit/s to its 30, and BBR, seeing the tunnel's
    /// RTT grow instead of its delivery rate, left startup at 25–30 Mbit/s. Off by default: in the simulator's
    /// Reno runs without equalisation it costs the skewed pair (87 → 79 %) and lengthens a blackhole gap (seed 13:
    /// 454 ms), not analysed yet (docs/BENCHMARKS.md, "Lab test at 80 %").
    public var capacityCatchUp: Bool = false
    /// Per-uplink send history (entries, power of two).
    public var sendHistoryCapacity: Int = 4096
    /// Sender: an uplink whose packets the receiver asks for, `Tuning.requestedLossesForSuspicion` of them sent after
    /// the last one it confirmed while its confirmations have stopped, is *suspect*: it takes no new data (nor
    /// resends) while another uplink can, until it confirms a later send. A blackhole is seen this way ~60 ms after it
    /// starts, ~40 ms before the probes declare the uplink down. Off by default: with late binding the data that would
    /// have gone to the dying uplink waits in the shared queue instead, which the AQM then sheds at the failover, and
    /// the blackhole gaps grew on most seeds (docs/BENCHMARKS.md, "Failover gaps on held-out seeds").
    public var suspectsUplinksFromRequests: Bool = false
    /// Receiver: a requested gap that reaches the reorder buffer's head only after its second-request time (behind an
    /// older gap, as the holes a failover leaves do) is asked for again as it gets there and waited for as long as a
    /// timely second request would be, within `maxReorderHold` (`ReorderBuffer.asksLateHeadGapAgain`); otherwise it is
    /// skipped with the older gap and its loss left to TCP. The data plane turns it on with pacing and off without
    /// (`PacingSwitch.enable` / `disable`), as the simulator's paced deployment with late binding does: there it took the
    /// blackhole misses on seeds 11–110 from 16 to 10 of 400 runs (docs/BENCHMARKS.md, "A late head gap's second
    /// request"). Off by default: with immediate send and with per-uplink pacing queues it lengthened blackhole gaps
    /// (seed 13 immediate: 1.1 s) and changed the unpaced spill-over, not analysed.
    public var asksLateHeadGapAgain: Bool = false

    public init() {}

    /// No configured time may exceed this (keeps every sum of times far from overflow).
    static let longestDuration: UInt64 = 3600 * Nanoseconds.second

    /// Checks every field and reports the first offending one.
    public func validate() throws(MultipathError) {
        func fail(_ field: String, _ value: some CustomStringConvertible, _ reason: String) -> MultipathError {
            .invalidConfiguration(field: field, value: value.description, reason: reason)
        }
        if let copies = redundantCopies, !(1...MultipathLimits.maxUplinks).contains(copies) {
            throw fail("redundantCopies", copies, "must be 1 to \(MultipathLimits.maxUplinks)")
        }
        for (name, value) in [("heartbeatInterval", heartbeatInterval), ("activeProbeInterval", activeProbeInterval),
                              ("feedbackInterval", feedbackInterval), ("maxLossDeadline", maxLossDeadline),
                              ("minLossDeadline", minLossDeadline), ("maxReorderHold", maxReorderHold),
                              ("capacityWindow", capacityWindow)] where value == 0 {
            throw fail(name, value, "must be greater than zero")
        }
        for (name, value) in [("heartbeatInterval", heartbeatInterval), ("activeProbeInterval", activeProbeInterval),
                              ("activityWindow", activityWindow), ("feedbackInterval", feedbackInterval),
                              ("maxLossDeadline", maxLossDeadline), ("degradedHoldTime", degradedHoldTime),
                              ("recoveryHoldDown", recoveryHoldDown), ("maxRecoveryHoldDown", maxRecoveryHoldDown),
                              ("capacityWindow", capacityWindow), ("maxReorderHold", maxReorderHold),
                              ("minReorderWait", minReorderWait), ("resendHorizon", resendHorizon),
                              ("minCongestionQueueDelay", minCongestionQueueDelay),
                              ("ingressQueueTarget", ingressQueueTarget ?? 0),
                              ("maxEqualizationDelay", maxEqualizationDelay),
                              ("pacingQueueAllowance", pacingQueueAllowance ?? 0)] where value > Self.longestDuration {
            throw fail(name, value, "must be at most \(Self.longestDuration / Nanoseconds.second) s (times are nanoseconds)")
        }
        if pacingQueueAllowance == 0 {
            throw fail("pacingQueueAllowance", 0, "must be greater than zero (nil turns pacing off)")
        }
        if minReorderWait > maxReorderHold {
            throw fail("minReorderWait", minReorderWait, "must not exceed maxReorderHold (\(maxReorderHold))")
        }
        if minLossDeadline > maxLossDeadline {
            throw fail("minLossDeadline", minLossDeadline, "must not exceed maxLossDeadline (\(maxLossDeadline))")
        }
        if !(0...100).contains(recoveredLossPercent) || !(0...100).contains(degradedLossPercent)
            || recoveredLossPercent >= degradedLossPercent {
            throw fail("recoveredLossPercent", recoveredLossPercent,
                       "must be within 0–100 and below degradedLossPercent (\(degradedLossPercent))")
        }
        if reorderCapacity < 16 || reorderCapacity > MultipathLimits.maxReorderCapacity
            || reorderCapacity & (reorderCapacity - 1) != 0 {
            throw fail("reorderCapacity", reorderCapacity,
                       "must be a power of two from 16 to \(MultipathLimits.maxReorderCapacity)")
        }
        if sendHistoryCapacity < 64 || sendHistoryCapacity > MultipathLimits.maxSendHistory
            || sendHistoryCapacity & (sendHistoryCapacity - 1) != 0 {
            throw fail("sendHistoryCapacity", sendHistoryCapacity,
                       "must be a power of two from 64 to \(MultipathLimits.maxSendHistory)")
        }
        if initialCapacity < Tuning.capacityFloor {
            throw fail("initialCapacity", initialCapacity, "must be at least \(Tuning.capacityFloor) bit/s")
        }
    }
}

/// Packet schedulers, selectable per tunnel at runtime.
public enum SchedulerMode: String, Sendable, CaseIterable {
    /// Per-packet striping: each packet goes to the uplink with the earliest expected arrival
    /// (queue drain at estimated capacity + one-way delay), so the receiver barely has to reorder.
    case aggregate
    /// Every packet on every usable uplink (or the best N); the receiver drops duplicates.
    case redundant
    /// One active uplink, chosen by tier then quality; the next takes over when it fails.
    case failover
    /// Each flow pinned to one uplink by rendezvous hashing of its 5-tuple; flows move only when
    /// their uplink stops carrying data.
    case flow
    /// Every packet on the uplink with the lowest smoothed one-way delay.
    case lowestLatency = "lowest-latency"

    /// Parses the configuration / D-Bus spelling.
    public init(name: String) throws(MultipathError) {
        guard let mode = SchedulerMode(rawValue: name) else { throw .unknownScheduler(name) }
        self = mode
    }
}
