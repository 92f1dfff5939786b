import TriglavCore

/// The multipath engine of one tunnel: uplink quality and health, packet scheduling, the receive-side
/// reorder buffer and failover. Sans-IO: the data plane feeds it events with `now` (monotonic
/// nanoseconds, one clock for all calls) and carries out the `Duty`s it hands back.
///
/// Lifetime and threading: a value type owned by one thread (the data plane's pump); not Sendable-shared.
/// Memory is fixed by the configuration and the number of uplinks (≤ `MultipathLimits.maxUplinks`):
/// `schedule`, `receive`, `nextDelivery`, `nextDuty` and `handle` never allocate.
///
/// `Packet` is whatever the data plane wants the reorder buffer to hold (a buffer index, a slice handle).
public struct MultipathEngine<Packet> {
    public private(set) var configuration: MultipathConfiguration
    private var uplinks: [UplinkTracker] = []
    private var reorder: ReorderBuffer<Held>
    private var equalizer: DelayEqualizer<Packet>
    private var notices: DutyRing
    private var resends: SequenceRing
    private var flowPins: FlowTable
    private var nextProbeID: UInt32 = 1
    private var transitBase: UInt64?
    private var transitOutliers = 0
    private var spillLevel = 0
    private var demandBitsPerSecond: UInt64 = 0
    private var demandBytes: UInt64 = 0
    private var demandWindowStart: UInt64 = 0
    private var failoverActive: UplinkID?
    private var lastTick: UInt64?
    private var latestTime: UInt64 = 0
    private var lastTimingUpdate: UInt64?
    private var excludedIndex: Int?
    /// Uplinks `schedule` avoids when any other is usable (`avoidingSilentUplinks`).
    private var avoidedMask: UInt32 = 0
    /// Packets refused at ingress because every uplink's queue was past the target (tunnel AQM).
    public private(set) var ingressDrops: UInt64 = 0
    /// Packets the paced AQM marked Congestion Experienced instead of dropping (`SharedAdmission.queuedCongestionExperienced`).
    public private(set) var congestionMarks: UInt64 = 0
    /// Paced ingress AQM: no further refusal (below the hard limit) before this.
    private var aqmQuietUntil: UInt64 = 0
    /// Late binding: a refusal or shedding happened and the shared queue hasn't been below the target since (the
    /// sender is still reacting to it: no further single refusal).
    private var sharedDropEpisode = false
    /// Late binding: since when the shared queue's expected queueing has been above the target (nil: it isn't).
    private var sharedAboveTargetSince: UInt64?
    /// When an uplink that carried data last went down (nil: none has).
    public private(set) var lastFailoverAt: UInt64?

    public init(configuration: MultipathConfiguration = MultipathConfiguration()) throws(MultipathError) {
        try configuration.validate()
        self.configuration = configuration
        reorder = try ReorderBuffer(capacity: configuration.reorderCapacity,
                                    waitBound: configuration.maxReorderHold / 4,
                                    resendRequestDelay: configuration.minReorderWait,
                                    requestsResends: configuration.requestsResends)
        reorder.maxHold = configuration.maxReorderHold
        reorder.asksLateHeadGapAgain = configuration.asksLateHeadGapAgain
        equalizer = try DelayEqualizer(capacity: configuration.reorderCapacity,
                                       maxHold: configuration.maxEqualizationDelay)
        notices = DutyRing(capacity: 4 * MultipathLimits.maxUplinks)
        resends = SequenceRing(capacity: MultipathLimits.maxPendingResends)
        flowPins = FlowTable(capacity: MultipathLimits.flowTableCapacity)
        uplinks.reserveCapacity(MultipathLimits.maxUplinks)
    }

    // MARK: Management (not per packet; may allocate)

    /// The active scheduler.
    public var scheduler: SchedulerMode { configuration.scheduler }

    /// Switches the scheduler at runtime; takes effect with the next `schedule` call. The configured
    /// `redundantCopies` stay as they are (a bare mode switch, as from the control API, must not turn
    /// "best 2" into "every uplink").
    public mutating func setScheduler(_ mode: SchedulerMode) throws(MultipathError) {
        try setScheduler(mode, redundantCopies: configuration.redundantCopies)
    }

    /// Switches the scheduler and sets the copies `redundant` sends (nil: one per usable uplink).
    public mutating func setScheduler(_ mode: SchedulerMode, redundantCopies: Int?) throws(MultipathError) {
        var updated = configuration
        updated.scheduler = mode
        updated.redundantCopies = redundantCopies
        try updated.validate()
        configuration = updated
        failoverActive = nil
    }

    /// Adds an uplink in state `probing`; its first probe is due at once (unless its tier is `never`).
    public mutating func addUplink(_ id: UplinkID, policy: UplinkPolicy = UplinkPolicy(), now: UInt64)
        throws(MultipathError) {
        let now = advanceClock(to: now)
        guard index(of: id) == nil else { throw .duplicateUplink(id) }
        guard uplinks.count < MultipathLimits.maxUplinks else { throw .tooManyUplinks(limit: MultipathLimits.maxUplinks) }
        try policy.validate()
        uplinks.append(UplinkTracker(id: id, policy: policy, configuration: configuration, now: now))
    }

    /// Changes tier, metering, data cap or idle heartbeat of an uplink. A shorter heartbeat applies from now on
    /// (the probe scheduled for the old one is brought forward).
    public mutating func updatePolicy(_ policy: UplinkPolicy, for id: UplinkID) throws(MultipathError) {
        guard let index = index(of: id) else { throw .unknownUplink(id) }
        try policy.validate()
        let previous = uplinks[index].policy
        uplinks[index].policy = policy
        uplinks[index].nextProbeAt = min(uplinks[index].nextProbeAt, latestTime &+ policy.idleHeartbeat(configuration))
        // Failover re-picks only when what makes an uplink preferable changed: a capped uplink's allowance is
        // updated every second (and its spending is checked per packet), a heartbeat changes no preference.
        let preferenceChanged = previous.tier != policy.tier || previous.isMetered != policy.isMetered
            || (previous.dataCapBytes == nil) != (policy.dataCapBytes == nil)
        if preferenceChanged { failoverActive = nil }
    }

    /// Removes an uplink at once (interface gone, or configuration change). Its unacknowledged recent
    /// packets are queued as `Duty.resend`; in `flow` mode only its flows move.
    public mutating func removeUplink(_ id: UplinkID, now: UInt64) throws(MultipathError) {
        let now = advanceClock(to: now)
        guard let index = index(of: id) else { throw .unknownUplink(id) }
        queueFailoverResends(from: uplinks[index], now: now)
        uplinks.remove(at: index)
        if failoverActive == id { failoverActive = nil }
    }

    /// IDs of the managed uplinks, in the order they were added.
    public var uplinkIDs: [UplinkID] { uplinks.map(\.id) }

    /// Snapshot of one uplink, nil if unknown.
    public func statistics(for id: UplinkID) -> UplinkStatistics? {
        guard let index = index(of: id) else { return nil }
        let tracker = uplinks[index]
        let fastestTransit = uplinks.filter { $0.lastTransitAt != nil && $0.state != .down }.map(\.transit).min()
        var relative: UInt64?
        if tracker.lastTransitAt != nil, let fastest = fastestTransit {
            relative = UInt64(clamping: max(0, tracker.transit - fastest))
        }
        return UplinkStatistics(
            id: tracker.id, policy: tracker.policy, state: tracker.state, stateSince: tracker.stateSince,
            smoothedRTT: tracker.rtt.smoothed, rttVariance: tracker.rtt.variance,
            minimumRTT: tracker.rtt.hasSample ? tracker.rtt.windowedMinimum : 0, jitter: tracker.rtt.jitter,
            predictedRTT: tracker.rtt.predicted(horizon: tracker.rtt.smoothed),
            lossPercent: tracker.loss.percent(at: lastTick ?? 0),
            capacityBitsPerSecond: tracker.capacityBits, relativeOneWayDelay: relative,
            txPackets: tracker.txPackets, txBytes: tracker.txBytes,
            rxPackets: tracker.rxPackets, rxBytes: tracker.rxBytes)
    }

    /// Snapshots of all uplinks.
    public func allStatistics() -> [UplinkStatistics] { uplinks.compactMap { statistics(for: $0.id) } }

    /// Counters of the receive-side reorder buffer.
    public var reorderStatistics: ReorderStatistics { reorder.statistics }
    /// Current adaptive reorder wait (gap skip bound) and resend-request delay.
    public var reorderWaitBound: UInt64 { reorder.waitBound }
    public var reorderResendRequestDelay: UInt64 { reorder.resendRequestDelay }
    /// Packets held by the reorder buffer now.
    public var reorderBufferedCount: Int { reorder.bufferedCount }
    /// Bytes of fixed storage of the reorder buffer and the delay equaliser (for memory-bound checks).
    public var reorderStorageFootprint: Int { reorder.storageFootprint + equalizer.storageFootprint }

    /// Counters of the receive-side delay equaliser.
    public var equalizerStatistics: DelayEqualizer<Packet>.Statistics { equalizer.statistics }
    /// Packets held by the delay equaliser now (released by the reorder buffer, not yet due).
    public var equalizerHeldCount: Int { equalizer.count }
    /// How long packets arriving on `id` are held now to match the slowest uplink carrying data.
    public func equalizationHold(for id: UplinkID) -> UInt64 { equalizer.hold(for: id) }

    /// Bytes of fixed per-uplink storage (send history, probe and rate rings), for memory-bound checks.
    var uplinkStorageFootprint: Int { uplinks.reduce(0) { $0 + $1.storageFootprint } + resends.storageFootprint }

    /// The scheduler's model of an uplink's send queue (time to drain) at `now`, for tests and traces.
    func modelQueueDelay(for id: UplinkID, now: UInt64) -> UInt64? {
        guard let index = index(of: id) else { return nil }
        return uplinks[index].modelBusyUntil > now ? uplinks[index].modelBusyUntil - now : 0
    }

    /// Sender-side pacing (`configuration.pacingQueueAllowance` set): the time from which uplink `id` takes its
    /// next packet. The data plane keeps, per uplink, the packets `schedule` and `scheduleResend` chose it for in
    /// two FIFOs (resends first) and hands them over, reporting each with `packetSent`, while this is ≤ now;
    /// otherwise it arms a timer for it. Each `packetSent` moves it on by the packet's time at the modelled
    /// rate, so about `pacingQueueAllowance` of data sits in the network's buffer. Without pacing: 0 (at once).
    /// nil: unknown uplink.
    public func releaseTime(on id: UplinkID) -> UInt64? {
        guard let index = index(of: id) else { return nil }
        guard let allowance = configuration.pacingQueueAllowance else { return 0 }
        let busy = uplinks[index].networkBusyUntil
        return busy > allowance ? busy - allowance : 0
    }

    /// The largest datagram (in `packetLength`'s bytes) uplink `id`'s path carries — its path MTU minus the outer IP
    /// and UDP headers — or nil for no limit. A path smaller than the others' (when the tunnel's MTU is held at
    /// IPv6's 1280 above it) can't take every packet; a packet larger than this goes to an uplink it fits on
    /// whenever one is usable (every mode's data, resends, late binding), rather than be refused by the small one's
    /// socket. `flow` keeps the flow pinned and `failover` its active uplink: only that packet goes elsewhere.
    public mutating func setLargestDatagram(_ bytes: Int?, for id: UplinkID) throws(MultipathError) {
        guard let index = index(of: id) else { throw .unknownUplink(id) }
        uplinks[index].largestDatagram = bytes
    }

    /// Whether uplink `index`'s path carries a `bytes`-byte datagram.
    private func fits(_ index: Int, bytes: Int) -> Bool { bytes <= uplinks[index].largestDatagram ?? .max }

    /// `mask` without the uplinks whose path can't carry a `bytes`-byte datagram, unless that leaves none (then the
    /// packet goes where it would have gone anyway, and that socket refuses it).
    private func fitting(_ mask: UInt32, bytes: Int) -> UInt32 {
        var tooSmall: UInt32 = 0
        for index in uplinks.indices where !fits(index, bytes: bytes) {
            tooSmall |= UInt32(1) << UInt32(index)
        }
        return mask & ~tooSmall != 0 ? mask & ~tooSmall : mask
    }

    /// `chosen`, or when its path can't carry a `bytes`-byte datagram the lowest-latency uplink of `mask` whose path can
    /// (`flow` and `failover`: their uplink stays theirs, only this packet goes elsewhere); `chosen` when none can.
    private func fittingChoice(_ chosen: Int, in mask: UInt32, bytes: Int) -> Int {
        guard !fits(chosen, bytes: bytes), let other = lowestLatency(in: fitting(mask, bytes: bytes)), fits(other, bytes: bytes)
        else { return chosen }
        return other
    }

    /// Starts counting a data cap from zero again (new billing period).
    public mutating func resetDataCap(for id: UplinkID) throws(MultipathError) {
        guard let index = index(of: id) else { throw .unknownUplink(id) }
        // Only the count restarts: the uplink keeps its state (a link the system reported down stays down), its
        // estimates and its unconfirmed packets.
        uplinks[index].restartDataCapCount()
    }

    // MARK: Events

    /// Feeds one event. Unknown uplinks are ignored (an event racing with `removeUplink`).
    public mutating func handle(_ event: UplinkEvent) {
        let now = advanceClock(to: event.timestamp)
        switch event {
        case .packetSent(let id, let counter, let sequence, let bytes, _):
            guard let index = index(of: id) else { return }
            uplinks[index].recordSend(counter: counter, sequence: sequence, bytes: bytes, at: now,
                                      idleGap: configuration.activityWindow)
            if uplinks[index].policy.heartbeatInterval != nil {
                // A relaxed idle link that starts carrying data probes at the active interval at once, not
                // after the rest of its idle heartbeat (its RTT and spread must be fresh for the scheduler).
                uplinks[index].nextProbeAt = min(uplinks[index].nextProbeAt, now &+ configuration.activeProbeInterval)
            }
            if configuration.pacingQueueAllowance != nil {
                let tx = transmissionTime(bytes: bytes, uplinks[index], now: now)
                uplinks[index].networkBusyUntil = max(now, uplinks[index].networkBusyUntil) &+ tx
            }
        case .probeReplied(let id, let probeID, _):
            guard let index = index(of: id) else { return }
            if uplinks[index].recordProbeReply(id: probeID, at: now), uplinks[index].state == .down,
               !uplinks[index].systemDown {
                noteTransition(uplinks[index].transition(to: .probing, at: now, configuration: configuration), index)
                if uplinks[index].policy.heartbeatInterval != nil {
                    // Back from down on a relaxed heartbeat: the replies that make it ready come at the probing pace,
                    // not one idle interval later.
                    uplinks[index].nextProbeAt = min(uplinks[index].nextProbeAt, now &+ configuration.activeProbeInterval)
                }
            }
            evaluate(index, now: now)
        case .probeReceived(let id, let senderTimestamp, _):
            guard let index = index(of: id) else { return }
            uplinks[index].noteArrival(at: now)
            let raw = event.timestamp &- senderTimestamp
            let base = transitBase ?? raw
            transitBase = base
            let sample = Int64(bitPattern: raw &- base)
            // Transit differences between uplinks are milliseconds; a sample a minute off means the peer's
            // clock restarted (or garbage). Ignore it, and re-base after a run of them.
            guard sample.magnitude <= 60 * Nanoseconds.second else {
                transitOutliers += 1
                if transitOutliers >= 16 {
                    transitOutliers = 0
                    transitBase = nil
                    for other in uplinks.indices { uplinks[other].forgetTransit() }
                }
                return
            }
            transitOutliers = 0
            uplinks[index].recordTransit(sample, at: now)
        case .feedbackReceived(let id, let report, _):
            guard let index = index(of: id) else { return }
            uplinks[index].recordFeedback(report, at: now, configuration: configuration)
            evaluate(index, now: now)
        case .resendRequested(let first, let count, _):
            for offset in 0..<min(count, 256) {
                resends.push(first &+ offset)
                if configuration.suspectsUplinksFromRequests { noteRequestedLoss(first &+ offset, now: now) }
            }
        case .resendDeclined(let first, let count, _):
            reorder.abandon(firstSequence: first, count: count)
        case .systemLinkDown(let id, _):
            guard let index = index(of: id) else { return }
            uplinks[index].systemDown = true
            evaluate(index, now: now)
        case .systemLinkUp(let id, _):
            guard let index = index(of: id) else { return }
            uplinks[index].resetForSystemUp(at: now)
            noteTransition(uplinks[index].transition(to: .probing, at: now, configuration: configuration), index)
        }
    }

    /// The engine's clock never runs backwards, whatever order the data plane's timestamps arrive in:
    /// every entry point goes through here, so no internal difference can underflow.
    private mutating func advanceClock(to time: UInt64) -> UInt64 {
        latestTime = max(latestTime, time)
        return latestTime
    }

    private mutating func evaluate(_ index: Int, now: UInt64) {
        noteTransition(uplinks[index].evaluate(now: now, configuration: configuration), index)
    }

    private mutating func noteTransition(_ change: (from: UplinkState, to: UplinkState)?, _ index: Int) {
        guard let change else { return }
        notices.push(.stateChanged(uplinks[index].id, from: change.from, to: change.to))
        if change.to == .down {
            if change.from.carriesData { lastFailoverAt = uplinks[index].stateSince }
            queueFailoverResends(from: uplinks[index], now: uplinks[index].stateSince)
            if failoverActive == uplinks[index].id { failoverActive = nil }
        }
    }

    /// The receiver asked for `sequence`: the uplink that carried its latest transmission, if that is not confirmed
    /// yet, moves towards suspicion (`UplinkTracker.noteRequestedLoss`).
    private mutating func noteRequestedLoss(_ sequence: UInt32, now: UInt64) {
        var latest: (index: Int, sentAt: UInt64)?
        for index in uplinks.indices {
            guard let sentAt = uplinks[index].unconfirmedSendTime(of: sequence) else { continue }
            if latest.map({ sentAt > $0.sentAt }) ?? true { latest = (index, sentAt) }
        }
        guard let latest else { return }
        uplinks[latest.index].noteRequestedLoss(sentAt: latest.sentAt, at: now, configuration: configuration)
    }

    /// The dead uplink's unconfirmed packets, oldest tunnel sequence first rather than in its send order: the
    /// receiver releases in sequence order, so the oldest hole is the one holding delivery. It is often a repair or
    /// a failover resend sent on the dying uplink late in its detection, which in send order waited behind the
    /// whole backlog (blackhole seed 38: 467 → 218 ms Linux-like, 324 → 216 ms Reno; nothing longer on seeds 11–60;
    /// BENCHMARKS.md, "Failover resends oldest first"). Allocates once per failover, not per packet.
    private mutating func queueFailoverResends(from tracker: UplinkTracker, now: UInt64) {
        let since = now > configuration.resendHorizon ? now - configuration.resendHorizon : 0
        var sequences: [UInt32] = []
        tracker.unacknowledgedSequences(sentSince: since) { sequences.append($0) }
        guard let reference = sequences.first else { return }
        // Tunnel sequences wrap; the backlog spans far less than half the space, so the signed distance orders it.
        sequences.sort { Int32(bitPattern: $0 &- reference) < Int32(bitPattern: $1 &- reference) }
        for sequence in sequences { resends.push(sequence) }
    }

    // MARK: Receive path

    /// A data packet arrived on `uplink` with tunnel `sequence`; `counter` and `bytes` are what the
    /// sender passed to `packetSent` (for feedback). Returns what to do with `packet`.
    ///
    /// `ordered: false` delivers it at once, without waiting for earlier sequences — for packets whose
    /// order doesn't matter and whose delay does (pure TCP ACKs: cumulative, so a reordered one is
    /// harmless, while holding them behind a repair stalls the sender's ACK clock). It is still
    /// deduplicated, and later packets don't wait for it.
    public mutating func receive(_ packet: Packet, sequence: UInt32, uplink: UplinkID, counter: UInt64, bytes: Int,
                                 now: UInt64, ordered: Bool = true) -> ReorderVerdict {
        let now = advanceClock(to: now)
        if let index = index(of: uplink) {
            uplinks[index].recordReceive(counter: counter, bytes: bytes)
            uplinks[index].noteArrival(at: now)
        }
        if !ordered { return reorder.insertBypassing(sequence: sequence, now: now) }
        // No packet is held longer than `maxReorderHold` from its arrival, equalisation and reordering together
        // (the reorder buffer's `maxHold` and the equaliser's `latest`): the configuration promises that bound.
        let latest = now &+ configuration.maxReorderHold
        let releaseAt = min(now &+ equalizer.noteData(on: uplink, at: now), latest)
        // A gap's wait counts from when the packets behind it would leave the equaliser anyway: a packet
        // still missing then (plus a jitter margin) was lost, not on a slower uplink.
        let verdict = reorder.insert(Held(packet: packet, releaseAt: releaseAt, latestRelease: latest),
                                     sequence: sequence, now: now, arrival: releaseAt)
        guard verdict == .deliverNow, !equalizer.canPassThrough(releaseAt: releaseAt, now: now) else { return verdict }
        // In order, but a faster uplink brought it: the equaliser holds it (a full FIFO lets it go now).
        return equalizer.enqueue(packet, releaseAt: releaseAt, latest: latest, now: now) ? .buffered : .deliverNow
    }

    /// The next packet to hand to the TUN in order (drain until nil after `receive` and on deadlines).
    /// Packets leave the reorder buffer in sequence order and then wait in the delay equaliser until
    /// due; when the two together hold ¾ of `reorderCapacity` (the data plane's storage is sized by it),
    /// the equaliser lets its packets go early rather than have new ones dropped.
    public mutating func nextDelivery(now: UInt64) -> Packet? {
        let now = advanceClock(to: now)
        let pressure = equalizer.count + reorder.bufferedCount >= configuration.reorderCapacity * 3 / 4
        if let packet = equalizer.dequeue(now: now, pressure: pressure) { return packet }
        while let held = reorder.nextReleasable(now: now) {
            if equalizer.canPassThrough(releaseAt: held.releaseAt, now: now) { return held.packet }
            guard equalizer.enqueue(held.packet, releaseAt: held.releaseAt, latest: held.latestRelease, now: now)
            else { return held.packet }
            if let packet = equalizer.dequeue(now: now, pressure: pressure) { return packet }
        }
        return nil
    }

    // MARK: Duties and deadlines

    /// The next thing the data plane must do now, or nil. Call in a loop until nil, after events and
    /// when `nextDeadline()` has passed.
    public mutating func nextDuty(now: UInt64) -> Duty? {
        let now = advanceClock(to: now)
        tick(now: now)
        if let notice = notices.pop() { return notice }
        if let sequence = resends.pop() { return .resend(sequence: sequence) }
        for index in uplinks.indices where uplinks[index].mayTransmit && now >= uplinks[index].nextProbeAt {
            let probeID = nextProbeID
            nextProbeID &+= 1
            uplinks[index].recordProbeSent(id: probeID, at: now)
            uplinks[index].nextProbeAt = now &+ probeInterval(uplinks[index], now: now)
            return .sendProbe(uplinks[index].id, probeID: probeID, timestamp: now)
        }
        for index in uplinks.indices where uplinks[index].mayTransmit {
            if let due = uplinks[index].feedbackDue(at: now, interval: configuration.feedbackInterval), now >= due {
                return .sendFeedback(uplinks[index].id, uplinks[index].takeFeedback(at: now))
            }
        }
        if let request = reorder.nextResendRequest(now: now) {
            return .requestResend(firstSequence: request.firstSequence, count: request.count)
        }
        return nil
    }

    /// The earliest time something needs `nextDuty`/`nextDelivery` (0: right away; nil: nothing pending).
    public func nextDeadline() -> UInt64? {
        if !notices.isEmpty || !resends.isEmpty { return 0 }
        var deadline = reorder.nextDeadline()
        func consider(_ time: UInt64?) {
            guard let time else { return }
            deadline = min(deadline ?? time, time)
        }
        consider(equalizer.nextDeadline)
        for tracker in uplinks {
            if tracker.mayTransmit {
                consider(tracker.nextProbeAt)
                consider(tracker.feedbackDue(at: 0, interval: configuration.feedbackInterval))
            }
            consider(tracker.nextEvaluation(now: latestTime, configuration: configuration))
        }
        return deadline
    }

    private func probeInterval(_ tracker: UplinkTracker, now: UInt64) -> UInt64 {
        switch tracker.state {
        case .down: return tracker.policy.idleHeartbeat(configuration)
        case .probing: return configuration.activeProbeInterval
        case .ready, .degraded:
            if let sent = tracker.lastDataSentAt, now - sent <= configuration.activityWindow {
                return configuration.activeProbeInterval
            }
            return tracker.policy.idleHeartbeat(configuration)
        }
    }

    /// Time-driven state changes and the reorder buffer's adaptive timing.
    private mutating func tick(now: UInt64) {
        guard lastTick != now else { return }
        lastTick = now
        for index in uplinks.indices {
            uplinks[index].noteProbeSilence(now: now, configuration: configuration)
            evaluate(index, now: now)
        }
        updateReorderTiming(now: now)
        updateEqualization(now: now)
    }

    /// Refreshes the delay equaliser's per-uplink holds from the one-way transit estimates. A transit
    /// older than 2 s (no probes arriving) counts as unknown.
    ///
    /// Only `aggregate` stripes one flow's packets over several paths, so only there does a flow's TCP see the
    /// fastest path's RTT while most of its data rides slower ones. Every other mode sends a flow on one path (or,
    /// `redundant`, every packet on every path, the first copy counting), and holding its packets to the slowest primary's delay would
    /// only add that delay: `lowest-latency` delivered at the slow link's latency (both peers run the same
    /// mode: the server follows the client's, `SchedulerFlags`). Those modes hold nothing.
    private mutating func updateEqualization(now: UInt64) {
        guard configuration.maxEqualizationDelay > 0 else { return }
        let striped = configuration.scheduler == .aggregate
        let trackers = uplinks
        func hasFreshTransit(_ tracker: UplinkTracker) -> Bool {
            tracker.lastTransitAt.map { now >= $0 && now - $0 <= 2 * Nanoseconds.second } ?? false
        }
        // A path whose peer's probes haven't arrived yet (a tunnel seconds old: the download may start as soon as
        // the first uplink answers) has no transit, but our own probes have given it an RTT. Half of it, put on
        // the transit scale through a path that has both, stands in; otherwise that path couldn't set the target,
        // the first packets of a flow would leave unequalised, and BBR would keep their RTT as its minimum for
        // 10 s — the whole download (docs/BENCHMARKS.md, "Lab test at 80 %").
        var rttToTransit: Int64?
        for tracker in trackers where hasFreshTransit(tracker) && tracker.rtt.hasSample {
            rttToTransit = tracker.transit - Int64(clamping: tracker.rtt.smoothed / 2)
            break
        }
        // A path that may carry data and of which we know neither: its delay, and so the target, is unknown, and
        // any hold short of the longest could release a flow's first packets early (in the lab the download starts
        // while every uplink is still waiting for its first probe reply). Until it is known or down, everything
        // waits the longest hold; BBR keeps the smallest RTT it sees, so a too-long one early costs nothing later.
        var paths = 0
        var unknown = false
        for tracker in trackers where tracker.policy.tier == .primary && !tracker.policy.isMetered
            && tracker.mayTransmit && tracker.state != .down {
            paths += 1
            if !hasFreshTransit(tracker) && !(rttToTransit != nil && tracker.rtt.hasSample) { unknown = true }
        }
        equalizer.updatePaths(count: trackers.count, now: now, assumingLongestHold: striped && unknown && paths >= 2) { index in
            let tracker = trackers[index]
            var transit: Int64?
            var jitter = tracker.transitJitter
            if hasFreshTransit(tracker) {
                transit = tracker.transit
            } else if let offset = rttToTransit, tracker.rtt.hasSample {
                transit = offset + Int64(clamping: tracker.rtt.smoothed / 2)
                jitter = tracker.rtt.jitter
            }
            return DelayEqualizer<Packet>.PathDelay(
                id: tracker.id, transit: transit, jitter: jitter,
                isUsable: striped && tracker.state.carriesData && !tracker.systemDown && tracker.policy.tier != .never,
                isAlwaysStriped: tracker.policy.tier == .primary && !tracker.policy.isMetered)
        }
    }

    private mutating func updateReorderTiming(now: UInt64) {
        var lowest: Int64?, highest: Int64?
        var worstJitter: UInt64 = 0
        var fastestRTT: UInt64?
        var slowestRTT: UInt64?
        var withTransit = 0
        for tracker in uplinks where tracker.state != .down && !tracker.systemDown {
            if let at = tracker.lastTransitAt, now - at <= 2 * Nanoseconds.second {
                lowest = min(lowest ?? tracker.transit, tracker.transit)
                highest = max(highest ?? tracker.transit, tracker.transit)
                worstJitter = max(worstJitter, tracker.transitJitter)
                withTransit += 1
            }
            if tracker.rtt.hasSample {
                fastestRTT = min(fastestRTT ?? tracker.rtt.smoothed, tracker.rtt.smoothed)
                slowestRTT = max(slowestRTT ?? tracker.rtt.smoothed, tracker.rtt.smoothed)
                worstJitter = max(worstJitter, tracker.rtt.jitter / 2)
            }
        }
        var spread: UInt64 = 0
        if withTransit >= 2, let low = lowest, let high = highest {
            spread = UInt64(clamping: high - low)
        } else if let fast = fastestRTT, let slow = slowestRTT {
            spread = (slow - fast) / 2
        }
        // Waits count from the equalised arrival (see `receive`): only the spread left over remains.
        let equalized = equalizer.largestHold
        spread = spread > equalized ? spread - equalized : 0
        let hold = configuration.maxReorderHold
        // What was learned from late and reordered packets fades linearly-proportionally: lateness over
        // about 2 s, reordering over about 4 s (an idle tunnel forgets both).
        func fade(_ value: UInt64, _ elapsed: UInt64, over window: UInt64) -> UInt64 {
            // value ≤ a few seconds and elapsed < window, so the product stays far below UInt64.max.
            elapsed >= window ? value : value * elapsed / window + 1
        }
        if let previous = lastTimingUpdate, now > previous {
            let elapsed = now - previous
            reorder.decayLateness(by: fade(reorder.observedLateness, elapsed, over: 2 * Nanoseconds.second))
            reorder.decayReordering(by: fade(reorder.observedReordering, elapsed, over: 4 * Nanoseconds.second))
        }
        lastTimingUpdate = now
        let floor = max(configuration.minReorderWait, min(hold, reorder.observedLateness))
        // Ask for a missing packet after the reordering actually seen (RACK-style) plus a jitter margin,
        // never later than the worst case: the one-way delay spread between the uplinks.
        let worstCase = spread + worstJitter + configuration.minReorderWait
        // Probe jitter mostly reflects queueing the scheduler already accounts for, so it only adds a
        // small margin here; a request that proves spurious raises observedReordering instead.
        let observed = reorder.observedReordering + worstJitter / 2 + configuration.minReorderWait
        let requestDelay = max(configuration.minReorderWait, min(hold / 2, min(worstCase, observed)))
        reorder.fastestResendRoundTrip = fastestRTT ?? 0
        reorder.maxReorderingSample = hold / 2
        reorder.resendRequestDelay = requestDelay
        if configuration.requestsResends {
            let recovery = fastestRTT ?? hold / 4
            // Room for the request, the resend, and a second request/resend if the first was lost. With pacing
            // a gap is almost always a random loss that a resend will fill (congestion drops happen at ingress,
            // before a sequence is assigned), so the wait also covers a second repair that can't take the
            // fastest uplink (it carried the lost resend): skipping would cost TCP half its window.
            let repairs = configuration.pacingQueueAllowance == nil ? 2 * recovery + recovery / 2 : 4 * recovery
            let bound = requestDelay + repairs + 2 * worstJitter + 2 * configuration.minReorderWait
            reorder.waitBound = min(hold, max(bound, floor))
        } else {
            // Nothing will be resent, so a gap is either loss or a packet still on a slower uplink: wait
            // for the worst case (the delay spread), not just the reordering seen lately.
            reorder.waitBound = min(hold, max(worstCase, floor))
        }
    }

    private func index(of id: UplinkID) -> Int? {
        for index in uplinks.indices where uplinks[index].id == id { return index }
        return nil
    }

    // MARK: Scheduling (hot path: no allocation)

    /// Tier level for aggregation: 0 unmetered primary, 1 metered primary or unmetered secondary,
    /// 2 metered secondary, 3 backup; nil for links that must not carry data.
    private func level(_ tracker: UplinkTracker) -> Int? {
        guard tracker.mayTransmit, !tracker.isCapExhausted else { return nil }
        switch tracker.policy.tier {
        case .primary: return tracker.policy.isMetered ? 1 : 0
        case .secondary: return tracker.policy.isMetered ? 2 : 1
        case .backup: return 3
        case .never: return nil
        }
    }

    /// Bit mask (by index) of the uplinks the current mode may use now.
    /// `avoidsSuspects`: leave out suspect uplinks (`UplinkTracker.isSuspect`) when another is usable — for choosing
    /// an uplink; the AQM's view of the capacity keeps them until they are down.
    private func eligibleMask(allowSpill: Bool, preferReady: Bool, avoidsSuspects: Bool = true) -> UInt32 {
        var usableByLevel: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
        var readyMask: UInt32 = 0
        // Probing uplinks of the best tier only: a probing backup must not carry beside a probing primary.
        var probingMask: UInt32 = 0
        var probingLevel = Int.max
        var suspectMask: UInt32 = 0
        for index in uplinks.indices {
            guard let level = level(uplinks[index]) else { continue }
            let bit = UInt32(1) << UInt32(index)
            if uplinks[index].isSuspect { suspectMask |= bit }
            switch uplinks[index].state {
            case .ready: readyMask |= bit
            case .probing:
                if level < probingLevel { probingMask = 0; probingLevel = level }
                if level == probingLevel { probingMask |= bit }
                continue
            case .degraded: break
            case .down: continue
            }
            switch level {
            case 0: usableByLevel.0 |= bit
            case 1: usableByLevel.1 |= bit
            case 2: usableByLevel.2 |= bit
            default: usableByLevel.3 |= bit
            }
        }
        func usable(_ level: Int) -> UInt32 {
            switch level {
            case 0: usableByLevel.0
            case 1: usableByLevel.1
            default: usableByLevel.2
            }
        }
        var mask: UInt32 = 0
        if let base = (0...2).first(where: { usable($0) != 0 }) {
            let top = allowSpill ? min(2, base + spillLevel) : base
            for level in base...top { mask |= usable(level) }
        } else {
            mask = usableByLevel.3
        }
        if mask == 0 { mask = probingMask }
        if preferReady, mask & readyMask != 0 { mask &= readyMask }
        if let excluded = excludedIndex, mask & ~(UInt32(1) << UInt32(excluded)) != 0 {
            mask &= ~(UInt32(1) << UInt32(excluded))
        }
        if mask & ~avoidedMask != 0 { mask &= ~avoidedMask }
        if avoidsSuspects, mask & ~suspectMask != 0 { mask &= ~suspectMask }
        return mask
    }

    /// Chooses the uplink(s) for one packet of `packetLength` bytes. `flowKey` matters only in `flow` mode
    /// (nil there falls back to lowest latency). Empty selection: nothing can carry the packet.
    /// The engine assumes the packet is sent on every returned uplink (report each with `packetSent`).
    ///
    /// `excluding`: an uplink to avoid when any other is usable (ignored when it is the only one).
    /// For resends use `scheduleResend`, which also leaves congestion losses to TCP.
    ///
    /// `isAcknowledgement`: the packet is a pure TCP ACK (`aggregate` only). Its expected arrival counts the
    /// queue the scheduler itself has put on each uplink, not the queueing the probes see: a probe's RTT
    /// also holds the queue in the other direction, which for a receiver of a download is the download's
    /// own. Trusting it moved a download's ACKs off the fastest uplink onto slower, jittery ones, where
    /// ACKs overtake each other and reach the sender bunched: BBR then overestimated the bandwidth by up to
    /// 30 % and overflowed the uplinks' queues (docs/MULTIPATH.md, "Delay equalisation").
    public mutating func schedule(packetLength: Int, flowKey: FlowKey?, now: UInt64,
                                  excluding: UplinkID? = nil, isAcknowledgement: Bool = false) -> UplinkSelection {
        let now = advanceClock(to: now)
        updateDemand(bytes: packetLength, now: now)
        excludedIndex = excluding.flatMap { index(of: $0) }
        defer { excludedIndex = nil }
        var selection = UplinkSelection()
        switch configuration.scheduler {
        case .aggregate:
            let mask = fitting(eligibleMask(allowSpill: true, preferReady: true), bytes: packetLength)
            if let index = earliestArrival(in: mask, bytes: packetLength, now: now, trustsProbes: !isAcknowledgement) {
                if let target = configuration.ingressQueueTarget {
                    let arrival = expectedArrival(index, bytes: packetLength, now: now)
                    let slowest = slowestBaseDelay(in: mask)
                    let admitted = configuration.pacingQueueAllowance == nil ? arrival <= slowest &+ target
                        : admitPaced(queueing: arrival > slowest ? arrival - slowest : 0, target: target,
                                     slowestBaseDelay: slowest, now: now)
                    if !admitted {
                        ingressDrops &+= 1
                        return selection
                    }
                }
                commit(index, bytes: packetLength, now: now)
                selection.append(uplinks[index].id)
            }
        case .lowestLatency:
            if let index = lowestLatency(in: fitting(eligibleMask(allowSpill: false, preferReady: true), bytes: packetLength)) {
                commit(index, bytes: packetLength, now: now)
                selection.append(uplinks[index].id)
            }
        case .failover:
            let mask = eligibleMask(allowSpill: false, preferReady: true)
            var chosen: Int?
            if let active = failoverActive, let index = index(of: active), mask & (1 << UInt32(index)) != 0 {
                chosen = index
            } else {
                chosen = lowestLatency(in: mask)
                failoverActive = chosen.map { uplinks[$0].id }
            }
            // A packet too large for the active uplink's path goes on the best other one it fits; the active stays.
            if let index = chosen {
                let index = fittingChoice(index, in: mask, bytes: packetLength)
                commit(index, bytes: packetLength, now: now)
                selection.append(uplinks[index].id)
            }
        case .flow:
            // Degraded links keep their flows: flows move only when their uplink stops carrying data.
            let mask = eligibleMask(allowSpill: false, preferReady: false)
            let index: Int?
            if let key = flowKey { index = pinnedUplink(key, in: mask) } else { index = lowestLatency(in: mask) }
            // A packet too large for its flow's uplink goes on the best one it fits; the flow stays pinned (one
            // packet out of order beats one refused by the small path's socket).
            if let index {
                let index = fittingChoice(index, in: mask, bytes: packetLength)
                commit(index, bytes: packetLength, now: now)
                selection.append(uplinks[index].id)
            }
        case .redundant:
            // Copies go to the best tier carrying data: secondaries only when no primary does or demand spilled past
            // the primaries to their level (as in `aggregate`); backup only when nothing else works (fallback below).
            var primaryLevel = 3
            for tracker in uplinks where tracker.policy.tier == .primary && tracker.state.carriesData {
                if let level = level(tracker) { primaryLevel = min(primaryLevel, level) }
            }
            var mask: UInt32 = 0
            var unmetered = 0
            var metered: UInt32 = 0
            for index in uplinks.indices {
                guard let level = level(uplinks[index]), level < 3, uplinks[index].state.carriesData else { continue }
                if uplinks[index].policy.tier == .secondary, primaryLevel < 3, level > primaryLevel + spillLevel { continue }
                if uplinks[index].policy.isMetered {
                    metered |= 1 << UInt32(index)
                } else {
                    mask |= 1 << UInt32(index)
                    unmetered += 1
                }
            }
            if unmetered < 2 { mask |= metered }
            if mask == 0 { mask = eligibleMask(allowSpill: false, preferReady: false) }
            mask = fitting(mask, bytes: packetLength)
            let copies = configuration.redundantCopies ?? MultipathLimits.maxUplinks
            while selection.count < copies, let index = lowestLatency(in: mask) {
                commit(index, bytes: packetLength, now: now)
                selection.append(uplinks[index].id)
                mask &= ~(1 << UInt32(index))
            }
        }
        return selection
    }

    /// `schedule` for a receiver's resend request (or another tunnel-wide control frame, `flowKey` nil): uplinks on
    /// which nothing arrived for much longer than usual (`UplinkTracker.isSilent`) are avoided when another is
    /// usable. The best uplink may be blackholing unnoticed — the probes declare it down ~100 ms later — and a
    /// request lost on it leaves the gap to the sender's TCP.
    public mutating func scheduleControl(packetLength: Int, now: UInt64, isAcknowledgement: Bool = false) -> UplinkSelection {
        let now = advanceClock(to: now)
        for index in uplinks.indices where uplinks[index].isSilent(at: now) { avoidedMask |= UInt32(1) << UInt32(index) }
        defer { avoidedMask = 0 }
        return schedule(packetLength: packetLength, flowKey: nil, now: now, isAcknowledgement: isAcknowledgement)
    }

    /// The ingress AQM with pacing, where the standing queue is ours. A packet that would queue longer than
    /// `target` is refused, but then no other until a round trip through the queue has passed (2 × the slowest
    /// one-way delay + target): TCP gets one loss per episode, halves once, and its fast retransmission, sent
    /// when that loss is noticed, finds room. Refusing everything past the target (the unpaced rule) dropped
    /// every other packet of a slow-start overshoot, the retransmissions with them, and Reno fell back to
    /// timeouts. Past the target + max(`Tuning.pacedQueueHeadroom`, 2 × the slowest one-way delay) — what a
    /// window can still add while TCP reacts — everything is refused (latency and memory bound).
    private mutating func admitPaced(queueing: UInt64, target: UInt64, slowestBaseDelay: UInt64, now: UInt64) -> Bool {
        if queueing > pacedHardLimit(target: target, slowestBaseDelay: slowestBaseDelay) { return false }
        guard queueing > target, now >= aqmQuietUntil else { return true }
        aqmQuietUntil = now &+ 2 * slowestBaseDelay &+ target
        return false
    }

    /// Chooses the uplink for a resend (after `Duty.resend` or a peer's request): the earliest expected
    /// arrival among usable uplinks other than `originalUplink` (which may be dying unnoticed). Returns an
    /// empty selection when the best candidate's queue is near the deepest it has been lately (¾ of it, at
    /// least `minCongestionQueueDelay`): that loss was congestion, and TCP must see it rather than have it
    /// hidden by a resend into a full queue.
    ///
    /// `originalWaitsBehind` (pacing): the original has not been handed to the network yet — it still waits in
    /// `originalUplink`'s queue behind this many bytes (resends and data). The receiver asked for a packet that is
    /// late, not lost; a copy is made only if it is expected to arrive before the original, otherwise the
    /// selection is empty and the data plane does nothing (no resend-declined: the original is on its way).
    public mutating func scheduleResend(packetLength: Int, originalUplink: UplinkID?, now: UInt64,
                                        originalWaitsBehind: Int? = nil) -> UplinkSelection {
        scheduleResend(packetLength: packetLength, originalUplink: originalUplink, alsoAvoiding: nil, now: now,
                       originalWaitsBehind: originalWaitsBehind)
    }

    /// `scheduleResend` for a repair (a resend the receiver asked for), also avoiding `alsoAvoiding` when another
    /// uplink is usable: the uplink the packet was first sent on, when `originalUplink` is that of an earlier repair
    /// (lost too). A loss on the best uplink may be the start of its blackhole, which the probes notice only ~100 ms
    /// later; the second repair of a packet then went back to the dying uplink once the first repair's was excluded.
    /// The simulator's experiment (`TRIGLAV_MULTIPATH_REPAIR_AVOID_FIRST=1`): fewer long blackhole gaps, but three-link
    /// throughput lost up to 12 points on one seed, so the deployment doesn't use it (BENCHMARKS.md, "Requests off
    /// silent uplinks").
    public mutating func scheduleResend(packetLength: Int, originalUplink: UplinkID?, alsoAvoiding: UplinkID?, now: UInt64,
                                        originalWaitsBehind: Int? = nil) -> UplinkSelection {
        let now = advanceClock(to: now)
        excludedIndex = originalUplink.flatMap { index(of: $0) }
        if let avoided = alsoAvoiding.flatMap({ index(of: $0) }) { avoidedMask |= UInt32(1) << UInt32(avoided) }
        defer {
            excludedIndex = nil
            avoidedMask = 0
        }
        var selection = UplinkSelection()
        // Resends use the levels the mode's data uses: only `aggregate` and `redundant` spill onto secondary and
        // metered uplinks under load; in the other modes a repair must not be what first puts a metered link to use.
        let spills = configuration.scheduler == .aggregate || configuration.scheduler == .redundant
        var mask = eligibleMask(allowSpill: spills, preferReady: true)
        // With pacing a resend goes ahead of the data waiting on our side: it waits only for the network's short
        // queue and the resends before it.
        let paced = configuration.pacingQueueAllowance != nil
        // A resend of a packet sent on an uplink that is down now is a failover resend; any other answers a
        // receiver's request (a repair) and goes ahead of the failover backlog (`repairsQueuedUntil`).
        let isRepair = !(originalUplink.flatMap { index(of: $0) }.map { uplinks[$0].state == .down } ?? false)
        // `flow`: a repair stays on the uplink that carried the original (its flow's) while that can carry data. Sent
        // elsewhere it overtook the flow's packets queued on the slower path and reordered the flow at the receiver —
        // what the mode promises never to do — and in this mode most requests are spurious (the tunnel sequence
        // interleaves flows on paths of different delay). A real loss's repair comes a round trip later either way.
        if configuration.scheduler == .flow, isRepair, let original = excludedIndex, uplinks[original].state.carriesData,
           level(uplinks[original]) != nil {
            mask = UInt32(1) << UInt32(original)
        }
        guard let index = earliestArrival(in: fitting(mask, bytes: packetLength), bytes: packetLength, now: now, asResend: paced,
                                          asRepair: isRepair)
        else { return selection }
        let tracker = uplinks[index]
        if paced, let waitsBehind = originalWaitsBehind, let original = excludedIndex,
           !copyArrivesFirst(on: index, bytes: packetLength, originalOn: original, waitsBehind: waitsBehind, now: now) {
            return selection
        }
        let modelQueue = paced ? tracker.modelNetworkQueue(at: now)
            : (tracker.modelBusyUntil > now ? tracker.modelBusyUntil - now : 0)
        let queue = max(modelQueue, tracker.measuredQueueDelay)
        guard queue <= tracker.congestionQueueDelay(floor: configuration.minCongestionQueueDelay) else { return selection }
        if paced {
            let queuedUntil = isRepair ? tracker.repairsQueuedUntil
                : max(tracker.resendsQueuedUntil, tracker.repairsQueuedUntil)
            let start = max(now &+ tracker.modelNetworkQueue(at: now), queuedUntil)
            // A resend that would wait on our side longer than any receiver holds a gap (`maxReorderHold`) arrives
            // after the gap was skipped: it only delays what is queued behind it. Without this bound the resends
            // for a burst of requests (or a failover backlog) queued for seconds ahead of all new data.
            guard start - now <= configuration.maxReorderHold else { return selection }
            let tx = transmissionTime(bytes: packetLength, tracker, now: now)
            if isRepair {
                uplinks[index].repairsQueuedUntil = start &+ tx
                // The failover backlog behind it goes out that much later.
                uplinks[index].resendsQueuedUntil = max(tracker.resendsQueuedUntil &+ tx, start &+ tx)
            } else {
                uplinks[index].resendsQueuedUntil = start &+ tx
            }
        }
        commit(index, bytes: packetLength, now: now)
        selection.append(tracker.id)
        return selection
    }

    // MARK: Late binding (pacing with one shared queue)

    /// Late binding, ingress: whether a packet of `packetLength` bytes may join the data plane's shared queue, which
    /// holds `backlogBytes` now (aggregate mode with pacing only; otherwise always true).
    ///
    /// With late binding the data plane keeps new packets in one FIFO, unnumbered, and `dequeueShared` binds the
    /// head to an uplink only when that uplink's pacer can send it now; per-uplink queues hold resends only. The
    /// standing queue the ingress target allows then sits in one queue in order instead of in per-uplink queues: an
    /// uplink that dies leaves only its in-flight packets to resend (not its share of the standing queue, which
    /// went out ahead of everything else as resends), and the survivors go on taking the shared queue in order.
    ///
    /// The paced AQM (`admitPaced`) on the expected arrival of the packet — the time the usable uplinks need for
    /// the backlog ahead of it plus the earliest arrival one offers, beyond the slowest uplink's delay — with these
    /// differences, each because a Reno sender needs an RTO for a lost retransmission: past the hard limit the
    /// queue sheds at its head (`dequeueShared`) instead of refusing here, so a newcomer (TCP's retransmission,
    /// perhaps) is still taken (only a shared queue of twice the hard limit is refused here); after a refusal or
    /// shedding nothing more is refused for a round trip through the queue as it is (not as the target would have
    /// it: after a failover the queue in time doubles and TCP hears of a loss that much later) nor before the queue
    /// was below the target again; and, as in CoDel, only a queue above the target for a round trip of the slowest
    /// uplink is refused at all, so the burst of retransmissions a sender fires after learning of a shed block is
    /// not cut at its end.
    public mutating func admitShared(packetLength: Int, backlogBytes: Int, now: UInt64) -> Bool {
        admitThroughAQM(packetLength: packetLength, backlogBytes: backlogBytes, ecnCapable: false, now: now) == .queued
    }

    /// What the paced AQM says to a newcomer at the shared queue: take it, tell its sender of congestion (drop it, or
    /// mark it Congestion Experienced when its sender reads ECN), or refuse it whatever it is (the queue's hard bound).
    private enum SharedAQMVerdict { case admit, signalCongestion, refuse }

    private mutating func sharedAQMVerdict(packetLength: Int, backlogBytes: Int, now: UInt64) -> SharedAQMVerdict {
        let now = advanceClock(to: now)
        updateDemand(bytes: packetLength, now: now)
        guard configuration.scheduler == .aggregate, configuration.pacingQueueAllowance != nil else { return .admit }
        // The AQM counts a suspect uplink's capacity until it is down: shedding the shared queue for a suspicion that turns
        // out false (or ahead of the failover) costs TCP a retransmission behind the whole queue.
        let mask = eligibleMask(allowSpill: true, preferReady: true, avoidsSuspects: false)
        guard mask != 0 else { return .refuse }
        guard let target = configuration.ingressQueueTarget else { return .admit }
        let queueing = sharedQueueing(bytes: packetLength, backlogBytes: backlogBytes, in: mask, now: now)
        let slowest = slowestBaseDelay(in: mask)
        let hardLimit = pacedHardLimit(target: target, slowestBaseDelay: slowest)
        if queueing <= target {
            sharedDropEpisode = false
            sharedAboveTargetSince = nil
        } else if sharedAboveTargetSince == nil {
            sharedAboveTargetSince = now
        }
        // As CoDel: only a queue that stayed above the target for a round trip of the slowest uplink is a standing
        // one; a burst that lifts it briefly (TCP's retransmissions after a loss, sent at once) is not refused.
        let persistent = now - (sharedAboveTargetSince ?? now) >= max(Tuning.pacedQueueHeadroom, 2 * slowest)
        // The bound on what the shared queue holds counts only the shared queue: after a failover the survivors' own
        // queues hold its resends, which refusing newcomers (TCP's retransmissions among them) can't shorten.
        let overBound = drainTime(bytes: backlogBytes + packetLength, in: mask, now: now) > 2 * hardLimit
        if overBound
            || (queueing > target && queueing <= hardLimit && now >= aqmQuietUntil && !sharedDropEpisode && persistent) {
            if queueing <= hardLimit {
                aqmQuietUntil = now &+ 2 * slowest &+ queueing
                sharedDropEpisode = true
            }
            return overBound ? .refuse : .signalCongestion
        }
        return .admit
    }

    /// Late binding, ingress, for a TCP segment the data plane looked up in its `DroppedSegmentLedger` (`take`):
    /// `drop` is how the AQM dropped the segment this one retransmits, nil when it didn't (or for anything else).
    /// - A retransmission of a dropped segment within `Tuning.failoverRecoveryWindow` after an uplink that carried
    ///   data went down: `.queuedAhead`. The failover halved the shared queue's drain rate, so at the tail it waited
    ///   ~400 ms, and the receiver's in-order delivery with it (the segment is the oldest hole).
    /// - Otherwise a retransmission of a shed segment: `.queuedProtected` (a segment is shed once; shedding the
    ///   retransmission cost Reno an RTO and the Linux-like sender another round trip through the queue).
    /// - Anything else (a retransmission of a refused segment too): `admitShared(packetLength:backlogBytes:now:)`.
    ///
    /// `ecnCapable`: the packet's sender reads ECN (an inner IP header marked ECT(0) or ECT(1)). The AQM's congestion
    /// signal — one per episode — then marks it Congestion Experienced (`.queuedCongestionExperienced`) instead of
    /// dropping it, as fq_codel does (RFC 3168, RFC 8311): the sender halves its window as for a loss, but nothing is
    /// missing, so no retransmission has to wait behind the queue and no hole holds the receiver's in-order delivery.
    /// The queue's hard bound still refuses.
    public mutating func admitShared(packetLength: Int, backlogBytes: Int, retransmitting drop: DroppedSegmentLedger.Drop?,
                                     ecnCapable: Bool = false, now: UInt64) -> SharedAdmission {
        let now = advanceClock(to: now)
        guard let drop, configuration.scheduler == .aggregate, configuration.pacingQueueAllowance != nil,
              eligibleMask(allowSpill: true, preferReady: true, avoidsSuspects: false) != 0 else {
            return admitThroughAQM(packetLength: packetLength, backlogBytes: backlogBytes, ecnCapable: ecnCapable, now: now)
        }
        if isRecoveringFromFailover(now: now) {
            updateDemand(bytes: packetLength, now: now)
            return .queuedAhead
        }
        if drop == .shed {
            updateDemand(bytes: packetLength, now: now)
            return .queuedProtected
        }
        return admitThroughAQM(packetLength: packetLength, backlogBytes: backlogBytes, ecnCapable: ecnCapable, now: now)
    }

    private mutating func admitThroughAQM(packetLength: Int, backlogBytes: Int, ecnCapable: Bool, now: UInt64) -> SharedAdmission {
        switch sharedAQMVerdict(packetLength: packetLength, backlogBytes: backlogBytes, now: now) {
        case .admit:
            return .queued
        case .signalCongestion where ecnCapable:
            congestionMarks &+= 1
            return .queuedCongestionExperienced
        case .signalCongestion, .refuse:
            ingressDrops &+= 1
            return .refused
        }
    }

    /// Whether an uplink that carried data went down within `Tuning.failoverRecoveryWindow` before `now`.
    public func isRecoveringFromFailover(now: UInt64) -> Bool {
        guard let failover = lastFailoverAt, now >= failover else { return false }
        return now - failover <= Tuning.failoverRecoveryWindow
    }

    /// Late binding, egress: what to do with the head of the shared queue (`packetLength` bytes; `backlogBytes` in the
    /// queue, itself included).
    /// - `.send(id)`: number it now and send it on `id` (report `packetSent`). Among the uplinks whose pacer lets a
    ///   packet go now (`releaseTime(on:) <= now`), the earliest expected arrival takes it — unless uplinks that
    ///   would deliver it earlier but can't send yet could carry the whole backlog and still deliver its last packet
    ///   no later (earliest completion first: a slow uplink stays out while the queue is short and carries its share
    ///   when it is long).
    /// - `.wait`: keep it; ask again at the earliest future `releaseTime(on:)` (or when something changes).
    /// - `.drop`: the queue is past the paced AQM's hard limit; drop it and ask again.
    public mutating func dequeueShared(packetLength: Int, backlogBytes: Int, now: UInt64) -> SharedQueueDecision {
        let now = advanceClock(to: now)
        let mask = fitting(eligibleMask(allowSpill: true, preferReady: true), bytes: packetLength)
        guard mask != 0 else { return .wait }
        // The AQM's view keeps suspect uplinks (as `admitShared`); the binding avoids them.
        let aqmMask = eligibleMask(allowSpill: true, preferReady: true, avoidsSuspects: false)
        let slowestForAQM = slowestBaseDelay(in: aqmMask)
        if configuration.scheduler == .aggregate, configuration.pacingQueueAllowance != nil,
           let target = configuration.ingressQueueTarget,
           case let queueing = sharedQueueing(bytes: 0, backlogBytes: backlogBytes, in: aqmMask, now: now),
           case let hardLimit = pacedHardLimit(target: target, slowestBaseDelay: slowestForAQM), queueing > hardLimit,
           // Only what the shared queue holds can be shed: when the excess is in the uplinks' own queues (a failover's
           // resends) dropping the newest packets — TCP's retransmissions among them — would not shorten it.
           drainTime(bytes: backlogBytes, in: aqmMask, now: now) >= queueing - hardLimit {
            // TCP learns of this loss a round trip through the present queue from now (the packets behind it leave
            // next); a refusal at ingress before then would only hit its retransmissions.
            aqmQuietUntil = max(aqmQuietUntil, now &+ 2 * slowestForAQM &+ queueing)
            sharedDropEpisode = true
            ingressDrops &+= 1
            return .drop
        }
        // With delay equalisation the receiver delivers every packet no earlier than the slowest uplink would (as in
        // `earliestArrival`): a slow uplink's delay costs nothing up to the equaliser's hold, so only queues decide.
        // Ranking by raw arrival kept the lab's 45 ms uplink idle while the download was slower than the two fast
        // ones could carry (BBR's early startup exits): its estimate stayed at the initial 10 Mbit/s for seconds, and
        // the flow never grew into it (docs/BENCHMARKS.md, "Pacing on jittery links").
        let equalized = configuration.maxEqualizationDelay > 0 && configuration.scheduler == .aggregate
            && configuration.equalizedLateBinding
        let slowest = equalized ? slowestBaseDelay(in: mask) : 0
        func arrival(_ index: Int) -> UInt64 {
            let raw = expectedArrival(index, bytes: packetLength, now: now, asResend: true)
            guard equalized else { return raw }
            let base = uplinks[index].baseOneWayDelay
            return raw - min(raw, base) + min(slowest, base &+ configuration.maxEqualizationDelay)
        }
        var chosen: Int?
        var chosenArrival = UInt64.max
        for candidate in uplinks.indices where mask & (1 << UInt32(candidate)) != 0 {
            guard let release = releaseTime(on: uplinks[candidate].id), release <= now else { continue }
            let arrival = arrival(candidate)
            if arrival < chosenArrival {
                chosenArrival = arrival
                chosen = candidate
            }
        }
        guard let chosen else { return .wait }
        var fasterMask: UInt32 = 0
        var fasterArrival = UInt64.max
        for other in uplinks.indices where mask & (1 << UInt32(other)) != 0 && other != chosen {
            let arrival = arrival(other)
            if arrival < chosenArrival {
                fasterMask |= 1 << UInt32(other)
                fasterArrival = min(fasterArrival, arrival)
            }
        }
        if fasterMask != 0, chosenArrival > fasterArrival &+ drainTime(bytes: backlogBytes, in: fasterMask, now: now) {
            return .wait
        }
        commit(chosen, bytes: packetLength, now: now)
        return .send(uplinks[chosen].id)
    }

    /// Expected queueing (beyond the slowest usable uplink's one-way delay) of a packet of `bytes` joining the shared
    /// queue behind `backlogBytes`: the usable uplinks carry the backlog at their modelled rates, then the packet
    /// goes to the earliest arrival one offers.
    private func sharedQueueing(bytes: Int, backlogBytes: Int, in mask: UInt32, now: UInt64) -> UInt64 {
        guard let index = earliestArrival(in: mask, bytes: bytes, now: now) else { return 0 }
        let arrival = drainTime(bytes: backlogBytes, in: mask, now: now) &+ expectedArrival(index, bytes: bytes, now: now)
        let slowest = slowestBaseDelay(in: mask)
        return arrival > slowest ? arrival - slowest : 0
    }

    /// Past this queueing the paced AQM takes no more packets (see `admitPaced`).
    private func pacedHardLimit(target: UInt64, slowestBaseDelay: UInt64) -> UInt64 {
        target &+ max(Tuning.pacedQueueHeadroom, 2 * slowestBaseDelay)
    }

    /// Time the uplinks in `mask` need to carry `bytes` together, at their modelled rates.
    private func drainTime(bytes: Int, in mask: UInt32, now: UInt64) -> UInt64 {
        var rate: UInt64 = 0
        for index in uplinks.indices where mask & (1 << UInt32(index)) != 0 {
            let sum = rate.addingReportingOverflow(modelledRate(uplinks[index], now: now))
            rate = sum.overflow ? UInt64.max : sum.partialValue
        }
        return UInt64(min(max(0, bytes), 1 << 30)) * 8_000_000_000 / max(rate, 1)
    }

    /// Pacing: whether a copy sent now on uplink `index` (ahead of its queued data) is expected to arrive before an
    /// original still waiting on our side for uplink `original` behind `waitsBehind` bytes. Copying a packet that
    /// is only late duplicates it, and the copy, queued ahead of another uplink's data, makes that data late in
    /// turn: on the paced skewed pair (1 ms / 50 ms) with the Linux-like TCP the two uplinks passed the lateness
    /// back and forth — 13 014 of 13 356 resends in 8 s were copies of packets not yet sent, and the flow got 43 %
    /// of the summed rate (docs/MULTIPATH.md, "Spurious repairs"). A copy that does arrive first is kept: it
    /// repairs the scheduler's misprediction of a slow uplink (the three-link runs lose 1–2 points without it).
    private func copyArrivesFirst(on index: Int, bytes: Int, originalOn original: Int, waitsBehind: Int,
                                  now: UInt64) -> Bool {
        guard original != index, let allowance = configuration.pacingQueueAllowance else { return true }
        let waiting = uplinks[original]
        // The original leaves our side once the network holds no more than the allowance, after the bytes ahead
        // of it; it then waits about the allowance in the network's queue and takes the path's one-way delay.
        let leaves = max(now &+ allowance, waiting.networkBusyUntil)
            &+ transmissionTime(bytes: min(max(0, waitsBehind), 1 << 30) &+ bytes, waiting, now: now)
        let originalArrival = leaves &+ waiting.baseOneWayDelay
        let copyArrival = now &+ expectedArrival(index, bytes: bytes, now: now, asResend: true, asRepair: true)
        return copyArrival < originalArrival
    }

    private mutating func updateDemand(bytes: Int, now: UInt64) {
        demandBytes &+= UInt64(min(max(0, bytes), 1 << 24))
        guard now >= demandWindowStart &+ Tuning.demandWindow else { return }
        let elapsed = max(now - demandWindowStart, 1)
        let rate = demandBytes.multipliedReportingOverflow(by: 8_000_000_000).partialValue / elapsed
        demandBitsPerSecond = elapsed > 4 * Tuning.demandWindow ? rate : (demandBitsPerSecond + rate) / 2
        demandBytes = 0
        demandWindowStart = now
        updateSpill()
    }

    /// Secondary and metered links join when demand exceeds 85% of the active set's capacity, and leave
    /// when it falls below 60% of the smaller set's (hysteresis).
    private mutating func updateSpill() {
        func capacity(upTo top: Int) -> UInt64 {
            var base: Int?
            for tracker in uplinks where tracker.state.carriesData {
                if let level = level(tracker), level < 3 { base = min(base ?? level, level) }
            }
            guard let base else { return 0 }
            var sum: UInt64 = 0
            for tracker in uplinks where tracker.state.carriesData {
                if let level = level(tracker), level >= base, level <= min(2, base + top) { sum &+= tracker.capacityBits }
            }
            return sum
        }
        // Compared as Double: a capacity estimate near UInt64.max must not overflow the percentage.
        let demand = Double(demandBitsPerSecond)
        let current = capacity(upTo: spillLevel)
        if spillLevel < 2, demand * 100 > Double(current) * Double(Tuning.spillOverPercent),
           capacity(upTo: spillLevel + 1) > current {
            spillLevel += 1
        } else if spillLevel > 0,
                  demand * 100 < Double(capacity(upTo: spillLevel - 1)) * Double(Tuning.spillBackPercent) {
            spillLevel -= 1
        }
    }

    private func transmissionTime(bytes: Int, _ tracker: UplinkTracker, now: UInt64) -> UInt64 {
        // Lengths are clamped so a nonsensical one can't overflow (real packets are < 64 KiB).
        UInt64(min(max(0, bytes), 1 << 24)) * 8_000_000_000 / max(modelledRate(tracker, now: now), 1)
    }

    /// The rate (bits/s) the model drains an uplink's queue at.
    private func modelledRate(_ tracker: UplinkTracker, now: UInt64) -> UInt64 {
        // Bandwidth probing, as BBR's: a link that hasn't shown a standing queue lately is modelled as draining
        // at the estimate times the probe gain, so with a backlog it is offered a little more than it has been
        // seen to deliver. Otherwise an estimate below the link's real rate could never rise: it is a maximum
        // of delivery rates, and a link delivers only what it is given. Once the probes see the link full, the
        // estimate is its rate and the model uses it as it is (until that is `capacityWindow` old).
        let gain = configuration.capacityCatchUp && tracker.drainsFasterThanModelled(within: Tuning.fasterThanModelledHold, at: now)
            ? Tuning.fasterThanModelledGainPercent
            : tracker.seenFull(within: configuration.capacityWindow, at: now) ? 100 : Tuning.capacityProbeGainPercent
        let rate = tracker.capacityBits.multipliedReportingOverflow(by: gain)
        return rate.overflow ? UInt64.max : rate.partialValue / 100
    }

    /// Expected one-way arrival delay of a packet sent now on uplink `index`.
    /// `trustsProbes` false: rank by the model alone (pure ACKs; see `schedule`).
    /// `asResend` (pacing): the packet goes ahead of the data waiting on our side, behind the network's queue
    /// and the resends already waiting.
    private func expectedArrival(_ index: Int, bytes: Int, now: UInt64, asResend: Bool = false,
                                 asRepair: Bool = false, trustsProbes: Bool = true) -> UInt64 {
        let tracker = uplinks[index]
        let networkQueue = tracker.modelNetworkQueue(at: now)
        let modelQueue: UInt64
        if asResend {
            let queuedUntil = asRepair ? tracker.repairsQueuedUntil
                : max(tracker.resendsQueuedUntil, tracker.repairsQueuedUntil)
            modelQueue = max(now &+ networkQueue, queuedUntil) - now
        } else {
            modelQueue = tracker.modelBusyUntil > now ? tracker.modelBusyUntil - now : 0
        }
        // The probes see only the network's queue; when it is clearly deeper than modelled, the link is
        // slower than its estimate and everything behind it waits that much longer.
        let measured = trustsProbes ? tracker.measuredQueueDelay : 0
        let margin = tracker.pacingAllowance == nil ? Tuning.modelTrustMargin : Tuning.pacingExcessMargin
        let queue = measured > networkQueue &+ margin ? modelQueue + (measured - networkQueue) : modelQueue
        return queue + transmissionTime(bytes: bytes, tracker, now: now) + tracker.baseOneWayDelay
    }

    private func slowestBaseDelay(in mask: UInt32) -> UInt64 {
        var slowest: UInt64 = 0
        for index in uplinks.indices where mask & (1 << UInt32(index)) != 0 {
            slowest = max(slowest, uplinks[index].baseOneWayDelay)
        }
        return slowest
    }

    /// Earliest expected arrival: expected queue (model, or the probes' view when clearly larger) + transmission
    /// time + one-way delay.
    private func earliestArrival(in mask: UInt32, bytes: Int, now: UInt64, asResend: Bool = false,
                                 asRepair: Bool = false, trustsProbes: Bool = true) -> Int? {
        var best: Int?
        var bestArrival = UInt64.max
        // With delay equalisation the receiver delivers every data packet no earlier than the slowest uplink in
        // use would have (up to `maxEqualizationDelay` later than its own path): a packet's one-way delay counts
        // only as far as the equaliser doesn't lift it, and the choice comes down to the shortest queue. Ranking by
        // raw arrival instead queued 40 ms more on the lab's 5 ms uplink than on its 45 ms one: that link's buffer
        // overflowed first, and when its queue drained faster than the receiver's smoothed transit followed, its
        // packets left the equaliser early and lowered the inner TCP's minimum RTT (BBR: for 10 s). Pure ACKs
        // (`trustsProbes` false) aren't equalised and keep the raw arrival; nor is anything outside `aggregate`
        // (a resend in another mode: see `updateEqualization`).
        let equalized = trustsProbes && configuration.maxEqualizationDelay > 0 && configuration.scheduler == .aggregate
        let slowest = equalized ? slowestBaseDelay(in: mask) : 0
        for index in uplinks.indices where mask & (1 << UInt32(index)) != 0 {
            // The model is exact when the capacity estimate is; the probes' (lagging) view only overrides
            // it when the link is clearly slower than modelled (cross traffic, capacity drop).
            var arrival = expectedArrival(index, bytes: bytes, now: now, asResend: asResend, asRepair: asRepair,
                                          trustsProbes: trustsProbes)
            if equalized {
                let base = uplinks[index].baseOneWayDelay
                arrival = arrival - base + min(slowest, base &+ configuration.maxEqualizationDelay)
            }
            if arrival < bestArrival {
                bestArrival = arrival
                best = index
            }
        }
        return best
    }

    private func lowestLatency(in mask: UInt32) -> Int? {
        var best: Int?
        var bestDelay = UInt64.max
        for index in uplinks.indices where mask & (1 << UInt32(index)) != 0 {
            let tracker = uplinks[index]
            let delay = tracker.rtt.hasSample ? tracker.rtt.predicted(horizon: tracker.rtt.smoothed) : UInt64.max - 1
            if delay < bestDelay {
                bestDelay = delay
                best = index
            }
        }
        return best
    }

    /// Rendezvous (highest random weight) hashing: removing an uplink moves only the flows it had.
    private func rendezvous(_ key: FlowKey, in mask: UInt32) -> Int? {
        var best: Int?
        var bestScore: UInt64 = 0
        for index in uplinks.indices where mask & (1 << UInt32(index)) != 0 {
            let score = mix64(key.rawValue ^ mix64(UInt64(uplinks[index].id.rawValue) &+ 0x5bd1_e995))
            if best == nil || score > bestScore {
                bestScore = score
                best = index
            }
        }
        return best
    }

    /// `flow` mode: the uplink `key` is pinned to while it is in `mask`; otherwise (a new flow, or its uplink
    /// can't carry data any more) a new pin by rendezvous hashing over `mask`. An uplink that comes back or is
    /// added takes new flows only. An uplink avoided for this packet (`excluding`) keeps its flows' pins.
    private mutating func pinnedUplink(_ key: FlowKey, in mask: UInt32) -> Int? {
        if let id = flowPins.uplink(for: key), let pinned = index(of: id) {
            if mask & (1 << UInt32(pinned)) != 0 { return pinned }
            if pinned == excludedIndex { return rendezvous(key, in: mask) }
        }
        guard let index = rendezvous(key, in: mask) else { return nil }
        flowPins.pin(key, to: uplinks[index].id)
        return index
    }

    /// Advances the chosen uplink's model queue.
    private mutating func commit(_ index: Int, bytes: Int, now: UInt64) {
        let tx = transmissionTime(bytes: bytes, uplinks[index], now: now)
        if uplinks[index].modelBusyUntil <= now { uplinks[index].lastModelIdleAt = now }
        let start = max(now, uplinks[index].modelBusyUntil)
        uplinks[index].modelBusyUntil = min(start &+ tx, now &+ Tuning.maxModelQueueDelay)
    }
}

/// Late binding, ingress: where a packet joins the shared queue (`MultipathEngine.admitShared(…retransmitting:…)`).
public enum SharedAdmission: Equatable, Sendable {
    /// Drop it (no sequence, so TCP sees the loss); remember it as `.refused` if it is a TCP segment.
    case refused
    /// Append it to the shared queue.
    case queued
    /// Append it, and never shed it: when `dequeueShared` says `.drop` with it at the head, shed the first packet
    /// behind it that is not protected instead (a segment is shed once).
    case queuedProtected
    /// Put it ahead of the shared queue's other packets (behind those already put ahead, in their order), protected
    /// as `.queuedProtected`.
    case queuedAhead
    /// Mark it Congestion Experienced (its inner IP header's ECN field) and append it: the AQM's congestion signal
    /// to a sender that reads ECN, in place of a drop.
    case queuedCongestionExperienced
}

/// What to do with the head of the data plane's shared queue (`MultipathEngine.dequeueShared`).
public enum SharedQueueDecision: Equatable, Sendable {
    /// Send it on this uplink now (number it now if the data plane numbers at dequeue) and report `packetSent`.
    case send(UplinkID)
    /// Drop it (the queue is past the AQM's hard limit); ask again for the next one.
    case drop
    /// Keep it: no uplink should take it yet; ask again at the earliest future `releaseTime(on:)`.
    case wait
}

/// Fixed-capacity FIFO of duties; overflow drops the oldest (notices are advisory).
struct DutyRing {
    private var items: [Duty?]
    private var start = 0
    private(set) var count = 0
    init(capacity: Int) { items = Array(repeating: nil, count: capacity) }
    var isEmpty: Bool { count == 0 }
    mutating func push(_ duty: Duty) {
        if count == items.count { start = (start + 1) % items.count; count -= 1 }
        items[(start + count) % items.count] = duty
        count += 1
    }
    mutating func pop() -> Duty? {
        guard count > 0 else { return nil }
        defer { items[start] = nil; start = (start + 1) % items.count; count -= 1 }
        return items[start]
    }
}

/// Fixed-capacity FIFO of tunnel sequences to resend; overflow drops the oldest (resends are best effort).
struct SequenceRing {
    private var items: [UInt32]
    private var start = 0
    private(set) var count = 0
    init(capacity: Int) { items = Array(repeating: 0, count: capacity) }
    var isEmpty: Bool { count == 0 }
    mutating func push(_ sequence: UInt32) {
        if count == items.count { start = (start + 1) % items.count; count -= 1 }
        items[(start + count) % items.count] = sequence
        count += 1
    }
    var storageFootprint: Int { items.capacity * 4 }
    mutating func pop() -> UInt32? {
        guard count > 0 else { return nil }
        defer { start = (start + 1) % items.count; count -= 1 }
        return items[start]
    }
}

extension MultipathEngine: Sendable where Packet: Sendable {}

extension MultipathEngine {
    /// A packet in the reorder buffer with the time the delay equaliser may release it, and the time by which it
    /// must be delivered (arrival + `maxReorderHold`).
    struct Held {
        var packet: Packet
        var releaseAt: UInt64
        var latestRelease: UInt64
    }
}

extension MultipathEngine.Held: Sendable where Packet: Sendable {}
