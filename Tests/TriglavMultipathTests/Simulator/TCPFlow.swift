@testable import TriglavMultipath

/// Which TCP the simulated sender models (docs/MULTIPATH.md, "Tests and the simulator"; both are
/// reported in docs/BENCHMARKS.md).
enum TCPSenderModel: String, CaseIterable {
    /// RFC 5681/6675 Reno with SACK, as this simulator had it first: fast retransmit after 3 duplicate ACKs,
    /// every hole below the highest SACK counted lost in recovery, a lost retransmission found only by the
    /// RTO; the receiver reports one SACK block per ACK (the segment that arrived); RTO = max(200 ms,
    /// SRTT + 4·RTTVAR).
    case reno
    /// Reno's congestion control with the loss detection Linux runs by default since 4.18: RACK-TLP (RFC 8985).
    /// A segment is lost once a segment sent after it has been delivered and a reordering window (0 until
    /// reordering has been seen, then min RTT / 4) has passed since it was due — retransmissions included,
    /// so a lost retransmission is sent again without an RTO; a tail loss probe (2·SRTT) makes the receiver
    /// report a lost tail; the receiver reports three SACK blocks; RTO = SRTT + max(4·RTTVAR, 200 ms) as
    /// Linux's `tcp_set_rto` (Reno's max(200 ms, …) fired spuriously whenever a standing queue grew the RTT
    /// faster than SRTT followed). Unlike Linux, which drops the duplicate-ACK rule once RACK is on, fast
    /// retransmit on 3 duplicate ACKs is kept even after reordering has been seen, so reordering still costs
    /// spurious retransmissions and window halvings, as the issue asks the simulator to show.
    case linux
}

/// A Reno-style TCP sender and receiver over the simulated tunnel, close enough to the kernel that
/// reordering and loss hurt the way they do there: slow start, AIMD congestion avoidance, fast
/// retransmit after 3 duplicate ACKs with SACK-guided recovery (halved window), loss detection per
/// `TCPSenderModel`, and an RTO (SRTT + 4·RTTVAR, min 200 ms, exponential backoff) that falls back to
/// slow start. Segments are numbered 0, 1, 2, …; every segment is one full-size inner packet.
final class TCPFlow {
    let flowID: Int
    let senderModel: TCPSenderModel
    /// Segments to transfer (Int.max: unlimited, run by time).
    let totalSegments: Int
    /// Receive window cap in segments.
    let receiveWindow: Double = 4000
    /// Diagnostics: the sender never lets its window fall below this (0: plain Reno). Shows whether a
    /// sender with a big enough window (what CUBIC/BBR or several flows would have) gets the rate.
    var minimumWindow: Double = 0
    var debugLog = false
    /// The flow negotiated ECN (RFC 3168): its segments are ECN-capable, the receiver echoes a Congestion Experienced
    /// mark on the ACK of the marked segment (ECE, as accurate ECN would), and the sender halves its window for it
    /// once per window of data, as for a loss, without retransmitting anything.
    var ecnCapable = false
    /// Receiver: the ACK being sent echoes a Congestion Experienced mark (read by `sendAck`).
    private(set) var ackEchoesCongestion = false
    /// Sender: no further reduction for a mark before this segment is acknowledged (one per window).
    private var congestionMarkRecover = 0
    private(set) var congestionMarksAnswered = 0

    // Sender state.
    private(set) var sndUna = 0
    private(set) var sndNxt = 0
    private(set) var cwnd: Double = 10
    private(set) var ssthresh: Double = .greatestFiniteMagnitude
    private var dupAcks = 0
    private(set) var inRecovery = false
    /// The current recovery began with a retransmission timeout (not a fast retransmit).
    private var recoveringFromTimeout = false
    private var recover = 0
    private var holeCursor = 0
    private var sacked = Set<Int>()
    private var highestSacked = -1
    private var retransmittedInEpisode = Set<Int>()
    private var sendTimes: [UInt64] = []
    private var everRetransmitted: [Bool] = []
    private(set) var srtt: UInt64 = 0
    private var rttvar: UInt64 = 0
    private(set) var rto: UInt64 = Nanoseconds.second
    private var rtoGeneration = 0
    private(set) var retransmissions = 0
    private(set) var fastRetransmits = 0
    private(set) var timeouts = 0
    /// RACK: retransmissions found lost and sent again without an RTO; tail loss probes sent.
    private(set) var lostRetransmissionsRepaired = 0
    private(set) var tailLossProbes = 0

    // Sender state of RACK-TLP (per segment, grown as segments are first sent).
    private var scoreboard = SegmentRanges()
    private var isSacked: [Bool] = []
    private var isLost: [Bool] = []
    /// Marked lost and retransmitted since; in flight until delivered or marked lost again.
    private var isRetransmittedOut: [Bool] = []
    private var sackedOut = 0
    private var lostOut = 0
    private var retransmittedOut = 0
    private var retransmitCursor = 0
    /// Segments in flight in send order (retransmissions appended again), with their send time; an entry
    /// whose segment was delivered, marked lost or sent again since is stale and skipped.
    private var sentOrder: [(segment: Int, at: UInt64)] = []
    private var sentOrderHead = 0
    /// RACK.xmit_ts / end_seq / rtt: the most recently sent delivered segment and its RTT.
    private var rackSentAt: UInt64 = 0
    private var rackSegment = -1
    private var rackRTT: UInt64 = 0
    private var minimumRTT: UInt64 = .max
    private var reorderingSeen = false
    private var rackTimerAt: UInt64?
    /// A tail loss probe is out; no other until an ACK covers everything sent before it.
    private var probeHighSegment: Int?
    private var timerIsProbe = false

    // Receiver state.
    private(set) var rcvNxt = 0
    private var outOfOrder = SegmentRanges()
    /// Segments whose blocks were reported most recently, newest first (for the SACK blocks after the first).
    private var recentlyReported: [Int] = []
    /// Times at which in-order delivery advanced, with the new rcvNxt.
    private(set) var deliveries: [(time: UInt64, rcvNxt: Int)] = []
    /// When each distinct segment first reached the receiver (in time order; duplicates not counted).
    private var firstArrivals: [UInt64] = []
    private(set) var completedAt: UInt64?

    /// Hooks into the tunnel: send a segment (A→B) or an ACK (B→A).
    /// `timestamp`: TSval (the send time); `echo`: TSecr (the TSval of the segment that triggered the ACK).
    var sendSegment: (_ segment: Int, _ timestamp: UInt64) -> Void = { _, _ in }
    var sendAck: (_ ack: Int, _ sack: SackBlocks, _ echo: UInt64) -> Void = { _, _, _ in }
    var setTimer: (_ delay: UInt64, _ fire: @escaping () -> Void) -> Void = { _, _ in }
    var clock: () -> UInt64 = { 0 }
    /// Congestion events (fast retransmit, timeout) for debugging traces.
    private(set) var congestionLog: [(time: UInt64, event: String)] = []

    init(flowID: Int, totalSegments: Int = Int.max, senderModel: TCPSenderModel = .linux) {
        self.flowID = flowID
        self.totalSegments = totalSegments
        self.senderModel = senderModel
    }

    func start() { trySend() }

    /// Segments believed in the network (RFC 6675 "pipe", simplified): outstanding minus SACKed minus
    /// holes below the highest SACK (in recovery), plus retransmissions of this episode.
    private var flight: Double {
        let outstanding = sndNxt - sndUna
        // RFC 6675 / Linux: packets_out − (sacked_out + lost_out) + retrans_out.
        if senderModel == .linux { return Double(outstanding - sackedOut - lostOut + retransmittedOut) }
        guard inRecovery else { return Double(outstanding - sacked.count) }
        let lost = max(0, highestSacked + 1 - sndUna - sacked.count)
        return Double(outstanding - sacked.count - lost + retransmittedInEpisode.count)
    }

    private func transmit(_ segment: Int, retransmission: Bool) {
        let now = clock()
        if segment == sendTimes.count {
            sendTimes.append(now)
            everRetransmitted.append(false)
            if senderModel == .linux {
                isSacked.append(false)
                isLost.append(false)
                isRetransmittedOut.append(false)
            }
        } else if segment < sendTimes.count {
            sendTimes[segment] = now
            if retransmission { everRetransmitted[segment] = true }
        }
        if retransmission { retransmissions += 1 }
        if senderModel == .linux { sentOrder.append((segment, now)) }
        if debugLog { print("DBG \(now / 1000) tx \(segment)\(retransmission ? " R" : "") pipe=\(flight) cwnd=\(Int(cwnd)) lost=\(lostOut) rtx=\(retransmittedOut) sacked=\(sackedOut)") }
        sendSegment(segment, now)
    }

    private func trySend() {
        var budget = 10_000
        while budget > 0, flight < min(max(cwnd, minimumWindow), receiveWindow) {
            budget -= 1
            if senderModel == .linux {
                if let segment = nextLostSegment() {
                    retransmitLost(segment)
                    continue
                }
            } else if inRecovery {
                while holeCursor <= highestSacked,
                      sacked.contains(holeCursor) || retransmittedInEpisode.contains(holeCursor) || holeCursor < sndUna {
                    holeCursor += 1
                }
                if holeCursor <= highestSacked {
                    retransmittedInEpisode.insert(holeCursor)
                    transmit(holeCursor, retransmission: true)
                    continue
                }
            }
            guard sndNxt < totalSegments else { break }
            let segment = sndNxt
            sndNxt += 1
            transmit(segment, retransmission: false)
        }
        if !timerArmed { armTimer() }
    }

    private var timerArmed = false

    /// (Re)starts the retransmission timer (RFC 6298 §5: on sending when it isn't running, and whenever
    /// new data is acknowledged; never merely because more duplicate ACKs arrived).
    /// With RACK-TLP, outside recovery and with no probe out, the timer is the tail loss probe's (RFC 8985
    /// §7.2: 2·SRTT, plus the 200 ms minimum RTO when one segment is out as Linux does, never beyond the RTO).
    private func armTimer(allowProbe: Bool = true) {
        rtoGeneration += 1
        timerArmed = false
        guard sndUna < sndNxt else { return }
        timerArmed = true
        let generation = rtoGeneration
        var delay = rto
        timerIsProbe = false
        if senderModel == .linux, allowProbe, !inRecovery, probeHighSegment == nil, srtt > 0 {
            let probe = 2 * srtt + (sndNxt - sndUna == 1 ? 200 : 2) * Nanoseconds.millisecond
            if probe < rto {
                delay = probe
                timerIsProbe = true
            }
        }
        setTimer(delay) { [weak self] in
            guard let self, self.rtoGeneration == generation else { return }
            self.timerArmed = false
            if self.timerIsProbe { self.onProbeTimeout() } else { self.onTimeout() }
        }
    }

    /// RFC 8985 §7.3: send one new segment (whatever the window) or else the last one again, so that the
    /// receiver's ACK with its SACK blocks lets RACK find the losses of the tail; then the RTO runs.
    private func onProbeTimeout() {
        tailLossProbes += 1
        probeHighSegment = sndNxt
        congestionLog.append((clock(), "tail loss probe una=\(sndUna) nxt=\(sndNxt)"))
        if sndNxt < totalSegments {
            let segment = sndNxt
            sndNxt += 1
            transmit(segment, retransmission: false)
        } else if sndNxt > sndUna {
            transmit(sndNxt - 1, retransmission: true)
        }
        armTimer(allowProbe: false)
    }

    private func onTimeout() {
        timeouts += 1
        congestionLog.append((clock(), "timeout una=\(sndUna) nxt=\(sndNxt)"))
        // As Linux (tcp_enter_loss): ssthresh is reduced only if it wasn't already inside this window,
        // so a timeout during fast recovery doesn't halve it a second time.
        if !(inRecovery && recover > sndUna) {
            let sackedCount = senderModel == .linux ? sackedOut : sacked.count
            ssthresh = max(Double(sndNxt - sndUna - sackedCount) / 2, 2)
        }
        cwnd = 1
        inRecovery = true
        recoveringFromTimeout = true
        recover = sndNxt
        holeCursor = sndUna
        highestSacked = sndNxt - 1
        retransmittedInEpisode.removeAll()
        rto = min(rto * 2, 60 * Nanoseconds.second)
        if senderModel == .linux {
            // As Linux's tcp_timeout_mark_lost: everything outstanding and not SACKed is lost (retransmitted in
            // order as the window allows); deliveries of the originals still under way are told apart by the
            // timestamp echo and don't make RACK mark the retransmissions lost again.
            probeHighSegment = nil
            for segment in sndUna..<sndNxt where !isSacked[segment] { markLost(segment) }
        }
        trySend()
    }

    /// Sender: an ACK arrived.
    func onAck(_ ack: Int, sack: SackBlocks, echo: UInt64 = 0, echoesCongestion: Bool = false) {
        if echoesCongestion { answerCongestionMark() }
        if senderModel == .linux {
            onAckWithRACK(ack, sack: sack, echo: echo)
            return
        }
        let now = clock()
        if sack.count > 0, case let s = sack[0].start, s >= ack, s >= sndUna {
            if sacked.insert(s).inserted { highestSacked = max(highestSacked, s) }
            // A SACKed retransmission has left the network: it no longer counts in the pipe (RFC 6675 §4).
            retransmittedInEpisode.remove(s)
        }
        if ack > sndUna {
            let acked = ack - sndUna
            let last = ack - 1
            if last < sendTimes.count, !everRetransmitted[last], now >= sendTimes[last] {
                sampleRTT(now - sendTimes[last])
            }
            for segment in sndUna..<ack { sacked.remove(segment); retransmittedInEpisode.remove(segment) }
            sndUna = ack
            holeCursor = max(holeCursor, sndUna)
            dupAcks = 0
            armTimer()
            if inRecovery {
                if ack >= recover {
                    inRecovery = false
                    // Fast recovery ends with the window deflated to ssthresh (RFC 6582); recovery after a
                    // timeout ends where slow start has got to (Linux leaves CA_Loss without touching cwnd),
                    // not with a jump to ssthresh (a window-sized burst).
                    if !recoveringFromTimeout { cwnd = max(ssthresh, 2) }
                    recoveringFromTimeout = false
                    retransmittedInEpisode.removeAll()
                } else if cwnd < ssthresh {
                    slowStart(acked: acked) // after a timeout
                }
            } else if cwnd < ssthresh {
                slowStart(acked: acked)
            } else {
                cwnd += Double(acked) / cwnd
            }
            if sndUna >= totalSegments { rtoGeneration += 1; timerArmed = false }
        } else if ack == sndUna, sndNxt > sndUna, !sack.isEmpty {
            dupAcks += 1
            if !inRecovery && dupAcks >= 3 {
                fastRetransmits += 1
                congestionLog.append((now, "fast retransmit una=\(sndUna) nxt=\(sndNxt) sacked=\(sacked.sorted().prefix(5)) cwnd=\(Int(cwnd))"))
                ssthresh = max(Double(sndNxt - sndUna - sacked.count) / 2, 2)
                cwnd = ssthresh
                inRecovery = true
                recover = sndNxt
                holeCursor = sndUna + 1
                retransmittedInEpisode.removeAll()
                // Fast retransmit: the first hole goes out at once, whatever the pipe (RFC 5681 §3.2).
                retransmittedInEpisode.insert(sndUna)
                transmit(sndUna, retransmission: true)
            }
        }
        trySend()
    }

    /// RFC 3168 §6.1.2: a Congestion Experienced echo halves the window as a loss would, once per window of data and
    /// not in loss recovery (which has halved it already); nothing is retransmitted.
    private func answerCongestionMark() {
        guard ecnCapable, !inRecovery, sndUna >= congestionMarkRecover else { return }
        congestionMarksAnswered += 1
        congestionLog.append((clock(), "congestion mark una=\(sndUna) nxt=\(sndNxt) cwnd=\(Int(cwnd))"))
        ssthresh = max(flight / 2, 2)
        cwnd = ssthresh
        congestionMarkRecover = sndNxt
    }

    // MARK: RACK-TLP (RFC 8985), as Linux's tcp_recovery.c

    /// Lowest segment marked lost and not retransmitted since (nil: none).
    private func nextLostSegment() -> Int? {
        guard lostOut > retransmittedOut else { return nil }
        retransmitCursor = max(retransmitCursor, sndUna)
        while retransmitCursor < sndNxt {
            let segment = retransmitCursor
            if isLost[segment] && !isRetransmittedOut[segment] && !isSacked[segment] { return segment }
            retransmitCursor += 1
        }
        return nil
    }

    private func retransmitLost(_ segment: Int) {
        if everRetransmitted[segment] { lostRetransmissionsRepaired += 1 }
        isRetransmittedOut[segment] = true
        retransmittedOut += 1
        transmit(segment, retransmission: true)
    }

    private func markLost(_ segment: Int) {
        guard segment >= sndUna, segment < sndNxt, !isSacked[segment] else { return }
        if isRetransmittedOut[segment] {
            isRetransmittedOut[segment] = false
            retransmittedOut -= 1
        }
        if !isLost[segment] {
            isLost[segment] = true
            lostOut += 1
        }
        retransmitCursor = min(retransmitCursor, segment)
    }

    /// The segment was delivered (SACKed, or cumulatively ACKed without having been SACKed).
    private func noteDelivered(_ segment: Int, now: UInt64, echo: UInt64, highestSackedBefore: Int) {
        if isLost[segment] { isLost[segment] = false; lostOut -= 1 }
        if isRetransmittedOut[segment] { isRetransmittedOut[segment] = false; retransmittedOut -= 1 }
        // Delivered below a segment already SACKed, and never retransmitted: the path reorders.
        if !everRetransmitted[segment], segment < highestSackedBefore { reorderingSeen = true }
        let sentAt = sendTimes[segment]
        guard now >= sentAt else { return }
        let rtt = now - sentAt
        // RFC 8985 §6.2 step 2: an ACK that echoes a timestamp older than the retransmission, or comes sooner
        // than the minimum RTT after it, was for an earlier transmission.
        if everRetransmitted[segment], echo < sentAt || rtt < minimumRTT { return }
        if !everRetransmitted[segment] { minimumRTT = min(minimumRTT, rtt) }
        if sentAt > rackSentAt || (sentAt == rackSentAt && segment > rackSegment) {
            rackSentAt = sentAt
            rackSegment = segment
            rackRTT = rtt
        }
    }

    /// Linux's tcp_rack_reo_wnd: no settling time until reordering has been seen (in recovery, or once three
    /// segments are SACKed), then a quarter of the minimum RTT, never more than SRTT.
    private var reorderWindow: UInt64 {
        if !reorderingSeen && (inRecovery || sackedOut >= 3) { return 0 }
        guard minimumRTT != .max else { return 0 }
        return min(minimumRTT / 4, srtt)
    }

    /// RFC 8985 §6.2 step 5: every segment sent before the most recently sent delivered one and not delivered
    /// within its RTT + reordering window is lost. Segments in `sentOrder` are in send order, so the scan stops
    /// at the first that isn't due yet and arms the reordering timer for it.
    private func detectLossesByTime(now: UInt64) {
        guard rackSegment >= 0 else { return }
        let window = reorderWindow
        var pendingUntil: UInt64?
        while sentOrderHead < sentOrder.count {
            let (segment, sentAt) = sentOrder[sentOrderHead]
            if segment < sndUna || isSacked[segment] || sendTimes[segment] != sentAt
                || (isLost[segment] && !isRetransmittedOut[segment]) {
                sentOrderHead += 1
                continue
            }
            guard sentAt < rackSentAt || (sentAt == rackSentAt && segment < rackSegment) else { break }
            let due = sentAt &+ rackRTT &+ window
            if due > now { pendingUntil = due; break }
            markLost(segment)
            sentOrderHead += 1
        }
        if sentOrderHead > 4096 {
            sentOrder.removeFirst(sentOrderHead)
            sentOrderHead = 0
        }
        if let at = pendingUntil, rackTimerAt.map({ $0 > at || $0 <= now }) ?? true {
            rackTimerAt = at
            setTimer(at - now) { [weak self] in
                guard let self, self.rackTimerAt == at else { return }
                self.rackTimerAt = nil
                self.detectLossesByTime(now: self.clock())
                self.enterRecoveryIfLost(now: self.clock())
                self.trySend()
            }
        }
    }

    /// Linux's tcp_time_to_recover: a proven loss starts fast recovery (halved window).
    private func enterRecoveryIfLost(now: UInt64) {
        guard lostOut > 0, !inRecovery else { return }
        fastRetransmits += 1
        congestionLog.append((now, "fast retransmit una=\(sndUna) nxt=\(sndNxt) lost=\(lostOut) sacked=\(sackedOut) cwnd=\(Int(cwnd))"))
        ssthresh = max(Double(sndNxt - sndUna - sackedOut) / 2, 2)
        cwnd = ssthresh
        inRecovery = true
        recover = sndNxt
        // The first retransmission goes out at once, whatever the pipe (RFC 5681 §3.2).
        if let segment = nextLostSegment() { retransmitLost(segment) }
        armTimer()
    }

    private func onAckWithRACK(_ ack: Int, sack: SackBlocks, echo: UInt64) {
        let now = clock()
        if debugLog { print("DBG \(now / 1000) ack \(ack) \((0..<sack.count).map { sack[$0] }) rackSeg=\(rackSegment) rackRTT=\(rackRTT / 1000) reo=\(reorderWindow / 1000)") }
        let highestSackedBefore = highestSacked
        var newlySacked = 0
        for index in 0..<sack.count {
            let block = sack[index]
            let start = max(block.start, sndUna), end = min(block.end, sndNxt - 1)
            guard start <= end else { continue }
            scoreboard.insert(start, end) { segment in
                isSacked[segment] = true
                sackedOut += 1
                newlySacked += 1
                noteDelivered(segment, now: now, echo: echo, highestSackedBefore: highestSackedBefore)
            }
            highestSacked = max(highestSacked, end)
        }
        if ack > sndUna {
            let acked = ack - sndUna
            let last = ack - 1
            if last < sendTimes.count, !everRetransmitted[last], now >= sendTimes[last] {
                sampleRTT(now - sendTimes[last])
            } else if echo > 0, now >= echo {
                // Timestamps give an RTT sample even when the ACKed data was retransmitted (Linux's
                // tcp_rtt_tsopt_us), so after a timeout the backed-off RTO is recomputed at the first new ACK.
                sampleRTT(now - echo)
            }
            for segment in sndUna..<min(ack, sndNxt) {
                if isSacked[segment] {
                    isSacked[segment] = false
                    sackedOut -= 1
                } else {
                    noteDelivered(segment, now: now, echo: echo, highestSackedBefore: highestSackedBefore)
                }
            }
            scoreboard.removeBelow(ack)
            sndUna = ack
            retransmitCursor = max(retransmitCursor, sndUna)
            dupAcks = 0
            if let probe = probeHighSegment, sndUna >= probe { probeHighSegment = nil }
            if inRecovery {
                if ack >= recover {
                    inRecovery = false
                    if !recoveringFromTimeout { cwnd = max(ssthresh, 2) }
                    recoveringFromTimeout = false
                } else if cwnd < ssthresh {
                    slowStart(acked: acked)
                }
            } else if cwnd < ssthresh {
                slowStart(acked: acked)
            } else {
                cwnd += Double(acked) / cwnd
            }
            armTimer()
            if sndUna >= totalSegments { rtoGeneration += 1; timerArmed = false }
        } else if ack == sndUna, sndNxt > sndUna, !sack.isEmpty {
            dupAcks += 1
            // Kept from Reno on purpose (see TCPSenderModel.linux): the third duplicate ACK proves the
            // head lost even when the path is known to reorder.
            if !inRecovery && dupAcks >= 3 { markLost(sndUna) }
        }
        if sndUna < sndNxt { detectLossesByTime(now: now) }
        enterRecoveryIfLost(now: now)
        trySend()
    }

    /// RFC 3465 byte counting with L = 2 segments per ACK, and no further than ssthresh (as Linux's
    /// `tcp_slow_start`). Adding everything an ACK covers let one cumulative ACK after a timeout (the receiver
    /// had most of the window) open the window by hundreds of segments at once: a burst the path then drops.
    private func slowStart(acked: Int) {
        cwnd = min(cwnd + Double(min(acked, 2)), max(ssthresh, cwnd))
    }

    private func sampleRTT(_ sample: UInt64) {
        if srtt == 0 {
            srtt = sample
            rttvar = sample / 2
        } else {
            let deviation = srtt > sample ? srtt - sample : sample - srtt
            rttvar = (3 * rttvar + deviation) / 4
            srtt = (7 * srtt + sample) / 8
        }
        rto = senderModel == .linux ? srtt + max(4 * rttvar, 200 * Nanoseconds.millisecond)
            : max(200 * Nanoseconds.millisecond, srtt + 4 * rttvar)
    }

    /// Receiver: a segment came out of the tunnel.
    func onSegment(_ segment: Int, timestamp: UInt64 = 0, congestionExperienced: Bool = false) {
        let now = clock()
        ackEchoesCongestion = congestionExperienced
        var sack = SackBlocks()
        if segment == rcvNxt || (segment > rcvNxt && outOfOrder.range(containing: segment) == nil) {
            firstArrivals.append(now)
        }
        if segment == rcvNxt {
            rcvNxt += 1
            if let range = outOfOrder.popRange(startingAt: rcvNxt) { rcvNxt = range.end + 1 }
            deliveries.append((now, rcvNxt))
            if rcvNxt >= totalSegments && completedAt == nil { completedAt = now }
        } else if segment > rcvNxt {
            outOfOrder.insert(segment, segment)
            if senderModel == .reno { sack.append(segment, segment) }
        }
        if senderModel == .linux {
            // RFC 2018 §4: the block with the segment that triggered the ACK first, then the blocks reported
            // most recently (Linux keeps them in that order), as long as they are still above rcvNxt.
            if segment > rcvNxt, let range = outOfOrder.range(containing: segment) {
                sack.append(range.start, range.end)
                recentlyReported.removeAll { outOfOrder.range(containing: $0).map { $0.start == range.start } ?? true }
                recentlyReported.insert(segment, at: 0)
            }
            for reported in recentlyReported where sack.count < SackBlocks.capacity && reported >= rcvNxt {
                if let range = outOfOrder.range(containing: reported), !sack.contains(blockStartingAt: range.start) {
                    sack.append(range.start, range.end)
                }
            }
            recentlyReported.removeAll { $0 < rcvNxt }
            if recentlyReported.count > 8 { recentlyReported.removeLast(recentlyReported.count - 8) }
        }
        // TSecr: the TSval of the segment that triggered this ACK (RFC 7323 would echo an older one for an
        // out-of-order segment; either way it predates any later retransmission, which is all RACK uses).
        sendAck(rcvNxt, sack, timestamp)
    }

    /// Longest time without in-order progress between `start` and the completion (or `end`).
    func longestDeliveryGap(from start: UInt64, to end: UInt64) -> UInt64 {
        var previous = start
        var longest: UInt64 = 0
        for delivery in deliveries where delivery.time >= start && delivery.time <= end {
            longest = max(longest, delivery.time - previous)
            previous = delivery.time
        }
        let finish = completedAt.map { min($0, end) } ?? end
        if finish > previous { longest = max(longest, finish - previous) }
        return longest
    }

    /// Distinct segments that reached the receiver in (`start`, `end`]: a goodput that can't exceed what the links
    /// carried in the window. In-order progress (`delivered(by:)`) over a window can: a hole open at its start fills
    /// inside it and releases segments that arrived before it (Reno seed 10 read 89.5 % that way).
    func uniqueArrivals(from start: UInt64, to end: UInt64) -> Int {
        func count(by time: UInt64) -> Int {
            var low = 0, high = firstArrivals.count
            while low < high {
                let mid = (low + high) / 2
                if firstArrivals[mid] <= time { low = mid + 1 } else { high = mid }
            }
            return low
        }
        return count(by: end) - count(by: start)
    }

    /// Segments delivered in order by `time`.
    func delivered(by time: UInt64) -> Int {
        var low = 0, high = deliveries.count
        while low < high {
            let mid = (low + high) / 2
            if deliveries[mid].time <= time { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? 0 : deliveries[low - 1].rcvNxt
    }
}
