import TriglavCore

/// One sent data packet, as remembered for feedback accounting and failover resends.
struct SentRecord {
    var counter: UInt64 = 0
    var sentAt: UInt64 = 0
    var sequence: UInt32 = 0
    /// Data packets sent on the uplink up to and including this one.
    var cumulativePackets: UInt64 = 0
}

/// Everything the engine knows about one uplink: policy, health state machine, quality estimators,
/// send history (fixed ring), probe bookkeeping and receive counters. All storage is fixed at creation.
struct UplinkTracker {
    let id: UplinkID
    var policy: UplinkPolicy
    private(set) var state: UplinkState = .probing
    private(set) var stateSince: UInt64
    var systemDown = false
    /// The largest datagram (`packetLength`) the uplink's path carries, nil when unknown or unlimited
    /// (`MultipathEngine.setLargestDatagram`).
    var largestDatagram: Int?

    // Quality.
    var rtt = RTTEstimator()
    /// Largest queueing delay (RTT above the minimum) seen recently: how deep the link's buffer is.
    var queueDepth = WindowedFilter(keepsMaximum: true, window: 10 * Nanoseconds.second)
    var loss = LossWindow()
    var capacity: WindowedFilter
    var capacityBits: UInt64
    private var rateSampleTimes: [UInt64]
    private var rateSampleBytes: [UInt64]
    private var rateSampleReportTimes: [UInt64]
    private var rateSampleCount = 0
    private var rateSampleNext = 0

    // Sender side.
    private var history: [SentRecord]
    private let historyMask: Int
    /// Total records ever written; record i lives at i & historyMask.
    private(set) var historyWritten: UInt64 = 0
    /// Index of the first record not yet covered by feedback.
    private(set) var historyAcked: UInt64 = 0
    private(set) var txPackets: UInt64 = 0
    private(set) var txBytes: UInt64 = 0
    private(set) var lastDataSentAt: UInt64?
    /// When data last started again after the link carried none for longer than the idle gap given to `recordSend`.
    private(set) var dataResumedAt: UInt64 = 0
    private var reportedPackets: UInt64 = 0
    /// Data packets counted lost by recent feedback that may yet be reported late (reordering), and when the
    /// latest such loss was counted.
    private var recentLossTimes = [UInt64](repeating: 0, count: Tuning.recentLossSlots)
    private var recentLossCounts = [UInt64](repeating: 0, count: Tuning.recentLossSlots)
    private var recentLossNext = 0

    private mutating func creditLateArrivals(_ surplus: UInt64, at now: UInt64) {
        var remaining = surplus
        for age in 0..<Tuning.recentLossSlots where remaining > 0 {
            let slot = (recentLossNext - 1 - age + 2 * Tuning.recentLossSlots) % Tuning.recentLossSlots
            guard now &- recentLossTimes[slot] <= Tuning.reorderCreditWindow else { break }
            let taken = min(remaining, recentLossCounts[slot])
            recentLossCounts[slot] -= taken
            remaining -= taken
        }
        if remaining < surplus { loss.credit(surplus - remaining, at: now) }
    }

    /// Loss percentage over the window without the losses still young enough to be credited back (nil: too
    /// few samples). The state machine decides on this, so reordering never flips a link to degraded.
    func settledLossPercent(at now: UInt64) -> Double? {
        var pending: UInt64 = 0
        for slot in 0..<Tuning.recentLossSlots where now &- recentLossTimes[slot] <= Tuning.reorderCreditWindow {
            pending &+= recentLossCounts[slot]
        }
        let (lost, expected) = loss.totals(at: now)
        guard expected >= 20 else { return nil }
        return Double(lost > pending ? lost - pending : 0) * 100 / Double(expected)
    }
    private var reportedBytes: UInt64 = 0
    private var highestReportedCounter: UInt64?
    /// Latest send time known to have been delivered (probe reply or feedback), and when we learned it.
    private(set) var confirmedSendTime: UInt64 = 0
    private(set) var lastProgressAt: UInt64
    /// Scheduler's model of the uplink's send queue: when it drains. With pacing this includes the packets
    /// still waiting on our side (the network holds about `pacingAllowance` of it).
    var modelBusyUntil: UInt64 = 0
    /// Sender-side pacing: how much of the queue the network's own buffer may hold (nil: no pacing).
    var pacingAllowance: UInt64?
    /// `MultipathConfiguration.pacingFullJitterMultiple`.
    let pacingFullJitterMultiple: UInt64
    /// Pacing: when what has been handed to the network (`packetSent`) drains, at the modelled rate.
    var networkBusyUntil: UInt64 = 0
    /// Pacing: when the resends waiting at the front of our queue for this uplink will have gone out.
    var resendsQueuedUntil: UInt64 = 0
    /// Pacing: when the repairs (resends a receiver asked for) waiting ahead of the failover resends will have gone
    /// out (≤ `resendsQueuedUntil`).
    var repairsQueuedUntil: UInt64 = 0

    /// The part of the model queue that sits in the network's buffer at `now` (with pacing, the rest waits
    /// on our side).
    func modelNetworkQueue(at now: UInt64) -> UInt64 {
        let busy = pacingAllowance == nil ? modelBusyUntil : networkBusyUntil
        return busy > now ? busy - now : 0
    }
    /// Last time the model queue was empty when a packet was scheduled (capacity samples taken while
    /// we weren't keeping the link busy can't lower the estimate).
    var lastModelIdleAt: UInt64 = 0

    // Probes.
    private var probeIDs = [UInt32](repeating: 0, count: Tuning.outstandingProbes)
    private var probeTimes = [UInt64](repeating: 0, count: Tuning.outstandingProbes)
    private var probeActive = [Bool](repeating: false, count: Tuning.outstandingProbes)
    /// Pacing: the network queue the model expected when each probe was sent, and when the model was last
    /// corrected from a probe (probes sent before that saw the uncorrected link).
    private var probeModelQueues = [UInt64](repeating: 0, count: Tuning.outstandingProbes)
    private var lastModelCorrectionAt: UInt64 = 0
    var nextProbeAt: UInt64
    private var consecutiveReplies = 0
    private(set) var flaps = 0
    /// ready → degraded changes not yet forgotten (like `flaps`, cleared after 60 s of health).
    private(set) var degradations = 0
    private var readySince: UInt64?

    // Receiver side.
    private(set) var rxPackets: UInt64 = 0
    private(set) var rxBytes: UInt64 = 0
    private var rxHighestCounter: UInt64 = 0
    private var rxPacketsAtLastFeedback: UInt64 = 0
    private var lastFeedbackSentAt: UInt64 = 0
    /// Smoothed probe transit (arrival − sender timestamp, relative to the engine's base) and its jitter.
    private(set) var transit: Int64 = 0
    private(set) var transitJitter: UInt64 = 0
    private var lastTransitSample: Int64 = 0
    private(set) var lastTransitAt: UInt64?
    /// `rxPackets` at the last `evaluate`, and the evaluation that last saw it grow: when data last arrived on the
    /// uplink, to within one evaluation (the engine evaluates after every batch of events).
    private var rxPacketsEvaluated: UInt64 = 0
    private(set) var lastArrivalSeenAt: UInt64?
    /// When a data packet or probe last arrived on this uplink, and the smoothed gap between such arrivals (gain 1/8):
    /// a receiver's resend requests avoid an uplink silent for much longer than its usual gap (`isSilent`).
    private var lastReceivedAt: UInt64?
    private var receiveGap: UInt64 = 0
    /// Sender: packets of this uplink the receiver asked for that were sent after the last confirmed send, the latest
    /// of their send times, and since when that made the uplink suspect (`noteRequestedLoss`).
    private var requestedLosses = 0
    private var requestedLossLatestSend: UInt64 = 0
    private(set) var suspectSince: UInt64?

    init(id: UplinkID, policy: UplinkPolicy, configuration: MultipathConfiguration, now: UInt64) {
        self.id = id
        self.policy = policy
        stateSince = now
        nextProbeAt = now
        lastProgressAt = now
        capacity = WindowedFilter(keepsMaximum: true, window: configuration.capacityWindow)
        capacityBits = configuration.initialCapacity
        pacingAllowance = configuration.pacingQueueAllowance
        pacingFullJitterMultiple = configuration.pacingFullJitterMultiple
        history = Array(repeating: SentRecord(), count: configuration.sendHistoryCapacity)
        historyMask = configuration.sendHistoryCapacity - 1
        rateSampleTimes = Array(repeating: 0, count: Tuning.rateSamples)
        rateSampleBytes = Array(repeating: 0, count: Tuning.rateSamples)
        rateSampleReportTimes = Array(repeating: 0, count: Tuning.rateSamples)
    }

    var storageFootprint: Int {
        history.capacity * MemoryLayout<SentRecord>.stride + rateSampleTimes.capacity * 8 + rateSampleBytes.capacity * 8
            + rateSampleReportTimes.capacity * 8
            + recentLossTimes.capacity * 8 + recentLossCounts.capacity * 8
            + probeIDs.capacity * 4 + probeTimes.capacity * 8 + probeActive.capacity + probeModelQueues.capacity * 8
    }

    /// A new billing period: the data cap counts from zero.
    mutating func restartDataCapCount() { txBytes = 0 }

    var isCapExhausted: Bool {
        guard let cap = policy.dataCapBytes else { return false }
        return txBytes >= cap
    }

    /// Whether the engine may send anything at all (data, probes, feedback) on this uplink. A link past its
    /// data cap is treated as `never` until the cap is reset or raised: even probes would cost its owner money.
    var mayTransmit: Bool { policy.tier != .never && !systemDown && !isCapExhausted }

    /// One-way delay estimate used for scheduling: half the propagation RTT.
    var baseOneWayDelay: UInt64 { rtt.hasSample ? rtt.windowedMinimum / 2 : 0 }

    /// Queueing delay the probes currently see (predicted a little ahead), beyond the propagation delay.
    var measuredQueueDelay: UInt64 {
        guard rtt.hasSample else { return 0 }
        let predicted = rtt.predicted(horizon: rtt.smoothed)
        return predicted > rtt.windowedMinimum ? predicted - rtt.windowedMinimum : 0
    }

    /// When the probes last saw a standing queue (the link full: its capacity estimate is its rate).
    private(set) var lastFullAt: UInt64?

    func seenFull(within window: UInt64, at now: UInt64) -> Bool {
        guard let at = lastFullAt else { return false }
        return now &- at <= window
    }

    /// When a probe last found the link's queue much shorter than the scheduler's model queue it was sent
    /// behind (nil: never). The model drains at the capacity estimate; a link that empties its real queue faster
    /// than that is faster than its estimate, whatever the delivery-rate samples have shown so far.
    private(set) var lastFasterThanModelledAt: UInt64?

    /// Whether a probe found the link draining faster than modelled within `window` of `now`.
    func drainsFasterThanModelled(within window: UInt64, at now: UInt64) -> Bool {
        guard let at = lastFasterThanModelledAt else { return false }
        return now &- at <= window
    }

    /// With pacing, the network's buffer should hold at most the allowance; more than this (plus the probes'
    /// jitter) means the link drains slower than we release into it.
    private var pacingExcessThreshold: UInt64? {
        pacingAllowance.map { $0 + Tuning.pacingExcessMargin + rtt.jitter }
    }

    /// Pacing: a probe that finds more queue than this (above the minimum RTT) shows the link full
    /// (`MultipathConfiguration.pacingFullJitterMultiple`).
    private var pacingFullThreshold: UInt64? {
        pacingAllowance.map { $0 + Tuning.pacingExcessMargin + pacingFullJitterMultiple * rtt.jitter }
    }

    /// Whether the probes see a standing queue on the link (the latest or the predicted RTT well above the
    /// minimum): then it carries all it can, and offering it more than its capacity estimate only adds delay.
    var probesSeeStandingQueue: Bool {
        guard rtt.hasSample else { return false }
        let standing = pacingFullThreshold ?? max(10 * Nanoseconds.millisecond, rtt.windowedMinimum / 4)
        let latestQueue = rtt.latest > rtt.windowedMinimum ? rtt.latest - rtt.windowedMinimum : 0
        return measuredQueueDelay > standing || latestQueue > standing
    }

    /// Whether our own traffic is queueing up on the link (probes see a standing queue, or the scheduler's
    /// model has more queued than a few milliseconds), recently enough that losses may be overflow.
    func isCongested(at now: UInt64) -> Bool {
        let standing = max(10 * Nanoseconds.millisecond, rtt.windowedMinimum / 4)
        let latestQueue = rtt.latest > rtt.windowedMinimum ? rtt.latest - rtt.windowedMinimum : 0
        return probesSeeStandingQueue
            || modelNetworkQueue(at: now) > 5 * Nanoseconds.millisecond
            || (queueDepth.best ?? 0) > 2 * standing && latestQueue > standing / 2
    }

    /// Queueing delay above which losses on this link count as congestion (not worth hiding with a
    /// resend): three quarters of the deepest queue seen recently, at least `floor`.
    func congestionQueueDelay(floor: UInt64) -> UInt64 {
        max(floor, (queueDepth.best ?? 4 * floor) * 3 / 4)
    }

    /// How long sends may stay unconfirmed before the link counts as blackholed: SRTT + 4·RTTVAR + feedback
    /// interval, clamped to [minLossDeadline, maxLossDeadline]. The upper clamp keeps the 300 ms bound when
    /// jitter inflates RTTVAR; it may not cut into the round trip itself, so a link whose smoothed RTT is near
    /// or above it (bufferbloated LTE, satellite) gets up to SRTT + maxLossDeadline/2 — nothing can notice
    /// its silence before a round trip has passed. Before the first reply the RTT is unknown and the
    /// deadline is the idle bound (`Tuning.unknownRTTLossDeadline`).
    func lossDeadline(_ configuration: MultipathConfiguration) -> UInt64 {
        guard rtt.hasSample else { return max(configuration.maxLossDeadline, Tuning.unknownRTTLossDeadline) }
        let raw = rtt.smoothed + 4 * rtt.variance + configuration.feedbackInterval
        let ceiling = max(configuration.maxLossDeadline, rtt.smoothed &+ configuration.maxLossDeadline / 2)
        return max(configuration.minLossDeadline, min(ceiling, raw))
    }

    // MARK: State machine

    mutating func transition(to newState: UplinkState, at now: UInt64, configuration: MultipathConfiguration)
        -> (from: UplinkState, to: UplinkState)? {
        guard newState != state else { return nil }
        let old = state
        clearSuspicion()
        if newState == .down {
            flaps = min(flaps + 1, 16)
            consecutiveReplies = 0
            modelBusyUntil = 0
            for index in probeActive.indices { probeActive[index] = false }
        }
        if newState == .degraded && old == .ready { degradations = min(degradations + 1, 16) }
        if newState == .ready { readySince = now } else if old == .ready { readySince = nil }
        // The outage's lost probes say nothing about the link's quality once it answers again.
        if old == .down { loss = LossWindow() }
        state = newState
        stateSince = now
        return (old, newState)
    }

    /// Minimum time in `degraded`: `degradedHoldTime`, doubling with each degradation not yet forgotten (up to
    /// `maxRecoveryHoldDown`), so a link whose loss comes and goes settles in `degraded` instead of cycling
    /// every few seconds — the same rule as the recovery hold-down after `down`.
    func degradedHold(_ configuration: MultipathConfiguration) -> UInt64 {
        let shift = UInt64(min(max(degradations, 1) - 1, 16))
        return min(max(configuration.maxRecoveryHoldDown, configuration.degradedHoldTime),
                   configuration.degradedHoldTime << shift)
    }

    func recoveryHoldDown(_ configuration: MultipathConfiguration) -> UInt64 {
        guard flaps > 0 else { return 0 }
        let shift = UInt64(min(flaps - 1, 16))
        return min(configuration.maxRecoveryHoldDown, configuration.recoveryHoldDown << shift)
    }

    /// Time-driven checks: blackhole deadline, probe timeouts, loss hysteresis, recovery hold-down.
    mutating func evaluate(now: UInt64, configuration: MultipathConfiguration)
        -> (from: UplinkState, to: UplinkState)? {
        expireProbes(now: now, configuration: configuration)
        if rxPackets != rxPacketsEvaluated {
            rxPacketsEvaluated = rxPackets
            lastArrivalSeenAt = now
        }
        if systemDown { return state == .down ? nil : transition(to: .down, at: now, configuration: configuration) }
        if state != .down, let deadline = blackholeDeadline(configuration), now >= deadline {
            return transition(to: .down, at: now, configuration: configuration)
        }
        if let since = readySince, now - since > 60 * Nanoseconds.second {
            flaps = 0
            degradations = 0
        }
        switch state {
        case .ready:
            // Loss while the probes see a standing queue is congestion (our own traffic overflowing the
            // link), which the scheduler handles; only loss on an uncongested link marks it degraded.
            if !isCongested(at: now), let percent = settledLossPercent(at: now), percent >= configuration.degradedLossPercent {
                return transition(to: .degraded, at: now, configuration: configuration)
            }
        case .degraded:
            if now - stateSince >= degradedHold(configuration),
               (loss.percent(at: now) ?? 0) <= configuration.recoveredLossPercent {
                return transition(to: .ready, at: now, configuration: configuration)
            }
        case .probing:
            if consecutiveReplies >= (flaps == 0 ? 1 : Tuning.repliesToRecover),
               now - stateSince >= recoveryHoldDown(configuration) {
                return transition(to: .ready, at: now, configuration: configuration)
            }
        case .down:
            break
        }
        return nil
    }

    /// When `evaluate` may next change something by itself (nil: only events can). `now`: the engine's clock;
    /// the end of the degraded hold counts only until it has passed (then the loss window, which events
    /// update, decides, and a past deadline would make the caller spin).
    func nextEvaluation(now: UInt64, configuration: MultipathConfiguration) -> UInt64? {
        var deadline: UInt64?
        if state != .down, !systemDown { deadline = blackholeDeadline(configuration) }
        if state == .degraded, !systemDown {
            let holdEnd = stateSince &+ degradedHold(configuration)
            if holdEnd > now { deadline = min(deadline ?? holdEnd, holdEnd) }
        }
        if state == .probing, consecutiveReplies >= (flaps == 0 ? 1 : Tuning.repliesToRecover) {
            let at = stateSince &+ recoveryHoldDown(configuration)
            deadline = min(deadline ?? at, at)
        }
        return deadline
    }

    // MARK: Unconfirmed sends (blackhole detection)

    private mutating func confirm(sentAt: UInt64, at now: UInt64) {
        if sentAt > confirmedSendTime || confirmedSendTime == 0 {
            confirmedSendTime = max(confirmedSendTime, sentAt)
            lastProgressAt = now
        }
        // A send later than every packet the receiver asked for got through: the uplink works.
        if requestedLosses > 0, confirmedSendTime >= requestedLossLatestSend { clearSuspicion() }
    }

    // MARK: Suspicion (sender side, from the receiver's resend requests)

    /// The send time of this uplink's latest transmission of `sequence` if that was after the last confirmed send
    /// (nil otherwise). Bounded by the sends since that confirmation, within the send history.
    func unconfirmedSendTime(of sequence: UInt32) -> UInt64? {
        let oldest = oldestKeptUnacknowledged
        var index = historyWritten
        while index > oldest {
            index -= 1
            let record = history[Int(index) & historyMask]
            if record.sentAt <= confirmedSendTime { return nil }
            if record.sequence == sequence { return record.sentAt }
        }
        return nil
    }

    /// The receiver asked for a packet sent on this uplink at `sentAt`, after its last confirmed send. Enough of
    /// them (`Tuning.requestedLossesForSuspicion`) make the uplink suspect until a later send is confirmed — if the
    /// uplink's confirmations have also stopped for two feedback intervals: a slow uplink's packets are requested
    /// while only late (spurious requests: the skewed pair's 50 ms link, 62 % instead of 91 % of the summed rate when
    /// that counted), and a congested one's drops are requested while its feedback keeps coming. A request sooner
    /// than a round trip after the send is for a late packet, not a lost one, and doesn't count.
    mutating func noteRequestedLoss(sentAt: UInt64, at now: UInt64, configuration: MultipathConfiguration) {
        guard sentAt > confirmedSendTime, state != .down, now >= sentAt &+ rtt.smoothed else { return }
        requestedLosses += 1
        requestedLossLatestSend = max(requestedLossLatestSend, sentAt)
        if requestedLosses >= Tuning.requestedLossesForSuspicion, suspectSince == nil,
           now - min(now, lastProgressAt) >= 2 * configuration.feedbackInterval {
            suspectSince = now
        }
    }

    var isSuspect: Bool { suspectSince != nil }

    private mutating func clearSuspicion() {
        requestedLosses = 0
        requestedLossLatestSend = 0
        suspectSince = nil
    }

    /// When the link counts as blackholed if nothing changes: sends stay unconfirmed and no confirmation
    /// progress arrives for the loss deadline (SRTT + 4·RTTVAR + feedback interval). Progress matters as
    /// well as send age, so a deep queue (sends confirmed late, but steadily) isn't mistaken for an outage.
    ///
    /// Idle (no data unacknowledged, only heartbeats) the rule is stricter: `Tuning.idleLostHeartbeatsForDown`
    /// heartbeats in a row must be past their deadline, so a lossy idle link is degraded rather than down.
    ///
    /// While the peer's data keeps arriving on the uplink, the deadline waits for the arrivals to stop (for
    /// `arrivalsGap`), up to `lateConfirmationAllowance` past it. The confirmations come back on the link's other
    /// direction, and when that direction carries a download they wait behind it in the link's buffer and are
    /// tail-dropped with it (in the lab, 100 ms downstream queues: the client's engine declared wifi0 or eth0 down
    /// at the start of about one download in four while they were delivering it). Arrivals say the other direction
    /// works, and that ours did until about a loss deadline ago: the peer stops sending data on an uplink whose
    /// feedback from us stops. So a blackhole (nothing arrives) is found as before, and a dead direction of ours
    /// once the peer has noticed it too (`LateFeedbackTests`).
    func blackholeDeadline(_ configuration: MultipathConfiguration) -> UInt64? {
        guard let oldest = oldestUnconfirmedSend(), unconfirmedSends >= Tuning.minUnconfirmedSendsForDown else {
            return nil
        }
        let deadline = lossDeadline(configuration)
        // Counted in the link's own heartbeats; a probing link probes at the fast pace, so the fast rule applies.
        let heartbeat = state == .probing ? configuration.heartbeatInterval : policy.idleHeartbeat(configuration)
        let idleDeadline = max(oldest, lastProgressAt) &+ deadline &+ (Tuning.idleLostHeartbeatsForDown - 1) * heartbeat
        // Idle also when every packet still unacknowledged was sent before a probe that has been answered: the
        // peer's feedback on the last packets before a pause can be lost (tail-dropped behind a download), and
        // with nothing sent since, no later feedback would acknowledge them.
        if historyWritten == historyAcked || (lastDataSentAt ?? 0) <= confirmedSendTime {
            return waitingForArrivals(idleDeadline)
        }
        // Under traffic the deadline counts from the oldest unconfirmed send, but a heartbeat lost while the link
        // idled, just before data started again, is judged by the idle rule: otherwise the link went down one loss
        // deadline after that heartbeat, before the new data could be confirmed (three links, seed 7: data resumed
        // on the 40 ms uplink 89 ms after a lost heartbeat, down 57 ms later, and the run lost 17 points).
        if oldest < dataResumedAt {
            return waitingForArrivals(min(idleDeadline, max(dataResumedAt, lastProgressAt) &+ deadline))
        }
        return waitingForArrivals(max(oldest, lastProgressAt) &+ deadline)
    }

    /// `unconfirmedDeadline`, or later while the peer's data keeps arriving (see `blackholeDeadline`).
    private func waitingForArrivals(_ unconfirmedDeadline: UInt64) -> UInt64 {
        guard let arrival = lastArrivalSeenAt, arrival &+ Self.arrivalsGap > unconfirmedDeadline else {
            return unconfirmedDeadline
        }
        return min(unconfirmedDeadline &+ Self.lateConfirmationAllowance, arrival &+ Self.arrivalsGap)
    }

    /// Data arriving on the uplink within this long counts as a steady flow (a loaded link delivers a packet every
    /// millisecond or two; the engine notices arrivals at its next evaluation). Well below `minLossDeadline`: a
    /// blackhole's last arrivals come no later than its last confirmations, so they can't postpone its detection.
    static let arrivalsGap: UInt64 = 40 * Nanoseconds.millisecond
    /// How much longer sends may stay unconfirmed while the peer's data keeps arriving (`blackholeDeadline`).
    static let lateConfirmationAllowance: UInt64 = 1 * Nanoseconds.second

    var unconfirmedSends: Int {
        var count = Int(min(historyWritten - historyAcked, UInt64(history.count)))
        for index in probeActive.indices where probeActive[index] && probeTimes[index] > confirmedSendTime {
            count += 1
        }
        return count
    }

    /// Index of the oldest record that is both still in the ring and not yet acknowledged.
    private var oldestKeptUnacknowledged: UInt64 {
        let capacity = UInt64(history.count)
        return max(historyAcked, historyWritten >= capacity ? historyWritten - capacity : 0)
    }

    func oldestUnconfirmedSend() -> UInt64? {
        var oldest: UInt64?
        if historyWritten > historyAcked {
            oldest = history[Int(oldestKeptUnacknowledged) & historyMask].sentAt
        }
        for index in probeActive.indices where probeActive[index] && probeTimes[index] > confirmedSendTime {
            oldest = min(oldest ?? probeTimes[index], probeTimes[index])
        }
        return oldest
    }

    // MARK: Sender events

    /// `idleGap`: a send after this long without one resumes data on an idle link (`dataResumedAt`).
    mutating func recordSend(counter: UInt64, sequence: UInt32, bytes: Int, at now: UInt64, idleGap: UInt64) {
        txPackets &+= 1
        txBytes &+= UInt64(max(0, bytes))
        if lastDataSentAt.map({ now &- $0 > idleGap }) ?? true { dataResumedAt = now }
        lastDataSentAt = now
        // A counter that goes backwards breaks the ring's ordering; such a record is counted but not kept.
        if historyWritten > 0, counter <= history[Int(historyWritten - 1) & historyMask].counter { return }
        history[Int(historyWritten) & historyMask] = SentRecord(counter: counter, sentAt: now, sequence: sequence,
                                                                cumulativePackets: txPackets)
        historyWritten += 1
    }

    /// Latest record with counter ≤ `counter` among those still in the ring and not yet acknowledged.
    private func recordIndex(atOrBelow counter: UInt64) -> UInt64? {
        let oldest = oldestKeptUnacknowledged
        guard historyWritten > oldest else { return nil }
        var low = oldest, high = historyWritten - 1
        guard history[Int(low) & historyMask].counter <= counter else { return nil }
        while low < high {
            let mid = low + (high - low + 1) / 2
            if history[Int(mid) & historyMask].counter <= counter { low = mid } else { high = mid - 1 }
        }
        return low
    }

    mutating func recordFeedback(_ report: FeedbackReport, at now: UInt64, configuration: MultipathConfiguration) {
        if let highest = highestReportedCounter, report.highestCounter < highest { return }
        guard report.receivedPackets >= reportedPackets, report.receivedBytes >= reportedBytes else { return }
        let previousPackets = reportedPackets
        let progressed = report.receivedPackets > reportedPackets
        if let index = recordIndex(atOrBelow: report.highestCounter) {
            let record = history[Int(index) & historyMask]
            let previouslyExpected = historyAcked > 0 ? history[Int(historyAcked - 1) & historyMask].cumulativePackets : 0
            let expected = record.cumulativePackets > previouslyExpected ? record.cumulativePackets - previouslyExpected : 0
            let received = report.receivedPackets - previousPackets
            // Losses while the link is congested are our own traffic overflowing its buffer: the scheduler
            // and TCP handle those. Only loss on an uncongested link says something about its quality.
            if expected > 0, !isCongested(at: now) {
                let lost = expected > received ? expected - received : 0
                loss.record(expected: expected, lost: lost, at: now)
                if lost > 0 {
                    recentLossTimes[recentLossNext] = now
                    recentLossCounts[recentLossNext] = lost
                    recentLossNext = (recentLossNext + 1) % Tuning.recentLossSlots
                }
            }
            // More received than newly expected: packets counted lost earlier arrived late (reordered within
            // the link). Take them back while the loss is recent, newest first; reordering is not loss.
            if received > expected { creditLateArrivals(received - expected, at: now) }
            // Progress is more packets confirmed, not a later send time: a burst sent at one instant
            // drains over time, and each feedback covering more of it proves the link alive.
            if index + 1 > historyAcked { lastProgressAt = now }
            historyAcked = index + 1
            confirm(sentAt: record.sentAt, at: now)
        } else if progressed {
            // History overwritten (or peer counts packets we didn't record): still proof of life.
            confirm(sentAt: now &- min(now, rtt.smoothed), at: now)
            historyAcked = historyWritten
        }
        highestReportedCounter = report.highestCounter
        reportedPackets = report.receivedPackets
        if report.receivedBytes > reportedBytes {
            sampleDeliveryRate(bytes: report.receivedBytes, at: now, reportedAt: report.reportedAt ?? now)
        }
        reportedBytes = report.receivedBytes
    }

    private mutating func sampleDeliveryRate(bytes: UInt64, at now: UInt64, reportedAt: UInt64) {
        // Compare with the newest stored sample at least minRateSampleSpan old.
        var best: Int?
        for age in 0..<rateSampleCount {
            let index = (rateSampleNext - 1 - age + 2 * Tuning.rateSamples) % Tuning.rateSamples
            if now - rateSampleTimes[index] >= max(Tuning.minRateSampleSpan, rtt.smoothed) {
                best = index
                break
            }
        }
        // The span is taken on the reporter's clock when it says when it reported (feedback jitter drops
        // out); a report that isn't later than the baseline on that clock can't give a rate.
        if let index = best, bytes > rateSampleBytes[index] {
            // A reporter clock that disagrees wildly with ours (garbage, restart) is not trusted.
            let localSpan = now - rateSampleTimes[index]
            let remoteSpan = reportedAt &- rateSampleReportTimes[index]
            let span = remoteSpan >= localSpan / 2 && remoteSpan <= localSpan * 2 ? remoteSpan : localSpan
            let delivered = bytes - rateSampleBytes[index]
            let (product, overflow) = delivered.multipliedReportingOverflow(by: 8_000_000_000)
            let rate = overflow ? UInt64.max / 2 : product / max(span, 1)
            // Samples from a span where we weren't keeping the link busy are app-limited: they may raise
            // the estimate but not lower it (as in BBR).
            let appLimited = lastModelIdleAt >= rateSampleTimes[index] &- min(rateSampleTimes[index], rtt.smoothed)
            if !appLimited || rate >= capacityBits {
                capacity.update(rate, at: now)
            }
            capacityBits = max(Tuning.capacityFloor, capacity.best ?? capacityBits)
        }
        rateSampleTimes[rateSampleNext] = now
        rateSampleReportTimes[rateSampleNext] = reportedAt
        rateSampleBytes[rateSampleNext] = bytes
        rateSampleNext = (rateSampleNext + 1) % Tuning.rateSamples
        rateSampleCount = min(rateSampleCount + 1, Tuning.rateSamples)
    }

    /// Records of unacknowledged packets sent since `since`, newest last (for failover resends).
    func unacknowledgedSequences(sentSince since: UInt64, into body: (UInt32) -> Void) {
        guard historyWritten > historyAcked else { return }
        var index = oldestKeptUnacknowledged
        while index < historyWritten {
            let record = history[Int(index) & historyMask]
            if record.sentAt >= since { body(record.sequence) }
            index += 1
        }
    }

    // MARK: Probes

    mutating func recordProbeSent(id probeID: UInt32, at now: UInt64) {
        // Reuse the oldest slot; an overwritten probe simply never counts as answered.
        var slot = 0
        for index in probeActive.indices {
            if !probeActive[index] { slot = index; break }
            if probeTimes[index] < probeTimes[slot] { slot = index }
        }
        if probeActive[slot] { loss.record(expected: 1, lost: 1, at: now) }
        probeIDs[slot] = probeID
        probeTimes[slot] = now
        probeActive[slot] = true
        probeModelQueues[slot] = modelNetworkQueue(at: now)
    }

    /// Returns true when the reply matched an outstanding probe.
    mutating func recordProbeReply(id probeID: UInt32, at now: UInt64) -> Bool {
        for index in probeActive.indices where probeActive[index] && probeIDs[index] == probeID {
            probeActive[index] = false
            let sentAt = probeTimes[index]
            guard now >= sentAt else { return false }
            rtt.add(sample: now - sentAt, at: now)
            if probesSeeStandingQueue { lastFullAt = now }
            if pacingAllowance == nil {
                // The probe waited behind what really was queued; the model expected probeModelQueues[index].
                // Jitter on either side must not pass for a difference.
                let queued = now - sentAt - min(now - sentAt, rtt.windowedMinimum)
                let margin = max(Tuning.fasterThanModelledMargin, 2 * rtt.jitter)
                if probeModelQueues[index] > queued &+ margin { lastFasterThanModelledAt = now }
            }
            if let threshold = pacingExcessThreshold {
                // The link is behind the model by what this probe queued beyond what the model expected
                // (the estimate × probing gain was above the link's rate, or the link slowed down). Move the
                // model back in step once per probe round, so releases pause until the network drains and
                // arrival predictions include the backlog.
                let queued = now - sentAt - min(now - sentAt, rtt.windowedMinimum)
                let excess = queued > probeModelQueues[index] ? queued - probeModelQueues[index] : 0
                if excess > threshold, sentAt >= lastModelCorrectionAt {
                    let correction = min(excess, Tuning.maxModelQueueDelay)
                    networkBusyUntil = max(networkBusyUntil, now) &+ correction
                    modelBusyUntil = max(max(modelBusyUntil, now) &+ correction, networkBusyUntil)
                    lastModelCorrectionAt = now
                    lastFullAt = now
                }
            }
            queueDepth.update(now - sentAt - min(now - sentAt, rtt.windowedMinimum), at: now)
            loss.record(expected: 1, lost: 0, at: now)
            confirm(sentAt: sentAt, at: now)
            consecutiveReplies += 1
            // Probes older than this one that are still outstanding were lost (replies come back in order
            // on one path, near enough).
            for other in probeActive.indices where probeActive[other] && probeTimes[other] < sentAt {
                probeActive[other] = false
                loss.record(expected: 1, lost: 1, at: now)
                consecutiveReplies = 1
            }
            return true
        }
        return false
    }

    /// How long a probe stays outstanding: `Tuning.probeReplyTimeout`, longer on a relaxed idle heartbeat (metered
    /// links), where the `idleLostHeartbeatsForDown` probes the idle blackhole rule waits for span more than that and
    /// must all still be outstanding when the rule's deadline comes.
    func probeReplyTimeout(_ configuration: MultipathConfiguration) -> UInt64 {
        guard let heartbeat = policy.heartbeatInterval else { return Tuning.probeReplyTimeout }
        return max(Tuning.probeReplyTimeout, Tuning.idleLostHeartbeatsForDown * heartbeat &+ lossDeadline(configuration))
    }

    private mutating func expireProbes(now: UInt64, configuration: MultipathConfiguration) {
        let timeout = probeReplyTimeout(configuration)
        for index in probeActive.indices where probeActive[index] && now - probeTimes[index] > timeout {
            probeActive[index] = false
            loss.record(expected: 1, lost: 1, at: now)
            consecutiveReplies = 0
        }
    }

    /// A probe that went unanswered past the loss deadline resets the recovery count.
    mutating func noteProbeSilence(now: UInt64, configuration: MultipathConfiguration) {
        for index in probeActive.indices where probeActive[index] && now - probeTimes[index] > lossDeadline(configuration) {
            consecutiveReplies = 0
        }
    }

    mutating func resetForSystemUp(at now: UInt64) {
        systemDown = false
        nextProbeAt = now
        consecutiveReplies = 0
    }

    // MARK: Receiver side

    mutating func recordReceive(counter: UInt64, bytes: Int) {
        rxPackets &+= 1
        rxBytes &+= UInt64(max(0, bytes))
        rxHighestCounter = max(rxHighestCounter, counter)
    }

    mutating func noteArrival(at now: UInt64) {
        if let last = lastReceivedAt, now >= last {
            let sample = min(now - last, Nanoseconds.second)
            receiveGap = sample >= receiveGap ? receiveGap + (sample - receiveGap) / 8 : receiveGap - (receiveGap - sample) / 8
        }
        lastReceivedAt = now
    }

    /// Nothing arrived for longer than `Tuning.silenceGaps` usual gaps (and `Tuning.minSilence`): the uplink may be
    /// dying unnoticed — its state changes only after the probes' timeout, ~100 ms later.
    func isSilent(at now: UInt64) -> Bool {
        guard let last = lastReceivedAt, now > last else { return false }
        return now - last > max(Tuning.silenceGaps * receiveGap, Tuning.minSilence)
    }

    func feedbackDue(at now: UInt64, interval: UInt64) -> UInt64? {
        guard rxPackets > rxPacketsAtLastFeedback else { return nil }
        return lastFeedbackSentAt &+ interval
    }

    mutating func takeFeedback(at now: UInt64) -> FeedbackReport {
        rxPacketsAtLastFeedback = rxPackets
        lastFeedbackSentAt = now
        return FeedbackReport(highestCounter: rxHighestCounter, receivedPackets: rxPackets, receivedBytes: rxBytes,
                              reportedAt: now)
    }

    mutating func forgetTransit() {
        lastTransitAt = nil
        transit = 0
        transitJitter = 0
    }

    /// `sample` is bounded by the engine to ±60 s, so none of this arithmetic can overflow.
    mutating func recordTransit(_ sample: Int64, at now: UInt64) {
        if lastTransitAt == nil {
            transit = sample
        } else {
            transit += (sample - transit) >> 3
            let step = UInt64(clamping: (sample - lastTransitSample).magnitude)
            let j = Int64(clamping: transitJitter)
            transitJitter = UInt64(max(0, j + (Int64(clamping: step) - j) >> Tuning.jitterGainShift))
        }
        lastTransitSample = sample
        lastTransitAt = now
    }
}
